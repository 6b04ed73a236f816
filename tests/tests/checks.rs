//! Steady-state checks at run time (all tiers), each against what a real program sees of the
//! same service: TCP checks on an open and a closed port, command checks by `exit_code` and
//! `stdout_contains`, an HTTP check with a custom `status`, `max_latency` on either side of a
//! server's real latency; `[abort] consecutive_failures` ending a run on its own; and where a run
//! without `--timeline` writes its timeline.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use chaos_tests::{TempDir, cgroup::TestCgroup, chaos, kernel, read_timeline, require_root, workload::HttpServer};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A GET the test makes itself: (status code, seconds it took).
fn get(port: u16) -> (Option<u16>, f64) {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return (None, 0.0) };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    (status, started.elapsed().as_secs_f64())
}

/// The `check` events of `name`: (phase, ok).
fn results<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == "check" && e["check"] == name).collect()
}

#[test]
fn each_kind_of_check_passes_and_fails_as_a_real_client_sees_the_service() {
    let test = "each_kind_of_check_passes_and_fails_as_a_real_client_sees_the_service";
    require_root!(test);
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        test,
        "a host-tier test: the checks are the experiment engine's, in userspace, the same on every kernel"
    );
    let cgroup = TestCgroup::new();
    let scratch = TempDir::new();
    let (teapot, slow) = (free_port(), free_port());
    let _teapot = HttpServer::start_with(&cgroup, teapot, &["--status", "418"]);
    let _slow = HttpServer::start_with(&cgroup, slow, &["--delay-ms", "600"]);
    let open = free_port();
    let _open = HttpServer::start(&cgroup, open);
    let closed = free_port();
    let script = "echo ready; exit 3";
    let file = scratch.file(
        "checks.toml",
        &format!(
            r#"name = "checks"
target = {{ cgroup = "{cgroup}" }}
duration = "1s"

[[fault]]
kind = "net partition"
to = ["192.0.2.0/24"]

[steady_state]
before = "1s"
after = "1s"
interval = "500ms"
timeout = "2s"
pass_rate = "0%"

[[steady_state.check]]
name = "tcp-open"
tcp = "127.0.0.1:{open}"

[[steady_state.check]]
name = "tcp-closed"
tcp = "127.0.0.1:{closed}"

[[steady_state.check]]
name = "command-as-expected"
command = ["sh", "-c", "{script}"]
exit_code = 3
stdout_contains = "ready"

[[steady_state.check]]
name = "command-exit-0-expected"
command = ["sh", "-c", "{script}"]

[[steady_state.check]]
name = "command-output-missing"
command = ["sh", "-c", "{script}"]
exit_code = 3
stdout_contains = "absent"

[[steady_state.check]]
name = "teapot-418"
http = "http://127.0.0.1:{teapot}/"
status = 418

[[steady_state.check]]
name = "teapot-200-expected"
http = "http://127.0.0.1:{teapot}/"

[[steady_state.check]]
name = "slow-under-300ms"
http = "http://127.0.0.1:{slow}/"
max_latency = "300ms"

[[steady_state.check]]
name = "slow-under-1500ms"
http = "http://127.0.0.1:{slow}/"
max_latency = "1500ms"
"#,
            cgroup = cgroup.path()
        ),
    );
    let timeline = scratch.join("checks.jsonl");
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "pass_rate 0 %: the run holds whatever the checks say: {stdout}{stderr}");
    let events = read_timeline(&timeline);

    // What a real client sees of the same services, at the same time.
    let (teapot_status, _) = get(teapot);
    let (slow_status, slow_seconds) = get(slow);
    let closed_refused = TcpStream::connect(("127.0.0.1", closed)).is_err();
    let open_accepted = TcpStream::connect(("127.0.0.1", open)).is_ok();
    let output = Command::new("sh").args(["-c", script]).output().expect("sh");
    eprintln!(
        "measured: a client sees status {teapot_status:?}, the slow server answer {slow_status:?} in {slow_seconds:.3} s, \
         port {open} open: {open_accepted}, port {closed} refused: {closed_refused}, the command exit {:?} saying {:?}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).trim()
    );
    assert_eq!(teapot_status, Some(418));
    assert!(slow_status == Some(200) && (0.6..1.5).contains(&slow_seconds), "{slow_status:?} in {slow_seconds} s");
    assert!(open_accepted && closed_refused);
    assert_eq!((output.status.code(), String::from_utf8_lossy(&output.stdout).trim()), (Some(3), "ready"));

    for (name, expected) in [
        ("tcp-open", true),
        ("tcp-closed", false),
        ("command-as-expected", true),
        ("command-exit-0-expected", false),
        ("command-output-missing", false),
        ("teapot-418", true),
        ("teapot-200-expected", false),
        ("slow-under-300ms", false),
        ("slow-under-1500ms", true),
    ] {
        let found = results(&events, name);
        let phases: std::collections::BTreeSet<&str> = found.iter().filter_map(|e| e["phase"].as_str()).collect();
        eprintln!(
            "measured: check {name}: {} results, ok {:?}",
            found.len(),
            found.iter().map(|e| &e["ok"]).collect::<Vec<_>>()
        );
        assert!(phases.len() == 3, "{name}: results in every phase: {found:?}");
        assert!(found.iter().all(|e| e["ok"] == expected), "{name}: every result {expected}: {found:?}");
    }
}

