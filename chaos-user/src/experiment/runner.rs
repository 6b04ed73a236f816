//! Runs an experiment in the foreground: baseline checks, then the faults (each armed at its
//! start with its own kernel deadline, ramped by map writes, detached at its end) while the
//! checks run and the abort rules watch them, then the after checks and the verdict.
//!
//! Every fault is loaded and attached inert (deadline 0) once the baseline holds, so a fault
//! that cannot attach stops the run before any fault is live; arming is then a map write at
//! its start. Everything attached is owned by this process (fd-owned links): SIGINT, SIGTERM,
//! SIGHUP, an error or a panic detach it on the way out, and SIGKILL takes it with the process.
use std::{
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use chaos_common::{FaultConfig, FaultCounters};
use serde_json::json;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use super::{
    Phase,
    plan::ExperimentPlan,
    schedule::{self, Action},
    timeline::{self, Timeline},
};
use crate::{
    attach::LoadedFault,
    report::OutputFormat,
    run::{StopReason, StopSignals, arm},
    runs::{self, FaultRecord, Registration, RunRecord},
    steady::{self, CheckResult, CheckSpec},
    sys,
};

/// How the run ended, and its exit code: 0 held, 1 violated, 2 could not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Held,
    Violated(String),
    CouldNotRun(String),
}

impl Verdict {
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::Held => 0,
            Self::Violated(_) => 1,
            Self::CouldNotRun(_) => 2,
        }
    }

    fn summary(&self, has_checks: bool) -> String {
        match self {
            Self::Held if has_checks => {
                "hypothesis held: the steady state held before, during and after the faults".into()
            }
            Self::Held => "ran to the end (no steady-state checks: nothing to hold)".into(),
            Self::Violated(why) => format!("hypothesis violated: {why}"),
            Self::CouldNotRun(why) => format!("could not run: {why}"),
        }
    }
}

/// One result, tagged with its check and phase.
struct Outcome {
    check: usize,
    phase: Phase,
    result: CheckResult,
}

/// Pass counts of one check in one phase, and its current run of failures.
#[derive(Clone, Copy, Default)]
struct Tally {
    passed: u64,
    failed: u64,
    streak: u32,
}

/// The checks of one phase, running as tasks until dropped.
struct RunningChecks(Vec<JoinHandle<()>>);

