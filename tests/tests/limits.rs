//! `chaos limit cpu|memory|io|pids` on a real kernel, shown with the kernel's own counters and
//! real workloads: a busy loop's CPU share (cpu.stat), a toucher under memory.high
//! (memory.events, memory.pressure), an OOM kill inside the target only, a writer throttled by
//! io.max while its other thread keeps its pace, forks refused by pids.max; every value put
//! back at the end, within a second of a SIGKILL (the guard), through `chaos cleanup` when the
//! guard died too, and a value someone else changed during the fault left alone.
//!
//! Every `chaos limit` cleans the ledger of dead runs as it starts, so the tests hold
//! `may_clean_stale_runs()` and the one that leaves a record for `chaos cleanup` holds
//! `leaves_a_stale_run()`.
//!
//! They need the cgroup v2 controllers, which the VM tiers have (each test's parent delegates
//! them, see chaos_tests::controllers); on the host they are bound to cgroup v1, and the test
//! there is the refusal.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    os::unix::process::ExitStatusExt as _,
    process::{Child, ChildStdout, Stdio},
    time::{Duration, Instant},
};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    controllers::{Delegated, test_disk},
    require_root, skip,
    workload::{command_in, workload_bin},
};

/// A process killed (and reaped) on Drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A workload in `cgroup` (None: where the test runs) with its stdout piped.
fn workload(cgroup: Option<&TestCgroup>, args: &[&str]) -> (Process, BufReader<ChildStdout>) {
    let mut child = command_in(workload_bin(), cgroup, None)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {args:?}: {e}"));
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    (Process(child), stdout)
}

/// Reads lines until one equals `line` (or the workload ends, which fails the test).
fn wait_for_line(stdout: &mut BufReader<ChildStdout>, line: &str) {
    let mut text = String::new();
    loop {
        text.clear();
        assert!(stdout.read_line(&mut text).expect("read the workload") > 0, "the workload ended before {line:?}");
        if text.trim() == line {
            return;
        }
    }
}

/// The target with `controllers` delegated by its parent; None (the test skipped, saying why)
/// where the hierarchy has no such controllers: the host, whose test is the refusal.
fn delegated(test: &str, controllers: &[&str]) -> Option<Delegated> {
    match Delegated::new(controllers) {
        Ok(delegated) => Some(delegated),
        Err(why) => {
            skip::record(test, &format!("{why}; this tier shows the refusal instead"));
            None
        }
    }
}

