//! The runner of the userspace `proc` actions: periodic kills and pauses. Neither needs an eBPF
//! program (a signal and a write to `cgroup.freeze` are the kernel's own mechanisms), so this
//! runner replaces the attach-and-watch of the other families: it waits for each tick of the
//! schedule, acts, records a timeline event, and ends at the time box or a stop signal with
//! nothing left behind (a paused target is thawed; the guard and a ledger record cover chaos's
//! own death, see pause.rs).
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use serde::Serialize;
use tokio::time::{Instant, sleep_until};

use super::{
    freezer,
    kill::PeriodicKill,
    pause::{PausePlan, Paused},
    pick::{self, Pick},
    ticker::Ticker,
};
use crate::{
    plan::FaultPlan,
    report::{FaultReport, OutputFormat},
    run::{DirectionCounters, StopReason, StopSignals},
    sys,
};

/// One thing a `proc` action did, for the timeline and the JSON summary.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ProcEvent {
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
    /// A tick found the target empty (between a crash and its restart).
    NoProcess {
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
}

#[derive(Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    report: &'a FaultReport<'a>,
    events: &'a [ProcEvent],
}

/// What the runner does at each tick.
pub enum Action {
    Kill(PeriodicKill),
    Pause(PausePlan),
}

/// Runs a periodic `proc` action for `plan.duration`, then reports.
pub fn run(plan: &FaultPlan, action: Action, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = StopSignals::install().context("installing signal handlers")?;
        let start_ns = sys::monotonic_now_ns();
        let deadline_ns = start_ns.saturating_add(u64::try_from(plan.duration.as_nanos()).unwrap_or(u64::MAX));
        let started = Instant::now();
        let deadline = started + plan.duration;
        let mut events = Vec::new();
        let (mut ticks, mut acted) = (0u64, 0u64);
        let stopped = match action {
            Action::Kill(kill) => {
                tracing::info!("fault armed: periodic kills until CLOCK_MONOTONIC ns={deadline_ns}");
                let mut ticker = Ticker::new(kill.every, kill.jitter, kill.max, start_ns);
                loop {
                    let Some(due_ns) = ticker.next_due_ns().filter(|&due| due < deadline_ns) else {
                        break tokio::select! {
                            () = sleep_until(deadline) => StopReason::Deadline,
                            reason = signals.next() => reason,
                        };
                    };
                    let due = started + Duration::from_nanos(due_ns.saturating_sub(start_ns));
                    tokio::select! {
                        () = sleep_until(due) => {}
                        reason = signals.next() => break reason,
                    }
                    ticker.take(sys::monotonic_now_ns());
                    ticks += 1;
                    let hit = kill_once(plan, &kill, &mut events);
                    acted += hit;
                }
            }
            Action::Pause(pause) => {
                let mut paused = Paused::start(plan, &pause, deadline_ns)?;
                tracing::info!("fault armed: pauses until CLOCK_MONOTONIC ns={deadline_ns}, guard started");
                let reason = paused.run(&mut signals, started, start_ns, deadline_ns, &mut events).await;
                ticks = paused.freezes();
                acted = paused.freezes();
                reason
            }
        };
        let elapsed = started.elapsed();
        let counters = vec![DirectionCounters {
            direction: plan.counter_label.unwrap_or("ticks"),
            seen: ticks,
            matched: ticks,
            injected: acted,
        }];
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
        match output {
            OutputFormat::Json => {
                println!("{}", serde_json::to_string_pretty(&Summary { report: &report, events: &events })?);
            }
            OutputFormat::Text => print!("{}", report.render(output, plan.injected_word)),
        }
        Ok(ExitCode::from(stopped.exit_code()))
    })
}

/// One tick of a periodic kill: returns how many processes it signalled.
fn kill_once(plan: &FaultPlan, kill: &PeriodicKill, events: &mut Vec<ProcEvent>) -> u64 {
    let dir = &plan.target.dir;
    let members = pick::members(dir);
    let at_ns = sys::monotonic_now_ns();
    if members.is_empty() {
        events.push(ProcEvent::NoProcess { at_ns });
        eprintln!("chaos: proc kill: no process in the target at this tick");
        return 0;
    }
    if kill.pick == Pick::All && members.len() as u64 > kill.max_procs && !kill.i_know {
        eprintln!(
            "chaos: proc kill: the target now holds {} processes, more than --max-procs {}: this tick kills nothing \
             (add --i-know to allow it)",
            members.len(),
            kill.max_procs
        );
        events.push(ProcEvent::NoProcess { at_ns });
        return 0;
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
