//! Syscall errors through BPF LSM hooks (kernels with `bpf` in the active LSM list). Every
//! task runs these hooks, so each program first asks the gate whether the current task belongs
//! to the target cgroup, and leaves at once if not. A hook returns 0 to allow or -errno to fail
//! the syscall that reached it.
use core::ffi::c_void;

use aya_ebpf::{macros::lsm, programs::LsmContext};
use chaos_common::{Direction, KILL_EVENT_LSM, action, flags, site, syscall_mask};

use crate::{dentry, gate, net_filter, packet::Packet, proc_kill, trace};

/// Syscalls are counted in the first counter slot.
const CALLS: Direction = Direction::Egress;
const MAY_WRITE: i32 = 2;
const MAY_READ: i32 = 4;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The largest errno the kernel lets an LSM program return (-MAX_ERRNO).
const MAX_ERRNO: i32 = 4095;

/// The common ending: the call (at hook `site`) matched the fault's filters; if the fault
/// fires, fail it, or signal the caller (a crash point), or both (`--before-effect`: the call
/// never takes effect). `peer`: the address, for connect.
#[inline(always)]
fn decide(fault: &gate::Live, site: u32, peer: Option<&Packet>) -> i32 {
    fault.matched();
    if !fault.fires() {
        return 0;
    }
    let config = fault.config;
    let kills = matches!(config.action, action::KILL | action::KILL_AND_FAIL);
    if kills {
        proc_kill::signal_current(config, KILL_EVENT_LSM);
    }
    let errno = if config.action == action::KILL { 0 } else { config.errno };
    let signal = if kills { config.signal } else { 0 };
    trace::call(config, &trace::Call { site, syscall: chaos_common::NO_SYSCALL, errno, signal }, peer);
    negative_errno(errno)
}

/// `-errno` (0 for 0), in a form the verifier can bound: it must see an LSM program's return
/// value inside [-MAX_ERRNO, 0]. LLVM emits `neg` for `-x`, on which the verifier forgets all
/// bounds, and may test a copy of `errno` rather than the register it subtracts, so the bound
/// and the subtraction are written together, on one register.
#[inline(always)]
fn negative_errno(errno: u32) -> i32 {
    let errno = u64::from(errno);
    let result: u64;
    // SAFETY: plain register arithmetic and a forward jump over one instruction.
    unsafe {
        core::arch::asm!(
            "{result} = 0",
            "if {errno} > {max} goto +1",
            "{result} -= {errno}",
            result = out(reg) result,
            errno = in(reg) errno,
            max = const MAX_ERRNO,
        );
    }
    result as i32
}

/// The fault for the current task, if any, with its path filter applied to `dentry`.
#[inline(always)]
fn for_dentry(site: u32, dentry: impl FnOnce() -> u64) -> i32 {
    let Some(fault) = gate::live_for_current_task(CALLS) else { return 0 };
    if fault.config.flags & flags::PATH_FILTER != 0 && !dentry::under_directory(fault.config, dentry()) {
        return 0;
    }
    decide(&fault, site, None)
}

#[inline(always)]
fn arg_address(ctx: &LsmContext, n: usize) -> u64 {
    ctx.arg::<*const c_void>(n) as u64
}

/// open, openat, openat2, creat.
#[lsm(hook = "file_open")]
pub fn sys_file_open(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_OPEN, || dentry::file_dentry(arg_address(&ctx, 0)))
}

/// read-like (MAY_READ) and write-like (MAY_WRITE) calls on an open file.
#[lsm(hook = "file_permission")]
pub fn sys_file_permission(ctx: LsmContext) -> i32 {
    let Some(fault) = gate::live_for_current_task(CALLS) else { return 0 };
    let mask: i32 = ctx.arg(1);
    let asked = fault.config.syscall_mask;
    let wanted = (mask & MAY_READ != 0 && asked & syscall_mask::READ != 0)
        || (mask & MAY_WRITE != 0 && asked & syscall_mask::WRITE != 0);
    if !wanted {
        return 0;
    }
    if fault.config.flags & flags::PATH_FILTER != 0
        && !dentry::under_directory(fault.config, dentry::file_dentry(arg_address(&ctx, 0)))
    {
        return 0;
    }
    decide(&fault, site::LSM_READ_WRITE, None)
}

/// ioctl.
#[lsm(hook = "file_ioctl")]
pub fn sys_file_ioctl(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_IOCTL, || dentry::file_dentry(arg_address(&ctx, 0)))
}

