//! What a saved timeline says, gathered for the reports people read (`chaos report --html`,
//! `--markdown`): phases, faults, check results per group over time, injections per second,
//! who was hit (traced faults), ramps, aborts, comparisons, the verdict and the machine.
use std::collections::BTreeMap;

use super::{
    Phase,
    events::{Machine, Started, TimelineEvent},
    timeline::Recorded,
};
use crate::{
    fault::limit::events::LimitEvent,
    injections::{HitSummary, HitTally},
    steady::verdict::Comparison,
};

/// One check result at a time.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub t: f64,
    pub ok: bool,
    pub latency_ms: f64,
}

#[derive(Clone, Debug, Default)]
pub struct FaultReview {
    pub kind: String,
    pub command_line: String,
    pub start_s: f64,
    pub duration_s: f64,
    pub seen: u64,
    pub matched: u64,
    pub injected: u64,
    /// (t, injected since the last sample) of each `counts` event.
    pub per_second: Vec<(f64, u64)>,
    pub armed_at: Option<f64>,
    pub ramps: Vec<(f64, f64)>,
    /// Who was hit, from its `injection` events (traced faults).
    pub hits: HitTally,
    /// A limit's samples of its target: pressure and CPU used over time (`limit` events).
    pub pressure: Vec<PressurePoint>,
}

/// One sample of a limited target: the kernel's "some" avg10 pressure per resource, in %, and
/// the CPU it used (in CPUs), each when its controller reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct PressurePoint {
    pub t: f64,
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub io: Option<f64>,
    pub cpu_used: Option<f64>,
}

/// A check's series: the target's results, and the control's when it has one.
#[derive(Clone, Debug, Default)]
pub struct CheckReview {
    pub what: String,
    pub pass_rate: f64,
    pub target: Vec<Point>,
    pub control: Vec<Point>,
    /// (passed, total) per phase, target's results.
    pub phases: BTreeMap<&'static str, (u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Review {
    pub name: String,
    pub id: String,
    pub file: String,
    pub target: String,
    /// (phase, start, length) in seconds since the start.
    pub phases: Vec<(Phase, f64, f64)>,
    pub faults: BTreeMap<usize, FaultReview>,
    pub checks: BTreeMap<String, CheckReview>,
    pub aborts: Vec<(f64, String)>,
    pub comparisons: Vec<Comparison>,
    pub verdict: Option<(u8, String)>,
    pub notes: Vec<String>,
    /// Where it ran, when the timeline says (`experiment` event).
    pub machine: Option<Machine>,
    /// The last `t` of the timeline.
    pub end: f64,
}

impl Review {
    #[must_use]
    pub fn of(events: &[Recorded]) -> Self {
        let mut review = Self::default();
        for event in events {
            let t = event.t.unwrap_or(review.end);
            review.end = review.end.max(t);
            match &event.event {
                TimelineEvent::Experiment(started) => review.start(started),
                TimelineEvent::Plan(plan) => {
                    review.faults.insert(
                        plan.fault,
                        FaultReview {
                            kind: plan.kind.clone(),
                            command_line: plan.command_line.clone(),
                            start_s: plan.start_s,
                            duration_s: plan.duration_s,
                            ..FaultReview::default()
                        },
                    );
                }
                TimelineEvent::Phase { phase, length_s } => review.phases.push((*phase, t, *length_s)),
                TimelineEvent::Check { check, phase, ok, latency_ms, group, .. } => {
                    let entry = review.checks.entry(check.clone()).or_default();
                    let point = Point { t, ok: *ok, latency_ms: *latency_ms };
                    if group.is_some() {
                        entry.control.push(point);
                    } else {
                        entry.target.push(point);
                        let tally = entry.phases.entry(phase.name()).or_default();
                        tally.0 += u64::from(*ok);
                        tally.1 += 1;
                    }
                }
                TimelineEvent::Arm { fault, .. } => {
                    if let Some(f) = review.faults.get_mut(fault) {
                        f.armed_at = Some(t);
                    }
                }
                TimelineEvent::Ramp { fault, percent } => {
                    if let Some(f) = review.faults.get_mut(fault) {
                        f.ramps.push((t, percent.as_percent()));
                    }
                }
                TimelineEvent::Counts { faults } => {
                    for c in faults {
                        if let Some(f) = review.faults.get_mut(&c.fault) {
                            f.per_second.push((t, c.injected));
                            (f.seen, f.matched, f.injected) = (c.seen_total, c.matched_total, c.injected_total);
                        }
                    }
                }
                TimelineEvent::Abort { reason, .. } => review.aborts.push((t, reason.clone())),
                TimelineEvent::Detach(d) => {
                    if let Some(f) = review.faults.get_mut(&d.fault) {
                        (f.seen, f.matched, f.injected) = (d.seen, d.matched, d.injected);
                    }
                }
                TimelineEvent::Comparison(c) => review.comparisons.push(c.clone()),
                TimelineEvent::Verdict { exit_code, summary, .. } => {
                    review.verdict = Some((*exit_code, summary.clone()))
                }
                // A process fault done from userspace: each kill or pause is one injection.
                TimelineEvent::Proc { fault, .. } => {
                    if let Some(f) = review.faults.get_mut(fault) {
                        f.per_second.push((t, 1));
                    }
                }
                TimelineEvent::Reattach(r) => review.notes.push(format!(
                    "at {t:.1}s the target came back as {} (id {}) after {:.1}s away; faults re-attached there",
                    r.new_cgroup, r.new_id, r.gone_s
                )),
                TimelineEvent::Hint { fault, hint } => review.notes.push(format!("at {t:.1}s fault #{fault}: {hint}")),
                TimelineEvent::Warning { warning } => review.notes.push(format!("at {t:.1}s warning: {warning}")),
                TimelineEvent::Limit { fault, at_s, did } => review.limit(*fault, *at_s, did),
                TimelineEvent::Injection { fault, hit, .. } => {
                    if let Some(f) = review.faults.get_mut(fault) {
                        f.hits.add(hit);
                    }
                }
                TimelineEvent::Attach(_) | TimelineEvent::Unknown => {}
            }
        }
        review
    }

