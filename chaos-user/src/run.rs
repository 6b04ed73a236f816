//! Runs an attached fault until its deadline or a stop signal, showing live counters.
//!
//! The deadline is enforced twice: by the kernel (the programs compare `bpf_ktime_get_ns()` with
//! the deadline in their map) and here (a timer that then disarms and detaches). The kernel one
//! is what makes the time box hold when this process is stopped, slow, or dead.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use chaos_common::{Direction, FaultConfig};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use crate::{
    engine::{AttachError, LoadedFault},
    fault::FaultPlan,
    hints::QuietHint,
    live::LiveLine,
    os::sys,
    report::{DirectionCounters, Hits, OutputFormat, StopReason, StopSignal},
    run_records::Registration,
    targets::{Target, watch::TargetWatch},
};

/// Loads a fresh copy of the object for `plan`, fills its maps, writes its configuration with a
/// kernel deadline `in_force_for` from now (None: disarmed, deadline 0), and attaches its
/// programs. The deadline is written before anything attaches, so the time box holds from the
/// first packet even if chaos dies mid-way; and written again once every program is attached,
/// because attaching verifies each one, which can take seconds on a slow machine: a short
/// fault is not spent before it is in place. On error, whatever was attached is detached again
/// (drop). Returns the fault and its deadline (CLOCK_MONOTONIC ns).
pub fn arm(plan: &FaultPlan, in_force_for: Option<Duration>) -> Result<(LoadedFault, u64), AttachError> {
    let mut fault = LoadedFault::load(plan.kernel_offsets)?;
    // Raw sys_enter and fentry programs run through the process's one program per hook
    // (engine/dispatch.rs).
    fault.share_hooks(&plan.target.dir);
    arm_loaded(fault, plan, in_force_for)
}

/// [`arm`] for a fault that will be pinned (a detached experiment): every program on a link of
/// its own, which the pins keep once this process is gone.
pub fn arm_to_pin(plan: &FaultPlan) -> Result<LoadedFault, AttachError> {
    arm_loaded(LoadedFault::load(plan.kernel_offsets)?, plan, None).map(|(fault, _)| fault)
}

fn arm_loaded(
    mut fault: LoadedFault,
    plan: &FaultPlan,
    in_force_for: Option<Duration>,
) -> Result<(LoadedFault, u64), AttachError> {
    let armed_from_now =
        || FaultConfig { deadline_ns: in_force_for.map_or(0, sys::monotonic_deadline_ns), ..plan.config };
    fault.fill_maps(&plan.maps)?;
    if let Some(companion) = &plan.companion {
        fault.start_companion(companion.as_ref())?;
    }
    let mut config = armed_from_now();
    fault.configure(config)?;
    for program in &plan.programs {
        fault.attach(program)?;
    }
    if in_force_for.is_some() {
        config = armed_from_now();
        fault.configure(config)?;
    }
    Ok((fault, config.deadline_ns))
}

/// Runs one fault from the command line: arm, wait for its deadline or a stop signal while
/// showing counters (on stderr and in its run record), disarm, detach, report. Returns the exit
/// status.
pub fn run_plan(plan: &FaultPlan, output: OutputFormat, registration: &mut Registration) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        // Signals first: a Ctrl-C during set-up must still reach the clean-up below.
        let mut signals = StopSignals::install().context("installing signal handlers")?.watching(&plan.target);
        let _ = sys::raise_resource_limits();
        let (mut fault, deadline_ns) = arm(plan, Some(plan.duration))?;
        let injections = fault.read_injections()?;
        // The user-space timer ends with the kernel deadline (both CLOCK_MONOTONIC).
        let deadline = Instant::now() + Duration::from_nanos(deadline_ns.saturating_sub(sys::monotonic_now_ns()));
        let started = deadline.checked_sub(plan.duration).unwrap_or_else(Instant::now);
        tracing::info!("fault armed: kernel deadline CLOCK_MONOTONIC ns={deadline_ns}");

        let directions = plan.directions();
        // Packet faults and DNS get the "seen nothing" hint (syscall and process faults count calls).
        let quiet = QuietHint::for_plan(plan, Instant::now());
        let progress =
            Progress { line: LiveLine::on_stderr(), label: plan.fault, injected_word: plan.injected_word, quiet };
        let record_counts = |counters: &[DirectionCounters]| {
            registration.update_counts(&[counters.iter().map(|c| c.injected).sum()]);
        };
        let stopped =
            supervise(&fault, &directions, plan.counter_label, deadline, &mut signals, Some(progress), record_counts)
                .await;
        let elapsed = started.elapsed();

        fault.disarm()?;
        let counters = read_counters(&fault, &directions, plan.counter_label)?;
        let hits = injections.map(|reader| Hits::of(reader.finish()));
        for problem in fault.detach_tc() {
            eprintln!("chaos: warning: {problem}; run `chaos cleanup`");
        }
        drop(fault); // detaches every fd-owned link

        let report = plan.report(elapsed, stopped, counters, hits);
        print!("{}", report.render(output, plan.injected_word));
        Ok(ExitCode::from(stopped.exit_code()))
    })
}

