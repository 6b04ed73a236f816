//! `chaos proc pause`: its options, its planner, and the freeze/thaw cycle it runs.
//!
//! `--for 10s` alone freezes the whole target cgroup (cgroup v2 `cgroup.freeze`) for the run and
//! thaws it at the end; `--every 1m --pause 2s` freezes it for 2 s once a minute (a
//! stop-the-world GC, a stalled VM). A frozen cgroup outlives the process that froze it, so
//! before the first freeze chaos writes a ledger record (`chaos cleanup` thaws it) and starts
//! the guard process of `syscall delay`, which thaws the target when chaos exits, crashes, is
//! SIGKILLed, or is itself stopped past the time box. A target holding chaos (and so its guard)
//! is refused, with or without --i-know: nothing would be left to thaw it.
use std::time::Duration;

use chaos_common::FaultConfig;

use crate::{
    fault::{FaultContext, FaultPlan, MapContents, PlanError, PlanFault, actor::Actor, proc::ticker::Ticker},
    ledger::{self, Entry, Item},
    os::{freezer::Freezer, guard::Guard, sys},
    plan::action::{ActionEvent, ActionOutcome, RunningAction, UserspaceAction},
    targets::{self, Target},
};

/// How long a freeze may take to complete before chaos says so (a task in an uninterruptible
/// sleep, e.g. on a slow disk, is frozen only when it leaves it).
const FREEZE_WAIT: Duration = Duration::from_secs(1);

/// `proc pause`.
#[derive(Clone, Debug, clap::Args)]
pub struct ProcPauseOptions {
    /// Freeze periodically, once every PERIOD (else: for the whole --for).
    #[arg(long, value_name = "PERIOD", value_parser = crate::plan::options::parse_duration, requires = "pause")]
    pub every: Option<Duration>,
    /// With --every: how long each freeze lasts (shorter than the period).
    #[arg(long, value_name = "DURATION", value_parser = crate::plan::options::parse_duration, requires = "every")]
    pub pause: Option<Duration>,
    /// With --every: at most N freezes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), requires = "every")]
    pub max: Option<u64>,
}

/// The freezes a pause will make.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct PausePlan {
    /// None: one freeze for the whole run.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secs")]
    pub every: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secs")]
    pub pause: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.map_or(0.0, |d| d.as_secs_f64()))
}

impl ProcPauseOptions {
    pub fn pause_plan(&self) -> Result<PausePlan, PlanError> {
        if let (Some(every), Some(pause)) = (self.every, self.pause)
            && pause >= every
        {
            return Err(PlanError::Refused(format!(
                "--pause {} is not shorter than --every {}: the target would never run; for one long freeze use --for \
                 alone",
                humantime::format_duration(pause),
                humantime::format_duration(every)
            )));
        }
        Ok(PausePlan { every: self.every, pause: self.pause, max: self.max })
    }
}

impl PlanFault for ProcPauseOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let pause = self.pause_plan()?;
        let target = context.target;
        // Refused even with --i-know: chaos's guard runs in chaos's cgroup, and a frozen guard
        // cannot thaw anything.
        if let Some(own) = targets::own_cgroup()
            && targets::is_same_or_below(&own, &target.cgroup)
        {
            return Err(PlanError::Refused(format!(
                "cgroup {} holds chaos itself (it runs in {own}), and so the guard that would thaw it: a pause there \
                 could never end. Run chaos from outside the target",
                target.cgroup
            )));
        }
        Freezer::of(&target.dir).map_err(PlanError::Refused)?;
        let summary = match (pause.every, pause.pause) {
            (Some(every), Some(length)) => format!(
                "freezes the whole cgroup for {} every {}{}",
                humantime::format_duration(length),
                humantime::format_duration(every),
                pause.max.map_or(String::new(), |m| format!(", at most {m} times"))
            ),
            _ => "freezes the whole cgroup for the run, thaws it at the end".into(),
        };
        Ok(FaultPlan {
            fault: "proc pause",
            injected_word: "paused",
            counter_label: Some("freezes"),
            target: target.clone(),
            summary,
            parameters: serde_json::to_value(pause).expect("serializes"),
            duration: context.duration,
            programs: Vec::new(),
            config: FaultConfig::default(),
            maps: MapContents::default(),
            kernel_offsets: None,
            companion: None,
            userspace: Some(std::sync::Arc::new(pause)),
        })
    }
}

