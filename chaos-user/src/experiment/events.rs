//! The events of a timeline, typed: the foreground runner and a detached experiment's reaper
//! write them, `chaos report` reads them back. One JSON object per event, its name in `event`,
//! its fields beside it; the writer adds `time` (RFC 3339) and `t` (seconds since the start).
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    Phase,
    plan::{ExperimentPlan, PlannedFault},
};
use crate::{
    injections::Injection,
    plan::options::Ppm,
    steady::{CheckResult, verdict::Comparison},
};

/// Every event a timeline holds, in the order a run writes them: `experiment`, `plan` (one per
/// fault), `phase`, `check` (each result), `attach` (one per fault), `arm`, `ramp`, `counts`
/// (injections per fault per second), `injection` (a traced fault's sample of who was hit),
/// `proc` (what a userspace process fault did), `limit` (what a resource limit set, saw each
/// second and put back), `abort`,
/// `detach` (one per fault, with its totals), `comparison` (with a control group), `verdict`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TimelineEvent {
    Experiment(Started),
    Plan(FaultPlanned),
    Phase {
        phase: Phase,
        length_s: f64,
    },
    Check {
        check: String,
        phase: Phase,
        ok: bool,
        latency_ms: f64,
        detail: String,
        /// `control` for the control group's result (absent: the target's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        /// The metric value a Prometheus check read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
    },
    /// One tolerance of one check with a control: the test, its figures and whether the target
    /// was worse (written before the verdict).
    Comparison(Comparison),
    Attach(FaultAttached),
    Arm {
        fault: usize,
        kernel_deadline_ns: u64,
        /// The probability it was armed with (the ramp's first step, or its own), if it has one.
        percent: Option<Ppm>,
    },
    Ramp {
        fault: usize,
        percent: Ppm,
    },
    Counts {
        faults: Vec<FaultCounts>,
    },
    Abort {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phase: Option<Phase>,
        reason: String,
    },
    /// One injection of a traced fault (`trace = true`): a rate-limited sample, written up to
    /// a second after it happened; `at_s` is when the program injected (seconds since the
    /// start, like `t`).
    Injection {
        fault: usize,
        at_s: f64,
        #[serde(flatten)]
        hit: Injection,
    },
    /// What a userspace `proc` fault did: a kill, a freeze, a thaw.
    Proc {
        fault: usize,
        #[serde(flatten)]
        did: crate::plan::action::ActionEvent,
    },
    /// What a `limit` fault did or saw: a file set, a sample of the target's pressure and
    /// counters (each second), an OOM kill, a file put back; `at_s` is when (seconds since the
    /// start, like `t`).
    Limit {
        fault: usize,
        at_s: f64,
        #[serde(flatten)]
        did: crate::fault::limit::events::LimitEvent,
    },
    Detach(FaultDetached),
    /// `follow = true`: the target's cgroup went away and its name resolved to a new one; the
    /// live faults are attached there now.
    Reattach(Reattached),
    /// A fault has seen nothing for a while, with the likely reasons.
    Hint {
        fault: usize,
        hint: String,
    },
    /// Something failed that the run survives (its run record could not be rewritten, so
    /// `chaos status` may be stale); also printed on stderr when it happens.
    Warning {
        warning: String,
    },
    Verdict {
        /// None for a detached experiment: it ran no checks.
        held: Option<bool>,
        exit_code: u8,
        summary: String,
    },
    /// An event this version of chaos does not know (a newer chaos wrote it).
    #[serde(other)]
    Unknown,
}

impl TimelineEvent {
    /// The `check` event of one result (of the control group's replica when `group` says so).
    #[must_use]
    pub fn check(name: &str, phase: Phase, result: &CheckResult, group: Option<&str>) -> Self {
        Self::Check {
            check: name.to_owned(),
            phase,
            ok: result.ok,
            latency_ms: (result.latency.as_secs_f64() * 1e6).round() / 1e3,
            detail: result.detail.clone(),
            group: group.map(str::to_owned),
            value: result.value,
        }
    }
}

/// `experiment`: what runs, where, and what the hypothesis is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub id: String,
    pub name: String,
    pub file: String,
    pub target: String,
    /// The foreground process (a detached experiment has none while it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
    pub duration_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_s: Option<f64>,
    pub checks: Vec<CheckInfo>,
    pub notes: Vec<String>,
    /// The machine and kernel it ran on (absent in timelines of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<Machine>,
}

