//! `chaos syscall delay` (host and VM tiers) and `chaos net delay` / `net rate` (kernels with
//! fq: the VM tier) on a real kernel, with real calls and real packets.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use chaos_tests::{
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    held, kernel,
    net::TwoHosts,
    require_root,
    skip::{self, Feature},
    skip_unless_has,
    workload::{Blast, Resident, UdpEcho, UdpSink, start_stopped_reader, wait_until_stopped, workload_json},
};

const MS: f64 = 1e6;

/// Percentile `p` (0..=100) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index]
}

fn std_dev(values: &[f64]) -> f64 {
    let m = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

fn numbers(json: &serde_json::Value, key: &str) -> Vec<f64> {
    json[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

/// The VM tier runs under TCG: emulated timers are coarser, so its bounds are wider.
fn on_vm() -> bool {
    skip::tier().is_some_and(|t| t.starts_with("vm-"))
}

fn start(args: &[&str], cgroup: &TestCgroup) -> Chaos {
    chaos::start_fault(args, cgroup)
}

fn stop(chaos: Chaos) -> serde_json::Value {
    chaos.stop_json()
}

#[test]
fn syscall_delay_adds_the_requested_latency_and_nothing_elsewhere() {
    require_root!("syscall_delay_adds_the_requested_latency_and_nothing_elsewhere");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    // Judged as chaos_tests::held says (at least the delay, p50 within half of it over): the
    // tail is the scheduler's (p99 errors of 28-47 ms seen on the loaded shared host), so it
    // is measured, not bounded.
    for delay_ms in [20.0, 100.0] {
        let chaos = start(&["syscall", "delay", "--syscall", "read", "--by", &format!("{delay_ms}ms")], &cgroup);
        let inside = workload_json(&["latency-loop", "--count", "200"], Some(&cgroup), None);
        let outside = workload_json(&["latency-loop", "--count", "200"], None, None);
        let report = stop(chaos);
        let calls: Vec<f64> = numbers(&inside, "latencies_ns").iter().map(|ns| ns / MS).collect();
        let errors: Vec<f64> = calls.iter().map(|ms| (ms - delay_ms).abs()).collect();
        let (p50, p99) = (percentile(&errors, 50.0), percentile(&errors, 99.0));
        let outside_ms: Vec<f64> = numbers(&outside, "latencies_ns").iter().map(|ns| ns / MS).collect();
        let outside_p99 = percentile(&outside_ms, 99.0);
        eprintln!(
            "measured: {delay_ms} ms delay over {} reads: error p50 {p50:.3} ms, p99 {p99:.3} ms; untargeted read p99 {outside_p99:.3} ms",
            errors.len()
        );
        // The reads' own time: the same loop's outside the cgroup.
        held::assert_held(&format!("{delay_ms} ms"), &calls, delay_ms, percentile(&outside_ms, 50.0));
        assert!(outside_p99 < delay_ms / 2.0, "a process outside the cgroup was delayed: p99 {outside_p99:.3} ms");
        // The loop's 200 reads, plus the few its dynamic loader makes at start-up (in the cgroup too).
        let injected = report["counters"][0]["injected"].as_u64().unwrap_or(0);
        assert!((200..220).contains(&injected), "{report}");
    }
}

/// A reader held by a 10 s delay: after SIGKILL of chaos, the guard (`--scope process`) or the
/// holder (per thread) lets it go at once. The reader starts after the fault, so per thread too
/// its first read stops the whole process (it is seized then).
#[test]
fn sigkill_of_chaos_mid_delay_leaves_the_target_running() {
    require_root!("sigkill_of_chaos_mid_delay_leaves_the_target_running");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    for scope in ["process", "thread"] {
        let chaos = start(&["syscall", "delay", "--syscall", "read", "--by", "10s", "--scope", scope], &cgroup);
        let started = Instant::now();
        let (mut target, pid) = start_stopped_reader(&cgroup);
        chaos.signal(libc::SIGKILL);
        drop(chaos.wait(Duration::from_secs(10)));
        // Only the guard or the holder is left to resume it.
        let killed = Instant::now();
        while kernel::is_stopped(pid) {
            assert!(
                killed.elapsed() < Duration::from_secs(3),
                "--scope {scope}: the target is still stopped 3 s after chaos was killed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let resumed_after = killed.elapsed();
        let status = target.wait().expect("wait for the target");
        eprintln!(
            "measured: --scope {scope}: target resumed {:.1} ms after SIGKILL of chaos",
            resumed_after.as_secs_f64() * 1e3
        );
        assert!(status.success(), "--scope {scope}: the target did not finish: {status}");
        assert!(started.elapsed() < Duration::from_secs(8), "--scope {scope}: the target waited for the 10 s delay");
    }
}

/// While chaos is live its reads are delayed, and the first undelayed read comes at arm +
/// `--for`; with chaos frozen (no timer, no resumer) the kernel still ends the delay at `--for`.
#[test]
fn syscall_delays_end_at_the_deadline() {
    require_root!("syscall_delays_end_at_the_deadline");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let delay = |for_: &str| {
        let started_ns = kernel::monotonic_ns();
        let mut chaos = Chaos::start(&[
            "syscall",
            "delay",
            "--syscall",
            "read",
            "--by",
            "50ms",
            "--cgroup",
            cgroup.path(),
            "--for",
            for_,
            "-v",
        ]);
        chaos.wait_until_armed(Duration::from_secs(60));
        let armed_ns = kernel::monotonic_ns();
        let deadline_ns = chaos::logged_deadline_ns(&chaos.stderr_so_far());
        let for_ = humantime::parse_duration(for_).expect("duration");
        chaos::assert_deadline_is_for(deadline_ns, started_ns, armed_ns, for_);
        (chaos, deadline_ns)
    };

    // Live: one read every 20 ms through the deadline and 1 s past it.
    let (chaos, deadline_ns) = delay("3s");
    let left_ms = deadline_ns.saturating_sub(kernel::monotonic_ns()) / 1_000_000;
    let count = (left_ms / 70 + 1000 / 20).to_string();
    let reads = workload_json(&["latency-loop", "--count", &count, "--gap-ms", "20"], Some(&cgroup), None);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{stderr}");
    let latencies = numbers(&reads, "latencies_ns");
    let starts = numbers(&reads, "starts_ns");
    // The read stopped last before the deadline is resumed when the fault ends, at the
    // deadline: it comes back in under 50 ms, but it was stopped, not spared.
    let stopped = |i: usize| {
        let deadline = deadline_ns as f64;
        latencies[i] / MS >= 25.0 || (starts[i] < deadline && starts[i] + latencies[i] >= deadline)
    };
    let first_fast = (0..latencies.len()).position(|i| !stopped(i)).expect("every read was delayed");
    let delayed: Vec<f64> = latencies[..first_fast].iter().map(|ns| ns / MS).filter(|&ms| ms >= 25.0).collect();
    assert!(delayed.len() >= 5, "only {} reads were delayed before the deadline", delayed.len());
    let live_p50 = percentile(&delayed, 50.0);
    let after_ms = (starts[first_fast] - deadline_ns as f64) / MS;
    let last = first_fast - 1;
    let (last_start_ms, last_end_ms) =
        ((starts[last] - deadline_ns as f64) / MS, (starts[last] + latencies[last] - deadline_ns as f64) / MS);
    eprintln!(
        "measured: live, {} reads delayed (p50 {live_p50:.1} ms for 50 ms); the last stopped read ran from \
         {last_start_ms:.1} to {last_end_ms:.1} ms after the kernel deadline, the first undelayed one started \
         {after_ms:.1} ms after it",
        delayed.len()
    );
    // chaos_tests::held's bounds: at least the delay, p50 within half of it over.
    assert!((50.0..=75.0).contains(&live_p50), "live delay p50 {live_p50:.1} ms, not in 50-75 ms");
    assert!(latencies[first_fast..].iter().all(|ns| ns / MS < 25.0), "a read was delayed after an undelayed one");
    // A read that starts just before the deadline may enter the kernel just after it: by
    // microseconds on the host, but a TCG guest sharing its cores once held the reader 15 ms
    // between its timestamp and the syscall (6.1, fentry path, beside another guest).
    let early = if on_vm() { 50.0 } else { 5.0 };
    assert!(after_ms >= -early, "the delay ended {:.1} ms before its deadline", -after_ms);
    // A delayed read entered the kernel before the deadline, so it started before it. (Not a
    // bound on the gap to the first fast read: a TCG guest once held the reader 160 ms there.)
    let last_delayed_ms = (starts[first_fast - 1] - deadline_ns as f64) / MS;
    assert!(last_delayed_ms < 0.0, "a read that started {last_delayed_ms:.1} ms after the kernel deadline was delayed");

    // Frozen: nothing in user space can end the fault; past the deadline reads are not delayed.
    let (chaos, deadline_ns) = delay("2s");
    chaos.signal(libc::SIGSTOP);
    std::thread::sleep(
        Duration::from_nanos(deadline_ns.saturating_sub(kernel::monotonic_ns())) + Duration::from_millis(100),
    );
    let after = workload_json(&["latency-loop", "--count", "50"], Some(&cgroup), None);
    chaos.signal(libc::SIGCONT);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "chaos thawed after its deadline: {stderr}");
    let p99 = percentile(&numbers(&after, "latencies_ns"), 99.0) / MS;
    eprintln!("measured: with chaos frozen, read p99 after the deadline {p99:.3} ms");
    assert!(p99 < 25.0, "reads are still delayed after the deadline with chaos frozen: p99 {p99:.3} ms");
}

/// Why network delays cannot run here, if they cannot: the kernel's own answer (a fq qdisc
/// added in a throwaway namespace), not doctor's.
fn fq_missing() -> Option<String> {
    chaos_tests::probe::fq_missing().map(|reason| format!("network delay unavailable: {reason}"))
}

/// A network-delay setup: hosts, a target cgroup with a resident in host a, an echo in b.
struct NetSetup {
    hosts: TwoHosts,
    cgroup: TestCgroup,
    _resident: Resident,
    _echo: UdpEcho,
}

impl NetSetup {
    fn new() -> Self {
        let hosts = TwoHosts::new();
        let cgroup = TestCgroup::new();
        let resident = Resident::start(&cgroup, Some(&hosts.a));
        let echo = UdpEcho::start(&hosts.b, 7600);
        Self { hosts, cgroup, _resident: resident, _echo: echo }
    }

    fn start(&self, args: &[&str]) -> Chaos {
        let mut full = args.to_vec();
        full.extend_from_slice(&["--cgroup", self.cgroup.path(), "--for", "5m", "--output", "json"]);
        let mut chaos = Chaos::start(&full);
        chaos.wait_until("its TC program attaches", Duration::from_secs(60), || {
            kernel::tc_programs(&self.hosts.a, "veth-a") >= 1
        });
        chaos
    }

    /// Round trips of `count` pings from the cgroup, in ms.
    fn ping(&self, count: u32, interval_ms: u32) -> Vec<f64> {
        self.ping_to(SocketAddr::from((TwoHosts::B, 7600)), count, interval_ms)
    }

    /// [`NetSetup::ping`] to `to` (the echo answers on 7600 in both families).
    fn ping_to(&self, to: SocketAddr, count: u32, interval_ms: u32) -> Vec<f64> {
        let to = to.to_string();
        let json = workload_json(
            &["udp-ping", "--to", &to, "--count", &count.to_string(), "--interval-ms", &interval_ms.to_string()],
            Some(&self.cgroup),
            Some(&self.hosts.a),
        );
        numbers(&json, "rtts_ns").iter().map(|ns| ns / MS).collect()
    }
}

#[test]
fn net_delay_adds_the_requested_round_trip_and_puts_the_qdisc_back() {
    require_root!("net_delay_adds_the_requested_round_trip_and_puts_the_qdisc_back");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::Fq, fq_missing(), "net_delay_adds_the_requested_round_trip_and_puts_the_qdisc_back");
    let setup = NetSetup::new();
    let before = kernel::root_qdisc(&setup.hosts.a, "veth-a");
    let v6 = SocketAddr::from((TwoHosts::B6, 7600));
    let baseline = percentile(&setup.ping(50, 10), 50.0);
    let baseline6 = percentile(&setup.ping_to(v6, 30, 10), 50.0);
    let chaos = setup.start(&["net", "delay", "--by", "100ms"]);
    assert_eq!(kernel::root_qdisc(&setup.hosts.a, "veth-a"), "fq", "chaos must put fq in place");
    let rtts = setup.ping(100, 20);
    let rtts6 = setup.ping_to(v6, 30, 20);
    drop(stop(chaos));
    let extra = percentile(&rtts, 50.0) - baseline;
    let extra6 = percentile(&rtts6, 50.0) - baseline6;
    eprintln!(
        "measured: 100 ms net delay: extra RTT p50 {extra:.2} ms (baseline {baseline:.2} ms), {} pings; IPv6 \
         {extra6:.2} ms, {} pings",
        rtts.len(),
        rtts6.len()
    );
    assert!((extra - 100.0).abs() <= 5.0, "extra RTT {extra:.2} ms, expected 100 +- 5");
    assert!((extra6 - 100.0).abs() <= 5.0, "IPv6: extra RTT {extra6:.2} ms, expected 100 +- 5");
    assert_eq!(kernel::root_qdisc(&setup.hosts.a, "veth-a"), before, "the root qdisc was not put back");
    assert_eq!(kernel::tc_programs(&setup.hosts.a, "veth-a"), 0);
}

#[test]
fn net_delay_jitter_has_the_requested_mean_and_spread() {
    require_root!("net_delay_jitter_has_the_requested_mean_and_spread");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::Fq, fq_missing(), "net_delay_jitter_has_the_requested_mean_and_spread");
    let setup = NetSetup::new();
    let baseline = percentile(&setup.ping(50, 10), 50.0);
    // Pings 60 ms apart: further apart than the jitter spreads them, so fq's in-order release
    // of a flow does not hold one behind another.
    // The spread is estimated from the interquartile range, which the round trip's own
    // occasional scheduling spikes (a busy TCG VM) barely move: a normal distribution's IQR is
    // 1.349 standard deviations; a uniform one on [-j, +j] has an IQR of j and a standard
    // deviation of j / sqrt(3), so its IQR is sqrt(3) standard deviations.
    for (distribution, expected_sd, iqr_per_sd) in
        [("normal", 20.0, 1.349), ("uniform", 20.0 / 3f64.sqrt(), 3f64.sqrt())]
    {
        let chaos = setup.start(&["net", "delay", "--by", "100ms", "--jitter", "20ms", "--distribution", distribution]);
        let extra: Vec<f64> = setup.ping(400, 60).iter().map(|rtt| rtt - baseline).collect();
        drop(stop(chaos));
        let m = percentile(&extra, 50.0);
        let sd = (percentile(&extra, 75.0) - percentile(&extra, 25.0)) / iqr_per_sd;
        eprintln!(
            "measured: {distribution} jitter: median {m:.2} ms, spread {sd:.2} ms from the IQR ({:.2} ms as a plain standard deviation; expected 100, {expected_sd:.2})",
            std_dev(&extra)
        );
        // Four standard errors of a sample median (1.2533 sd / sqrt(n)), at least 4 ms: with
        // 200 pings and a flat 4 ms, a normal jitter's median missed about one run in fifty.
        let median_tolerance = (4.0 * 1.2533 * expected_sd / (extra.len() as f64).sqrt()).max(4.0);
        assert!(
            (m - 100.0).abs() <= median_tolerance,
            "{distribution}: median {m:.2} ms, expected 100 +- {median_tolerance:.1}"
        );
        assert!(
            (sd - expected_sd).abs() <= expected_sd * 0.2 + 1.0,
            "{distribution}: spread {sd:.2} ms, expected {expected_sd:.2}"
        );
        if distribution == "uniform" {
            // Bounded to 80..120 ms; the extremes of a sample also carry the round trip's own
            // noise (a few ms under TCG), hence percentiles and a little slack.
            let (low, high) = (percentile(&extra, 2.0), percentile(&extra, 98.0));
            assert!(low >= 78.0 && high <= 124.0, "uniform delays outside 80..120 ms: p2 {low:.2}, p98 {high:.2}");
        }
    }
}

/// One interface has one delay: a second is refused while the first runs, saying which run
/// holds it, and the first stays in force.
#[test]
fn a_second_delay_on_the_same_interface_is_refused_naming_the_first() {
    require_root!("a_second_delay_on_the_same_interface_is_refused_naming_the_first");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::Fq, fq_missing(), "a_second_delay_on_the_same_interface_is_refused_naming_the_first");
    let setup = NetSetup::new();
    let baseline = percentile(&setup.ping(30, 10), 50.0);
    let first = setup.start(&["net", "delay", "--by", "50ms"]);
    let first_pid = first.pid();
    let (status, _, stderr) =
        chaos::run(&["net", "delay", "--by", "10ms", "--cgroup", setup.cgroup.path(), "--for", "5s"]);
    let extra = percentile(&setup.ping(30, 10), 50.0) - baseline;
    drop(stop(first));
    eprintln!("measured: second delay: {status}: {}; the first's extra RTT {extra:.2} ms", stderr.trim());
    assert_eq!(status.code(), Some(2), "a second delay on veth-a was not refused: {stderr}");
    assert!(
        stderr.contains("veth-a") && stderr.contains(&format!("pid {first_pid}")),
        "the refusal must name the interface and the run holding it (pid {first_pid}): {stderr}"
    );
    assert!((extra - 50.0).abs() <= 5.0, "the first delay is no longer in force: extra RTT {extra:.2} ms");
    assert_eq!(kernel::tc_programs(&setup.hosts.a, "veth-a"), 0);
}

#[test]
fn net_rate_holds_the_limit() {
    require_root!("net_rate_holds_the_limit");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::Fq, fq_missing(), "net_rate_holds_the_limit");
    let setup = NetSetup::new();
    let chaos = setup.start(&["net", "rate", "--limit", "1mbit"]);
    let rate_of = |to: SocketAddr, count: u64, frame_bytes: f64| {
        let sink = UdpSink::start(&setup.hosts.b, to.port(), 1500, true);
        let blast =
            Blast { to, sender_id: 1, count, pps: 3500, cgroup: Some(&setup.cgroup), netns: &setup.hosts.a }.run();
        assert_eq!(blast.errors, 0);
        let report = sink.finish();
        let times: Vec<u64> = report.arrivals.iter().map(|&(_, _, at, _)| at).collect();
        let span = (times.iter().max().expect("arrivals") - times.iter().min().expect("arrivals")) as f64 / 1e9;
        // What the sender managed to offer: a busy TCG guest may fall short of 3 mbit/s.
        let offered = blast.sent as f64 * frame_bytes * 8.0 / (blast.elapsed_ns as f64 / 1e9);
        (times.len() as f64 * frame_bytes * 8.0 / span, span, offered)
    };
    // About 3 mbit/s offered: 106-byte frames (64 bytes of payload + UDP, IP, Ethernet) for 4 s,
    // then IPv6 (126-byte frames) for 2 s.
    let (bits_per_second, span, offered) = rate_of(SocketAddr::from((TwoHosts::B, 7610)), 14_000, 106.0);
    let (bits_per_second6, span6, offered6) = rate_of(SocketAddr::from((TwoHosts::B6, 7611)), 7_000, 126.0);
    drop(stop(chaos));
    eprintln!(
        "measured: 1 mbit limit delivered {:.3} mbit/s over {span:.2} s (offered {:.3}); IPv6 {:.3} mbit/s over \
         {span6:.2} s (offered {:.3})",
        bits_per_second / 1e6,
        offered / 1e6,
        bits_per_second6 / 1e6,
        offered6 / 1e6
    );
    // The limit holds (never 10 % above it), and is reached whenever the sender offers more:
    // within 10 % on the host; under TCG, with other guests busy, fq's pacing timers have been
    // seen to deliver 12.5 % short (0.875 mbit/s), so 20 % there.
    let short = if on_vm() { 0.8 } else { 0.9 };
    for (family, delivered, offered) in [("IPv4", bits_per_second, offered), ("IPv6", bits_per_second6, offered6)] {
        let expected = offered.min(1e6);
        assert!(
            delivered <= 1.1e6 && delivered >= short * expected,
            "{family}: {:.3} mbit/s delivered, expected {:.3} (the 1 mbit limit or the {:.3} mbit/s offered), at most \
             10 % over, {:.0} % under",
            delivered / 1e6,
            expected / 1e6,
            offered / 1e6,
            (1.0 - short) * 100.0
        );
    }
}

