//! `chaos proc kill` and `chaos proc pause` on a real kernel: real processes killed, a real
//! supervisor restarting them, real files written, a real cgroup frozen and thawed. Crash
//! points on one syscall run on fentry where the kernel has BPF trampolines (the VM tiers), on
//! the raw sys_enter tracepoint elsewhere (entry_hook.rs runs both); `--before-effect` needs BPF
//! LSM (the VM tiers).
use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel, require_root,
    skip::{self, Feature},
    skip_unless_has,
    workload::{Resident, command_in, workload_bin},
};

/// The crash-point program's name as the kernel keeps it (15 bytes).
const CRASH_POINT_PROGRAM: &str = "proc_kill_on_sy";

/// A process killed (and reaped) on Drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nobody listens on right now (bound and released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One HTTP GET on loopback; true for a 200.
fn http_ok(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// A supervisor (outside the target) that runs an HTTP server in the target cgroup and starts
/// it again 100 ms after each exit; collects the pids it started.
struct Supervised {
    _supervisor: Process,
    started: Arc<Mutex<Vec<u32>>>,
}

impl Supervised {
    fn start(cgroup: &TestCgroup, port: u16) -> Self {
        let dir = cgroup.dir().display().to_string();
        let port = port.to_string();
        let workload = workload_bin().display().to_string();
        let mut child = command_in(workload_bin(), None, None)
            .args(["supervise", "--restart-ms", "100", "--into-cgroup", &dir, "--", &workload])
            .args(["http-serve", "--port", &port])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the supervisor");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let started = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&started);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(pid) = line.strip_prefix("started ").and_then(|p| p.trim().parse().ok()) {
                    sink.lock().expect("lock").push(pid);
                }
            }
        });
        Self { _supervisor: Process(child), started }
    }

    fn started(&self) -> Vec<u32> {
        self.started.lock().expect("lock").clone()
    }
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

