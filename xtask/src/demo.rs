//! `cargo xtask demo`: chaos dropping a fifth of one cgroup's packets, end to end, on this
//! machine, inside test namespaces it creates and removes.
use std::{net::SocketAddr, process::Command, time::Duration};

use anyhow::Context as _;
use chaos_tests::{
    cgroup::TestCgroup,
    chaos::chaos_bin,
    kernel,
    net::TwoHosts,
    workload::{Blast, UdpSink},
};

const PPS: u64 = 1000;
const SECONDS: u64 = 4;

/// Runs as root, the binaries built and named in the environment (main.rs does both first).
pub(crate) fn run() -> anyhow::Result<()> {
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let server = SocketAddr::from((TwoHosts::B, 7200));
    println!(
        "\nchaos demo\n\nTwo test hosts joined by a veth pair: client namespace {} and server namespace {}.\n\
         A UDP client in cgroup {} and another client outside it each send {PPS} packets/s to {server}.\n\
         chaos drops 20 % of the packets of that cgroup for 5 s; the other client must not notice.\n",
        hosts.a.name(),
        hosts.b.name(),
        cgroup.path()
    );

    let args = ["net", "drop", "--cgroup", cgroup.path(), "--percent", "20", "--for", "5s", "--direction", "egress"];
    println!("$ chaos {}", args.join(" "));
    let mut chaos = Command::new(chaos_bin()).args(args).spawn().context("start chaos")?;
    kernel::wait_for_inet_programs(cgroup.dir(), 1, Duration::from_secs(20));

    let sink = UdpSink::start(&hosts.b, server.port(), 1500, false);
    let count = PPS * SECONDS;
    let inside = Blast { to: server, sender_id: 1, count, pps: PPS, cgroup: Some(&cgroup), netns: &hosts.a }.start();
    let outside = Blast { to: server, sender_id: 2, count, pps: PPS, cgroup: None, netns: &hosts.a }.start();
    let (inside, outside) = (inside.finish(), outside.finish());
    let status = chaos.wait().context("wait for chaos")?;
    let report = sink.finish();

    let line = |who: &str, id: u32, sent: u64, errors: u64| {
        let received = report.received_from(id);
        println!(
            "  {who:<28} sent {sent:>5}, send errors {errors}, received {received:>5}: {:>5.1} % lost",
            100.0 * (sent - received) as f64 / sent as f64
        );
    };
    println!("\nWhat the server received while the fault was live:");
    line("client in the target cgroup", 1, inside.sent, inside.errors);
    line("client outside it", 2, outside.sent, outside.errors);

    let after_sink = UdpSink::start(&hosts.b, server.port(), 500, false);
    let after = Blast { to: server, sender_id: 1, count: PPS, pps: PPS, cgroup: Some(&cgroup), netns: &hosts.a }.run();
    println!("\nAfter the deadline (chaos detached and exited: {status}):");
    let received = after_sink.finish().received_from(1);
    println!("  client in the target cgroup  sent {:>5}, received {received:>5}", after.sent);
    println!(
        "\nAttached to the cgroup now: {} programs (asked the kernel). The namespaces and the cgroup are removed \
         on exit.\nNext: `chaos doctor` shows what else this kernel supports; `chaos net drop --help` for options.",
        kernel::inet_programs_attached(cgroup.dir())
    );
    Ok(())
}
