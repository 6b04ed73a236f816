//! A limit in force: the files it changed, with the values they held, and the target's
//! evidence since. Dropping it puts every value back.
//!
//! The order of each change is what makes it safe to die at any point:
//! 1. a ledger record (`Item::CgroupLimit`: the file, the value about to be written, the value
//!    it holds now), so `chaos cleanup` and the daemon's start can put it back;
//! 2. the same to the guard process, which puts it back within a second if chaos dies, even by
//!    SIGKILL, or is stopped past the time box;
//! 3. the write, then a read back (the kernel may print a value otherwise than it was written:
//!    the record and the guard then learn the value as it reads).
//!
//! A ramp's new value goes the same way, with the record naming both the old and the new
//! value until the write is done. Nothing is put back over a value someone else wrote in the
//! meantime (`cgroup_files::restore`): such a file is left as they set it, and an event says so.
use std::collections::BTreeSet;

use anyhow::{Context as _, bail};

use super::{
    LimitPlan, Resource,
    amounts::format_bytes,
    events::{Gone, LimitEvent},
    evidence::{Snapshot, Window},
    setting::{Basis, Setting},
};
use crate::{
    fault::proc::pick,
    ledger::{
        Entry, Item, {self},
    },
    os::{
        cgroup_files::{
            Knob, Restore, stats, {self},
        },
        guard::Guard,
        sys,
    },
    targets::Target,
};

/// What an OOM kill leaves above the floor: less than this between what the target holds
/// besides its page cache and the floor, and a kill of even a small process brings it below.
const OOM_MARGIN: u64 = 1 << 20;

/// How long an OOM kill's victims may take to leave the cgroup, for the event to name them.
const OOM_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One file chaos changed.
struct Held {
    /// Which of the plan's settings it is (None: a moment's change, such as `--oom`'s).
    setting: Option<usize>,
    knob: Knob,
    previous: String,
    /// The value in force, as the kernel reads it back.
    written: String,
    record: Option<Entry>,
    /// Put back, or left to whoever changed it: nothing more to do.
    released: bool,
}

/// A limit in force on one target.
pub(crate) struct Limited {
    target: Target,
    resource: Resource,
    settings: Vec<Setting>,
    device: Option<String>,
    basis: Basis,
    guard: Guard,
    held: Vec<Held>,
    events: Vec<LimitEvent>,
    /// The target's counters once the limit was in force, and at the last sample.
    first: Snapshot,
    last: Snapshot,
    last_window: Option<Window>,
    samples: u64,
    enforced: u64,
}

impl Limited {
    /// Starts the guard (time box: `deadline_ns`) and sets every file of `plan` (a ramp's first
    /// step in place of the first setting's amount, when `plan.start_ppm` says), then makes the
    /// OOM kill of `--oom`. On an error, what was already set is put back.
    pub(crate) fn start(target: &Target, plan: &LimitPlan, deadline_ns: u64) -> anyhow::Result<Self> {
        for setting in &plan.settings {
            let knob = setting.knob(&target.dir);
            if let Some(owner) = ledger::limit_owner(&knob) {
                bail!(
                    "{} of {} is already limited by chaos (pid {owner}); two limits on one file would each put back \
                     the other's value",
                    knob.label(),
                    target.cgroup
                );
            }
        }
        let guard = Guard::spawn(&target.dir, Some(deadline_ns))
            .context("starting the guard that puts the limits back if chaos dies")?;
        let device = plan.device.as_ref().map(|d| d.id.clone());
        let first = Snapshot::read(&target.dir, device.as_deref());
        let mut limited = Self {
            target: target.clone(),
            resource: plan.resource,
            settings: plan.settings.clone(),
            device,
            basis: Basis::read(&target.dir),
            guard,
            held: Vec::new(),
            events: Vec::new(),
            first,
            last: first,
            last_window: None,
            samples: 0,
            enforced: 0,
        };
        for index in 0..plan.settings.len() {
            let setting = match (index, plan.start_ppm) {
                (0, Some(ppm)) => plan.settings[0].at_ppm(ppm),
                _ => plan.settings[index].clone(),
            };
            limited.apply(index, &setting)?;
        }
        if plan.oom {
            limited.oom_kill()?;
        }
        // The evidence of "during" starts before the first write: an OOM kill, the events of
        // memory.high as it is set, count.
        Ok(limited)
    }

    /// The time box moved: the guard puts everything back if chaos has not by `deadline_ns`.
    pub(crate) fn hold_until(&mut self, deadline_ns: u64) {
        self.guard.time_box(deadline_ns);
    }

    #[must_use]
    pub(crate) const fn resource(&self) -> Resource {
        self.resource
    }

    /// Samples taken, and how many times the kernel enforced the limit over them.
    #[must_use]
    pub(crate) const fn counts(&self) -> (u64, u64) {
        (self.samples, self.enforced)
    }

    /// The last sample's window, if one was taken.
    #[must_use]
    pub(crate) const fn last_window(&self) -> Option<Window> {
        self.last_window
    }

