//! Telling users why a network fault sees nothing, instead of an unexplained "seen 0": at start,
//! sockets of the target's processes that belong to another cgroup (a process moved in after it
//! opened them: a socket keeps the cgroup it was created in, and chaos's hooks key on it); and
//! while the fault runs, a hint once it has seen no packet for 10 s.
use std::{
    collections::{HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    os::{netns, sock_diag},
    plan::FaultPlan,
    report::DirectionCounters,
    targets::Target,
};

/// How long a network fault may see no packet before chaos says why that may be.
pub const QUIET_FOR: Duration = Duration::from_secs(10);

/// A socket of the target's processes that belongs to another cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignSocket {
    pub pid: i32,
    pub protocol: &'static str,
    pub cgroup_id: u64,
}

/// The target's TCP and UDP sockets that were created outside its cgroup (and its children),
/// looked up with sock_diag in each network namespace its processes live in. Empty when it has
/// none, or when the kernel cannot say (before 5.7, no sock_diag).
#[must_use]
pub fn foreign_sockets(target: &Target) -> Vec<ForeignSocket> {
    let inside = subtree_ids(&target.dir);
    let pids = crate::os::cgroup::pids_below(&target.dir);
    let owners = socket_owners(&pids);
    if owners.is_empty() {
        return Vec::new();
    }
    // One dump per network namespace, from a thread inside it.
    let mut namespaces: HashMap<u64, i32> = HashMap::new();
    for &pid in &pids {
        if let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/net")) {
            namespaces.entry(meta.ino()).or_insert(pid);
        }
    }
    let mut foreign = Vec::new();
    for pid in namespaces.into_values() {
        let Ok(namespace) = netns::Netns::open(Path::new(&format!("/proc/{pid}/ns/net"))) else { continue };
        let (sockets, unlisted) = match namespace.run(sock_diag::inet_sockets) {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                tracing::info!("sock_diag cannot list the target's sockets here: {err}; moved sockets go unnamed");
                continue;
            }
            Err(err) => {
                tracing::info!("sock_diag cannot list the target's sockets: {err}; moved sockets go unnamed");
                continue;
            }
        };
        if !unlisted.is_empty() {
            tracing::info!(
                "sock_diag cannot list the target's {} sockets on this kernel (inet_diag, tcp_diag or \
                 udp_diag missing): moved sockets of them go unnamed",
                unlisted.join(" and ")
            );
        }
        for socket in sockets {
            if let Some(&pid) = owners.get(&socket.inode)
                && !inside.contains(&socket.cgroup_id)
            {
                foreign.push(ForeignSocket { pid, protocol: socket.protocol, cgroup_id: socket.cgroup_id });
            }
        }
    }
    foreign.sort_by_key(|s| (s.pid, s.cgroup_id));
    foreign
}

/// The note chaos prints at start when the target has sockets of another cgroup.
#[must_use]
pub fn foreign_sockets_note(target: &Target, foreign: &[ForeignSocket]) -> Option<String> {
    let first = foreign.first()?;
    let pids: HashSet<i32> = foreign.iter().map(|s| s.pid).collect();
    Some(format!(
        "{} socket(s) of {} process(es) in {} were created in another cgroup (e.g. pid {}: a {} socket \
         of cgroup id {}): a socket stays in the cgroup it was created in, so this fault does not see \
         their packets; restart those processes inside the target to include them",
        foreign.len(),
        pids.len(),
        target.cgroup,
        first.pid,
        first.protocol,
        first.cgroup_id
    ))
}

/// The cgroup ids of `dir` and every cgroup below it (a cgroup's id is its inode number).
pub fn subtree_ids(dir: &Path) -> HashSet<u64> {
    let mut ids = HashSet::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(meta) = fs::metadata(&dir) {
            ids.insert(meta.ino());
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
        }
    }
    ids
}

