//! Faults done by chaos's own process while they are armed, instead of (or beside) kernel
//! programs: periodic kills and pauses, `net sever`'s resets. A family's planner puts its action in the
//! [`FaultPlan`](super::FaultPlan); a run starts it when the fault is armed and finishes it when
//! the fault ends, and gets back what it did, one [`ActionEvent`] per act (the command line's
//! JSON summary, an experiment's `proc` timeline events). An action undoes what it must itself
//! (a pause thaws), and records and guards it before it acts, so that chaos's death undoes it
//! too.
use serde::{Deserialize, Serialize};

use crate::targets::Target;

/// What a fault does from chaos's own process, as its plan carries it.
pub trait UserspaceAction: std::fmt::Debug + Send + Sync {
    /// Starts acting on `target` now, until CLOCK_MONOTONIC `deadline_ns`. What must be undone
    /// if chaos dies is recorded and guarded before this returns, so a failure here is reported
    /// before anything was done. A fault with programs too gets its armed object, to read what
    /// they report (`net sever --after-bytes` takes its ring buffer); one without gets None.
    fn start(
        &self,
        target: &Target,
        deadline_ns: u64,
        object: Option<&mut aya::Ebpf>,
    ) -> anyhow::Result<Box<dyn RunningAction>>;

    /// With `--trace-injections` at `rate` records a second: this action naming whom it hits
    /// itself (`net sever` names each connection's process), or None when it has nothing to
    /// add (the `proc` actions' events already say whom they hit).
    fn traced(&self, _rate: u64) -> Option<std::sync::Arc<dyn UserspaceAction>> {
        None
    }

    /// The same action starting at a ramp's first step, `ppm` (a limit's value moves with an
    /// experiment's ramp), or None when a ramp does not move it (a probability's ramp is in
    /// the programs' config).
    fn at_ramp_step(&self, _ppm: u32) -> Option<std::sync::Arc<dyn UserspaceAction>> {
        None
    }

    /// The action as its family's own type, for a command line that runs it its own way (a
    /// limit's run watches the target before and after, and registers for `chaos status`).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Whether a run that follows its target (`follow = true`) may finish this action on the
    /// old cgroup and start it again on the new one, with the same deadline. True for `net
    /// sever` (what it does concerns the connections of the cgroup it is started on); false
    /// where a second start would break its schedule (a periodic kill's `--max`) or what it
    /// guards (a pause's freezer and guard).
    fn restarts_on_follow(&self) -> bool {
        false
    }
}

/// A started action.
pub trait RunningAction: Send {
    /// Stops it (undoing what must be undone, e.g. a pause thaws) and says what it did.
    fn finish(self: Box<Self>) -> ActionOutcome;

    /// A ramp's next step: the value the action holds moves to `ppm` (a limit). Most hold none.
    fn ramp(&self, _ppm: u32) -> anyhow::Result<()> {
        Ok(())
    }

    /// What it did since the last call, for a timeline written as the run goes (a limit's
    /// samples each second); most actions say it all when they finish.
    fn take_events(&self) -> Vec<ActionEvent> {
        Vec::new()
    }

    /// One line for the live status line, when the action has more to say than its counter
    /// (a limit: the target's CPU share or pressure in the last second).
    fn status(&self) -> Option<String> {
        None
    }

    /// What it has done so far (processes killed, connections severed), for the run's record
    /// while it runs; [`finish`](Self::finish)'s outcome is the final count. 0 for an action
    /// that counts only at its end.
    fn acted(&self) -> u64 {
        0
    }
}

/// What an action did.
#[derive(Clone, Debug, Default)]
pub struct ActionOutcome {
    pub ticks: u64,
    /// Processes killed, freezes made, connections severed.
    pub acted: u64,
    pub events: Vec<ActionEvent>,
    /// Lines for the end of the command line's text summary (the connections `net sever`
    /// severed), beside the counters every report has.
    pub notes: Vec<String>,
}

impl ActionOutcome {
    /// Adds what a later start of the same fault did (a followed target's new cgroup).
    pub fn absorb(&mut self, later: Self) {
        self.ticks += later.ticks;
        self.acted += later.acted;
        self.events.extend(later.events);
        self.notes.extend(later.notes);
    }
}

/// One thing an action did, for the timeline and the JSON summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum ActionEvent {
    /// A signal sent to one process.
    Kill {
        pid: u32,
        comm: String,
        signal: String,
        at_ns: u64,
    },
    /// `cgroup.kill` took the whole cgroup down at once.
    KillAll {
        processes: usize,
        at_ns: u64,
    },
    /// A tick killed nothing: the target was empty (between a crash and its restart), or
    /// held more processes than `--max-procs` allows for `--pick all`.
    NoKill {
        reason: String,
        at_ns: u64,
    },
    /// The target was frozen (`frozen_after_ns`: until `cgroup.events` said so).
    Freeze {
        at_ns: u64,
        frozen_after_ns: Option<u64>,
    },
    Thaw {
        at_ns: u64,
    },
    /// `net sever`: one connection reset, or silenced (`--after-bytes`); `pid` and `comm` name
    /// the process holding it, with `--trace-injections`.
    Sever {
        how: String,
        local: String,
        remote: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comm: Option<String>,
        at_ns: u64,
    },
    /// `net sever` could not do all it meant to (the kernel refused a step); the run goes on.
    NoSever {
        reason: String,
        at_ns: u64,
    },
    /// A family's own record, as its own JSON with its own `what` (a limit's `set`, `sample`,
    /// `oom-kill`, `restore`): the layers below the fault families do not know its shape.
    #[serde(untagged)]
    Family(serde_json::Value),
}
