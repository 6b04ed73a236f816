//! Packet filters and interfaces at run time, each seen by a receiver (the TC ones on one tier
//! of each TC API: tcx on the host, legacy filters on 6.1; the cgroup skb ones on the host): `--iface`
//! puts a TC fault on that interface of the target's namespace alone; corruption and
//! duplication on ingress reach what the namespace receives; `--protocol icmp` drops pings and
//! nothing else; `--local-port` drops the flows from that port and no other. Rates are judged
//! within five binomial standard deviations (chaos_tests::stats), shares that must be zero
//! exactly.
use std::{net::SocketAddr, time::Duration};

use chaos_tests::{
    cgroup::TestCgroup,
    chaos::Chaos,
    kernel,
    net::{Netns, TwoHosts, ip},
    require_root, stats,
    workload::{Blast, Resident, UdpSink, workload_json},
};

const PACKETS: u64 = 20_000;

/// The datagrams of a TC test: [`PACKETS`] on the host, a quarter in the TCG guest, where each
/// costs the emulator's time (at 5,000, five standard deviations of a 20 % share are still under
/// three points: a filter that does not apply, or applies to the other interface, fails).
fn tc_packets() -> u64 {
    if chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")) { PACKETS / 4 } else { PACKETS }
}
const PPS: u64 = 50_000;

/// A third host `c` beside TwoHosts' `a`: `veth-c` in a (10.201.0.1) to `veth-d` in c
/// (10.201.0.2).
struct ThirdHost {
    c: Netns,
}

impl ThirdHost {
    const A: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 201, 0, 1);
    const C: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 201, 0, 2);

    fn beside(hosts: &TwoHosts) -> Self {
        let c = Netns::new();
        ip(&[
            "link",
            "add",
            "veth-c",
            "netns",
            hosts.a.name(),
            "type",
            "veth",
            "peer",
            "name",
            "veth-d",
            "netns",
            c.name(),
        ]);
        ip(&["-n", hosts.a.name(), "addr", "add", &format!("{}/24", Self::A), "dev", "veth-c"]);
        ip(&["-n", c.name(), "addr", "add", &format!("{}/24", Self::C), "dev", "veth-d"]);
        ip(&["-n", hosts.a.name(), "link", "set", "veth-c", "up"]);
        ip(&["-n", c.name(), "link", "set", "veth-d", "up"]);
        Self { c }
    }
}

