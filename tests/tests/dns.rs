//! `chaos dns fail | drop | delay | spoof` on a real kernel with real DNS: a dnsmasq resolver on
//! the loopback of a test network namespace (127.0.0.1 and ::1, answering only the test zone,
//! forwarding nowhere), and real clients in a test cgroup there: glibc's getaddrinfo
//! (`chaos-workload resolve`, with a private resolv.conf) and `dig` (bind9-dnsutils), over UDP
//! and TCP, IPv4 and IPv6. What the clients got is what is asserted; chaos's counters are checked
//! against it. The VM tiers run the tests that need glibc and dnsmasq only (the guests carry no
//! dig: its libraries are 59 MB); the delay test's 10 ms bounds are the host's.
use std::time::Duration;

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    dns::{Dnsmasq, Resolve, Transport, ZONE, ZONE_V4, ZONE_V6, dig, dig_with, quantile, zone_v4, zone_v6},
    kernel,
    net::Netns,
    require_root,
    workload::{Resident, command_in, workload_bin},
};

/// The name the faults take, and one they leave alone (both resolve through the test zone).
fn taken() -> String {
    format!("api.{ZONE}")
}

fn other() -> String {
    format!("db.{ZONE}")
}

/// Tests that run on the host tier only, with the reason.
macro_rules! host_tier_only {
    ($test:expr, $why:expr) => {
        chaos_tests::skip_if!(chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")), $test, $why);
    };
}

const NEEDS_DIG: &str = "uses dig, which the VM guests do not carry (59 MB of libraries); glibc's client runs there";

/// A test network namespace with the zone's resolver, and a target cgroup with a member there.
struct Setup {
    netns: Netns,
    _resolver: Dnsmasq,
    cgroup: TestCgroup,
    _member: Resident,
}

impl Setup {
    fn new() -> Self {
        let netns = Netns::new();
        let resolver = Dnsmasq::zone(&netns);
        let cgroup = TestCgroup::new();
        let member = Resident::start(&cgroup, Some(&netns));
        Self { netns, _resolver: resolver, cgroup, _member: member }
    }

    /// `chaos dns <args> --cgroup <target> --for 5m --output json -v`, armed.
    fn start(&self, args: &[&str]) -> Chaos {
        let mut full = vec!["dns"];
        full.extend_from_slice(args);
        chaos::start_fault(&full, &self.cgroup)
    }

    /// glibc lookups of `name` through `server`, in the target or beside it.
    fn lookup(&self, name: &str, server: &str, inside: bool) -> chaos_tests::dns::Lookup {
        let cgroup = inside.then_some(&self.cgroup);
        Resolve::once(name, server).run(&self.netns, cgroup).remove(0)
    }
}

fn counters(report: &serde_json::Value) -> (u64, u64, u64) {
    let c = &report["counters"][0];
    assert_eq!(c["direction"], "queries", "{report}");
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("no {k} in {report}"));
    (n("seen"), n("matched"), n("injected"))
}

