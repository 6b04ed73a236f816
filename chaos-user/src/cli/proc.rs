//! `chaos proc ...`: crash a target's processes, or freeze the whole target.
use std::process::ExitCode;

use clap::Subcommand;

use super::fault::FaultArgs;
use crate::{
    fault::proc::{kill::ProcKillOptions, pause::ProcPauseOptions},
    report::OutputFormat,
};

#[derive(Debug, Subcommand)]
pub(super) enum ProcCommand {
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
    Kill(Box<FaultArgs<ProcKillOptions>>),
    /// Freeze the whole target (cgroup v2 freezer), for the run or periodically.
    #[command(after_help = "\
Examples:
  chaos proc pause --cgroup /app --for 10s
  chaos proc pause --unit worker.service --every 1m --pause 2s --for 30m

The target is frozen with cgroup.freeze and thawed at the end (deadline or signal). A guard
process thaws it if chaos dies, even by SIGKILL, or is stopped past the time box; `chaos
cleanup` thaws what a dead guard left. A cgroup that holds chaos is refused.")]
    Pause(Box<FaultArgs<ProcPauseOptions>>),
}

impl ProcCommand {
    pub(super) fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            Self::Kill(args) => args.run(output),
            Self::Pause(args) => args.run(output),
        }
    }
}
