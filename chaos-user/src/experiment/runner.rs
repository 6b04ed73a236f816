//! Runs an experiment in the foreground: baseline checks, then the faults (each armed at its
//! start with its own kernel deadline, ramped by map writes, detached at its end) while the
//! checks run and the abort rules watch them, then the after checks and the verdict.
//!
//! Every fault is loaded and attached inert (deadline 0) once the baseline holds, so a fault
//! that cannot attach stops the run before any fault is live; arming is then a map write at
//! its start. Everything attached is owned by this process (fd-owned links): SIGINT, SIGTERM,
//! SIGHUP, an error or a panic detach it on the way out, and SIGKILL takes it with the process.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use tokio::{
    sync::mpsc,
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use super::{
    Phase,
    armed::{self, Loaded, show_status},
    events::{FaultAttached, FaultPlanned, Started, TimelineEvent},
    follow::{self, Away},
    hypothesis::{Hypothesis, Outcome, RunningChecks, Verdict},
    plan::ExperimentPlan,
    steps::{self, Action},
    timeline::{self, Timeline},
};
use crate::{
    hints::QuietHint,
    live::LiveLine,
    os::sys,
    plan::options::Ppm,
    report::{OutputFormat, StopReason},
    run::{StopSignals, arm},
    run_records::{self, FaultRecord, Registration, RunKind, RunRecord},
    targets::Target,
};

pub struct RunOptions {
    pub timeline: std::path::PathBuf,
    pub output: OutputFormat,
    /// Who runs it (an experiment from `chaos run`, or the daemon), for its run record.
    pub kind: RunKind,
    /// A daemon's run ends when this turns true (not on a signal) and prints no summary.
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Runs the plan; returns the exit code (0 held, 1 violated, 2 could not run).
pub fn run(plan: &ExperimentPlan<'_>, options: &RunOptions) -> anyhow::Result<ExitCode> {
    run_to_verdict(plan, options).map(ExitCode::from)
}

/// Runs the plan on a runtime of its own (a daemon runs each experiment on its own thread);
/// returns the verdict's exit code (0 held, 1 violated, 2 could not run).
pub fn run_to_verdict(plan: &ExperimentPlan<'_>, options: &RunOptions) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = match &options.cancel {
            Some(cancel) => StopSignals::cancelled_by(cancel.clone()),
            None => StopSignals::install().context("installing signal handlers")?,
        }
        .watching(&plan.target);
        let _ = sys::raise_resource_limits();
        let mut timeline = Timeline::create(&options.timeline)
            .with_context(|| format!("creating the timeline {}", options.timeline.display()))?;
        let mut runner = Runner::new(plan, &mut timeline, options.kind)?;
        let verdict = runner.run(&mut signals).await;
        drop(runner);
        let has_checks = !plan.experiment.steady_state.checks.is_empty();
        timeline.event(&TimelineEvent::Verdict {
            held: (!matches!(verdict, Verdict::TargetGone(_))).then_some(verdict == Verdict::Held),
            exit_code: verdict.exit_code(),
            summary: verdict.summary(has_checks),
        });
        if options.cancel.is_none() {
            match options.output {
                OutputFormat::Text => print!("{}", timeline::summary(&timeline::typed(timeline.events()))),
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&timeline.events()).unwrap_or_default());
                }
            }
            eprintln!("timeline: {}", timeline.path().display());
        }
        Ok(verdict.exit_code())
    })
}

struct Runner<'p, 't> {
    plan: &'p ExperimentPlan<'p>,
    timeline: &'t mut Timeline,
    registration: Registration,
    loaded: Vec<Option<Loaded>>,
    hypothesis: Hypothesis<'p>,
    status: LiveLine,
    /// Where the faults are: the plan's target, or where `follow` found it again.
    target: Target,
    /// A followed target while its name resolves to nothing live.
    away: Option<Away>,
}

