//! The cgroup v2 hierarchy as this process sees it: where it is mounted (never assume
//! `/sys/fs/cgroup`: hybrid hosts mount it elsewhere, e.g. `/sys/fs/cgroup/unified`, so the
//! mount point comes from `/proc/self/mountinfo`), a cgroup's directory and path, the cgroup of
//! a process and of chaos itself. What a target is and which ones are refused is `targets/`.
use std::{
    fs,
    path::{Path, PathBuf},
};

/// Reading the hierarchy failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CgroupError {
    #[error(
        "no cgroup v2 filesystem is mounted (looked in /proc/self/mountinfo); chaos targets cgroup \
         v2 cgroups: mount one with `mount -t cgroup2 none /sys/fs/cgroup` or boot with \
         systemd.unified_cgroup_hierarchy=1"
    )]
    NoCgroup2,
    #[error("cannot read {what}: {reason}")]
    Unreadable { what: String, reason: String },
    #[error("--pid {pid}: no such process")]
    NoSuchPid { pid: u32 },
    #[error("--pid {pid}: the process has no cgroup v2 membership in /proc/{pid}/cgroup")]
    PidWithoutCgroup2 { pid: u32 },
}

/// The cgroup v2 hierarchy as this process sees it.
#[derive(Clone, Debug)]
pub(crate) struct CgroupFs {
    mount: PathBuf,
}

impl CgroupFs {
    /// Finds the cgroup2 mount of this process.
    pub(crate) fn discover() -> Result<Self, CgroupError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| CgroupError::Unreadable { what: "/proc/self/mountinfo".into(), reason: e.to_string() })?;
        super::mountinfo::cgroup2_mount(&mountinfo).map(|mount| Self { mount }).ok_or(CgroupError::NoCgroup2)
    }

    /// A hierarchy rooted somewhere else (tests build fake trees).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn at(mount: impl Into<PathBuf>) -> Self {
        Self { mount: mount.into() }
    }

    #[must_use]
    pub(crate) fn mount(&self) -> &Path {
        &self.mount
    }

    /// The directory of a kernel cgroup path (`/a/b` -> `<mount>/a/b`).
    #[must_use]
    pub(crate) fn dir_of(&self, cgroup: &str) -> PathBuf {
        self.mount.join(cgroup.trim_start_matches('/'))
    }

    /// The kernel cgroup path of a directory under the mount (`<mount>/a/b` -> `/a/b`).
    pub(crate) fn cgroup_of(&self, dir: &Path) -> Option<String> {
        let rel = dir.strip_prefix(&self.mount).ok()?;
        Some(format!("/{}", rel.to_string_lossy()).trim_end_matches('/').to_owned())
            .map(|s| if s.is_empty() { "/".to_owned() } else { s })
    }

    /// The cgroup directory whose `cgroup.procs` lists `pid`: how chaos finds its own cgroup
    /// where the kernel shows it as `/` (a cgroup namespace whose root it cannot name).
    #[must_use]
    pub(crate) fn dir_holding(&self, pid: u32) -> Option<PathBuf> {
        let wanted = pid.to_string();
        let mut stack = vec![self.mount.clone()];
        while let Some(dir) = stack.pop() {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if procs.lines().any(|line| line.trim() == wanted) {
                return Some(dir);
            }
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
        None
    }
}

/// Every pid in the cgroup directory and its descendants.
#[must_use]
pub(crate) fn pids_below(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    pids
}

/// The first `0::` line of /proc/PID/cgroup: the process's cgroup v2 path.
pub(crate) fn pid_cgroup(proc_root: &Path, pid: u32) -> Result<String, CgroupError> {
    let file = proc_root.join(pid.to_string()).join("cgroup");
    let text = fs::read_to_string(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CgroupError::NoSuchPid { pid },
        _ => CgroupError::Unreadable { what: file.display().to_string(), reason: e.to_string() },
    })?;
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim().trim_end_matches(" (deleted)"))
        .map(|path| super::host_view::under_mount(path).unwrap_or_else(|| path.to_owned()))
        .ok_or(CgroupError::PidWithoutCgroup2 { pid })
}

/// This process's own cgroup v2 path, if it has one.
#[must_use]
pub(crate) fn own_cgroup() -> Option<String> {
    let file = fs::read_to_string("/proc/self/cgroup").ok()?;
    let as_read = file.lines().find_map(|line| line.strip_prefix("0::"))?.trim();
    if let Some(path) = super::host_view::under_mount(as_read) {
        return Some(path);
    }
    // In a namespace whose root the mount shows as `/..`, that root (read as `/`) has no name
    // chaos can read: it is the cgroup whose `cgroup.procs` lists this process.
    let cgroups = CgroupFs::discover().ok()?;
    cgroups.dir_holding(std::process::id()).and_then(|dir| cgroups.cgroup_of(&dir))
}

/// Whether cgroup `inner` is `outer` or inside it (`/a/b` is inside `/a`, `/ab` is not).
#[must_use]
pub(crate) fn is_same_or_below(inner: &str, outer: &str) -> bool {
    let outer = outer.trim_end_matches('/');
    outer.is_empty() || inner == outer || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/'))
}
