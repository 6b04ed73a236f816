//! `follow = true`: a container or pod that its runtime restarts comes back under its name in a
//! new cgroup, and the run's faults follow it there instead of the run ending "target gone".
//!
//! While the target is away, each fault keeps its state (armed or not, kernel deadline, ramp
//! step) on its old object, so the schedule runs on unchanged. Every [`POLL`] the name is asked
//! of the runtimes again; once it names a live cgroup other than the old one, each fault still
//! attached is planned for the new cgroup by its family's own planner, attached inert, and given
//! the configuration it had: the same kernel deadline (so exactly its remaining time) and the
//! same probability. Its counters carry on from the old object's totals. A fault done from
//! chaos's own process that can restart (`net sever`) is finished on the old cgroup and started
//! again on the new one, until the same deadline; what it did before is kept.
use std::time::Duration;

use chaos_common::FaultConfig;
use tokio::time::Instant;

use super::{armed::Loaded, events::Reattached, plan::ExperimentPlan};
use crate::{
    fault::FaultContext,
    features::Prober,
    run::arm,
    targets::{self, CgroupFs, Target},
};

/// How often a followed target's name is resolved again while it is away.
pub const POLL: Duration = Duration::from_millis(200);

/// A followed target while it is away: which cgroup it was, and since when.
pub struct Away {
    pub old: Target,
    pub since: Instant,
}

/// The experiment's target name resolved again, when it now names a live cgroup other than
/// `old`. None while the runtime has nothing running under that name (or cannot be asked).
#[must_use]
pub fn resolve_again(plan: &ExperimentPlan<'_>, old: &Target) -> Option<Target> {
    let cgroups = CgroupFs::discover().ok()?;
    let name = &plan.experiment.target;
    match cgroups.resolve_allowing(name, targets::own_cgroup().as_deref(), plan.i_know) {
        Ok(found) if found.id != old.id && crate::targets::watch::is_present(&found.dir, found.id) => Some(found),
        Ok(_) => None,
        Err(err) => {
            tracing::debug!("following {}: not back yet: {err}", old.named_as);
            None
        }
    }
}

/// Moves every fault still attached onto `target`; returns the `reattach` event. An error names
/// the fault that could not be planned or attached there (the caller ends the run).
pub fn reattach_all(
    plan: &ExperimentPlan<'_>,
    loaded: &mut [Option<Loaded>],
    target: &Target,
    away: &Away,
) -> Result<Reattached, String> {
    let kernel = Prober::new();
    let mut moved = Vec::new();
    for (index, slot) in loaded.iter_mut().enumerate() {
        let Some(loaded) = slot.as_mut() else { continue };
        let (entry, fault) = (&plan.experiment.faults[index], &plan.faults[index]);
        let context = FaultContext { target, duration: entry.duration, i_know: plan.i_know, kernel: &kernel };
        let new_plan = entry
            .options
            .plan(&context)
            .map_err(|err| format!("fault {} cannot follow the target to {}: {err}", fault.label, target.cgroup))?;
        let (mut object, _) = arm(&new_plan, None)
            .map_err(|err| format!("fault {} could not attach to {}: {err}", fault.label, target.cgroup))?;
        // The new cgroup's own configuration (its ids), with the deadline and probability the
        // fault had: the same kernel deadline is exactly the time it has left.
        let config = if loaded.armed {
            FaultConfig {
                deadline_ns: loaded.config.deadline_ns,
                threshold: loaded.config.threshold,
                ..new_plan.config
            }
        } else {
            new_plan.config
        };
        if loaded.armed {
            object
                .configure(config)
                .map_err(|err| format!("re-arming fault {} on {}: {err}", fault.label, target.cgroup))?;
        }
        loaded.carried = loaded.total(&fault.plan.directions());
        let mut old = std::mem::replace(&mut loaded.fault, object);
        for problem in old.detach_tc() {
            eprintln!("chaos: warning: {problem}; run `chaos cleanup`");
        }
        drop(old); // its links, on a cgroup that no longer exists
        loaded.config = config;
        if let Some(actor) = loaded.actor.take() {
            // Done from chaos's own process (`net sever`): what it did on the old cgroup is
            // kept, and it starts again on the new one until the same deadline (with programs
            // too, reading the new object's reports).
            loaded.acted_before.absorb(actor.finish());
            let action = new_plan.userspace.as_ref().ok_or_else(|| {
                format!("fault {} acts from userspace but its plan for {} has no action", fault.label, target.cgroup)
            })?;
            let object = (!new_plan.programs.is_empty()).then(|| loaded.fault.object_mut());
            loaded.actor = Some(
                action
                    .start(target, config.deadline_ns, object)
                    .map_err(|err| format!("starting fault {} again on {}: {err}", fault.label, target.cgroup))?,
            );
        }
        loaded.quiet = loaded.quiet.as_ref().and_then(|_| crate::hints::QuietHint::for_plan(&new_plan, Instant::now()));
        moved.push(fault.number);
    }
    Ok(Reattached {
        old_cgroup: away.old.cgroup.clone(),
        old_id: away.old.id,
        new_cgroup: target.cgroup.clone(),
        new_id: target.id,
        gone_s: (away.since.elapsed().as_secs_f64() * 1e3).round() / 1e3,
        faults: moved,
    })
}
