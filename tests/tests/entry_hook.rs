//! Where syscall delay and crash points catch the call (`--hook`): fentry on the one syscall's
//! entry function where the kernel has BPF trampolines (the VM tiers), the raw sys_enter
//! tracepoint elsewhere (the host refuses tracing programs) and whenever asked for. Both paths
//! are run for real where both exist: the calls held, the process killed, other calls untouched,
//! and the kernel's own list of programs says which one was attached.
use std::{path::Path, process::Stdio};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self},
    kernel, require_root, skip,
    workload::{command_in, workload_bin, workload_json},
};

const MS: f64 = 1e6;

/// The programs as the kernel names them (15 bytes): the fentry ones are told apart by their
/// tails, the raw ones share their prefixes, so counts are taken by exact names below.
const DELAY_RAW: &str = "syscall_delay";
const DELAY_ENTRY: &str = "syscall_delay_e";
const KILL_ENTRY_AND_RAW: &str = "proc_kill_on_sy";

/// Whether the kernel runs fentry programs (its own answer, not chaos's); where it does not,
/// the fentry tests skip saying why, and the tier's manifest says whether they may.
fn fentry_here(test: &str) -> bool {
    match chaos_tests::probe::fentry_missing() {
        None => true,
        Some(reason) => {
            skip::missing(skip::Feature::Fentry, test, &reason);
            false
        }
    }
}

fn on_vm() -> bool {
    skip::tier().is_some_and(|t| t.starts_with("vm-"))
}

