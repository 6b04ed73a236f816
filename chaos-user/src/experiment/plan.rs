//! From an experiment file to what will be done on this machine: the target resolved, each
//! fault planned by its family's own planner, and conflicts with running experiments refused.
//! `chaos run --dry-run` prints this and stops.
use std::time::Duration;

use serde_json::json;

use super::{Experiment, Ramp, source::FileError};
use crate::{
    fault::{FaultContext, FaultPlan},
    features::Prober,
    hints, ledger,
    plan::options::Ppm,
    run_records::{
        Liveness, RunKind, RunRecord, {self},
    },
    targets::{
        CgroupFs, Target, {self},
    },
};

/// An experiment ready to run.
pub struct ExperimentPlan<'e> {
    pub experiment: &'e Experiment,
    pub target: Target,
    /// The control group's replica (no fault attaches to it), when the file has `[control]`.
    pub control: Option<Target>,
    pub faults: Vec<PlannedFault>,
    /// Running experiments this one shares hooks with, and why that is fine.
    pub notes: Vec<String>,
    /// `chaos run --i-know`: the refusals it lifted are lifted again when a followed target
    /// is resolved anew.
    pub i_know: bool,
}

/// One fault of the experiment, planned.
pub struct PlannedFault {
    pub number: usize,
    pub label: String,
    pub command_line: String,
    pub start: Duration,
    pub duration: Duration,
    /// The probability its options ask for, if it has one.
    pub percent: Option<Ppm>,
    /// The ramp with the fault's own final percentage.
    pub ramp: Option<(Ramp, Ppm)>,
    pub plan: FaultPlan,
}

impl PlannedFault {
    /// (hook, place) of each program, the unit of conflict between experiments.
    #[must_use]
    pub fn hooks(&self) -> Vec<(String, String)> {
        self.plan.programs.iter().map(|p| (p.hook.to_owned(), p.attach.describe())).collect()
    }
}

/// Hooks on which two chaos faults compose, and what the composition means. Two faults on the
/// same target and the same hook of any other kind conflict: only one could decide.
pub const COMPOSING_HOOKS: &[(&str, &str)] = &[
    (
        "lsm/",
        "every chaos program on the LSM hook runs until one fails the call, so a call fails if any fault fires, with the errno of the first that does",
    ),
    (
        "lsm_cgroup/",
        "every program the target's cgroups carry on the LSM hook runs, and the call fails if any fault fires, with the errno of the last that does",
    ),
    (
        "cgroup/",
        "every program on the cgroup socket hook runs and the call fails if any rejects it, with the errno set last",
    ),
    (
        "cgroup_skb/",
        "every program on the hook runs and a packet survives only if all of them let it through, so losses multiply",
    ),
    ("tc/", "the programs run one after the other, each on the packets the ones before let through"),
];

/// Whether faults on `hook` compose, and how.
#[must_use]
pub fn composition(hook: &str) -> Option<&'static str> {
    COMPOSING_HOOKS.iter().find(|(prefix, _)| hook.starts_with(prefix)).map(|(_, how)| *how)
}

/// Resolves the target and plans every fault. Errors point at the file.
pub fn plan<'e>(experiment: &'e Experiment, i_know: bool, kernel: &Prober) -> Result<ExperimentPlan<'e>, FileError> {
    let target_error = |message: String| experiment.error_at(&experiment.target_span, message);
    let cgroups = CgroupFs::discover().map_err(|e| target_error(e.to_string()))?;
    let target =
        cgroups.resolve_allowing(&experiment.target, targets::own_cgroup().as_deref(), i_know).map_err(|err| {
            let hint = if err.is_safety_refusal() { "; `chaos run --i-know` overrides this refusal" } else { "" };
            target_error(format!("{err}{hint}"))
        })?;
    let control = match &experiment.steady_state.control {
        None => None,
        Some(control) => {
            let error =
                |message: String| experiment.error_at(&control.target_span, format!("[control] target: {message}"));
            // The control only gets measured, never touched: no refusal applies, but it must
            // exist and be another replica than the target.
            let resolved = cgroups.resolve_allowing(&control.target, None, true).map_err(|e| error(e.to_string()))?;
            if resolved.id == target.id {
                return Err(error(format!(
                    "{} is the target itself: the control must be another replica, with no fault",
                    resolved.describe()
                )));
            }
            Some(resolved)
        }
    };
    if experiment.faults.iter().any(|f| f.options.uses_ledger()) {
        for line in ledger::cleanup_stale() {
            eprintln!("chaos: cleanup of an earlier run: {line}");
        }
    }
    let mut faults = Vec::new();
    for entry in &experiment.faults {
        let context = FaultContext { target: &target, duration: entry.duration, i_know, kernel };
        let plan = entry
            .options
            .plan(&context)
            .map_err(|err| experiment.error_at(&entry.span, format!("fault {}: {err}", entry.label())))?;
        if entry.ramp.is_some() && plan.config.flags & chaos_common::flags::BURST != 0 {
            let span = entry.ramp_span.as_ref().unwrap_or(&entry.span);
            return Err(experiment.error_at(
                span,
                "a ramp changes the loss rate, which a burst model fixes: remove `ramp` or `burst_len`",
            ));
        }
        if experiment.follow && plan.userspace.as_ref().is_some_and(|action| !action.restarts_on_follow()) {
            return Err(experiment.error_at(
                &entry.span,
                format!(
                    "fault {} is done from chaos's own process (a kill, a pause, a limit), which `follow` cannot \
                     move to a restarted target yet: remove `follow`, or use a fault the kernel applies",
                    entry.label()
                ),
            ));
        }
        let percent = entry.options.percent();
        let ramp = entry.ramp.zip(percent);
        faults.push(PlannedFault {
            number: entry.number,
            label: entry.label(),
            command_line: entry.command_line(),
            start: entry.start,
            duration: entry.duration,
            percent,
            ramp,
            plan,
        });
    }
    let mut notes = check_conflicts(experiment, &target, &faults)?;
    if faults.iter().any(|f| f.plan.keys_on_sockets()) {
        notes.extend(hints::foreign_sockets_note(&target, &hints::foreign_sockets(&target)));
    }
    Ok(ExperimentPlan { experiment, target, control, faults, notes, i_know })
}

