//! `chaos net ...`: packet faults for a target cgroup.
use std::{process::ExitCode, time::Duration};

use clap::{Args, Subcommand};

use super::TargetArgs;
use crate::{
    features,
    ledger,
    plan::{
        self,
        net::{NetFaultKind, NetFaultSpec},
    },
    report::OutputFormat,
    run,
    spec::{
        self, DirectionChoice, Ppm,
        net::{self as netspec, BurstModel, Cidr, NetFilters, PortSet, Protocol},
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
pub struct FilterArgs {
    /// Which packets: those the target sends, receives, or both.
    #[arg(long, value_enum, default_value = "both")]
    direction: DirectionChoice,
    /// Only this protocol (icmp covers ICMPv6 too).
    #[arg(long, value_enum, default_value = "any")]
    protocol: Protocol,
    /// Only packets to or from this peer prefix (repeatable).
    #[arg(long, value_name = "CIDR", value_parser = netspec::parse_cidr)]
    remote: Vec<Cidr>,
    /// Only packets to or from these peer ports.
    #[arg(long, value_name = "PORTS", value_parser = netspec::parse_ports)]
    remote_port: Vec<PortSet>,
    /// Only packets on these local ports.
    #[arg(long, value_name = "PORTS", value_parser = netspec::parse_ports)]
    local_port: Vec<PortSet>,
}

impl FilterArgs {
    fn filters(&self) -> NetFilters {
        let merge = |sets: &[PortSet]| {
            let mut all = PortSet::default();
            sets.iter().for_each(|s| all.extend(s));
            all
        };
        NetFilters {
            protocol: self.protocol,
            remote: self.remote.clone(),
            remote_ports: merge(&self.remote_port),
            local_ports: merge(&self.local_port),
        }
    }
}

#[derive(Debug, Args)]
pub struct NetDropArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Share of matching packets to drop, in percent (0 to 100, steps of 0.0001).
    #[arg(long, value_parser = spec::parse_percent)]
    percent: Ppm,
    /// Lose packets in bursts of this many on average (Gilbert model), at the same overall rate.
    #[arg(long, value_name = "PACKETS", value_parser = netspec::parse_burst_len)]
    burst_len: Option<f64>,
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetCorruptArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Share of matching packets to corrupt, in percent.
    #[arg(long, value_parser = spec::parse_percent)]
    percent: Ppm,
    /// Recompute the L4 checksum so the corruption reaches the application.
    #[arg(long)]
    fix_checksum: bool,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    iface: Option<String>,
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetDuplicateArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Share of matching packets to send twice, in percent.
    #[arg(long, value_parser = spec::parse_percent)]
    percent: Ppm,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    iface: Option<String>,
    #[command(flatten)]
    filters: FilterArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct NetPartitionArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The peers to cut off (repeatable): addresses or prefixes, IPv4 or IPv6.
    #[arg(long, value_name = "CIDR", required = true, num_args = 1.., value_parser = netspec::parse_cidr)]
    to: Vec<Cidr>,
    /// Only this protocol.
    #[arg(long, value_enum, default_value = "any")]
    protocol: Protocol,
    #[command(flatten)]
    run: RunArgs,
}

impl NetCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        let kernel = features::Prober::new();
        let (target_args, run_args) = match &self {
            Self::Drop(a) => (&a.target, &a.run),
            Self::Corrupt(a) => (&a.target, &a.run),
            Self::Duplicate(a) => (&a.target, &a.run),
            Self::Partition(a) => (&a.target, &a.run),
        };
        spec::check_duration_cap(run_args.duration, run_args.i_know).map_err(anyhow::Error::msg)?;
        let target_spec = target_args.spec();
        let target = CgroupFs::discover()?.resolve(&target_spec, target::own_cgroup().as_deref())?;
        let net_spec = |kind, percent, filters: &FilterArgs, iface: &Option<String>| NetFaultSpec {
            kind,
            percent,
            filters: filters.filters(),
            direction: filters.direction,
            duration: run_args.duration,
            iface: iface.clone(),
            i_know: run_args.i_know,
        };
        let plan = match &self {
            Self::Drop(a) => {
                let burst = a.burst_len.map(|len| BurstModel::new(a.percent, len)).transpose().map_err(anyhow::Error::msg)?;
                plan::net::plan(&net_spec(NetFaultKind::Drop { burst }, a.percent, &a.filters, &None), target, &kernel)?
            }
            Self::Corrupt(a) => {
                clean_up_after_crashes();
                let kind = NetFaultKind::Corrupt { fix_checksum: a.fix_checksum };
                plan::net::plan(&net_spec(kind, a.percent, &a.filters, &a.iface), target, &kernel)?
            }
            Self::Duplicate(a) => {
                clean_up_after_crashes();
                plan::net::plan(&net_spec(NetFaultKind::Duplicate, a.percent, &a.filters, &a.iface), target, &kernel)?
            }
            Self::Partition(a) => plan::net::partition(a.to.clone(), a.protocol, run_args.duration, target, &kernel)?,
        };
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