/// Socket inode -> the pid holding it, from /proc/PID/fd (`socket:[N]` links).
pub fn socket_owners(pids: &[i32]) -> HashMap<u64, i32> {
    let mut owners = HashMap::new();
    for &pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            if let Some(inode) = fs::read_link(fd.path()).ok().as_deref().and_then(socket_inode) {
                owners.entry(inode).or_insert(pid);
            }
        }
    }
    owners
}

fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Watches a network fault's counters for a quiet spell: no packet seen for [`QUIET_FOR`].
#[derive(Clone, Debug)]
pub struct QuietHint {
    cgroup: String,
    seen: u64,
    since: Instant,
    shown: bool,
    /// The likely reasons, where the fault's own differ from a packet fault's.
    reasons: Option<&'static str>,
}

impl QuietHint {
    #[must_use]
    pub fn new(target: &Target, now: Instant) -> Self {
        Self { cgroup: target.cgroup.clone(), seen: 0, since: now, shown: false, reasons: None }
    }

    /// The watch for `plan`'s fault, or None where seeing nothing says nothing: packet faults
    /// get it, and faults whose companion counts what it sees (with the companion's own likely
    /// reasons); syscall and process faults, which count calls, do not.
    #[must_use]
    pub fn for_plan(plan: &FaultPlan, now: Instant) -> Option<Self> {
        match &plan.companion {
            Some(companion) => Some(Self { reasons: Some(companion.quiet_reasons()), ..Self::new(&plan.target, now) }),
            None => plan.counter_label.is_none().then(|| Self::new(&plan.target, now)),
        }
    }

    /// The hint, once, when no direction has seen a packet for [`QUIET_FOR`].
    pub fn check(&mut self, now: Instant, counters: &[DirectionCounters]) -> Option<String> {
        let seen: u64 = counters.iter().map(|c| c.seen).sum();
        if seen != self.seen {
            (self.seen, self.since) = (seen, now);
            return None;
        }
        if self.shown || now.duration_since(self.since) < QUIET_FOR {
            return None;
        }
        self.shown = true;
        let directions: Vec<&str> = counters.iter().map(|c| c.direction).collect();
        let quiet_for = now.duration_since(self.since).as_secs();
        if let Some(reasons) = self.reasons {
            return Some(format!(
                "hint: nothing seen ({}) on {} for {quiet_for} s. Likely: {reasons}",
                directions.join(", "),
                self.cgroup
            ));
        }
        Some(format!(
            "hint: no packet seen ({}) on {} for {} s. Likely: the target sends and receives nothing \
             right now; its sockets were created in another cgroup (a process moved in after opening \
             them: restart it inside the target); or the fault watches the other direction than the \
             traffic (--direction)",
            directions.join(", "),
            self.cgroup,
            quiet_for
        ))
    }
}

#[cfg(test)]
mod tests {
    use chaos_common::Direction;

    use super::*;

    fn counters(seen: u64) -> Vec<DirectionCounters> {
        vec![DirectionCounters {
            direction: crate::report::direction_name(Direction::Egress),
            seen,
            matched: 0,
            injected: 0,
        }]
    }

    #[test]
    fn the_quiet_hint_comes_once_after_ten_quiet_seconds_and_not_with_traffic() {
        let target = Target { named_as: "--cgroup /t".into(), cgroup: "/t".into(), dir: "/nonexistent".into(), id: 9 };
        let start = Instant::now();
        let mut quiet = QuietHint::new(&target, start);
        assert!(quiet.check(start + Duration::from_secs(9), &counters(0)).is_none());
        let hint = quiet.check(start + Duration::from_secs(10), &counters(0)).expect("a hint at 10 s");
        assert!(hint.contains("another cgroup") && hint.contains("--direction"), "{hint}");
        assert!(quiet.check(start + Duration::from_secs(20), &counters(0)).is_none(), "only once");

        let mut busy = QuietHint::new(&target, start);
        for s in 1..30 {
            assert!(busy.check(start + Duration::from_secs(s), &counters(s * 10)).is_none());
        }
    }

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode(Path::new("socket:[12345]")), Some(12345));
        assert_eq!(socket_inode(Path::new("pipe:[12345]")), None);
    }
}