/// mmap (file-backed and anonymous; the path filter only matches file-backed maps).
#[lsm(hook = "mmap_file")]
pub fn sys_mmap_file(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_MMAP, || dentry::file_dentry(arg_address(&ctx, 0)))
}

/// unlink, unlinkat.
#[lsm(hook = "inode_unlink")]
pub fn sys_inode_unlink(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_UNLINK, || arg_address(&ctx, 1))
}

/// mkdir, mkdirat.
#[lsm(hook = "inode_mkdir")]
pub fn sys_inode_mkdir(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_MKDIR, || arg_address(&ctx, 1))
}

/// rmdir.
#[lsm(hook = "inode_rmdir")]
pub fn sys_inode_rmdir(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_RMDIR, || arg_address(&ctx, 1))
}

/// rename, renameat, renameat2 (the path filter looks at the source).
#[lsm(hook = "inode_rename")]
pub fn sys_inode_rename(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_RENAME, || arg_address(&ctx, 1))
}

/// execve, execveat.
#[lsm(hook = "bprm_check_security")]
pub fn sys_bprm_check_security(ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_EXEC, || dentry::file_dentry(dentry::binprm_file(arg_address(&ctx, 0))))
}

/// fork, vfork, clone, clone3 (checked in the parent, which is the current task).
#[lsm(hook = "task_alloc")]
pub fn sys_task_alloc(_ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_FORK, || 0)
}

/// socket (sockets the kernel creates for itself are never failed).
#[lsm(hook = "socket_create")]
pub fn sys_socket_create(ctx: LsmContext) -> i32 {
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return 0;
    }
    for_dentry(site::LSM_SOCKET, || 0)
}

/// connect, with the remote filters applied to the address asked for.
#[lsm(hook = "socket_connect")]
pub fn sys_socket_connect(ctx: LsmContext) -> i32 {
    let Some(fault) = gate::live_for_current_task(CALLS) else { return 0 };
    // The address is read when a filter or the trace needs it.
    let peer = if fault.config.net_filters != 0 || fault.config.flags & flags::TRACE != 0 {
        peer_of(arg_address(&ctx, 1))
    } else {
        None
    };
    if fault.config.net_filters != 0 && !peer.as_ref().is_some_and(|peer| net_filter::matches(fault.config, peer)) {
        return 0;
    }
    decide(&fault, site::LSM_CONNECT, peer.as_ref())
}

/// The peer of a `struct sockaddr` (an ABI structure: its layout is fixed).
#[inline(always)]
fn peer_of(sockaddr: u64) -> Option<Packet> {
    use aya_ebpf::helpers::bpf_probe_read_kernel;
    // SAFETY: bpf_probe_read_kernel checks the address.
    let header: [u8; 8] = unsafe { bpf_probe_read_kernel(sockaddr as *const [u8; 8]) }.ok()?;
    let family = u16::from_ne_bytes([header[0], header[1]]);
    let mut peer = Packet { ipv6: false, protocol: 0, remote: [0; 16], l4: Some(0), remote_port: 0, local_port: 0 };
    peer.remote_port = u16::from_be_bytes([header[2], header[3]]);
    match family {
        AF_INET => peer.remote[..4].copy_from_slice(&header[4..8]),
        AF_INET6 => {
            peer.ipv6 = true;
            // SAFETY: as above; sin6_addr is at offset 8 of sockaddr_in6.
            peer.remote = unsafe { bpf_probe_read_kernel((sockaddr + 8) as *const [u8; 16]) }.ok()?;
        }
        _ => return None,
    }
    Some(peer)
}

/// bind.
#[lsm(hook = "socket_bind")]
pub fn sys_socket_bind(_ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_BIND, || 0)
}

/// listen.
#[lsm(hook = "socket_listen")]
pub fn sys_socket_listen(_ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_LISTEN, || 0)
}

/// accept, accept4.
#[lsm(hook = "socket_accept")]
pub fn sys_socket_accept(_ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_ACCEPT, || 0)
}

/// sendmsg, sendto, send, sendmmsg.
#[lsm(hook = "socket_sendmsg")]
pub fn sys_socket_sendmsg(_ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_SENDMSG, || 0)
}

/// recvmsg, recvfrom, recv, recvmmsg.
#[lsm(hook = "socket_recvmsg")]
pub fn sys_socket_recvmsg(_ctx: LsmContext) -> i32 {
    for_dentry(site::LSM_RECVMSG, || 0)
}