/// Runs one fault done from chaos's own process (its plan's userspace action: periodic kills,
/// pauses, `net sever`'s resets) from the command line for `plan.duration`, or until a stop
/// signal, then reports, with what it did in the JSON summary (`events`) and at the end of the
/// text one (its notes). A plan with programs too (`net sever --after-bytes`) has them armed
/// first, with the kernel deadline; the action reads what they report, their counters and
/// traced injections join the report, and they are detached at the end. Without programs there
/// is no kernel deadline: the time box is this timer, backed by the action's guard (a pause's).
/// Its record (`registration`, written before anything starts) gets what the action has done
/// so far every second, for `chaos status`; `chaos stop` ends it with SIGTERM, as any one-shot.
pub fn run_userspace_plan(
    plan: &FaultPlan,
    output: OutputFormat,
    registration: &mut Registration,
) -> anyhow::Result<ExitCode> {
    #[derive(serde::Serialize)]
    struct Summary<'a> {
        #[serde(flatten)]
        report: &'a crate::report::FaultReport<'a>,
        events: &'a [crate::plan::action::ActionEvent],
    }
    let action = plan.userspace.as_ref().context("the plan has no userspace action")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = StopSignals::install().context("installing signal handlers")?.watching(&plan.target);
        let started = Instant::now();
        let (mut armed, deadline_ns) = if plan.programs.is_empty() {
            (None, sys::monotonic_deadline_ns(plan.duration))
        } else {
            let _ = sys::raise_resource_limits();
            let (fault, deadline_ns) = arm(plan, Some(plan.duration))?;
            (Some(fault), deadline_ns)
        };
        let injections = match armed.as_mut() {
            Some(fault) => fault.read_injections()?,
            None => None,
        };
        let running = action.start(&plan.target, deadline_ns, armed.as_mut().map(LoadedFault::object_mut))?;
        tracing::info!("fault armed: {} until CLOCK_MONOTONIC ns={deadline_ns}", plan.fault);
        let mut counts = interval(Duration::from_secs(1));
        counts.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stopped = loop {
            tokio::select! {
                () = sleep_until(started + plan.duration) => break StopReason::Deadline,
                reason = signals.next() => break reason,
                _ = counts.tick() => registration.update_counts(&[running.acted()]),
            }
        };
        let mut packets = Vec::new();
        if let Some(fault) = armed.as_mut() {
            fault.disarm()?;
            packets = read_counters(fault, &plan.directions(), None)?;
        }
        let outcome = running.finish();
        let hits = injections.map(|reader| Hits::of(reader.finish()));
        drop(armed); // detaches every fd-owned link
        let elapsed = started.elapsed();
        let mut counters = vec![DirectionCounters {
            direction: plan.counter_label.unwrap_or("ticks"),
            seen: outcome.ticks,
            matched: outcome.ticks,
            injected: outcome.acted,
        }];
        counters.extend(packets);
        let report = plan.report(elapsed, stopped, counters, hits);
        match output {
            OutputFormat::Json => {
                println!("{}", serde_json::to_string_pretty(&Summary { report: &report, events: &outcome.events })?);
            }
            OutputFormat::Text => {
                print!("{}", report.render(output, plan.injected_word));
                for note in &outcome.notes {
                    println!("{note}");
                }
            }
        }
        Ok(ExitCode::from(stopped.exit_code()))
    })
}

