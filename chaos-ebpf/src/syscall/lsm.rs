//! Syscall errors through BPF LSM hooks (kernels with `bpf` in the active LSM list), each hook
//! served by two programs with one body:
//!
//! - **per cgroup** (`lsm_cgroup`, kernels 6.0+): attached to the target cgroup, so the kernel's
//!   shim runs it only for events of that cgroup and its descendants; every other task runs none
//!   of chaos's programs, however many faults are armed. Which cgroup is the event's is the
//!   kernel's choice (kernel/bpf/bpf_lsm.c, `bpf_lsm_find_cgroup_shim`): for hooks whose first
//!   argument is a `struct socket *` (connect, bind, listen, accept, sendmsg, recvmsg) it is the
//!   cgroup the *socket* was created in, as for cgroup sock_addr hooks; for every other hook here
//!   (files, exec, fork, socket creation) it is the current task's. The kernel lets at most 10
//!   distinct LSM hooks carry such programs machine-wide (CGROUP_LSM_NUM).
//! - **global** (`lsm`): every task runs it, so its first act is the ancestor-cgroup test of the
//!   current task ([`gate::live_for_current_task`]).
//!
//! The two differ in how the target is found and how the verdict is returned ([`Attachment`]);
//! the hook bodies are written once, generic over it.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::bpf_set_retval,
    macros::{lsm, lsm_cgroup},
    programs::LsmContext,
};
use chaos_common::{Direction, KILL_EVENT_LSM, action, flags, site, syscall_mask};

use crate::{dentry, gate, net, packet::Packet, proc, trace};

/// Syscalls are counted in the first counter slot.
const CALLS: Direction = Direction::Egress;
const MAY_WRITE: i32 = 2;
const MAY_READ: i32 = 4;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The largest errno the kernel lets an LSM program return (-MAX_ERRNO).
const MAX_ERRNO: i32 = 4095;

/// How a program is attached, which decides how it finds its fault and returns its verdict.
trait Attachment {
    /// The fault, if it is live for this event.
    fn live() -> Option<gate::Live>;
    /// The program's return value for "fail with `errno`", 0 meaning "allow".
    fn verdict(errno: u32) -> i32;
}

/// A global `lsm` program: every task runs it; it returns 0 to allow or -errno to fail.
struct Global;

impl Attachment for Global {
    #[inline(always)]
    fn live() -> Option<gate::Live> {
        gate::live_for_current_task(CALLS)
    }

    #[inline(always)]
    fn verdict(errno: u32) -> i32 {
        negative_errno(errno)
    }
}

/// An `lsm_cgroup` program: the kernel already chose the cgroup, so only the deadline is left
/// to test. The verifier holds it to 1 (allow) or 0 (deny); the errno of a denial is set with
/// `bpf_set_retval` (without it the kernel would say EPERM).
struct PerCgroup;

impl Attachment for PerCgroup {
    #[inline(always)]
    fn live() -> Option<gate::Live> {
        gate::live(CALLS)
    }

    #[inline(always)]
    fn verdict(errno: u32) -> i32 {
        if errno == 0 {
            return 1;
        }
        // SAFETY: helper taking a plain integer; the planner keeps errno within 1..=4095.
        unsafe { bpf_set_retval(-(errno as i32)) };
        0
    }
}

/// The common ending: the call (at hook `site`) matched the fault's filters; if the fault
/// fires, fail it, or signal the caller (a crash point), or both (`--before-effect`: the call
/// never takes effect). `peer`: the address, for connect. Returns the errno to fail with, 0 to
/// let the call go on.
#[inline(always)]
fn decide(fault: &gate::Live, site: u32, peer: Option<&Packet>) -> u32 {
    fault.matched();
    if !fault.fires() {
        return 0;
    }
    let config = fault.config;
    let kills = matches!(config.action, action::KILL | action::KILL_AND_FAIL);
    if kills {
        proc::kill::signal_current(config, KILL_EVENT_LSM);
    }
    let errno = if config.action == action::KILL { 0 } else { config.errno };
    let signal = if kills { config.signal } else { 0 };
    trace::call(config, &trace::Call { site, syscall: chaos_common::NO_SYSCALL, errno, signal }, peer);
    errno
}

/// `-errno` (0 for 0), in a form the verifier can bound: it must see a global LSM program's
/// return value inside [-MAX_ERRNO, 0]. LLVM emits `neg` for `-x`, on which the verifier forgets
/// all bounds, and may test a copy of `errno` rather than the register it subtracts, so the
/// bound and the subtraction are written together, on one register.
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

/// The fault for this event, if any, with its path filter applied to `dentry`.
#[inline(always)]
fn for_dentry<A: Attachment>(site: u32, dentry: impl FnOnce() -> u64) -> u32 {
    let Some(fault) = A::live() else { return 0 };
    if fault.config.flags & flags::PATH_FILTER != 0 && !dentry::under_directory(fault.config, dentry()) {
        return 0;
    }
    decide(&fault, site, None)
}

#[inline(always)]
fn arg_address(ctx: &LsmContext, n: usize) -> u64 {
    ctx.arg::<*const c_void>(n) as u64
}

