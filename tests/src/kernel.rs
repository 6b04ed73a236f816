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
    let mut attr =
        ProgQueryAttr { target_fd: cgroup.as_raw_fd() as u32, attach_type: hook as u32, ..Default::default() };
    // SAFETY: attr is a valid, zero-padded bpf_attr for BPF_PROG_QUERY; size matches.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_QUERY, &raw mut attr, std::mem::size_of::<ProgQueryAttr>() as u32)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr.prog_cnt)
}

/// Every cgroup attach type (enum bpf_attach_type, all known to 6.1+): skb, sock, sock_ops,
/// device, sock_addr (bind, connect, sendmsg, recvmsg, getpeername, getsockname), sysctl,
/// sockopt, sock_release and lsm_cgroup.
const CGROUP_ATTACH_TYPES: &[u32] =
    &[0, 1, 2, 3, 6, 8, 9, 10, 11, 12, 13, 14, 15, 18, 19, 20, 21, 22, 29, 30, 31, 32, 34, 43];

/// Programs attached to `cgroup_dir` at any cgroup hook, by BPF_PROG_QUERY of each type.
#[must_use]
pub fn cgroup_programs(cgroup_dir: &Path) -> u32 {
    let cgroup = File::open(cgroup_dir).unwrap_or_else(|e| panic!("open {}: {e}", cgroup_dir.display()));
    CGROUP_ATTACH_TYPES
        .iter()
        .map(|&attach_type| {
            let mut attr = ProgQueryAttr { target_fd: cgroup.as_raw_fd() as u32, attach_type, ..Default::default() };
            // SAFETY: attr is a valid, zero-padded bpf_attr for BPF_PROG_QUERY; size matches.
            let rc = unsafe {
                libc::syscall(libc::SYS_bpf, BPF_PROG_QUERY, &raw mut attr, std::mem::size_of::<ProgQueryAttr>() as u32)
            };
            assert!(
                rc == 0,
                "BPF_PROG_QUERY {} attach type {attach_type}: {}",
                cgroup_dir.display(),
                io::Error::last_os_error()
            );
            attr.prog_cnt
        })
        .sum()
}

/// The cgroup attach type (enum bpf_attach_type) of a hook as `chaos syscall list` names it
/// (`cgroup/connect4`), if it is one.
#[must_use]
pub fn cgroup_attach_type(hook: &str) -> Option<u32> {
    Some(match hook.strip_prefix("cgroup/")? {
        "sock_create" => 2,
        "bind4" => 8,
        "bind6" => 9,
        "connect4" => 10,
        "connect6" => 11,
        "sendmsg4" => 14,
        "sendmsg6" => 15,
        "getsockopt" => 21,
        "setsockopt" => 22,
        _ => return None,
    })
}

/// Programs attached to `cgroup_dir` at one cgroup attach type, by BPF_PROG_QUERY.
#[must_use]
pub fn cgroup_programs_at(cgroup_dir: &Path, attach_type: u32) -> u32 {
    let cgroup = File::open(cgroup_dir).unwrap_or_else(|e| panic!("open {}: {e}", cgroup_dir.display()));
    let mut attr = ProgQueryAttr { target_fd: cgroup.as_raw_fd() as u32, attach_type, ..Default::default() };
    // SAFETY: attr is a valid, zero-padded bpf_attr for BPF_PROG_QUERY; size matches.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_QUERY, &raw mut attr, std::mem::size_of::<ProgQueryAttr>() as u32)
    };
    assert!(rc == 0, "BPF_PROG_QUERY {} type {attach_type}: {}", cgroup_dir.display(), io::Error::last_os_error());
    attr.prog_cnt
}

/// The cgroup attach type of per-cgroup BPF LSM programs (BPF_LSM_CGROUP).
pub const BPF_LSM_CGROUP: u32 = 43;

/// A kind of bpf_link, as /proc/<pid>/fdinfo names it (`link_type`, `attach_type`).
#[derive(Clone, Copy, Debug)]
pub enum LinkKind {
    /// A global BPF LSM program: a tracing link of attach type BPF_LSM_MAC (27).
    Lsm,
    /// A per-cgroup BPF LSM program: a cgroup link of attach type BPF_LSM_CGROUP (43).
    LsmCgroup,
    /// A raw tracepoint program (whatever the tracepoint).
    RawTracepoint,
    /// An fentry program: a tracing link of attach type BPF_TRACE_FENTRY (24).
    Fentry,
}

impl LinkKind {
    const fn fields(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Lsm => ("tracing", Some("27")),
            Self::LsmCgroup => ("cgroup", Some("43")),
            Self::RawTracepoint => ("raw_tracepoint", None),
            Self::Fentry => ("tracing", Some("24")),
        }
    }
}

