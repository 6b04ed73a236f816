//! Runs an attached fault until its deadline or a stop signal, showing live counters.
//!
//! The deadline is enforced twice: by the kernel (the programs compare `bpf_ktime_get_ns()` with
//! the deadline in their map) and here (a timer that then disarms and detaches). The kernel one
//! is what makes the time box hold when this process is stopped, slow, or dead.
use std::{
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use chaos_common::{Direction, FaultConfig, FaultCounters};
use serde::Serialize;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use crate::{
    attach::{AttachError, LoadedFault},
    plan::FaultPlan,
    report::{FaultReport, OutputFormat},
    sys,
};

/// Loads a fresh copy of the object for `plan`, fills its maps, writes its configuration with a
/// kernel deadline `in_force_for` from now (None: disarmed, deadline 0), and attaches its
/// programs. The deadline is written before anything attaches, so the time box holds from the
/// first packet even if chaos dies mid-way; and written again once every program is attached,
/// because attaching verifies each one, which can take seconds on a slow machine: a short
/// fault is not spent before it is in place. On error, whatever was attached is detached again
/// (drop). Returns the fault and its deadline (CLOCK_MONOTONIC ns).
pub fn arm(plan: &FaultPlan, in_force_for: Option<Duration>) -> Result<(LoadedFault, u64), AttachError> {
    let armed_from_now =
        || FaultConfig { deadline_ns: in_force_for.map_or(0, sys::monotonic_deadline_ns), ..plan.config };
    let mut fault = LoadedFault::load(plan.kernel_offsets)?;
    fault.fill_maps(&plan.maps)?;
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
/// showing counters, disarm, detach, report. Returns the exit status.
pub fn run_plan(plan: &FaultPlan, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        // Signals first: a Ctrl-C during set-up must still reach the clean-up below.
        let mut signals = StopSignals::install().context("installing signal handlers")?;
        let _ = sys::raise_memlock_rlimit();
        let (mut fault, deadline_ns) = arm(plan, Some(plan.duration))?;
        // The user-space timer ends with the kernel deadline (both CLOCK_MONOTONIC).
        let deadline = Instant::now() + Duration::from_nanos(deadline_ns.saturating_sub(sys::monotonic_now_ns()));
        let started = deadline.checked_sub(plan.duration).unwrap_or_else(Instant::now);
        tracing::info!("fault armed: kernel deadline CLOCK_MONOTONIC ns={deadline_ns}");

        let directions = plan.directions();
        let progress = Progress::on_stderr(plan.fault, plan.injected_word);
        let stopped = supervise(&fault, &directions, plan.counter_label, deadline, &mut signals, Some(progress)).await;
        let elapsed = started.elapsed();

        fault.disarm()?;
        let counters = read_counters(&fault, &directions, plan.counter_label)?;
        for problem in fault.detach_tc() {
            eprintln!("chaos: warning: {problem}; run `chaos cleanup`");
        }
        drop(fault); // detaches every fd-owned link

        let report = FaultReport {
            fault: plan.fault,
            target: &plan.target,
            summary: &plan.summary,
            parameters: &plan.parameters,
            requested: plan.duration,
            elapsed,
            stopped,
            counters,
        };
        print!("{}", report.render(output, plan.injected_word));
        Ok(ExitCode::from(stopped.exit_code()))
    })
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "by", content = "signal")]
pub enum StopReason {
    Deadline,
    Signal(StopSignal),
}

/// The signals that stop a run early (after clean-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StopSignal {
    #[serde(rename = "SIGHUP")]
    Hup = 1,
    #[serde(rename = "SIGINT")]
    Int = 2,
    #[serde(rename = "SIGTERM")]
    Term = 15,
}

impl StopSignal {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hup => "SIGHUP",
            Self::Int => "SIGINT",
            Self::Term => "SIGTERM",
        }
    }
}

impl StopReason {
    /// Conventional exit status: 0 for a run that reached its deadline, 128 + signal otherwise.
    #[must_use]
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Deadline => 0,
            Self::Signal(signal) => 128 + signal as u8,
        }
    }
}

/// The stop signals chaos handles, installed before anything is attached so that a Ctrl-C
/// during set-up still goes through clean-up.
pub struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> StopReason {
        tokio::select! {
            _ = self.int.recv() => StopReason::Signal(StopSignal::Int),
            _ = self.term.recv() => StopReason::Signal(StopSignal::Term),
            _ = self.hup.recv() => StopReason::Signal(StopSignal::Hup),
        }
    }
}

/// Counters of one direction at one moment. The names are stable (they become metrics).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DirectionCounters {
    pub direction: &'static str,
    pub seen: u64,
    pub matched: u64,
    pub injected: u64,
}

impl DirectionCounters {
    /// `label` names the slot when it does not count a packet direction (e.g. `calls`).
    fn new(direction: Direction, label: Option<&'static str>, c: FaultCounters) -> Self {
        let direction = label.unwrap_or_else(|| direction_name(direction));
        Self { direction, seen: c.seen, matched: c.matched, injected: c.injected }
    }
}

#[must_use]
pub const fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Egress => "egress",
        Direction::Ingress => "ingress",
    }
}

pub fn read_counters(
    fault: &LoadedFault,
    directions: &[Direction],
    label: Option<&'static str>,
) -> Result<Vec<DirectionCounters>, AttachError> {
    directions.iter().map(|&d| Ok(DirectionCounters::new(d, label, fault.counters(d)?))).collect()
}

/// How live progress is shown: a rewritten status line on a terminal, a plain line every few
/// seconds otherwise (logs stay readable), on stderr so stdout stays machine-readable.
#[derive(Clone, Copy)]
pub struct Progress {
    tty: bool,
    label: &'static str,
    injected_word: &'static str,
}

impl Progress {
    #[must_use]
    pub fn on_stderr(label: &'static str, injected_word: &'static str) -> Self {
        Self { tty: std::io::stderr().is_terminal(), label, injected_word }
    }

    const fn period(self) -> Duration {
        if self.tty { Duration::from_millis(250) } else { Duration::from_secs(5) }
    }

    fn show(self, remaining: Duration, counters: &[DirectionCounters]) {
        let parts: Vec<String> = counters
            .iter()
            .map(|c| format!("{} seen {} {} {}", c.direction, c.seen, self.injected_word, c.injected))
            .collect();
        let line = format!("{}: {} | {}s left", self.label, parts.join(" | "), remaining.as_secs());
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn finish(self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// Waits for the deadline or a stop signal, showing progress. Returns why it stopped.
pub async fn supervise(
    fault: &LoadedFault,
    directions: &[Direction],
    label: Option<&'static str>,
    deadline: Instant,
    signals: &mut StopSignals,
    progress: Option<Progress>,
) -> StopReason {
    let mut ticks = interval(progress.map_or(Duration::from_secs(3600), Progress::period));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop = loop {
        tokio::select! {
            () = sleep_until(deadline) => break StopReason::Deadline,
            reason = signals.next() => break reason,
            _ = ticks.tick() => {
                if let (Some(progress), Ok(counters)) = (progress, read_counters(fault, directions, label)) {
                    progress.show(deadline.saturating_duration_since(Instant::now()), &counters);
                }
            }
        }
    };
    if let Some(progress) = progress {
        progress.finish();
    }
    stop
}