impl UserspaceAction for PausePlan {
    /// Writes the ledger record and starts the guard here, before the actor's thread, so a
    /// failure is reported before anything is frozen; then freezes as planned.
    fn start(
        &self,
        target: &Target,
        deadline_ns: u64,
        _object: Option<&mut aya::Ebpf>,
    ) -> anyhow::Result<Box<dyn RunningAction>> {
        let start_ns = sys::monotonic_now_ns();
        let mut paused = Paused::start(target, self, deadline_ns)?;
        let actor = Actor::spawn_counting(move |wait, acted| {
            let mut outcome = ActionOutcome::default();
            paused.run(start_ns, deadline_ns, wait, acted, &mut outcome.events);
            (outcome.ticks, outcome.acted) = (paused.freezes(), paused.freezes());
            outcome
        })?;
        Ok(Box::new(actor))
    }
}

/// A pause in progress: the freezer, its guard and its ledger record. Dropping it thaws.
pub struct Paused {
    plan: PausePlan,
    freezer: Freezer,
    guard: Guard,
    record: Option<Entry>,
    frozen: bool,
    freezes: u64,
}

impl Paused {
    /// Writes the ledger record and starts the guard (time box: `deadline_ns`), before any
    /// freeze.
    pub fn start(target: &crate::targets::Target, plan: &PausePlan, deadline_ns: u64) -> anyhow::Result<Self> {
        let freezer = Freezer::of(&target.dir).map_err(anyhow::Error::msg)?;
        let record = ledger::write(None, Item::FrozenCgroup { cgroup_dir: target.dir.clone() })
            .map_err(|e| anyhow::anyhow!("recording the cgroup a pause freezes: {e}"))?;
        let guard = Guard::spawn(&target.dir, Some(deadline_ns))
            .map_err(|e| anyhow::anyhow!("starting the guard that thaws the target if chaos dies: {e}"))?;
        Ok(Self { plan: *plan, freezer, guard, record: Some(record), frozen: false, freezes: 0 })
    }

    #[must_use]
    pub const fn freezes(&self) -> u64 {
        self.freezes
    }

    fn freeze(&mut self, events: &mut Vec<ActionEvent>) {
        // Tell the guard first: if chaos dies between the two, the guard still thaws.
        self.guard.freezing();
        let at_ns = sys::monotonic_now_ns();
        if let Err(err) = self.freezer.freeze() {
            eprintln!("chaos: proc pause: cannot freeze {}: {err}", self.freezer.dir().display());
            self.guard.thawed();
            return;
        }
        self.frozen = true;
        self.freezes += 1;
        let frozen_after_ns =
            self.freezer.wait(true, FREEZE_WAIT).then(|| sys::monotonic_now_ns().saturating_sub(at_ns));
        if frozen_after_ns.is_none() {
            eprintln!(
                "chaos: proc pause: the freeze is not complete after {} (a task in an uninterruptible sleep?)",
                humantime::format_duration(FREEZE_WAIT)
            );
        }
        events.push(ActionEvent::Freeze { at_ns, frozen_after_ns });
    }

    fn thaw(&mut self, events: &mut Vec<ActionEvent>) {
        if !self.frozen {
            return;
        }
        match self.freezer.thaw() {
            Ok(()) => {
                self.frozen = false;
                self.guard.thawed();
                events.push(ActionEvent::Thaw { at_ns: sys::monotonic_now_ns() });
            }
            Err(err) => eprintln!(
                "chaos: proc pause: cannot thaw {}: {err}; the guard and `chaos cleanup` will",
                self.freezer.dir().display()
            ),
        }
    }

    /// Freezes as planned until `deadline_ns` or until `wait` says to stop; leaves the target
    /// thawed. `wait(ns)` sleeps until CLOCK_MONOTONIC `ns` and returns false if told to stop;
    /// `acted(1)` says each freeze as it is made (the run's record counts them).
    pub fn run(
        &mut self,
        start_ns: u64,
        deadline_ns: u64,
        wait: &dyn Fn(u64) -> bool,
        acted: &dyn Fn(u64),
        events: &mut Vec<ActionEvent>,
    ) {
        match (self.plan.every, self.plan.pause) {
            (Some(every), Some(length)) => {
                let length_ns = u64::try_from(length.as_nanos()).unwrap_or(u64::MAX);
                let mut ticker = Ticker::new(every, None, self.plan.max, start_ns);
                while let Some(due_ns) = ticker.next_due_ns().filter(|&due| due < deadline_ns) {
                    if !wait(due_ns) {
                        break;
                    }
                    ticker.take(sys::monotonic_now_ns());
                    self.freeze(events);
                    acted(u64::from(self.frozen));
                    let go_on = wait(sys::monotonic_now_ns().saturating_add(length_ns).min(deadline_ns));
                    self.thaw(events);
                    if !go_on {
                        break;
                    }
                }
            }
            _ => {
                self.freeze(events);
                acted(u64::from(self.frozen));
                wait(deadline_ns);
            }
        }
        self.thaw(events);
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let mut events = Vec::new();
        self.thaw(&mut events);
        if !self.frozen
            && let Some(record) = self.record.take()
        {
            record.settle();
        }
    }
}
