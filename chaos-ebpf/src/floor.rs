//! The floor: a test-only object with one program per hook chaos uses, each returning "pass" at
//! once. `cargo xtask bench floor` attaches them where chaos's programs go, so what a hook costs
//! with an empty program can be set beside what it costs with chaos's. Names stay within the
//! kernel's 15 characters, so the bench finds them by name.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::bpf_get_current_ancestor_cgroup_id,
    macros::{cgroup_skb, cgroup_sock_addr, classifier, kprobe, lsm, raw_tracepoint},
    programs::{LsmContext, ProbeContext, RawTracePointContext, SkBuffContext, SockAddrContext, TcContext},
};

/// cgroup_skb and cgroup sock_addr verdict: let it through.
const PASS: i32 = 1;

#[cgroup_skb(egress)]
pub fn floor_egress(_ctx: SkBuffContext) -> i32 {
    PASS
}

#[cgroup_skb(ingress)]
pub fn floor_ingress(_ctx: SkBuffContext) -> i32 {
    PASS
}

#[cgroup_sock_addr(connect4)]
pub fn floor_connect4(_ctx: SockAddrContext) -> i32 {
    PASS
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_sys_enter(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Not empty: the least a program on sys_enter must do to tell one cgroup's tasks from the rest,
/// one bpf_get_current_ancestor_cgroup_id call and a compare, so the bench can show how much of
/// chaos's untargeted cost above the empty program that helper is.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_cgroup_id(_ctx: RawTracePointContext) -> i32 {
    // SAFETY: helper taking a plain integer. No cgroup has id u64::MAX: the compare never holds.
    let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(1) };
    i32::from(ancestor == u64::MAX)
}

/// "No verdict", as chaos's TC programs return when they leave a packet alone.
#[classifier]
pub fn floor_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// LSM programs allow with 0 (VM tier only: this host cannot load LSM programs).
#[lsm(hook = "file_open")]
pub fn floor_file_open(_ctx: LsmContext) -> i32 {
    0
}

#[lsm(hook = "file_permission")]
pub fn floor_file_perm(_ctx: LsmContext) -> i32 {
    0
}

/// The error-injection backend's hook: a kprobe on a syscall's entry function (the bench puts
/// it on `__x64_sys_fsync`). It never calls bpf_override_return, so it loads on any kernel
/// with kprobes; the bench runs it on the error-injection kernel, beside chaos's.
#[kprobe]
pub fn floor_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

/// The kernel reads this section to decide which helpers the programs may call.
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // Nothing here can panic; the verifier proves every path returns.
    loop {}
}
