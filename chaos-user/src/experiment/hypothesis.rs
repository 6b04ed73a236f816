//! The steady-state hypothesis while it is tested: the checks running as tasks, their results
//! counted per check and phase, the abort rules applied to each result as it comes, and the
//! verdict at the end.
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior, interval},
};

use super::{AbortRules, Phase};
use crate::steady::{
    self, Check, CheckKind, CheckResult,
    verdict::{Comparison, Samples, compare},
};

/// Counts one result into a group's samples: its latency in ms, or for a metric check the value
/// it read (a query that read none adds to the pass rate only).
fn add_sample(samples: &mut Samples, result: &CheckResult, metric: bool) {
    samples.total += 1;
    samples.passed += u64::from(result.ok);
    if !metric {
        samples.values.push(result.latency.as_secs_f64() * 1e3);
    } else if let Some(value) = result.value {
        samples.values.push(value);
    }
}

/// How the run ended, and its exit code: 0 held, 1 violated, 2 could not run, 3 the target
/// went away mid-run (no verdict either way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Held,
    Violated(String),
    CouldNotRun(String),
    TargetGone(String),
}

impl Verdict {
    #[must_use]
    pub(crate) const fn exit_code(&self) -> u8 {
        match self {
            Self::Held => 0,
            Self::Violated(_) => 1,
            Self::CouldNotRun(_) => 2,
            Self::TargetGone(_) => crate::report::TARGET_GONE_EXIT,
        }
    }

    pub(crate) fn summary(&self, has_checks: bool) -> String {
        match self {
            Self::Held if has_checks => {
                "hypothesis held: the steady state held before, during and after the faults".into()
            }
            Self::Held => "ran to the end (no steady-state checks: nothing to hold)".into(),
            Self::Violated(why) => format!("hypothesis violated: {why}"),
            Self::CouldNotRun(why) => format!("could not run: {why}"),
            Self::TargetGone(why) => format!("no verdict: {why}"),
        }
    }
}

/// One result, tagged with its check and phase.
pub(crate) struct Outcome {
    pub check: usize,
    pub phase: Phase,
    pub result: CheckResult,
    /// The control group's result, measured at the same time (checks with a control).
    pub control: Option<CheckResult>,
}

/// Pass counts of one check in one phase, and its current run of failures.
#[derive(Clone, Copy, Default)]
pub(crate) struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub streak: u32,
}

/// The checks of one phase, running as tasks until dropped.
pub(crate) struct RunningChecks(Vec<JoinHandle<()>>);

impl RunningChecks {
    pub(crate) fn start(checks: &[Check], phase: Phase, results: &mpsc::UnboundedSender<Outcome>) -> Self {
        let handles = checks
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let (spec, results) = (spec.clone(), results.clone());
                tokio::spawn(async move {
                    let mut ticks = interval(spec.interval);
                    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    for tick in 0u64.. {
                        ticks.tick().await;
                        let (result, control) = steady::run_with_control(&spec, tick % 2 == 1).await;
                        if results.send(Outcome { check: index, phase, result, control }).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self(handles)
    }
}

impl Drop for RunningChecks {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// Every check's tallies, per phase, and the rules that end a run early.
pub(crate) struct Hypothesis<'e> {
    checks: &'e [Check],
    rules: AbortRules,
    tallies: Vec<[Tally; 3]>,
    /// Per check with a control: both groups' results during the faults, for the comparison.
    during: Vec<(Samples, Samples)>,
}

impl<'e> Hypothesis<'e> {
    #[must_use]
    pub(crate) fn new(checks: &'e [Check], rules: AbortRules) -> Self {
        Self {
            checks,
            rules,
            tallies: vec![[Tally::default(); 3]; checks.len()],
            during: vec![Default::default(); checks.len()],
        }
    }

    /// Each tolerance of each check with a control, compared over the faults phase.
    #[must_use]
    pub(crate) fn comparisons(&self, confidence: f64) -> Vec<Comparison> {
        self.checks
            .iter()
            .zip(&self.during)
            .filter(|(check, _)| check.control.is_some())
            .flat_map(|(check, (experimental, control))| {
                let what = if matches!(check.kind, CheckKind::Prometheus(_)) { "value" } else { "latency (ms)" };
                check
                    .max_difference
                    .iter()
                    .map(move |tolerance| compare(&check.name, what, tolerance, experimental, control, confidence))
            })
            .collect()
    }

    /// Counts a check result; returns why to abort, if an abort rule now holds.
    pub(crate) fn record(&mut self, outcome: &Outcome, phase_end: Instant) -> Option<String> {
        let check = &self.checks[outcome.check];
        if outcome.phase == Phase::During
            && let Some(control) = &outcome.control
        {
            let (experimental, control_samples) = &mut self.during[outcome.check];
            let metric = matches!(check.kind, CheckKind::Prometheus(_));
            add_sample(experimental, &outcome.result, metric);
            add_sample(control_samples, control, metric);
        }
        let tally = &mut self.tallies[outcome.check][outcome.phase as usize];
        if outcome.result.ok {
            tally.passed += 1;
            tally.streak = 0;
        } else {
            tally.failed += 1;
            tally.streak += 1;
        }
        let tally = *tally;
        if outcome.result.ok || outcome.phase == Phase::After {
            return None;
        }
        let rules = self.rules;
        if let Some(limit) = rules.consecutive_failures
            && tally.streak >= limit
        {
            return Some(format!(
                "check \"{}\" failed {} times in a row (last: {})",
                check.name, tally.streak, outcome.result.detail
            ));
        }
        if rules.on_violation || outcome.phase == Phase::Before {
            // Results still to come in this phase, at most: if even all of them passing cannot
            // bring the pass rate back up, the phase is lost already.
            let remaining =
                phase_end.saturating_duration_since(Instant::now()).as_secs_f64() / check.interval.as_secs_f64();
            let total = (tally.passed + tally.failed) as f64 + remaining.ceil();
            let best_rate = (total - tally.failed as f64) / total * 100.0;
            if best_rate < check.pass_rate.as_percent() {
                return Some(format!(
                    "check \"{}\" failed {} of {} times (last: {}), more than its pass rate of {} allows",
                    check.name,
                    tally.failed,
                    tally.passed + tally.failed,
                    outcome.result.detail,
                    check.pass_rate
                ));
            }
        }
        None
    }

    /// Why the steady state did not hold in `phase`, if it did not.
    pub(crate) fn violation(&self, phase: Phase) -> Option<String> {
        for (check, tallies) in self.checks.iter().zip(&self.tallies) {
            let tally = tallies[phase as usize];
            let total = tally.passed + tally.failed;
            if total == 0 {
                return Some(format!("check \"{}\" produced no result", check.name));
            }
            let rate = tally.passed as f64 * 100.0 / total as f64;
            if rate < check.pass_rate.as_percent() {
                return Some(format!(
                    "check \"{}\" passed {}/{} ({rate:.1} %), below its pass rate of {}",
                    check.name, tally.passed, total, check.pass_rate
                ));
            }
        }
        None
    }

    /// The checks' pass counts during the faults, for the status line.
    #[must_use]
    pub(crate) fn during(&self) -> Vec<String> {
        self.checks
            .iter()
            .zip(&self.tallies)
            .map(|(c, t)| {
                let t = t[Phase::During as usize];
                format!("{} {}/{}", c.name, t.passed, t.passed + t.failed)
            })
            .collect()
    }
}