impl<'p, 't> Runner<'p, 't> {
    fn new(plan: &'p ExperimentPlan<'p>, timeline: &'t mut Timeline, kind: RunKind) -> anyhow::Result<Self> {
        let experiment = plan.experiment;
        let steady = &experiment.steady_state;
        let total = steady.before + experiment.duration + steady.after;
        let id = run_records::new_id();
        let record = RunRecord {
            id: id.clone(),
            pid: std::process::id(),
            pid_start: crate::os::process::start_time(std::process::id()).unwrap_or(0),
            detached: false,
            starting: false,
            kind,
            name: experiment.name.clone(),
            file: experiment.source.path.clone(),
            target: plan.target.cgroup.clone(),
            target_id: plan.target.id,
            faults: plan
                .faults
                .iter()
                .map(|f| FaultRecord { label: f.label.clone(), hooks: f.hooks(), injected: 0, pin_dir: None })
                .collect(),
            ends_ns: sys::monotonic_deadline_ns(total),
            timeline: timeline.path().display().to_string(),
            pin_dir: None,
        };
        let registration = Registration::register(record).context("registering the run in /run/chaos/runs")?;
        timeline.event(&TimelineEvent::Experiment(Started::foreground(&id, plan)));
        for fault in &plan.faults {
            timeline.event(&TimelineEvent::Plan(FaultPlanned::of(fault)));
        }
        eprintln!("chaos: experiment {id} \"{}\" on {}", experiment.name, plan.target.describe());
        Ok(Self {
            plan,
            timeline,
            registration,
            loaded: plan.faults.iter().map(|_| None).collect(),
            hypothesis: Hypothesis::new(&steady.checks, experiment.abort),
            status: LiveLine::on_stderr(),
            target: plan.target.clone(),
            away: None,
        })
    }

    async fn run(&mut self, signals: &mut StopSignals) -> Verdict {
        let experiment = self.plan.experiment;
        let checks = &experiment.steady_state.checks;
        let (results_tx, mut results) = mpsc::unbounded_channel();

        // Baseline: the hypothesis must hold before anything is attached.
        if !checks.is_empty() {
            if let Err(verdict) =
                self.phase(Phase::Before, experiment.steady_state.before, &results_tx, &mut results, signals).await
            {
                self.status.finish();
                return verdict;
            }
            if let Some(why) = self.hypothesis.violation(Phase::Before) {
                let reason = format!("the steady state does not hold before any fault (baseline): {why}");
                self.abort(Some(Phase::Before), &reason);
                return Verdict::CouldNotRun(reason);
            }
        }

        // Attach every fault, inert, so that one that cannot attach stops the run before any is live.
        for index in 0..self.plan.faults.len() {
            let fault = &self.plan.faults[index];
            match arm(&fault.plan, None).and_then(|(mut loaded, _)| Ok((loaded.read_injections()?, loaded))) {
                Ok((injections, loaded)) => {
                    self.timeline.event(&TimelineEvent::Attach(FaultAttached {
                        fault: fault.number,
                        programs: Some(fault.plan.programs.len()),
                        pinned: None,
                        hooks: fault.hooks(),
                    }));
                    self.loaded[index] = Some(Loaded { injections, ..Loaded::inert(loaded, fault.plan.config) });
                }
                Err(err) => {
                    let reason = format!("fault {} could not attach: {err}", fault.label);
                    self.abort(Some(Phase::During), &reason);
                    self.detach_all("error");
                    return Verdict::CouldNotRun(reason);
                }
            }
        }

        let during = self.during(&results_tx, &mut results, signals).await;
        self.detach_all(if during.is_err() { "abort" } else { "end" });
        if let Err(ended @ (Verdict::CouldNotRun(_) | Verdict::TargetGone(_))) = &during {
            self.status.finish();
            return ended.clone();
        }

        // After: did the system come back?
        if !checks.is_empty()
            && let Err(verdict) =
                self.phase(Phase::After, experiment.steady_state.after, &results_tx, &mut results, signals).await
        {
            self.status.finish();
            return verdict;
        }
        self.status.finish();
        if let Err(verdict) = during {
            return verdict;
        }
        for phase in [Phase::During, Phase::After] {
            if let Some(why) = self.hypothesis.violation(phase) {
                return Verdict::Violated(format!("{why} ({} the faults)", phase.name()));
            }
        }
        // With a control group: is the target worse than its untouched replica?
        if let Some(control) = &experiment.steady_state.control {
            let comparisons = self.hypothesis.comparisons(control.confidence);
            for comparison in &comparisons {
                self.timeline.event(&TimelineEvent::Comparison(comparison.clone()));
            }
            if let Some(worse) = comparisons.iter().find(|c| c.worse) {
                return Verdict::Violated(format!(
                    "check \"{}\" is worse than the control during the faults: {}",
                    worse.check, worse.words
                ));
            }
        }
        Verdict::Held
    }

    /// Runs the checks alone for `length` (before or after the faults).
    async fn phase(
        &mut self,
        phase: Phase,
        length: Duration,
        results_tx: &mpsc::UnboundedSender<Outcome>,
        results: &mut mpsc::UnboundedReceiver<Outcome>,
        signals: &mut StopSignals,
    ) -> Result<(), Verdict> {
        self.timeline.event(&TimelineEvent::Phase { phase, length_s: length.as_secs_f64() });
        let end = Instant::now() + length;
        let running = RunningChecks::start(&self.plan.experiment.steady_state.checks, phase, results_tx);
        loop {
            tokio::select! {
                () = sleep_until(end) => break,
                stop = signals.next() => return Err(self.interrupted(stop)),
                Some(outcome) = results.recv() => {
                    if let Some(reason) = self.record(&outcome, end)
                        && phase == Phase::Before
                    {
                        let reason = format!("the steady state does not hold before any fault (baseline): {reason}");
                        self.abort(Some(Phase::Before), &reason);
                        return Err(Verdict::CouldNotRun(reason));
                    }
                }
            }
        }
        drop(running);
        Ok(())
    }