    /// A limit's event: a sample goes to its pressure series (and its enforcements to the
    /// per-second counts); the rest (set, OOM kill, put back) to the notes.
    fn limit(&mut self, fault: usize, at_s: f64, did: &LimitEvent) {
        let Some(f) = self.faults.get_mut(&fault) else { return };
        match did {
            LimitEvent::Sample { resource, window, .. } => {
                let avg10 = |stall: Option<crate::fault::limit::evidence::Stall>| stall.map(|s| s.avg10);
                f.pressure.push(PressurePoint {
                    t: at_s,
                    cpu: avg10(window.pressure.cpu),
                    memory: avg10(window.pressure.memory),
                    io: avg10(window.pressure.io),
                    cpu_used: window.cpu_used,
                });
                f.per_second.push((at_s, window.enforced(*resource)));
            }
            other => {
                if let Some(line) = other.describe() {
                    self.notes.push(format!("at {at_s:.1}s fault #{fault}: {line}"));
                }
            }
        }
    }

    fn start(&mut self, started: &Started) {
        self.name.clone_from(&started.name);
        self.id.clone_from(&started.id);
        self.file.clone_from(&started.file);
        self.target.clone_from(&started.target);
        self.notes.clone_from(&started.notes);
        self.machine.clone_from(&started.machine);
        for check in &started.checks {
            let entry = self.checks.entry(check.name.clone()).or_default();
            entry.what.clone_from(&check.what);
            entry.pass_rate = check.pass_rate.as_percent();
        }
    }

    /// "held", "violated", "could not run", "target gone" or "no verdict".
    #[must_use]
    pub fn outcome(&self) -> &'static str {
        match self.verdict {
            Some((0, _)) => "held",
            Some((1, _)) => "violated",
            Some((crate::report::TARGET_GONE_EXIT, _)) => "target gone",
            Some(_) => "could not run",
            None => "no verdict",
        }
    }
}

impl Review {
    /// Who was hit, per traced fault that recorded anything: (`#1 net drop`, summary).
    #[must_use]
    pub fn who_was_hit(&self) -> Vec<(String, HitSummary)> {
        self.faults
            .iter()
            .map(|(number, f)| (format!("#{number} {}", f.kind), f.hits.summary()))
            .filter(|(_, summary)| summary.records > 0)
            .collect()
    }

    /// Where the run ran, for the reports: from the timeline, or (older timelines, which do
    /// not say) the machine rendering the report, marked as such.
    #[must_use]
    pub fn machine_line(&self) -> String {
        match &self.machine {
            Some(machine) => format!("Ran on {}.", machine.describe()),
            None => format!(
                "Rendered on {} (the timeline does not record the machine it ran on).",
                Machine::this().describe()
            ),
        }
    }
}
