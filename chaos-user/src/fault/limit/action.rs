//! A limit as the userspace action its plan carries (`plan::action::UserspaceAction`), for
//! experiments and every other run that starts actions generically: the files are set (with
//! their ledger records and the guard) before `start` returns, an [`Actor`] thread samples the
//! target each second until the deadline or `finish`, and then puts every file back. A ramp's
//! step moves the first setting's value; the samples go to the timeline as the run goes (as
//! [`ActionEvent::Family`] records holding [`LimitEvent`]s).
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{LimitPlan, events::LimitEvent, limited::Limited};
use crate::{
    fault::actor::Actor,
    os::sys,
    plan::action::{ActionEvent, ActionOutcome, RunningAction, UserspaceAction},
    targets::Target,
};

/// How often a limit in force samples its target's pressure and counters.
const SAMPLE_EVERY_NS: u64 = 1_000_000_000;

impl UserspaceAction for LimitPlan {
    fn start(
        &self,
        target: &Target,
        deadline_ns: u64,
        _object: Option<&mut aya::Ebpf>,
    ) -> anyhow::Result<Box<dyn RunningAction>> {
        let start_ns = sys::monotonic_now_ns();
        let limited = Arc::new(Mutex::new(Limited::start(target, self, deadline_ns)?));
        let sampled = Arc::clone(&limited);
        let actor = Actor::spawn(move |wait| {
            let lock = || sampled.lock().unwrap_or_else(PoisonError::into_inner);
            let mut due_ns = start_ns;
            loop {
                due_ns = due_ns.saturating_add(SAMPLE_EVERY_NS);
                if due_ns >= deadline_ns || !wait(due_ns) {
                    break;
                }
                lock().sample();
            }
            let mut limited = lock();
            limited.sample();
            limited.restore_all();
            let (ticks, acted) = limited.counts();
            ActionOutcome { ticks, acted, events: family_events(limited.take_events()), notes: Vec::new() }
        })?;
        Ok(Box::new(LimitActor { actor, limited }))
    }

    fn at_ramp_step(&self, ppm: u32) -> Option<Arc<dyn UserspaceAction>> {
        Some(Arc::new(self.clone().starting_at(Some(ppm))))
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// A limit in force, with the thread that samples it.
struct LimitActor {
    actor: Actor,
    limited: Arc<Mutex<Limited>>,
}

impl LimitActor {
    fn limited(&self) -> MutexGuard<'_, Limited> {
        self.limited.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RunningAction for LimitActor {
    /// Stops the sampling thread, which puts every file back.
    fn finish(self: Box<Self>) -> ActionOutcome {
        Box::new(self.actor).finish()
    }

    fn ramp(&self, ppm: u32) -> anyhow::Result<()> {
        self.limited().ramp(ppm)
    }

    fn take_events(&self) -> Vec<ActionEvent> {
        family_events(self.limited().take_events())
    }

    /// The samples that found the limit enforced, as the command line's record counts them.
    fn acted(&self) -> u64 {
        self.limited().counts().1
    }

    fn status(&self) -> Option<String> {
        let limited = self.limited();
        Some(limited.last_window().map_or_else(|| "set".to_owned(), |w| w.line(limited.resource())))
    }
}

fn family_events(events: Vec<LimitEvent>) -> Vec<ActionEvent> {
    events
        .into_iter()
        .map(|event| ActionEvent::Family(serde_json::to_value(event).expect("a limit event serializes")))
        .collect()
}
