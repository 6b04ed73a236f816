//! The host's view of cgroups for a chaos that runs in a container (the DaemonSet's pod).
//!
//! The kernel shows cgroup paths (`/proc/PID/cgroup`, the root of a cgroup2 mount in
//! mountinfo) relative to the reader's cgroup namespace, and container runtimes give each
//! container a namespace of its own: from inside a pod, a target's cgroup reads as
//! `/../../kubepods.slice/...`, which names nothing under the host's cgroup2 mount. With the
//! host's processes visible (`hostPID`), init's namespace is `/proc/1/ns/cgroup`: joining it
//! before anything else runs gives every later read the host's paths. Threads inherit the
//! namespace they are created in, so this runs first in `main`, while the process has one thread.
use std::{
    fs,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
};

/// What happened when chaos looked for the host's cgroup namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostView {
    /// Already in init's cgroup namespace (a host, or a container that shares it).
    Already,
    /// Was in a namespace of its own and joined init's.
    Joined,
    /// In a namespace of its own and could not join init's (the reason): cgroup paths of
    /// other namespaces' processes will not resolve.
    Own(String),
}

/// Joins init's cgroup namespace if this process is in another one. Call it while the process
/// has a single thread (setns changes the calling thread only).
pub fn enter() -> HostView {
    let inode = |path: &str| fs::metadata(path).map(|m| (m.dev(), m.ino()));
    let (Ok(init), Ok(own)) = (inode("/proc/1/ns/cgroup"), inode("/proc/self/ns/cgroup")) else {
        // No cgroup namespaces (kernel before 4.6) or no /proc/1 to look at: nothing to join.
        return HostView::Already;
    };
    if init == own {
        return HostView::Already;
    }
    let file = match fs::File::open("/proc/1/ns/cgroup") {
        Ok(file) => file,
        Err(err) => return HostView::Own(format!("cannot open /proc/1/ns/cgroup: {err}")),
    };
    // SAFETY: setns(2) on a descriptor this function owns; it changes only this thread's
    // cgroup namespace, which is what is asked.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWCGROUP) } != 0 {
        let err = std::io::Error::last_os_error();
        return HostView::Own(format!("joining init's cgroup namespace (/proc/1/ns/cgroup) failed: {err}"));
    }
    HostView::Joined
}

/// The root of the cgroup2 mount chaos uses, as this process's mountinfo shows it: `/` on a
/// host, `/..` (one `..` per level) when chaos is in a cgroup namespace below the mount's root
/// and could not join init's (the host's mount bind-mounted into a container).
fn mount_root() -> &'static str {
    static ROOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| super::mountinfo::cgroup2_mount_and_root(&text))
            .map_or_else(|| "/".to_owned(), |(_, root)| root)
    })
}

/// A path from /proc/PID/cgroup (relative to this process's cgroup namespace, so `/../x` for
/// a cgroup outside it) as a path under the mount: the same text on a host; with the mount's
/// root shown as `/..`, `/../x` is `/x` under it. `None` when the path is out of the mount's
/// reach (then it is returned unchanged by the caller, and fails to resolve with its name).
#[must_use]
pub fn under_mount(path: &str) -> Option<String> {
    under_root(path, mount_root())
}

fn under_root(path: &str, root: &str) -> Option<String> {
    if root == "/" {
        return Some(path.to_owned());
    }
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() { Some("/".to_owned()) } else { rest.starts_with('/').then(|| rest.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::under_root;

    #[test]
    fn paths_outside_the_namespace_map_under_a_mount_shown_above_it() {
        assert_eq!(under_root("/system.slice/a.service", "/").as_deref(), Some("/system.slice/a.service"));
        assert_eq!(under_root("/../hvtest", "/..").as_deref(), Some("/hvtest"));
        assert_eq!(under_root("/../../kubepods/pod1", "/../..").as_deref(), Some("/kubepods/pod1"));
        assert_eq!(under_root("/..", "/..").as_deref(), Some("/"));
        // Inside the namespace: below a root the mount shows as `/..`, the name is unknown.
        assert_eq!(under_root("/", "/.."), None);
        assert_eq!(under_root("/sub", "/.."), None);
        assert_eq!(under_root("/..x", "/.."), None);
    }
}