#[test]
fn periodic_kill_hits_one_target_process_per_tick_and_the_supervisor_brings_it_back() {
    require_root!("periodic_kill_hits_one_target_process_per_tick_and_the_supervisor_brings_it_back");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let port = free_port();
    let server = Supervised::start(&cgroup, port);
    wait_for("the server to answer", Duration::from_secs(30), || http_ok(port));
    let bystander = Resident::start(&TestCgroup::new(), None);
    let chaos =
        Chaos::start(&["proc", "kill", "--cgroup", cgroup.path(), "--every", "1s", "--for", "10s", "--output", "json"]);
    // The HTTP check: how many times the server went away and came back during the run.
    let (mut outages, mut up) = (0, true);
    let run = Instant::now();
    while run.elapsed() < Duration::from_secs(11) {
        let ok = http_ok(port);
        if up && !ok {
            outages += 1;
        }
        up = ok;
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let killed: Vec<u32> = report["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["what"] == "kill")
        .map(|e| e["pid"].as_u64().expect("pid") as u32)
        .collect();
    let started = server.started();
    eprintln!(
        "measured: {} kills in 10 s at --every 1s, {} server starts, {outages} outages seen by the HTTP check",
        killed.len(),
        started.len()
    );
    assert!((9..=11).contains(&killed.len()), "{} kills: {report}", killed.len());
    let distinct: BTreeSet<u32> = killed.iter().copied().collect();
    assert_eq!(distinct.len(), killed.len(), "a pid was killed twice: {killed:?}");
    assert!(killed.iter().all(|pid| started.contains(pid)), "a kill outside the target: {killed:?} vs {started:?}");
    assert!(started.len() > killed.len(), "the supervisor did not restart the server: {started:?}");
    assert!(outages >= killed.len() / 2, "the HTTP check saw {outages} outages for {} kills", killed.len());
    wait_for("the server to come back", Duration::from_secs(10), || http_ok(port));
    assert!(std::fs::metadata(format!("/proc/{}", bystander.pid())).is_ok(), "a process outside the target died");
}

/// Runs a writer of `count` records into `dir/records` in `cgroup`; returns (exit signal, records
/// in the file).
fn write_records(cgroup: &TestCgroup, dir: &Path, count: u32) -> (Option<i32>, Vec<String>) {
    use std::os::unix::process::ExitStatusExt as _;
    let file = dir.join("records");
    let _ = std::fs::remove_file(&file);
    let status = command_in(workload_bin(), Some(cgroup), None)
        .args(["append-fsync", "--file", &file.display().to_string(), "--count", &count.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("run the writer");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    (status.signal(), text.lines().map(str::to_owned).collect())
}

#[test]
fn a_crash_point_at_the_100th_fsync_leaves_exactly_100_records_every_time() {
    require_root!("a_crash_point_at_the_100th_fsync_leaves_exactly_100_records_every_time");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let mut counts = Vec::new();
    // One crash point for 20 writers, one after the other: the count is the target's, so at
    // every 100th fsync each writer dies at its own 100th (and `--max` stops at 20). One
    // start instead of 20 spares a TCG guest a minute of program loading.
    let chaos =
        chaos::start_fault(&["proc", "kill", "--on-syscall", "fsync", "--every", "100", "--max", "20"], &cgroup);
    for run in 1..=20 {
        let (signal, records) = write_records(&cgroup, dir.path(), 200);
        assert_eq!(signal, Some(libc::SIGKILL), "writer {run} was not killed");
        // The records are whole and in order: 1..=n.
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record, &format!("record {}", i + 1));
        }
        counts.push(records.len());
    }
    let report = chaos.stop_json();
    assert_eq!(report["counters"][0]["injected"], 20, "{report}");
    // The 21st writer runs past the --max to its end.
    let (signal, records) = write_records(&cgroup, dir.path(), 150);
    assert_eq!((signal, records.len()), (None, 150), "a writer after chaos stopped");
    eprintln!("measured: records left by a SIGKILL at fsync #100, 20 writers: {counts:?}");
    // fsync #100 follows write #100: that record is in the page cache, so in the file, whatever
    // the fsync does (it runs to its end: the kill takes effect on the way back to user space).
    assert!(counts.iter().all(|&c| c == 100), "{counts:?}");
}

#[test]
fn a_crash_point_on_write_kills_before_the_record_is_written() {
    require_root!("a_crash_point_on_write_kills_before_the_record_is_written");
    five_writers_killed_at_write_100(&["proc", "kill", "--on-syscall", "write", "--every", "100"]);
}

#[test]
fn a_crash_point_before_effect_on_write_fails_the_call_before_the_record_is_written() {
    let test = "a_crash_point_before_effect_on_write_fails_the_call_before_the_record_is_written";
    require_root!(test);
    skip_unless_has!(Feature::BpfLsm, chaos::lsm_unavailable(), test);
    five_writers_killed_at_write_100(&["proc", "kill", "--on-syscall", "write", "--every", "100", "--before-effect"]);
}

/// Five writers under one crash point at every 100th write (the count is the target's): each
/// is killed at its write #100, which writes nothing.
fn five_writers_killed_at_write_100(args: &[&str]) {
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let chaos = chaos::start_fault(args, &cgroup);
    for _ in 0..5 {
        let (signal, records) = write_records(&cgroup, dir.path(), 200);
        assert_eq!(signal, Some(libc::SIGKILL), "{args:?}");
        eprintln!("measured: {args:?}: {} records after a SIGKILL at write #100", records.len());
        // SIGKILL is pending from the call's entry: the kernel's write path checks for a fatal
        // signal before it copies anything, so write #100 returns -EINTR having written
        // nothing (the tracepoint); the LSM hook fails it before it starts (--before-effect).
        assert_eq!(records.len(), 99, "{args:?}");
        assert!(!records.iter().any(|r| r == "record 100"), "{args:?}");
    }
    let report = chaos.stop_json();
    assert_eq!(report["counters"][0]["injected"], 5, "{args:?}: {report}");
}

/// Starts a counter in `cgroup`; returns it and the path of its file.
fn start_counter(cgroup: &TestCgroup, dir: &Path) -> (Process, std::path::PathBuf) {
    let file = dir.join("counter");
    let child = command_in(workload_bin(), Some(cgroup), None)
        .args(["counter", "--file", &file.display().to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the counter");
    let process = Process(child);
    wait_for("the counter to count", Duration::from_secs(20), || read_counter(&file) > 10);
    (process, file)
}

fn read_counter(file: &Path) -> u64 {
    std::fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn pause_stops_all_progress_and_the_target_resumes_after() {
    require_root!("pause_stops_all_progress_and_the_target_resumes_after");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let (_counter, file) = start_counter(&cgroup, dir.path());
    let mut chaos =
        Chaos::start(&["proc", "pause", "--cgroup", cgroup.path(), "--for", "3s", "--output", "json", "-v"]);
    chaos.wait_until("the target is frozen", Duration::from_secs(20), || kernel::is_frozen(cgroup.dir()));
    let frozen_at = read_counter(&file);
    std::thread::sleep(Duration::from_millis(1000));
    let later = read_counter(&file);
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    assert_eq!(frozen_at, later, "the counter moved while the target was frozen");
    assert!(!kernel::is_frozen(cgroup.dir()), "still frozen after the run");
    wait_for("the counter to move again", Duration::from_secs(5), || read_counter(&file) > later);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["counters"][0]["injected"], 1, "{report}");
}

#[test]
fn periodic_pause_freezes_for_the_pause_at_each_period() {
    require_root!("periodic_pause_freezes_for_the_pause_at_each_period");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let (_counter, _file) = start_counter(&cgroup, dir.path());
    let chaos = Chaos::start(&[
        "proc",
        "pause",
        "--cgroup",
        cgroup.path(),
        "--every",
        "1s",
        "--pause",
        "300ms",
        "--for",
        "4500ms",
        "--output",
        "json",
    ]);
    // Sample the frozen state: about 30 % of the time.
    let (mut frozen, mut samples) = (0u32, 0u32);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(4400) {
        frozen += u32::from(kernel::is_frozen(cgroup.dir()));
        samples += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let share = f64::from(frozen) / f64::from(samples);
    eprintln!("measured: frozen {:.1} % of 4.4 s at --every 1s --pause 300ms (4 pauses: 26.7 %)", share * 100.0);
    assert_eq!(report["counters"][0]["injected"], 4, "{report}");
    assert!((0.15..0.40).contains(&share), "frozen {:.1} % of the time", share * 100.0);
    assert!(!kernel::is_frozen(cgroup.dir()));
}

#[test]
fn sigkill_of_chaos_mid_pause_thaws_the_target_within_100ms() {
    require_root!("sigkill_of_chaos_mid_pause_thaws_the_target_within_100ms");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let (_counter, file) = start_counter(&cgroup, dir.path());
    // Poll gently in the VM: it runs both vCPUs on one emulation thread, and a busy loop here
    // would take the CPU from the guard it is timing.
    let poll = if skip::tier().is_some_and(|t| t.starts_with("vm-")) { 5_000 } else { 200 };
    let mut thaw_ms = Vec::new();
    for _ in 0..5 {
        let mut chaos = Chaos::start(&["proc", "pause", "--cgroup", cgroup.path(), "--for", "60s", "-v"]);
        chaos.wait_until("the target is frozen", Duration::from_secs(20), || kernel::is_frozen(cgroup.dir()));
        let before = read_counter(&file);
        chaos.signal(libc::SIGKILL);
        let killed = Instant::now();
        while kernel::is_frozen(cgroup.dir()) {
            assert!(killed.elapsed() < Duration::from_secs(3), "still frozen 3 s after chaos was SIGKILLed");
            std::thread::sleep(Duration::from_micros(poll));
        }
        thaw_ms.push(killed.elapsed().as_secs_f64() * 1e3);
        drop(chaos.wait(Duration::from_secs(10)));
        wait_for("the counter to move again", Duration::from_secs(5), || read_counter(&file) > before);
    }
    let (status, stdout, _) = chaos::run(&["cleanup"]);
    assert!(status.success());
    eprintln!("measured: thawed {thaw_ms:.1?} ms after SIGKILL of chaos; cleanup said: {}", stdout.trim());
    let bound = if skip::tier().is_some_and(|t| t.starts_with("vm-")) { 250.0 } else { 100.0 };
    assert!(thaw_ms.iter().all(|&ms| ms < bound), "{thaw_ms:?} ms (bound {bound} ms)");
}

#[test]
fn nothing_is_left_after_sigint_sigterm_or_sigkill() {
    require_root!("nothing_is_left_after_sigint_sigterm_or_sigkill");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let chaos = chaos::start_fault(&["proc", "kill", "--on-syscall", "fsync", "--after", "5"], &cgroup);
        assert_eq!(kernel::programs_named(CRASH_POINT_PROGRAM), 1);
        chaos.signal(signal);
        drop(chaos.wait(Duration::from_secs(20)));
        // The kernel frees a program whose last link closed after an RCU grace period.
        let freed_after = wait_for("the crash-point program to be freed", Duration::from_secs(5), || {
            kernel::programs_named(CRASH_POINT_PROGRAM) == 0
        });
        eprintln!(
            "measured: crash-point program gone {:.1} ms after chaos exited ({signal})",
            freed_after.as_secs_f64() * 1e3
        );
        // And the calls it would have killed go through.
        let (killed_by, records) = write_records(&cgroup, dir.path(), 20);
        assert_eq!((killed_by, records.len()), (None, 20), "after {signal}");

        let (_counter, _) = start_counter(&cgroup, dir.path());
        let mut chaos = Chaos::start(&["proc", "pause", "--cgroup", cgroup.path(), "--for", "60s", "-v"]);
        chaos.wait_until("the target is frozen", Duration::from_secs(20), || kernel::is_frozen(cgroup.dir()));
        chaos.signal(signal);
        drop(chaos.wait(Duration::from_secs(20)));
        wait_for("the target to be thawed", Duration::from_secs(3), || !kernel::is_frozen(cgroup.dir()));
        assert!(cgroup.pids().iter().all(|&pid| !kernel::is_stopped(pid as u32)), "a stopped task after {signal}");
    }
    let (status, _, _) = chaos::run(&["cleanup"]);
    assert!(status.success());
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    require_root!("bad_input_exits_2_and_changes_nothing");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let residents: Vec<Resident> = (0..3).map(|_| Resident::start(&cgroup, None)).collect();
    let target = cgroup.path();
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--every", "1s", "--signal", "KILLL"], "unknown signal"),
        (vec!["--every", "0s"], "is zero"),
        (vec!["--on-syscall", "nosuchcall"], "unknown syscall"),
        (vec!["--every", "1s", "--pick", "all", "--max-procs", "2"], "more than --max-procs 2"),
        (vec!["--every", "5"], "needs --on-syscall"),
    ];
    if let Some(reason) = chaos::lsm_unavailable() {
        eprintln!("({reason}: --before-effect must be refused)");
        cases.push((vec!["--on-syscall", "write", "--before-effect"], "needs BPF LSM"));
    } else {
        // fsync has no LSM hook: it cannot be failed before it takes effect.
        cases.push((vec!["--on-syscall", "fsync", "--before-effect"], "fsync has no BPF LSM hook"));
    }
    for (args, expected) in cases {
        let mut full = vec!["proc", "kill", "--cgroup", target, "--for", "5s"];
        full.extend(&args);
        let (status, stdout, stderr) = chaos::run(&full);
        assert_eq!(status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(kernel::programs_named(CRASH_POINT_PROGRAM), 0);
    let (status, _, stderr) = chaos::run(&["proc", "pause", "--cgroup", target, "--for", "5s", "--every", "1s"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, _, stderr) =
        chaos::run(&["proc", "pause", "--cgroup", target, "--for", "5s", "--every", "1s", "--pause", "2s"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not shorter than"), "{stderr}");
    // Nothing changed: every resident lives, none is frozen or stopped.
    assert!(!kernel::is_frozen(cgroup.dir()));
    for resident in &residents {
        assert!(cgroup.pids().contains(&(resident.pid() as i32)), "resident {} is gone", resident.pid());
        assert!(!kernel::is_stopped(resident.pid()));
    }
}

#[test]
fn a_pause_of_the_cgroup_chaos_runs_in_is_refused() {
    require_root!("a_pause_of_the_cgroup_chaos_runs_in_is_refused");
    let cgroup = TestCgroup::new();
    // chaos started inside the target (as its own child cgroup's member): refused, even with
    // --i-know, since its guard would be frozen with it.
    let output = command_in(chaos::chaos_bin(), Some(&cgroup), None)
        .args(["proc", "pause", "--cgroup", cgroup.path(), "--for", "5s", "--i-know"])
        .output()
        .expect("run chaos");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chaos itself"), "{stderr}");
    assert!(!kernel::is_frozen(cgroup.dir()));
}

#[test]
fn an_experiment_sees_the_service_go_and_come_back_under_periodic_kills() {
    require_root!("an_experiment_sees_the_service_go_and_come_back_under_periodic_kills");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let port = free_port();
    let server = Supervised::start(&cgroup, port);
    wait_for("the server to answer", Duration::from_secs(30), || http_ok(port));
    let scratch = TempDir::new();
    let file = scratch.join("kills.toml");
    let timeline = scratch.join("kills.jsonl");
    std::fs::write(
        &file,
        format!(
            r#"
name = "the server restarts after crashes"
target = {{ cgroup = "{cgroup}" }}
duration = "4500ms"

[[fault]]
kind = "proc kill"
every = "1s"

[steady_state]
before = "1s"
after = "3s"
interval = "50ms"
timeout = "300ms"
pass_rate = "50%"

[[steady_state.check]]
name = "web"
http = "http://127.0.0.1:{port}/"
"#,
            cgroup = cgroup.path()
        ),
    )
    .expect("write the experiment");
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()]);
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&timeline)
        .expect("timeline")
        .lines()
        .map(|l| serde_json::from_str(l).expect("timeline line"))
        .collect();
    let killed: Vec<u32> = events
        .iter()
        .filter(|e| e["event"] == "proc" && e["what"] == "kill")
        .filter_map(|e| e["pid"].as_u64())
        .map(|p| p as u32)
        .collect();
    let failed_during =
        events.iter().filter(|e| e["event"] == "check" && e["phase"] == "during" && e["ok"] == false).count();
    let after: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "check" && e["phase"] == "after").collect();
    eprintln!(
        "measured: experiment: {} kills, {failed_during} failed checks during, {} of {} checks passed after",
        killed.len(),
        after.iter().filter(|e| e["ok"] == true).count(),
        after.len()
    );
    assert_eq!(status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(killed.len(), 4, "{events:?}");
    let started = server.started();
    assert!(killed.iter().all(|pid| started.contains(pid)), "{killed:?} vs {started:?}");
    assert!(failed_during > 0, "the checks never saw the server go");
    // Came back: the last checks of the after phase pass.
    assert!(after.iter().rev().take(10).all(|e| e["ok"] == true), "the server did not come back");
}

#[test]
fn doctor_says_how_process_faults_run_here() {
    require_root!("doctor_says_how_process_faults_run_here");
    let (status, stdout, _) = chaos::run(&["doctor", "--output", "json"]);
    assert!(status.success());
    let doctor: serde_json::Value = serde_json::from_str(&stdout).expect("doctor JSON");
    let family =
        |id: &str| doctor["families"].as_array().and_then(|f| f.iter().find(|f| f["id"] == id)).cloned().expect(id);
    let (kill, pause) = (family("process-kill"), family("process-pause"));
    assert_eq!((kill["in_chaos"].as_bool(), kill["supported"].as_bool()), (Some(true), Some(true)), "{kill}");
    let mechanism = kill["mechanism"].as_str().unwrap_or_default();
    // What the kernel says of BPF LSM, which --before-effect needs.
    let before_effect = if chaos::lsm_unavailable().is_none() { "available" } else { "not available" };
    assert!(mechanism.contains(&format!("--before-effect and --path: {before_effect}")), "{mechanism}");
    assert_eq!((pause["in_chaos"].as_bool(), pause["supported"].as_bool()), (Some(true), Some(true)), "{pause}");
}

#[test]
fn pick_all_takes_the_whole_target_down_at_once() {
    require_root!("pick_all_takes_the_whole_target_down_at_once");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let residents: Vec<Resident> = (0..3).map(|_| Resident::start(&cgroup, None)).collect();
    let (status, stdout, stderr) = chaos::run(&[
        "proc",
        "kill",
        "--cgroup",
        cgroup.path(),
        "--every",
        "1s",
        "--pick",
        "all",
        "--max",
        "1",
        "--for",
        "2s",
        "--output",
        "json",
    ]);
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let events = report["events"].as_array().expect("events");
    // cgroup.kill where the kernel has it (5.14+), one signal per process otherwise.
    let via_cgroup_kill = cgroup.dir().join("cgroup.kill").exists();
    let killed: u64 = if via_cgroup_kill {
        events.iter().filter(|e| e["what"] == "kill-all").map(|e| e["processes"].as_u64().unwrap_or(0)).sum()
    } else {
        events.iter().filter(|e| e["what"] == "kill").count() as u64
    };
    assert_eq!(killed, 3, "{report}");
    wait_for("the cgroup to empty", Duration::from_secs(5), || cgroup.pids().is_empty());
    eprintln!("measured: --pick all killed {killed} processes (cgroup.kill: {via_cgroup_kill})");
    drop(residents);
}

#[test]
fn a_crash_point_does_nothing_after_its_kernel_deadline_even_with_chaos_stopped() {
    require_root!("a_crash_point_does_nothing_after_its_kernel_deadline_even_with_chaos_stopped");
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let mut chaos = Chaos::start(&[
        "proc",
        "kill",
        "--cgroup",
        cgroup.path(),
        "--on-syscall",
        "fsync",
        "--after",
        "5",
        "--for",
        "2s",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(60));
    // chaos cannot detach anything while stopped: only the kernel's deadline ends the fault.
    chaos.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(kernel::programs_named(CRASH_POINT_PROGRAM), 1, "the program should still be attached");
    let (killed_by, records) = write_records(&cgroup, dir.path(), 20);
    chaos.signal(libc::SIGCONT);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    assert_eq!((killed_by, records.len()), (None, 20), "the crash point fired after its deadline");
}

#[test]
fn dry_runs_say_what_would_be_done_and_do_nothing() {
    require_root!("dry_runs_say_what_would_be_done_and_do_nothing");
    // It counts crash-point programs machine-wide: none of another test may be there.
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let resident = Resident::start(&cgroup, None);
    let target = cgroup.path();
    let crash_point = if chaos_tests::probe::fentry_missing().is_none() {
        "attach proc_kill_on_syscall_entry (fentry) to fentry on __x64_sys_fsync"
    } else {
        "attach proc_kill_on_syscall (raw_tracepoint/sys_enter)"
    };
    let cases: &[(&[&str], &str)] = &[
        (&["kill", "--every", "1s"], "nothing to attach"),
        (&["kill", "--on-syscall", "fsync", "--after", "99"], crash_point),
        (&["pause", "--every", "1s", "--pause", "200ms"], "freezes the whole cgroup for 200ms every 1s"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["proc"];
        full.extend_from_slice(args);
        full.extend(["--cgroup", target, "--for", "5s", "--dry-run"]);
        let (status, stdout, stderr) = chaos::run(&full);
        assert!(status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains(expected), "{args:?}: {stdout}");
    }
    assert!(cgroup.pids().contains(&(resident.pid() as i32)));
    assert!(!kernel::is_frozen(cgroup.dir()));
    assert_eq!(kernel::programs_named(CRASH_POINT_PROGRAM), 0);
}

#[test]
fn a_crash_point_with_a_path_kills_only_for_files_under_it() {
    require_root!("a_crash_point_with_a_path_kills_only_for_files_under_it");
    skip_unless_has!(
        Feature::BpfLsm,
        chaos::lsm_unavailable(),
        "a_crash_point_with_a_path_kills_only_for_files_under_it"
    );
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let (inside, outside) = (TempDir::new(), TempDir::new());
    let path = inside.path().display().to_string();
    let chaos = chaos::start_fault(
        &["proc", "kill", "--on-syscall", "write", "--path", &path, "--after", "9", "--max", "1"],
        &cgroup,
    );
    let (elsewhere_killed_by, elsewhere) = write_records(&cgroup, outside.path(), 50);
    let (killed_by, records) = write_records(&cgroup, inside.path(), 50);
    let report = chaos.stop_json();
    eprintln!("measured: --path crash point: {} records elsewhere, {} under the path", elsewhere.len(), records.len());
    assert_eq!((elsewhere_killed_by, elsewhere.len()), (None, 50), "a write outside the path was a crash point");
    // LSM file_permission runs before the write copies anything: without --before-effect the
    // SIGKILL is pending when the copy would start, so write #10 writes nothing either.
    assert_eq!((killed_by, records.len()), (Some(libc::SIGKILL), 9), "{report}");
}

/// Whether process `pid` has ended (gone, or a zombie its parent has not reaped yet).
fn ended(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
}

/// Periodic kills and pauses run from chaos's own process, and are runs like any one-shot
/// fault: `chaos status` lists each with what it did so far (as the kernel saw it: processes
/// ended, the cgroup frozen), `chaos stop ID` ends it (a pause thaws) and its record goes.
#[test]
fn a_periodic_kill_and_a_pause_are_listed_by_status_and_ended_by_stop() {
    require_root!("a_periodic_kill_and_a_pause_are_listed_by_status_and_ended_by_stop");
    chaos_tests::skip_if!(
        skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        "a_periodic_kill_and_a_pause_are_listed_by_status",
        "run records are the host tier's (every tier runs the kills and pauses themselves)"
    );
    let _serial = chaos_tests::serialized();
    let cgroup = TestCgroup::new();
    let residents: Vec<Resident> = (0..3).map(|_| Resident::start(&cgroup, None)).collect();
    let mut kill = Chaos::start(&[
        "proc",
        "kill",
        "--cgroup",
        cgroup.path(),
        "--every",
        "200ms",
        "--max",
        "2",
        "--for",
        "5m",
        "--output",
        "json",
        "-v",
    ]);
    kill.wait_until("two residents to be killed", Duration::from_secs(30), || {
        residents.iter().filter(|r| ended(r.pid() as i32)).count() == 2
    });
    let row = chaos::wait_for_status_row(kill.pid(), Duration::from_secs(5), |row| row["faults"][0]["injected"] == 2);
    assert_eq!((row["kind"].as_str(), row["name"].as_str()), (Some("one-shot"), Some("proc kill")), "{row}");
    assert_eq!(row["target"], cgroup.path(), "{row}");
    let summary = chaos::stop_by_id(kill, row["id"].as_str().expect("an id"), Duration::from_secs(1));
    assert_eq!(summary["counters"][0]["injected"], 2, "{summary}");
    assert_eq!(residents.iter().filter(|r| ended(r.pid() as i32)).count(), 2, "--max 2 killed a third");

    let mut pause =
        Chaos::start(&["proc", "pause", "--cgroup", cgroup.path(), "--for", "5m", "--output", "json", "-v"]);
    pause.wait_until("the target is frozen", Duration::from_secs(20), || kernel::is_frozen(cgroup.dir()));
    let row = chaos::wait_for_status_row(pause.pid(), Duration::from_secs(5), |row| row["faults"][0]["injected"] == 1);
    assert_eq!((row["kind"].as_str(), row["name"].as_str()), (Some("one-shot"), Some("proc pause")), "{row}");
    let summary = chaos::stop_by_id(pause, row["id"].as_str().expect("an id"), Duration::from_secs(1));
    assert_eq!(summary["counters"][0]["injected"], 1, "{summary}");
    assert!(!kernel::is_frozen(cgroup.dir()), "still frozen after chaos stop");
}
