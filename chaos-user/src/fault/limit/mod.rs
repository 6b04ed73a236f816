//! The `chaos limit` family: starve one target of CPU, memory, disk I/O or processes through its
//! own cgroup v2 controls (`cpu.max`, `memory.high`/`memory.max`, `io.max`, `pids.max`), the
//! kernel's exact, per-cgroup and reversible limits, instead of running stressor processes
//! beside it. Nothing burns: the target gets less, its neighbours are untouched.
//!
//! There is no eBPF program: chaos's own process writes the files, so the time box is chaos's
//! timer backed by the guard process (as for `proc pause`). Every file chaos changes gets a
//! ledger record and a line to the guard BEFORE it is written; at the end (deadline, signal),
//! when chaos dies (the guard, within a second, even after SIGKILL) or at the next `chaos
//! cleanup` / daemon start (the ledger), the previous value goes back, exactly, but only if the
//! file still holds what chaos wrote: a value someone else set in the meantime is left as they
//! set it, and the summary says so.
//!
//! The files: [`cpu`], [`memory`], [`io`], [`pids`] (each kind's options and planner),
//! [`amounts`] (parsers), [`device`] (which disk), [`setting`] (what a kind writes, resolved
//! against the target's files at the moment it is written), [`limited`] (a limit in force),
//! [`evidence`] (the target's pressure and counters before, during, after), [`events`] (what
//! the timeline and JSON say), [`action`] (the limit as its plan's userspace action, for
//! experiments; the command line's run and summary are cli/limit/run.rs).
pub mod action;
pub mod amounts;
pub mod cpu;
pub mod device;
pub mod events;
pub mod evidence;
pub mod io;
pub mod limited;
pub mod memory;
pub mod pids;
pub mod setting;

use serde::{Deserialize, Serialize};
pub use setting::{Setting, Write};

use super::{FaultContext, FaultPlan, MapContents, PlanError};
use crate::{ledger, os::cgroup_files::controllers, targets};

/// Which resource a limit starves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
    Io,
    Pids,
}

impl Resource {
    /// The cgroup v2 controller whose files it writes.
    #[must_use]
    pub const fn controller(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Io => "io",
            Self::Pids => "pids",
        }
    }

    /// `limit cpu`
    #[must_use]
    pub const fn fault(self) -> &'static str {
        match self {
            Self::Cpu => "limit cpu",
            Self::Memory => "limit memory",
            Self::Io => "limit io",
            Self::Pids => "limit pids",
        }
    }

    /// What its report counts as the kernel enforcing the limit.
    #[must_use]
    pub const fn enforced_word(self) -> &'static str {
        match self {
            Self::Cpu => "throttled",
            Self::Memory => "high+oom",
            Self::Io => "ms-stalled",
            Self::Pids => "refused",
        }
    }

    /// What one count of [`Self::enforced_word`] is.
    #[must_use]
    pub const fn counter_label(self) -> &'static str {
        match self {
            Self::Cpu => "periods",
            Self::Memory => "events",
            Self::Io => "io",
            Self::Pids => "forks",
        }
    }
}

/// What a limit fault does while it is armed: the settings to write, in order, and for
/// `limit memory --oom` one OOM kill right after them.
#[derive(Clone, Debug, Serialize)]
pub struct LimitPlan {
    pub resource: Resource,
    pub settings: Vec<Setting>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom: bool,
    /// For `limit io`: the device, whose `io.stat` line is the evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<device::BlockDevice>,
    /// A ramp's step (parts per million of one CPU, or of the memory basis) to start at, in
    /// place of the first setting's own amount.
    #[serde(skip)]
    pub start_ppm: Option<u32>,
}

impl LimitPlan {
    /// The same limit, its first setting at a ramp's step `ppm` (an experiment's ramp).
    #[must_use]
    pub fn starting_at(mut self, ppm: Option<u32>) -> Self {
        self.start_ppm = ppm;
        self
    }

    /// (hook, place) pairs for the run record: one per file, so `chaos status` says which.
    #[must_use]
    pub fn hooks(&self, target: &targets::Target) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|s| ("cgroup file".to_owned(), format!("{} of {}", s.knob(&target.dir).label(), target.cgroup)))
            .collect()
    }
}

/// The checks every limit makes before anything is written, and its plan: the controller is
/// available to the target (else the reason and the fix), the target does not hold chaos, no
/// other live chaos holds the same file; the plan's parameters show each file's value now and
/// the value that would be written (what `--dry-run` prints).
pub fn plan(limit: &LimitPlan, context: &FaultContext<'_>, summary: String) -> Result<FaultPlan, PlanError> {
    let target = context.target;
    let fault = limit.resource.fault();
    let cgroups = targets::CgroupFs::discover().map_err(|e| PlanError::Refused(e.to_string()))?;
    if let Some(why) = controllers::why_not(cgroups.mount(), &target.dir, limit.resource.controller()) {
        return Err(PlanError::Refused(format!("{fault} on {}: {why}", target.cgroup)));
    }
    // A limit on chaos's own cgroup would throttle (or OOM-kill) what has to put it back.
    if let Some(own) = targets::own_cgroup()
        && targets::is_same_or_below(&own, &target.cgroup)
    {
        return Err(PlanError::Refused(format!(
            "cgroup {} holds chaos itself (it runs in {own}), and so the guard that puts the limit back: the limit \
             would starve what has to end it. Run chaos from outside the target",
            target.cgroup
        )));
    }
    let preview = setting::preview(&limit.settings, &target.dir).map_err(PlanError::Refused)?;
    for write in &preview {
        if let Some(owner) = ledger::limit_owner(&write.knob) {
            return Err(PlanError::Refused(format!(
                "{} of {} is already limited by chaos (pid {owner}): two limits on one file would each put back the \
                 other's value. Stop that one first (`chaos status`, `chaos stop ID`)",
                write.knob.label(),
                target.cgroup
            )));
        }
    }
    let mut parameters = serde_json::to_value(limit).expect("a limit plan serializes");
    parameters["writes"] = serde_json::to_value(&preview).expect("writes serialize");
    Ok(FaultPlan {
        fault,
        injected_word: limit.resource.enforced_word(),
        counter_label: Some(limit.resource.counter_label()),
        target: target.clone(),
        summary,
        parameters,
        duration: context.duration,
        programs: Vec::new(),
        config: chaos_common::FaultConfig::default(),
        maps: MapContents::default(),
        kernel_offsets: None,
        userspace: Some(std::sync::Arc::new(limit.clone())),
        companion: None,
    })
}
