//! Skipping a test says why, where people will read it.
//!
//! A skipped test returns early (cargo shows it as passed), so the reason is also appended to
//! the file named by `CHAOS_SKIP_LOG` when set, one line per skip naming the test as libtest
//! does (`<binary>::<test>`, read from the name libtest gives each test's thread). `cargo xtask
//! test` holds those lines against the tier's manifest ([`crate::manifest`]): a skip of a test
//! the tier must run fails the tier, whatever its reason, so a skip never passes silently.
use std::io::Write as _;

/// Kernel features a test may need, named in the skip's line (`[needs fq]`) for the reader.
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
    /// fentry programs (BPF trampolines).
    Fentry,
    /// Error injection: kprobes calling bpf_override_return.
    ErrorInjection,
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
            Self::Fentry => "fentry",
            Self::ErrorInjection => "error-injection",
        }
    }
}

/// Records that `test` is skipped on this kernel because of `reason` (not for want of a
/// feature: use [`missing`] for that).
pub fn record(test: &str, reason: &str) {
    write_line(&format!("SKIPPED {} on {}: {reason}", qualified(test), kernel_release()));
}

/// Records that `test` is skipped because this kernel lacks `feature` (`reason` says how that
/// was found out).
pub fn missing(feature: Feature, test: &str, reason: &str) {
    write_line(&format!("SKIPPED {} on {} [needs {}]: {reason}", qualified(test), kernel_release(), feature.name()));
}

/// The skipping test as the manifest names it, `<binary>::<test>`: libtest runs each test on a
/// thread named after it, which no caller can misspell; `label` (the caller's own name for the
/// test) stands in only off a test thread. The binary is cargo's test target, its file name
/// without the hash cargo appends (`delay-6beb36907909f233` is `delay`).
fn qualified(label: &str) -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(test_binary_name(exe.file_name()?.to_str()?).to_owned()))
        .unwrap_or_else(|| "?".into());
    let thread = std::thread::current();
    let test = thread.name().filter(|name| *name != "main").unwrap_or(label);
    format!("{binary}::{test}")
}

/// A test binary's target name: its file name without cargo's `-<hash>` suffix.
#[must_use]
pub fn test_binary_name(file_name: &str) -> &str {
    file_name
        .rsplit_once('-')
        .filter(|(_, hash)| hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or(file_name, |(name, _)| name)
}

/// The skip log's line for a skip: (`<binary>::<test>`, the rest of the line), or None for a
/// line that is not one.
#[must_use]
pub fn parse_line(line: &str) -> Option<(&str, &str)> {
    line.strip_prefix("SKIPPED ")?.split_once(' ')
}

/// A skip the runner cannot read would pass unnoticed: failing to log it fails the test.
fn write_line(line: &str) {
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("CHAOS_SKIP_LOG") {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            // One write of the whole line: with O_APPEND it cannot interleave with another
            // test's (writeln! may write the text and its newline apart).
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
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

/// Skips the calling test on a tier of `cargo xtask test` that is not one of `tiers` (run by
/// hand, with no tier named, it runs): the gate of a manifest line `Tiers(&[...])`, saying why
/// those tiers.
#[macro_export]
macro_rules! only_on_tiers {
    ($tiers:expr, $test:expr, $why:expr) => {
        $crate::skip_if!(
            $crate::skip::tier().is_some_and(|tier| !$tiers.contains(&tier.as_str())),
            $test,
            format!("run on {} only: {}", $tiers.join(" and "), $why)
        );
    };
}

/// Skips the calling test on the VM tiers: the gate of a manifest line `HostTier`, for a test
/// of userspace logic that is the same on every kernel.
#[macro_export]
macro_rules! host_tier_only {
    ($test:expr) => {
        $crate::skip_if!(
            $crate::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "a host-tier test: what it tests is chaos's userspace, the same on every kernel"
        );
    };
}
