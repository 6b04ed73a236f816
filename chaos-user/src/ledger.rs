//! What a run puts in the kernel that does not vanish with the process, written down so that
//! `chaos cleanup`, or the next run, can remove it after a crash or SIGKILL.
//!
//! Almost everything chaos attaches is a bpf_link owned by a file descriptor and needs no
//! record. The exceptions are legacy TC (kernels before 6.6): a cls_bpf filter and the clsact
//! qdisc chaos may have created for it are netlink objects that outlive their creator. Records
//! are small JSON files in /run/chaos/ledger (a tmpfs: gone after a reboot, as is what they
//! describe). A record is stale when its owner process is gone (pid and start time, so a reused
//! pid does not keep it alive).
//!
//! A record is written atomically ([`crate::os::records::write_atomic`]) and BEFORE the change it
//! describes, so that whenever chaos dies, a record can be early (describing something that
//! was never made: cleanup finds nothing and calls it done), never missing nor half-written.
//! Its file is named after its owner (`PID-START-N.json`), so that a file nobody can read (one
//! written by an older chaos that died mid-write) is still known to be a dead process's, and
//! removed.
use std::{
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{
    TcAttachType,
    tc::{SchedClassifierLink, TcHandle},
};
use serde::{Deserialize, Serialize};

use crate::os::{cgroup_files::Knob, netlink, netns::Netns};

const LEDGER_DIR: &str = "/run/chaos/ledger";

/// One object in the kernel that outlives its creator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Item {
    /// A legacy cls_bpf filter: removed by (interface, direction, priority, handle). The record
    /// is written before the filter exists, with the handle chaos chose and priority 0: the
    /// kernel picks the priority, and cleanup finds the filter by its handle.
    LegacyTcFilter { iface: String, ingress: bool, priority: u16, handle: u32 },
    /// A clsact qdisc chaos added for its filters; removed only once no filter is left in it.
    ClsactQdisc { iface: String },
    /// The root qdisc chaos replaced with fq (network delay): put back.
    ReplacedRootQdisc { iface: String, previous: netlink::Qdisc },
    /// Processes of this cgroup that `syscall delay` may have stopped: resumed.
    StoppedTasks { cgroup_dir: std::path::PathBuf },
    /// A cgroup `proc pause` may have frozen (cgroup v2 freezer): thawed.
    FrozenCgroup { cgroup_dir: std::path::PathBuf },
    /// A cgroup interface file a `limit` fault changed: `previous` is put back if the file
    /// still holds a value of `written` (the one in force, and while a ramp changes it, the one
    /// it replaces); a value someone else set since is left alone.
    CgroupLimit { knob: Knob, written: Vec<String>, previous: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub owner_pid: u32,
    pub owner_start: u64,
    pub netns_inode: u64,
    pub item: Item,
}

/// A written record; [`Entry::settle`] removes it once the item itself is gone.
#[derive(Debug)]
pub struct Entry {
    path: PathBuf,
}

impl Entry {
    /// The item was removed properly: forget it.
    pub fn settle(self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Writes a record of `item` in `netns` (None for items outside any network namespace), owned
/// by this process.
pub fn write(netns: Option<&Netns>, item: Item) -> io::Result<Entry> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let netns_inode = netns.map_or(0, |n| n.inode);
    let owner_start = crate::os::process::start_time(pid).unwrap_or(0);
    let record = Record { owner_pid: pid, owner_start, netns_inode, item };
    let path = Path::new(LEDGER_DIR).join(format!("{pid}-{owner_start}-{}.json", NEXT.fetch_add(1, Ordering::Relaxed)));
    crate::os::records::write_atomic_in_dir(&path, &serde_json::to_vec(&record).expect("record serializes"))?;
    Ok(Entry { path })
}

/// The owner a record's file name gives: (pid, start time), or (pid, None) for the names of
/// chaos versions that named records `PID-N.json`.
pub(crate) fn owner_named(file_name: &str) -> Option<(u32, Option<u64>)> {
    let stem = file_name.strip_suffix(".json")?;
    let mut parts = stem.split('-');
    let pid = parts.next()?.parse().ok()?;
    let rest: Vec<&str> = parts.collect();
    match rest[..] {
        [start, _n] => Some((pid, Some(start.parse().ok()?))),
        [_n] => Some((pid, None)),
        _ => None,
    }
}

/// The live chaos process, other than this one, that put fq in place of the root qdisc of
/// `iface` in `netns` for a network delay or rate, if any. Two such faults on one interface
/// would clash: the first to end puts the old qdisc back under the other.
#[must_use]
pub fn root_qdisc_owner(netns: &Netns, iface: &str) -> Option<u32> {
    fs::read_dir(LEDGER_DIR)
        .ok()?
        .flatten()
        .filter_map(|entry| serde_json::from_slice::<Record>(&fs::read(entry.path()).ok()?).ok())
        .find(|record| {
            record.netns_inode == netns.inode
                && record.owner_pid != std::process::id()
                && matches!(&record.item, Item::ReplacedRootQdisc { iface: i, .. } if i == iface)
                && owner_alive(record)
        })
        .map(|record| record.owner_pid)
}

/// The live chaos process (this one included) whose `limit` fault holds `knob`, if any: a
/// second limit on the same file would take the first one's value for the one to restore.
#[must_use]
pub fn limit_owner(knob: &Knob) -> Option<u32> {
    fs::read_dir(LEDGER_DIR)
        .ok()?
        .flatten()
        .filter_map(|entry| serde_json::from_slice::<Record>(&fs::read(entry.path()).ok()?).ok())
        .find(|record| matches!(&record.item, Item::CgroupLimit { knob: k, .. } if k == knob) && owner_alive(record))
        .map(|record| record.owner_pid)
}

fn owner_alive(record: &Record) -> bool {
    crate::os::process::process_alive(record.owner_pid, record.owner_start)
}

/// Removes what crashed runs left behind, returning a line per item (removed, or why not).
/// Cleaners take turns (an exclusive lock on the ledger), so two runs starting together never
/// race to remove the same item.
#[must_use]
pub fn cleanup_stale() -> Vec<String> {
    let Ok(entries) = fs::read_dir(LEDGER_DIR) else { return Vec::new() };
    let Ok(lock) = fs::File::open(LEDGER_DIR) else { return Vec::new() };
    // SAFETY: flock on an open directory fd; released when `lock` is dropped.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return vec![format!("could not lock {LEDGER_DIR}: {}", io::Error::last_os_error())];
    }
    // Read after taking the lock: a cleaner before us may have removed some already.
    drop(entries);
    let mut report = crate::os::records::remove_unreadable(LEDGER_DIR, "ledger record", owner_named, |bytes| {
        serde_json::from_slice::<Record>(bytes).is_ok()
    });
    let Ok(entries) = fs::read_dir(LEDGER_DIR) else { return report };
    let mut records: Vec<(PathBuf, Record)> = entries
        .flatten()
        .filter_map(|e| {
            let record = serde_json::from_slice::<Record>(&fs::read(e.path()).ok()?).ok()?;
            Some((e.path(), record))
        })
        .filter(|(_, record)| !owner_alive(record))
        .collect();
    // Frozen cgroups and stopped tasks first (they wait on nothing; a frozen task acts on
    // SIGCONT only once thawed), then filters before the qdiscs that hold them.
    records.sort_by_key(|(_, r)| match r.item {
        Item::FrozenCgroup { .. } | Item::StoppedTasks { .. } | Item::CgroupLimit { .. } => 0,
        Item::LegacyTcFilter { .. } => 1,
        _ => 2,
    });
    for (path, record) in records {
        if matches!(record.item, Item::StoppedTasks { .. } | Item::FrozenCgroup { .. } | Item::CgroupLimit { .. }) {
            match remove(&record.item) {
                Ok(what) => {
                    report.push(what);
                    let _ = fs::remove_file(&path);
                }
                Err(err) => report.push(format!("{}: could not remove: {err}", describe(&record.item))),
            }
            continue;
        }
        let Some(netns) = find_netns(record.netns_inode) else {
            // The namespace is gone, and everything in it with it.
            report
                .push(format!("{}: its network namespace no longer exists; nothing to remove", describe(&record.item)));
            let _ = fs::remove_file(&path);
            continue;
        };
        match netns.run(|| remove(&record.item)) {
            Ok(Ok(what)) => {
                report.push(what);
                let _ = fs::remove_file(&path);
            }
            Ok(Err(err)) => report.push(format!("{}: could not remove: {err}", describe(&record.item))),
            Err(err) => report.push(format!("{}: {err}", describe(&record.item))),
        }
    }
    report
}

fn describe(item: &Item) -> String {
    match item {
        Item::LegacyTcFilter { iface, ingress, priority, handle } => {
            let direction = if *ingress { "ingress" } else { "egress" };
            if *priority == 0 {
                format!("TC filter (handle {handle:#x}) on {iface} {direction}")
            } else {
                format!("TC filter (pref {priority}) on {iface} {direction}")
            }
        }
        Item::ClsactQdisc { iface } => format!("clsact qdisc on {iface}"),
        Item::ReplacedRootQdisc { iface, previous } => {
            format!("fq put in place of the {} root qdisc on {iface}", previous.kind)
        }
        Item::StoppedTasks { cgroup_dir } => {
            format!("processes of {} stopped by a syscall delay", cgroup_dir.display())
        }
        Item::FrozenCgroup { cgroup_dir } => format!("cgroup {} frozen by a proc pause", cgroup_dir.display()),
        Item::CgroupLimit { knob, written, .. } => format!(
            "{} of {} set to {} by a limit",
            knob.label(),
            knob.file.parent().unwrap_or(&knob.file).display(),
            written.last().map_or("?", String::as_str)
        ),
    }
}

/// Removes `item` from the calling thread's namespace. Items already gone count as removed.
pub fn remove(item: &Item) -> io::Result<String> {
    let what = describe(item);
    if let Item::StoppedTasks { cgroup_dir } = item {
        let stopped: Vec<i32> = crate::os::cgroup::pids_below(cgroup_dir)
            .into_iter()
            .filter(|&pid| crate::os::guard::is_stopped(pid))
            .collect();
        for &pid in &stopped {
            // SAFETY: kill(2) with SIGCONT on a stopped process of the delayed cgroup.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        return Ok(format!("{what}: resumed {} still stopped", stopped.len()));
    }
    if let Item::FrozenCgroup { cgroup_dir } = item {
        if !cgroup_dir.exists() {
            // Gone with everything in it: nothing is frozen there any more.
            return Ok(format!("{what}: the cgroup is gone, nothing to thaw"));
        }
        let was_frozen = crate::os::freezer::Freezer::of(cgroup_dir).is_ok_and(|f| f.freeze_requested());
        crate::os::freezer::thaw(cgroup_dir)?;
        return Ok(format!("{what}: {}", if was_frozen { "thawed" } else { "not frozen any more" }));
    }
    if let Item::CgroupLimit { knob, written, previous } = item {
        return Ok(match crate::os::cgroup_files::restore(knob, written, previous)? {
            crate::os::cgroup_files::Restore::Restored => format!("{what}: put back {previous}"),
            crate::os::cgroup_files::Restore::AlreadyBack => format!("{what}: already back to {previous}"),
            crate::os::cgroup_files::Restore::ChangedByOthers { found } => {
                format!("{what}: left alone, someone else set it to {found} since")
            }
            crate::os::cgroup_files::Restore::Gone => format!("{what}: the cgroup is gone, and the limit with it"),
        });
    }
    let Ok(ifindex) = ifindex(item) else {
        return Ok(format!("{what}: interface gone, nothing to remove"));
    };
    match item {
        Item::LegacyTcFilter { iface, ingress, priority, handle } => {
            let attach_type = if *ingress { TcAttachType::Ingress } else { TcAttachType::Egress };
            // Written before the filter existed, the record has the handle chaos chose; the
            // kernel chose the priority, so the filter is looked up by its handle.
            let priority = if *priority != 0 {
                *priority
            } else {
                let parent = if *ingress { netlink::CLSACT_INGRESS } else { netlink::CLSACT_EGRESS };
                let filters = netlink::RouteSocket::open()?.filters(ifindex, parent)?;
                match filters.iter().find(|f| f.handle == *handle) {
                    Some(filter) => filter.priority,
                    None => return Ok(format!("{what}: not there (chaos died before or after attaching it)")),
                }
            };
            let link = SchedClassifierLink::attached(iface, attach_type, priority, TcHandle::from(*handle), None)?;
            match aya::programs::links::Link::detach(link) {
                Ok(()) => Ok(format!("removed {what}")),
                Err(err) => {
                    let text = err.to_string();
                    if text.contains("No such file") || text.contains("ENOENT") {
                        Ok(format!("{what}: already gone"))
                    } else {
                        Err(io::Error::other(text))
                    }
                }
            }
        }
        Item::ReplacedRootQdisc { previous, .. } => {
            let mut socket = netlink::RouteSocket::open()?;
            restore_root_qdisc(&mut socket, ifindex, previous)?;
            Ok(format!("restored the {} root qdisc (removed {what})", previous.kind))
        }
        Item::StoppedTasks { .. } | Item::FrozenCgroup { .. } | Item::CgroupLimit { .. } => {
            unreachable!("handled above")
        }
        Item::ClsactQdisc { .. } => {
            let mut socket = netlink::RouteSocket::open()?;
            let left = socket.filters(ifindex, netlink::CLSACT_INGRESS)?.len()
                + socket.filters(ifindex, netlink::CLSACT_EGRESS)?.len();
            if left > 0 {
                return Ok(format!("kept {what}: other filters still use it"));
            }
            match socket.delete_qdisc(ifindex, netlink::TC_H_CLSACT, netlink::CLSACT_HANDLE) {
                Ok(()) => Ok(format!("removed {what}")),
                Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => {
                    Ok(format!("{what}: already gone"))
                }
                Err(err) => Err(err),
            }
        }
    }
}

/// Puts back a root qdisc chaos replaced: a device default (handle 0) comes back by deleting
/// chaos's fq, anything else is re-created as it was read.
pub fn restore_root_qdisc(
    socket: &mut netlink::RouteSocket,
    ifindex: i32,
    previous: &netlink::Qdisc,
) -> io::Result<()> {
    if previous.handle == 0 {
        match socket.delete_root_qdisc(ifindex) {
            Err(err) if !matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => Err(err),
            _ => Ok(()),
        }
    } else {
        socket.restore_root_qdisc(ifindex, previous)
    }
}

fn ifindex(item: &Item) -> io::Result<i32> {
    let iface = match item {
        Item::LegacyTcFilter { iface, .. } | Item::ClsactQdisc { iface } | Item::ReplacedRootQdisc { iface, .. } => {
            iface
        }
        Item::StoppedTasks { .. } | Item::FrozenCgroup { .. } | Item::CgroupLimit { .. } => return Ok(0),
    };
    let name = std::ffi::CString::new(iface.as_str()).map_err(io::Error::other)?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        index => Ok(index as i32),
    }
}

/// A handle on the network namespace with this inode: a process's, or a bind-mounted one.
fn find_netns(inode: u64) -> Option<Netns> {
    let named = fs::read_dir("/run/netns").into_iter().flatten().flatten().map(|e| e.path());
    let of_processes = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .map(|e| e.path().join("ns/net"));
    named
        .chain(of_processes)
        .find(|path| fs::metadata(path).is_ok_and(|m| m.ino() == inode))
        .and_then(|path| Netns::open(&path).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_owner_is_read_from_its_file_name() {
        assert_eq!(owner_named("5433-81234-0.json"), Some((5433, Some(81234))));
        assert_eq!(owner_named("5433-0.json"), Some((5433, None)), "the names of older chaos versions");
        assert_eq!(owner_named("notes.txt"), None);
        assert_eq!(owner_named("x-1.json"), None);
    }

    #[test]
    fn unreadable_records_of_dead_writers_go_and_those_of_live_ones_stay() {
        let dir = std::env::temp_dir().join(format!("chaos-ledger-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let me = std::process::id();
        let my_start = crate::os::process::start_time(me).unwrap();
        // pid_max is at most 2^22: a pid above it never runs.
        let dead = 4_194_400;
        for (name, text) in [
            (format!("{dead}-1-0.json"), ""),
            (format!("{dead}-1-1.json"), "{\"half"),
            (format!(".{dead}-1-2.json.{dead}.tmp"), "{}"),
            (format!("{me}-{my_start}-0.json"), ""),
            (format!("{dead}-1-3.json"), "readable"),
        ] {
            fs::write(dir.join(name), text).unwrap();
        }
        let lines = crate::os::records::remove_unreadable(dir.to_str().unwrap(), "ledger record", owner_named, |b| {
            b == b"readable"
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("empty: its writer died while writing it")), "{lines:?}");
        let mut left: Vec<String> =
            fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut want = vec![format!("{dead}-1-3.json"), format!("{me}-{my_start}-0.json")];
        want.sort();
        assert_eq!(left, want);
        fs::remove_dir_all(&dir).unwrap();
    }
}
