//! Every x86_64 syscall by number and by the name users type, for the faults that watch
//! syscalls by number (`syscall delay`, crash points on the raw `sys_enter` tracepoint) and the
//! ones that attach to a syscall's entry function (fentry, error injection's kprobe).
//!
//! The table is the kernel's own (`arch/x86/entry/syscalls/syscall_64.tbl`, the `common` and
//! `64` ABIs, through Linux 6.18): the names are the ones libc's `SYS_*` constants, strace and
//! the kernel use (`newfstatat`, `pread64`, `umount2`), and the entry point is the function the
//! call enters through (`stat` enters `__x64_sys_newstat`). Numbers are ABI: they never change
//! on an architecture. A kernel older than a syscall still passes its number to `sys_enter` (and
//! fails the call with ENOSYS); fentry and error injection need the function in the running
//! kernel, which they check.

/// One x86_64 syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Syscall {
    /// The name users type (libc's `SYS_<name>`, strace's).
    pub name: &'static str,
    pub number: u32,
    /// The kernel function the call enters through, without its `__x64_sys_` prefix; `None` for
    /// numbers the kernel leaves unimplemented (`sys_ni_syscall`: every call fails with ENOSYS).
    pub entry: Option<&'static str>,
}

impl Syscall {
    /// The function the call enters the kernel through (`__x64_sys_newstat` for `stat`), where
    /// fentry and error injection's kprobe attach.
    #[must_use]
    pub(crate) fn entry_function(&self) -> Option<String> {
        self.entry.map(|entry| format!("__x64_sys_{entry}"))
    }
}

/// A syscall whose entry function has its name.
const fn sys(name: &'static str, number: u32) -> Syscall {
    Syscall { name, number, entry: Some(name) }
}

/// A syscall whose entry function has another name (`stat` enters `sys_newstat`).
const fn via(name: &'static str, number: u32, entry: &'static str) -> Syscall {
    Syscall { name, number, entry: Some(entry) }
}

/// A number the kernel leaves unimplemented (removed, or never built on x86_64).
const fn ni(name: &'static str, number: u32) -> Syscall {
    Syscall { name, number, entry: None }
}