#[test]
fn consecutive_failures_end_the_run_at_the_third_failure_in_a_row() {
    let test = "consecutive_failures_end_the_run_at_the_third_failure_in_a_row";
    require_root!(test);
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        test,
        "a host-tier test: the checks are the experiment engine's, in userspace, the same on every kernel"
    );
    let cgroup = TestCgroup::new();
    let scratch = TempDir::new();
    let server = HttpServer::start(&cgroup, free_port());
    // pass_rate 0 %: the pass-rate abort can never fire, so an abort is consecutive_failures'.
    let file = scratch.file(
        "streak.toml",
        &format!(
            r#"name = "streak"
target = {{ cgroup = "{}" }}
duration = "30s"

[[fault]]
kind = "net drop"
percent = 100
direction = "egress"

[steady_state]
before = "1s"
after = "1s"
interval = "200ms"
timeout = "300ms"
pass_rate = "0%"

[[steady_state.check]]
name = "web"
http = "{}"

[abort]
consecutive_failures = 3
"#,
            cgroup.path(),
            server.url()
        ),
    );
    let timeline = scratch.join("streak.jsonl");
    let started = Instant::now();
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()]);
    let took = started.elapsed();
    assert_eq!(status.code(), Some(1), "an aborted run is violated: {stdout}{stderr}");
    assert!(took < Duration::from_secs(25), "a 30 s run should abort early; took {took:?}");
    assert_eq!(kernel::cgroup_programs(cgroup.dir()), 0, "programs left after the abort");
    let events = read_timeline(&timeline);
    let abort = events.iter().position(|e| e["event"] == "abort").unwrap_or_else(|| panic!("no abort: {events:?}"));
    assert!(
        events[abort]["reason"].as_str().is_some_and(|r| r.contains("failed 3 times in a row")),
        "{}",
        events[abort]
    );
    let arm = events.iter().position(|e| e["event"] == "arm").expect("an arm event");
    let checks: Vec<(usize, &Value)> = events.iter().enumerate().filter(|(_, e)| e["event"] == "check").collect();
    // The baseline passed (the fault not yet attached); under the drop, the checks failed, and
    // the abort came with the third failure in a row: the last three results before it.
    assert!(checks.iter().filter(|(i, _)| *i < arm).all(|(_, e)| e["ok"] == true), "the baseline failed: {checks:?}");
    let before_abort: Vec<&Value> = checks.iter().filter(|(i, _)| *i < abort).map(|(_, e)| *e).collect();
    let streak: Vec<&&Value> = before_abort.iter().rev().take_while(|e| e["ok"] == false).collect();
    eprintln!(
        "measured: aborted after {} failures in a row ({} results before it), the run took {took:?}",
        streak.len(),
        before_abort.len()
    );
    assert_eq!(streak.len(), 3, "the abort must come at the third failure in a row: {before_abort:?}");
    assert!(streak.iter().all(|e| e["phase"] == "during"), "{streak:?}");
}

#[test]
fn a_run_without_timeline_writes_it_where_the_docs_say() {
    let test = "a_run_without_timeline_writes_it_where_the_docs_say";
    require_root!(test);
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        test,
        "a host-tier test: the checks are the experiment engine's, in userspace, the same on every kernel"
    );
    let cgroup = TestCgroup::new();
    let scratch = TempDir::new();
    let file = scratch.file(
        "default.toml",
        &format!(
            "name = \"no timeline/flag\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"300ms\"\n\n[[fault]]\nkind = \"net drop\"\n\
             percent = 1\n",
            cgroup.path()
        ),
    );
    let output = Command::new(chaos::chaos_bin())
        .args(["run", file.to_str().unwrap()])
        .current_dir(scratch.path())
        .output()
        .expect("run chaos");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // ./chaos-<name, other than letters, digits and '-' as '_'>-<UTC time>.jsonl
    let written: Vec<String> = std::fs::read_dir(scratch.path())
        .expect("read the directory")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    eprintln!("measured: a run without --timeline wrote {written:?}");
    assert_eq!(written.len(), 1, "{written:?}");
    let name = &written[0];
    assert!(name.starts_with("chaos-no_timeline_flag-20") && name.contains('T'), "{name}");
    let events = read_timeline(&Path::new(scratch.path()).join(name));
    assert_eq!(events.last().map(|e| e["event"].clone()), Some(Value::from("verdict")), "{events:?}");
}
