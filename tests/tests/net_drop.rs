//! `chaos net drop` on a real kernel: a UDP workload in a test cgroup, sent from one test
//! namespace to another across a veth pair.
use std::{net::SocketAddr, time::Duration};

use chaos_tests::{
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel,
    net::TwoHosts,
    require_root, stats,
    workload::{Blast, UdpSink},
};

const PACKETS: u64 = 20_000;
const TARGET_SENDER: u32 = 1;
const OUTSIDE_SENDER: u32 = 2;

fn sink_addr(port: u16) -> SocketAddr {
    SocketAddr::from((TwoHosts::B, port))
}

/// Starts `chaos net drop` on `cgroup` and waits until the kernel shows its programs attached.
fn start_drop(cgroup: &TestCgroup, percent: &str, duration: &str, direction: &str, expect_programs: u32) -> Chaos {
    let chaos = Chaos::start(&[
        "net",
        "drop",
        "--cgroup",
        cgroup.path(),
        "--percent",
        percent,
        "--for",
        duration,
        "--direction",
        direction,
        "--output",
        "json",
        "-v",
    ]);
    let mut chaos = chaos;
    chaos.wait_until("its programs attach", Duration::from_secs(60), || {
        kernel::inet_programs_attached(cgroup.dir()) == expect_programs
    });
    chaos
}

#[test]
fn drops_a_fifth_of_the_target_packets_silently_and_nothing_else() {
    require_root!("drops_a_fifth_of_the_target_packets_silently_and_nothing_else");
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let sink = UdpSink::start(&hosts.b, 7001, 1000, false);
    let chaos = start_drop(&cgroup, "20", "120s", "egress", 1);

    // Paced so that nothing but chaos loses packets (the veth and the sink keep up).
    let inside = Blast {
        to: sink_addr(7001),
        sender_id: TARGET_SENDER,
        count: PACKETS,
        pps: 50_000,
        cgroup: Some(&cgroup),
        netns: &hosts.a,
    }
    .start();
    let outside = Blast {
        to: sink_addr(7001),
        sender_id: OUTSIDE_SENDER,
        count: PACKETS,
        pps: 50_000,
        cgroup: None,
        netns: &hosts.a,
    }
    .start();
    let (inside, outside) = (inside.finish(), outside.finish());
    let report = sink.finish();

    chaos.signal(libc::SIGINT);
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "chaos stopped by SIGINT exits 130; stderr: {stderr}");

    assert_eq!(inside.errors, 0, "the sender in the target must see no send error: {:?}", inside.first_error);
    assert_eq!(outside.errors, 0);
    let lost = PACKETS - report.received_from(TARGET_SENDER);
    let rate = lost as f64 / PACKETS as f64;
    eprintln!(
        "measured: target lost {lost} of {PACKETS} ({:.2} %), outside lost {}",
        rate * 100.0,
        PACKETS - report.received_from(OUTSIDE_SENDER)
    );
    stats::assert_share("egress drop of 20 %", lost, PACKETS, 0.20, 1.0);
    assert_eq!(report.received_from(OUTSIDE_SENDER), PACKETS, "a process outside the cgroup lost packets");

    // chaos's own counters agree with what the receiver saw.
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let egress = &json["counters"][0];
    assert_eq!(egress["direction"], "egress");
    assert_eq!(egress["injected"].as_u64(), Some(lost), "{stdout}");
    assert_eq!(json["stopped"]["signal"], "SIGINT");
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 0, "programs left attached after SIGINT");
}

/// The ingress direction on real traffic: a sink inside the cgroup loses the share, a sink
/// beside it (same namespace, outside the cgroup) loses nothing.
#[test]
fn an_ingress_drop_loses_the_share_of_what_the_cgroup_receives() {
    require_root!("an_ingress_drop_loses_the_share_of_what_the_cgroup_receives");
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let inside = UdpSink::start_in(&cgroup, &hosts.b, 7010, 1000);
    let outside = UdpSink::start(&hosts.b, 7011, 1000, false);
    let chaos = start_drop(&cgroup, "20", "120s", "ingress", 1);
    let blast = |port, sender_id| Blast {
        to: sink_addr(port),
        sender_id,
        count: PACKETS,
        pps: 50_000,
        cgroup: None,
        netns: &hosts.a,
    };
    let (to_inside, to_outside) = (blast(7010, TARGET_SENDER).start(), blast(7011, OUTSIDE_SENDER).start());
    assert_eq!(to_inside.finish().errors + to_outside.finish().errors, 0);
    let (inside, outside) = (inside.finish(), outside.finish());
    let json = chaos.stop_json();
    let lost = PACKETS - inside.received_from(TARGET_SENDER);
    let rate = lost as f64 / PACKETS as f64;
    eprintln!("measured: ingress drop: the cgroup's sink lost {lost} of {PACKETS} ({:.2} %)", rate * 100.0);
    stats::assert_share("ingress drop of 20 %", lost, PACKETS, 0.20, 1.0);
    assert_eq!(outside.received_from(OUTSIDE_SENDER), PACKETS, "a sink outside the cgroup lost packets");
    let ingress = &json["counters"][0];
    assert_eq!(ingress["direction"], "ingress", "{json}");
    assert_eq!(ingress["injected"].as_u64(), Some(lost), "{json}");
}