/// Every x86_64 syscall, by number.
pub(crate) const X86_64: &[Syscall] = &[
    sys("read", 0),
    sys("write", 1),
    sys("open", 2),
    sys("close", 3),
    via("stat", 4, "newstat"),
    via("fstat", 5, "newfstat"),
    via("lstat", 6, "newlstat"),
    sys("poll", 7),
    sys("lseek", 8),
    sys("mmap", 9),
    sys("mprotect", 10),
    sys("munmap", 11),
    sys("brk", 12),
    sys("rt_sigaction", 13),
    sys("rt_sigprocmask", 14),
    sys("rt_sigreturn", 15),
    sys("ioctl", 16),
    sys("pread64", 17),
    sys("pwrite64", 18),
    sys("readv", 19),
    sys("writev", 20),
    sys("access", 21),
    sys("pipe", 22),
    sys("select", 23),
    sys("sched_yield", 24),
    sys("mremap", 25),
    sys("msync", 26),
    sys("mincore", 27),
    sys("madvise", 28),
    sys("shmget", 29),
    sys("shmat", 30),
    sys("shmctl", 31),
    sys("dup", 32),
    sys("dup2", 33),
    sys("pause", 34),
    sys("nanosleep", 35),
    sys("getitimer", 36),
    sys("alarm", 37),
    sys("setitimer", 38),
    sys("getpid", 39),
    via("sendfile", 40, "sendfile64"),
    sys("socket", 41),
    sys("connect", 42),
    sys("accept", 43),
    sys("sendto", 44),
    sys("recvfrom", 45),
    sys("sendmsg", 46),
    sys("recvmsg", 47),
    sys("shutdown", 48),
    sys("bind", 49),
    sys("listen", 50),
    sys("getsockname", 51),
    sys("getpeername", 52),
    sys("socketpair", 53),
    sys("setsockopt", 54),
    sys("getsockopt", 55),
    sys("clone", 56),
    sys("fork", 57),
    sys("vfork", 58),
    sys("execve", 59),
    sys("exit", 60),
    sys("wait4", 61),
    sys("kill", 62),
    via("uname", 63, "newuname"),
    sys("semget", 64),
    sys("semop", 65),
    sys("semctl", 66),
    sys("shmdt", 67),
    sys("msgget", 68),
    sys("msgsnd", 69),
    sys("msgrcv", 70),
    sys("msgctl", 71),
    sys("fcntl", 72),
    sys("flock", 73),
    sys("fsync", 74),
    sys("fdatasync", 75),
    sys("truncate", 76),
    sys("ftruncate", 77),
    sys("getdents", 78),
    sys("getcwd", 79),
    sys("chdir", 80),
    sys("fchdir", 81),
    sys("rename", 82),
    sys("mkdir", 83),
    sys("rmdir", 84),
    sys("creat", 85),
    sys("link", 86),
    sys("unlink", 87),
    sys("symlink", 88),
    sys("readlink", 89),
    sys("chmod", 90),
    sys("fchmod", 91),
    sys("chown", 92),
    sys("fchown", 93),
    sys("lchown", 94),
    sys("umask", 95),
    sys("gettimeofday", 96),
    sys("getrlimit", 97),
    sys("getrusage", 98),
    sys("sysinfo", 99),
    sys("times", 100),
    sys("ptrace", 101),
    sys("getuid", 102),
    sys("syslog", 103),
    sys("getgid", 104),
    sys("setuid", 105),
    sys("setgid", 106),
    sys("geteuid", 107),
    sys("getegid", 108),
    sys("setpgid", 109),
    sys("getppid", 110),
    sys("getpgrp", 111),
    sys("setsid", 112),
    sys("setreuid", 113),
    sys("setregid", 114),
    sys("getgroups", 115),
    sys("setgroups", 116),
    sys("setresuid", 117),
    sys("getresuid", 118),
    sys("setresgid", 119),
    sys("getresgid", 120),
    sys("getpgid", 121),
    sys("setfsuid", 122),
    sys("setfsgid", 123),
    sys("getsid", 124),
    sys("capget", 125),
    sys("capset", 126),
    sys("rt_sigpending", 127),
    sys("rt_sigtimedwait", 128),
    sys("rt_sigqueueinfo", 129),
    sys("rt_sigsuspend", 130),
    sys("sigaltstack", 131),
    sys("utime", 132),
    sys("mknod", 133),
    ni("uselib", 134),
    sys("personality", 135),
    sys("ustat", 136),
    sys("statfs", 137),
    sys("fstatfs", 138),
    sys("sysfs", 139),
    sys("getpriority", 140),
    sys("setpriority", 141),
    sys("sched_setparam", 142),
    sys("sched_getparam", 143),
    sys("sched_setscheduler", 144),
    sys("sched_getscheduler", 145),
    sys("sched_get_priority_max", 146),
    sys("sched_get_priority_min", 147),
    sys("sched_rr_get_interval", 148),
    sys("mlock", 149),
    sys("munlock", 150),
    sys("mlockall", 151),
    sys("munlockall", 152),
    sys("vhangup", 153),
    sys("modify_ldt", 154),
    sys("pivot_root", 155),
    ni("_sysctl", 156),
    sys("prctl", 157),
    sys("arch_prctl", 158),
    sys("adjtimex", 159),
    sys("setrlimit", 160),
    sys("chroot", 161),
    sys("sync", 162),
    sys("acct", 163),
    sys("settimeofday", 164),
    sys("mount", 165),
    via("umount2", 166, "umount"),
    sys("swapon", 167),
    sys("swapoff", 168),
    sys("reboot", 169),
    sys("sethostname", 170),
    sys("setdomainname", 171),
    sys("iopl", 172),
    sys("ioperm", 173),
    ni("create_module", 174),
    sys("init_module", 175),
    sys("delete_module", 176),
    ni("get_kernel_syms", 177),
    ni("query_module", 178),
    sys("quotactl", 179),
    ni("nfsservctl", 180),
    ni("getpmsg", 181),
    ni("putpmsg", 182),
    ni("afs_syscall", 183),
    ni("tuxcall", 184),
    ni("security", 185),
    sys("gettid", 186),
    sys("readahead", 187),
    sys("setxattr", 188),
    sys("lsetxattr", 189),
    sys("fsetxattr", 190),
    sys("getxattr", 191),
    sys("lgetxattr", 192),
    sys("fgetxattr", 193),
    sys("listxattr", 194),
    sys("llistxattr", 195),
    sys("flistxattr", 196),
    sys("removexattr", 197),
    sys("lremovexattr", 198),
    sys("fremovexattr", 199),
    sys("tkill", 200),
    sys("time", 201),
    sys("futex", 202),
    sys("sched_setaffinity", 203),
    sys("sched_getaffinity", 204),
    ni("set_thread_area", 205),
    sys("io_setup", 206),
    sys("io_destroy", 207),
    sys("io_getevents", 208),
    sys("io_submit", 209),
    sys("io_cancel", 210),
    ni("get_thread_area", 211),
    sys("lookup_dcookie", 212),
    sys("epoll_create", 213),
    ni("epoll_ctl_old", 214),
    ni("epoll_wait_old", 215),
    sys("remap_file_pages", 216),
    sys("getdents64", 217),
    sys("set_tid_address", 218),
    sys("restart_syscall", 219),
    sys("semtimedop", 220),
    sys("fadvise64", 221),
    sys("timer_create", 222),
    sys("timer_settime", 223),
    sys("timer_gettime", 224),
    sys("timer_getoverrun", 225),
    sys("timer_delete", 226),
    sys("clock_settime", 227),
    sys("clock_gettime", 228),
    sys("clock_getres", 229),
    sys("clock_nanosleep", 230),
    sys("exit_group", 231),
    sys("epoll_wait", 232),
    sys("epoll_ctl", 233),
    sys("tgkill", 234),
    sys("utimes", 235),
    ni("vserver", 236),
    sys("mbind", 237),
    sys("set_mempolicy", 238),
    sys("get_mempolicy", 239),
    sys("mq_open", 240),
    sys("mq_unlink", 241),
    sys("mq_timedsend", 242),
    sys("mq_timedreceive", 243),
    sys("mq_notify", 244),
    sys("mq_getsetattr", 245),
    sys("kexec_load", 246),
    sys("waitid", 247),
    sys("add_key", 248),
    sys("request_key", 249),
    sys("keyctl", 250),
    sys("ioprio_set", 251),
    sys("ioprio_get", 252),
    sys("inotify_init", 253),
    sys("inotify_add_watch", 254),
    sys("inotify_rm_watch", 255),
    sys("migrate_pages", 256),
    sys("openat", 257),
    sys("mkdirat", 258),
    sys("mknodat", 259),
    sys("fchownat", 260),
    sys("futimesat", 261),
    sys("newfstatat", 262),
    sys("unlinkat", 263),
    sys("renameat", 264),
    sys("linkat", 265),
    sys("symlinkat", 266),
    sys("readlinkat", 267),
    sys("fchmodat", 268),
    sys("faccessat", 269),
    sys("pselect6", 270),
    sys("ppoll", 271),
    sys("unshare", 272),
    sys("set_robust_list", 273),
    sys("get_robust_list", 274),
    sys("splice", 275),
    sys("tee", 276),
    sys("sync_file_range", 277),
    sys("vmsplice", 278),
    sys("move_pages", 279),
    sys("utimensat", 280),
    sys("epoll_pwait", 281),
    sys("signalfd", 282),
    sys("timerfd_create", 283),
    sys("eventfd", 284),
    sys("fallocate", 285),
    sys("timerfd_settime", 286),
    sys("timerfd_gettime", 287),
    sys("accept4", 288),
    sys("signalfd4", 289),
    sys("eventfd2", 290),
    sys("epoll_create1", 291),
    sys("dup3", 292),
    sys("pipe2", 293),
    sys("inotify_init1", 294),
    sys("preadv", 295),
    sys("pwritev", 296),
    sys("rt_tgsigqueueinfo", 297),
    sys("perf_event_open", 298),
    sys("recvmmsg", 299),
    sys("fanotify_init", 300),
    sys("fanotify_mark", 301),
    sys("prlimit64", 302),
    sys("name_to_handle_at", 303),
    sys("open_by_handle_at", 304),
    sys("clock_adjtime", 305),
    sys("syncfs", 306),
    sys("sendmmsg", 307),
    sys("setns", 308),
    sys("getcpu", 309),
    sys("process_vm_readv", 310),
    sys("process_vm_writev", 311),
    sys("kcmp", 312),
    sys("finit_module", 313),
    sys("sched_setattr", 314),
    sys("sched_getattr", 315),
    sys("renameat2", 316),
    sys("seccomp", 317),
    sys("getrandom", 318),
    sys("memfd_create", 319),
    sys("kexec_file_load", 320),
    sys("bpf", 321),
    sys("execveat", 322),
    sys("userfaultfd", 323),
    sys("membarrier", 324),
    sys("mlock2", 325),
    sys("copy_file_range", 326),
    sys("preadv2", 327),
    sys("pwritev2", 328),
    sys("pkey_mprotect", 329),
    sys("pkey_alloc", 330),
    sys("pkey_free", 331),
    sys("statx", 332),
    sys("io_pgetevents", 333),
    sys("rseq", 334),
    sys("uretprobe", 335),
    sys("uprobe", 336),
    sys("pidfd_send_signal", 424),
    sys("io_uring_setup", 425),
    sys("io_uring_enter", 426),
    sys("io_uring_register", 427),
    sys("open_tree", 428),
    sys("move_mount", 429),
    sys("fsopen", 430),
    sys("fsconfig", 431),
    sys("fsmount", 432),
    sys("fspick", 433),
    sys("pidfd_open", 434),
    sys("clone3", 435),
    sys("close_range", 436),
    sys("openat2", 437),
    sys("pidfd_getfd", 438),
    sys("faccessat2", 439),
    sys("process_madvise", 440),
    sys("epoll_pwait2", 441),
    sys("mount_setattr", 442),
    sys("quotactl_fd", 443),
    sys("landlock_create_ruleset", 444),
    sys("landlock_add_rule", 445),
    sys("landlock_restrict_self", 446),
    sys("memfd_secret", 447),
    sys("process_mrelease", 448),
    sys("futex_waitv", 449),
    sys("set_mempolicy_home_node", 450),
    sys("cachestat", 451),
    sys("fchmodat2", 452),
    sys("map_shadow_stack", 453),
    sys("futex_wake", 454),
    sys("futex_wait", 455),
    sys("futex_requeue", 456),
    sys("statmount", 457),
    sys("listmount", 458),
    sys("lsm_get_self_attr", 459),
    sys("lsm_set_self_attr", 460),
    sys("lsm_list_modules", 461),
    sys("mseal", 462),
    sys("setxattrat", 463),
    sys("getxattrat", 464),
    sys("listxattrat", 465),
    sys("removexattrat", 466),
    sys("open_tree_attr", 467),
    sys("file_getattr", 468),
    sys("file_setattr", 469),
];

