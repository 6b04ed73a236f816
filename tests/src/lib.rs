//! Test support for chaos's root integration tests: guards that create a uniquely named cgroup,
//! network namespaces and veth pairs and remove them on Drop (even when the test panics), a way
//! to start processes inside them, a guard for a running `chaos`, kernel-side checks that do not
//! trust chaos's own bookkeeping, and honest skipping.
//!
//! Safety rules these helpers enforce: nothing is attached outside a cgroup or namespace the test
//! created; traffic only crosses veth pairs between test namespaces.
pub mod chaos;
pub mod cgroup;
pub mod kernel;
pub mod net;
pub mod skip;
pub mod workload;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test (in this process or another) uses: `<prefix>-<pid>-<n>`.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