/// Two drops on one cgroup at once compose: each loses its share of what the other let
/// through, so 50 % and 50 % lose 75 %.
#[test]
fn two_drops_on_one_cgroup_compose() {
    require_root!("two_drops_on_one_cgroup_compose");
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let sink = UdpSink::start(&hosts.b, 7012, 1000, false);
    let first = start_drop(&cgroup, "50", "120s", "egress", 1);
    let second = start_drop(&cgroup, "50", "120s", "egress", 2);
    let blast = Blast {
        to: sink_addr(7012),
        sender_id: TARGET_SENDER,
        count: PACKETS,
        pps: 50_000,
        cgroup: Some(&cgroup),
        netns: &hosts.a,
    }
    .run();
    assert_eq!(blast.errors, 0);
    let report = sink.finish();
    let (first, second) = (first.stop_json(), second.stop_json());
    let lost = PACKETS - report.received_from(TARGET_SENDER);
    let rate = lost as f64 / PACKETS as f64;
    let injected = |json: &serde_json::Value| json["counters"][0]["injected"].as_u64().unwrap_or(0);
    eprintln!(
        "measured: two 50 % drops lost {lost} of {PACKETS} ({:.2} %, expected 75 %); each dropped {} and {}",
        rate * 100.0,
        injected(&first),
        injected(&second)
    );
    stats::assert_share("two 50 % drops", lost, PACKETS, 0.75, 1.0);
    // The kernel runs every program of the cgroup on each packet, so each fault sees all of
    // them and counts its own half, including packets the other dropped too.
    for json in [&first, &second] {
        assert_eq!(json["counters"][0]["seen"].as_u64(), Some(PACKETS), "each drop sees every packet: {json}");
        stats::assert_share("one of two 50 % drops", injected(json), PACKETS, 0.5, 1.0);
    }
    assert_eq!(kernel::cgroup_programs(cgroup.dir()), 0);
}

#[test]
fn the_kernel_ends_the_fault_at_its_deadline_even_if_chaos_is_frozen() {
    require_root!("the_kernel_ends_the_fault_at_its_deadline_even_if_chaos_is_frozen");
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let sink = UdpSink::start(&hosts.b, 7002, 1500, true);
    let started_ns = kernel::monotonic_ns();
    // 5 s: long enough that even a slow start (a busy 2-CPU VM) leaves most of it to measure.
    let mut chaos = start_drop(&cgroup, "100", "5s", "egress", 1);
    // Attached is not yet armed: chaos writes the deadline again once every program is in place.
    chaos.wait_until_armed(Duration::from_secs(60));
    // Only the kernel can end the fault now: the controller cannot run its own timer.
    chaos.signal(libc::SIGSTOP);
    let armed_at = kernel::monotonic_ns();

    // One packet per ms for 7 s: the rest of the 5 s under a 100 % drop, then the deadline.
    let blast = Blast {
        to: sink_addr(7002),
        sender_id: TARGET_SENDER,
        count: 7000,
        pps: 1000,
        cgroup: Some(&cgroup),
        netns: &hosts.a,
    }
    .run_timed();
    let report = sink.finish();
    chaos.signal(libc::SIGCONT);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(10));
    assert_eq!(blast.errors, 0);
    // Thawed past its deadline, chaos finds its run over: a run that reached its deadline.
    assert_eq!(status.code(), Some(0), "chaos thawed after its deadline: {stderr}");

    // The deadline chaos wrote into the map, as it logged it: --for after arming.
    let deadline = chaos::logged_deadline_ns(&stderr);
    chaos::assert_deadline_is_for(deadline, started_ns, armed_at, Duration::from_secs(5));
    assert!(deadline > armed_at, "deadline already passed when the blast started");
    // Judged by the sender's stamps around each sendto (the hook runs inside it), not by when
    // the receiver got round to reading: every datagram sent before the deadline was dropped,
    // every one sent after it arrived, with no tolerance.
    let arrived: std::collections::BTreeSet<u64> = report.arrivals.iter().map(|&(_, seq, _, _)| seq).collect();
    let edge = chaos_tests::timing::assert_loss_ends_at("100 % drop", deadline, 0, &blast.times, &arrived);
    assert!(edge.dropped_before >= 1000, "only {} datagrams were sent under the drop", edge.dropped_before);
    assert!(edge.delivered_after >= 1000, "only {} datagrams were sent after the deadline", edge.delivered_after);
    // And the receiver's own clock: nothing reached it before the deadline.
    let first_arrival = report.arrivals.iter().map(|&(_, _, at, _)| at).min().expect("nothing got through");
    assert!(first_arrival >= deadline, "a datagram arrived {} ns before the deadline", deadline - first_arrival);
}

