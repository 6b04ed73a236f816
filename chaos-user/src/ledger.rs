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
    fs,
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{
    TcAttachType,
    tc::{SchedClassifierLink, TcHandle},
};
use serde::{Deserialize, Serialize};

use crate::{netlink, netns::Netns};

const LEDGER_DIR: &str = "/run/chaos/ledger";

/// One object in the kernel that outlives its creator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Item {
    /// A legacy cls_bpf filter: removed by (interface, direction, priority, handle).
    LegacyTcFilter { iface: String, ingress: bool, priority: u16, handle: u32 },
    /// A clsact qdisc chaos added for its filters; removed only once no filter is left in it.
    ClsactQdisc { iface: String },
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

/// Writes a record of `item` in `netns`, owned by this process.
pub fn write(netns: &Netns, item: Item) -> io::Result<Entry> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    fs::create_dir_all(LEDGER_DIR)?;
    let pid = std::process::id();
    let record = Record { owner_pid: pid, owner_start: start_time(pid).unwrap_or(0), netns_inode: netns.inode, item };
    let path = Path::new(LEDGER_DIR).join(format!("{pid}-{}.json", NEXT.fetch_add(1, Ordering::Relaxed)));
    fs::write(&path, serde_json::to_vec(&record).expect("record serializes"))?;
    Ok(Entry { path })
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
    // Filters before the qdiscs that hold them.
    records.sort_by_key(|(_, r)| matches!(r.item, Item::ClsactQdisc { .. }));
    let mut report = Vec::new();
    for (path, record) in records {
        let Some(netns) = find_netns(record.netns_inode) else {
            // The namespace is gone, and everything in it with it.
            report.push(format!("{}: its network namespace no longer exists; nothing to remove", describe(&record.item)));
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
    }
}

/// Removes `item` from the calling thread's namespace. Items already gone count as removed.
pub fn remove(item: &Item) -> io::Result<String> {
    let what = describe(item);
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
        Item::ClsactQdisc { .. } => {
            let mut socket = netlink::RouteSocket::open()?;
            let left = socket.filter_count(ifindex, netlink::CLSACT_INGRESS)?
                + socket.filter_count(ifindex, netlink::CLSACT_EGRESS)?;
            if left > 0 {
                return Ok(format!("kept {what}: other filters still use it"));
            }
            match socket.delete_qdisc(ifindex, netlink::TC_H_CLSACT, netlink::CLSACT_HANDLE) {
                Ok(()) => Ok(format!("removed {what}")),
                Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => Ok(format!("{what}: already gone")),
                Err(err) => Err(err),
            }
        }
    }
}

fn ifindex(item: &Item) -> io::Result<i32> {
    let iface = match item {
        Item::LegacyTcFilter { iface, .. } | Item::ClsactQdisc { iface } => iface,
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