    /// Everything the kernel counted since the limit was in force (up to the last sample).
    #[must_use]
    pub(crate) fn during(&self) -> Window {
        Window::between(&self.first, &self.last)
    }

    /// The events since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<LimitEvent> {
        std::mem::take(&mut self.events)
    }

    /// Reads the target's counters: one `sample` event over the window since the last one.
    pub(crate) fn sample(&mut self) -> Window {
        let now = Snapshot::read(&self.target.dir, self.device.as_deref());
        let window = Window::between(&self.last, &now);
        self.last = now;
        self.samples += 1;
        self.enforced += window.enforced(self.resource);
        self.last_window = Some(window);
        self.events.push(LimitEvent::Sample { resource: self.resource, window, at_ns: now.at_ns });
        window
    }

    /// A ramp's step: the first setting at `ppm` (of one CPU, or of the memory basis).
    pub(crate) fn ramp(&mut self, ppm: u32) -> anyhow::Result<()> {
        let Some(setting) = self.settings.first().map(|s| s.at_ppm(ppm)) else { return Ok(()) };
        self.apply(0, &setting)
    }

    /// Sets setting `index` to `setting`'s value, worked out from the file as it is now.
    fn apply(&mut self, index: usize, setting: &Setting) -> anyhow::Result<()> {
        let knob = setting.knob(&self.target.dir);
        let now = knob.read().with_context(|| format!("reading {}", knob.file.display()))?;
        let (value, note) = setting.value(&now, &self.basis).map_err(anyhow::Error::msg)?;
        match self.held.iter().position(|h| h.setting == Some(index)) {
            Some(at) if self.held[at].released => return Ok(()),
            Some(at) => {
                if !self.rewrite(at, &value)? {
                    return Ok(());
                }
            }
            None => {
                self.hold(Some(index), knob.clone(), now.clone(), &value)?;
            }
        }
        self.events.push(LimitEvent::Set { knob, previous: now, value, note, at_ns: sys::monotonic_now_ns() });
        Ok(())
    }

    /// Records, tells the guard, writes: a file chaos has not changed yet. Returns its index.
    fn hold(&mut self, setting: Option<usize>, knob: Knob, previous: String, value: &str) -> anyhow::Result<usize> {
        let item =
            Item::CgroupLimit { knob: knob.clone(), written: vec![value.to_owned()], previous: previous.clone() };
        let record = ledger::write(None, item).context("recording the limit in the ledger before writing it")?;
        self.guard.limiting(&knob, value, &previous);
        if let Err(err) = knob.write(value) {
            record.settle();
            self.guard.unlimited(&knob);
            bail!("writing {value} to {}: {err}", knob.file.display());
        }
        self.held.push(Held {
            setting,
            knob,
            previous,
            written: value.to_owned(),
            record: Some(record),
            released: false,
        });
        let at = self.held.len() - 1;
        self.confirm(at)?;
        Ok(at)
    }

    /// Writes a new value into a file chaos holds, unless someone else changed it since
    /// (then it is left to them, and false is returned).
    fn rewrite(&mut self, at: usize, value: &str) -> anyhow::Result<bool> {
        let knob = &self.held[at].knob;
        let now = knob.read().with_context(|| format!("reading {}", knob.file.display()))?;
        if !knob.same(&now, &self.held[at].written) {
            self.leave(at, now);
            return Ok(false);
        }
        self.expect(at, value).context("recording the new value in the ledger before writing it")?;
        let held = &mut self.held[at];
        held.knob.write(value).with_context(|| format!("writing {value} to {}", held.knob.file.display()))?;
        held.written = value.to_owned();
        self.confirm(at)?;
        Ok(true)
    }

    /// Tells the ledger and the guard that file `at` may hold `value` next, beside what it holds
    /// now: either one is chaos's, and restoring puts the previous value back over both.
    fn expect(&mut self, at: usize, value: &str) -> anyhow::Result<()> {
        let held = &mut self.held[at];
        let item = Item::CgroupLimit {
            knob: held.knob.clone(),
            written: vec![held.written.clone(), value.to_owned()],
            previous: held.previous.clone(),
        };
        let record = ledger::write(None, item)?;
        if let Some(old) = held.record.replace(record) {
            old.settle();
        }
        self.guard.limiting(&held.knob, value, &held.previous);
        Ok(())
    }

    /// Reads back what was written: when the kernel prints it otherwise (rounded, reordered),
    /// the record and the guard learn the value as it reads, which is what restoring compares.
    fn confirm(&mut self, at: usize) -> anyhow::Result<()> {
        let held = &self.held[at];
        let read = held.knob.read().with_context(|| format!("reading back {}", held.knob.file.display()))?;
        if held.knob.same(&read, &held.written) {
            return Ok(());
        }
        self.expect(at, &read).context("recording the value as the kernel reads it")?;
        self.held[at].written = read;
        Ok(())
    }

    /// Someone else changed a file chaos holds: it is theirs now.
    fn leave(&mut self, at: usize, found: String) {
        let held = &mut self.held[at];
        held.released = true;
        self.guard.unlimited(&held.knob);
        if let Some(record) = held.record.take() {
            record.settle();
        }
        self.events.push(LimitEvent::Restore {
            knob: held.knob.clone(),
            previous: held.previous.clone(),
            outcome: Restore::ChangedByOthers { found },
            at_ns: sys::monotonic_now_ns(),
        });
    }

    /// Puts one file back (if it still holds chaos's value) and forgets it.
    fn release(&mut self, at: usize) {
        let held = &mut self.held[at];
        if held.released {
            return;
        }
        let at_ns = sys::monotonic_now_ns();
        match cgroup_files::restore(&held.knob, std::slice::from_ref(&held.written), &held.previous) {
            Ok(outcome) => {
                held.released = true;
                self.guard.unlimited(&held.knob);
                if let Some(record) = held.record.take() {
                    record.settle();
                }
                self.events.push(LimitEvent::Restore {
                    knob: held.knob.clone(),
                    previous: held.previous.clone(),
                    outcome,
                    at_ns,
                });
            }
            // The record and the guard keep it: they retry.
            Err(err) => self.events.push(LimitEvent::RestoreFailed {
                knob: held.knob.clone(),
                previous: held.previous.clone(),
                error: err.to_string(),
                at_ns,
            }),
        }
    }

    /// Puts every file back, the last changed first.
    pub(crate) fn restore_all(&mut self) {
        for at in (0..self.held.len()).rev() {
            self.release(at);
        }
    }

    /// `--oom`: memory.max just below what the target holds besides its page cache, for as
    /// long as the write takes (the kernel reclaims, then its OOM killer acts until the target
    /// fits), then back. Swap is closed for that moment when the target could use it, or the
    /// kernel would swap instead of kill.
    fn oom_kill(&mut self) -> anyhow::Result<()> {
        let dir = self.target.dir.clone();
        let current = stats::number(&dir, "memory.current").context("--oom: the target has no memory.current")?;
        let stat = stats::keyed(&dir, "memory.stat");
        let reclaimable = stat.get("file").copied().unwrap_or(0) + stat.get("slab_reclaimable").copied().unwrap_or(0);
        let holding = current.saturating_sub(reclaimable);
        if holding < 2 * OOM_MARGIN {
            bail!(
                "--oom: the target holds only {} besides its page cache: there is nothing an OOM kill could free",
                format_bytes(holding)
            );
        }
        let page = 4096;
        let floor = (holding - OOM_MARGIN) / page * page;
        let before: BTreeSet<(u32, u64, String)> =
            pick::members(&dir).into_iter().map(|m| (m.pid, m.start, m.comm)).collect();
        let kills_before = stats::keyed(&dir, "memory.events").get("oom_kill").copied().unwrap_or(0);
        let swap = Knob::file(&dir, "memory.swap.max");
        let closed_swap = match swap.read() {
            Ok(value) if value != "0" && swap_enabled() => Some(self.hold(None, swap.clone(), value, "0")?),
            _ => None,
        };
        let at_ns = sys::monotonic_now_ns();
        let restores_from = self.events.len();
        match self.held.iter().position(|h| h.setting.is_some() && h.knob.name() == "memory.max" && !h.released) {
            // `--max` is in force: down to the floor, then back to `--max`.
            Some(at) => {
                let wanted = self.held[at].written.clone();
                if self.rewrite(at, &floor.to_string())? {
                    self.rewrite(at, &wanted)?;
                }
            }
            None => {
                let knob = Knob::file(&dir, "memory.max");
                let previous = knob.read().context("reading memory.max")?;
                let at = self.hold(None, knob, previous, &floor.to_string())?;
                self.release(at);
            }
        }
        if let Some(at) = closed_swap {
            self.release(at);
        }
        let kills = stats::keyed(&dir, "memory.events").get("oom_kill").copied().unwrap_or(0) - kills_before;
        // The kernel has freed the victims' memory (its OOM reaper), but they may still be on
        // their way out of the cgroup: wait a moment for them to be gone.
        let mut gone = Vec::new();
        let wait_until = std::time::Instant::now() + OOM_EXIT_WAIT;
        while kills > 0 && std::time::Instant::now() < wait_until {
            let after: BTreeSet<(u32, u64, String)> =
                pick::members(&dir).into_iter().map(|m| (m.pid, m.start, m.comm)).collect();
            gone = before.difference(&after).map(|(pid, _, comm)| Gone { pid: *pid, comm: comm.clone() }).collect();
            if gone.len() as u64 >= kills {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.events.insert(restores_from, LimitEvent::OomKill { floor, kills, gone, at_ns });
        Ok(())
    }
}

/// Whether any swap is on (a second line in /proc/swaps).
fn swap_enabled() -> bool {
    std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1)
}

impl Drop for Limited {
    fn drop(&mut self) {
        self.restore_all();
    }
}
