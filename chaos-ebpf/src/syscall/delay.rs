//! Syscall delay: eBPF cannot sleep, so the program has the calling task stopped and someone in
//! user space resumes it when the delay has passed. Two ways (`FaultConfig::flags`):
//!
//! - Per thread (`flags::HOLD_THREAD`, the default): chaos's holder process has seized the
//!   target's threads with ptrace (PTRACE_SEIZE: nothing stops, no syscall is traced) and listed
//!   them in `HELD_THREADS`. The program signals the calling thread alone (SIGURG, with
//!   `bpf_send_signal_thread`), so it alone stops, in signal-delivery-stop, where the holder keeps
//!   it for the delay and then resumes it with the signal suppressed. The process's other threads
//!   run on. A thread not in the map (a process that joined the target after the holder looked)
//!   is stopped the second way for this one call, and the holder, told through the ring buffer,
//!   seizes its process.
//! - Per process: SIGSTOP to the whole process, an event in the ring buffer for the
//!   controller, which resumes it (SIGCONT) when the delay has passed.
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
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_send_signal, bpf_send_signal_thread},
    macros::{fentry, raw_tracepoint},
    programs::{FEntryContext, RawTracePointContext},
};
use chaos_common::{Direction, KILL_EVENT_LSM, SYSCALL_SET_BITS, StopEvent, flags, held, site};

use crate::{
    gate,
    maps::{HELD_THREADS, STOP_EVENTS, SYSCALL_SET},
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

/// The gate, then the calling thread signalled for the holder (per thread), or SIGSTOP to the
/// current process and an event for whoever resumes it.
#[inline(always)]
fn stop_current(number: u32) -> i32 {
    let Some(fault) = gate::live_for_current_task(Direction::Egress) else { return 0 };
    fault.matched();
    if fault.config.flags & flags::HOLD_THREAD != 0 {
        let tid = bpf_get_current_pid_tgid() as u32;
        if let Some(state) = HELD_THREADS.get_ptr_mut(tid) {
            return hold_thread(&fault, state, number);
        }
        // Not seized: the process joined the target after the holder looked. It is stopped
        // whole for this call, below, and the holder seizes it on hearing of the stop.
    }
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

/// A seized thread's call fires: marked as signalled (so the holder tells this SIGURG from any
/// other), then signalled alone. It stops when it next heads back to user space: after the call
/// if the call does not block, at once if it blocks (the call is then restarted after the hold),
/// so the caller sees the call's own time plus the delay.
#[inline(always)]
fn hold_thread(fault: &gate::Live, state: *mut u32, number: u32) -> i32 {
    if !fault.fires() {
        return 0;
    }
    // SAFETY: a pointer to this map value, valid for this program run.
    unsafe { *state = held::SIGNALLED };
    // SAFETY: helper taking a plain integer; it signals the current thread only.
    if unsafe { bpf_send_signal_thread(held::SIGNAL) } != 0 {
        // SAFETY: as above.
        unsafe { *state = held::SEIZED };
        return 0;
    }
    let call = trace::Call { site: site::SYS_ENTER, syscall: number, errno: 0, signal: held::SIGNAL };
    trace::call(fault.config, &call, None);
    0
}
