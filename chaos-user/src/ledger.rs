//! What a run puts in the kernel that does not vanish with the process, written down so that
//! `chaos cleanup`, or the next run, can remove it after a crash or SIGKILL.
//!
//! Almost everything chaos attaches is a bpf_link owned by a file descriptor and needs no
//! record. The exceptions are legacy TC (kernels before 6.6): a cls_bpf filter and the clsact
//! qdisc chaos may have created for it are netlink objects that outlive their creator. Records
//! are small JSON files in /run/chaos/ledger (a tmpfs: gone after a reboot, as is what they
//! describe). A record is stale when its owner process is gone (pid and start time, so a reused
//! pid does not keep it alive).
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

use crate::{cgroup_files::Knob, netlink, netns::Netns};

const LEDGER_DIR: &str = "/run/chaos/ledger";

/// One object in the kernel that outlives its creator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Item {
    /// A legacy cls_bpf filter: removed by (interface, direction, priority, handle).
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
    fs::create_dir_all(LEDGER_DIR)?;
    let pid = std::process::id();
    let netns_inode = netns.map_or(0, |n| n.inode);
    let record = Record { owner_pid: pid, owner_start: start_time(pid).unwrap_or(0), netns_inode, item };
    let path = Path::new(LEDGER_DIR).join(format!("{pid}-{}.json", NEXT.fetch_add(1, Ordering::Relaxed)));
    fs::write(&path, serde_json::to_vec(&record).expect("record serializes"))?;
    Ok(Entry { path })
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

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
#[must_use]
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

fn owner_alive(record: &Record) -> bool {
    process_alive(record.owner_pid, record.owner_start)
}

/// Whether process `pid` runs and is the one that started at `start` (not a reused pid).
#[must_use]
pub fn process_alive(pid: u32, start: u64) -> bool {
    start_time(pid).is_some_and(|now| now == start)
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
    let Ok(entries) = fs::read_dir(LEDGER_DIR) else { return Vec::new() };
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
    let mut report = Vec::new();
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
        Item::LegacyTcFilter { iface, ingress, priority, .. } => {
            format!("TC filter (pref {priority}) on {iface} {}", if *ingress { "ingress" } else { "egress" })
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
        let stopped: Vec<i32> = crate::netns::pids_below(cgroup_dir)
            .into_iter()
            .filter(|&pid| crate::fault::syscall::guard::is_stopped(pid))
            .collect();
        for &pid in &stopped {
            // SAFETY: kill(2) with SIGCONT on a stopped process of the delayed cgroup.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        return Ok(format!("{what}: resumed {} still stopped", stopped.len()));
    }
    if let Item::FrozenCgroup { cgroup_dir } = item {
        let was_frozen = crate::fault::proc::freezer::Freezer::of(cgroup_dir).is_ok_and(|f| f.freeze_requested());
        crate::fault::proc::freezer::thaw(cgroup_dir)?;
        return Ok(format!("{what}: {}", if was_frozen { "thawed" } else { "not frozen any more" }));
    }
    if let Item::CgroupLimit { knob, written, previous } = item {
        return Ok(match crate::cgroup_files::restore(knob, written, previous)? {
            crate::cgroup_files::Restore::Restored => format!("{what}: put back {previous}"),
            crate::cgroup_files::Restore::AlreadyBack => format!("{what}: already back to {previous}"),
            crate::cgroup_files::Restore::ChangedByOthers { found } => {
                format!("{what}: left alone, someone else set it to {found} since")
            }
            crate::cgroup_files::Restore::Gone => format!("{what}: the cgroup is gone, and the limit with it"),
        });
    }
    let Ok(ifindex) = ifindex(item) else {
        return Ok(format!("{what}: interface gone, nothing to remove"));
    };
    match item {
        Item::LegacyTcFilter { iface, ingress, priority, handle } => {
            let attach_type = if *ingress { TcAttachType::Ingress } else { TcAttachType::Egress };
            let link = SchedClassifierLink::attached(iface, attach_type, *priority, TcHandle::from(*handle), None)?;
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
            let left = socket.filter_count(ifindex, netlink::CLSACT_INGRESS)?
                + socket.filter_count(ifindex, netlink::CLSACT_EGRESS)?;
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
