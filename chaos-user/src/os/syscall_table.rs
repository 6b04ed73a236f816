//! x86_64 syscall numbers, for faults that watch syscalls by number (`syscall delay` on the raw
//! `sys_enter` tracepoint). These are ABI: they never change on a given architecture.

/// (name, number) on x86_64.
pub(crate) const X86_64: &[(&str, u32)] = &[
    ("read", 0),
    ("write", 1),
    ("open", 2),
    ("close", 3),
    ("stat", 4),
    ("fstat", 5),
    ("lstat", 6),
    ("poll", 7),
    ("lseek", 8),
    ("mmap", 9),
    ("mprotect", 10),
    ("munmap", 11),
    ("brk", 12),
    ("ioctl", 16),
    ("pread64", 17),
    ("pwrite64", 18),
    ("readv", 19),
    ("writev", 20),
    ("access", 21),
    ("pipe", 22),
    ("select", 23),
    ("sched_yield", 24),
    ("madvise", 28),
    ("dup", 32),
    ("dup2", 33),
    ("nanosleep", 35),
    ("getpid", 39),
    ("sendfile", 40),
    ("socket", 41),
    ("connect", 42),
    ("accept", 43),
    ("sendto", 44),
    ("recvfrom", 45),
    ("sendmsg", 46),
    ("recvmsg", 47),
    ("shutdown", 48),
    ("bind", 49),
    ("listen", 50),
    ("getsockname", 51),
    ("getpeername", 52),
    ("socketpair", 53),
    ("setsockopt", 54),
    ("getsockopt", 55),
    ("clone", 56),
    ("fork", 57),
    ("vfork", 58),
    ("execve", 59),
    ("wait4", 61),
    ("kill", 62),
    ("uname", 63),
    ("fcntl", 72),
    ("flock", 73),
    ("fsync", 74),
    ("fdatasync", 75),
    ("truncate", 76),
    ("ftruncate", 77),
    ("getdents", 78),
    ("getcwd", 79),
    ("chdir", 80),
    ("rename", 82),
    ("mkdir", 83),
    ("rmdir", 84),
    ("creat", 85),
    ("link", 86),
    ("unlink", 87),
    ("symlink", 88),
    ("readlink", 89),
    ("chmod", 90),
    ("fchmod", 91),
    ("chown", 92),
    ("umask", 95),
    ("gettimeofday", 96),
    ("getuid", 102),
    ("getppid", 110),
    ("statfs", 137),
    ("fstatfs", 138),
    ("sync", 162),
    ("gettid", 186),
    ("futex", 202),
    ("getdents64", 217),
    ("fadvise64", 221),
    ("clock_gettime", 228),
    ("clock_nanosleep", 230),
    ("epoll_wait", 232),
    ("epoll_ctl", 233),
    ("openat", 257),
    ("mkdirat", 258),
    ("newfstatat", 262),
    ("unlinkat", 263),
    ("renameat", 264),
    ("readlinkat", 267),
    ("ppoll", 271),
    ("splice", 275),
    ("sync_file_range", 277),
    ("epoll_pwait", 281),
    ("fallocate", 285),
    ("accept4", 288),
    ("eventfd2", 290),
    ("epoll_create1", 291),
    ("dup3", 292),
    ("pipe2", 293),
    ("preadv", 295),
    ("pwritev", 296),
    ("recvmmsg", 299),
    ("syncfs", 306),
    ("sendmmsg", 307),
    ("renameat2", 316),
    ("getrandom", 318),
    ("execveat", 322),
    ("copy_file_range", 326),
    ("preadv2", 327),
    ("pwritev2", 328),
    ("statx", 332),
    ("io_uring_enter", 426),
    ("openat2", 437),
    ("clone3", 435),
    ("epoll_pwait2", 441),
];

/// The number of syscall `name` on this architecture.
#[cfg(test)]
#[must_use]
pub(crate) fn number(name: &str) -> Option<u32> {
    X86_64.iter().find(|(n, _)| *n == name).map(|&(_, number)| number)
}

/// A syscall named for a fault that watches syscalls by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Numbered {
    pub name: &'static str,
    pub number: u32,
}

/// Parses `read,write,fsync` into syscalls this table knows.
pub(crate) fn parse_list(text: &str) -> Result<Vec<Numbered>, String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("syscall numbers are only known for x86_64 in this version of chaos".into());
    }
    let mut chosen: Vec<Numbered> = Vec::new();
    for name in text.split(',').map(str::trim) {
        let &(name, number) = X86_64.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            format!(
                "unknown syscall '{name}' for delays (chaos knows the x86_64 numbers of {} common syscalls)",
                X86_64.len()
            )
        })?;
        if !chosen.iter().any(|s| s.number == number) {
            chosen.push(Numbered { name, number });
        }
    }
    Ok(chosen)
}

/// The `SYSCALL_SET` bitmap for these syscalls.
#[must_use]
pub(crate) fn bitmap(syscalls: &[Numbered]) -> Vec<u64> {
    let mut words = vec![0u64; (chaos_common::SYSCALL_SET_BITS / 64) as usize];
    for syscall in syscalls {
        words[(syscall.number / 64) as usize] |= 1 << (syscall.number % 64);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_fit_the_bitmap() {
        for (i, (name, number)) in X86_64.iter().enumerate() {
            assert!(*number < chaos_common::SYSCALL_SET_BITS, "{name}");
            assert!(X86_64[i + 1..].iter().all(|(n, m)| n != name && m != number), "{name} {number} twice");
        }
        assert_eq!(number("openat"), Some(257));
    }

    #[test]
    fn lists_parse_into_a_bitmap() {
        let chosen = parse_list("read, write,read").unwrap();
        assert_eq!(chosen.len(), 2);
        let words = bitmap(&chosen);
        assert_eq!(words[0], 0b11);
        assert!(parse_list("reed").unwrap_err().contains("unknown syscall 'reed'"));
    }
}
