//! `cargo xtask bench delay`, its network half (VM tier: fq and netem): 100 ms of delay by tc
//! netem against chaos, how close each comes, and CPU per packet.
use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use chaos_tests::{
    cgroup::TestCgroup,
    chaos::Chaos,
    net::TwoHosts,
    workload::{Blast, UdpSink},
};

use super::common::{FLOW_PORT, busy_cpu_ns, machine_in, median, percentile};
use crate::util;

/// VM tier (fq and netem): 100 ms of delay by tc netem vs chaos: accuracy of the added round
/// trip, and CPU per packet at a fixed packet rate.
pub(super) fn net_delay_bench() -> anyhow::Result<String> {
    const PINGS: u32 = 100;
    const VM_ROUNDS: usize = 3;
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let _resident = chaos_tests::workload::Resident::start(&cgroup, Some(&hosts.a));
    let _echo = chaos_tests::workload::UdpEcho::start(&hosts.b, 7700);
    let to = SocketAddr::from((TwoHosts::B, 7700));
    let ping = |count: u32, interval: u32| -> Vec<f64> {
        let json = chaos_tests::workload::workload_json(
            &[
                "udp-ping",
                "--to",
                &to.to_string(),
                "--count",
                &count.to_string(),
                "--interval-ms",
                &interval.to_string(),
            ],
            Some(&cgroup),
            Some(&hosts.a),
        );
        json["rtts_ns"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).map(|ns| ns / 1e6).collect())
            .unwrap_or_default()
    };
    let blast_cpu = || -> anyhow::Result<f64> {
        let sink = UdpSink::start(&hosts.b, FLOW_PORT, 500, false);
        let before = busy_cpu_ns()?;
        let _ = Blast {
            to: SocketAddr::from((TwoHosts::B, FLOW_PORT)),
            sender_id: 1,
            count: 4000,
            pps: 2000,
            cgroup: Some(&cgroup),
            netns: &hosts.a,
        }
        .run();
        let busy = busy_cpu_ns()? - before;
        let _ = sink.finish();
        Ok(busy as f64 / 4000.0)
    };
    let baseline = median(&ping(50, 10));
    let (mut chaos_err, mut netem_err) = (Vec::new(), Vec::new());
    let (mut cpu_chaos, mut cpu_netem, mut cpu_none) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=VM_ROUNDS {
        eprintln!("bench delay (VM): round {round}/{VM_ROUNDS}");
        cpu_none.push(blast_cpu()?);
        {
            let mut chaos =
                Chaos::start(&["net", "delay", "--cgroup", cgroup.path(), "--by", "100ms", "--for", "30m", "-v"]);
            chaos.wait_until_armed(Duration::from_secs(120));
            chaos_err.extend(ping(PINGS, 20).iter().map(|rtt| (rtt - baseline - 100.0).abs()));
            cpu_chaos.push(blast_cpu()?);
        }
        {
            let ns = hosts.a.name();
            util::output(
                std::process::Command::new("tc").args([
                    "-n", ns, "qdisc", "add", "dev", "veth-a", "root", "netem", "delay", "100ms", "limit", "100000",
                ]),
                "bench: tc netem",
            )?;
            netem_err.extend(ping(PINGS, 20).iter().map(|rtt| (rtt - baseline - 100.0).abs()));
            cpu_netem.push(blast_cpu()?);
            let _ = std::process::Command::new("tc").args(["-n", ns, "qdisc", "del", "dev", "veth-a", "root"]).status();
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "## Network delay against tc netem (`cargo xtask bench delay`, VM tier)\n");
    let _ = writeln!(out, "{}\n", machine_in("VM tier: QEMU with TCG; ratios and errors are within this run"));
    let _ = writeln!(
        out,
        "100 ms of delay on what the sender in host a sends: `tc qdisc add dev veth-a root netem delay 100ms` against \
         `chaos net delay --by 100ms` (a TC egress program setting departure times, fq holding the packets). Accuracy: \
         UDP pings from the target cgroup, {PINGS} per round, error = |round trip - baseline - 100 ms|. CPU: 4000 packets \
         at 2000 packets/s. {VM_ROUNDS} rounds.\n"
    );
    let _ = writeln!(out, "| measurement | chaos | tc netem |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| added-delay error p50 | **{:.2} ms** | {:.2} ms |",
        percentile(&chaos_err, 50.0),
        percentile(&netem_err, 50.0)
    );
    let _ = writeln!(
        out,
        "| added-delay error p99 | **{:.2} ms** | {:.2} ms |",
        percentile(&chaos_err, 99.0),
        percentile(&netem_err, 99.0)
    );
    let _ = writeln!(
        out,
        "| CPU per packet at 2000 packets/s (nothing: {:.0} ns) | **{:.0} ns** ({:.2}x netem) | {:.0} ns |",
        median(&cpu_none),
        median(&cpu_chaos),
        median(&cpu_chaos) / median(&cpu_netem),
        median(&cpu_netem)
    );
    let _ = writeln!(
        out,
        "\nnetem delays everything that leaves the interface; chaos delays the target cgroup's packets (and only \
         those matching its filters), with fq doing the holding."
    );
    Ok(out)
}
