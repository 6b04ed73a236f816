//! The fault families `chaos doctor` reports, each with its stable id, its name, the mechanism
//! chaos uses for it, what it needs from the kernel, and whether this version ships it.

/// Family ids, stable for scripts.
pub const PACKET_DROP: &str = "packet-drop";
pub const PACKET_CORRUPT_DUPLICATE: &str = "packet-corrupt-duplicate";
pub const NETWORK_DELAY: &str = "network-delay";
pub const SYSCALL_ERRNO_LSM: &str = "syscall-errno-lsm";
pub const SYSCALL_ERRNO_CGROUP_HOOKS: &str = "syscall-errno-cgroup-hooks";
pub const SYSCALL_ERRNO_OVERRIDE: &str = "syscall-errno-override";
pub const SYSCALL_DELAY: &str = "syscall-delay";
pub const PROCESS_KILL: &str = "process-kill";
pub const PROCESS_PAUSE: &str = "process-pause";
pub const RESOURCE_LIMITS: &str = "resource-limits";
pub const DNS: &str = "dns";
pub const CONNECTION_SEVER: &str = "connection-sever";

/// `SockDestroy`: sock_diag destroys a loopback connection in a throwaway namespace.
pub(super) fn sock_destroy() -> super::Check {
    crate::os::tcp_connections::probe_destroy().map_or_else(super::Check::no, super::Check::yes)
}

/// What a family's mechanism adds about this kernel that no requirement says: for `net sever`,
/// whether the kernel has the `bpf_sock_destroy` kfunc, and why chaos does not use it.
pub(super) fn runtime_words(id: &str) -> String {
    if id != CONNECTION_SEVER {
        return String::new();
    }
    let has = crate::os::btf::kernel_has_name("bpf_sock_destroy").unwrap_or(false);
    format!(
        "; the bpf_sock_destroy kfunc (6.5+, {}) is not used: a socket iterator calling it needs a kfunc call, which \
         aya 0.14 cannot load (docs/sever.md)",
        if has { "in this kernel's BTF" } else { "not in this kernel" }
    )
}

/// Something a fault family needs from the kernel.
#[derive(Clone, Copy)]
pub(super) enum Requirement {
    Program(&'static str),
    Helper(&'static str),
    Qdisc(&'static str),
    Cgroup2,
    BpfLsmActive,
    CgroupFreezer,
    Kprobes,
    /// A probe of its own, under a name (asked once): what it found, or why not.
    Probe(&'static str, fn() -> Result<String, String>),
    /// sock_diag can destroy a TCP connection (CONFIG_INET_DIAG_DESTROY, tcp_diag).
    SockDestroy,
}

/// (id, name, mechanism, requirements, shipped in this version)
pub(super) const FAMILIES: &[(&str, &str, &str, &[Requirement], bool)] = {
    use Requirement::{BpfLsmActive, Cgroup2, CgroupFreezer, Helper, Kprobes, Probe, Program, Qdisc, SockDestroy};
    &[
        (
            PACKET_DROP,
            "packet drop",
            "cgroup_skb programs on the target cgroup",
            &[Program("cgroup_skb"), Cgroup2],
            true,
        ),
        (
            PACKET_CORRUPT_DUPLICATE,
            "packet corrupt/duplicate",
            "TC classifier in the target's network namespace",
            &[Program("sched_cls"), Helper("bpf_clone_redirect")],
            true,
        ),
        (
            NETWORK_DELAY,
            "network delay",
            "TC classifier setting skb->tstamp (EDT), enforced by the fq qdisc",
            &[Program("sched_cls"), Qdisc("fq")],
            true,
        ),
        (SYSCALL_ERRNO_LSM, "syscall errno via LSM", "BPF LSM hooks", &[Program("lsm"), BpfLsmActive], true),
        (
            SYSCALL_ERRNO_CGROUP_HOOKS,
            "syscall errno via cgroup socket hooks",
            "cgroup socket hooks (connect, bind, sendmsg, socket, sockopt) returning an errno with bpf_set_retval",
            &[Program("cgroup_sock_addr"), Helper("bpf_set_retval")],
            true,
        ),
        (
            SYSCALL_ERRNO_OVERRIDE,
            "syscall errno via error injection",
            "kprobe on the syscall's entry function calling bpf_override_return, filtered by cgroup id",
            &[Kprobes, Program("kprobe"), Helper("bpf_override_return")],
            true,
        ),
        (
            SYSCALL_DELAY,
            "syscall delay",
            "a program at the syscall's entry stopping the process, resumed by the controller",
            &[Program("raw_tracepoint"), Helper("bpf_send_signal")],
            true,
        ),
        (
            PROCESS_KILL,
            "process kill",
            "periodic: kill(2) / cgroup.kill; crash points: a program at the syscall's entry sending the signal \
             with bpf_send_signal",
            &[Program("raw_tracepoint"), Helper("bpf_send_signal")],
            true,
        ),
        (
            PROCESS_PAUSE,
            "process pause",
            "cgroup v2 freezer (cgroup.freeze), thawed by a guard process if chaos dies",
            &[Cgroup2, CgroupFreezer],
            true,
        ),
        (
            RESOURCE_LIMITS,
            "resource limits",
            "the target's own cgroup v2 files (cpu.max, memory.high/max, io.max, pids.max), put back by a guard \
             process if chaos dies; the target's parent must delegate the controller",
            &[Cgroup2, Probe("limit controllers", crate::os::cgroup_files::controllers::probe)],
            true,
        ),
        (
            DNS,
            "DNS faults",
            "cgroup sock_addr hooks on the target cgroup (connect4/6, sendmsg4/6, recvmsg4/6, getpeername4/6) send its \
             port-53 queries to a responder chaos runs in the target's network namespace",
            &[Program("cgroup_sock_addr"), Cgroup2],
            true,
        ),
        (
            CONNECTION_SEVER,
            "connection sever",
            "sock_diag SOCK_DESTROY from chaos's process for the target's connections; --after-bytes: cgroup_skb \
             programs counting each connection's bytes by sequence number (--mode silent needs only those)",
            &[SockDestroy],
            true,
        ),
    ]
};