/// `chaos net <args> --cgroup <cgroup> --for 5m --output json`, once `ready()` holds.
fn start(args: &[&str], cgroup: &TestCgroup, ready: impl Fn() -> bool) -> Chaos {
    let mut full = vec!["net"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--cgroup", cgroup.path(), "--for", "5m", "--output", "json"]);
    let mut chaos = Chaos::start(&full);
    chaos.wait_until("its programs attach", Duration::from_secs(60), ready);
    chaos
}

/// `count` datagrams from `netns` (in `cgroup` if given) to `to`, none failing to send.
fn send(netns: &Netns, cgroup: Option<&TestCgroup>, to: SocketAddr, sender: u32, count: u64) {
    let blast = Blast { to, sender_id: sender, count, pps: PPS, cgroup, netns }.run();
    assert_eq!(blast.errors, 0, "send errors: {:?}", blast.first_error);
}

#[test]
fn iface_puts_a_tc_fault_on_that_interface_alone() {
    let test = "iface_puts_a_tc_fault_on_that_interface_alone";
    require_root!(test);
    chaos_tests::only_on_tiers!(
        ["host", "vm-6.1"],
        test,
        "one tier of each TC API: tcx on the host, legacy filters on 6.1"
    );
    let _serial = chaos_tests::serialized();
    let packets = tc_packets();
    let hosts = TwoHosts::new();
    let third = ThirdHost::beside(&hosts);
    let cgroup = TestCgroup::new();
    let _resident = Resident::start(&cgroup, Some(&hosts.a));
    let chaos = start(&["duplicate", "--percent", "20", "--direction", "egress", "--iface", "veth-c"], &cgroup, || {
        kernel::tc_programs(&hosts.a, "veth-c") == 1
    });
    assert_eq!(kernel::tc_programs(&hosts.a, "veth-a"), 0, "--iface veth-c attached to veth-a too");
    let (to_b, to_c) = (UdpSink::start(&hosts.b, 7401, 2000, false), UdpSink::start(&third.c, 7402, 2000, false));
    send(&hosts.a, Some(&cgroup), SocketAddr::from((TwoHosts::B, 7401)), 1, packets);
    send(&hosts.a, Some(&cgroup), SocketAddr::from((ThirdHost::C, 7402)), 1, packets);
    let (to_b, to_c) = (to_b.finish(), to_c.finish());
    drop(chaos.stop_json());
    assert_eq!(kernel::tc_programs(&hosts.a, "veth-c"), 0, "programs left on veth-c");
    assert_eq!(to_b.received_from(1), packets);
    assert_eq!(to_c.received_from(1), packets);
    stats::assert_share("duplicated through veth-a (not named)", to_b.duplicates_from(1), packets, 0.0, 1.0);
    stats::assert_share("duplicated through veth-c (--iface)", to_c.duplicates_from(1), packets, 0.20, 1.0);
}

#[test]
fn duplication_and_corruption_on_ingress_reach_what_the_namespace_receives() {
    let test = "duplication_and_corruption_on_ingress_reach_what_the_namespace_receives";
    require_root!(test);
    chaos_tests::only_on_tiers!(
        ["host", "vm-6.1"],
        test,
        "one tier of each TC API: tcx on the host, legacy filters on 6.1"
    );
    let _serial = chaos_tests::serialized();
    let packets = tc_packets();
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let _resident = Resident::start(&cgroup, Some(&hosts.a));
    for (fault, extra) in [("duplicate", &[][..]), ("corrupt", &["--fix-checksum"][..])] {
        let mut args = vec![fault, "--percent", "20", "--direction", "ingress"];
        args.extend_from_slice(extra);
        let chaos = start(&args, &cgroup, || kernel::tc_programs(&hosts.a, "veth-a") == 1);
        // Into host a (ingress there), and out of the cgroup (egress, not named): two sinks.
        let (inbound, outbound) =
            (UdpSink::start(&hosts.a, 7411, 2000, false), UdpSink::start(&hosts.b, 7412, 2000, false));
        send(&hosts.b, None, SocketAddr::from((TwoHosts::A, 7411)), 1, packets);
        send(&hosts.a, Some(&cgroup), SocketAddr::from((TwoHosts::B, 7412)), 2, packets);
        let (inbound, outbound) = (inbound.finish(), outbound.finish());
        let report = chaos.stop_json();
        let hit = if fault == "duplicate" { inbound.duplicates_from(1) } else { inbound.corrupted };
        let delivered =
            if fault == "duplicate" { inbound.received_from(1) } else { inbound.received_from(1) + inbound.corrupted };
        assert_eq!(delivered, packets, "{fault} on ingress: every datagram must arrive, copied or damaged");
        stats::assert_share(&format!("{fault} on ingress"), hit, packets, 0.20, 1.0);
        // Chaos counts what the sink saw, and what it did to the few other packets into veth-a
        // it matched beside the datagrams (ARP, IPv6 neighbour discovery: `matched` over
        // the datagrams sent), which no sink sees.
        let counter = &report["counters"][0];
        let (injected, matched) = (counter["injected"].as_u64().unwrap_or(0), counter["matched"].as_u64().unwrap_or(0));
        let others = matched.saturating_sub(packets);
        assert!(
            injected >= hit && injected - hit <= others,
            "{fault}: chaos injected {injected}, the sink saw {hit}, and only {others} other packets matched: {report}"
        );
        assert_eq!(
            (outbound.received_from(2), outbound.duplicates_from(2), outbound.corrupted),
            (packets, 0, 0),
            "{fault} --direction ingress touched what the cgroup sent"
        );
    }
}

#[test]
fn a_protocol_filter_of_icmp_drops_the_pings_and_nothing_else() {
    let test = "a_protocol_filter_of_icmp_drops_the_pings_and_nothing_else";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let ping = |cgroup: Option<&TestCgroup>| {
        let report = workload_json(
            &[
                "icmp-ping",
                "--to",
                &TwoHosts::B.to_string(),
                "--count",
                "10",
                "--interval-ms",
                "10",
                "--wait-ms",
                "300",
            ],
            cgroup,
            Some(&hosts.a),
        );
        (report["sent"].as_u64().unwrap_or(0), report["answered"].as_u64().unwrap_or(0))
    };
    assert_eq!(ping(Some(&cgroup)), (10, 10), "pings from the cgroup before the fault");
    let chaos = start(&["drop", "--percent", "100", "--protocol", "icmp", "--direction", "egress"], &cgroup, || {
        kernel::inet_programs_attached(cgroup.dir()) == 1
    });
    let (inside, outside) = (ping(Some(&cgroup)), ping(None));
    let sink = UdpSink::start(&hosts.b, 7421, 1000, false);
    send(&hosts.a, Some(&cgroup), SocketAddr::from((TwoHosts::B, 7421)), 1, 2000);
    let udp = sink.finish().received_from(1);
    let report = chaos.stop_json();
    let after = ping(Some(&cgroup));
    eprintln!(
        "measured: --protocol icmp: pings answered {inside:?} from the cgroup, {outside:?} beside it, {after:?} after; UDP {udp} of 2000"
    );
    assert_eq!(inside, (10, 0), "a ping from the cgroup got through a 100 % ICMP drop");
    assert_eq!(outside, (10, 10), "a ping from outside the cgroup was dropped");
    assert_eq!(udp, 2000, "UDP lost under an ICMP-only drop");
    assert_eq!(after, (10, 10), "pings from the cgroup after the drop ended");
    assert_eq!(report["counters"][0]["matched"].as_u64(), Some(10), "only the ten requests matched: {report}");
}

#[test]
fn a_local_port_filter_drops_the_flows_from_that_port_and_no_other() {
    let test = "a_local_port_filter_drops_the_flows_from_that_port_and_no_other";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let chaos = start(&["drop", "--percent", "20", "--local-port", "40100", "--direction", "egress"], &cgroup, || {
        kernel::inet_programs_attached(cgroup.dir()) == 1
    });
    let from = |port: u16, sender: u32, sink_port: u16| {
        let sink = UdpSink::start(&hosts.b, sink_port, 1000, false);
        let blast = Blast {
            to: SocketAddr::from((TwoHosts::B, sink_port)),
            sender_id: sender,
            count: PACKETS,
            pps: PPS,
            cgroup: Some(&cgroup),
            netns: &hosts.a,
        }
        .start_with(&["--from-port", &port.to_string()])
        .finish();
        assert_eq!(blast.errors, 0);
        PACKETS - sink.finish().received_from(sender)
    };
    let (listed, other) = (from(40100, 1, 7431), from(40101, 2, 7432));
    let report = chaos.stop_json();
    stats::assert_share("from local port 40100 (--local-port 40100)", listed, PACKETS, 0.20, 1.0);
    stats::assert_share("from local port 40101", other, PACKETS, 0.0, 1.0);
    assert_eq!(
        report["counters"][0]["matched"].as_u64(),
        Some(PACKETS),
        "only the listed port's flow matched: {report}"
    );
}
