//! `/proc/self/mountinfo`, read: where the cgroup2 filesystem is mounted and which part of the
//! hierarchy that mount shows (its root, relative to this process's cgroup namespace).
use std::path::PathBuf;

/// The cgroup2 mount point in a mountinfo text (fields: id parent dev root mountpoint opts...
/// `-` fstype source superopts), with the kernel's octal escapes (`\040` for space) undone.
/// The cgroup2 mount that shows the whole hierarchy (its root is `/`), else the first one. In a
/// container there are two: its own, rooted at the container's cgroup (mountinfo shows that
/// root once chaos is in the host's cgroup namespace, see `host_view`), and the host's, mounted
/// in (the DaemonSet's hostPath), rooted at `/`; only the host's holds the targets.
pub(crate) fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    cgroup2_mount_and_root(mountinfo).map(|(mount, _)| mount)
}

/// [`cgroup2_mount`] and the mount's root as mountinfo shows it (relative to this process's
/// cgroup namespace: `/..` when the mount reaches above it). The whole hierarchy wins: the
/// root with the most `..`, then the shortest.
pub(crate) fn cgroup2_mount_and_root(mountinfo: &str) -> Option<(PathBuf, String)> {
    let mounts: Vec<(String, PathBuf)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (mount_fields, fs_fields) = line.split_once(" - ")?;
            if fs_fields.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let mut fields = mount_fields.split_whitespace();
            let root = unescape_mountinfo(fields.nth(3)?);
            let mount_point = fields.next()?;
            Some((root, PathBuf::from(unescape_mountinfo(mount_point))))
        })
        .collect();
    let height = |root: &str| {
        let parts: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
        let ups = parts.iter().filter(|p| **p == "..").count();
        (ups, std::cmp::Reverse(parts.len()))
    };
    let best = mounts.iter().enumerate().max_by(|a, b| height(&a.1.0).cmp(&height(&b.1.0)).then(b.0.cmp(&a.0)))?.0;
    mounts.into_iter().nth(best).map(|(root, mount)| (mount, root))
}

fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..=i + 3].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
