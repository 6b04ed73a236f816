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
}

/// (id, name, mechanism, requirements, shipped in this version)
pub(super) const FAMILIES: &[(&str, &str, &str, &[Requirement], bool)] = {
    use Requirement::{BpfLsmActive, Cgroup2, CgroupFreezer, Helper, Kprobes, Program, Qdisc};
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
            "a program at the syscall's entry signalling the calling thread, which chaos's holder process \
             (ptrace) keeps stopped for the delay; --scope process: stopping the whole process, resumed by the \
             controller",
            &[Program("raw_tracepoint"), Helper("bpf_send_signal"), Helper("bpf_send_signal_thread")],
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
    ]
};
