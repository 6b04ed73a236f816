//! Syscall errors through error injection (kernels with CONFIG_FUNCTION_ERROR_INJECTION and
//! CONFIG_BPF_KPROBE_OVERRIDE): a kprobe on a syscall's entry function (`__x64_sys_<name>`)
//! that, when the gate says so, makes the function return `-errno` at once with
//! `bpf_override_return`, before the syscall does any work. This serves every syscall on the
//! kernel's error-injection list, fsync and fdatasync included, which no LSM hook covers.
//!
//! Why a kprobe and not fmod_ret: aya-ebpf 0.2.1 has no `fmod_ret` macro and aya 0.14 no
//! loader for BPF_MODIFY_RETURN programs, so fmod_ret was not built and its cost not measured
//! (docs/syscalls.md, "Error injection"; BENCHMARKS.md has what the kprobe costs other tasks' calls).
//!
//! One program serves every syscall of a fault: it is attached once per entry function. Every
//! task runs it, so the gate's cgroup test comes first.
use aya_ebpf::{helpers::bpf_override_return, macros::kprobe, programs::ProbeContext};
use chaos_common::{Direction, FaultConfig, flags, site};

use crate::{dentry, gate, trace};

/// Syscalls are counted in the first counter slot (as on the LSM path).
const CALLS: Direction = Direction::Egress;

/// The largest errno a syscall can return (-MAX_ERRNO); userspace never writes more.
const MAX_ERRNO: u32 = 4095;

/// The syscall entry function of the syscall to fail. Its only argument is the `struct pt_regs *`
/// the task entered the kernel with, whose registers hold the syscall's own arguments.
#[kprobe]
pub fn sys_override(ctx: ProbeContext) -> u32 {
    let Some(fault) = gate::live_for_current_task(CALLS) else { return 0 };
    if !entry_matches(&ctx, fault.config) {
        return 0;
    }
    fault.matched();
    if fault.fires() {
        skip_call(&ctx, fault.config.errno);
        trace::call(fault.config, &trace::Call::failed(site::KPROBE, fault.config.errno), None);
    }
    0
}

/// Whether a call caught at its entry function passes the fault's filters: `--path`, which is
/// only accepted for calls whose first argument is a file descriptor, is that descriptor's file
/// under the directory. Other kprobe programs on syscall entries (process crash points) reuse it.
#[inline(always)]
pub(crate) fn entry_matches(ctx: &ProbeContext, config: &FaultConfig) -> bool {
    if config.flags & flags::PATH_FILTER == 0 {
        return true;
    }
    let user_regs: u64 = ctx.arg(0).unwrap_or(0);
    let file = dentry::fd_file(dentry::first_syscall_argument(user_regs) as u32);
    dentry::under_directory(config, dentry::file_dentry(file))
}

/// Makes the probed entry function return `-errno` at once: the syscall does nothing at all
/// (the caller sees the errno). Reused by anything that must stop a call before its effect.
#[inline(always)]
pub(crate) fn skip_call(ctx: &ProbeContext, errno: u32) {
    if errno == 0 || errno > MAX_ERRNO {
        return;
    }
    let rc = (-i64::from(errno)) as u64;
    // SAFETY: `ctx.regs` is this kprobe's own register set, which the helper rewrites so the
    // probed function returns `rc` without running.
    unsafe { bpf_override_return(ctx.regs, rc) };
}
