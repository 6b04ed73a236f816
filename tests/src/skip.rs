//! Skipping a test says why, where people will read it.
//!
//! A skipped test returns early (cargo shows it as passed), so the reason is also appended to
//! the file named by `CHAOS_SKIP_LOG` when set: `cargo xtask test` prints those lines per tier,
//! so a skip never passes silently. A skip for want of a kernel feature names the feature
//! (`[needs fq]`): the runner fails a tier whose required features a test skipped for.
use std::io::Write as _;

/// Kernel features a test may need. Their names are what `cargo xtask test` matches against
/// each tier's list of required features (xtask/src/test.rs): keep the two in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Running as root (cgroups, namespaces, BPF).
    Root,
    /// cgroup sock_addr / sockopt / skb hooks.
    CgroupHooks,
    /// raw_tracepoint programs (syscall delays, the guard).
    RawTp,
    /// tcx links (6.6+).
    Tcx,
    /// BPF LSM programs.
    BpfLsm,
    /// BPF LSM programs per cgroup (BPF_LSM_CGROUP, 6.0+).
    LsmCgroup,
    /// The fq qdisc (network delay and rate).
    Fq,
    /// The netem qdisc.
    Netem,
}

impl Feature {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::CgroupHooks => "cgroup-hooks",
            Self::RawTp => "raw_tp",
            Self::Tcx => "tcx",
            Self::BpfLsm => "bpf-lsm",
            Self::LsmCgroup => "lsm-cgroup",
            Self::Fq => "fq",
            Self::Netem => "netem",
        }
    }
}

/// Records that `test` is skipped on this kernel because of `reason` (not for want of a
/// feature: use [`missing`] for that).
pub fn record(test: &str, reason: &str) {
    write_line(&format!("SKIPPED {test} on {}: {reason}", kernel_release()));
}

/// Records that `test` is skipped because this kernel lacks `feature` (`reason` says how that
/// was found out).
pub fn missing(feature: Feature, test: &str, reason: &str) {
    write_line(&format!("SKIPPED {test} on {} [needs {}]: {reason}", kernel_release(), feature.name()));
}

/// A skip the runner cannot read would pass unnoticed: failing to log it fails the test.
fn write_line(line: &str) {
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("CHAOS_SKIP_LOG") {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(e) = written {
            panic!("cannot log the skip to CHAOS_SKIP_LOG={}: {e}; the skip was: {line}", path.display());
        }
    }
}

#[must_use]
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// The tier `cargo xtask` says this run is on (`host`, `vm-6.1`, `vm-6.12`), if any.
#[must_use]
pub fn tier() -> Option<String> {
    std::env::var("CHAOS_TEST_TIER").ok()
}

/// Skips the calling test unless running as root: everything here needs it.
#[macro_export]
macro_rules! require_root {
    ($test:expr) => {
        // SAFETY: geteuid has no preconditions.
        if unsafe { ::libc::geteuid() } != 0 {
            $crate::skip::missing(
                $crate::skip::Feature::Root,
                $test,
                "needs root (creates cgroups, network namespaces, BPF programs)",
            );
            return;
        }
    };
}

/// Skips the calling test with `reason` when `condition` holds.
#[macro_export]
macro_rules! skip_if {
    ($condition:expr, $test:expr, $reason:expr) => {
        if $condition {
            $crate::skip::record($test, &$reason);
            return;
        }
    };
}

/// Skips the calling test when `why_missing` (an `Option<String>`) says this kernel lacks
/// `feature`.
#[macro_export]
macro_rules! skip_unless_has {
    ($feature:expr, $why_missing:expr, $test:expr) => {
        if let Some(reason) = $why_missing {
            $crate::skip::missing($feature, $test, &reason);
            return;
        }
    };
}
