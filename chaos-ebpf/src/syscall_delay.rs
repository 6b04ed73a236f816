//! Syscall delay: eBPF cannot sleep, so the program stops the whole process (SIGSTOP) as its
//! delayed syscall returns, and tells the controller through a ring buffer; the controller
//! resumes it (SIGCONT) when the delay has passed. Attached to the raw `sys_exit` tracepoint:
//! stopping on the way out leaves blocking calls alone (a stop signal at entry would interrupt
//! them), and the caller sees the call take its own time plus the delay.
//!
//! Every syscall of every task passes here, so the program checks the current task's cgroup
//! first (through the gate) and leaves at once if it is not the target's.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_send_signal},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use chaos_common::{Direction, SYSCALL_SET_BITS, StopEvent};

use crate::{
    gate,
    maps::{STOP_EVENTS, SYSCALL_SET},
};

const SIGSTOP: u32 = 19;
/// Offset of `orig_ax` (the syscall number) in x86_64's `struct pt_regs`: part of the ptrace
/// ABI (`user_regs_struct`), so it does not move between kernels.
#[cfg(bpf_target_arch = "x86_64")]
const PT_REGS_ORIG_AX: u64 = 15 * 8;

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn syscall_delay(ctx: RawTracePointContext) -> i32 {
    let Some(fault) = gate::live_for_current_task(Direction::Egress) else { return 0 };
    // Arg 0 of sys_exit is the task's `struct pt_regs *`.
    let regs: u64 = ctx.arg(0);
    // SAFETY: bpf_probe_read_kernel checks the address.
    let Ok(number) = (unsafe { bpf_probe_read_kernel((regs + PT_REGS_ORIG_AX) as *const u64) }) else { return 0 };
    if number >= u64::from(SYSCALL_SET_BITS)
        || SYSCALL_SET.get((number / 64) as u32).is_none_or(|word| word >> (number % 64) & 1 == 0)
    {
        return 0;
    }
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
        syscall: number as u32,
        _pad: 0,
    });
    entry.submit(0);
    0
}
