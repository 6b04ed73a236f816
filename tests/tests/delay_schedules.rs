//! `syscall delay` schedules and jitter at run time (host tier: the schedule is counted in the
//! body the sys_enter and fentry hooks share, and delay.rs runs both hooks on their tiers): which
//! calls are held (`--every`, `--max`, `--after`, `--first`), exactly,
//! and how long (`--jitter`: uniform around `--by`, by its mean, spread and range), as the
//! calling program timed each call. The calls are getppid(2), which no program's start-up makes,
//! so the workload's own calls are the only ones the schedule counts.
use chaos_tests::{cgroup::TestCgroup, chaos, require_root, stats::SIGMAS, workload::workload_json};

/// `count` getppid calls from the cgroup under `chaos syscall delay --syscall getppid <args>`:
/// each call's latency in ms.
fn delayed_getppids(cgroup: &TestCgroup, args: &[&str], count: u64) -> Vec<f64> {
    let mut full = vec!["syscall", "delay", "--syscall", "getppid"];
    full.extend_from_slice(args);
    let chaos = chaos::start_fault(&full, cgroup);
    let report = workload_json(&["getppid-loop", "--count", &count.to_string()], Some(cgroup), None);
    drop(chaos.stop_json());
    report["latencies_ns"].as_array().expect("latencies").iter().map(|l| l.as_u64().expect("ns") as f64 / 1e6).collect()
}

/// The call numbers (from 1) that took at least `threshold_ms`.
fn held(latencies: &[f64], threshold_ms: f64) -> Vec<usize> {
    latencies.iter().enumerate().filter(|&(_, &ms)| ms >= threshold_ms).map(|(i, _)| i + 1).collect()
}

#[test]
fn every_and_max_hold_exactly_the_scheduled_calls() {
    let test = "every_and_max_hold_exactly_the_scheduled_calls";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    let cgroup = TestCgroup::new();
    let latencies = delayed_getppids(&cgroup, &["--by", "200ms", "--every", "4", "--max", "5"], 30);
    // A held call takes at least the delay (the task is stopped until then); one not held takes
    // microseconds, or a few scheduler slices on a loaded machine: half the delay tells them
    // apart (100 ms, several times the slices a load of 10 on two cores gives a waiting task).
    let held_calls = held(&latencies, 100.0);
    eprintln!("measured: --every 4 --max 5: calls held {held_calls:?}");
    assert_eq!(held_calls, [4, 8, 12, 16, 20], "latencies (ms): {latencies:.2?}");
    for call in held_calls {
        assert!(latencies[call - 1] >= 200.0, "call {call} held {:.2} ms, less than --by 200ms", latencies[call - 1]);
    }
}

#[test]
fn after_and_first_hold_exactly_the_calls_between_them() {
    let test = "after_and_first_hold_exactly_the_calls_between_them";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    let cgroup = TestCgroup::new();
    let latencies = delayed_getppids(&cgroup, &["--by", "200ms", "--after", "3", "--first", "2"], 12);
    let held_calls = held(&latencies, 100.0);
    eprintln!("measured: --after 3 --first 2: calls held {held_calls:?}");
    assert_eq!(held_calls, [4, 5], "latencies (ms): {latencies:.2?}");
}

#[test]
fn jitter_spreads_the_delays_uniformly_around_the_delay() {
    let test = "jitter_spreads_the_delays_uniformly_around_the_delay";
    require_root!(test);
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        test,
        "it judges the spread of real-time latencies, which under TCG are the emulator's"
    );
    const BY: f64 = 40.0;
    const JITTER: f64 = 20.0;
    const CALLS: u64 = 100;
    let cgroup = TestCgroup::new();
    let latencies = delayed_getppids(&cgroup, &["--by", "40ms", "--jitter", "20ms"], CALLS);
    let n = latencies.len() as f64;
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let quantile = |q: f64| sorted[((q * n) as usize).min(sorted.len() - 1)];
    let (lowest, p5, p50, p95) = (sorted[0], quantile(0.05), quantile(0.5), quantile(0.95));
    // Uniform on [20, 60] ms. What the stop and the resume add to a call (the resume is a
    // timer's wake-up: under a millisecond on the host, tens of ms for a few calls in a hundred
    // on a loaded machine, more under TCG) only ever makes it longer, so every check is on the
    // side that such noise cannot help: no call under 20 ms (a jitter wider than 20 ms, or
    // one not centred on --by, puts calls there); the 5th percentile (22 ms for the uniform; its
    // estimate from 100 draws has a standard deviation of sqrt(0.05 * 0.95 / 100) * 40 = 0.87
    // ms) not above 22 ms plus five of those and 3 ms of noise (a jitter of 10 ms puts it at
    // 31 ms, none at 40); the 95th percentile (58 ms) not below 58 ms minus five of those (a
    // jitter of 10 ms: 49 ms). The upper end is not bounded: a loaded machine's late wake-ups
    // pushed the 95th percentile to 78 ms once, and a too-wide jitter already fails below.
    let sd_p = (0.05f64 * 0.95 / n).sqrt() * 2.0 * JITTER;
    eprintln!(
        "measured: --by 40ms --jitter 20ms over {CALLS} calls: lowest {lowest:.2} ms, 5th percentile {p5:.2}, median \
         {p50:.2}, 95th percentile {p95:.2} (uniform: 20, 22, 40, 58)"
    );
    assert!(lowest >= BY - JITTER, "a call held {lowest:.2} ms, less than --by minus --jitter");
    assert!(
        p5 <= BY - JITTER + 2.0 + SIGMAS * sd_p + 3.0,
        "the 5th percentile is {p5:.2} ms: the delays do not spread down"
    );
    assert!(
        p95 >= BY + JITTER - 2.0 - SIGMAS * sd_p,
        "the 95th percentile is {p95:.2} ms: the delays do not spread up"
    );
}
