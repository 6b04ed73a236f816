//! `chaos proc ...`: crash a target's processes, or freeze the whole target.
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{TargetArgs, net::RunArgs};
use crate::{
    features::Prober,
    plan::{FaultContext, PlanFault as _},
    proc_fault::{
        kill::ProcKillOptions,
        pause::ProcPauseOptions,
        periodic::{self, Action},
    },
    report::OutputFormat,
    run, spec,
    target::{self, CgroupFs},
};

#[derive(Debug, Subcommand)]
pub enum ProcCommand {
    /// Kill the target's processes on a schedule, or at an exact syscall (a crash point).
    #[command(after_help = "\
Examples:
  chaos proc kill --cgroup /app --every 30s --jitter 5s --for 10m
  chaos proc kill --unit api.service --every 1m --pick oldest --signal TERM --max 3 --for 5m
  chaos proc kill --cgroup /db --on-syscall fsync --after 99 --for 1m
  chaos proc kill --cgroup /db --on-syscall rename --path /var/lib/db --before-effect --for 1m

Periodic (--every PERIOD): at each tick --signal (default KILL) goes to one process of the
target chosen by --pick (random, oldest, newest by start time) or to all of them (`all`: the
cgroup's cgroup.kill where the kernel has it). Each kill is an event of the JSON summary.
Crash point (--on-syscall NAMES): the kernel signals the process that makes the call, at the
exact call the schedule names (--after N, --every N, --max K, --percent P count the target's
matching calls machine-wide). On the raw sys_enter tracepoint the signal is pending from the
call's entry: a SIGKILLed write(2) to a regular file writes nothing, but a call that does not
check for signals (fsync) runs to its end. --before-effect (BPF LSM hooks) also fails the call,
so it never takes effect.")]
    Kill(Box<ProcKillArgs>),
    /// Freeze the whole target (cgroup v2 freezer), for the run or periodically.
    #[command(after_help = "\
Examples:
  chaos proc pause --cgroup /app --for 10s
  chaos proc pause --unit worker.service --every 1m --pause 2s --for 30m

The target is frozen with cgroup.freeze and thawed at the end (deadline or signal). A guard
process thaws it if chaos dies, even by SIGKILL, or is stopped past the time box; `chaos
cleanup` thaws what a dead guard left. A cgroup that holds chaos is refused.")]
    Pause(Box<ProcPauseArgs>),
}

#[derive(Debug, Args)]
pub struct ProcKillArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: ProcKillOptions,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ProcPauseArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: ProcPauseOptions,
    #[command(flatten)]
    run: RunArgs,
}

impl ProcCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        let kernel = Prober::new();
        match self {
            Self::Kill(args) => {
                let ProcKillArgs { target, fault, run } = *args;
                let target = resolve(&target, &run)?;
                let context =
                    FaultContext { target: &target, duration: run.duration, i_know: run.i_know, kernel: &kernel };
                let plan = fault.plan(&context)?;
                let periodic = fault.periodic(run.i_know)?;
                if let Some(periodic) = &periodic {
                    refuse_all_over_cap(periodic, &target)?;
                }
                if run.dry_run {
                    super::print_plan(&plan, output);
                    return Ok(ExitCode::SUCCESS);
                }
                match periodic {
                    Some(periodic) => periodic::run(&plan, Action::Kill(periodic), output),
                    None => run::run_plan(&plan, output),
                }
            }
            Self::Pause(args) => {
                let ProcPauseArgs { target, fault, run } = *args;
                let target = resolve(&target, &run)?;
                let context =
                    FaultContext { target: &target, duration: run.duration, i_know: run.i_know, kernel: &kernel };
                let plan = fault.plan(&context)?;
                if run.dry_run {
                    super::print_plan(&plan, output);
                    return Ok(ExitCode::SUCCESS);
                }
                periodic::run(&plan, Action::Pause(fault.pause_plan()?), output)
            }
        }
    }
}

fn resolve(target: &TargetArgs, run: &RunArgs) -> anyhow::Result<target::Target> {
    spec::check_duration_cap(run.duration, run.i_know).map_err(anyhow::Error::msg)?;
    Ok(CgroupFs::discover()?.resolve(&target.spec(), target::own_cgroup().as_deref())?)
}

/// `--pick all` on a target holding more than `--max-procs` processes needs `--i-know`.
fn refuse_all_over_cap(
    periodic: &crate::proc_fault::kill::PeriodicKill,
    target: &target::Target,
) -> anyhow::Result<()> {
    if periodic.pick != crate::proc_fault::pick::Pick::All || periodic.i_know {
        return Ok(());
    }
    let count = crate::proc_fault::pick::members(&target.dir).len() as u64;
    if count > periodic.max_procs {
        anyhow::bail!(
            "--pick all: {} holds {count} processes, more than --max-procs {}; raise --max-procs or add --i-know if \
             killing all of them at every tick is what you want",
            target.cgroup,
            periodic.max_procs
        );
    }
    Ok(())
}
