//! Which kernel hook serves which syscall, through which mechanism, with which filters.
//!
//! Three mechanisms: BPF LSM hooks (any of the syscalls below, where `bpf` is an active LSM),
//! cgroup socket hooks (a few socket calls, on every kernel), and error injection (a kprobe on
//! the syscall's entry function, any syscall on the kernel's error-injection list: also the
//! calls with no hook at all, such as fsync, which [`entry_only`] adds). An LSM hook sits behind the
//! syscall, so one hook serves several syscalls (file_permission serves read and write, told
//! apart by the access mask). `chaos syscall list` prints this table for the running kernel.
use std::sync::LazyLock;

use chaos_common::syscall_mask;

use crate::{fault::syscall::error_injection, os::syscall_table as syscall_numbers};

/// A BPF LSM hook and the object's two programs on it: the global one (`lsm`) and its
/// per-cgroup twin (`lsm_cgroup`), which share their body (chaos-ebpf's syscall/lsm.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LsmHook {
    pub program: &'static str,
    /// `lsm/<hook name>`, as the object's section spells it.
    pub hook: &'static str,
    pub cgroup_program: &'static str,
    /// `lsm_cgroup/<hook name>`.
    pub cgroup_hook: &'static str,
    /// `syscall_mask` bits this syscall sets (hooks serving several kinds of access).
    pub mask: u32,
}

/// A cgroup program of the object (attached to the target cgroup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CgroupHook {
    pub program: &'static str,
    pub hook: &'static str,
}

/// What a syscall's fault can be narrowed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    None,
    /// `--path`: the file (or directory entry) is under a directory.
    Path,
    /// `--remote`, `--remote-port`: the address the call is about.
    Remote,
}

impl LsmHook {
    /// The LSM hook's own name (`file_open`), which the kernel's BTF knows.
    #[must_use]
    pub(crate) fn name(&self) -> &'static str {
        self.hook.strip_prefix("lsm/").unwrap_or(self.hook)
    }

    /// Whether a per-cgroup program on this hook runs for the cgroup of the *socket* the call
    /// is about rather than the calling task's: the kernel's rule for hooks whose first
    /// argument is a `struct socket *` (kernel/bpf/bpf_lsm.c, `bpf_lsm_find_cgroup_shim`). A
    /// socket keeps the cgroup it was created in, so such a fault misses sockets the target got
    /// from elsewhere (passed in, or opened before it joined the cgroup) and follows the
    /// target's sockets into other processes, as cgroup sock_addr hooks do.
    #[must_use]
    pub(crate) fn per_socket(&self) -> bool {
        is_socket_hook(self.name())
    }
}

