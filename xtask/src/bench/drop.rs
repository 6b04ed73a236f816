//! `cargo xtask bench drop` (and the host half of `net`): chaos dropping a cgroup's packets,
//! against nothing armed and against iptables dropping the same share, on a UDP flow between two
//! test hosts.
use std::{fmt::Write as _, net::SocketAddr};

use chaos_tests::{cgroup::TestCgroup, net::TwoHosts};

use super::common::{BpfStats, FLOW_PACKETS, FLOW_PORT, Ratios, arm_drop, machine, measure_flow, median};
use crate::util;

/// Rounds per variant.
const ROUNDS: usize = 9;

pub(super) fn drop_bench() -> anyhow::Result<String> {
    let hosts = TwoHosts::new();
    let workload = TestCgroup::new();
    let other = TestCgroup::new();
    let to = SocketAddr::from((TwoHosts::B, FLOW_PORT));

    // Each round measures every variant back to back; ratios are taken within a round, so slow
    // phases of the machine (this is a 2-vCPU VM) hit both sides of a ratio alike.
    let mut untargeted = Ratios::default();
    let mut targeted_zero = Ratios::default();
    let mut cpu_vs_iptables_in = Ratios::default();
    let mut cpu_vs_iptables_out = Ratios::default();
    let (mut cpu_chaos, mut cpu_iptables_in, mut cpu_iptables_out, mut cpu_none) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rate_chaos, mut rate_iptables_in, mut rate_iptables_out) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("bench drop: round {round}/{ROUNDS}");
        let off = measure_flow(&hosts, &workload, to)?;
        let armed_elsewhere = {
            let _armed = arm_drop(&other, "20", "both")?;
            measure_flow(&hosts, &workload, to)?
        };
        let zero = {
            let _armed = arm_drop(&workload, "0", "egress")?;
            measure_flow(&hosts, &workload, to)?
        };
        let chaos = {
            let _armed = arm_drop(&workload, "20", "egress")?;
            measure_flow(&hosts, &workload, to)?
        };
        let iptables_in = {
            let _rule = IptablesDrop::add(hosts.b.name(), "raw", "PREROUTING", FLOW_PORT)?;
            measure_flow(&hosts, &workload, to)?
        };
        let iptables_out = {
            let _rule = IptablesDrop::add(hosts.a.name(), "filter", "OUTPUT", FLOW_PORT)?;
            measure_flow(&hosts, &workload, to)?
        };
        untargeted.push(armed_elsewhere.pps, off.pps);
        targeted_zero.push(zero.pps, off.pps);
        cpu_vs_iptables_in.push(chaos.cpu_ns_per_packet, iptables_in.cpu_ns_per_packet);
        cpu_vs_iptables_out.push(chaos.cpu_ns_per_packet, iptables_out.cpu_ns_per_packet);
        cpu_none.push(off.cpu_ns_per_packet);
        cpu_chaos.push(chaos.cpu_ns_per_packet);
        cpu_iptables_in.push(iptables_in.cpu_ns_per_packet);
        cpu_iptables_out.push(iptables_out.cpu_ns_per_packet);
        rate_chaos.push(chaos.lost_share);
        rate_iptables_in.push(iptables_in.lost_share);
        rate_iptables_out.push(iptables_out.lost_share);
    }
    // The program's own cost per packet, measured apart: the statistics slow every run a bit.
    let program_ns = {
        let _armed = arm_drop(&workload, "0", "egress")?;
        let stats = BpfStats::enable()?;
        let _ = measure_flow(&hosts, &workload, to)?;
        stats.ns_per_run("net_drop_egress")?
    };

    let mut out = String::new();
    let _ = writeln!(out, "## Packet drop (`cargo xtask bench drop`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "UDP, 64-byte payloads, {FLOW_PACKETS} packets per run sent as fast as one sender can, from a test cgroup \
         across a veth pair between two network namespaces. {ROUNDS} rounds; in each round every variant runs \
         back to back and ratios are taken within the round; the table shows the median ratio and the range \
         over rounds.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| untargeted throughput: chaos armed (20 %, both directions) on another cgroup vs nothing armed | **{}** | >= 0.98x |",
        untargeted.summary()
    );
    let _ = writeln!(
        out,
        "| CPU per packet dropping 20 % as silent loss: chaos vs `iptables -m statistic --mode random` in the receiver's raw PREROUTING | **{}** ({:.0} vs {:.0} ns) | <= 1x |",
        cpu_vs_iptables_in.summary(),
        median(&cpu_chaos),
        median(&cpu_iptables_in)
    );
    let _ = writeln!(
        out,
        "| CPU per packet dropping 20 % at the sender: chaos vs the same iptables rule in the sender's OUTPUT (which fails `sendto()` with EPERM instead) | {} ({:.0} vs {:.0} ns) | |",
        cpu_vs_iptables_out.summary(),
        median(&cpu_chaos),
        median(&cpu_iptables_out)
    );
    let _ = writeln!(
        out,
        "| drop rate achieved | chaos {:.2} %, iptables PREROUTING {:.2} %, iptables OUTPUT {:.2} % | 20 % |",
        100.0 * median(&rate_chaos),
        100.0 * median(&rate_iptables_in),
        100.0 * median(&rate_iptables_out)
    );
    let _ = writeln!(
        out,
        "| for scale: the target's own throughput at 0 % (program on every packet, never dropping) vs nothing armed | {} | |",
        targeted_zero.summary()
    );
    let _ = writeln!(
        out,
        "| for scale: time inside chaos's egress program per packet (kernel.bpf_stats_enabled) | {program_ns:.0} ns | |"
    );
    let _ = writeln!(out, "| for scale: CPU per packet with nothing armed | {:.0} ns | |", median(&cpu_none));
    let _ = writeln!(
        out,
        "\nCPU is all CPUs' busy time (/proc/stat: user, system, irq, softirq) over the run divided by packets \
         sent, so it includes the receiver. chaos drops in the sender's egress path and the sender sees no error, as \
         with real loss. iptables cannot do that at the sender: a DROP in OUTPUT makes `sendto()` fail with EPERM \
         (an errno fault, not loss), so the like-for-like anchor drops on arrival at the receiver, after the packet \
         crossed the link. Both placements are shown. Untargeted cgroups do not run chaos's \
         programs at all (they are attached to the target cgroup only), which is why the first ratio is 1 within \
         noise; the target itself pays for the cgroup-BPF hook on each packet, shown for scale."
    );
    Ok(out)
}

/// `iptables -m statistic` dropping 20 % of the flow in a test namespace, removed on Drop.
struct IptablesDrop<'a> {
    ns: &'a str,
    rule: Vec<String>,
}

impl<'a> IptablesDrop<'a> {
    fn add(ns: &'a str, table: &str, chain: &str, port: u16) -> anyhow::Result<Self> {
        let port = port.to_string();
        let rule: Vec<String> = [
            "-t",
            table,
            chain,
            "-p",
            "udp",
            "--dport",
            &port,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.2",
            "-j",
            "DROP",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let this = Self { ns, rule };
        this.iptables("-A")?;
        Ok(this)
    }

    fn iptables(&self, action: &str) -> anyhow::Result<()> {
        // -t TABLE goes before the action: iptables -t raw -A PREROUTING ...
        let mut args = vec!["netns", "exec", self.ns, "iptables", &self.rule[0], &self.rule[1], action];
        args.extend(self.rule[2..].iter().map(String::as_str));
        util::output(std::process::Command::new("ip").args(&args), "bench: iptables").map(drop)
    }
}

impl Drop for IptablesDrop<'_> {
    fn drop(&mut self) {
        let _ = self.iptables("-D");
    }
}
