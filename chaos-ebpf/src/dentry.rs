//! Reading the few kernel structures the syscall programs need, at offsets taken from the
//! running kernel's BTF by the loader (`KERNEL_OFFSETS`): Rust eBPF cannot emit CO-RE
//! relocations, and fixed offsets would be wrong on the next kernel.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use chaos_common::{FaultConfig, KernelOffsets};

/// Written by the loader before the programs load (all zero when it could not find them).
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    file_dentry: 0,
    dentry_parent: 0,
    dentry_inode: 0,
    inode_ino: 0,
    inode_sb: 0,
    sb_dev: 0,
    binprm_file: 0,
    task_files: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    regs_di: 0,
};

/// How many ancestors the path filter climbs before it gives up (deeper files do not match).
const MAX_DEPTH: usize = 32;

#[inline(always)]
fn offsets() -> KernelOffsets {
    // SAFETY: reading our own global; volatile so the compiler does not fold the zeros in.
    unsafe { core::ptr::read_volatile(&raw const KERNEL_OFFSETS) }
}

#[inline(always)]
fn read<T>(address: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails rather than faults.
    unsafe { bpf_probe_read_kernel(address as *const T) }.ok()
}

/// `file->f_path.dentry`.
#[inline(always)]
pub(crate) fn file_dentry(file: u64) -> u64 {
    if file == 0 {
        return 0;
    }
    read(file + u64::from(offsets().file_dentry)).unwrap_or(0)
}

/// `bprm->file`.
#[inline(always)]
pub(crate) fn binprm_file(bprm: u64) -> u64 {
    read(bprm + u64::from(offsets().binprm_file)).unwrap_or(0)
}

/// The first argument of a syscall, from the `struct pt_regs *` its entry function
/// (`__x64_sys_<name>`) receives: `regs->di` on x86_64.
#[inline(always)]
pub(crate) fn first_syscall_argument(user_regs: u64) -> u64 {
    if user_regs == 0 {
        return 0;
    }
    read(user_regs + u64::from(offsets().regs_di)).unwrap_or(0)
}

/// The file the current task's descriptor `fd` refers to (0 if none):
/// `current->files->fdt->fd[fd]`, bounded by `fdt->max_fds`. The table is read without the
/// RCU lock the kernel would take; every read goes through `bpf_probe_read_kernel`, so a table
/// being replaced at that moment gives a stale or zero answer, never a fault.
#[inline(always)]
pub(crate) fn fd_file(fd: u32) -> u64 {
    let offsets = offsets();
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let Some(files) = read::<u64>(task + u64::from(offsets.task_files)).filter(|&f| f != 0) else { return 0 };
    let Some(fdt) = read::<u64>(files + u64::from(offsets.files_fdt)).filter(|&f| f != 0) else { return 0 };
    let Some(max_fds) = read::<u32>(fdt + u64::from(offsets.fdt_max_fds)) else { return 0 };
    if fd >= max_fds {
        return 0;
    }
    let Some(array) = read::<u64>(fdt + u64::from(offsets.fdt_fd)).filter(|&a| a != 0) else { return 0 };
    read(array + 8 * u64::from(fd)).unwrap_or(0)
}

/// Whether `dentry` is the fault's directory or below it: climbs `d_parent` comparing each
/// ancestor's (device, inode) with the directory's. The climb stops at the root of the
/// dentry's filesystem, so a directory on another filesystem than the file does not match.
#[inline(always)]
pub(crate) fn under_directory(config: &FaultConfig, mut dentry: u64) -> bool {
    let offsets = offsets();
    for _ in 0..MAX_DEPTH {
        if dentry == 0 {
            return false;
        }
        let inode: u64 = read(dentry + u64::from(offsets.dentry_inode)).unwrap_or(0);
        if inode != 0 && read::<u64>(inode + u64::from(offsets.inode_ino)) == Some(config.path_ino) {
            let super_block: u64 = read(inode + u64::from(offsets.inode_sb)).unwrap_or(0);
            if super_block != 0
                && read::<u32>(super_block + u64::from(offsets.sb_dev)).map(u64::from) == Some(config.path_dev)
            {
                return true;
            }
        }
        let Some(parent) = read::<u64>(dentry + u64::from(offsets.dentry_parent)) else { return false };
        if parent == dentry {
            return false;
        }
        dentry = parent;
    }
    false
}
