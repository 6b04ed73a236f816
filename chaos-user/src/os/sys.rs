//! Thin wrappers over the few system calls chaos makes itself.
use std::{fs, io, time::Duration};

/// `CLOCK_MONOTONIC` now, in ns: the clock `bpf_ktime_get_ns()` reads in the kernel, so deadlines
/// computed here are the ones the programs compare against.
#[must_use]
pub(crate) fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A monotonic deadline `after` from now, in ns.
#[must_use]
pub(crate) fn monotonic_deadline_ns(after: Duration) -> u64 {
    monotonic_now_ns().saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX))
}

/// Lifts the limits loading and holding faults runs into: RLIMIT_MEMLOCK, which kernels before
/// 5.11 charge BPF maps to (they fail with a misleading EPERM there; harmless on newer ones), and
/// RLIMIT_NOFILE's soft limit up to its hard one: every map and program of a loaded fault is a
/// descriptor (about 30 a fault), so at the usual soft limit of 1024 a daemon holding 43 faults
/// got EMFILE. Raising the soft limit to the hard one is what systemd asks of services that
/// need many descriptors.
pub(crate) fn raise_resource_limits() -> io::Result<()> {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer to an rlimit.
    let memlock = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) };
    let memlock = if memlock == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    let mut files = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointers to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut files) } == 0 && files.rlim_cur < files.rlim_max {
        files.rlim_cur = files.rlim_max;
        // SAFETY: as above; lowering nothing, only the soft limit up to the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const files) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    memlock
}

/// Capabilities chaos cares about, by bit number (linux/capability.h).
pub(crate) const CAP_NET_ADMIN: u32 = 12;
pub(crate) const CAP_SYS_ADMIN: u32 = 21;
pub(crate) const CAP_PERFMON: u32 = 38;
pub(crate) const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from /proc/self/status.
pub(crate) fn effective_capabilities() -> io::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| io::Error::other("no CapEff line in /proc/self/status"))
}

#[must_use]
pub(crate) const fn has_capability(set: u64, cap: u32) -> bool {
    set & (1 << cap) != 0
}

/// The running kernel's release, e.g. "6.1.0-56-amd64".
#[must_use]
pub(crate) fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_soft_limit_is_raised_to_the_hard_one() {
        let mut files = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: valid pointer; this test process's own limit, lowered for the test.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut files) };
        let lowered = libc::rlimit { rlim_cur: files.rlim_max.min(256), rlim_max: files.rlim_max };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lowered) }, 0);
        // MEMLOCK may not be raised without privileges; NOFILE's soft limit always can be.
        let _ = super::raise_resource_limits();
        let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut now) };
        assert_eq!(now.rlim_cur, files.rlim_max, "soft limit raised to the hard one");
    }
}
