//! Notices a configuration that changed on disk, so that a daemon fed by a Kubernetes ConfigMap
//! reloads when `kubectl apply` changes it, as on SIGHUP. kubelet does not rewrite the mounted
//! files: it writes a new timestamped directory and swaps the `..data` symlink to it, so every
//! visible file is a symlink whose target changes at once. A fingerprint of the directories of
//! the configuration and of its experiment files (each entry's symlink target, and the inode,
//! size and modification time of what it leads to) catches that swap and plain edits alike.
use std::{
    collections::BTreeSet,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use super::config::DaemonConfig;

/// How often the directories are looked at (a ConfigMap change takes kubelet up to a minute
/// to reach the node anyway).
pub(super) const POLL: Duration = Duration::from_secs(1);

/// What the configuration's directories held when last looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Fingerprint(Vec<(PathBuf, Option<PathBuf>, u64, u64, i64, i64)>);

/// The fingerprint of `config`'s file, its experiment files and their directories.
#[must_use]
pub(super) fn fingerprint(config: &DaemonConfig) -> Fingerprint {
    let mut dirs = BTreeSet::new();
    for file in std::iter::once(&config.path).chain(config.catalogue.iter().map(|e| &e.file)) {
        if let Some(dir) = file.parent() {
            dirs.insert(dir.to_path_buf());
        }
    }
    let mut entries = Vec::new();
    for dir in &dirs {
        entries.extend(directory(dir));
    }
    entries.sort();
    Fingerprint(entries)
}

/// Each file and symlink of `dir`: its path, symlink target, and the inode, size and mtime it
/// leads to. Directories are left out: a state directory beside the file changes with every
/// run, and kubelet's timestamped directories are seen through the `..data` symlink. Sockets
/// too (the daemon's own may sit beside its configuration): they are never configuration.
fn directory(dir: &Path) -> Vec<(PathBuf, Option<PathBuf>, u64, u64, i64, i64)> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    read.flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| !t.is_dir() && !t.is_socket()))
        .map(|entry| {
            let path = entry.path();
            let link = std::fs::read_link(&path).ok();
            let (ino, len, secs, nanos) =
                std::fs::metadata(&path).map_or((0, 0, 0, 0), |m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
            (path, link, ino, len, secs, nanos)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn at(dir: &Path) -> Fingerprint {
        Fingerprint(directory(dir))
    }

    #[test]
    fn a_swap_of_the_data_symlink_changes_the_fingerprint_and_nothing_else_does() {
        let dir = std::env::temp_dir().join(format!("chaos-config-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..v1")).unwrap();
        std::fs::write(dir.join("..v1/daemon.toml"), "a").unwrap();
        symlink("..v1", dir.join("..data")).unwrap();
        symlink("..data/daemon.toml", dir.join("daemon.toml")).unwrap();
        let first = at(&dir);
        assert_eq!(first, at(&dir), "nothing changed");
        // kubelet's update: a new directory, a new symlink renamed over `..data`, the old one gone.
        std::fs::create_dir_all(dir.join("..v2")).unwrap();
        std::fs::write(dir.join("..v2/daemon.toml"), "a").unwrap();
        symlink("..v2", dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(dir.join("..v1")).unwrap();
        assert_ne!(first, at(&dir), "the swap went unseen");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