/// The BPF LSM links process `pid` holds, as the kernel describes its descriptors in
/// /proc/<pid>/fdinfo (tracing links of attach type BPF_LSM_MAC, 27).
#[must_use]
pub fn lsm_links_held_by(pid: u32) -> u32 {
    links_held_by(pid, LinkKind::Lsm)
}

/// The links of `kind` process `pid` holds (/proc/<pid>/fdinfo).
#[must_use]
pub fn links_held_by(pid: u32, kind: LinkKind) -> u32 {
    links_of(pid, kind).unwrap_or_else(|e| panic!("read /proc/{pid}/fdinfo: {e}"))
}

/// The raw tracepoint links process `pid` holds.
#[must_use]
pub fn raw_tracepoint_links_held_by(pid: u32) -> u32 {
    links_held_by(pid, LinkKind::RawTracepoint)
}

fn links_of(pid: u32, kind: LinkKind) -> io::Result<u32> {
    let (link_type, attach_type) = kind.fields();
    let links = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))?
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter(|info| {
            field(info, "link_type:") == Some(link_type)
                && attach_type.is_none_or(|attach| field(info, "attach_type:") == Some(attach))
        })
        .count();
    Ok(links as u32)
}

/// The value of an fdinfo line `name value`.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim)
}

/// The BPF LSM links all processes hold (see [`lsm_links_held_by`]); a process that ends while
/// it is read counts as holding none.
#[must_use]
pub fn lsm_links_held_by_anyone() -> u32 {
    links_held_by_anyone(LinkKind::Lsm)
}

/// The links of `kind` all processes hold.
#[must_use]
pub fn links_held_by_anyone(kind: LinkKind) -> u32 {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .map(|pid| links_of(pid, kind).unwrap_or(0))
        .sum()
}

/// Total programs on the cgroup's inet ingress and egress hooks.
pub fn inet_programs_attached(cgroup_dir: &Path) -> u32 {
    [CgroupHook::InetIngress, CgroupHook::InetEgress]
        .iter()
        .map(|&hook| {
            programs_attached(cgroup_dir, hook)
                .unwrap_or_else(|e| panic!("BPF_PROG_QUERY {}: {e}", cgroup_dir.display()))
        })
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
        assert!(
            Instant::now() < deadline,
            "{} has {now} inet programs attached, expected {count}",
            cgroup_dir.display()
        );
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

/// tcx attach types (enum bpf_attach_type).
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// BPF programs on `iface` of `netns`, both directions, as the kernel reports them: tcx links
/// (BPF_PROG_QUERY, 6.6+) plus legacy cls_bpf filters (`tc filter show`).
#[must_use]
pub fn tc_programs(netns: &crate::net::Netns, iface: &str) -> u32 {
    let ns_file = File::open(netns.path()).expect("open netns");
    let name = std::ffi::CString::new(iface).expect("iface name");
    let tcx = thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns on a valid namespace fd, in this short-lived thread only.
                assert_eq!(unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
                // SAFETY: valid C string.
                let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
                assert_ne!(ifindex, 0, "no interface {iface}");
                [BPF_TCX_INGRESS, BPF_TCX_EGRESS]
                    .iter()
                    .map(|&attach_type| {
                        let mut attr = ProgQueryAttr { target_fd: ifindex, attach_type, ..Default::default() };
                        // SAFETY: valid bpf_attr for BPF_PROG_QUERY.
                        let rc = unsafe {
                            libc::syscall(
                                libc::SYS_bpf,
                                BPF_PROG_QUERY,
                                &raw mut attr,
                                std::mem::size_of::<ProgQueryAttr>() as u32,
                            )
                        };
                        if rc == 0 {
                            return attr.prog_cnt;
                        }
                        // Kernels before 6.6 have no tcx and refuse the attach type: no tcx
                        // programs there. Any other failure must not read as "nothing attached".
                        let error = io::Error::last_os_error();
                        assert!(
                            error.raw_os_error() == Some(libc::EINVAL) && !release_at_least(6, 6),
                            "BPF_PROG_QUERY of tcx attach type {attach_type} on {iface}: {error}"
                        );
                        0
                    })
                    .sum::<u32>()
            })
            .join()
            .expect("query thread")
    });
    let legacy: u32 = ["ingress", "egress"]
        .iter()
        .map(|hook| {
            let output = std::process::Command::new("tc")
                .args(["-n", netns.name(), "filter", "show", "dev", iface, hook])
                .output()
                .expect("run tc");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| l.contains(" bpf ") && l.contains("handle"))
                .count() as u32
        })
        .sum();
    tcx + legacy
}