/// Syscall `name` on this architecture.
#[must_use]
pub(crate) fn find(name: &str) -> Option<&'static Syscall> {
    X86_64.iter().find(|s| s.name == name)
}

/// The number of syscall `name` on this architecture.
#[cfg(test)]
#[must_use]
pub(crate) fn number(name: &str) -> Option<u32> {
    find(name).map(|s| s.number)
}

/// The name of syscall `number`, for people.
#[must_use]
pub(crate) fn name_of(number: u32) -> Option<&'static str> {
    X86_64.iter().find(|s| s.number == number).map(|s| s.name)
}

/// The entry function of syscall `name` (`__x64_sys_newstat` for `stat`), or why there is none.
pub(crate) fn entry_function(name: &str) -> Result<String, String> {
    let syscall = find(name).ok_or_else(|| format!("unknown syscall '{name}'"))?;
    syscall.entry_function().ok_or_else(|| {
        format!("{name} (x86_64 syscall {}) is not implemented by Linux: every call fails with ENOSYS", syscall.number)
    })
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
        let syscall = find(name).ok_or_else(|| unknown(name))?;
        if !chosen.iter().any(|s| s.number == syscall.number) {
            chosen.push(Numbered { name: syscall.name, number: syscall.number });
        }
    }
    Ok(chosen)
}