/// Declares, for each hook, its global program and its per-cgroup twin around one body
/// (`fn(&LsmContext) -> errno`, generic over [`Attachment`]).
macro_rules! on_both_attachments {
    ($($(#[$doc:meta])* $hook:literal => $global:ident, $per_cgroup:ident, $body:ident;)*) => {$(
        $(#[$doc])*
        #[lsm(hook = $hook)]
        pub fn $global(ctx: LsmContext) -> i32 {
            Global::verdict($body::<Global>(&ctx))
        }

        $(#[$doc])*
        #[lsm_cgroup(hook = $hook)]
        pub fn $per_cgroup(ctx: LsmContext) -> i32 {
            PerCgroup::verdict($body::<PerCgroup>(&ctx))
        }
    )*};
}

on_both_attachments! {
    /// open, openat, openat2, creat.
    "file_open" => sys_file_open, cg_file_open, file_open;
    /// read-like (MAY_READ) and write-like (MAY_WRITE) calls on an open file.
    "file_permission" => sys_file_permission, cg_file_permission, file_permission;
    /// ioctl.
    "file_ioctl" => sys_file_ioctl, cg_file_ioctl, file_ioctl;
    /// mmap (file-backed and anonymous; the path filter only matches file-backed maps).
    "mmap_file" => sys_mmap_file, cg_mmap_file, mmap_file;
    /// unlink, unlinkat.
    "inode_unlink" => sys_inode_unlink, cg_inode_unlink, inode_unlink;
    /// mkdir, mkdirat.
    "inode_mkdir" => sys_inode_mkdir, cg_inode_mkdir, inode_mkdir;
    /// rmdir.
    "inode_rmdir" => sys_inode_rmdir, cg_inode_rmdir, inode_rmdir;
    /// rename, renameat, renameat2 (the path filter looks at the source).
    "inode_rename" => sys_inode_rename, cg_inode_rename, inode_rename;
    /// execve, execveat.
    "bprm_check_security" => sys_bprm_check_security, cg_bprm_check_security, bprm_check_security;
    /// fork, vfork, clone, clone3 (checked in the parent, which is the current task).
    "task_alloc" => sys_task_alloc, cg_task_alloc, task_alloc;
    /// socket (sockets the kernel creates for itself are never failed).
    "socket_create" => sys_socket_create, cg_socket_create, socket_create;
    /// connect, with the remote filters applied to the address asked for.
    "socket_connect" => sys_socket_connect, cg_socket_connect, socket_connect;
    /// bind.
    "socket_bind" => sys_socket_bind, cg_socket_bind, socket_bind;
    /// listen.
    "socket_listen" => sys_socket_listen, cg_socket_listen, socket_listen;
    /// accept, accept4.
    "socket_accept" => sys_socket_accept, cg_socket_accept, socket_accept;
    /// sendmsg, sendto, send, sendmmsg.
    "socket_sendmsg" => sys_socket_sendmsg, cg_socket_sendmsg, socket_sendmsg;
    /// recvmsg, recvfrom, recv, recvmmsg.
    "socket_recvmsg" => sys_socket_recvmsg, cg_socket_recvmsg, socket_recvmsg;
}

#[inline(always)]
fn file_open<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_OPEN, || dentry::file_dentry(arg_address(ctx, 0)))
}

#[inline(always)]
fn file_permission<A: Attachment>(ctx: &LsmContext) -> u32 {
    let Some(fault) = A::live() else { return 0 };
    let mask: i32 = ctx.arg(1);
    let asked = fault.config.syscall_mask;
    let wanted = (mask & MAY_READ != 0 && asked & syscall_mask::READ != 0)
        || (mask & MAY_WRITE != 0 && asked & syscall_mask::WRITE != 0);
    if !wanted {
        return 0;
    }
    if fault.config.flags & flags::PATH_FILTER != 0
        && !dentry::under_directory(fault.config, dentry::file_dentry(arg_address(ctx, 0)))
    {
        return 0;
    }
    decide(&fault, site::LSM_READ_WRITE, None)
}

#[inline(always)]
fn file_ioctl<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_IOCTL, || dentry::file_dentry(arg_address(ctx, 0)))
}

#[inline(always)]
fn mmap_file<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_MMAP, || dentry::file_dentry(arg_address(ctx, 0)))
}

#[inline(always)]
fn inode_unlink<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_UNLINK, || arg_address(ctx, 1))
}

#[inline(always)]
fn inode_mkdir<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_MKDIR, || arg_address(ctx, 1))
}

#[inline(always)]
fn inode_rmdir<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_RMDIR, || arg_address(ctx, 1))
}

#[inline(always)]
fn inode_rename<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_RENAME, || arg_address(ctx, 1))
}

#[inline(always)]
fn bprm_check_security<A: Attachment>(ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_EXEC, || dentry::file_dentry(dentry::binprm_file(arg_address(ctx, 0))))
}

#[inline(always)]
fn task_alloc<A: Attachment>(_ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_FORK, || 0)
}

#[inline(always)]
fn socket_create<A: Attachment>(ctx: &LsmContext) -> u32 {
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return 0;
    }
    for_dentry::<A>(site::LSM_SOCKET, || 0)
}

#[inline(always)]
fn socket_connect<A: Attachment>(ctx: &LsmContext) -> u32 {
    let Some(fault) = A::live() else { return 0 };
    // The address is read when a filter or the trace needs it.
    let peer = if fault.config.net_filters != 0 || fault.config.flags & flags::TRACE != 0 {
        peer_of(arg_address(ctx, 1))
    } else {
        None
    };
    if fault.config.net_filters != 0 && !peer.as_ref().is_some_and(|peer| net::filter::matches(fault.config, peer)) {
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

#[inline(always)]
fn socket_bind<A: Attachment>(_ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_BIND, || 0)
}

#[inline(always)]
fn socket_listen<A: Attachment>(_ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_LISTEN, || 0)
}

#[inline(always)]
fn socket_accept<A: Attachment>(_ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_ACCEPT, || 0)
}

#[inline(always)]
fn socket_sendmsg<A: Attachment>(_ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_SENDMSG, || 0)
}

#[inline(always)]
fn socket_recvmsg<A: Attachment>(_ctx: &LsmContext) -> u32 {
    for_dentry::<A>(site::LSM_RECVMSG, || 0)
}