    /// The faults phase: steps on time, checks, counts every second, abort rules, signals.
    async fn during(
        &mut self,
        results_tx: &mpsc::UnboundedSender<Outcome>,
        results: &mut mpsc::UnboundedReceiver<Outcome>,
        signals: &mut StopSignals,
    ) -> Result<(), Verdict> {
        let experiment = self.plan.experiment;
        self.timeline
            .event(&TimelineEvent::Phase { phase: Phase::During, length_s: experiment.duration.as_secs_f64() });
        let started = Instant::now();
        let end = started + experiment.duration;
        let steps = steps::steps(&self.plan.faults);
        let mut next_step = 0;
        let running = RunningChecks::start(&experiment.steady_state.checks, Phase::During, results_tx);
        let mut counts = interval(Duration::from_secs(1));
        counts.set_missed_tick_behavior(MissedTickBehavior::Delay);
        counts.tick().await;
        let far = end + Duration::from_secs(3600);
        let mut follow_ticks = interval(follow::POLL);
        loop {
            let step_at = steps.get(next_step).map_or(far, |s| started + s.at);
            tokio::select! {
                biased;
                stop = signals.next() => {
                    if stop != StopReason::TargetGone || !experiment.follow {
                        return Err(self.interrupted(stop));
                    }
                    eprintln!("chaos: target gone: {} was removed; following {}", self.target.cgroup, self.target.named_as);
                    self.away = Some(Away { old: self.target.clone(), since: Instant::now() });
                    signals.watch(None);
                }
                _ = follow_ticks.tick(), if self.away.is_some() => {
                    if let Err(reason) = self.follow_target(signals) {
                        self.abort(Some(Phase::During), &reason);
                        return Err(Verdict::CouldNotRun(reason));
                    }
                }
                () = sleep_until(step_at) => {
                    let step = steps[next_step];
                    next_step += 1;
                    if let Err(reason) = self.apply(step.fault, step.action) {
                        self.abort(Some(Phase::During), &reason);
                        return Err(Verdict::CouldNotRun(reason));
                    }
                }
                () = sleep_until(end), if next_step >= steps.len() => break,
                Some(outcome) = results.recv() => {
                    if let Some(reason) = self.record(&outcome, end) {
                        self.abort(Some(Phase::During), &reason);
                        self.sample_counts();
                        return Err(Verdict::Violated(format!("aborted: {reason}")));
                    }
                }
                _ = counts.tick() => {
                    self.sample_counts();
                    let left = end.saturating_duration_since(Instant::now());
                    show_status(self.status, left, &self.hypothesis, self.plan, &self.loaded);
                }
            }
        }
        drop(running);
        self.sample_counts();
        if self.away.is_some() {
            // The name never came back before the faults phase ended.
            return Err(self.interrupted(StopReason::TargetGone));
        }
        Ok(())
    }

    /// While a followed target is away: once its name resolves to a new cgroup, moves the
    /// faults there and watches it instead.
    fn follow_target(&mut self, signals: &mut StopSignals) -> Result<(), String> {
        let Some(away) = &self.away else { return Ok(()) };
        let Some(target) = follow::resolve_again(self.plan, &away.old) else { return Ok(()) };
        let event = follow::reattach_all(self.plan, &mut self.loaded, &target, away)?;
        // The record first: `chaos status`, the conflict checks of other runs and the daemon's
        // budgets read it, and whoever sees the `reattach` event must find it saying the same.
        if let Err(err) = self.registration.move_to(&target.cgroup, target.id) {
            self.warn(&format!(
                "the faults moved to {} but the run's record in {} could not say so ({err}): `chaos status` \
                 and other runs' conflict checks still see {}",
                target.cgroup,
                run_records::RUNS_DIR,
                self.target.cgroup
            ));
        }
        armed::restart_readers(self.plan, &mut self.loaded, &event.faults, self.timeline);
        signals.watch(Some(&target));
        eprintln!("chaos: target back as {} after {:.1}s: faults re-attached", target.describe(), event.gone_s);
        self.timeline.event(&TimelineEvent::Reattach(event));
        (self.target, self.away) = (target, None);
        Ok(())
    }