/// See [`LsmHook::per_socket`]: the hooks of chaos whose first argument is a `struct socket *`.
#[must_use]
pub(crate) fn is_socket_hook(hook: &str) -> bool {
    matches!(
        hook,
        "socket_connect" | "socket_bind" | "socket_listen" | "socket_accept" | "socket_sendmsg" | "socket_recvmsg"
    )
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Syscall {
    pub name: &'static str,
    pub lsm: Option<LsmHook>,
    /// Cgroup hooks covering the call (both address families where there are two).
    pub cgroup: &'static [CgroupHook],
    /// Filters on the LSM path, and on the cgroup path.
    pub lsm_filter: Filter,
    pub cgroup_filter: Filter,
    /// What the cgroup hooks do not cover, said in `syscall list`.
    pub cgroup_note: &'static str,
}

/// The programs of hook `name` (the object names them `sys_<name>` and `cg_<name>`), with the
/// `syscall_mask` bits the syscall sets.
macro_rules! lsm {
    ($name:literal $(, $mask:expr)?) => {
        Some(LsmHook {
            program: concat!("sys_", $name),
            hook: concat!("lsm/", $name),
            cgroup_program: concat!("cg_", $name),
            cgroup_hook: concat!("lsm_cgroup/", $name),
            mask: 0 $(| $mask)?,
        })
    };
}

const NO_CGROUP: &[CgroupHook] = &[];
const CONNECT: &[CgroupHook] = &[
    CgroupHook { program: "sys_connect4", hook: "cgroup/connect4" },
    CgroupHook { program: "sys_connect6", hook: "cgroup/connect6" },
];
const BIND: &[CgroupHook] = &[
    CgroupHook { program: "sys_bind4", hook: "cgroup/bind4" },
    CgroupHook { program: "sys_bind6", hook: "cgroup/bind6" },
];
const SENDMSG: &[CgroupHook] = &[
    CgroupHook { program: "sys_sendmsg4", hook: "cgroup/sendmsg4" },
    CgroupHook { program: "sys_sendmsg6", hook: "cgroup/sendmsg6" },
];
const SOCK_CREATE: &[CgroupHook] = &[CgroupHook { program: "sys_sock_create", hook: "cgroup/sock_create" }];
const SETSOCKOPT: &[CgroupHook] = &[CgroupHook { program: "sys_setsockopt", hook: "cgroup/setsockopt" }];
const GETSOCKOPT: &[CgroupHook] = &[CgroupHook { program: "sys_getsockopt", hook: "cgroup/getsockopt" }];

macro_rules! syscalls {
    ($($name:literal => $lsm:expr, $lsm_filter:ident, $cgroup:expr, $cgroup_filter:ident, $note:literal;)*) => {
        pub(crate) const SYSCALLS: &[Syscall] = &[$(Syscall {
            name: $name,
            lsm: $lsm,
            cgroup: $cgroup,
            lsm_filter: Filter::$lsm_filter,
            cgroup_filter: Filter::$cgroup_filter,
            cgroup_note: $note,
        }),*];
    };
}

syscalls! {
    "open" => lsm!("file_open"), Path, NO_CGROUP, None, "";
    "openat" => lsm!("file_open"), Path, NO_CGROUP, None, "";
    "openat2" => lsm!("file_open"), Path, NO_CGROUP, None, "";
    "creat" => lsm!("file_open"), Path, NO_CGROUP, None, "";
    "read" => lsm!("file_permission", syscall_mask::READ), Path, NO_CGROUP, None, "";
    "readv" => lsm!("file_permission", syscall_mask::READ), Path, NO_CGROUP, None, "";
    "pread64" => lsm!("file_permission", syscall_mask::READ), Path, NO_CGROUP, None, "";
    "preadv" => lsm!("file_permission", syscall_mask::READ), Path, NO_CGROUP, None, "";
    "preadv2" => lsm!("file_permission", syscall_mask::READ), Path, NO_CGROUP, None, "";
    "write" => lsm!("file_permission", syscall_mask::WRITE), Path, NO_CGROUP, None, "";
    "writev" => lsm!("file_permission", syscall_mask::WRITE), Path, NO_CGROUP, None, "";
    "pwrite64" => lsm!("file_permission", syscall_mask::WRITE), Path, NO_CGROUP, None, "";
    "pwritev" => lsm!("file_permission", syscall_mask::WRITE), Path, NO_CGROUP, None, "";
    "pwritev2" => lsm!("file_permission", syscall_mask::WRITE), Path, NO_CGROUP, None, "";
    "ioctl" => lsm!("file_ioctl"), Path, NO_CGROUP, None, "";
    "mmap" => lsm!("mmap_file"), Path, NO_CGROUP, None, "";
    "unlink" => lsm!("inode_unlink"), Path, NO_CGROUP, None, "";
    "unlinkat" => lsm!("inode_unlink"), Path, NO_CGROUP, None, "";
    "mkdir" => lsm!("inode_mkdir"), Path, NO_CGROUP, None, "";
    "mkdirat" => lsm!("inode_mkdir"), Path, NO_CGROUP, None, "";
    "rmdir" => lsm!("inode_rmdir"), Path, NO_CGROUP, None, "";
    "rename" => lsm!("inode_rename"), Path, NO_CGROUP, None, "";
    "renameat" => lsm!("inode_rename"), Path, NO_CGROUP, None, "";
    "renameat2" => lsm!("inode_rename"), Path, NO_CGROUP, None, "";
    "execve" => lsm!("bprm_check_security"), Path, NO_CGROUP, None, "";
    "execveat" => lsm!("bprm_check_security"), Path, NO_CGROUP, None, "";
    "fork" => lsm!("task_alloc"), None, NO_CGROUP, None, "";
    "vfork" => lsm!("task_alloc"), None, NO_CGROUP, None, "";
    "clone" => lsm!("task_alloc"), None, NO_CGROUP, None, "";
    "clone3" => lsm!("task_alloc"), None, NO_CGROUP, None, "";
    "socket" => lsm!("socket_create"), None, SOCK_CREATE, None, "IPv4 and IPv6 sockets only";
    "connect" => lsm!("socket_connect"), Remote, CONNECT, Remote, "IPv4 and IPv6 sockets only";
    "bind" => lsm!("socket_bind"), None, BIND, None, "IPv4 and IPv6 sockets only";
    "listen" => lsm!("socket_listen"), None, NO_CGROUP, None, "";
    "accept" => lsm!("socket_accept"), None, NO_CGROUP, None, "";
    "accept4" => lsm!("socket_accept"), None, NO_CGROUP, None, "";
    "sendto" => lsm!("socket_sendmsg"), None, SENDMSG, Remote, "only UDP sends with an address on an unconnected socket";
    "sendmsg" => lsm!("socket_sendmsg"), None, SENDMSG, Remote, "only UDP sends with an address on an unconnected socket";
    "sendmmsg" => lsm!("socket_sendmsg"), None, SENDMSG, Remote, "only UDP sends with an address on an unconnected socket";
    "recvfrom" => lsm!("socket_recvmsg"), None, NO_CGROUP, None, "";
    "recvmsg" => lsm!("socket_recvmsg"), None, NO_CGROUP, None, "";
    "recvmmsg" => lsm!("socket_recvmsg"), None, NO_CGROUP, None, "";
    "setsockopt" => None, None, SETSOCKOPT, None, "";
    "getsockopt" => None, None, GETSOCKOPT, None, "";
}

impl Syscall {
    /// What `--path` can narrow on the error-injection backend: the file of a first-argument
    /// descriptor.
    #[must_use]
    pub(crate) fn override_filter(&self) -> Filter {
        if error_injection::takes_fd_first(self.name) { Filter::Path } else { Filter::None }
    }
}

/// The syscalls with no LSM or cgroup hook in chaos (fsync, fdatasync, getrandom, ...): only
/// error injection serves them. Every other x86_64 syscall (numbers.rs).
pub(crate) fn entry_only() -> &'static [Syscall] {
    static ENTRY_ONLY: LazyLock<Vec<Syscall>> = LazyLock::new(|| {
        syscall_numbers::X86_64
            .iter()
            .filter(|numbered| !SYSCALLS.iter().any(|s| s.name == numbered.name))
            .map(|numbered| Syscall {
                name: numbered.name,
                lsm: None,
                cgroup: NO_CGROUP,
                lsm_filter: Filter::None,
                cgroup_filter: Filter::None,
                cgroup_note: "",
            })
            .collect()
    });
    &ENTRY_ONLY
}

