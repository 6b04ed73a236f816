//! A run's faults while they are attached: each one's loaded object, its configuration and
//! counters since the last sample, the actor of a process fault, and the status line that shows
//! them beside the checks.
use std::time::Duration;

use chaos_common::{FaultConfig, FaultCounters};

use super::{hypothesis::Hypothesis, plan::ExperimentPlan};
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