/// A flat keyed value of a cgroup file (`cpu.stat usage_usec`).
fn keyed(cgroup: &TestCgroup, file: &str, key: &str) -> u64 {
    let text = fs::read_to_string(cgroup.dir().join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {file}: {text}"))
}

/// The CPUs `cgroup` used over `window`, from the kernel's cpu.stat.
fn cpu_share(cgroup: &TestCgroup, window: Duration) -> f64 {
    let (start, used) = (Instant::now(), keyed(cgroup, "cpu.stat", "usage_usec"));
    std::thread::sleep(window);
    (keyed(cgroup, "cpu.stat", "usage_usec") - used) as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// `some total` of a pressure file, in microseconds.
fn pressure_total_us(cgroup: &TestCgroup, resource: &str) -> u64 {
    let text = fs::read_to_string(cgroup.dir().join(format!("{resource}.pressure"))).expect("pressure file");
    text.lines()
        .find(|l| l.starts_with("some"))
        .and_then(|l| l.split_whitespace().find_map(|p| p.strip_prefix("total=")?.parse().ok()))
        .expect("some total=")
}

/// Polls `ready` every 5 ms for at most `timeout`; how long it took, or None.
fn within(timeout: Duration, mut ready: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    ready().then(|| start.elapsed())
}

fn start_limit(args: &[&str], target: &TestCgroup, duration: &str) -> Chaos {
    let mut full = vec!["limit"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--cgroup", target.path(), "--for", duration, "--output", "json", "-v"]);
    let mut chaos = Chaos::start(&full);
    chaos.wait_until_armed(Duration::from_secs(60));
    chaos
}

fn json(stdout: &str, stderr: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr: {stderr}"))
}

/// The events of one kind (`what`) in a limit's JSON report.
fn events<'a>(report: &'a serde_json::Value, what: &str) -> Vec<&'a serde_json::Value> {
    report["events"].as_array().expect("events").iter().filter(|e| e["what"] == what).collect()
}

#[test]
fn a_busy_loop_gets_the_cpu_share_asked_and_a_full_cpu_again_after() {
    require_root!("a_busy_loop_gets_the_cpu_share_asked_and_a_full_cpu_again_after");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("a_busy_loop_gets_the_cpu_share_asked_and_a_full_cpu_again_after", &["cpu"]) else {
        return;
    };
    let _serial = chaos_tests::serialized();
    let target = cg.target();
    let (_burner, _burner_out) = workload(Some(target), &["burn"]);
    // The best of three seconds, before and after: another test's chaos starting up takes a
    // vCPU for a moment.
    let best_second = || (0..3).map(|_| cpu_share(target, Duration::from_secs(1))).fold(0.0, f64::max);
    let before = best_second();
    let throttled_before = keyed(target, "cpu.stat", "nr_throttled");
    let chaos = start_limit(&["cpu", "--to", "25%"], target, "20s");
    assert_eq!(cg.read("cpu.max"), "25000 100000", "the kernel's cpu.max while the limit holds");
    std::thread::sleep(Duration::from_secs(1));
    let during = cpu_share(target, Duration::from_secs(6));
    let throttled = keyed(target, "cpu.stat", "nr_throttled") - throttled_before;
    let (status, stdout, stderr) = chaos::run(&["status", "--output", "json"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("cpu.max of"), "chaos status lists the limit and its file: {stdout}");
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    assert_eq!(cg.read("cpu.max"), "max 100000", "cpu.max is back");
    let after = best_second();
    let report = json(&stdout, &stderr);
    eprintln!(
        "measured: CPU share {before:.3} before, {during:.3} during --to 25% ({throttled} periods throttled), \
         {after:.3} after; chaos's evidence: during {}",
        report["evidence"]["during"]
    );
    assert!((during - 0.25).abs() <= 0.05, "the target got {during:.3} CPU under --to 25%");
    assert!(throttled > 0, "the kernel throttled no period");
    assert!(before >= 0.9 && after >= 0.9, "a full CPU before ({before:.3}) and after ({after:.3})");
    let evidence = report["evidence"]["during"]["cpu_used"].as_f64().expect("cpu_used in the evidence");
    assert!((evidence - 0.25).abs() <= 0.05, "chaos's own evidence says {evidence}");
    assert_eq!(events(&report, "restore")[0]["outcome"], "restored", "{report}");
    // The live line (every 5 s in a log): the figures while it holds.
    assert!(stderr.contains("limit cpu: used 0."), "no live line: {stderr}");
}

#[test]
fn memory_high_reclaims_and_slows_a_toucher_without_killing_it() {
    require_root!("memory_high_reclaims_and_slows_a_toucher_without_killing_it");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("memory_high_reclaims_and_slows_a_toucher_without_killing_it", &["memory"]) else {
        return;
    };
    let target = cg.target();
    let chaos = start_limit(&["memory", "--high", "100M"], target, "5m");
    assert_eq!(cg.read("memory.high"), (100u64 << 20).to_string());
    let (high_before, pressure_before) = (keyed(target, "memory.events", "high"), pressure_total_us(target, "memory"));
    let (mut toucher, mut stdout) = workload(Some(target), &["touch-memory", "--mib", "300"]);
    // From the limit on (100 MiB of its own, and the program's memory beside), it is slowed down.
    wait_for_line(&mut stdout, "touched 100");
    std::thread::sleep(Duration::from_secs(5));
    let high = keyed(target, "memory.events", "high") - high_before;
    let stalled_ms = (pressure_total_us(target, "memory") - pressure_before) / 1000;
    let current = keyed(target, "memory.stat", "anon");
    assert!(toucher.0.try_wait().expect("try_wait").is_none(), "the toucher died under memory.high");
    let report = chaos.stop_json();
    assert_eq!(cg.read("memory.high"), "max", "memory.high is back");
    // Without the limit the toucher gets its 300 MiB at once.
    wait_for_line(&mut stdout, "done");
    eprintln!(
        "measured: under memory.high 100M, a 300 MiB toucher 5 s past 100 MiB: memory.events high +{high}, memory pressure \
         {stalled_ms} ms stalled, anon {} MiB; chaos's evidence: {}",
        current >> 20,
        report["evidence"]["during"]
    );
    assert!(high > 0, "memory.events high did not move");
    assert!(stalled_ms > 0, "memory.pressure did not rise");
    assert_eq!(keyed(target, "memory.events", "oom_kill"), 0, "nothing was killed");
    assert!(report["evidence"]["during"]["memory_high_events"].as_u64().unwrap_or(0) > 0, "{report}");
}

#[test]
fn oom_kills_the_targets_largest_process_and_nothing_outside() {
    require_root!("oom_kills_the_targets_largest_process_and_nothing_outside");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("oom_kills_the_targets_largest_process_and_nothing_outside", &["memory"]) else {
        return;
    };
    let target = cg.target();
    let (mut big, mut big_out) = workload(Some(target), &["touch-memory", "--mib", "300"]);
    wait_for_line(&mut big_out, "done");
    let (mut small, mut small_out) = workload(Some(target), &["touch-memory", "--mib", "8"]);
    wait_for_line(&mut small_out, "done");
    let elsewhere = TestCgroup::new();
    let (mut bystander, mut bystander_out) = workload(Some(&elsewhere), &["touch-memory", "--mib", "300"]);
    wait_for_line(&mut bystander_out, "done");
    let (status, stdout, stderr) =
        chaos::run(&["limit", "memory", "--cgroup", target.path(), "--oom", "--for", "2s", "--output", "json"]);
    assert!(status.success(), "{stderr}");
    let report = json(&stdout, &stderr);
    let oom = events(&report, "oom-kill");
    eprintln!(
        "measured: --oom: memory.events oom_kill {}; chaos: {}",
        keyed(target, "memory.events", "oom_kill"),
        oom[0]
    );
    assert_eq!(keyed(target, "memory.events", "oom_kill"), 1, "exactly one OOM kill, by the kernel");
    let status = big.0.wait().expect("wait for the largest process");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the largest process was OOM-killed");
    assert!(small.0.try_wait().expect("try_wait").is_none(), "the small process of the target lives");
    assert!(bystander.0.try_wait().expect("try_wait").is_none(), "the process outside the target lives");
    assert_eq!(cg.read("memory.max"), "max", "memory.max is back");
    assert_eq!(oom[0]["kills"], 1, "{report}");
    assert_eq!(report["evidence"]["during"]["oom_kills"], 1, "{report}");
    assert_eq!(oom[0]["gone"][0]["pid"], big.0.id(), "{report}");
}

/// (median, largest) of nanosecond figures, in ms.
fn median_and_max_ms(values: &[u64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    (sorted[sorted.len() / 2] as f64 / 1e6, *sorted.last().expect("values") as f64 / 1e6)
}

/// Writes completed by the whole disk (`/sys/block/NAME/stat`, field 5).
fn disk_writes(name: &str) -> u64 {
    let stat = fs::read_to_string(format!("/sys/block/{name}/stat")).expect("disk stat");
    stat.split_whitespace().nth(4).and_then(|w| w.parse().ok()).expect("writes field")
}

fn io_stat_wios(target: &TestCgroup) -> u64 {
    let text = fs::read_to_string(target.dir().join("io.stat")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.strip_prefix("wios=")?.parse::<u64>().ok()).sum()
}

#[test]
fn write_iops_hold_only_the_writing_thread_while_another_thread_keeps_its_pace() {
    let test = "write_iops_hold_only_the_writing_thread_while_another_thread_keeps_its_pace";
    require_root!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated(test, &["io"]) else { return };
    let Some(disk) = test_disk() else {
        skip::record(test, "this tier has no disk of its own to throttle (the VM tiers give their guests one)");
        return;
    };
    let _serial = chaos_tests::serialized();
    let target = cg.target();
    let file = disk.join(chaos_tests::unique_name("writes"));
    let file = file.to_str().expect("path");
    let writer = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["disk-writer", "--file", file, "--count", "40"];
        args.extend_from_slice(extra);
        let output = command_in(workload_bin(), Some(target), None).args(&args).output().expect("run the disk writer");
        assert!(output.status.success(), "disk-writer {extra:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("disk-writer JSON")
    };
    let ns = |report: &serde_json::Value, key: &str| -> Vec<u64> {
        report[key].as_array().expect(key).iter().map(|v| v.as_u64().expect("ns")).collect()
    };
    let free = writer(&["--fsync"]);
    let chaos = start_limit(
        &["io", "--device", "auto", "--path", disk.to_str().expect("path"), "--write-iops", "20"],
        target,
        "3m",
    );
    let disk_name = fs::read_to_string(target.dir().join("io.max"))
        .ok()
        .and_then(|max| max.split_whitespace().next().map(str::to_owned))
        .and_then(|id| fs::canonicalize(format!("/sys/dev/block/{id}")).ok())
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .expect("io.max names the disk");
    let (device_before, target_before) = (disk_writes(&disk_name), io_stat_wios(target));
    let fsynced = writer(&["--fsync"]);
    let (device_after, target_after) = (disk_writes(&disk_name), io_stat_wios(target));
    let direct = writer(&["--direct"]);
    let report = chaos.stop_json();
    let _ = fs::remove_file(file);
    // Per operation on average: the throttle holds the rate (a token bucket), so single waits
    // vary (a burst goes through, the next waits longer) while the mean holds.
    let mean_ms = |report: &serde_json::Value| report["elapsed_ns"].as_u64().expect("elapsed") as f64 / 1e6 / 40.0;
    let (free_mean, fsync_mean, direct_mean) = (mean_ms(&free), mean_ms(&fsynced), mean_ms(&direct));
    let (fsync_median, _) = median_and_max_ms(&ns(&fsynced, "op_ns"));
    let (beat_median, beat_max) = median_and_max_ms(&ns(&fsynced, "heartbeat_gaps_ns"));
    let beats = ns(&fsynced, "heartbeat_gaps_ns").len();
    let elapsed_s = fsynced["elapsed_ns"].as_u64().expect("elapsed") as f64 / 1e9;
    let (device, charged) = (device_after - device_before, target_after - target_before);
    eprintln!(
        "measured: write+fsync {free_mean:.1} ms free, {fsync_mean:.1} ms at --write-iops 20 (median \
         {fsync_median:.1}); O_DIRECT write {direct_mean:.1} ms; the other thread's wake-ups every {beat_median:.1} ms (largest gap {beat_max:.1} ms, \
         {beats} in {elapsed_s:.1} s); 40 write+fsync: the disk completed {device} writes, {charged} charged to the \
         target (io.stat), {} elsewhere (the journal, by jbd2)",
        device.saturating_sub(charged)
    );
    // At least the throttle's 50 ms (less a burst's worth); at most what a busy guest makes of it.
    let most = 150.0_f64.max(2.0 * free_mean);
    assert!((42.0..=most).contains(&fsync_mean), "a write+fsync took {fsync_mean:.1} ms at 20 writes a second");
    assert!((42.0..=most).contains(&direct_mean), "an O_DIRECT write took {direct_mean:.1} ms at 20 a second");
    // The other thread does no disk I/O: it wakes every 10 ms (a busy guest adds a few), never
    // held the writer's 50 ms; were it held with the writer, half its gaps would be 50 ms.
    assert!(beat_median < 25.0, "the other thread's pace: every {beat_median:.1} ms");
    assert!(beat_max < 250.0, "the other thread stalled {beat_max:.1} ms");
    assert!(charged > 0, "io.stat charged the target nothing");
    assert_eq!(events(&report, "restore")[0]["outcome"], "restored", "{report}");
    assert!(fs::read_to_string(target.dir().join("io.max")).expect("io.max").trim().is_empty(), "io.max is back");
}

#[test]
fn pids_max_makes_fork_fail_with_eagain_inside_and_not_outside() {
    require_root!("pids_max_makes_fork_fail_with_eagain_inside_and_not_outside");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("pids_max_makes_fork_fail_with_eagain_inside_and_not_outside", &["pids"]) else {
        return;
    };
    let target = cg.target();
    let (_holder, _) = workload(Some(target), &["sleep", "--secs", "120"]);
    let chaos = start_limit(&["pids", "--max", "1"], target, "2m");
    let probe = |cgroup: Option<&TestCgroup>| -> serde_json::Value {
        let output =
            command_in(workload_bin(), cgroup, None).args(["fork-probe", "--count", "3"]).output().expect("probe");
        serde_json::from_slice(&output.stdout).expect("fork-probe JSON")
    };
    let inside = probe(Some(target));
    let outside = probe(Some(&TestCgroup::new()));
    let refused = keyed(target, "pids.events", "max");
    let report = chaos.stop_json();
    let after = probe(Some(target));
    eprintln!(
        "measured: fork under pids.max 1: inside {inside}, outside {outside}, after {after}; pids.events max {refused}"
    );
    assert_eq!(inside["errors"]["EAGAIN"], 3, "every fork in the target failed with EAGAIN: {inside}");
    assert_eq!(outside["ok"], 3, "forks outside the target work: {outside}");
    assert!(refused >= 3, "pids.events max counted {refused}");
    assert_eq!(after["ok"], 3, "forks work again once the limit is lifted: {after}");
    assert_eq!(cg.read("pids.max"), "max");
    assert!(report["evidence"]["during"]["forks_refused"].as_u64().unwrap_or(0) >= 3, "{report}");
}

/// The guard process chaos started (a child of `chaos` running `__guard`).
fn guard_of(chaos: &Chaos) -> i32 {
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", chaos.pid())).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("__guard"))
        })
        .expect("chaos has a guard process")
}

#[test]
fn sigkill_of_chaos_puts_every_value_back_within_a_second_and_leaves_a_changed_one_alone() {
    let test = "sigkill_of_chaos_puts_every_value_back_within_a_second_and_leaves_a_changed_one_alone";
    require_root!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated(test, &["cpu", "memory"]) else { return };
    // What kubelet or systemd had set: it must come back exactly.
    cg.write("cpu.max", "50000 100000");
    let cpu = start_limit(&["cpu", "--to", "25%"], cg.target(), "5m");
    let memory = start_limit(&["memory", "--high", "100M", "--max", "300M"], cg.target(), "5m");
    assert_eq!(cg.read("cpu.max"), "25000 100000");
    assert_eq!(cg.read("memory.max"), (300u64 << 20).to_string());
    // Someone else changes memory.max during the fault: theirs to keep.
    cg.write("memory.max", &(400u64 << 20).to_string());
    cpu.signal(libc::SIGKILL);
    memory.signal(libc::SIGKILL);
    let back =
        within(Duration::from_secs(3), || cg.read("cpu.max") == "50000 100000" && cg.read("memory.high") == "max");
    let (_, _, cpu_stderr) = cpu.wait(Duration::from_secs(10));
    let (_, _, memory_stderr) = memory.wait(Duration::from_secs(10));
    eprintln!("measured: every value back {back:?} after the SIGKILL of chaos");
    let back = back.unwrap_or_else(|| {
        panic!(
            "not back 3 s after SIGKILL: cpu.max {}, memory.high {}\n{cpu_stderr}\n{memory_stderr}",
            cg.read("cpu.max"),
            cg.read("memory.high")
        )
    });
    assert!(back <= Duration::from_secs(1), "the values came back {back:?} after the SIGKILL");
    assert_eq!(cg.read("memory.max"), (400u64 << 20).to_string(), "the value someone else set stays");
}

#[test]
fn cleanup_puts_a_value_back_when_chaos_and_its_guard_both_died() {
    require_root!("cleanup_puts_a_value_back_when_chaos_and_its_guard_both_died");
    let Some(cg) = delegated("cleanup_puts_a_value_back_when_chaos_and_its_guard_both_died", &["pids"]) else {
        return;
    };
    // Every other chaos limit cleans the ledger as it starts: none may, until this test has.
    let _stale = chaos_tests::leaves_a_stale_run();
    let chaos = start_limit(&["pids", "--max", "5"], cg.target(), "5m");
    // SAFETY: kill(2) on the guard this test's chaos started.
    unsafe { libc::kill(guard_of(&chaos), libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    chaos.signal(libc::SIGKILL);
    let _ = chaos.wait(Duration::from_secs(10));
    assert_eq!(cg.read("pids.max"), "5", "nobody was left to put it back");
    let (status, stdout, stderr) = chaos::run(&["cleanup"]);
    assert!(status.success(), "{stdout}{stderr}");
    eprintln!("measured: chaos cleanup said: {stdout}");
    assert_eq!(cg.read("pids.max"), "max", "chaos cleanup put it back");
    assert!(stdout.contains("pids.max of") && stdout.contains("put back max"), "{stdout}");
}

#[test]
fn a_value_changed_during_the_fault_is_left_alone_and_the_summary_says_so() {
    require_root!("a_value_changed_during_the_fault_is_left_alone_and_the_summary_says_so");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("a_value_changed_during_the_fault_is_left_alone_and_the_summary_says_so", &["pids"])
    else {
        return;
    };
    let target = cg.target();
    let mut chaos = Chaos::start(&["limit", "pids", "--cgroup", target.path(), "--max", "50", "--for", "5m", "-v"]);
    chaos.wait_until_armed(Duration::from_secs(60));
    cg.write("pids.max", "77");
    chaos.signal(libc::SIGTERM);
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert_eq!(cg.read("pids.max"), "77", "the value someone else set stays");
    assert!(stdout.contains("left pids.max as someone else set it during the fault (77"), "{stdout}");
    assert!(stdout.contains("not every file was put back"), "{stdout}");
}

#[test]
fn a_dry_run_shows_the_files_their_values_now_and_to_be_and_writes_nothing() {
    require_root!("a_dry_run_shows_the_files_their_values_now_and_to_be_and_writes_nothing");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) =
        delegated("a_dry_run_shows_the_files_their_values_now_and_to_be_and_writes_nothing", &["cpu", "memory"])
    else {
        return;
    };
    cg.write("cpu.max", "50000 50000");
    cg.write("memory.max", &(400u64 << 20).to_string());
    let path = cg.target().path();
    let (status, stdout, stderr) =
        chaos::run(&["limit", "cpu", "--cgroup", path, "--to", "25%", "--for", "1m", "--dry-run"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("cpu.max: now 50000 50000, would be 12500 50000"), "{stdout}");
    assert!(stdout.contains("dry run: nothing written"), "{stdout}");
    let (status, stdout, stderr) = chaos::run(&[
        "limit",
        "memory",
        "--cgroup",
        path,
        "--high",
        "50%",
        "--for",
        "1m",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert!(status.success(), "{stderr}");
    let plan = json(&stdout, &stderr);
    let write = &plan["parameters"]["writes"][0];
    assert_eq!(write["now"], "max", "{plan}");
    assert_eq!(write["value"], (200u64 << 20).to_string(), "50% of the target's own memory.max: {plan}");
    assert!(write["note"].as_str().unwrap_or_default().contains("of memory.max 400 MiB"), "{plan}");
    assert_eq!(cg.read("cpu.max"), "50000 50000", "a dry run writes nothing");
    assert_eq!(cg.read("memory.high"), "max", "a dry run writes nothing");
}

#[test]
fn a_target_without_the_controller_is_refused_with_the_reason_and_the_fix() {
    require_root!("a_target_without_the_controller_is_refused_with_the_reason_and_the_fix");
    let _stale = chaos_tests::may_clean_stale_runs();
    // A parent that delegates nothing, as on a host whose controllers are bound to cgroup v1 or
    // under a parent that keeps them to itself.
    let parent = TestCgroup::new();
    let target = parent.child("target");
    let (status, _, stderr) = chaos::run(&["limit", "cpu", "--cgroup", target.path(), "--to", "25%", "--for", "10s"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let root = chaos_tests::cgroup::cgroup2_mount();
    let root_has_cpu = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default().contains("cpu");
    eprintln!("measured: the refusal: {}", stderr.trim());
    if root_has_cpu {
        assert!(stderr.contains("does not list it in cgroup.subtree_control"), "{stderr}");
        assert!(stderr.contains("echo +cpu >"), "{stderr}");
    } else {
        assert!(stderr.contains("bound to cgroup v1") || stderr.contains("does not offer it"), "{stderr}");
        assert!(stderr.contains("Fix:") || stderr.contains("does not offer it"), "{stderr}");
    }
    assert!(stderr.contains("never enables") || !root_has_cpu, "{stderr}");
    assert!(!target.dir().join("cpu.max").exists(), "nothing enabled a controller for the target");
}

#[test]
fn bad_input_exits_2_naming_the_flag_and_what_to_do() {
    require_root!("bad_input_exits_2_naming_the_flag_and_what_to_do");
    let _stale = chaos_tests::may_clean_stale_runs();
    let target = TestCgroup::new();
    let path = target.path();
    let over = format!("{}%", (std::thread::available_parallelism().map_or(2, |n| n.get()) + 1) * 100);
    let cases: [(&[&str], &str); 6] = [
        (&["cpu", "--to", "0"], "--to <SHARE>"),
        (&["cpu", "--to", &over], "more than the"),
        (&["memory", "--high", "lots"], "--high <SIZE|PERCENT>"),
        (&["io", "--device", "no-such-disk", "--write-iops", "20"], "--device no-such-disk"),
        (&["pids", "--max", "0"], "--max <N>"),
        (&["io", "--device", "auto", "--write-iops", "20"], "--device auto needs --path"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["limit"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--cgroup", path, "--for", "10s"]);
        let (status, _, stderr) = chaos::run(&full);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn an_experiment_ramps_a_cpu_limit_down_and_reports_pressure_over_time() {
    require_root!("an_experiment_ramps_a_cpu_limit_down_and_reports_pressure_over_time");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("an_experiment_ramps_a_cpu_limit_down_and_reports_pressure_over_time", &["cpu"]) else {
        return;
    };
    // Its busy loop would take the other test's CPU share test's CPU.
    let _serial = chaos_tests::serialized();
    let target = cg.target();
    let (_burner, _burner_out) = workload(Some(target), &["burn"]);
    let dir = TempDir::new();
    // Steps 3 s apart: arming starts the guard process, which takes a while in a busy guest.
    let file = dir.file(
        "ramp.toml",
        &format!(
            "name = \"cpu squeeze\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"12s\"\n\n[[fault]]\nkind = \"limit \
             cpu\"\nto = \"20%\"\nramp = {{ steps = 4, from = \"80%\" }}\n",
            target.path()
        ),
    );
    let timeline = dir.join("run.jsonl");
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().expect("path"), "--timeline", timeline.to_str().expect("path")]);
    assert!(status.success(), "{stdout}{stderr}");
    let events = chaos_tests::read_timeline(&timeline);
    let limit = |what: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["event"] == "limit" && e["what"] == what).collect()
    };
    let set: Vec<&str> = limit("set").iter().map(|e| e["value"].as_str().expect("value")).collect();
    let samples = limit("sample");
    eprintln!("measured: the ramp wrote {set:?}; {} samples", samples.len());
    let story: Vec<String> = events
        .iter()
        .filter(|e| ["limit", "ramp", "arm", "detach"].contains(&e["event"].as_str().unwrap_or_default()))
        .filter(|e| e["what"] != "sample")
        .map(ToString::to_string)
        .collect();
    assert_eq!(set, ["80000 100000", "60000 100000", "40000 100000", "20000 100000"], "{}", story.join("\n"));
    assert!(samples.len() >= 8, "{} samples in 12 s", samples.len());
    assert!(samples.iter().any(|s| s["pressure"]["cpu"]["avg10"].as_f64().unwrap_or(0.0) > 0.0), "no pressure seen");
    assert_eq!(limit("restore")[0]["outcome"], "restored");
    assert_eq!(cg.read("cpu.max"), "max 100000", "cpu.max is back");
    let html = dir.join("run.html");
    let (status, _, stderr) =
        chaos::run(&["report", timeline.to_str().expect("path"), "--html", html.to_str().expect("path")]);
    assert!(status.code().is_some_and(|c| c <= 1), "{stderr}");
    let page = fs::read_to_string(&html).expect("the HTML report");
    assert!(page.contains("Pressure on the limited target") && page.contains("cpu pressure"), "no pressure chart");
}

/// `chaos status` names a running limit, and `chaos stop ID` ends it as SIGTERM does: the value
/// is put back, the run reports and exits 143, as every one-shot fault stopped so.
#[test]
fn chaos_stop_ends_a_limit_listed_by_status_and_its_value_is_put_back() {
    require_root!("chaos_stop_ends_a_limit_listed_by_status_and_its_value_is_put_back");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("chaos_stop_ends_a_limit_listed_by_status_and_its_value_is_put_back", &["pids"]) else {
        return;
    };
    let target = cg.target();
    let chaos = start_limit(&["pids", "--max", "5"], target, "5m");
    assert_eq!(cg.read("pids.max"), "5", "the limit is in force once chaos says it is armed");
    let (status, stdout, stderr) = chaos::run(&["status", "--output", "json"]);
    assert!(status.success(), "{stderr}");
    let listed: serde_json::Value = json(&stdout, &stderr);
    let ours = listed["experiments"]
        .as_array()
        .expect("experiments")
        .iter()
        .find(|row| row["pid"] == chaos.pid())
        .unwrap_or_else(|| panic!("chaos status does not list the limit run (pid {}): {stdout}", chaos.pid()))
        .clone();
    assert_eq!(ours["kind"], "one-shot", "{ours}");
    assert_eq!(ours["name"], "limit pids", "{ours}");
    let id = ours["id"].as_str().expect("an id");
    let stopped = Instant::now();
    let (status, stdout, stderr) = chaos::run(&["stop", id]);
    assert!(status.success(), "chaos stop {id}: {stdout}{stderr}");
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(30));
    eprintln!("measured: chaos stop to the limit's exit {:?}", stopped.elapsed());
    assert_eq!(status.code(), Some(143), "a limit ended by chaos stop reports and exits 143 (SIGTERM): {stderr}");
    let report = json(&stdout, &stderr);
    assert_eq!(events(&report, "restore")[0]["outcome"], "restored", "{report}");
    assert_eq!(cg.read("pids.max"), "max", "pids.max is back");
    let (_, stdout, _) = chaos::run(&["status", "--output", "json"]);
    assert!(!stdout.contains(&format!("\"{id}\"")), "the run's record is gone: {stdout}");
}

/// The daemon runs a limit as it runs any experiment kind: in force during each run (forks in
/// the target fail), the value put back when the run's duration is over and when the daemon ends.
#[test]
fn a_daemon_run_limits_the_target_and_puts_the_value_back_when_the_run_ends() {
    require_root!("a_daemon_run_limits_the_target_and_puts_the_value_back_when_the_run_ends");
    let _stale = chaos_tests::may_clean_stale_runs();
    let Some(cg) = delegated("a_daemon_run_limits_the_target_and_puts_the_value_back_when_the_run_ends", &["pids"])
    else {
        return;
    };
    let target = cg.target();
    let (_holder, _) = workload(Some(target), &["sleep", "--secs", "300"]);
    let dir = TempDir::new();
    dir.file(
        "experiment.toml",
        "name = \"fork squeeze\"\ntarget = { cgroup = \"/placeholder\" }\nduration = \"4s\"\n\n[[fault]]\nkind = \
         \"limit pids\"\nmax = 1\n",
    );
    let config = dir.file(
        "daemon.toml",
        &format!(
            "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n[schedule]\nevery \
             = \"6s\"\n[budget]\nmax_runs_per_hour = 1000\n\n[[experiment]]\nfile = \"experiment.toml\"\ntargets = {{ \
             cgroup = \"{}\" }}\n",
            target.path()
        ),
    );
    let daemon = Chaos::start(&["daemon", "--config", config.to_str().expect("utf-8")]);
    let fork_probe = || -> serde_json::Value {
        let output = command_in(workload_bin(), Some(target), None)
            .args(["fork-probe", "--count", "2"])
            .output()
            .expect("probe");
        serde_json::from_slice(&output.stdout).expect("fork-probe JSON")
    };
    let set = within(Duration::from_secs(60), || cg.read("pids.max") == "1");
    assert!(set.is_some(), "no daemon run set pids.max within 60 s: {}", daemon.stderr_so_far());
    let during = fork_probe();
    let back = within(Duration::from_secs(30), || cg.read("pids.max") == "max");
    eprintln!("measured: the daemon's run set pids.max after {set:?}; forks during it {during}; back after {back:?}");
    assert_eq!(during["errors"]["EAGAIN"], 2, "forks in the target failed during the daemon's run: {during}");
    assert!(back.is_some(), "pids.max was not put back when the 4 s run ended: {}", daemon.stderr_so_far());
    daemon.signal(libc::SIGTERM);
    let (status, _, stderr) = daemon.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "the daemon ends cleanly on SIGTERM: {stderr}");
    assert_eq!(cg.read("pids.max"), "max", "nothing is left limited after the daemon");
    assert!(fork_probe()["ok"] == 2, "forks work in the target after the daemon");
}