/// Whether the running kernel is at least `major.minor`.
#[must_use]
pub fn release_at_least(major: u32, minor: u32) -> bool {
    let release = crate::skip::kernel_release();
    let mut parts = release.split(['.', '-']).filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// Whether `iface` of `netns` has a clsact qdisc.
#[must_use]
pub fn has_clsact(netns: &crate::net::Netns, iface: &str) -> bool {
    let output = std::process::Command::new("tc")
        .args(["-n", netns.name(), "qdisc", "show", "dev", iface])
        .output()
        .expect("run tc");
    String::from_utf8_lossy(&output.stdout).contains("clsact")
}

/// Waits until `iface` of `netns` has `count` BPF programs; panics after `timeout`.
pub fn wait_for_tc_programs(netns: &crate::net::Netns, iface: &str, count: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = tc_programs(netns, iface);
        if now == count {
            return;
        }
        assert!(Instant::now() < deadline, "{iface} has {now} TC programs, expected {count}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A counter from `/proc/<pid>/net/snmp` (the namespace of `pid`), e.g. ("Udp", "InCsumErrors").
#[must_use]
pub fn snmp_counter(pid: u32, group: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).expect("read snmp");
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (lines.next().expect("snmp names"), lines.next().expect("snmp values"));
    let index = names.split_whitespace().position(|n| n == name).unwrap_or_else(|| panic!("no {group} {name}"));
    values.split_whitespace().nth(index).and_then(|v| v.parse().ok()).expect("snmp value")
}

/// A counter from `/proc/<pid>/net/snmp6` (the namespace of `pid`), e.g. "Udp6InCsumErrors".
#[must_use]
pub fn snmp6_counter(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/snmp6")).expect("read snmp6");
    text.lines()
        .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with([' ', '\t'])))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in snmp6"))
}

/// The kind of the root qdisc of `iface` in `netns` (`noqueue`, `fq`, ...), from `tc`.
#[must_use]
pub fn root_qdisc(netns: &crate::net::Netns, iface: &str) -> String {
    let output = std::process::Command::new("tc")
        .args(["-n", netns.name(), "qdisc", "show", "dev", iface, "root"])
        .output()
        .expect("run tc");
    String::from_utf8_lossy(&output.stdout).split_whitespace().nth(1).unwrap_or("").to_owned()
}

/// The threads of process `pid` that are stopped (state T or t) or traced (`TracerPid` not 0),
/// each as "TID (state S, tracer P)": what a per-thread syscall delay's holder must never leave
/// behind.
#[must_use]
pub fn threads_stopped_or_traced(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).ok()?;
            let field = |name: &str| {
                status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap_or_default()
            };
            let (state, tracer) = (field("State:"), field("TracerPid:"));
            let stopped = state.starts_with(['T', 't']);
            (stopped || tracer != "0")
                .then(|| format!("{} (state {state}, tracer {tracer})", task.file_name().to_string_lossy()))
        })
        .collect()
}

/// Whether process `pid` (its main thread) is stopped: by a signal (state T), or in a
/// ptrace-stop (state t: a process a per-thread syscall delay stopped whole, which chaos's holder
/// traces from then on, stays stopped in that state).
#[must_use]
pub fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['T', 't'])))
        .unwrap_or(false)
}

/// How many BPF programs the kernel has loaded whose name starts with `prefix` (names are cut
/// at 15 bytes). Walks every program id (BPF_PROG_GET_NEXT_ID) and reads its name from the
/// kernel (BPF_OBJ_GET_INFO_BY_FD): what the kernel holds, not what chaos says.
#[must_use]
pub fn programs_named(prefix: &str) -> usize {
    const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
    let prefix = &prefix[..prefix.len().min(15)];
    let mut count = 0;
    let mut id: u32 = 0;
    loop {
        let mut attr = [0u32; 4];
        attr[0] = id;
        // SAFETY: bpf(2) with an attr buffer of the size given.
        if unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_NEXT_ID, attr.as_mut_ptr(), 16) } != 0 {
            return count;
        }
        id = attr[1];
        if crate::programs::program_info(id).is_some_and(|info| info.name.starts_with(prefix)) {
            count += 1;
        }
    }
}

/// Whether cgroup `dir` is frozen, as `cgroup.events` says.
#[must_use]
pub fn is_frozen(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|e| e.lines().any(|l| l.trim() == "frozen 1"))
}

/// Why this kernel has no qdisc `kind`, if it has none: asked of the kernel itself (adding one
/// to the loopback of a throwaway network namespace), not of chaos.
#[must_use]
pub fn qdisc_missing(kind: &str) -> Option<String> {
    let netns = crate::net::Netns::new();
    let output = std::process::Command::new("tc")
        .args(["-n", netns.name(), "qdisc", "add", "dev", "lo", "root", kind])
        .output()
        .expect("run tc");
    (!output.status.success())
        .then(|| format!("`tc qdisc add ... {kind}` failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
}