/// Refuses hooks shared with a running experiment (or within this one) that do not compose;
/// returns a note for each that does.
fn check_conflicts(
    experiment: &Experiment,
    target: &Target,
    faults: &[PlannedFault],
) -> Result<Vec<String>, FileError> {
    let mut notes = Vec::new();
    let running = running_on(target.id);
    for (index, fault) in faults.iter().enumerate() {
        let entry = &experiment.faults[index];
        for (hook, place) in fault.hooks() {
            let mut others: Vec<String> = faults[..index]
                .iter()
                .filter(|f| f.hooks().iter().any(|(h, p)| *h == hook && *p == place))
                .map(|f| format!("fault {} of this experiment", f.label))
                .collect();
            others.extend(running_faults_on(&running, &hook, &place));
            match share_hook(&fault.label, &hook, &place, &others) {
                Ok(note) => notes.extend(note),
                Err(message) => return Err(experiment.error_at(&entry.span, message)),
            }
        }
    }
    notes.sort();
    notes.dedup();
    Ok(notes)
}

/// The live runs (experiments, one-shot faults, the daemon's) on the target with this cgroup id.
#[must_use]
pub fn running_on(target_id: u64) -> Vec<RunRecord> {
    run_records::all().into_iter().filter(|r| r.target_id == target_id && r.liveness() == Liveness::Running).collect()
}

/// The faults of `running` attached to `hook` on `place`, described for an error message.
#[must_use]
pub fn running_faults_on(running: &[RunRecord], hook: &str, place: &str) -> Vec<String> {
    let mut found = Vec::new();
    for record in running {
        for other in &record.faults {
            if other.hooks.iter().any(|(h, p)| h == hook && p == place) {
                let what = match record.kind {
                    RunKind::OneShot => "one-shot fault",
                    RunKind::Daemon => "daemon run",
                    RunKind::Experiment => "running experiment",
                };
                found.push(format!("fault {} of {what} {} (pid {})", other.label, record.id, record.pid));
            }
        }
    }
    found
}

/// The one rule for a hook already used by `others`: a note when faults on it compose, the
/// refusal when they do not (only one of them could decide).
pub fn share_hook(label: &str, hook: &str, place: &str, others: &[String]) -> Result<Option<String>, String> {
    if others.is_empty() {
        return Ok(None);
    }
    match composition(hook) {
        Some(how) => {
            Ok(Some(format!("{label} shares {hook} on {place} with {}: they compose ({how})", others.join(", "))))
        }
        None => Err(format!(
            "fault {label} would attach to {hook} on {place}, where {} already is; faults on this hook do not \
             compose (only one of them could decide). Stop the other one (`chaos stop ID`) or aim at another hook",
            others.join(", ")
        )),
    }
}

/// The conflict check of a one-shot fault against every live run on its target.
pub fn check_one_shot(target_id: u64, label: &str, hooks: &[(String, String)]) -> Result<Vec<String>, String> {
    let running = running_on(target_id);
    let mut notes = Vec::new();
    for (hook, place) in hooks {
        notes.extend(share_hook(label, hook, place, &running_faults_on(&running, hook, place))?);
    }
    notes.dedup();
    Ok(notes)
}

