//! Test support for chaos's root integration tests: guards that create a uniquely named cgroup,
//! network namespaces and veth pairs and remove them on Drop (even when the test panics), a way
//! to start processes inside them, a guard for a running `chaos`, kernel-side checks that do not
//! trust chaos's own bookkeeping, and honest skipping.
//!
//! Safety rules these helpers enforce: nothing is attached outside a cgroup or namespace the test
//! created; traffic only crosses veth pairs between test namespaces.
pub mod cgroup;
pub mod chaos;
pub mod controllers;
pub mod crash;
pub mod daemon;
pub mod dns;
pub mod held;
pub mod kernel;
pub mod manifest;
pub mod net;
pub mod pressure;
pub mod probe;
pub mod programs;
pub mod runtimes;
pub mod skip;
pub mod stats;
pub mod tcp;
pub mod timing;
pub mod workload;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name no other test (in this process or another) uses: `<prefix>-<pid>-<n>`.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A uniquely named directory under the system's temporary directory, removed on Drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    #[must_use]
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("chaos-test-dir"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self(dir)
    }

    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The path of `name` in the directory (not created).
    #[must_use]
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` in the directory; its path.
    pub fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Tests that must not overlap with one another in a test binary hold this while they run:
/// those whose chaos runs clean up the ledger first (TC faults, which may leave legacy filters
/// behind a crash, and network delays: one test's start-up cleanup would remove what another
/// test killed chaos to leave behind, before that test's own `chaos cleanup` is checked), and
/// timing-sensitive ones (delays), which other tests' load would blur under TCG.
pub fn serialized() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Every `chaos run`, `status`, `stop` and `cleanup` first removes what stale runs left, such
/// as a detached experiment's pins once its deadline has passed. A test that leaves such a run
/// on purpose, to see it stay until a chaos command cleans it, holds `leaves_a_stale_run()`;
/// the other tests of its binary that run chaos hold `may_clean_stale_runs()`, so that none of
/// them cleans it first (they still run side by side with one another).
pub fn leaves_a_stale_run() -> std::sync::RwLockWriteGuard<'static, ()> {
    STALE_RUNS.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// See [`leaves_a_stale_run`]. Taken before [`serialized`] where a test holds both.
pub fn may_clean_stale_runs() -> std::sync::RwLockReadGuard<'static, ()> {
    STALE_RUNS.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

static STALE_RUNS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Every event of a JSON Lines timeline; a line that is not JSON fails the test.
#[must_use]
pub fn read_timeline(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("timeline {}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("timeline line {l:?}: {e}"))).collect()
}

/// The events of a timeline still being written: a missing file is none yet, and a last line
/// half-written is left for the next look.
#[must_use]
pub fn timeline_so_far(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}
