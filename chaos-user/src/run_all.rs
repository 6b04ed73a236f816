//! Runs one fault on several targets at once (`--selector ... --all`: every matching pod): each
//! target gets its own copy of the fault, loaded, filled and armed with its own kernel deadline
//! as [`run::arm`] does for one, so the gate in the kernel stays the one every fault uses (one
//! target per object). A target that goes away ends its own copy ("target gone"); the others run
//! on. The report has one entry per target.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use crate::{
    engine::{LoadedFault, trace::InjectionReader},
    fault::FaultPlan,
    live::LiveLine,
    os::sys,
    report::{DirectionCounters, FaultReport, Hits, OutputFormat, StopReason},
    run::{StopSignals, arm, read_counters},
    run_records::Registration,
};

/// One target's copy of the fault while it runs, and its outcome once it ended.
struct Copy<'p> {
    plan: &'p FaultPlan,
    fault: Option<LoadedFault>,
    /// The copy's injection records, when the fault is traced.
    injections: Option<InjectionReader>,
    ended: Option<(StopReason, Duration, Vec<DirectionCounters>)>,
    hits: Option<Hits>,
}

/// Arms `plans` (one per target, all of one fault), waits for their deadline or a stop signal
/// while showing their counters, detaches each and prints one report per target. The exit
/// status is the gravest of theirs (a signal, then a target gone, then 0).
pub(crate) fn run_plans(
    plans: &[FaultPlan],
    output: OutputFormat,
    registrations: &mut [Registration],
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut signals = StopSignals::install().context("installing signal handlers")?;
        let _ = sys::raise_resource_limits();
        let started = Instant::now();
        let mut copies = Vec::new();
        let mut last_deadline_ns = 0;
        // An error drops the copies armed so far: their fd-owned links go with them.
        for plan in plans {
            let (mut fault, deadline_ns) = arm(plan, Some(plan.duration))?;
            let injections = fault.read_injections()?;
            tracing::info!("armed on {}: kernel deadline CLOCK_MONOTONIC ns={deadline_ns}", plan.target.cgroup);
            last_deadline_ns = last_deadline_ns.max(deadline_ns);
            copies.push(Copy { plan, fault: Some(fault), injections, ended: None, hits: None });
        }
        tracing::info!("fault armed on {} targets", copies.len());
        let deadline =
            Instant::now() + Duration::from_nanos(last_deadline_ns.saturating_sub(sys::monotonic_now_ns()));
        let line = LiveLine::on_stderr();
        // Targets are looked at every POLL; the status line keeps its own pace (slower in a log).
        let mut next_show = Instant::now();
        let mut ticks = interval(crate::targets::watch::POLL);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let stop = loop {
            tokio::select! {
                () = sleep_until(deadline) => break StopReason::Deadline,
                reason = signals.next() => break reason,
                _ = ticks.tick() => {
                    for copy in &mut copies {
                        let target = &copy.plan.target;
                        if copy.fault.is_some() && !crate::targets::watch::is_present(&target.dir, target.id) {
                            // Detached first: the line says it is.
                            copy.end(StopReason::TargetGone, started.elapsed());
                            line.finish();
                            eprintln!("chaos: target gone: {} was removed; its copy of the fault is detached", target.cgroup);
                        }
                    }
                    if copies.iter().all(|c| c.fault.is_none()) {
                        break StopReason::TargetGone;
                    }
                    if Instant::now() >= next_show {
                        next_show += line.period();
                        show(line, &copies, registrations, deadline.saturating_duration_since(Instant::now()));
                    }
                }
            }
        };
        line.finish();
        let mut exit = 0;
        for copy in &mut copies {
            copy.end(stop, started.elapsed());
        }
        let mut reports = Vec::new();
        for copy in &mut copies {
            let Some((stopped, elapsed, counters)) = copy.ended.clone() else { continue };
            exit = exit.max(stopped.exit_code());
            let plan = copy.plan;
            reports.push((
                plan.report(elapsed, stopped, counters, copy.hits.take()),
                plan.injected_word,
            ));
        }
        match output {
            OutputFormat::Json => {
                let all: Vec<&FaultReport<'_>> = reports.iter().map(|(r, _)| r).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
            OutputFormat::Text => {
                for (report, word) in &reports {
                    print!("{}", report.render(output, word));
                }
            }
        }
        Ok(ExitCode::from(exit))
    })
}

impl Copy<'_> {
    /// Disarms and detaches this copy (once), keeping its counters for the report.
    fn end(&mut self, why: StopReason, elapsed: Duration) {
        let Some(mut fault) = self.fault.take() else { return };
        let _ = fault.disarm();
        self.hits = self.injections.take().map(|reader| Hits::of(reader.finish()));
        let counters = read_counters(&fault, &self.plan.directions(), self.plan.counter_label).unwrap_or_default();
        for problem in fault.detach_tc() {
            eprintln!("chaos: warning: {problem}; run `chaos cleanup`");
        }
        drop(fault);
        self.ended = Some((why, elapsed, counters));
    }
}

/// Each target's injections on the status line and in its run record.
fn show(line: LiveLine, copies: &[Copy<'_>], registrations: &mut [Registration], left: Duration) {
    let mut parts = Vec::new();
    for (copy, registration) in copies.iter().zip(registrations) {
        let Some(fault) = &copy.fault else { continue };
        let Ok(counters) = read_counters(fault, &copy.plan.directions(), copy.plan.counter_label) else { continue };
        let injected: u64 = counters.iter().map(|c| c.injected).sum();
        registration.update_counts(&[injected]);
        parts.push(format!("{} {injected} {}", copy.plan.target.cgroup, copy.plan.injected_word));
    }
    if let Some(copy) = copies.first() {
        line.show(&format!("{}: {} | {}s left", copy.plan.fault, parts.join(" | "), left.as_secs()));
    }
}
