//! Skipping a test says why, where people will read it.
//!
//! A skipped test returns early (cargo shows it as passed), so the reason is also appended to
//! the file named by `CHAOS_SKIP_LOG` when set: `cargo xtask test` prints those lines per tier,
//! so a skip never passes silently.
use std::io::Write as _;

/// Records that `test` is skipped on this kernel because of `reason`.
pub fn record(test: &str, reason: &str) {
    let line = format!("SKIPPED {test} on {}: {reason}", kernel_release());
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("CHAOS_SKIP_LOG")
        && let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(file, "{line}");
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
            $crate::skip::record($test, "needs root (creates cgroups, network namespaces, BPF programs)");
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
