//! Notices a target that goes away mid-fault (a container that died, a unit that stopped): its
//! cgroup directory is removed, or another cgroup now has its name. A fault on a cgroup that no
//! longer exists sees nothing until its deadline; the run ends instead, "target gone".
//!
//! A poll, not inotify: cgroupfs reports a removed directory to inotify only on some kernels,
//! and one `stat` every half second costs nothing beside the counters the loop already reads.
use std::{os::unix::fs::MetadataExt as _, path::PathBuf, time::Duration};

use tokio::time::{Interval, MissedTickBehavior, interval};

use crate::targets::Target;

/// How often the target's directory is looked at: a removal ends the fault within this.
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// Watches one target's cgroup directory.
pub(crate) struct TargetWatch {
    dir: PathBuf,
    id: u64,
    ticks: Interval,
}

impl TargetWatch {
    /// Must be created inside a tokio runtime.
    #[must_use]
    pub(crate) fn new(target: &Target) -> Self {
        let mut ticks = interval(POLL);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { dir: target.dir.clone(), id: target.id, ticks }
    }

    /// Whether the target's cgroup is still there: its directory exists with the same inode
    /// number (a cgroup re-created under the same name is another cgroup, with another id).
    #[must_use]
    pub(crate) fn present(&self) -> bool {
        is_present(&self.dir, self.id)
    }

    /// Returns once the target is gone. Cancel-safe: the poll keeps its pace when a `select!`
    /// drops this future for another branch and calls it again.
    pub(crate) async fn gone(&mut self) {
        loop {
            self.ticks.tick().await;
            if !self.present() {
                return;
            }
        }
    }
}

/// Whether `dir` is a cgroup directory with inode number `id`.
#[must_use]
pub(crate) fn is_present(dir: &std::path::Path, id: u64) -> bool {
    // An error other than "not there" (EACCES, say) is not taken as the target's end.
    match std::fs::metadata(dir) {
        Ok(meta) => meta.ino() == id,
        Err(err) => err.kind() != std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_present_only_with_its_own_inode_number() {
        let dir = std::env::temp_dir().join(format!("chaos-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = std::fs::metadata(&dir).unwrap().ino();
        assert!(is_present(&dir, id));
        assert!(!is_present(&dir, id + 1), "a directory re-created under the same name is another target");
        std::fs::remove_dir(&dir).unwrap();
        assert!(!is_present(&dir, id), "a removed directory is gone");
    }
}
