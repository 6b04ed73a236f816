//! `chaos net ...`: packet faults for a target cgroup.
use std::{process::ExitCode, time::Duration};

use clap::{Args, Subcommand};

use super::TargetArgs;
use crate::{
    features, ledger,
    plan::{FaultContext, PlanFault},
    report::OutputFormat,
    run,
    spec::{
        self,
        net::{CorruptOptions, DelayOptions, DropOptions, DuplicateOptions, PartitionOptions, RateOptions},
    },
    target::{self, CgroupFs, TargetSpec},
};

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Drop a share of the target's packets, silently, as a lossy network would.
    #[command(after_help = concat!("\
Examples:
  chaos net drop --cgroup /system.slice/api.service --percent 20 --for 30s
  chaos net drop --container 3f2a --percent 5 --burst-len 4 --for 5m
  chaos net drop --pid 4242 --percent 30 --protocol udp --remote-port 53 --for 1m

The sender sees no error: dropped packets are simply lost (egress) or never delivered
(ingress). TCP recovers by sending again; UDP loses the datagram. With --burst-len, losses
come in bursts of that many packets on average at the same overall rate (Gilbert model).
The fault ends at its deadline even if chaos itself is stopped or killed.

", "Filters (all optional, all must match): --protocol tcp|udp|icmp, --remote CIDR (repeatable,
IPv4 or IPv6), --remote-port and --local-port (80, 8000-8100, 80,443)."))]
    Drop(NetDropArgs),
    /// Flip a random bit in the payload of a share of the target's TCP and UDP packets.
    #[command(after_help = "\
Examples:
  chaos net corrupt --container 3f2a --percent 1 --for 1m
  chaos net corrupt --cgroup /app --percent 5 --fix-checksum --protocol tcp --for 30s

Runs as TC programs on the interfaces of the target's network namespace (the target must have
one of its own, or use --iface with --i-know). Without --fix-checksum the L4 checksum is left
as it was: a receiver that verifies it drops the packet, like a bit error on the wire. (Where
the sending interface computes checksums later, in hardware or in software after TC, the
checksum covers the corruption.) With --fix-checksum the corruption reaches the application.
Outgoing packets of other cgroups sharing the namespace are not touched; incoming packets have
no owner yet, so all of the namespace's are candidates.")]
    Corrupt(NetCorruptArgs),
    /// Send a share of the target's packets twice.
    #[command(after_help = "\
Examples:
  chaos net duplicate --container 3f2a --percent 10 --for 1m --direction egress

Runs as TC programs on the interfaces of the target's network namespace (see `net corrupt`).")]
    Duplicate(NetDuplicateArgs),
    /// Cut the target off from some peers: every packet to or from them is dropped.
    #[command(after_help = "\
Examples:
  chaos net partition --cgroup /app --to 10.0.3.0/24 --to fd00:3::/64 --for 2m

TCP connections to the peers time out; everyone else stays reachable.")]
    Partition(NetPartitionArgs),
    /// Hold the target's outgoing packets for a while (earliest departure time, enforced by fq).
    #[command(after_help = "\
Examples:
  chaos net delay --container 3f2a --by 100ms --for 1m
  chaos net delay --cgroup /app --by 100ms --jitter 20ms --distribution normal --remote 10.0.3.0/24 --for 5m

A TC egress program on the interfaces of the target's network namespace writes each matching
packet's departure time; the fq qdisc holds it until then. If an interface's root qdisc is not
fq, chaos installs fq and puts the previous qdisc back afterwards (after a crash: `chaos
cleanup` or the next run). fq releases a flow's packets in order, so with jitter a packet never
leaves before the one sent ahead of it. Needs the fq qdisc (`chaos doctor`).")]
    Delay(NetDelayArgs),
    /// Limit the target's outgoing rate (earliest departure time, enforced by fq).
    #[command(after_help = "\
Examples:
  chaos net rate --container 3f2a --limit 1mbit --for 2m

Matching packets leave one after another at the given rate, all flows together; fq holds them
(and drops what overflows its queues). See `net delay` for where the programs go.")]
    Rate(NetRateArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// How long the fault lasts, e.g. 30s, 5m (at most 1h without --i-know).
    #[arg(long = "for", value_name = "DURATION", value_parser = spec::parse_duration)]
    pub duration: Duration,
    /// Print what would be attached where, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow durations over the 1h cap, and TC faults on the host's own interfaces.
    #[arg(long)]
    pub i_know: bool,
}

#[derive(Debug, Args)]
pub struct NetDropArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: DropOptions,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetCorruptArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: CorruptOptions,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetDuplicateArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: DuplicateOptions,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetPartitionArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: PartitionOptions,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetDelayArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: DelayOptions,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetRateArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    fault: RateOptions,
    #[command(flatten)]
    run: RunArgs,
}

impl NetCommand {
    /// The three parts every network fault has: whom, what, and for how long.
    fn parts(&self) -> (&TargetArgs, &dyn PlanFault, &RunArgs) {
        match self {
            Self::Drop(a) => (&a.target, &a.fault, &a.run),
            Self::Corrupt(a) => (&a.target, &a.fault, &a.run),
            Self::Duplicate(a) => (&a.target, &a.fault, &a.run),
            Self::Partition(a) => (&a.target, &a.fault, &a.run),
            Self::Delay(a) => (&a.target, &a.fault, &a.run),
            Self::Rate(a) => (&a.target, &a.fault, &a.run),
        }
    }

    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        let kernel = features::Prober::new();
        let (target_args, fault, run_args) = self.parts();
        spec::check_duration_cap(run_args.duration, run_args.i_know).map_err(anyhow::Error::msg)?;
        let target_spec = target_args.spec();
        let target = CgroupFs::discover()?.resolve(&target_spec, target::own_cgroup().as_deref())?;
        if fault.uses_ledger() {
            clean_up_after_crashes();
        }
        let context =
            FaultContext { target: &target, duration: run_args.duration, i_know: run_args.i_know, kernel: &kernel };
        let plan = fault.plan(&context)?;
        if run_args.dry_run {
            super::print_plan(&plan, output);
            return Ok(ExitCode::SUCCESS);
        }
        if matches!(target_spec, TargetSpec::Pid(_)) {
            eprintln!(
                "note: a socket stays in the cgroup it was created in; sockets this process opened \
                 before it joined {} are not affected",
                plan.target.cgroup
            );
        }
        run::run_plan(&plan, output)
    }
}

/// Legacy TC filters of crashed runs are removed before new ones attach.
fn clean_up_after_crashes() {
    for line in ledger::cleanup_stale() {
        eprintln!("chaos: cleanup of an earlier run: {line}");
    }
}
