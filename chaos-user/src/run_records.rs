//! What is running: one small JSON record per run in /run/chaos/runs (experiments, one-shot
//! faults from the command line, the daemon's runs), for `chaos status`, `chaos stop`, `chaos
//! cleanup` and the conflict check of the next run.
//!
//! A foreground run writes its record when it starts, rewrites it with its counts every second
//! and removes it when it ends (a guard's Drop, so panics too). A run killed by SIGKILL leaves
//! its record behind; the record names its process (pid and start time), so a dead owner is
//! recognised and the record cleaned. A detached experiment's record lives until its pins are
//! removed (by `chaos stop`, its reaper at the deadline, or any later `status`, `cleanup` or
//! `run` once the deadline has passed). /run is a tmpfs: records go with a reboot, as do pins.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::os::sys;

pub const RUNS_DIR: &str = "/run/chaos/runs";

/// One running (or stale) experiment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    /// The process that owns it: the foreground run, or a detached experiment's reaper.
    pub pid: u32,
    pub pid_start: u64,
    pub detached: bool,
    /// A detached experiment still being set up by the chaos that pins it (`pid`): the record
    /// is written before the pins, so whatever happens to that chaos, something describes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starting: bool,
    /// Who started it: absent in records written before one-shot faults registered.
    #[serde(default)]
    pub kind: RunKind,
    pub name: String,
    pub file: String,
    /// The target cgroup's path and id.
    pub target: String,
    pub target_id: u64,
    pub faults: Vec<FaultRecord>,
    /// CLOCK_MONOTONIC ns at which the whole experiment ends (after its last fault).
    pub ends_ns: u64,
    pub timeline: String,
    /// Detached: the bpffs directory holding its pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_dir: Option<PathBuf>,
}

/// What kind of chaos process a record stands for. Every kind is listed by `status`, ended by
/// `stop --all` and counted by the conflict check: "stop all chaos" means all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    /// `chaos run FILE` (foreground or detached).
    #[default]
    Experiment,
    /// One fault from the command line (`chaos net drop ...`).
    OneShot,
    /// An experiment the daemon runs in its own process.
    Daemon,
}

impl RunKind {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Experiment => "experiment",
            Self::OneShot => "one-shot",
            Self::Daemon => "daemon",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultRecord {
    /// `#1 net drop`
    pub label: String,
    /// Where its programs attach: (hook, place), e.g. ("cgroup_skb/egress", "/sys/fs/cgroup/x").
    pub hooks: Vec<(String, String)>,
    /// Injections so far (foreground runs update it every second).
    #[serde(default)]
    pub injected: u64,
    /// Detached: the fault's pinned maps, to read its counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_dir: Option<PathBuf>,
}

/// The state of a record's owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Its process runs (foreground), or its deadline has not passed (detached).
    Running,
    /// Its owner is gone or its deadline has passed: what it left can be removed.
    Stale,
}

impl RunRecord {
    #[must_use]
    pub fn path(&self) -> PathBuf {
        Path::new(RUNS_DIR).join(format!("{}.json", self.id))
    }

    #[must_use]
    pub fn liveness(&self) -> Liveness {
        let owner_alive = crate::os::process::process_alive(self.pid, self.pid_start);
        let before_deadline = sys::monotonic_now_ns() < self.ends_ns;
        // A detached experiment runs until its deadline whatever its reaper does (the kernel
        // ends each armed fault on time); one whose setting-up chaos died did not start at all.
        let running = if self.detached && !self.starting { before_deadline } else { owner_alive };
        if running { Liveness::Running } else { Liveness::Stale }
    }

    /// Time left, in whole seconds.
    #[must_use]
    pub fn seconds_left(&self) -> u64 {
        self.ends_ns.saturating_sub(sys::monotonic_now_ns()) / 1_000_000_000
    }

    /// Writes (or rewrites) the record atomically: readers, and a crash at any moment, see the
    /// old record or the new one, never half a file.
    pub fn write(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        crate::os::records::write_atomic_in_dir(&self.path(), &bytes)
    }

