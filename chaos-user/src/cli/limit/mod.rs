//! `chaos limit ...`: starve a target of CPU, memory, disk I/O or processes through its own
//! cgroup v2 controls (docs/limits.md).
pub mod run;

use std::process::ExitCode;

use clap::Subcommand;

use super::fault::FaultArgs;
use crate::{
    fault::limit::{cpu::LimitCpuOptions, io::LimitIoOptions, memory::LimitMemoryOptions, pids::LimitPidsOptions},
    report::OutputFormat,
};

/// What every `limit` subcommand's help ends with.
macro_rules! common_help {
    () => {
        "The previous value of every file chaos writes (a limit systemd or kubelet set included) goes
back at the deadline, on SIGINT/SIGTERM/SIGHUP, within a second of a SIGKILL of chaos (a guard
process), and through `chaos cleanup` or the daemon's start; a value someone else changed during
the fault is left as they set it, and the summary says so. There is no eBPF program: the time
box is chaos's timer, backed by the guard. The controller must be available to the target (its
parent's cgroup.subtree_control lists it): chaos never enables one itself. It starves; it does
not load (no CPU is burned: load for autoscaling tests is another tool's job)."
    };
}

#[derive(Debug, Subcommand)]
pub enum LimitCommand {
    /// At most a share of CPU time (cpu.max): the target's threads are throttled beyond it.
    #[command(after_help = concat!(
        "Examples:
  chaos limit cpu --cgroup /app --to 25% --for 5m          a quarter of one CPU
  chaos limit cpu --unit api.service --to 1.5 --for 10m   one and a half CPUs
  chaos limit cpu --pod shop/cart-0 --to 250m --for 2m --dry-run

cpu.max keeps the target's period (100 ms by default): a target at 25 % runs 25 ms of every
100 ms and waits the rest, as under a Kubernetes CPU limit. Evidence: cpu.stat (CPU used,
throttled periods and time) and cpu.pressure, before, during and after.

",
        common_help!()
    ))]
    Cpu(Box<FaultArgs<LimitCpuOptions>>),
    /// memory.high (reclaim and throttling), memory.max, or an OOM kill inside the target now.
    #[command(after_help = concat!(
        "Examples:
  chaos limit memory --cgroup /app --high 100M --for 2m       reclaimed and slowed above 100 MiB
  chaos limit memory --unit db.service --high 50% --for 5m    half its memory.max (or usage)
  chaos limit memory --cgroup /app --oom --for 30s            the kernel OOM-kills inside it now

Sizes use the kernel's notation (K, M, G: powers of 1024). A percentage is of the target's own
memory.max, or of its current usage when it has none: never of the node. Evidence:
memory.events (high, max, oom_kill), memory.current and memory.pressure.

",
        common_help!()
    ))]
    Memory(Box<FaultArgs<LimitMemoryOptions>>),
    /// Disk reads and writes held to a rate on one disk (io.max): only the threads doing I/O wait.
    #[command(after_help = concat!(
        "Examples:
  chaos limit io --cgroup /db --device auto --path /var/lib/db --write-iops 20 --for 1m
  chaos limit io --unit backup.service --device /dev/nvme0n1 --read-bps 10M --for 10m

Throttled: the target's direct I/O and the writeback of its own dirty pages on that disk. Not
throttled: what kernel threads write for it, such as the filesystem journal (ext4's jbd2).
Evidence: io.stat of the disk and io.pressure.

",
        common_help!()
    ))]
    Io(Box<FaultArgs<LimitIoOptions>>),
    /// At most N tasks (pids.max): fork and clone fail with EAGAIN beyond it.
    #[command(after_help = concat!(
        "Examples:
  chaos limit pids --cgroup /app --max 50 --for 1m

The tasks the target has keep running; a fork or clone past the limit fails with EAGAIN.
Evidence: pids.current and pids.events (max: forks refused).

",
        common_help!()
    ))]
    Pids(Box<FaultArgs<LimitPidsOptions>>),
}

impl LimitCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            Self::Cpu(args) => args.run(output),
            Self::Memory(args) => args.run(output),
            Self::Io(args) => args.run(output),
            Self::Pids(args) => args.run(output),
        }
    }
}
