//! A run's faults while they are attached: each one's loaded object, its configuration and
//! counters since the last sample, the actor of a process fault, the reader of a traced fault's
//! injections (and their timeline events), and the status line that shows them beside the checks.
use std::time::Duration;

use chaos_common::{FaultConfig, FaultCounters};

use super::{events::TimelineEvent, hypothesis::Hypothesis, plan::ExperimentPlan, timeline::Timeline};
use crate::{engine::LoadedFault, live::LiveLine};

/// A fault's loaded object, while it is attached.
pub struct Loaded {
    pub fault: LoadedFault,
    pub config: FaultConfig,
    pub armed: bool,
    pub last: FaultCounters,
    /// The userspace action of a `proc` fault, running while it is armed.
    pub actor: Option<crate::fault::proc::periodic::Actor>,
    /// The reader of a traced fault's injection records.
    pub injections: Option<crate::engine::trace::InjectionReader>,
}

/// Writes one `injection` event per record of fault `number`, with the time the program
/// injected (`at_s`, on the timeline's clock).
pub fn injection_events(number: usize, hits: Vec<crate::injections::Injection>, timeline: &mut Timeline) {
    let now_ns = crate::sys::monotonic_now_ns();
    for hit in hits {
        let ago = now_ns.saturating_sub(hit.at_ns) as f64 / 1e9;
        let at_s = ((timeline.elapsed() - ago).max(0.0) * 1000.0).round() / 1000.0;
        timeline.event(&TimelineEvent::Injection { fault: number, at_s, hit });
    }
}

/// A fault's counters over its directions (zero if they cannot be read: the run goes on).
pub fn total_counters(fault: &LoadedFault, directions: &[chaos_common::Direction]) -> FaultCounters {
    fault.total(directions).unwrap_or_default()
}

/// The run's status line on a terminal: time left, check health, injections.
pub fn show_status(
    line: LiveLine,
    left: Duration,
    hypothesis: &Hypothesis<'_>,
    plan: &ExperimentPlan<'_>,
    loaded: &[Option<Loaded>],
) {
    if !line.is_terminal() {
        return;
    }
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
    line.show(&format!("{}s left | {} | {}", left.as_secs(), hypothesis.during().join(", "), faults.join(", ")));
}