    /// Removes the record, and a detached run's reaper schedule before it (whoever removes a
    /// stale record leaves no schedule that no record names).
    pub fn remove(&self) {
        if self.detached {
            let _ = fs::remove_file(Path::new(RUNS_DIR).join(format!("{}.schedule", self.id)));
        }
        let _ = fs::remove_file(self.path());
    }
}

/// Every record, stale ones included, oldest id first.
#[must_use]
pub fn all() -> Vec<RunRecord> {
    let Ok(entries) = fs::read_dir(RUNS_DIR) else { return Vec::new() };
    let entries: Vec<_> = entries.flatten().collect();
    let mut records: Vec<RunRecord> = entries
        .iter()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
        .collect();
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

/// Removes what a run that died mid-write left in the runs directory: temporaries it never
/// renamed, and records or schedules nobody can read (empty ones from chaos versions that wrote
/// in place), once the process their name ends in is gone. One line per file, for people.
#[must_use]
pub fn remove_unreadable() -> Vec<String> {
    // `ID.json` and `ID.schedule`, the id ending in its writer's pid.
    let owner = |name: &str| -> Option<(u32, Option<u64>)> {
        let id = name.strip_suffix(".json").or_else(|| name.strip_suffix(".schedule"))?;
        Some((id.rsplit('-').next()?.parse().ok()?, None))
    };
    crate::os::records::remove_unreadable(RUNS_DIR, "run file", owner, |bytes| {
        serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
    })
}

/// Removes reaper schedules (`ID.schedule`) that no record names any more, once the chaos that
/// created the run (the pid the id ends in) is gone: a detached run ended by a chaos that died
/// between removing its schedule and its record did so before the schedule was removed first.
/// One line per file, for people.
#[must_use]
pub fn remove_orphan_schedules() -> Vec<String> {
    let Ok(entries) = fs::read_dir(RUNS_DIR) else { return Vec::new() };
    let mut lines = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".schedule") else { continue };
        let creator_gone = id
            .rsplit('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
        if creator_gone && !Path::new(RUNS_DIR).join(format!("{id}.json")).exists() {
            match fs::remove_file(entry.path()) {
                Ok(()) => lines.push(format!("removed the schedule of detached run {id}, which no record names")),
                Err(err) => lines.push(format!("could not remove {}: {err}", entry.path().display())),
            }
        }
    }
    lines
}

/// The record of `id`.
#[must_use]
pub fn find(id: &str) -> Option<RunRecord> {
    all().into_iter().find(|r| r.id == id)
}

/// Removes a foreground run's record when dropped (normal end, error, panic).
pub struct Registration {
    pub record: RunRecord,
}

impl Registration {
    pub fn register(record: RunRecord) -> io::Result<Self> {
        record.write()?;
        Ok(Self { record })
    }

    /// The run's faults are on another cgroup now (a followed target came back): the record
    /// says so before anything announces the move.
    pub fn move_to(&mut self, cgroup: &str, id: u64) -> io::Result<()> {
        (self.record.target, self.record.target_id) = (cgroup.to_owned(), id);
        self.record.write()
    }

    /// Rewrites the record with fresh counts (best effort: status is informative).
    pub fn update_counts(&mut self, injected: &[u64]) {
        for (fault, &count) in self.record.faults.iter_mut().zip(injected) {
            fault.injected = count;
        }
        let _ = self.record.write();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.record.remove();
    }
}

/// A new experiment id: short, unique on this machine, sortable by start time.
#[must_use]
pub fn new_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // Seconds since 2020 in base 36 keep ids short; the pid keeps two processes' runs in one
    // second apart, and a count the runs of one process (the daemon starts many at once; they
    // shared one id, so one record's rename found its temporary file already renamed). The pid
    // stays last: the stale-file cleanup above reads it there.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seconds = now.as_secs().saturating_sub(1_577_836_800);
    match RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
        0 => format!("{}-{}", base36(seconds), std::process::id()),
        n => format!("{}-{}-{}", base36(seconds), base36(n), std::process::id()),
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_distinct_per_process() {
        let id = new_id();
        assert!(id.len() < 16, "{id}");
        assert!(id.ends_with(&format!("-{}", std::process::id())));
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 - 1), "zz");
    }
}