/// `--queue`: a packet that would wait longer than the queue for its turn is dropped at the
/// hook, so a sender offering ten times the limit sees its datagrams wait about the queue's
/// length, not more, and most of them lost. Judged by the receiver: the median time from the
/// sender's stamp to receipt with a short and with a long queue (the median, since a busy
/// receiver reads late now and then), and how many arrived.
#[test]
fn net_rate_drops_what_would_wait_longer_than_its_queue() {
    require_root!("net_rate_drops_what_would_wait_longer_than_its_queue");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::Fq, fq_missing(), "net_rate_drops_what_would_wait_longer_than_its_queue");
    let setup = NetSetup::new();
    // 300 kbit/s against about 3 mbit/s offered: the queue is always full.
    let waits = |queue: &str, port: u16| -> (f64, u64, u64) {
        let chaos = setup.start(&["net", "rate", "--limit", "300kbit", "--queue", queue]);
        let sink = UdpSink::start(&setup.hosts.b, port, 1500, true);
        let blast = Blast {
            to: SocketAddr::from((TwoHosts::B, port)),
            sender_id: 1,
            count: 10_500,
            pps: 3500,
            cgroup: Some(&setup.cgroup),
            netns: &setup.hosts.a,
        }
        .run();
        let report = sink.finish();
        drop(stop(chaos));
        let mut waited: Vec<f64> =
            report.arrivals.iter().map(|&(_, _, at, sent)| at.saturating_sub(sent) as f64 / MS).collect();
        waited.sort_by(f64::total_cmp);
        let median = waited.get(waited.len() / 2).copied().unwrap_or(f64::NAN);
        (median, blast.sent, waited.len() as u64)
    };
    let (short_ms, short_sent, short_arrived) = waits("20ms", 7620);
    let (long_ms, long_sent, long_arrived) = waits("400ms", 7621);
    eprintln!(
        "measured: 300 kbit/s, queue 20ms: median wait {short_ms:.1} ms, {short_arrived} of {short_sent} arrived; \
         queue 400ms: median wait {long_ms:.1} ms, {long_arrived} of {long_sent} arrived"
    );
    for (queue, sent, arrived) in [("20ms", short_sent, short_arrived), ("400ms", long_sent, long_arrived)] {
        assert!(arrived > 100, "queue {queue}: only {arrived} datagrams arrived");
        assert!(arrived * 2 < sent, "queue {queue}: {arrived} of {sent} arrived: the excess was not dropped");
    }
    // A full queue of 400 ms holds each datagram about 400 ms; one of 20 ms about 20 ms. The
    // receiver's own lateness is in both and cancels in the difference.
    let slack = if on_vm() { 150.0 } else { 60.0 };
    assert!(long_ms >= 300.0 && long_ms <= 400.0 + slack, "queue 400ms: median wait {long_ms:.1} ms");
    assert!(short_ms <= 20.0 + slack, "queue 20ms: median wait {short_ms:.1} ms");
    assert!(long_ms - short_ms >= 300.0, "the queue's length sets the wait: {short_ms:.1} ms and {long_ms:.1} ms");
}

