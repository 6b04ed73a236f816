//! The runner of the userspace actions: periodic kills and pauses, and `net sever`'s sweeps.
//! None needs an eBPF program (a signal, a write to `cgroup.freeze` and sock_diag's
//! `SOCK_DESTROY` are the kernel's own mechanisms), so an [`Actor`] thread does them on its
//! schedule until its deadline or until it is told to stop, and hands back what it did as
//! [`ProcEvent`]s. The command line ([`run`]) and experiments (their runner starts an actor when
//! the fault is armed) share it. A paused target is always left thawed; the guard and a ledger
//! record cover chaos's own death (pause.rs). `net sever --after-bytes` has programs too: the
//! actor then reads what they report ([`Action::bound_to`]).
use std::{
    process::ExitCode,
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;
use tokio::time::{Instant, sleep_until};

use super::{
    events::ProcEvent,
    freezer,
    kill::PeriodicKill,
    pause::{PausePlan, Paused},
    pick::{self, Pick},
    ticker::Ticker,
};
use crate::{
    engine::{AttachError, LoadedFault},
    fault::FaultPlan,
    report::{DirectionCounters, FaultReport, OutputFormat, StopReason},
    run::StopSignals,
    sys,
    target::Target,
};

/// What a userspace action does at each tick.
#[derive(Clone, Debug)]
pub enum Action {
    Kill(PeriodicKill),
    Pause(PausePlan),
    Sever(crate::fault::net::sever::SeverAction),
}

impl Action {
    /// Hands the action what it reads of its fault's armed object: `net sever --after-bytes`
    /// takes the ring buffer its programs report silenced connections in.
    pub fn bound_to(self, fault: &mut LoadedFault) -> Result<Self, AttachError> {
        match self {
            Self::Sever(mut sever) if sever.after_bytes.is_some() => {
                let ring = fault.take_ring_buf(chaos_common::maps::SEVER_EVENTS)?;
                sever.reports = Some(crate::fault::net::sever::runner::Reports::new(ring));
                Ok(Self::Sever(sever))
            }
            other => Ok(other),
        }
    }

    /// `--trace-injections` at `rate` lines a second: `net sever` names each connection's
    /// process; the `proc` actions already say whom they hit.
    #[must_use]
    pub fn traced(self, rate: Option<u64>) -> Self {
        match self {
            Self::Sever(mut sever) => {
                sever.trace_per_sec = rate;
                Self::Sever(sever)
            }
            other => other,
        }
    }

    /// Whether the action itself reports who it hit (so `--trace-injections` needs no program).
    #[must_use]
    pub const fn traces_in_userspace(&self) -> bool {
        matches!(self, Self::Sever(_))
    }
}

/// What an actor did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub ticks: u64,
    /// Processes killed, or freezes made.
    pub acted: u64,
    pub events: Vec<ProcEvent>,
}

/// A userspace action running in its own thread until its deadline or [`Actor::finish`].
pub struct Actor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<Outcome>>,
}