/// Looks a syscall up by name.
#[must_use]
pub(crate) fn find(name: &str) -> Option<&'static Syscall> {
    SYSCALLS.iter().chain(entry_only()).find(|s| s.name == name)
}

/// Parses `openat,read`: every name must be one chaos knows.
pub(crate) fn parse_list(text: &str) -> Result<Vec<&'static Syscall>, String> {
    let mut chosen: Vec<&'static Syscall> = Vec::new();
    for name in text.split(',').map(str::trim) {
        let syscall = find(name).ok_or_else(|| {
            let close: Vec<&str> = SYSCALLS
                .iter()
                .chain(entry_only())
                .map(|s| s.name)
                .filter(|n| n.starts_with(&name[..name.len().min(3)]))
                .collect();
            let hint = if close.is_empty() { String::new() } else { format!(" (did you mean {}?)", close.join(", ")) };
            format!("unknown syscall '{name}'{hint}; `chaos syscall list` shows the ones chaos can fail")
        })?;
        if !chosen.iter().any(|s| s.name == syscall.name) {
            chosen.push(syscall);
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syscall_has_a_mechanism() {
        for syscall in SYSCALLS {
            assert!(syscall.lsm.is_some() || !syscall.cgroup.is_empty(), "{} has no hook", syscall.name);
        }
    }

    #[test]
    fn lists_parse_and_unknown_names_get_a_hint() {
        let names: Vec<&str> = parse_list("openat, read,openat").unwrap().iter().map(|s| s.name).collect();
        assert_eq!(names, ["openat", "read"]);
        let err = parse_list("opnat").unwrap_err();
        assert!(err.contains("unknown syscall 'opnat'") && err.contains("chaos syscall list"), "{err}");
        assert!(parse_list("conect").unwrap_err().contains("did you mean connect"));
    }

    #[test]
    fn calls_without_a_hook_are_known_for_error_injection() {
        let fsync = find("fsync").expect("fsync is known");
        assert!(fsync.lsm.is_none() && fsync.cgroup.is_empty());
        assert_eq!(fsync.override_filter(), Filter::Path);
        assert_eq!(find("getrandom").unwrap().override_filter(), Filter::None);
        assert!(entry_only().iter().all(|s| !SYSCALLS.iter().any(|t| t.name == s.name)));
    }
}
