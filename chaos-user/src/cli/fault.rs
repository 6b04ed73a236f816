//! What every fault's command line has, written once: whom (`TargetArgs`), what (the family's
//! options, `F`), and for how long (`RunArgs`), and the one pipeline that turns them into a run:
//! cap, target, plan, conflicts with every live run, dry run or register and arm, wait, report.
//! Faults done from userspace (`proc kill --every`, `proc pause`, `net sever`) take the same
//! path up to the registration, then run their actor instead.
use std::{process::ExitCode, time::Duration};

use clap::Args;

use super::TargetArgs;
use crate::{
    experiment::plan::check_one_shot,
    fault::{FaultContext, FaultPlan, PlanFault, limit::LimitPlan, traced::Traced},
    features::Prober,
    hints, ledger,
    os::sys,
    plan::options,
    report::OutputFormat,
    run,
    run_records::{
        FaultRecord, Registration, RunKind, RunRecord, {self},
    },
    targets::{
        CgroupFs, TargetName, {self},
    },
};

/// One fault from the command line: its target, its options and how it runs.
#[derive(Debug, Args)]
pub struct FaultArgs<F: Args> {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The family's options and the shared trace options.
    #[command(flatten)]
    pub fault: Traced<F>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// How long the fault lasts, e.g. 30s, 5m (at most 1h without --i-know).
    #[arg(long = "for", value_name = "DURATION", value_parser = options::parse_duration)]
    pub duration: Duration,
    /// Print what would be attached where, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow durations over the 1h cap, and TC faults on the host's own interfaces.
    #[arg(long)]
    pub i_know: bool,
}

impl<F: Args + PlanFault> FaultArgs<F> {
    pub fn run(&self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        run_fault(&self.target, &self.fault, &self.run, output)
    }
}

/// The pipeline of every one-shot fault.
pub fn run_fault(
    target: &TargetArgs,
    fault: &dyn PlanFault,
    run: &RunArgs,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let kernel = Prober::new();
    options::check_duration_cap(run.duration, run.i_know).map_err(anyhow::Error::msg)?;
    if target.every_pod() {
        return run_on_every_pod(target, fault, run, output, &kernel);
    }
    let target_spec = target.spec();
    let target = CgroupFs::discover()?.resolve(&target_spec, targets::own_cgroup().as_deref())?;
    if fault.uses_ledger() {
        clean_up_after_crashes();
    }
    let context = FaultContext { target: &target, duration: run.duration, i_know: run.i_know, kernel: &kernel };
    let plan = fault.plan(&context)?;
    // The conflict rules of experiments hold across one-shot faults too: a second fault on a
    // hook that does not compose would leave only one of them deciding.
    let hooks = hooks_of(&plan);
    for note in check_one_shot(plan.target.id, plan.fault, &hooks).map_err(anyhow::Error::msg)? {
        eprintln!("chaos: note: {note}");
    }
    if run.dry_run {
        print_plan(&plan, output);
        return Ok(ExitCode::SUCCESS);
    }
    // A limit runs its own way: it watches the target a second before and after, shows its
    // pressure live, and registers its run, so `chaos status` lists it and `chaos stop` ends it.
    if let Some(limit) = plan.userspace.as_deref().and_then(|a| a.as_any()?.downcast_ref::<LimitPlan>()) {
        let mut registration = register(&plan, limit.hooks(&plan.target))?;
        return super::limit::run::run(&plan, limit, output, &mut registration);
    }
    if plan.userspace.is_some() {
        // Registered like every one-shot: `chaos status` lists it, `chaos stop` ends it.
        let mut registration = register(&plan, hooks)?;
        return run::run_userspace_plan(&plan, output, &mut registration);
    }
    if matches!(target_spec, TargetName::Pid(_)) && plan.keys_on_sockets() {
        eprintln!(
            "note: a socket stays in the cgroup it was created in; sockets this process opened \
             before it joined {} are not affected",
            plan.target.cgroup
        );
    }
    if plan.keys_on_sockets() {
        let foreign = hints::foreign_sockets(&plan.target);
        if let Some(note) = hints::foreign_sockets_note(&plan.target, &foreign) {
            eprintln!("chaos: note: {note}");
        }
    }
    let mut registration = register(&plan, hooks)?;
    run::run_plan(&plan, output, &mut registration)
}

