//! The error-injection backend of `syscall fail` (`--backend override`), its userspace half:
//! the program it attaches, and which calls take a file descriptor first (so `--path` can
//! resolve it through the task's file table). Which function a syscall enters through and
//! whether the kernel lets BPF override it (the error-injection list) are the kernel's facts:
//! `os::error_injection`. The kernel half is chaos-ebpf's `syscall/error_injection.rs`.
pub(crate) use crate::os::error_injection::{InjectionList, entry_function};

/// The program of the object every override attaches (once per entry function).
pub(crate) const PROGRAM: &str = "sys_override";

/// Syscalls whose first argument is a file descriptor: `--path` resolves it to its file
/// (`current->files->fdt->fd[fd]`) and walks that file's dentry like the LSM path does.
const FD_FIRST: &[&str] = &[
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "syncfs",
    "ftruncate",
    "fallocate",
    "fadvise64",
    "fstat",
    "fstatfs",
    "fchmod",
    "flock",
    "fcntl",
    "ioctl",
    "lseek",
    "getdents",
    "getdents64",
    "close",
];

/// Whether `--path` can narrow this syscall on the override backend. (`mmap`'s descriptor is
/// its fifth argument, so it is not in the list.)
#[must_use]
pub(crate) fn takes_fd_first(syscall: &str) -> bool {
    FD_FIRST.contains(&syscall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_with_a_descriptor_first_take_a_path() {
        assert!(takes_fd_first("fsync") && takes_fd_first("fdatasync") && takes_fd_first("write"));
        assert!(!takes_fd_first("getrandom") && !takes_fd_first("mmap") && !takes_fd_first("openat"));
        assert_eq!(entry_function("fsync").unwrap(), "__x64_sys_fsync");
    }
}