impl ExperimentPlan<'_> {
    /// The plan as `chaos run --dry-run --output json` prints it.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let experiment = self.experiment;
        let mut plan = json!({
            "name": experiment.name,
            "file": experiment.source.path,
            "target": self.target,
            "duration_s": experiment.duration.as_secs_f64(),
            "faults": self.faults.iter().map(|f| json!({
                "fault": f.number,
                "kind": f.plan.fault,
                "command_line": f.command_line,
                "start_s": f.start.as_secs_f64(),
                "duration_s": f.duration.as_secs_f64(),
                "ramp": f.ramp.map(|(r, to)| json!({ "from": r.from, "to": to, "steps": r.steps })),
                "plan": f.plan,
                "config": config_json(&f.plan),
            })).collect::<Vec<_>>(),
            "steady_state": {
                "before_s": experiment.steady_state.before.as_secs_f64(),
                "after_s": experiment.steady_state.after.as_secs_f64(),
                "checks": experiment.steady_state.checks.iter().map(|c| json!({
                    "name": c.name,
                    "what": c.kind.to_string(),
                    "interval_s": c.interval.as_secs_f64(),
                    "timeout_s": c.timeout.as_secs_f64(),
                    "pass_rate": c.pass_rate,
                })).collect::<Vec<_>>(),
            },
            "abort": {
                "on_violation": experiment.abort.on_violation,
                "consecutive_failures": experiment.abort.consecutive_failures,
            },
            "notes": self.notes,
        });
        // Only with a control group, so plans without one print as before.
        if let (Some(control), Some(spec)) = (&self.control, &experiment.steady_state.control) {
            plan["control"] = json!({ "target": control, "confidence": spec.confidence });
        }
        if experiment.follow {
            plan["follow"] = json!(true);
        }
        plan
    }

    /// The plan for people.
    #[must_use]
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let experiment = self.experiment;
        let steady = &experiment.steady_state;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "experiment \"{}\" on {} for {}",
            experiment.name,
            self.target.describe(),
            humantime::format_duration(experiment.duration)
        );
        if experiment.follow {
            let _ = writeln!(out, "  follow: a restart of the target re-attaches the faults to its new cgroup");
        }
        if !steady.checks.is_empty() {
            let _ = writeln!(
                out,
                "  steady state: {} check(s), {} before the faults (baseline), {} after",
                steady.checks.len(),
                humantime::format_duration(steady.before),
                humantime::format_duration(steady.after)
            );
            for check in &steady.checks {
                let _ = writeln!(
                    out,
                    "    check \"{}\": {} every {} (timeout {}), must pass {} of the time",
                    check.name,
                    check.kind,
                    humantime::format_duration(check.interval),
                    humantime::format_duration(check.timeout),
                    check.pass_rate
                );
                if let Some(control) = &check.control {
                    let tolerances: Vec<String> = check.max_difference.iter().map(ToString::to_string).collect();
                    let _ = writeln!(out, "      control: {control}, worse by at most {}", tolerances.join(", "));
                }
            }
        }
        if let (Some(control), Some(spec)) = (&self.control, &steady.control) {
            let _ = writeln!(
                out,
                "  control group: {} (no fault), compared at confidence {}",
                control.describe(),
                spec.confidence
            );
        }
        for fault in &self.faults {
            let _ = writeln!(
                out,
                "  fault {} from +{} for {}: {}",
                fault.label,
                humantime::format_duration(fault.start),
                humantime::format_duration(fault.duration),
                fault.plan.summary
            );
            let _ = writeln!(out, "    same as: chaos {}", fault.command_line);
            if let Some((ramp, to)) = fault.ramp {
                let _ = writeln!(out, "    ramp: {} to {} in {} steps", ramp.from, to, ramp.steps);
            }
            for program in &fault.plan.programs {
                let _ = writeln!(out, "    {}", program.describe());
            }
            if let Some(companion) = &fault.plan.companion {
                let _ = writeln!(out, "    {}", companion.describe());
            }
            let _ = writeln!(out, "    map FAULT_CONFIG[0] = {}", config_json(&fault.plan));
            let maps = serde_json::to_string(&fault.plan.maps).unwrap_or_default();
            if maps != "{}" {
                let _ = writeln!(out, "    filter maps: {maps}");
            }
        }
        let abort = experiment.abort;
        let _ = writeln!(
            out,
            "  abort: {}{}",
            if abort.on_violation {
                "when a check fails more often than its pass rate allows"
            } else {
                "not on violations"
            },
            abort
                .consecutive_failures
                .map_or_else(String::new, |n| format!(", or when a check fails {n} times in a row"))
        );
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

fn config_json(plan: &FaultPlan) -> serde_json::Value {
    json!({
        "threshold": plan.config.threshold,
        "flags": plan.config.flags,
        "net_filters": plan.config.net_filters,
        "protocol": plan.config.protocol,
        "deadline": "armed at the fault's start + its duration",
    })
}

#[cfg(test)]
mod tests {
    use super::composition;

    #[test]
    fn packet_and_syscall_hooks_compose_and_others_do_not() {
        assert!(composition("cgroup_skb/egress").is_some_and(|how| how.contains("losses multiply")));
        assert!(composition("tc/ingress").is_some());
        assert!(composition("lsm/file_open").is_some_and(|how| how.contains("first")));
        assert!(composition("cgroup/connect4").is_some());
        // A departure time has one writer: two delays (or a delay and a rate) on one
        // interface would not add up, so they conflict.
        assert!(composition("tc-edt/egress").is_none());
        assert!(composition("raw_tracepoint/sys_enter").is_none());
    }
}