impl RunningChecks {
    fn start(checks: &[CheckSpec], phase: Phase, results: &mpsc::UnboundedSender<Outcome>) -> Self {
        let handles = checks
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let (spec, results) = (spec.clone(), results.clone());
                tokio::spawn(async move {
                    let mut ticks = interval(spec.interval);
                    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        let result = steady::run(&spec).await;
                        if results.send(Outcome { check: index, phase, result }).is_err() {
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

/// A fault's loaded object, while it is attached.
struct Loaded {
    fault: LoadedFault,
    config: FaultConfig,
    armed: bool,
    last: FaultCounters,
    /// The userspace action of a `proc` fault, running while it is armed.
    actor: Option<crate::proc_fault::periodic::Actor>,
}

pub struct RunOptions {
    pub timeline: std::path::PathBuf,
    pub output: OutputFormat,
}

/// Runs the plan; returns the exit code (0 held, 1 violated, 2 could not run).
pub fn run(plan: &ExperimentPlan<'_>, options: &RunOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = StopSignals::install().context("installing signal handlers")?;
        let _ = sys::raise_memlock_rlimit();
        let mut timeline = Timeline::create(&options.timeline)
            .with_context(|| format!("creating the timeline {}", options.timeline.display()))?;
        let mut runner = Runner::new(plan, &mut timeline)?;
        let verdict = runner.run(&mut signals).await;
        drop(runner);
        let has_checks = !plan.experiment.steady_state.checks.is_empty();
        timeline.event(
            "verdict",
            json!({
                "held": verdict == Verdict::Held,
                "exit_code": verdict.exit_code(),
                "summary": verdict.summary(has_checks),
            }),
        );
        match options.output {
            OutputFormat::Text => print!("{}", timeline::summary(timeline.events())),
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&timeline.events()).unwrap_or_default()),
        }
        eprintln!("timeline: {}", timeline.path().display());
        Ok(ExitCode::from(verdict.exit_code()))
    })
}

struct Runner<'p, 't> {
    plan: &'p ExperimentPlan<'p>,
    timeline: &'t mut Timeline,
    registration: Registration,
    loaded: Vec<Option<Loaded>>,
    tallies: Vec<[Tally; 3]>,
    status: StatusLine,
}

impl<'p, 't> Runner<'p, 't> {
    fn new(plan: &'p ExperimentPlan<'p>, timeline: &'t mut Timeline) -> anyhow::Result<Self> {
        let experiment = plan.experiment;
        let steady = &experiment.steady_state;
        let total = steady.before + experiment.duration + steady.after;
        let id = runs::new_id();
        let record = RunRecord {
            id: id.clone(),
            pid: std::process::id(),
            pid_start: crate::ledger::start_time(std::process::id()).unwrap_or(0),
            detached: false,
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
        timeline.event("experiment", json!({
            "id": id,
            "name": experiment.name,
            "file": experiment.source.path,
            "target": plan.target.describe(),
            "pid": std::process::id(),
            "duration_s": experiment.duration.as_secs_f64(),
            "before_s": steady.before.as_secs_f64(),
            "after_s": steady.after.as_secs_f64(),
            "checks": steady.checks.iter().map(|c| json!({ "name": c.name, "what": c.kind.to_string(), "pass_rate": c.pass_rate })).collect::<Vec<_>>(),
            "notes": plan.notes,
        }));
        for fault in &plan.faults {
            timeline.event(
                "plan",
                json!({
                    "fault": fault.number,
                    "kind": fault.plan.fault,
                    "command_line": fault.command_line,
                    "start_s": fault.start.as_secs_f64(),
                    "duration_s": fault.duration.as_secs_f64(),
                    "programs": fault.plan.programs,
                    "maps": fault.plan.maps,
                }),
            );
        }
        eprintln!("chaos: experiment {id} \"{}\" on {}", experiment.name, plan.target.describe());
        Ok(Self {
            plan,
            timeline,
            registration,
            loaded: plan.faults.iter().map(|_| None).collect(),
            tallies: vec![[Tally::default(); 3]; steady.checks.len()],
            status: StatusLine::on_stderr(),
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
            if let Some(why) = self.violation(Phase::Before) {
                let reason = format!("the steady state does not hold before any fault (baseline): {why}");
                self.timeline.event("abort", json!({ "phase": "before", "reason": reason }));
                return Verdict::CouldNotRun(reason);
            }
        }

        // Attach every fault, inert, so that one that cannot attach stops the run before any is live.
        for index in 0..self.plan.faults.len() {
            let fault = &self.plan.faults[index];
            match arm(&fault.plan, None) {
                Ok((loaded, _)) => {
                    self.timeline.event(
                        "attach",
                        json!({ "fault": fault.number, "programs": fault.plan.programs.len(), "hooks": fault.hooks() }),
                    );
                    self.loaded[index] = Some(Loaded {
                        fault: loaded,
                        config: fault.plan.config,
                        armed: false,
                        last: FaultCounters::default(),
                        actor: None,
                    });
                }
                Err(err) => {
                    let reason = format!("fault {} could not attach: {err}", fault.label);
                    self.timeline.event("abort", json!({ "phase": "during", "reason": reason }));
                    self.detach_all("error");
                    return Verdict::CouldNotRun(reason);
                }
            }
        }

        let during = self.during(&results_tx, &mut results, signals).await;
        self.detach_all(if during.is_err() { "abort" } else { "end" });
        if let Err(Verdict::CouldNotRun(why)) = &during {
            self.status.finish();
            return Verdict::CouldNotRun(why.clone());
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
            if let Some(why) = self.violation(phase) {
                return Verdict::Violated(format!("{why} ({} the faults)", phase.name()));
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
        self.timeline.event("phase", json!({ "phase": phase.name(), "length_s": length.as_secs_f64() }));
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
                        self.timeline.event("abort", json!({ "phase": "before", "reason": reason }));
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
        self.timeline.event("phase", json!({ "phase": "during", "length_s": experiment.duration.as_secs_f64() }));
        let started = Instant::now();
        let end = started + experiment.duration;
        let steps = schedule::steps(&self.plan.faults);
        let mut next_step = 0;
        let running = RunningChecks::start(&experiment.steady_state.checks, Phase::During, results_tx);
        let mut counts = interval(Duration::from_secs(1));
        counts.set_missed_tick_behavior(MissedTickBehavior::Delay);
        counts.tick().await;
        let far = end + Duration::from_secs(3600);
        loop {
            let step_at = steps.get(next_step).map_or(far, |s| started + s.at);
            tokio::select! {
                biased;
                stop = signals.next() => return Err(self.interrupted(stop)),
                () = sleep_until(step_at) => {
                    let step = steps[next_step];
                    next_step += 1;
                    if let Err(reason) = self.apply(step.fault, step.action) {
                        self.timeline.event("abort", json!({ "phase": "during", "reason": reason }));
                        return Err(Verdict::CouldNotRun(reason));
                    }
                }
                () = sleep_until(end), if next_step >= steps.len() => break,
                Some(outcome) = results.recv() => {
                    if let Some(reason) = self.record(&outcome, end) {
                        self.timeline.event("abort", json!({ "phase": "during", "reason": reason }));
                        self.sample_counts();
                        return Err(Verdict::Violated(format!("aborted: {reason}")));
                    }
                }
                _ = counts.tick() => {
                    self.sample_counts();
                    self.status.show(end.saturating_duration_since(Instant::now()), &self.tallies, self.plan, &self.loaded);
                }
            }
        }
        drop(running);
        self.sample_counts();
        Ok(())
    }

    fn interrupted(&mut self, stop: StopReason) -> Verdict {
        let reason = match stop {
            StopReason::Signal(signal) => format!("stopped by {}", signal.name()),
            StopReason::Deadline => "stopped".to_owned(),
        };
        self.timeline.event("abort", json!({ "reason": reason }));
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
                let config = schedule::armed(loaded.config, deadline_ns, ppm);
                loaded.fault.configure(config).map_err(|e| format!("arming fault {}: {e}", fault.label))?;
                (loaded.config, loaded.armed) = (config, true);
                if let Some(action) = &fault.userspace {
                    loaded.actor = Some(
                        crate::proc_fault::periodic::Actor::start(&fault.plan.target, action.clone(), deadline_ns)
                            .map_err(|e| format!("starting fault {}: {e}", fault.label))?,
                    );
                }
                self.timeline.event("arm", json!({
                    "fault": fault.number,
                    "kernel_deadline_ns": deadline_ns,
                    "percent": ppm.map_or_else(|| fault.plan.parameters.get("percent").cloned().unwrap_or_default(), |p| json!(f64::from(p) / 10_000.0)),
                }));
            }
            Action::Ramp { ppm } => {
                let config = schedule::armed(loaded.config, loaded.config.deadline_ns, Some(ppm));
                loaded.fault.configure(config).map_err(|e| format!("ramping fault {}: {e}", fault.label))?;
                loaded.config = config;
                self.timeline.event("ramp", json!({ "fault": fault.number, "percent": f64::from(ppm) / 10_000.0 }));
            }
            Action::End => self.detach(index, "end"),
        }
        Ok(())
    }

    /// Records a check result; returns why to abort, if an abort rule now holds.
    fn record(&mut self, outcome: &Outcome, phase_end: Instant) -> Option<String> {
        let check = &self.plan.experiment.steady_state.checks[outcome.check];
        let tally = &mut self.tallies[outcome.check][outcome.phase as usize];
        if outcome.result.ok {
            tally.passed += 1;
            tally.streak = 0;
        } else {
            tally.failed += 1;
            tally.streak += 1;
        }
        let tally = *tally;
        self.timeline.event(
            "check",
            json!({
                "check": check.name,
                "phase": outcome.phase.name(),
                "ok": outcome.result.ok,
                "latency_ms": (outcome.result.latency.as_secs_f64() * 1e6).round() / 1e3,
                "detail": outcome.result.detail,
            }),
        );
        if outcome.result.ok || outcome.phase == Phase::After {
            return None;
        }
        let rules = self.plan.experiment.abort;
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
    fn violation(&self, phase: Phase) -> Option<String> {
        for (check, tallies) in self.plan.experiment.steady_state.checks.iter().zip(&self.tallies) {
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

    /// Writes one `counts` event: injections per fault since the last one.
    fn sample_counts(&mut self) {
        let mut faults = Vec::new();
        let mut totals = Vec::new();
        for (fault, loaded) in self.plan.faults.iter().zip(&mut self.loaded) {
            let Some(loaded) = loaded else {
                totals.push(0);
                continue;
            };
            let total = total_counters(&loaded.fault, &fault.plan.directions());
            totals.push(total.injected);
            if loaded.armed {
                faults.push(json!({
                    "fault": fault.number,
                    "injected": total.injected - loaded.last.injected,
                    "seen": total.seen - loaded.last.seen,
                    "matched": total.matched - loaded.last.matched,
                    "injected_total": total.injected,
                    "seen_total": total.seen,
                    "matched_total": total.matched,
                }));
            }
            loaded.last = total;
        }
        if !faults.is_empty() {
            self.timeline.event("counts", json!({ "faults": faults }));
        }
        self.registration.update_counts(&totals);
    }

    /// Disarms and detaches one fault, recording its totals.
    fn detach(&mut self, index: usize, why: &str) {
        let Some(mut loaded) = self.loaded[index].take() else { return };
        let fault = &self.plan.faults[index];
        let _ = loaded.fault.disarm();
        let mut total = total_counters(&loaded.fault, &fault.plan.directions());
        if let Some(actor) = loaded.actor.take() {
            let outcome = actor.finish();
            for event in &outcome.events {
                let mut fields = serde_json::to_value(event).unwrap_or_default();
                let name = fields["event"].as_str().unwrap_or("proc").to_owned();
                fields["fault"] = json!(fault.number);
                fields.as_object_mut().map(|f| f.remove("event"));
                self.timeline.event(&format!("proc-{name}"), fields);
            }
            total = FaultCounters { seen: outcome.ticks, matched: outcome.ticks, injected: outcome.acted };
        }
        let problems = loaded.fault.detach_tc();
        drop(loaded);
        for problem in &problems {
            eprintln!("chaos: warning: {problem}; run `chaos cleanup`");
        }
        self.timeline.event(
            "detach",
            json!({
                "fault": fault.number,
                "why": why,
                "seen": total.seen,
                "matched": total.matched,
                "injected": total.injected,
                "problems": problems,
            }),
        );
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

fn total_counters(fault: &LoadedFault, directions: &[chaos_common::Direction]) -> FaultCounters {
    directions.iter().filter_map(|&d| fault.counters(d).ok()).fold(FaultCounters::default(), FaultCounters::add)
}

/// A status line on a terminal: time left, check health, injections.
struct StatusLine {
    tty: bool,
}

impl StatusLine {
    fn on_stderr() -> Self {
        Self { tty: std::io::stderr().is_terminal() }
    }

    fn show(&self, left: Duration, tallies: &[[Tally; 3]], plan: &ExperimentPlan<'_>, loaded: &[Option<Loaded>]) {
        if !self.tty {
            return;
        }
        let checks: Vec<String> = plan
            .experiment
            .steady_state
            .checks
            .iter()
            .zip(tallies)
            .map(|(c, t)| {
                let t = t[Phase::During as usize];
                format!("{} {}/{}", c.name, t.passed, t.passed + t.failed)
            })
            .collect();
        let faults: Vec<String> = plan
            .faults
            .iter()
            .zip(loaded)
            .map(|(f, l)| match l {
                Some(l) if l.armed => format!("{} {} {}", f.label, l.last.injected, f.plan.injected_word),
                Some(_) => format!("{} waiting", f.label),
                None => format!("{} done", f.label),
            })
            .collect();
        let line = format!("{}s left | {} | {}", left.as_secs(), checks.join(", "), faults.join(", "));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
