//! The cgroup v2 freezer and `cgroup.kill`, for `proc pause` and `proc kill --pick all`.
//!
//! Writing 1 to `cgroup.freeze` asks the kernel to freeze every task of the cgroup and its
//! descendants; the freeze is complete when `cgroup.events` says `frozen 1` (a task in an
//! uninterruptible sleep is frozen when it leaves it). Writing 0 thaws them. A frozen cgroup
//! stays frozen when the process that froze it dies: that is why a guard process thaws it if
//! chaos dies (guard.rs) and a ledger record lets `chaos cleanup` thaw it if the guard died too.
//!
//! Writing 1 to `cgroup.kill` (5.14+) SIGKILLs every task of the cgroup and its descendants at
//! once, including tasks forked while it runs, which signalling pid by pid can miss.
use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The freezer of one cgroup directory.
#[derive(Clone, Debug)]
pub(crate) struct Freezer {
    dir: PathBuf,
}

impl Freezer {
    /// The freezer of `cgroup_dir`, or why it has none: the root cgroup has no `cgroup.freeze`,
    /// and kernels before 5.2 have no cgroup v2 freezer at all.
    pub(crate) fn of(cgroup_dir: &Path) -> Result<Self, String> {
        if cgroup_dir.join("cgroup.freeze").exists() {
            Ok(Self { dir: cgroup_dir.to_path_buf() })
        } else {
            Err(format!(
                "{} has no cgroup.freeze: the cgroup v2 freezer needs kernel 5.2 or later, and the root cgroup cannot \
                 be frozen",
                cgroup_dir.display()
            ))
        }
    }

    #[must_use]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Asks the kernel to freeze the cgroup (returns at once; see [`Freezer::wait`]).
    pub(crate) fn freeze(&self) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.freeze"), "1")
    }

    /// Thaws the cgroup. A cgroup that is gone has nothing left to thaw: that counts as done.
    pub(crate) fn thaw(&self) -> io::Result<()> {
        thaw(&self.dir)
    }

    /// Whether the freeze asked for is complete (`frozen 1` in `cgroup.events`).
    #[must_use]
    pub(crate) fn is_frozen(&self) -> bool {
        is_frozen(&self.dir)
    }

    /// Whether chaos (or anyone) asked for the cgroup to be frozen (`cgroup.freeze` is 1).
    #[must_use]
    pub(crate) fn freeze_requested(&self) -> bool {
        fs::read_to_string(self.dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    }

    /// Waits until the cgroup's frozen state is `frozen`, up to `timeout`; true if it got there.
    /// Polls `cgroup.events` every millisecond (the kernel also notifies pollers of the file,
    /// but a millisecond is below anything a pause is measured in).
    #[must_use]
    pub(crate) fn wait(&self, frozen: bool, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.is_frozen() == frozen {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Thaws `cgroup_dir`; a cgroup that no longer exists counts as thawed.
pub(crate) fn thaw(cgroup_dir: &Path) -> io::Result<()> {
    match fs::write(cgroup_dir.join("cgroup.freeze"), "0") {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether `cgroup_dir` is frozen (`frozen 1` in its `cgroup.events`).
#[must_use]
pub(crate) fn is_frozen(cgroup_dir: &Path) -> bool {
    fs::read_to_string(cgroup_dir.join("cgroup.events"))
        .is_ok_and(|events| events.lines().any(|line| line.trim() == "frozen 1"))
}

/// Whether this kernel has `cgroup.kill` (5.14+) for `cgroup_dir`.
#[must_use]
pub(crate) fn has_cgroup_kill(cgroup_dir: &Path) -> bool {
    cgroup_dir.join("cgroup.kill").exists()
}

/// SIGKILLs every process of the cgroup and its descendants through `cgroup.kill`.
pub(crate) fn kill_all(cgroup_dir: &Path) -> io::Result<()> {
    fs::write(cgroup_dir.join("cgroup.kill"), "1")
}

/// Whether this kernel has the cgroup v2 freezer (`chaos doctor`): every non-root cgroup has
/// `cgroup.freeze` from 5.2 on (the root has none). Looks at chaos's own cgroup, else at any
/// child of the mount, else at a throwaway child it creates and removes again.
pub(crate) fn probe() -> Result<String, String> {
    let fs = crate::os::cgroup::CgroupFs::discover().map_err(|e| e.to_string())?;
    let own = crate::os::cgroup::own_cgroup().filter(|c| c != "/").map(|c| fs.dir_of(&c));
    let child = || {
        fs::read_dir(fs.mount())
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir() && p.join("cgroup.procs").exists())
    };
    let answer = |dir: &Path| {
        if dir.join("cgroup.freeze").exists() {
            Ok("cgroup.freeze present".to_owned())
        } else {
            Err("no cgroup.freeze in a non-root cgroup: the cgroup v2 freezer needs kernel 5.2 or later".to_owned())
        }
    };
    if let Some(dir) = own.or_else(child) {
        return answer(&dir);
    }
    let throwaway = fs.mount().join(format!("chaos-freezer-probe-{}", std::process::id()));
    fs::create_dir(&throwaway).map_err(|e| format!("cannot create a cgroup to look for cgroup.freeze: {e}"))?;
    let result = answer(&throwaway);
    let _ = fs::remove_dir(&throwaway);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_cgroup_freeze_has_no_freezer() {
        let dir = std::env::temp_dir();
        let error = Freezer::of(&dir).unwrap_err();
        assert!(error.contains("cgroup.freeze"), "{error}");
        assert!(!is_frozen(&dir));
        assert!(thaw(&dir.join("no-such-cgroup")).is_ok());
    }
}