/// SIGTERM and SIGHUP stop a foreground run like Ctrl-C: the fault is detached (the kernel
/// shows nothing on the cgroup), the report names the signal, the exit status is 128 + signal.
#[test]
fn sigterm_and_sighup_detach_a_foreground_fault_and_exit_128_plus_the_signal() {
    require_root!("sigterm_and_sighup_detach_a_foreground_fault_and_exit_128_plus_the_signal");
    let cgroup = TestCgroup::new();
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let mut chaos = start_drop(&cgroup, "100", "5m", "egress", 1);
        chaos.wait_until_armed(Duration::from_secs(60));
        chaos.signal(signal);
        let (status, stdout, stderr) = chaos.wait(Duration::from_secs(20));
        assert_eq!(status.code(), Some(128 + signal), "{name}: {stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(report["stopped"]["signal"], name, "{report}");
        assert_eq!(kernel::cgroup_programs(cgroup.dir()), 0, "programs left attached after {name}");
    }
}

#[test]
fn sigkill_of_chaos_leaves_nothing_attached() {
    require_root!("sigkill_of_chaos_leaves_nothing_attached");
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let chaos = start_drop(&cgroup, "100", "60s", "both", 2);
    chaos.signal(libc::SIGKILL);
    let (status, _, _) = chaos.wait(Duration::from_secs(10));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    // The kernel's view, not ours: the links went with the process's file descriptors.
    kernel::wait_for_inet_programs(cgroup.dir(), 0, Duration::from_secs(5));

    let sink = UdpSink::start(&hosts.b, 7003, 500, false);
    let blast = Blast {
        to: sink_addr(7003),
        sender_id: TARGET_SENDER,
        count: 1000,
        pps: 20_000,
        cgroup: Some(&cgroup),
        netns: &hosts.a,
    }
    .run();
    assert_eq!(blast.errors, 0);
    assert_eq!(sink.finish().received_from(TARGET_SENDER), 1000, "traffic not fully restored after SIGKILL");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    require_root!("bad_input_is_refused_and_changes_nothing");
    let cgroup = TestCgroup::new();
    let missing = format!("{}-missing", cgroup.path());
    let cases: &[(&[&str], &str)] = &[
        (&["--cgroup", cgroup.path(), "--percent", "101", "--for", "5s"], "is over 100 %"),
        (&["--cgroup", cgroup.path(), "--percent", "20", "--for", "5"], "did you mean 5s?"),
        (&["--cgroup", &missing, "--percent", "20", "--for", "5s"], "does not exist"),
        (&["--cgroup", "/", "--percent", "20", "--for", "5s"], "resolves to the root cgroup"),
        (&["--pid", "999999999", "--percent", "20", "--for", "5s"], "no such process"),
        (&["--cgroup", cgroup.path(), "--percent", "20", "--for", "2h"], "--i-know"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["net", "drop"];
        full.extend_from_slice(args);
        let (status, _, stderr) = chaos::run(&full);
        assert_eq!(status.code(), Some(2), "{args:?} should exit 2; stderr: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in: {stderr}");
        assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 0, "{args:?} attached something");
    }
}

#[test]
fn dry_run_prints_the_plan_and_attaches_nothing() {
    require_root!("dry_run_prints_the_plan_and_attaches_nothing");
    let cgroup = TestCgroup::new();
    let (status, stdout, stderr) = chaos::run(&[
        "net",
        "drop",
        "--cgroup",
        cgroup.path(),
        "--percent",
        "20",
        "--for",
        "5s",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert!(status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(plan["programs"].as_array().map(Vec::len), Some(2), "{stdout}");
    assert_eq!(plan["programs"][0]["hook"], "cgroup_skb/egress");
    assert_eq!(plan["target"]["cgroup"], cgroup.path());
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 0);
}