#[test]
fn net_delay_state_is_put_back_after_sigkill_by_cleanup() {
    require_root!("net_delay_state_is_put_back_after_sigkill_by_cleanup");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::Fq, fq_missing(), "net_delay_state_is_put_back_after_sigkill_by_cleanup");
    let setup = NetSetup::new();
    let before = kernel::root_qdisc(&setup.hosts.a, "veth-a");
    let chaos = setup.start(&["net", "delay", "--by", "50ms"]);
    chaos.signal(libc::SIGKILL);
    drop(chaos.wait(Duration::from_secs(10)));
    let (status, stdout, stderr) = chaos::run(&["cleanup"]);
    assert!(status.success(), "{stdout}{stderr}");
    eprintln!("measured: chaos cleanup said: {}", stdout.trim().replace('\n', "; "));
    assert!(stdout.contains("restored the"), "{stdout}");
    assert_eq!(kernel::root_qdisc(&setup.hosts.a, "veth-a"), before);
    assert_eq!(kernel::tc_programs(&setup.hosts.a, "veth-a"), 0);
}

#[test]
fn network_delay_is_refused_plainly_where_fq_is_missing() {
    require_root!("network_delay_is_refused_plainly_where_fq_is_missing");
    let _serial = chaos_tests::serialized();
    if fq_missing().is_none() {
        skip::record("network_delay_is_refused_plainly_where_fq_is_missing", "this kernel has fq: nothing to refuse");
        return;
    }
    // Doctor agrees with the kernel, and says why.
    let reason = chaos::family_unavailable("network-delay").expect("doctor says network delay works without fq");
    assert!(reason.contains("qdisc fq not available"), "{reason}");
    let setup_cgroup = TestCgroup::new();
    let (status, _, stderr) =
        chaos::run(&["net", "delay", "--cgroup", setup_cgroup.path(), "--by", "100ms", "--for", "5s"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("network delay is not supported by this kernel") && stderr.contains("fq"), "{stderr}");
}

/// A guard process started by hand; killed and reaped on Drop, so a failing test leaves no
/// process behind.
struct GuardProcess(std::process::Child);

impl Drop for GuardProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The guard of a fault attached inert (an experiment arms it later) has no time box until the
/// controller sends one: a guard slow to start must not take "none yet" for "long over" and
/// resume a task the armed fault has just stopped.
#[test]
fn the_guard_of_an_inert_fault_waits_for_its_time_box() {
    require_root!("the_guard_of_an_inert_fault_waits_for_its_time_box");
    let cgroup = TestCgroup::new();
    let target = Resident::start(&cgroup, None);
    let pid = target.pid();
    // SAFETY: stopping our own child, as the delay program would.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    wait_until_stopped(pid, Instant::now());
    let mut guard = GuardProcess(
        std::process::Command::new(chaos::chaos_bin())
            .arg("__guard")
            .arg(cgroup.dir())
            .arg("0")
            .stdin(std::process::Stdio::piped())
            // It says "ready" there once it watches.
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the guard"),
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert!(kernel::is_stopped(pid), "a guard without a time box resumed the target");
    // The time box is sent once the guard watches: sent earlier, it waits in the pipe for as long
    // as the guard takes to start (over a second in a TCG guest beside another), and the
    // lateness below would be the start's, not the guard's wait.
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(guard.0.stdout.as_mut().expect("the guard's stdout")),
        &mut ready,
    )
    .expect("read the guard's ready line");
    assert_eq!(ready.trim(), "ready", "the guard did not start");
    assert!(kernel::is_stopped(pid), "a guard without a time box resumed the target");
    let until_ns = kernel::monotonic_ns() + 300_000_000;
    let stdin = guard.0.stdin.as_mut().expect("the guard's stdin");
    std::io::Write::write_all(stdin, format!("until {until_ns}\n").as_bytes()).expect("send the time box");
    while kernel::is_stopped(pid) {
        assert!(
            kernel::monotonic_ns() < until_ns + 5_000_000_000,
            "the guard did not resume the target 5 s after its time box"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let late_ms = (kernel::monotonic_ns() as f64 - until_ns as f64) / MS;
    eprintln!("measured: the guard resumed the target {late_ms:.1} ms after the time box it was sent");
    assert!(late_ms >= 0.0, "the guard resumed the target {:.1} ms before its time box", -late_ms);
    // ...and right after it: the guard waits for the time box itself, not for a coarse poll.
    let limit_ms = if on_vm() { 500.0 } else { 50.0 };
    assert!(
        late_ms <= limit_ms,
        "the guard resumed the target {late_ms:.1} ms after its time box (limit {limit_ms} ms)"
    );
}

/// `--scope process`: the guard's time box. (Per thread, chaos's holder is a process of its own,
/// which a frozen controller does not stop: thread_delay.rs.)
#[test]
fn a_frozen_chaos_cannot_keep_a_task_stopped_past_the_time_box() {
    require_root!("a_frozen_chaos_cannot_keep_a_task_stopped_past_the_time_box");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    // A 20 s fault of 1 s delays: time to start the target (slow under TCG) well inside it.
    let mut chaos = Chaos::start(&[
        "syscall",
        "delay",
        "--syscall",
        "read",
        "--by",
        "1s",
        "--scope",
        "process",
        "--cgroup",
        cgroup.path(),
        "--for",
        "20s",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(60));
    let armed = Instant::now();
    let (mut target, pid) = start_stopped_reader(&cgroup);
    // The controller can no longer resume anyone.
    chaos.signal(libc::SIGSTOP);
    // Time box: the kernel deadline, plus the 1 s delay, plus the guard's 200 ms margin.
    while kernel::is_stopped(pid) {
        assert!(
            armed.elapsed() < Duration::from_secs(24),
            "the target is still stopped 24 s after arming a 20 s fault"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let resumed_ns = kernel::monotonic_ns();
    let resumed_at = armed.elapsed();
    let deadline_ns: u64 = chaos
        .stderr_so_far()
        .lines()
        .find_map(|l| l.split("kernel deadline CLOCK_MONOTONIC ns=").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("chaos -v logs its deadline");
    let after_deadline_ms = (resumed_ns as f64 - deadline_ns as f64) / 1e6;
    chaos.signal(libc::SIGCONT);
    drop(chaos.wait(Duration::from_secs(20)));
    assert!(target.wait().expect("wait").success());
    eprintln!(
        "measured: with chaos frozen, the guard resumed the target {after_deadline_ms:.0} ms after the kernel deadline \
         ({:.2} s after arming; time box: deadline + 1 s delay + 200 ms)",
        resumed_at.as_secs_f64()
    );
    assert!(
        (1000.0..=3000.0).contains(&after_deadline_ms),
        "the guard must resume at the time box (deadline + 1.2 s), not {after_deadline_ms:.0} ms after the deadline"
    );
}

#[test]
fn the_kernel_ends_a_net_delay_at_its_deadline_even_if_chaos_is_frozen() {
    require_root!("the_kernel_ends_a_net_delay_at_its_deadline_even_if_chaos_is_frozen");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::Fq, fq_missing(), "the_kernel_ends_a_net_delay_at_its_deadline_even_if_chaos_is_frozen");
    let setup = NetSetup::new();
    let baseline = percentile(&setup.ping(30, 10), 50.0);
    let started_ns = kernel::monotonic_ns();
    let mut chaos =
        Chaos::start(&["net", "delay", "--by", "100ms", "--cgroup", setup.cgroup.path(), "--for", "3s", "-v"]);
    chaos.wait_until_armed(Duration::from_secs(60));
    // Only the kernel can end the fault now: the controller cannot run its own timer.
    chaos.signal(libc::SIGSTOP);
    let armed_ns = kernel::monotonic_ns();
    let deadline_ns = chaos::logged_deadline_ns(&chaos.stderr_so_far());
    chaos::assert_deadline_is_for(deadline_ns, started_ns, armed_ns, Duration::from_secs(3));
    // A ping every 20 ms (every round trip while delayed) until 1 s past the deadline.
    let left_ms = deadline_ns.saturating_sub(armed_ns) / 1_000_000;
    let count = (left_ms / 100 + 1000 / 20).to_string();
    let to = SocketAddr::from((TwoHosts::B, 7600)).to_string();
    let pings = workload_json(
        &["udp-ping", "--to", &to, "--count", &count, "--interval-ms", "20"],
        Some(&setup.cgroup),
        Some(&setup.hosts.a),
    );
    chaos.signal(libc::SIGCONT);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "chaos thawed after its deadline: {stderr}");
    let extra: Vec<f64> = numbers(&pings, "rtts_ns").iter().map(|ns| ns / MS - baseline).collect();
    let sent = numbers(&pings, "sent_ns");
    let first_fast = extra.iter().position(|&ms| ms < 50.0).expect("every ping was delayed");
    let during = percentile(&extra[..first_fast], 50.0);
    let after = percentile(&extra[first_fast..], 50.0);
    let after_ms = (sent[first_fast] - deadline_ns as f64) / MS;
    eprintln!(
        "measured: extra RTT with chaos frozen, before the deadline {during:.2} ms ({first_fast} pings), after it \
         {after:.2} ms; the first undelayed ping left {after_ms:.1} ms after the kernel deadline"
    );
    assert!(first_fast >= 3, "only {first_fast} pings were delayed before the deadline");
    assert!(during > 90.0, "the delay was not in force before the deadline: {during:.2} ms");
    assert!(after < 10.0, "the delay outlived its deadline: {after:.2} ms");
    assert!(extra[first_fast..].iter().all(|&ms| ms < 50.0), "a ping was delayed after an undelayed one");
    // A ping sent just before the deadline may leave the interface just after it.
    assert!(after_ms >= -10.0, "the delay ended {:.1} ms before its deadline", -after_ms);
    assert!(after_ms <= 250.0, "the delay outlived its deadline by {after_ms:.1} ms (limit 250 ms)");
}