/// Why `name` is refused: not an x86_64 syscall, with the names a typo away from it.
fn unknown(name: &str) -> String {
    let close: Vec<&str> = X86_64.iter().map(|s| s.name).filter(|n| edit_distance(n, name) <= 2).take(6).collect();
    let hint = if close.is_empty() { String::new() } else { format!(" (did you mean {}?)", close.join(", ")) };
    format!("unknown syscall '{name}': not an x86_64 syscall{hint}; `chaos syscall list` shows all {}", X86_64.len())
}

/// Levenshtein distance (names are short ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
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
    fn numbers_and_names_are_unique_and_fit_the_bitmap() {
        for (i, syscall) in X86_64.iter().enumerate() {
            assert!(syscall.number < chaos_common::SYSCALL_SET_BITS, "{syscall:?}");
            assert!(
                X86_64[i + 1..].iter().all(|s| s.name != syscall.name && s.number != syscall.number),
                "{syscall:?} twice"
            );
            assert!(X86_64[..i].iter().all(|s| s.number < syscall.number), "{syscall:?} out of order");
        }
        assert_eq!(X86_64.len(), 383);
    }

    #[test]
    fn the_table_agrees_with_libc() {
        // libc's constants come from the same kernel table; a sample across the whole range.
        for (name, constant) in [
            ("read", libc::SYS_read),
            ("stat", libc::SYS_stat),
            ("sendfile", libc::SYS_sendfile),
            ("umount2", libc::SYS_umount2),
            ("tuxcall", libc::SYS_tuxcall),
            ("newfstatat", libc::SYS_newfstatat),
            ("sync_file_range", libc::SYS_sync_file_range),
            ("fallocate", libc::SYS_fallocate),
            ("bpf", libc::SYS_bpf),
            ("copy_file_range", libc::SYS_copy_file_range),
            ("rseq", libc::SYS_rseq),
            ("pidfd_send_signal", libc::SYS_pidfd_send_signal),
            ("io_uring_enter", libc::SYS_io_uring_enter),
            ("quotactl_fd", libc::SYS_quotactl_fd),
            ("set_mempolicy_home_node", libc::SYS_set_mempolicy_home_node),
            ("fchmodat2", libc::SYS_fchmodat2),
            ("mseal", libc::SYS_mseal),
        ] {
            assert_eq!(number(name).map(i64::from), Some(constant), "{name}");
        }
    }

    #[test]
    fn entry_functions_follow_the_kernel_table() {
        assert_eq!(entry_function("fsync").unwrap(), "__x64_sys_fsync");
        assert_eq!(entry_function("stat").unwrap(), "__x64_sys_newstat");
        assert_eq!(entry_function("sendfile").unwrap(), "__x64_sys_sendfile64");
        assert!(entry_function("tuxcall").unwrap_err().contains("not implemented"));
        assert_eq!(name_of(426), Some("io_uring_enter"));
    }

    #[test]
    fn lists_parse_into_a_bitmap() {
        let chosen = parse_list("read, write,read").unwrap();
        assert_eq!(chosen.len(), 2);
        let words = bitmap(&chosen);
        assert_eq!(words[0], 0b11);
        let err = parse_list("reed").unwrap_err();
        assert!(err.contains("unknown syscall 'reed'") && err.contains("did you mean read"), "{err}");
        for name in ["bpf", "io_uring_enter", "copy_file_range", "sync_file_range", "fallocate"] {
            assert_eq!(parse_list(name).unwrap()[0].name, name);
        }
    }
}
