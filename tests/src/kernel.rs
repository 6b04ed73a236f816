//! Asking the kernel directly what is attached, so tests never trust chaos's own bookkeeping.
use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::Path,
    thread,
    time::{Duration, Instant},
};

const BPF_PROG_QUERY: libc::c_long = 16;

/// cgroup attach types (enum bpf_attach_type).
#[derive(Clone, Copy, Debug)]
pub enum CgroupHook {
    InetIngress = 0,
    InetEgress = 1,
}

/// The `query` member of union bpf_attr, padded to a size every kernel since 4.15 accepts
/// (fields the kernel does not know must be zero, and are).
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    _tail: [u64; 6],
}

/// How many programs are attached to `cgroup_dir` at `hook` (directly, not inherited), by
/// BPF_PROG_QUERY.
pub fn programs_attached(cgroup_dir: &Path, hook: CgroupHook) -> io::Result<u32> {
    let cgroup = File::open(cgroup_dir)?;
    let mut attr = ProgQueryAttr { target_fd: cgroup.as_raw_fd() as u32, attach_type: hook as u32, ..Default::default() };
    // SAFETY: attr is a valid, zero-padded bpf_attr for BPF_PROG_QUERY; size matches.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_QUERY, &raw mut attr, std::mem::size_of::<ProgQueryAttr>() as u32)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr.prog_cnt)
}

/// Total programs on the cgroup's inet ingress and egress hooks.
pub fn inet_programs_attached(cgroup_dir: &Path) -> u32 {
    [CgroupHook::InetIngress, CgroupHook::InetEgress]
        .iter()
        .map(|&hook| programs_attached(cgroup_dir, hook).unwrap_or_else(|e| panic!("BPF_PROG_QUERY {}: {e}", cgroup_dir.display())))
        .sum()
}

/// Waits until `cgroup_dir` has `count` inet programs attached; panics after `timeout`.
pub fn wait_for_inet_programs(cgroup_dir: &Path, count: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = inet_programs_attached(cgroup_dir);
        if now == count {
            return;
        }
        assert!(Instant::now() < deadline, "{} has {now} inet programs attached, expected {count}", cgroup_dir.display());
        thread::sleep(Duration::from_millis(10));
    }
}

/// `CLOCK_MONOTONIC` now in ns: the clock of `bpf_ktime_get_ns()` and of chaos's deadlines.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
