//! `chaos net ...`: packet faults for a target cgroup.
use std::process::ExitCode;

use clap::Subcommand;

use super::fault::FaultArgs;
use crate::{
    fault::net::{
        drop::NetDropOptions,
        partition::NetPartitionOptions,
        rewrite::{NetCorruptOptions, NetDuplicateOptions},
        sever::NetSeverOptions,
        shape::{NetDelayOptions, NetRateOptions},
    },
    report::OutputFormat,
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
    Drop(FaultArgs<NetDropOptions>),
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
    Corrupt(FaultArgs<NetCorruptOptions>),
    /// Send a share of the target's packets twice.
    #[command(after_help = "\
Examples:
  chaos net duplicate --container 3f2a --percent 10 --for 1m --direction egress

Runs as TC programs on the interfaces of the target's network namespace (see `net corrupt`).")]
    Duplicate(FaultArgs<NetDuplicateOptions>),
    /// Cut the target off from some peers: every packet to or from them is dropped.
    #[command(after_help = "\
Examples:
  chaos net partition --cgroup /app --to 10.0.3.0/24 --to fd00:3::/64 --for 2m

TCP connections to the peers time out; everyone else stays reachable.")]
    Partition(FaultArgs<NetPartitionOptions>),
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
    Delay(FaultArgs<NetDelayOptions>),
    /// Limit the target's outgoing rate (earliest departure time, enforced by fq).
    #[command(after_help = "\
Examples:
  chaos net rate --container 3f2a --limit 1mbit --for 2m

Matching packets leave one after another at the given rate, all flows together; fq holds them
(and drops what overflows its queues). See `net delay` for where the programs go.")]
    Rate(FaultArgs<NetRateOptions>),
    /// Reset the target's TCP connections now (and every PERIOD), or silence them after N bytes.
    #[command(after_help = "\
Examples:
  chaos net sever --cgroup /app --remote 10.0.3.0/24 --remote-port 6379 --for 1s
  chaos net sever --container 3f2a --all-connections --every 10s --percent 30 --for 5m
  chaos net sever --cgroup /app --remote-port 443 --after-bytes 1000 --for 2m
  chaos net sever --cgroup /app --remote-port 443 --after-bytes 64000 --mode reset --for 2m

Without --after-bytes, the target's matching connections (established or closing; never a
listening socket) are reset at once: the application's next call fails with ECONNABORTED and
the peer gets an RST. --every repeats that for the connections made since; --percent draws each
connection once. With --after-bytes, each matching connection carries that many bytes of
payload in either direction (counted by sequence number) and then goes silent, open but dead
(--mode reset: reset at that point). A filter is required: --remote, --remote-port,
--local-port, or --all-connections. See docs/sever.md.")]
    Sever(FaultArgs<NetSeverOptions>),
}

impl NetCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            Self::Drop(args) => args.run(output),
            Self::Corrupt(args) => args.run(output),
            Self::Duplicate(args) => args.run(output),
            Self::Partition(args) => args.run(output),
            Self::Delay(args) => args.run(output),
            Self::Rate(args) => args.run(output),
            Self::Sever(args) => args.run(output),
        }
    }
}