/// Programs named `prefix` once the kernel has freed what chaos let go (freeing is deferred
/// past an RCU grace period, so a count just after chaos exits may still see them).
fn programs_left(prefix: &str) -> usize {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let count = kernel::programs_named(prefix);
        if count == 0 || std::time::Instant::now() > until {
            return count;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn dry_runs_name_the_hook_and_forced_fentry_is_refused_where_missing() {
    require_root!("dry_runs_name_the_hook_and_forced_fentry_is_refused_where_missing");
    let cgroup = TestCgroup::new();
    // Where the kernel has fentry, chaos must pick it (and doctor say so); elsewhere, refuse it.
    let fentry = chaos_tests::probe::fentry_missing().is_none();
    assert_eq!(chaos::entry_hook_is_fentry(), fentry, "doctor's entry hook disagrees with the kernel");
    let delay = ["syscall", "delay", "--syscall", "read", "--by", "10ms"];
    let kill = ["proc", "kill", "--on-syscall", "fsync"];
    let raw_delay = "attach syscall_delay (raw_tracepoint/sys_enter) to raw tracepoint sys_enter";
    let raw_kill = "attach proc_kill_on_syscall (raw_tracepoint/sys_enter) to raw tracepoint sys_enter";
    let (auto_delay, auto_kill) = if fentry {
        (
            "attach syscall_delay_entry (fentry) to fentry on __x64_sys_read",
            "attach proc_kill_on_syscall_entry (fentry) to fentry on __x64_sys_fsync",
        )
    } else {
        (raw_delay, raw_kill)
    };
    let two_syscalls = ["syscall", "delay", "--syscall", "read,write", "--by", "10ms"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (delay.to_vec(), auto_delay),
        (kill.to_vec(), auto_kill),
        ([&delay[..], &["--hook", "sys-enter"]].concat(), raw_delay),
        ([&kill[..], &["--hook", "sys-enter"]].concat(), raw_kill),
        // One fentry program serves one entry function: two syscalls stay on sys_enter.
        (two_syscalls.to_vec(), raw_delay),
    ];
    for (args, expected) in cases {
        let mut full = args.clone();
        full.extend(["--cgroup", cgroup.path(), "--for", "5s", "--dry-run"]);
        let (status, stdout, stderr) = chaos::run(&full);
        assert!(status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains(expected), "{args:?}: expected '{expected}' in:\n{stdout}");
    }
    for args in [&delay[..], &kill[..], &two_syscalls[..]] {
        let mut full = args.to_vec();
        full.extend(["--hook", "fentry", "--cgroup", cgroup.path(), "--for", "5s", "--dry-run"]);
        let (status, stdout, stderr) = chaos::run(&full);
        if fentry && args != two_syscalls {
            assert!(status.success() && stdout.contains("(fentry)"), "{args:?}: {stderr}{stdout}");
        } else {
            assert_eq!(status.code(), Some(2), "{args:?} --hook fentry: {stdout}{stderr}");
            assert!(stderr.contains("--hook fentry:"), "{stderr}");
        }
    }
}

#[test]
fn a_syscall_delay_holds_only_the_targets_reads_on_sys_enter() {
    require_root!("a_syscall_delay_holds_only_the_targets_reads_on_sys_enter");
    a_syscall_delay_holds_only_the_targets_reads("sys-enter");
}

#[test]
fn a_syscall_delay_holds_only_the_targets_reads_on_fentry() {
    require_root!("a_syscall_delay_holds_only_the_targets_reads_on_fentry");
    if fentry_here("a_syscall_delay_holds_only_the_targets_reads_on_fentry") {
        a_syscall_delay_holds_only_the_targets_reads("fentry");
    }
}

fn a_syscall_delay_holds_only_the_targets_reads(hook: &str) {
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    // 100 reads: p99 is the second worst, so its bound is wide.
    let (p50_bound, p99_bound) = if on_vm() { (5.0, 30.0) } else { (1.0, 10.0) };
    let delay_ms = 20.0;
    let chaos = chaos::start_fault(&["syscall", "delay", "--syscall", "read", "--by", "20ms", "--hook", hook], &cgroup);
    let (raw, entry) = (kernel::programs_named(DELAY_RAW), kernel::programs_named(DELAY_ENTRY));
    // `syscall_delay` is a prefix of the entry program's name: the raw count includes it.
    let expected = if hook == "fentry" { (1, 1) } else { (1, 0) };
    assert_eq!((raw, entry), expected, "{hook}: programs in the kernel (syscall_delay*, syscall_delay_e*)");
    let inside = workload_json(&["latency-loop", "--count", "100"], Some(&cgroup), None);
    let outside = workload_json(&["latency-loop", "--count", "100"], None, None);
    let report = chaos.stop_json();
    let latencies = |json: &serde_json::Value| -> Vec<f64> {
        json["latencies_ns"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let mut errors: Vec<f64> = latencies(&inside).iter().map(|ns| (ns / MS - delay_ms).abs()).collect();
    errors.sort_by(f64::total_cmp);
    let mut outside = latencies(&outside);
    outside.sort_by(f64::total_cmp);
    let pick = |values: &[f64], p: f64| values[((values.len() - 1) as f64 * p / 100.0).round() as usize];
    let (p50, p99, outside_p99) = (pick(&errors, 50.0), pick(&errors, 99.0), pick(&outside, 99.0) / MS);
    eprintln!(
        "measured: {hook}: 20 ms delay over {} reads: error p50 {p50:.3} ms, p99 {p99:.3} ms; untargeted read p99 \
         {outside_p99:.3} ms",
        errors.len()
    );
    assert!(p50 <= p50_bound && p99 <= p99_bound, "{hook}: error p50 {p50:.3} ms, p99 {p99:.3} ms");
    assert!(outside_p99 < delay_ms / 2.0, "{hook}: a process outside the cgroup was delayed: {outside_p99:.3} ms");
    let injected = report["counters"][0]["injected"].as_u64().unwrap_or(0);
    assert!((100..120).contains(&injected), "{hook}: {report}");
    assert_eq!(programs_left(DELAY_RAW), 0, "{hook}: a program was left behind");
}

/// Runs the fsync writer in the cgroup: the signal that ended it, and the records in its file.
fn write_records(cgroup: &TestCgroup, dir: &Path, count: u32) -> (Option<i32>, usize) {
    use std::os::unix::process::ExitStatusExt as _;
    let file = dir.join("records");
    let _ = std::fs::remove_file(&file);
    let status = command_in(workload_bin(), Some(cgroup), None)
        .args(["append-fsync", "--file", &file.display().to_string(), "--count", &count.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("run the writer");
    (status.signal(), std::fs::read_to_string(&file).unwrap_or_default().lines().count())
}

#[test]
fn a_crash_point_kills_at_the_exact_call_on_sys_enter() {
    require_root!("a_crash_point_kills_at_the_exact_call_on_sys_enter");
    a_crash_point_kills_at_the_exact_call("sys-enter");
}

#[test]
fn a_crash_point_kills_at_the_exact_call_on_fentry() {
    require_root!("a_crash_point_kills_at_the_exact_call_on_fentry");
    if fentry_here("a_crash_point_kills_at_the_exact_call_on_fentry") {
        a_crash_point_kills_at_the_exact_call("fentry");
    }
}

fn a_crash_point_kills_at_the_exact_call(hook: &str) {
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let chaos = chaos::start_fault(
        &["proc", "kill", "--on-syscall", "fsync", "--every", "50", "--max", "3", "--hook", hook],
        &cgroup,
    );
    assert_eq!(kernel::programs_named(KILL_ENTRY_AND_RAW), 1, "{hook}: one crash-point program");
    let mut counts = Vec::new();
    for _ in 0..3 {
        let (signal, records) = write_records(&cgroup, dir.path(), 80);
        assert_eq!(signal, Some(libc::SIGKILL), "{hook}: the writer was not killed");
        counts.push(records);
    }
    // Outside the cgroup, fsync is untouched.
    let outside = workload_json(
        &["fsync-loop", "--path", &dir.path().join("outside").display().to_string(), "--count", "60"],
        None,
        None,
    );
    let report = chaos.stop_json();
    eprintln!("measured: {hook}: records left by SIGKILL at fsync #50, 3 writers: {counts:?}");
    // fsync #50 follows write #50, and the signal is pending from the call's entry.
    assert!(counts.iter().all(|&n| n == 50), "{hook}: {counts:?}");
    assert_eq!(report["counters"][0]["injected"], 3, "{hook}: {report}");
    assert!(outside.is_object(), "{outside}");
    assert_eq!(programs_left(KILL_ENTRY_AND_RAW), 0, "{hook}: a program was left behind");
}
