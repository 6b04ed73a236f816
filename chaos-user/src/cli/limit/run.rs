//! A limit from the command line: a second of the target as it is (the "before"), the limit set,
//! a sample of its pressure and counters every second (the live line on stderr, the run record
//! for `chaos status`) until the deadline or a stop signal, every file put back, a second of
//! the target as it is again (the "after"), then the summary: what was set and put back (or
//! left to whoever changed it) and the evidence table, or all of it as JSON. It lives here, above
//! `run`, because it shares the runs' stop signals; experiments start the same limit as the
//! plan's userspace action (fault/limit/action.rs).
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, sleep_until};

use crate::{
    fault::{
        FaultPlan,
        limit::{
            LimitPlan,
            events::LimitEvent,
            evidence::{Evidence, Snapshot, Window},
            limited::Limited,
        },
    },
    live::LiveLine,
    os::{cgroup_files::Restore, sys},
    report::{DirectionCounters, FaultReport, OutputFormat, StopReason},
    run::StopSignals,
    run_records::Registration,
};

/// How long the target is watched before the limit is set and after it is lifted: long enough
/// for a CPU share and a rate, short enough not to hold up the command.
const WATCH: Duration = Duration::from_secs(1);

/// How often the target's counters are sampled while the limit holds.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Summary<'a> {
    #[serde(flatten)]
    report: &'a FaultReport<'a>,
    evidence: &'a Evidence,
    events: &'a [LimitEvent],
}

/// Runs `limit` on the plan's target for `plan.duration`, then reports. Returns the exit status.
pub fn run(
    plan: &FaultPlan,
    limit: &LimitPlan,
    output: OutputFormat,
    registration: &mut Registration,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = StopSignals::install().context("installing signal handlers")?.watching(&plan.target);
        let dir = &plan.target.dir;
        let device = limit.device.as_ref().map(|d| d.id.as_str());
        let resource = limit.resource;

        let watched = Snapshot::read(dir, device);
        tokio::select! {
            () = sleep(WATCH) => {}
            reason = signals.next() => {
                eprintln!("chaos: {} stopped before anything was written: nothing changed", plan.fault);
                return Ok(ExitCode::from(reason.exit_code()));
            }
        }
        let before = Window::between(&watched, &Snapshot::read(dir, device));

        // The time box starts once the limit is in force: starting the guard can take a while
        // (hundreds of ms under emulation), and a short limit would be spent before it held.
        let mut limited = Limited::start(&plan.target, limit, sys::monotonic_deadline_ns(plan.duration))?;
        let started = Instant::now();
        let deadline_ns = sys::monotonic_deadline_ns(plan.duration);
        limited.hold_until(deadline_ns);
        let mut events = limited.take_events();
        for event in &events {
            if let Some(line) = event.describe() {
                eprintln!("chaos: {} on {}: {line}", plan.fault, plan.target.cgroup);
            }
        }
        tracing::info!("fault armed: {} until CLOCK_MONOTONIC ns={deadline_ns}", plan.fault);

        let line = LiveLine::on_stderr();
        let shown_every = (line.period().as_secs_f64() / SAMPLE_EVERY.as_secs_f64()).ceil().max(1.0) as u64;
        let mut ticks = interval(SAMPLE_EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks.tick().await;
        let deadline = started + plan.duration;
        let stopped = loop {
            tokio::select! {
                () = sleep_until(deadline) => break StopReason::Deadline,
                reason = signals.next() => break reason,
                _ = ticks.tick() => {
                    let window = limited.sample();
                    let (samples, enforced) = limited.counts();
                    // At the live line's pace (each second on a terminal, every 5 s in a log),
                    // as a fault with programs does: the record is a file rewritten each time.
                    if samples % shown_every == 0 {
                        registration.update_counts(&[enforced]);
                        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                        line.show(&format!("{}: {} | {left}s left", plan.fault, window.line(resource)));
                    }
                    events.extend(limited.take_events());
                }
            }
        };
        line.finish();
        limited.sample();
        let during = limited.during();
        limited.restore_all();
        let elapsed = started.elapsed();
        let (samples, enforced) = limited.counts();
        events.extend(limited.take_events());
        drop(limited); // the guard exits: nothing is left for it to put back

        let watched = Snapshot::read(dir, device);
        sleep(WATCH).await;
        let after = Window::between(&watched, &Snapshot::read(dir, device));
        let evidence = Evidence { before: Some(before), during: Some(during), after: Some(after) };
        let counters = vec![DirectionCounters {
            direction: resource.counter_label(),
            seen: samples,
            matched: samples,
            injected: enforced,
        }];
        let report = plan.report(elapsed, stopped, counters, None);
        match output {
            OutputFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&Summary { report: &report, evidence: &evidence, events: &events })?
            ),
            OutputFormat::Text => print!("{}", text(&report, &evidence, &events, limit)),
        }
        Ok(ExitCode::from(stopped.exit_code()))
    })
}

/// The summary for people: how it ended, each file set and put back (or left to whoever
/// changed it), the OOM kill, and the evidence table.
fn text(report: &FaultReport<'_>, evidence: &Evidence, events: &[LimitEvent], limit: &LimitPlan) -> String {
    use std::fmt::Write as _;
    let ended = match report.stopped {
        StopReason::Deadline => "reached its deadline".to_owned(),
        StopReason::Signal(signal) => format!("stopped early by {}", signal.name()),
        StopReason::Cancelled => "stopped early by the daemon".to_owned(),
        StopReason::TargetGone => "stopped early: target gone (its cgroup was removed)".to_owned(),
    };
    let left_alone = events.iter().any(|e| {
        matches!(
            e,
            LimitEvent::Restore { outcome: Restore::ChangedByOthers { .. }, .. } | LimitEvent::RestoreFailed { .. }
        )
    });
    let mut out = format!(
        "{} ({}) on {} {ended} after {:.1}s of {}; {}.\n",
        report.fault,
        report.summary,
        report.target.describe(),
        report.elapsed.as_secs_f64(),
        humantime::format_duration(report.requested),
        if left_alone { "not every file was put back (below)" } else { "every file put back" }
    );
    for line in events.iter().filter_map(LimitEvent::describe) {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str(&evidence.table(limit.resource));
    out
}
