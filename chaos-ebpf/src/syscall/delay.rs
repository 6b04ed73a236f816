//! Syscall delay: eBPF cannot sleep, so the program stops the whole process (SIGSTOP) when it
//! makes a delayed syscall, and tells the controller through a ring buffer; the controller
//! resumes it (SIGCONT) when the delay has passed.
//!
//! Two hooks, one body. Where the kernel has BPF trampolines, [`syscall_delay_entry`] is an
//! fentry program on the one delayed syscall's entry function (`__x64_sys_<name>`): no other
//! syscall runs it at all. Elsewhere (the host refuses tracing programs), [`syscall_delay`] is on
//! the raw `sys_enter` tracepoint, which every syscall of every task passes: there the syscall
//! number is an argument, so the watched-syscall bitmap (an inlined array lookup) turns away
//! every other syscall before any helper call, and only the watched ones go on to the cgroup
//! check. The stop signal is acted on when the task next returns to user space: a
//! call that does not block completes first and the task stops on its way out; a blocking call
//! is interrupted, and the kernel restarts it after the stop, so either way the caller sees the
//! call's own time plus the delay.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_send_signal},
    macros::{fentry, raw_tracepoint},
    programs::{FEntryContext, RawTracePointContext},
};
use chaos_common::{Direction, KILL_EVENT_LSM, SYSCALL_SET_BITS, StopEvent, site};

use crate::{
    gate,
    maps::{STOP_EVENTS, SYSCALL_SET},
    trace,
};

const SIGSTOP: u32 = 19;

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn syscall_delay(ctx: RawTracePointContext) -> i32 {
    // Arg 1 of sys_enter is the syscall number.
    let number: u64 = ctx.arg(1);
    if number >= u64::from(SYSCALL_SET_BITS)
        || SYSCALL_SET.get((number / 64) as u32).is_none_or(|word| word >> (number % 64) & 1 == 0)
    {
        return 0;
    }
    stop_current(number as u32)
}

/// On the entry function of the fault's one syscall (attached there by userspace, which knows
/// which syscall it is): only that syscall's callers run it, so it starts at the cgroup check.
#[fentry]
pub fn syscall_delay_entry(_ctx: FEntryContext) -> i32 {
    // The number is not read from the call's registers: the plan names the one syscall.
    stop_current(KILL_EVENT_LSM)
}

/// The gate, then SIGSTOP to the current process and an event for the resumer.
#[inline(always)]
fn stop_current(number: u32) -> i32 {
    let Some(fault) = gate::live_for_current_task(Direction::Egress) else { return 0 };
    fault.matched();
    if !fault.fires() {
        return 0;
    }
    // Reserve the event first: if the controller cannot be told, the task must not be stopped.
    let Some(mut entry) = STOP_EVENTS.reserve::<StopEvent>(0) else { return 0 };
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: helpers without pointer arguments.
    let (stopped_at_ns, sent) = unsafe { (bpf_ktime_get_ns(), bpf_send_signal(SIGSTOP)) };
    if sent != 0 {
        entry.discard(0);
        return 0;
    }
    entry.write(StopEvent {
        stopped_at_ns,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        syscall: number,
        _pad: 0,
    });
    entry.submit(0);
    let call = trace::Call { site: site::SYS_ENTER, syscall: number, errno: 0, signal: SIGSTOP };
    trace::call(fault.config, &call, None);
    0
}
