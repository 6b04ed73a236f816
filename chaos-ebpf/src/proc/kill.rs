//! Crash points (`proc kill --on-syscall`): the program signals the calling process from inside
//! its own syscall (`bpf_send_signal`, default SIGKILL), at an exact call of the schedule.
//!
//! Three hooks serve it. Where the kernel has BPF trampolines and the crash point names one
//! syscall, an fentry program on that syscall's entry function (`__x64_sys_<name>`): other
//! syscalls do not run it at all. Elsewhere, the raw `sys_enter` tracepoint (every kernel),
//! where the syscall number is an argument, so the watched-syscall bitmap turns away every other
//! call before any helper call, exactly as `syscall delay` does. On both, the signal is acted on
//! when the task next returns to user space, so the call itself runs to its end first (a
//! blocking call is interrupted). Where BPF LSM serves the syscall, the `syscall fail` LSM
//! programs do the kill (their `action` field, syscall/lsm.rs) and may also fail the call, so
//! that it never takes effect.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_send_signal},
    macros::{fentry, raw_tracepoint},
    programs::{FEntryContext, RawTracePointContext},
};
use chaos_common::{Direction, FaultConfig, KILL_EVENT_LSM, KillEvent, SYSCALL_SET_BITS, site};

use crate::{
    gate,
    maps::{KILL_EVENTS, SYSCALL_SET},
    trace,
};

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn proc_kill_on_syscall(ctx: RawTracePointContext) -> i32 {
    // Arg 1 of sys_enter is the syscall number.
    let number: u64 = ctx.arg(1);
    if number >= u64::from(SYSCALL_SET_BITS)
        || SYSCALL_SET.get((number / 64) as u32).is_none_or(|word| word >> (number % 64) & 1 == 0)
    {
        return 0;
    }
    kill_current(number as u32)
}

/// On the entry function of the crash point's one syscall (userspace attached it there): only
/// that syscall's callers run it, so it starts at the cgroup check.
#[fentry]
pub fn proc_kill_on_syscall_entry(_ctx: FEntryContext) -> i32 {
    // The plan names the one syscall; the event does not repeat it (as from LSM hooks).
    kill_current(KILL_EVENT_LSM)
}

#[inline(always)]
fn kill_current(number: u32) -> i32 {
    let Some(fault) = gate::live_for_current_task(Direction::Egress) else { return 0 };
    fault.matched();
    if fault.fires() {
        signal_current(fault.config, number);
        let call = trace::Call { site: site::SYS_ENTER, syscall: number, errno: 0, signal: fault.config.signal };
        trace::call(fault.config, &call, None);
    }
    0
}

/// Sends the fault's signal to the current process, and tells the controller (best effort: a
/// full ring buffer loses the event, not the kill).
#[inline(always)]
pub(crate) fn signal_current(config: &FaultConfig, syscall: u32) {
    // SAFETY: helpers without pointer arguments.
    let (at_ns, sent) = unsafe { (bpf_ktime_get_ns(), bpf_send_signal(config.signal)) };
    if sent != 0 {
        return;
    }
    let Some(mut entry) = KILL_EVENTS.reserve::<KillEvent>(0) else { return };
    let pid_tgid = bpf_get_current_pid_tgid();
    entry.write(KillEvent {
        at_ns,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        syscall,
        signal: config.signal,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(0);
}
