//! A run's faults while they are attached: each one's loaded object, its configuration and
//! counters since the last sample (and those of the objects it had before a re-attach), the
//! actor of a process fault, its quiet hint, the reader of a traced fault's injections (and
//! their timeline events), and the status line that shows them beside the checks.
use std::time::Duration;

use chaos_common::{FaultConfig, FaultCounters};

use super::{
    events::{FaultCounts, FaultDetached, TimelineEvent},
    hypothesis::Hypothesis,
    plan::{ExperimentPlan, PlannedFault},
    timeline::Timeline,
};
use crate::{
    engine::LoadedFault,
    fault::limit::events::LimitEvent,
    hints::QuietHint,
    live::LiveLine,
    plan::action::{ActionEvent, RunningAction},
    run::read_counters,
};

/// A fault's loaded object, while it is attached.
pub struct Loaded {
    pub fault: LoadedFault,
    pub config: FaultConfig,
    pub armed: bool,
    pub last: FaultCounters,
    /// The userspace action of a fault (`proc`, `net sever`, `limit`), running while it is armed.
    pub actor: Option<Box<dyn RunningAction>>,
    /// What its actors on earlier cgroups of a followed target did (`net sever`).
    pub acted_before: crate::plan::action::ActionOutcome,
    /// The totals of the objects this fault had on earlier cgroups of a followed target.
    pub carried: FaultCounters,
    /// For a packet fault while armed: says once why it sees nothing, after a quiet spell.
    pub quiet: Option<QuietHint>,
    /// The reader of a traced fault's injection records.
    pub injections: Option<crate::engine::trace::InjectionReader>,
}

/// After a re-attach, each moved fault that is traced: the old object's last records to the
/// timeline, and a reader on the new object's ring buffer.
pub fn restart_readers(plan: &ExperimentPlan, loaded: &mut [Option<Loaded>], moved: &[usize], timeline: &mut Timeline) {
    for (fault, slot) in plan.faults.iter().zip(loaded.iter_mut()) {
        let Some(loaded) = slot.as_mut().filter(|_| moved.contains(&fault.number)) else { continue };
        if let Some(old) = loaded.injections.take() {
            injection_events(fault.number, old.finish(), timeline);
            loaded.injections = loaded.fault.read_injections().unwrap_or_else(|err| {
                eprintln!("chaos: warning: fault #{}: injections are no longer traced: {err}", fault.number);
                None
            });
        }
    }
}

/// Starts the userspace action of a fault being armed, if it has one (a limit at a ramp's
/// first step). With programs too (`net sever --after-bytes`), the action reads what they
/// report from the armed object.
pub fn start_actor(
    fault: &PlannedFault,
    loaded: &mut Loaded,
    target: &crate::targets::Target,
    ppm: Option<u32>,
    deadline_ns: u64,
) -> Result<(), String> {
    let Some(action) = &fault.plan.userspace else { return Ok(()) };
    let ramped = ppm.and_then(|ppm| action.at_ramp_step(ppm));
    let action = ramped.as_ref().unwrap_or(action);
    let object = (!fault.plan.programs.is_empty()).then(|| loaded.fault.object_mut());
    loaded.actor =
        Some(action.start(target, deadline_ns, object).map_err(|e| format!("starting fault {}: {e:#}", fault.label))?);
    Ok(())
}

/// A ramp's step for a fault whose actor moves a value (a limit).
pub fn ramp_actor(fault: &PlannedFault, loaded: &Loaded, ppm: u32) -> Result<(), String> {
    match &loaded.actor {
        Some(actor) => actor.ramp(ppm).map_err(|e| format!("ramping fault {}: {e:#}", fault.label)),
        None => Ok(()),
    }
}

/// Writes what a fault's reader and actor have gathered since the last sample: a traced
/// fault's injections, a limit's samples.
pub fn drain_events(number: usize, loaded: Option<&Loaded>, timeline: &mut Timeline) {
    let hits = loaded.and_then(|l| l.injections.as_ref()).map(|r| r.take());
    injection_events(number, hits.unwrap_or_default(), timeline);
    if let Some(actor) = loaded.and_then(|l| l.actor.as_ref()) {
        drain_actor(number, actor.as_ref(), timeline);
    }
}

/// An action's events so far (a limit's samples) to the timeline, at the times they happened.
fn drain_actor(number: usize, actor: &dyn RunningAction, timeline: &mut Timeline) {
    let (limits, rest) = split_limit_events(actor.take_events());
    limit_events(number, limits, timeline);
    for did in rest {
        timeline.event(&TimelineEvent::Proc { fault: number, did });
    }
}

/// A family's own records that are a limit's events, apart from the rest.
pub fn split_limit_events(events: Vec<ActionEvent>) -> (Vec<LimitEvent>, Vec<ActionEvent>) {
    let mut limits = Vec::new();
    let mut rest = Vec::new();
    for event in events {
        match event {
            ActionEvent::Family(value) => match serde_json::from_value::<LimitEvent>(value.clone()) {
                Ok(limit) => limits.push(limit),
                Err(_) => rest.push(ActionEvent::Family(value)),
            },
            other => rest.push(other),
        }
    }
    (limits, rest)
}

/// Writes one `limit` event per thing a limit fault did or saw, at the time it happened.
pub fn limit_events(number: usize, events: Vec<LimitEvent>, timeline: &mut Timeline) {
    let now_ns = crate::os::sys::monotonic_now_ns();
    for did in events {
        let ago = now_ns.saturating_sub(did.at_ns()) as f64 / 1e9;
        let at_s = ((timeline.elapsed() - ago).max(0.0) * 1000.0).round() / 1000.0;
        timeline.event(&TimelineEvent::Limit { fault: number, at_s, did });
    }
}