/// What ends a run early: the stop signals chaos handles (installed before anything is attached
/// so that a Ctrl-C during set-up still goes through clean-up), or, for a run inside the daemon,
/// its cancellation (the daemon owns the process's signals).
pub struct StopSignals {
    signals: Option<[tokio::signal::unix::Signal; 3]>,
    cancel: Option<tokio::sync::watch::Receiver<bool>>,
    /// The target, when its removal ends the run ("target gone").
    target: Option<TargetWatch>,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            signals: Some([
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ]),
            cancel: None,
            target: None,
        })
    }

    /// Ends the run when `cancel` turns true (or its sender is gone: nobody is left to end it).
    #[must_use]
    pub const fn cancelled_by(cancel: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { signals: None, cancel: Some(cancel), target: None }
    }

    /// Also ends the run when `target`'s cgroup goes away.
    #[must_use]
    pub fn watching(mut self, target: &Target) -> Self {
        self.target = Some(TargetWatch::new(target));
        self
    }

    /// Watches `target` from now on instead (None: no target ends the run), for a run that
    /// follows its target to a new cgroup.
    pub fn watch(&mut self, target: Option<&Target>) {
        self.target = target.map(TargetWatch::new);
    }

    pub async fn next(&mut self) -> StopReason {
        let Self { signals, cancel, target } = self;
        let gone = async {
            match target {
                Some(watch) => watch.gone().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = gone => StopReason::TargetGone,
            reason = Self::stopped(signals, cancel) => reason,
        }
    }

    async fn stopped(
        signals: &mut Option<[tokio::signal::unix::Signal; 3]>,
        cancel: &mut Option<tokio::sync::watch::Receiver<bool>>,
    ) -> StopReason {
        match (signals, cancel) {
            (Some([int, term, hup]), _) => tokio::select! {
                _ = int.recv() => StopReason::Signal(StopSignal::Int),
                _ = term.recv() => StopReason::Signal(StopSignal::Term),
                _ = hup.recv() => StopReason::Signal(StopSignal::Hup),
            },
            (None, Some(cancel)) => {
                let _ = cancel.wait_for(|cancelled| *cancelled).await;
                StopReason::Cancelled
            }
            (None, None) => std::future::pending().await,
        }
    }
}

pub fn read_counters(
    fault: &LoadedFault,
    directions: &[Direction],
    label: Option<&'static str>,
) -> Result<Vec<DirectionCounters>, AttachError> {
    directions.iter().map(|&d| Ok(DirectionCounters::new(d, label, fault.counters(d)?))).collect()
}

/// A fault's live counters, per direction, and the time left; for a network fault, a hint when
/// it has seen nothing for a while.
pub struct Progress {
    pub line: LiveLine,
    pub label: &'static str,
    pub injected_word: &'static str,
    pub quiet: Option<QuietHint>,
}

impl Progress {
    fn show(&mut self, remaining: Duration, counters: &[DirectionCounters]) {
        if let Some(hint) = self.quiet.as_mut().and_then(|q| q.check(Instant::now(), counters)) {
            self.line.finish();
            eprintln!("chaos: {hint}");
        }
        let parts: Vec<String> = counters
            .iter()
            .map(|c| format!("{} seen {} {} {}", c.direction, c.seen, self.injected_word, c.injected))
            .collect();
        self.line.show(&format!("{}: {} | {}s left", self.label, parts.join(" | "), remaining.as_secs()));
    }
}

/// Waits for the deadline or a stop signal, showing progress. Returns why it stopped.
pub async fn supervise(
    fault: &LoadedFault,
    directions: &[Direction],
    label: Option<&'static str>,
    deadline: Instant,
    signals: &mut StopSignals,
    mut progress: Option<Progress>,
    mut on_counts: impl FnMut(&[DirectionCounters]),
) -> StopReason {
    let mut ticks = interval(progress.as_ref().map_or(Duration::from_secs(3600), |p| p.line.period()));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop = loop {
        tokio::select! {
            () = sleep_until(deadline) => break StopReason::Deadline,
            reason = signals.next() => break reason,
            _ = ticks.tick() => {
                if let (Some(progress), Ok(counters)) = (progress.as_mut(), read_counters(fault, directions, label)) {
                    progress.show(deadline.saturating_duration_since(Instant::now()), &counters);
                    on_counts(&counters);
                }
            }
        }
    };
    if let Some(progress) = &progress {
        progress.line.finish();
    }
    stop
}