impl Actor {
    /// Starts `action` on `target` now, until CLOCK_MONOTONIC `deadline_ns`. A pause writes its
    /// ledger record and starts its guard here, before the thread, so a failure is reported.
    pub fn start(target: &Target, action: Action, deadline_ns: u64) -> anyhow::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let start_ns = sys::monotonic_now_ns();
        let paused = match &action {
            Action::Pause(plan) => Some(Paused::start(target, plan, deadline_ns)?),
            Action::Kill(_) | Action::Sever(_) => None,
        };
        let (shared, target) = (Arc::clone(&stop), target.clone());
        let thread = std::thread::Builder::new().name("chaos-proc".into()).spawn(move || {
            let wait = |until_ns: u64| wait_until(&shared, until_ns);
            let mut outcome = Outcome::default();
            match (action, paused) {
                (Action::Kill(kill), _) => {
                    let mut ticker = Ticker::new(kill.every, kill.jitter, kill.max, start_ns);
                    while let Some(due_ns) = ticker.next_due_ns().filter(|&due| due < deadline_ns) {
                        if !wait(due_ns) {
                            break;
                        }
                        ticker.take(sys::monotonic_now_ns());
                        outcome.ticks += 1;
                        outcome.acted += kill_once(&target, &kill, &mut outcome.events);
                    }
                }
                (Action::Pause(_), Some(mut paused)) => {
                    paused.run(start_ns, deadline_ns, &wait, &mut outcome.events);
                    (outcome.ticks, outcome.acted) = (paused.freezes(), paused.freezes());
                }
                (Action::Pause(_), None) => unreachable!("a pause starts its freezer first"),
                (Action::Sever(sever), _) => sever.run(&target, start_ns, deadline_ns, &wait, &mut outcome),
            }
            outcome
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops the action (a pause thaws) and returns what it did.
    pub fn finish(mut self) -> Outcome {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> Outcome {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop_thread();
        }
    }
}

/// Sleeps until CLOCK_MONOTONIC `until_ns`; false if told to stop first.
fn wait_until(stop: &(Mutex<bool>, Condvar), until_ns: u64) -> bool {
    let (flag, wake) = stop;
    let mut stopped = flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        if *stopped {
            return false;
        }
        let now = sys::monotonic_now_ns();
        if now >= until_ns {
            return true;
        }
        stopped = wake
            .wait_timeout(stopped, Duration::from_nanos(until_ns - now))
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}

#[derive(Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    report: &'a FaultReport<'a>,
    events: &'a [ProcEvent],
}

/// Runs a userspace action from the command line for `plan.duration`, then reports. A plan with
/// programs too (`net sever --after-bytes`) has them armed first, with the kernel deadline,
/// their packet counters and traced injections in the report, and detached at the end.
pub fn run(plan: &FaultPlan, action: Action, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = StopSignals::install().context("installing signal handlers")?.watching(&plan.target);
        let started = Instant::now();
        let (mut armed, deadline_ns, action) = if plan.programs.is_empty() {
            (None, sys::monotonic_deadline_ns(plan.duration), action)
        } else {
            let _ = sys::raise_resource_limits();
            let (mut fault, deadline_ns) = crate::run::arm(plan, Some(plan.duration))?;
            let action = action.bound_to(&mut fault)?;
            (Some(fault), deadline_ns, action)
        };
        let injections = match armed.as_mut() {
            Some(fault) => fault.read_injections()?,
            None => None,
        };
        let actor = Actor::start(&plan.target, action, deadline_ns)?;
        tracing::info!("fault armed: {} until CLOCK_MONOTONIC ns={deadline_ns}", plan.fault);
        let stopped = tokio::select! {
            () = sleep_until(started + plan.duration) => StopReason::Deadline,
            reason = signals.next() => reason,
        };
        let mut packets = Vec::new();
        if let Some(fault) = armed.as_mut() {
            fault.disarm()?;
            packets = crate::run::read_counters(fault, &plan.directions(), None)?;
        }
        let outcome = actor.finish();
        let hits = injections.map(|reader| crate::report::Hits::of(reader.finish()));
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
                print_severed(&outcome.events);
            }
        }
        Ok(ExitCode::from(stopped.exit_code()))
    })
}

/// The connections `net sever` severed, one line each (the first 50), after its text summary.
fn print_severed(events: &[ProcEvent]) {
    const LISTED: usize = 50;
    let mut severed = 0;
    for event in events {
        if let ProcEvent::Sever { how, local, remote, state, pid, comm, .. } = event {
            severed += 1;
            if severed <= LISTED {
                let owner = pid.map(|p| format!(", pid {p} {}", comm.as_deref().unwrap_or(""))).unwrap_or_default();
                println!("  {how} {local} -> {remote} ({state}{owner})");
            }
        }
    }
    if severed > LISTED {
        println!("  ... and {} more (--output json lists every one)", severed - LISTED);
    }
}

/// One tick of a periodic kill: returns how many processes it signalled.
fn kill_once(target: &Target, kill: &PeriodicKill, events: &mut Vec<ProcEvent>) -> u64 {
    let dir = &target.dir;
    let members = pick::members(dir);
    let at_ns = sys::monotonic_now_ns();
    let mut nothing = |reason: String| {
        eprintln!("chaos: proc kill: {reason}");
        events.push(ProcEvent::NoKill { reason, at_ns });
        0
    };
    if members.is_empty() {
        return nothing("no process in the target at this tick".into());
    }
    if kill.pick == Pick::All && members.len() as u64 > kill.max_procs && !kill.i_know {
        return nothing(format!(
            "the target now holds {} processes, more than --max-procs {}: this tick kills nothing (--i-know allows it)",
            members.len(),
            kill.max_procs
        ));
    }
    if kill.pick == Pick::All && kill.signal.number() == libc::SIGKILL && freezer::has_cgroup_kill(dir) {
        let count = members.len();
        match freezer::kill_all(dir) {
            Ok(()) => {
                eprintln!("chaos: proc kill: cgroup.kill took down {count} processes");
                events.push(ProcEvent::KillAll { processes: count, at_ns });
                return count as u64;
            }
            Err(err) => eprintln!("chaos: proc kill: cgroup.kill failed ({err}); signalling each process instead"),
        }
    }
    let mut killed = 0;
    for member in pick::choose(kill.pick, members) {
        // Signal only the process that was chosen: a pid reused since the listing has another
        // start time.
        if !crate::ledger::process_alive(member.pid, member.start) {
            continue;
        }
        // SAFETY: kill(2) on a process of the target cgroup.
        if unsafe { libc::kill(member.pid as i32, kill.signal.number()) } == 0 {
            killed += 1;
            eprintln!("chaos: proc kill: {} to pid {} ({})", kill.signal, member.pid, member.comm);
            events.push(ProcEvent::Kill {
                pid: member.pid,
                comm: member.comm,
                signal: kill.signal.name(),
                at_ns: sys::monotonic_now_ns(),
            });
        }
    }
    killed
}