/// Where a run ran: the facts a review needs to compare two runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    pub arch: String,
    /// The CPU model, as /proc/cpuinfo names it.
    pub cpu: String,
    pub chaos_version: String,
}

impl Machine {
    /// This machine.
    #[must_use]
    pub fn this() -> Self {
        let read =
            |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_else(|_| "?".into());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "?".into());
        Self {
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            arch: std::env::consts::ARCH.to_owned(),
            cpu,
            chaos_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// `web-1 (Linux 6.12.0, x86_64, Intel Xeon ...; chaos 0.1.0)`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("{} (Linux {}, {}, {}; chaos {})", self.hostname, self.kernel, self.arch, self.cpu, self.chaos_version)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckInfo {
    pub name: String,
    pub what: String,
    pub pass_rate: Ppm,
}

/// `plan`: one fault, when it starts and for how long, and what it attaches where.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultPlanned {
    pub fault: usize,
    pub kind: String,
    pub command_line: String,
    pub start_s: f64,
    pub duration_s: f64,
    /// The planned programs and map contents as the dry run shows them.
    pub programs: serde_json::Value,
    pub maps: serde_json::Value,
}

impl FaultPlanned {
    #[must_use]
    pub fn of(fault: &PlannedFault) -> Self {
        Self {
            fault: fault.number,
            kind: fault.plan.fault.to_owned(),
            command_line: fault.command_line.clone(),
            start_s: fault.start.as_secs_f64(),
            duration_s: fault.duration.as_secs_f64(),
            programs: serde_json::to_value(&fault.plan.programs).unwrap_or_default(),
            maps: serde_json::to_value(&fault.plan.maps).unwrap_or_default(),
        }
    }
}

/// `attach`: a fault's programs are in place (inert until armed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultAttached {
    pub fault: usize,
    /// How many programs (foreground runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programs: Option<usize>,
    /// Where its links and maps are pinned (detached experiments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<PathBuf>,
    pub hooks: Vec<(String, String)>,
}

/// One fault's line in a `counts` event: since the last one, and in all.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct FaultCounts {
    pub fault: usize,
    pub injected: u64,
    pub seen: u64,
    pub matched: u64,
    pub injected_total: u64,
    pub seen_total: u64,
    pub matched_total: u64,
}

/// `detach`: a fault is gone, with its totals.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultDetached {
    pub fault: usize,
    pub why: String,
    pub seen: u64,
    pub matched: u64,
    pub injected: u64,
    /// What could not be undone (foreground runs say so even when nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

/// `reattach`: where the faults were and are now, and how long the target was away.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reattached {
    pub old_cgroup: String,
    pub old_id: u64,
    pub new_cgroup: String,
    pub new_id: u64,
    pub gone_s: f64,
    /// The faults attached to the new cgroup (those already ended stay ended).
    pub faults: Vec<usize>,
}

impl Started {
    /// The `experiment` event of a foreground run.
    #[must_use]
    pub fn foreground(id: &str, plan: &ExperimentPlan<'_>) -> Self {
        let experiment = plan.experiment;
        let steady = &experiment.steady_state;
        Self {
            id: id.to_owned(),
            name: experiment.name.clone(),
            file: experiment.source.path.clone(),
            target: plan.target.describe(),
            pid: Some(std::process::id()),
            detached: false,
            duration_s: experiment.duration.as_secs_f64(),
            before_s: Some(steady.before.as_secs_f64()),
            after_s: Some(steady.after.as_secs_f64()),
            checks: steady
                .checks
                .iter()
                .map(|c| CheckInfo { name: c.name.clone(), what: c.kind.to_string(), pass_rate: c.pass_rate })
                .collect(),
            notes: plan.notes.clone(),
            machine: Some(Machine::this()),
        }
    }

    /// The `experiment` event of a detached experiment (it runs no checks).
    #[must_use]
    pub fn detached(id: &str, plan: &ExperimentPlan<'_>) -> Self {
        Self {
            pid: None,
            detached: true,
            before_s: None,
            after_s: None,
            checks: Vec::new(),
            ..Self::foreground(id, plan)
        }
    }
}