/// The core test (every tier): matching names get the rcode inside the target, over UDP and
/// TCP, IPv4 and IPv6; other names resolve inside it; the same names resolve beside it; the
/// client sees its own resolver answer; nothing stays attached.
#[test]
fn a_failed_name_gets_its_rcode_inside_the_target_only_over_udp_tcp_and_ipv6() {
    require_root!("a_failed_name_gets_its_rcode_inside_the_target_only_over_udp_tcp_and_ipv6");
    let setup = Setup::new();
    let (taken, other) = (taken(), other());
    let chaos = setup.start(&["fail", "--name", &format!("API.{ZONE}."), "--rcode", "nxdomain"]);

    let mut asked = 0;
    for server in ["127.0.0.1", "::1"] {
        for tcp in [false, true] {
            let inside =
                |name: &str| Resolve { tcp, ..Resolve::once(name, server) }.run(&setup.netns, Some(&setup.cgroup));
            let failed = inside(&taken).remove(0);
            assert_eq!(failed.error.as_deref(), Some("EAI_NONAME"), "{taken} via {server} tcp={tcp}: {failed:?}");
            let resolved = inside(&other).remove(0);
            assert!(resolved.ok, "{other} via {server} tcp={tcp} must resolve inside the target: {resolved:?}");
            assert_eq!(resolved.addresses.iter().filter(|a| *a == ZONE_V4 || *a == ZONE_V6).count(), 2, "{resolved:?}");
            // glibc asks A and AAAA for each lookup.
            asked += 2;
        }
        let beside = setup.lookup(&taken, server, false);
        assert!(beside.ok, "{taken} must resolve beside the target (via {server}): {beside:?}");
    }
    // A second DNS fault on the target would get none of its queries: refused, naming the first.
    let (status, _, stderr) =
        chaos::run(&["dns", "drop", "--cgroup", setup.cgroup.path(), "--name", &other, "--for", "10s"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("do not compose"), "{stderr}");
    let report = chaos.stop_json();
    let (seen, matched, failed) = counters(&report);
    eprintln!("measured: dns fail: seen {seen}, matched {matched}, failed {failed}");
    assert_eq!((matched, failed), (asked, asked), "{report}");
    assert_eq!(seen, 2 * asked, "the other name's queries are seen too: {report}");
    assert_eq!(kernel::cgroup_programs(setup.cgroup.dir()), 0, "programs left on the target cgroup");
    let after = setup.lookup(&taken, "127.0.0.1", true);
    assert!(after.ok, "{taken} must resolve again once chaos is gone: {after:?}");
}

/// dig over UDP and TCP, IPv4 and IPv6: SERVFAIL and REFUSED as asked, the answer reported as
/// its own resolver's, a `--type` that leaves the other type alone.
#[test]
fn dig_sees_the_asked_code_from_its_own_resolver_and_only_for_the_asked_type() {
    let test = "dig_sees_the_asked_code_from_its_own_resolver_and_only_for_the_asked_type";
    require_root!(test);
    host_tier_only!(test, NEEDS_DIG);
    let setup = Setup::new();
    let (taken, other) = (taken(), other());
    for (rcode, status) in [("servfail", "SERVFAIL"), ("refused", "REFUSED")] {
        let chaos = setup.start(&["fail", "--name", &taken, "--rcode", rcode, "--type", "A"]);
        for (server, transport) in [
            ("127.0.0.1", Transport::Udp),
            ("127.0.0.1", Transport::Tcp),
            ("::1", Transport::Udp),
            ("::1", Transport::Tcp),
        ] {
            let inside =
                |name: &str, qtype: &str| dig(&setup.netns, Some(&setup.cgroup), server, name, qtype, transport);
            let failed = inside(&taken, "A");
            assert_eq!(failed.status.as_deref(), Some(status), "{taken} A via {server} {transport:?}: {failed:?}");
            let proto = if transport == Transport::Tcp { "TCP" } else { "UDP" };
            assert_eq!(
                failed.server.as_deref(),
                Some(format!("{server}#53({server}) ({proto})").as_str()),
                "{failed:?}"
            );
            let aaaa = inside(&taken, "AAAA");
            assert_eq!(
                (aaaa.status.as_deref(), aaaa.answers.as_slice()),
                (Some("NOERROR"), [ZONE_V6.to_owned()].as_slice()),
                "--type A leaves AAAA alone: {aaaa:?}"
            );
            let resolved = inside(&other, "A");
            assert_eq!(resolved.answers, [ZONE_V4], "{other} via {server} {transport:?}: {resolved:?}");
        }
        let beside = dig(&setup.netns, None, "127.0.0.1", &taken, "A", Transport::Udp);
        assert_eq!(beside.answers, [ZONE_V4], "beside the target: {beside:?}");
        let (_, matched, failed) = counters(&chaos.stop_json());
        assert_eq!((matched, failed), (4, 4), "{rcode}");
    }
}

/// spoof: exactly the given addresses, per type, with the given TTL; other types of the name
/// and other names still go to the resolver; nobody else is lied to.
#[test]
fn spoof_answers_exactly_the_given_addresses() {
    let test = "spoof_answers_exactly_the_given_addresses";
    require_root!(test);
    host_tier_only!(test, NEEDS_DIG);
    let setup = Setup::new();
    let (taken, other) = (taken(), other());
    let chaos = setup.start(&[
        "spoof",
        "--name",
        &format!("*.{ZONE}"),
        "--address",
        "10.9.9.9,10.9.9.8",
        "--address",
        "fd00::99",
    ]);
    let inside =
        |name: &str, qtype: &str| dig(&setup.netns, Some(&setup.cgroup), "127.0.0.1", name, qtype, Transport::Udp);
    let a = inside(&taken, "A");
    assert_eq!(
        (a.status.as_deref(), a.answers.clone()),
        (Some("NOERROR"), vec!["10.9.9.9".to_owned(), "10.9.9.8".to_owned()]),
        "{a:?}"
    );
    assert_eq!(a.ttls, [1, 1], "a short TTL (1 s by default): {a:?}");
    assert_eq!(inside(&other, "AAAA").answers, ["fd00::99"]);
    // TXT goes to the resolver: the same answer as beside the target (dnsmasq refuses what its
    // zone does not hold and it cannot forward).
    let txt = inside(&taken, "TXT");
    let txt_beside = dig(&setup.netns, None, "127.0.0.1", &taken, "TXT", Transport::Udp);
    assert_eq!((txt.status.as_deref(), &txt.answers), (txt_beside.status.as_deref(), &txt_beside.answers), "{txt:?}");
    assert!(txt.status.is_some(), "{txt:?}");
    let glibc = setup.lookup(&taken, "::1", true);
    let mut addresses = glibc.addresses.clone();
    addresses.sort();
    assert_eq!(addresses, ["10.9.9.8", "10.9.9.9", "fd00::99"], "{glibc:?}");
    let beside = setup.lookup(&taken, "127.0.0.1", false);
    assert!(beside.addresses.contains(&ZONE_V4.to_owned()), "beside the target: {beside:?}");
    let (_, matched, spoofed) = counters(&chaos.stop_json());
    assert_eq!((matched, spoofed), (4, 4), "dig's A and AAAA, glibc's A and AAAA (TXT goes to the resolver)");
}

/// delay: the real answer, `--by` late (p50 within 10 ms of it), the jitter within its bounds,
/// other names at once.
#[test]
fn delay_gives_the_real_answer_late_by_the_asked_time() {
    let test = "delay_gives_the_real_answer_late_by_the_asked_time";
    require_root!(test);
    host_tier_only!(test, "its bounds (p50 within 10 ms) are the host's; TCG guests' timers are coarser");
    let setup = Setup::new();
    let (taken, other) = (taken(), other());
    let lookups = |name: &str| {
        let run = Resolve { count: 20, family: "4", ..Resolve::once(name, "127.0.0.1") };
        run.run(&setup.netns, Some(&setup.cgroup))
    };
    let chaos = setup.start(&["delay", "--name", &taken, "--by", "200ms"]);
    let late = lookups(&taken);
    let quick = lookups(&other);
    let report = chaos.stop_json();
    assert!(late.iter().all(|l| l.addresses == [ZONE_V4]), "the real answer: {late:?}");
    let ms = |ls: &[chaos_tests::dns::Lookup], p| {
        quantile(&ls.iter().map(|l| l.elapsed_us).collect::<Vec<_>>(), p) as f64 / 1000.0
    };
    eprintln!(
        "measured: dns delay 200ms: p50 {:.1} ms, p99 {:.1} ms; other names p50 {:.2} ms",
        ms(&late, 0.5),
        ms(&late, 0.99),
        ms(&quick, 0.5)
    );
    assert!((ms(&late, 0.5) - 200.0).abs() <= 10.0, "p50 {:.1} ms, asked 200 ms", ms(&late, 0.5));
    assert!(ms(&quick, 0.5) < 10.0, "names it does not take are not delayed: p50 {:.1} ms", ms(&quick, 0.5));
    assert_eq!(counters(&report), (40, 20, 20));

    let chaos = setup.start(&["delay", "--name", &taken, "--by", "200ms", "--jitter", "50ms"]);
    let jittered = lookups(&taken);
    drop(chaos.stop_json());
    let times: Vec<f64> = jittered.iter().map(|l| l.elapsed_us as f64 / 1000.0).collect();
    let (min, max) = (times.iter().copied().fold(f64::MAX, f64::min), times.iter().copied().fold(0.0, f64::max));
    let over = times.iter().filter(|&&t| t > 260.0).count();
    eprintln!("measured: dns delay 200ms +- 50ms: min {min:.1} ms, max {max:.1} ms, {over} of 20 over 260 ms");
    // Never earlier than --by - --jitter (the responder sleeps at least that); later only by
    // the scheduler's tail on a shared machine, which no bound here can promise.
    assert!(min >= 150.0, "a delay under 200 - 50 ms: {times:?}");
    assert!(max - min > 30.0, "20 draws of +- 50 ms spread more than that: {times:?}");
    assert!(over <= 4, "most delays stay within 200 + 50 ms (+10 ms): {times:?}");
}

/// drop: no answer, the client times out; other names answer at once.
#[test]
fn drop_makes_the_client_time_out() {
    let test = "drop_makes_the_client_time_out";
    require_root!(test);
    host_tier_only!(test, NEEDS_DIG);
    let setup = Setup::new();
    let (taken, other) = (taken(), other());
    let chaos = setup.start(&["drop", "--name", &taken]);
    for transport in [Transport::Udp, Transport::Tcp] {
        let dropped = dig_with(&setup.netns, Some(&setup.cgroup), "127.0.0.1", &taken, "A", transport, 1);
        assert_eq!(dropped.status, None, "no answer over {transport:?}: {dropped:?}");
        assert!(dropped.elapsed >= Duration::from_secs(1), "dig gave up before its 1 s: {dropped:?}");
    }
    let glibc =
        Resolve { timeout_s: 1, ..Resolve::once(&taken, "127.0.0.1") }.run(&setup.netns, Some(&setup.cgroup)).remove(0);
    assert_eq!(glibc.error.as_deref(), Some("EAI_AGAIN"), "{glibc:?}");
    assert!(glibc.elapsed_us >= 1_000_000, "glibc gave up before its 1 s timeout: {glibc:?}");
    let resolved = dig(&setup.netns, Some(&setup.cgroup), "127.0.0.1", &other, "A", Transport::Udp);
    assert_eq!(resolved.answers, [ZONE_V4]);
    assert!(resolved.elapsed < Duration::from_millis(900), "{resolved:?}");
    let (_, matched, dropped) = counters(&chaos.stop_json());
    assert_eq!((matched, dropped), (4, 4), "dig UDP, dig TCP, glibc's A and AAAA");
}

/// `--percent 30` over 1000 lookups: the share that failed is 30 % within 4.5 standard
/// deviations of a binomial (sd 14.5 lookups), and equal to chaos's count.
#[test]
fn percent_30_fails_about_30_percent_of_lookups() {
    let test = "percent_30_fails_about_30_percent_of_lookups";
    require_root!(test);
    let setup = Setup::new();
    let taken = taken();
    let chaos = setup.start(&["fail", "--name", &taken, "--rcode", "nxdomain", "--percent", "30"]);
    let run = Resolve { count: 1000, family: "4", ..Resolve::once(&taken, "127.0.0.1") };
    let lookups = run.run(&setup.netns, Some(&setup.cgroup));
    let (_, matched, injected) = counters(&chaos.stop_json());
    let failed = lookups.iter().filter(|l| l.error.as_deref() == Some("EAI_NONAME")).count() as u64;
    let ok = lookups.iter().filter(|l| l.ok).count() as u64;
    eprintln!("measured: dns fail --percent 30: {failed} of 1000 lookups failed");
    assert_eq!(failed + ok, 1000, "every lookup either failed as asked or resolved");
    assert!((235..=365).contains(&failed), "{failed} of 1000 failed, expected 300 +- 65");
    assert_eq!((matched, injected), (1000, failed));
}

/// A caching dnsmasq between the target and the zone's server: its cache is warm, then the
/// server goes away; beside the target the name still resolves (from the cache), inside it the
/// fault answers, because it sits at the target's sockets, in front of the cache.
#[test]
fn a_caching_resolver_in_between_does_not_hide_the_fault() {
    let test = "a_caching_resolver_in_between_does_not_hide_the_fault";
    require_root!(test);
    let netns = Netns::new();
    let upstream =
        Dnsmasq::start(&netns, &["127.0.0.2"], &["--cache-size=0", "--local-ttl=300", &zone_v4(), &zone_v6()]);
    let _cache = Dnsmasq::start(&netns, &["127.0.0.1"], &["--cache-size=1000", "--server=127.0.0.2"]);
    let cgroup = TestCgroup::new();
    let _member = Resident::start(&cgroup, Some(&netns));
    let taken = taken();
    let warm = Resolve::once(&taken, "127.0.0.1").run(&netns, None).remove(0);
    assert!(warm.ok, "{warm:?}");
    drop(upstream);
    let cached = Resolve::once(&taken, "127.0.0.1").run(&netns, None).remove(0);
    assert!(cached.ok, "the cache answers without its server: {cached:?}");
    let chaos = chaos::start_fault(&["dns", "fail", "--name", &taken, "--rcode", "nxdomain"], &cgroup);
    let inside = Resolve::once(&taken, "127.0.0.1").run(&netns, Some(&cgroup)).remove(0);
    let beside = Resolve::once(&taken, "127.0.0.1").run(&netns, None).remove(0);
    drop(chaos.stop_json());
    assert_eq!(inside.error.as_deref(), Some("EAI_NONAME"), "the cache hid the fault: {inside:?}");
    assert!(beside.ok, "beside the target the cache still answers: {beside:?}");
}

/// The kernel ends the redirection at the deadline by itself: chaos is frozen (SIGSTOP) before
/// it, so its responder answers nothing; after the deadline new lookups reach the resolver.
#[test]
fn the_kernel_deadline_ends_the_fault_while_chaos_is_frozen() {
    let test = "the_kernel_deadline_ends_the_fault_while_chaos_is_frozen";
    require_root!(test);
    let setup = Setup::new();
    let taken = taken();
    let mut chaos = Chaos::start(&[
        "dns",
        "fail",
        "--cgroup",
        setup.cgroup.path(),
        "--name",
        &taken,
        "--rcode",
        "nxdomain",
        "--for",
        "4s",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(60));
    let deadline_ns = chaos::logged_deadline_ns(&chaos.stderr_so_far());
    assert_eq!(setup.lookup(&taken, "127.0.0.1", true).error.as_deref(), Some("EAI_NONAME"));
    chaos.signal(libc::SIGSTOP);
    while kernel::monotonic_ns() < deadline_ns {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = setup.lookup(&taken, "127.0.0.1", true);
    assert_eq!(kernel::cgroup_programs(setup.cgroup.dir()), 8, "chaos is frozen: its programs are still attached");
    chaos.signal(libc::SIGCONT);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(30));
    assert!(after.ok, "past the kernel deadline the lookup must reach the resolver: {after:?}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(kernel::cgroup_programs(setup.cgroup.dir()), 0);
}

/// SIGKILL of chaos: the fd-owned links go with it, so lookups work again at once (the first
/// lookup that starts after the kill resolves) and nothing stays attached. A lookup in flight
/// on a socket sent to the dead responder fails once (glibc opens a socket per lookup).
#[test]
fn sigkill_lets_lookups_through_at_once_and_leaves_nothing_attached() {
    let test = "sigkill_lets_lookups_through_at_once_and_leaves_nothing_attached";
    require_root!(test);
    let setup = Setup::new();
    let taken = taken();
    let chaos = setup.start(&["drop", "--name", &taken]);
    // 60 lookups 50 ms apart (about 3 s), each giving up after 1 s; chaos dies 1 s in.
    let run = Resolve { count: 60, gap_ms: 50, family: "4", timeout_s: 1, ..Resolve::once(&taken, "127.0.0.1") };
    let args = run.args();
    let looping = command_in(workload_bin(), Some(&setup.cgroup), Some(&setup.netns))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the lookups");
    std::thread::sleep(Duration::from_secs(1));
    let killed_ns = kernel::monotonic_ns();
    chaos.signal(libc::SIGKILL);
    // The kernel drops the links with the process's last file descriptor.
    let mut detached_ms = None;
    while kernel::monotonic_ns() < killed_ns + 1_000_000_000 {
        if kernel::cgroup_programs(setup.cgroup.dir()) == 0 {
            detached_ms = Some((kernel::monotonic_ns() - killed_ns) as f64 / 1e6);
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (status, _, _) = chaos.wait(Duration::from_secs(10));
    assert_eq!(status.code(), None, "killed by a signal");
    // A lookup started now, beside the loop: it must resolve at once.
    let fresh = setup.lookup(&taken, "127.0.0.1", true);
    let output = looping.wait_with_output().expect("the lookups");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("resolve report");
    let lookups = chaos_tests::dns::parse_lookups(&report);
    let started_after: Vec<_> = lookups.iter().filter(|l| l.at_ns > killed_ns).collect();
    let in_flight: Vec<_> =
        lookups.iter().filter(|l| l.at_ns <= killed_ns && l.at_ns + l.elapsed_us * 1000 > killed_ns).collect();
    eprintln!(
        "measured: SIGKILL: links gone {detached_ms:?} ms after it; a lookup started then resolved in {:.1} ms; {} \
         lookups of a loop started after the kill, {} failed; {} in flight at the kill failed",
        fresh.elapsed_us as f64 / 1000.0,
        started_after.len(),
        started_after.iter().filter(|l| !l.ok).count(),
        in_flight.iter().filter(|l| !l.ok).count()
    );
    assert!(detached_ms.is_some(), "programs still attached 1 s after SIGKILL");
    assert!(fresh.ok && fresh.elapsed_us < 1_000_000, "a lookup after the kill resolves at once: {fresh:?}");
    assert!(lookups.iter().filter(|l| l.at_ns < killed_ns).all(|l| !l.ok), "dropped while chaos lived");
    assert!(started_after.len() >= 10, "{lookups:?}");
    assert!(started_after.iter().all(|l| l.ok), "every lookup started after the kill resolves: {started_after:?}");
    // The one in flight was sent to the responder before it died: it waits out its timeout.
    assert!(in_flight.len() <= 1, "{in_flight:?}");
}

/// Bad input: exit 2, the flag named with what to do, and nothing attached (strace sees no
/// attach, link or map write).
#[test]
fn bad_input_exits_2_naming_the_flag_and_attaches_nothing() {
    let test = "bad_input_exits_2_naming_the_flag_and_attaches_nothing";
    require_root!(test);
    let setup = Setup::new();
    let target = setup.cgroup.path();
    let cases: &[(&[&str], &str)] = &[
        (&["fail", "--name", "api.chaos.test", "--rcode", "bogus"], "--rcode"),
        (&["fail", "--name", "", "--rcode", "nxdomain"], "--name"),
        (&["fail", "--name", "a..chaos.test", "--rcode", "nxdomain"], "--name"),
        (&["fail", "--name", "a chaos.test", "--rcode", "nxdomain"], "--name"),
        (&["spoof", "--name", "api.chaos.test", "--address", "10.0.0.300"], "--address"),
        (&["spoof", "--name", "api.chaos.test", "--address", "10.0.0.1", "--type", "TXT"], "--type"),
        (&["spoof", "--name", "api.chaos.test", "--address", "fd00::1", "--type", "A"], "--type"),
        (&["delay", "--name", "api.chaos.test", "--by", "100ms", "--jitter", "200ms"], "--jitter"),
        (&["fail", "--name", "api.chaos.test", "--rcode", "nxdomain", "--type", "BOGUS"], "--type"),
    ];
    for (args, flag) in cases {
        let mut full = vec!["dns"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--cgroup", target, "--for", "30s"]);
        let (status, stderr, changes) = chaos::run_watching_attaches(&full);
        assert_eq!(status.code(), Some(2), "{args:?} must exit 2: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: the error must name {flag}: {stderr}");
        assert!(changes.is_empty(), "{args:?} changed the kernel: {changes:?}");
    }
    assert_eq!(kernel::cgroup_programs(setup.cgroup.dir()), 0);
}

/// `--dry-run --output json` shows the eight programs on the target cgroup and the responder,
/// and attaches nothing; `--trace-injections` names the query, the answer and the process.
#[test]
fn dry_run_shows_the_plan_and_tracing_names_who_asked_what() {
    let test = "dry_run_shows_the_plan_and_tracing_names_who_asked_what";
    require_root!(test);
    // The asking process is found through the query socket's cookie, which sock_diag gives.
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().as_deref() == Some("vm-6.1-errinj"),
        test,
        "the 6.1-errinj build has no CONFIG_INET_DIAG: sock_diag cannot find the asking socket"
    );
    let setup = Setup::new();
    let taken = taken();
    let target = setup.cgroup.path();
    let (status, stdout, stderr) = chaos::run(&[
        "dns",
        "fail",
        "--cgroup",
        target,
        "--name",
        &taken,
        "--rcode",
        "servfail",
        "--for",
        "1m",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert!(status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let hooks: Vec<&str> =
        plan["programs"].as_array().expect("programs").iter().map(|p| p["hook"].as_str().unwrap_or("?")).collect();
    assert_eq!(hooks.len(), 8, "{plan}");
    assert!(hooks.contains(&"dns/connect4") && hooks.contains(&"dns/recvmsg6"), "{hooks:?}");
    assert!(plan["companion"].as_str().is_some_and(|c| c.contains("DNS responder")), "{plan}");
    assert_eq!(plan["parameters"]["rcode"], "SERVFAIL", "{plan}");
    assert_eq!(kernel::cgroup_programs(setup.cgroup.dir()), 0, "a dry run attaches nothing");

    let chaos = setup.start(&["fail", "--name", &taken, "--rcode", "servfail", "--trace-injections"]);
    let lookup =
        Resolve { family: "4", ..Resolve::once(&taken, "127.0.0.1") }.run(&setup.netns, Some(&setup.cgroup)).remove(0);
    assert_eq!(lookup.error.as_deref(), Some("EAI_AGAIN"), "SERVFAIL is a temporary failure to glibc: {lookup:?}");
    let report = chaos.stop_json();
    let samples = report["hits"]["samples"].as_array().unwrap_or_else(|| panic!("no samples: {report}"));
    assert_eq!(samples.len(), 1, "{report}");
    let hit = &samples[0];
    assert_eq!(
        (hit["dns"]["name"].as_str(), hit["dns"]["type"].as_str(), hit["dns"]["answer"].as_str()),
        (Some(taken.as_str()), Some("A"), Some("SERVFAIL")),
        "{hit}"
    );
    assert_eq!(hit["comm"], "chaos-workload", "the process that asked: {hit}");
    assert!(hit["pid"].as_u64().is_some_and(|pid| pid > 0), "{hit}");
    assert_eq!(
        (hit["remote"].as_str(), hit["remote_port"].as_u64()),
        (Some("127.0.0.1"), Some(53)),
        "its resolver: {hit}"
    );
}

/// An experiment file with `kind = "dns fail"` runs through the experiment runner: attached
/// inert, armed at its start, the lookups fail only in its window, counts in the timeline.
#[test]
fn an_experiment_runs_a_dns_fault_in_its_window() {
    let test = "an_experiment_runs_a_dns_fault_in_its_window";
    require_root!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let setup = Setup::new();
    let taken = taken();
    let scratch = TempDir::new();
    let file = scratch.file(
        "dns.toml",
        &format!(
            r#"
name = "lookups under a DNS outage"
target = {{ cgroup = "{cgroup}" }}
duration = "6s"

[[fault]]
kind = "dns fail"
name = ["{taken}"]
rcode = "nxdomain"
start = "1s"
duration = "3s"
"#,
            cgroup = setup.cgroup.path()
        ),
    );
    let timeline = scratch.join("dns.jsonl");
    let mut run = Chaos::start(&["run", file.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()]);
    // Lookups from the start to the end of the run, however long attaching takes (TCG guests).
    let batch = Resolve { count: 5, gap_ms: 100, family: "4", timeout_s: 1, ..Resolve::once(&taken, "127.0.0.1") };
    let mut lookups = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while run.is_running() && std::time::Instant::now() < deadline {
        lookups.extend(batch.run(&setup.netns, Some(&setup.cgroup)));
    }
    let (status, stdout, stderr) = run.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let failed = lookups.iter().filter(|l| !l.ok).count();
    eprintln!("measured: experiment: {failed} of {} lookups failed (the fault's window is 3 s)", lookups.len());
    // One window: resolved before it, failed in it, resolved after it (how many of each depends
    // on the machine's speed, not on chaos).
    let first_failed = lookups.iter().position(|l| !l.ok).expect("lookups failed during the fault's window");
    let last_failed = lookups.iter().rposition(|l| !l.ok).expect("a last failure");
    assert!(first_failed > 0 && last_failed + 1 < lookups.len(), "resolved before and after the window");
    assert!(
        lookups[first_failed..=last_failed].iter().all(|l| l.error.as_deref() == Some("EAI_NONAME")),
        "one window of NXDOMAIN"
    );
    let events = chaos_tests::read_timeline(&timeline);
    let detach = events.iter().find(|e| e["event"] == "detach").expect("a detach event");
    let outcomes: String = lookups.iter().map(|l| if l.ok { '.' } else { 'x' }).collect();
    assert_eq!(detach["injected"].as_u64(), Some(failed as u64), "{detach}; lookups (x failed): {outcomes}");
    assert_eq!(kernel::cgroup_programs(setup.cgroup.dir()), 0);
}

/// A container on a user-defined network of a private dockerd asks Docker's embedded DNS
/// (127.0.0.11, reachable only in the container's namespace): a failed name gets NXDOMAIN in
/// the target container, its other lookups (another container's name) are answered by Docker,
/// and the same name resolves from another container on the network.
#[test]
fn a_container_asking_dockers_embedded_dns_loses_only_its_own_lookups() {
    let test = "a_container_asking_dockers_embedded_dns_loses_only_its_own_lookups";
    require_root!(test);
    host_tier_only!(test, "the VM guests have no container runtime (busybox userland)");
    let Some((_rootfs, docker)) = chaos_tests::runtimes::private_docker(test) else { return };
    let network = chaos_tests::unique_name("chaos-dns");
    docker.cli(&["network", "create", &network]).expect("a user-defined network in the private dockerd");
    let names = ["target", "web", "db"].map(chaos_tests::unique_name);
    for name in &names {
        let args =
            ["run", "-d", "--name", name, "--network", &network, chaos_tests::runtimes::IMAGE, "/bin/sleep", "600"];
        docker.cli(&args).unwrap_or_else(|e| panic!("container {name}: {e}"));
    }
    let [target, web, db] = &names;
    let lookup = |container: &str, name: &str| {
        let report = docker
            .cli(&["exec", container, "/chaos-workload", "resolve", "--name", name, "--family", "4"])
            .unwrap_or_else(|e| panic!("resolve {name} in {container}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));
        chaos_tests::dns::parse_lookups(&json).remove(0)
    };
    let resolv = docker.cli(&["exec", target, "cat", "/etc/resolv.conf"]).expect("the container's resolv.conf");
    assert!(resolv.contains("nameserver 127.0.0.11"), "Docker's embedded DNS: {resolv}");
    let before = lookup(target, web);
    assert!(before.ok, "Docker's embedded DNS answers container names: {before:?}");

    let env = chaos_tests::runtimes::only_runtime("DOCKER_HOST", docker.host());
    let args = [
        "dns",
        "fail",
        "--container",
        target,
        "--name",
        web,
        "--rcode",
        "nxdomain",
        "--for",
        "5m",
        "--output",
        "json",
        "-v",
    ];
    let mut chaos = Chaos::start_with_env(&args, &env);
    chaos.wait_until_armed(Duration::from_secs(60));
    let failed = lookup(target, web);
    let other = lookup(target, db);
    let beside = lookup(db, web);
    let report = chaos.stop_json();
    assert_eq!(failed.error.as_deref(), Some("EAI_NONAME"), "{failed:?}");
    assert!(other.ok, "another name, answered by Docker through the responder: {other:?}");
    assert_eq!(beside.addresses, before.addresses, "from another container the name still resolves: {beside:?}");
    assert_eq!(counters(&report), (2, 1, 1), "{report}");
}