/// `--selector ... --all`: the same pipeline with one plan per matching pod, run together.
fn run_on_every_pod(
    target: &TargetArgs,
    fault: &dyn PlanFault,
    run: &RunArgs,
    output: OutputFormat,
    kernel: &Prober,
) -> anyhow::Result<ExitCode> {
    let targets = CgroupFs::discover()?.resolve_every_pod(&target.spec(), targets::own_cgroup().as_deref())?;
    if fault.uses_ledger() {
        clean_up_after_crashes();
    }
    let mut plans = Vec::new();
    for target in &targets {
        let context = FaultContext { target, duration: run.duration, i_know: run.i_know, kernel };
        let plan = fault.plan(&context)?;
        if plan.userspace.is_some() {
            anyhow::bail!(
                "--all: this fault acts from chaos's own process on one target's processes, which cannot yet \
                 be shared between pods: start one chaos per pod with --pick-pod N"
            );
        }
        let hooks = hooks_of(&plan);
        for note in check_one_shot(plan.target.id, plan.fault, &hooks).map_err(anyhow::Error::msg)? {
            eprintln!("chaos: note: {note}");
        }
        plans.push(plan);
    }
    eprintln!(
        "chaos: --all: {} pod(s): {}",
        plans.len(),
        targets.iter().map(|t| t.cgroup.as_str()).collect::<Vec<_>>().join(", ")
    );
    if run.dry_run {
        match output {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&plans)?),
            OutputFormat::Text => plans.iter().for_each(|plan| print_plan(plan, output)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut registrations = plans.iter().map(|p| register(p, hooks_of(p))).collect::<anyhow::Result<Vec<_>>>()?;
    crate::run_all::run_plans(&plans, output, &mut registrations)
}

fn hooks_of(plan: &FaultPlan) -> Vec<(String, String)> {
    plan.programs.iter().map(|p| (p.hook.to_owned(), p.attach.describe())).collect()
}

/// Registers the fault in /run/chaos/runs, so that `chaos status` lists it, `chaos stop --all`
/// ends it and later runs see its hooks. The record goes when the guard drops.
fn register(plan: &FaultPlan, hooks: Vec<(String, String)>) -> anyhow::Result<Registration> {
    let pid = std::process::id();
    let record = RunRecord {
        id: run_records::new_id(),
        pid,
        pid_start: crate::os::process::start_time(pid).unwrap_or(0),
        detached: false,
        starting: false,
        kind: RunKind::OneShot,
        name: plan.fault.to_owned(),
        file: String::new(),
        target: plan.target.cgroup.clone(),
        target_id: plan.target.id,
        faults: vec![FaultRecord { label: plan.fault.to_owned(), hooks, injected: 0, pin_dir: None }],
        ends_ns: sys::monotonic_deadline_ns(plan.duration),
        timeline: String::new(),
        pin_dir: None,
    };
    Registration::register(record).map_err(|e| anyhow::anyhow!("registering the run in {}: {e}", run_records::RUNS_DIR))
}

/// Legacy TC filters of crashed runs are removed before new ones attach.
fn clean_up_after_crashes() {
    for line in ledger::cleanup_stale() {
        eprintln!("chaos: cleanup of an earlier run: {line}");
    }
}

/// `--dry-run`: what would be attached where, with which configuration; nothing is.
fn print_plan(plan: &FaultPlan, output: OutputFormat) {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(plan).expect("plan serializes")),
        OutputFormat::Text => {
            println!(
                "plan: {} ({}) on {} for {}",
                plan.fault,
                plan.summary,
                plan.target.describe(),
                humantime::format_duration(plan.duration),
            );
            for program in &plan.programs {
                println!("  {}", program.describe());
            }
            if let Some(writes) = plan.parameters["writes"].as_array() {
                // A limit: the files, their values now, the values it would write.
                for write in writes {
                    let device = write["device"].as_str().map_or_else(String::new, |d| format!(" ({d})"));
                    let note = write["note"].as_str().map_or_else(String::new, |n| format!("  [{n}]"));
                    println!(
                        "  write {}{device}: now {}, would be {}{note}",
                        write["file"].as_str().unwrap_or("?"),
                        write["now"].as_str().unwrap_or("?"),
                        write["value"].as_str().unwrap_or("?")
                    );
                }
                println!(
                    "  put back at the end (deadline, signal; the guard if chaos dies, `chaos cleanup` if both do), for {}",
                    humantime::format_duration(plan.duration)
                );
                println!("dry run: nothing written");
                return;
            }
            if let Some(companion) = &plan.companion {
                println!("  {}", companion.describe());
            }
            if plan.programs.is_empty() {
                println!(
                    "  nothing to attach: chaos's own process does this (signals, the cgroup freezer, sock_diag), for {}",
                    humantime::format_duration(plan.duration)
                );
                println!("dry run: nothing done");
                return;
            }
            println!(
                "  map FAULT_CONFIG[0] = {{ threshold: {}, flags: {:#x}, net_filters: {:#x}, deadline: now + {} }}",
                plan.config.threshold,
                plan.config.flags,
                plan.config.net_filters,
                humantime::format_duration(plan.duration)
            );
            println!("dry run: nothing attached");
        }
    }
}
