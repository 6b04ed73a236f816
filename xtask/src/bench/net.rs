//! `cargo xtask bench net`, its VM half (the host half is `drop`): the same 20 % loss by tc netem
//! and by chaos, in the VM tier (the host has no netem).
use std::{fmt::Write as _, net::SocketAddr};

use chaos_tests::{cgroup::TestCgroup, net::TwoHosts};

use super::common::{FLOW_PORT, Ratios, arm_drop, machine_in, measure_flow_packets, median};
use crate::util;

/// In the VM tier (the host has no netem): 20 % loss by tc netem on the sender's interface vs
/// chaos on the sender's cgroup, CPU per packet and achieved rate.
pub(super) fn netem_bench() -> anyhow::Result<String> {
    const VM_PACKETS: u64 = 50_000;
    const VM_ROUNDS: usize = 5;
    let hosts = TwoHosts::new();
    let workload = TestCgroup::new();
    let to = SocketAddr::from((TwoHosts::B, FLOW_PORT));
    let mut cpu_ratio = Ratios::default();
    let (mut cpu_chaos, mut cpu_netem, mut cpu_none) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rate_chaos, mut rate_netem) = (Vec::new(), Vec::new());
    for round in 1..=VM_ROUNDS {
        eprintln!("bench netem: round {round}/{VM_ROUNDS}");
        let off = measure_flow_packets(&hosts, &workload, to, VM_PACKETS)?;
        let chaos = {
            let _armed = arm_drop(&workload, "20", "egress")?;
            measure_flow_packets(&hosts, &workload, to, VM_PACKETS)?
        };
        let netem = {
            let _qdisc = Netem::add(&hosts)?;
            measure_flow_packets(&hosts, &workload, to, VM_PACKETS)?
        };
        cpu_ratio.push(chaos.cpu_ns_per_packet, netem.cpu_ns_per_packet);
        cpu_none.push(off.cpu_ns_per_packet);
        cpu_chaos.push(chaos.cpu_ns_per_packet);
        cpu_netem.push(netem.cpu_ns_per_packet);
        rate_chaos.push(chaos.lost_share);
        rate_netem.push(netem.lost_share);
    }
    let mut out = String::new();
    let _ = writeln!(out, "## Packet loss against tc netem (`cargo xtask bench net`, VM tier)\n");
    let _ =
        writeln!(out, "{}\n", machine_in("VM tier: QEMU with TCG on the host above; ratios are valid within this run"));
    let _ = writeln!(
        out,
        "UDP, 64-byte payloads, {VM_PACKETS} packets per run as fast as one sender can, across a veth pair between \
         two network namespaces. netem drops 20 % on the sender's interface (`tc qdisc add dev veth-a root netem \
         loss 20%`); chaos drops 20 % on the sender's cgroup. Both are silent for the sender. {VM_ROUNDS} rounds, \
         variants back to back in each; median ratio and range.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| CPU per packet, 20 % loss: chaos vs tc netem | **{}** ({:.0} vs {:.0} ns of emulated CPU) | <= 1x |",
        cpu_ratio.summary(),
        median(&cpu_chaos),
        median(&cpu_netem)
    );
    let _ = writeln!(
        out,
        "| loss achieved | chaos {:.2} %, netem {:.2} % | 20 % |",
        100.0 * median(&rate_chaos),
        100.0 * median(&rate_netem)
    );
    let _ = writeln!(out, "| for scale: CPU per packet with no loss | {:.0} ns | |", median(&cpu_none));
    let _ = writeln!(
        out,
        "\nnetem needs a qdisc on the interface, so it delays or drops everything that leaves it, whoever sent \
         it; chaos attaches to one cgroup and leaves the other processes of the namespace alone."
    );
    Ok(out)
}

/// `tc qdisc add dev veth-a root netem loss 20%` in host a's namespace, removed on Drop.
struct Netem<'a> {
    ns: &'a str,
}

impl<'a> Netem<'a> {
    fn add(hosts: &'a TwoHosts) -> anyhow::Result<Self> {
        let ns = hosts.a.name();
        util::output(
            std::process::Command::new("tc")
                .args(["-n", ns, "qdisc", "add", "dev", "veth-a", "root", "netem", "loss", "20%"]),
            "bench: tc netem",
        )?;
        Ok(Self { ns })
    }
}

impl Drop for Netem<'_> {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("tc").args(["-n", self.ns, "qdisc", "del", "dev", "veth-a", "root"]).status();
    }
}