/// Writes one `injection` event per record of fault `number`, with the time the program
/// injected (`at_s`, on the timeline's clock).
pub fn injection_events(number: usize, hits: Vec<crate::injections::Injection>, timeline: &mut Timeline) {
    let now_ns = crate::os::sys::monotonic_now_ns();
    for hit in hits {
        let ago = now_ns.saturating_sub(hit.at_ns) as f64 / 1e9;
        let at_s = ((timeline.elapsed() - ago).max(0.0) * 1000.0).round() / 1000.0;
        timeline.event(&TimelineEvent::Injection { fault: number, at_s, hit });
    }
}

impl Loaded {
    /// A fault attached inert, not yet armed.
    #[must_use]
    pub fn inert(fault: LoadedFault, config: FaultConfig) -> Self {
        Self {
            fault,
            config,
            armed: false,
            last: FaultCounters::default(),
            actor: None,
            acted_before: crate::plan::action::ActionOutcome::default(),
            carried: FaultCounters::default(),
            quiet: None,
            injections: None,
        }
    }

    /// The fault's counters over its directions, re-attaches included.
    #[must_use]
    pub fn total(&self, directions: &[chaos_common::Direction]) -> FaultCounters {
        let now = total_counters(&self.fault, directions);
        FaultCounters {
            seen: self.carried.seen + now.seen,
            matched: self.carried.matched + now.matched,
            injected: self.carried.injected + now.injected,
        }
    }
}

/// One sample of the run's faults, taken every second.
pub struct Sample {
    /// Per armed fault, since the last sample and in all.
    pub counts: Vec<FaultCounts>,
    /// Injections in all, per fault (0 for those detached), for the run record.
    pub totals: Vec<u64>,
    /// (fault number, hint) for packet faults that have now seen nothing for a while.
    pub hints: Vec<(usize, String)>,
}

/// Reads every fault's counters; for armed packet faults, asks their quiet hint.
pub fn sample(plan: &ExperimentPlan<'_>, loaded: &mut [Option<Loaded>]) -> Sample {
    let mut sample = Sample { counts: Vec::new(), totals: Vec::new(), hints: Vec::new() };
    let now = tokio::time::Instant::now();
    for (fault, loaded) in plan.faults.iter().zip(loaded) {
        let Some(loaded) = loaded else {
            sample.totals.push(0);
            continue;
        };
        let directions = fault.plan.directions();
        let mut total = loaded.total(&directions);
        if let Some(actor) = &loaded.actor {
            // A fault done from chaos's own process counts what its actor did, as its end will.
            total.injected = loaded.acted_before.acted + actor.acted();
        }
        sample.totals.push(total.injected);
        if loaded.armed {
            sample.counts.push(FaultCounts {
                fault: fault.number,
                injected: total.injected.saturating_sub(loaded.last.injected),
                seen: total.seen - loaded.last.seen,
                matched: total.matched - loaded.last.matched,
                injected_total: total.injected,
                seen_total: total.seen,
                matched_total: total.matched,
            });
            // Packet faults have a quiet hint from their arming on.
            if let Some(quiet) = loaded.quiet.as_mut()
                && let Ok(counters) = read_counters(&loaded.fault, &directions, None)
                && let Some(hint) = quiet.check(now, &counters)
            {
                sample.hints.push((fault.number, hint));
            }
        }
        loaded.last = total;
    }
    sample
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
            Some(l) if l.armed => match l.actor.as_ref().and_then(|a| a.status()) {
                Some(status) => format!("{} {status}", f.label),
                None => format!("{} {} {}", f.label, l.last.injected, f.plan.injected_word),
            },
            Some(_) => format!("{} waiting", f.label),
            None => format!("{} done", f.label),
        })
        .collect();
    line.show(&format!("{}s left | {} | {}", left.as_secs(), hypothesis.during().join(", "), faults.join(", ")));
}

/// Disarms and detaches one fault, writing its timeline events: its last injections, what a
/// process fault did, then `detach` with its totals.
pub fn detach(fault: &PlannedFault, mut loaded: Loaded, why: &str, timeline: &mut Timeline) {
    let mut events = Vec::new();
    // Disarmed first, so the reader's last records are all there are.
    let _ = loaded.fault.disarm();
    if let Some(reader) = loaded.injections.take() {
        injection_events(fault.number, reader.finish(), timeline);
    }
    let mut total = loaded.total(&fault.plan.directions());
    if let Some(actor) = loaded.actor.take() {
        drain_actor(fault.number, actor.as_ref(), timeline);
        let mut outcome = std::mem::take(&mut loaded.acted_before);
        outcome.absorb(actor.finish());
        let (limits, rest) = split_limit_events(std::mem::take(&mut outcome.events));
        limit_events(fault.number, limits, timeline);
        events.extend(rest.into_iter().map(|did| TimelineEvent::Proc { fault: fault.number, did }));
        total = FaultCounters { seen: outcome.ticks, matched: outcome.ticks, injected: outcome.acted };
    }
    let problems = loaded.fault.detach_tc();
    drop(loaded);
    for problem in &problems {
        eprintln!("chaos: warning: {problem}; run `chaos cleanup`");
    }
    events.push(TimelineEvent::Detach(FaultDetached {
        fault: fault.number,
        why: why.to_owned(),
        seen: total.seen,
        matched: total.matched,
        injected: total.injected,
        problems: Some(problems),
    }));
    for event in &events {
        timeline.event(event);
    }
}