    fn interrupted(&mut self, stop: StopReason) -> Verdict {
        let reason = match stop {
            StopReason::Signal(signal) => format!("stopped by {}", signal.name()),
            StopReason::Deadline => "stopped".to_owned(),
            StopReason::Cancelled => "stopped by the daemon".to_owned(),
            StopReason::TargetGone => {
                let reason = format!("target gone: {} was removed", self.target.cgroup);
                self.abort(None, &reason);
                self.detach_all("target gone");
                return Verdict::TargetGone(reason);
            }
        };
        self.abort(None, &reason);
        self.detach_all("abort");
        Verdict::CouldNotRun(format!("{reason} before the end: no verdict"))
    }

    /// Applies one step of the schedule.
    fn apply(&mut self, index: usize, action: Action) -> Result<(), String> {
        let fault = &self.plan.faults[index];
        let Some(loaded) = self.loaded[index].as_mut() else { return Ok(()) };
        match action {
            Action::Arm { duration, ppm } => {
                let deadline_ns = sys::monotonic_deadline_ns(duration);
                let config = steps::armed(loaded.config, deadline_ns, ppm);
                loaded.fault.configure(config).map_err(|e| format!("arming fault {}: {e}", fault.label))?;
                (loaded.config, loaded.armed) = (config, true);
                // Packet faults and DNS (syscall and process faults count calls): quiet from now on?
                loaded.quiet = QuietHint::for_plan(&fault.plan, Instant::now());
                armed::start_actor(fault, loaded, &self.target, ppm, deadline_ns)?;
                self.timeline.event(&TimelineEvent::Arm {
                    fault: fault.number,
                    kernel_deadline_ns: deadline_ns,
                    percent: ppm.map(Ppm::from_ppm).or(fault.percent),
                });
            }
            Action::Ramp { ppm } => {
                let config = steps::armed(loaded.config, loaded.config.deadline_ns, Some(ppm));
                loaded.fault.configure(config).map_err(|e| format!("ramping fault {}: {e}", fault.label))?;
                loaded.config = config;
                armed::ramp_actor(fault, loaded, ppm)?;
                self.timeline.event(&TimelineEvent::Ramp { fault: fault.number, percent: Ppm::from_ppm(ppm) });
            }
            Action::End => self.detach(index, "end"),
        }
        Ok(())
    }

    /// Records a check result in the timeline and the tallies; returns why to abort, if an
    /// abort rule now holds.
    fn record(&mut self, outcome: &Outcome, phase_end: Instant) -> Option<String> {
        let check = &self.plan.experiment.steady_state.checks[outcome.check];
        self.timeline.event(&TimelineEvent::check(&check.name, outcome.phase, &outcome.result, None));
        if let Some(control) = &outcome.control {
            self.timeline.event(&TimelineEvent::check(&check.name, outcome.phase, control, Some("control")));
        }
        self.hypothesis.record(outcome, phase_end)
    }

    /// A `warning` event, on stderr too.
    fn warn(&mut self, warning: &str) {
        self.status.finish();
        eprintln!("chaos: warning: {warning}");
        self.timeline.event(&TimelineEvent::Warning { warning: warning.to_owned() });
    }

    /// An `abort` event.
    fn abort(&mut self, phase: Option<Phase>, reason: &str) {
        self.timeline.event(&TimelineEvent::Abort { phase, reason: reason.to_owned() });
    }

    /// Writes one `counts` event (injections per fault since the last one) and the hints of
    /// faults that have seen nothing for a while.
    fn sample_counts(&mut self) {
        let sample = armed::sample(self.plan, &mut self.loaded);
        if !sample.counts.is_empty() {
            self.timeline.event(&TimelineEvent::Counts { faults: sample.counts });
        }
        for (fault, hint) in sample.hints {
            self.status.finish();
            eprintln!("chaos: fault #{fault}: {hint}");
            self.timeline.event(&TimelineEvent::Hint { fault, hint });
        }
        self.registration.update_counts(&sample.totals);
        for (fault, loaded) in self.plan.faults.iter().zip(&self.loaded) {
            armed::drain_events(fault.number, loaded.as_ref(), self.timeline);
        }
    }

    /// Disarms and detaches one fault, recording its totals.
    fn detach(&mut self, index: usize, why: &str) {
        let Some(loaded) = self.loaded[index].take() else { return };
        armed::detach(&self.plan.faults[index], loaded, why, self.timeline);
    }

    fn detach_all(&mut self, why: &str) {
        for index in 0..self.loaded.len() {
            self.detach(index, why);
        }
    }
}

impl Drop for Runner<'_, '_> {
    /// A panic or an early return still detaches everything and says so in the timeline.
    fn drop(&mut self) {
        self.detach_all("exit");
    }
}
