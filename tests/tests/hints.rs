//! Why a network fault sees nothing, said instead of an unexplained "seen 0": the note at start
//! about sockets the target's processes opened in another cgroup (read from the kernel's
//! sock_diag), and the hint after 10 s without a packet. Each must appear when it should and
//! not otherwise.
use std::{fs, process::Stdio, time::Duration};

use chaos_tests::{
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    net::Netns,
    require_root,
    workload::{UdpSink, command_in, workload_bin},
};

const MOVED_NOTE: &str = "were created in another cgroup";
const QUIET_HINT: &str = "hint: no packet seen";
/// What chaos -v logs when the kernel cannot list the sockets (inet_diag, udp_diag missing).
const UNLISTED: &str = "sock_diag cannot list";

/// Whether chaos said (with -v) that this kernel cannot list the sink's sockets: then the test
/// records a skip with the reason.
fn sockets_unlisted(test: &str, output: &str) -> bool {
    let unlisted = output.contains(UNLISTED);
    if unlisted {
        chaos_tests::skip::record(test, "this kernel cannot list UDP sockets through sock_diag (udp_diag not loaded)");
    }
    unlisted
}

/// A short drop on the cgroup: (exit status, stderr).
fn short_drop(cgroup: &TestCgroup) -> (i32, String) {
    let (status, stdout, stderr) =
        chaos::run(&["net", "drop", "--percent", "10", "--cgroup", cgroup.path(), "--for", "1s", "-v"]);
    (status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[test]
fn a_process_moved_in_after_opening_its_socket_is_named_at_start() {
    require_root!("a_process_moved_in_after_opening_its_socket_is_named_at_start");
    let netns = Netns::new();
    let cgroup = TestCgroup::new();
    // The sink binds its socket in the test's own cgroup, then moves into the target.
    let sink = UdpSink::start(&netns, 7101, 60_000, false);
    fs::write(cgroup.dir().join("cgroup.procs"), sink.pid().to_string()).expect("move the sink into the cgroup");
    let (code, output) = short_drop(&cgroup);
    assert_eq!(code, 0, "{output}");
    if sockets_unlisted("a_process_moved_in_after_opening_its_socket_is_named_at_start", &output) {
        return;
    }
    assert!(output.contains(MOVED_NOTE), "no note about the socket opened in another cgroup: {output}");
    assert!(output.contains(&format!("pid {}", sink.pid())), "the note does not name the process: {output}");
}

/// The note names only the processes whose sockets came from elsewhere: beside a sink that moved
/// in, one that opened its socket inside is not named. The moved one is the proof that the
/// sockets were listed at all (without it, a chaos that never looked would pass).
#[test]
fn a_process_that_opened_its_socket_inside_gets_no_note() {
    let test = "a_process_that_opened_its_socket_inside_gets_no_note";
    require_root!(test);
    let netns = Netns::new();
    let cgroup = TestCgroup::new();
    let inside = UdpSink::start_in(&cgroup, &netns, 7102, 60_000);
    let (code, output) = short_drop(&cgroup);
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains(MOVED_NOTE), "a note about moved sockets where there are none: {output}");
    let moved = UdpSink::start(&netns, 7103, 60_000, false);
    fs::write(cgroup.dir().join("cgroup.procs"), moved.pid().to_string()).expect("move the sink into the cgroup");
    let (code, output) = short_drop(&cgroup);
    assert_eq!(code, 0, "{output}");
    if sockets_unlisted(test, &output) {
        return;
    }
    assert!(
        output.contains(&format!("1 socket(s) of 1 process(es) in {}", cgroup.path()))
            && output.contains(&format!("pid {}:", moved.pid())),
        "the note must name the moved sink alone: {output}"
    );
    assert!(
        !output.contains(&format!("pid {}:", inside.pid())),
        "the sink that opened its socket inside is named: {output}"
    );
}

/// A drop of 12 s on the cgroup (logs, not a terminal: counters every 5 s); its JSON report's
/// total seen and its stderr.
fn twelve_second_drop(cgroup: &TestCgroup) -> (u64, String) {
    let chaos =
        Chaos::start(&["net", "drop", "--percent", "1", "--cgroup", cgroup.path(), "--for", "12s", "--output", "json"]);
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(90));
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let seen = report["counters"].as_array().expect("counters").iter().filter_map(|c| c["seen"].as_u64()).sum();
    (seen, stderr)
}

#[test]
fn a_fault_that_sees_no_packet_for_ten_seconds_says_why_that_may_be() {
    require_root!("a_fault_that_sees_no_packet_for_ten_seconds_says_why_that_may_be");
    let cgroup = TestCgroup::new();
    let (seen, stderr) = twelve_second_drop(&cgroup);
    assert_eq!(seen, 0, "nothing runs in the cgroup, yet the kernel counted packets");
    assert!(stderr.contains(QUIET_HINT), "no hint after 12 s without a packet: {stderr}");
    assert_eq!(stderr.matches(QUIET_HINT).count(), 1, "the hint comes once: {stderr}");
}

#[test]
fn a_fault_that_sees_traffic_gives_no_hint() {
    require_root!("a_fault_that_sees_traffic_gives_no_hint");
    let netns = Netns::new();
    let cgroup = TestCgroup::new();
    // 100 datagrams a second for 20 s from inside the cgroup, to a port of its own namespace.
    let mut blast = command_in(workload_bin(), Some(&cgroup), Some(&netns))
        .args(["udp-blast", "--to", "127.0.0.1:7103", "--id", "1", "--count", "2000", "--pps", "100"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the blaster");
    let (seen, stderr) = twelve_second_drop(&cgroup);
    let _ = blast.kill();
    let _ = blast.wait();
    eprintln!("measured: {seen} packets seen in 12 s");
    assert!(seen > 500, "the kernel saw only {seen} of the blaster's packets");
    assert!(!stderr.contains(QUIET_HINT), "a hint while traffic flows: {stderr}");
}

/// `chaos run --dry-run` of a drop on the cgroup: what it printed.
fn experiment_dry_run(cgroup: &TestCgroup) -> String {
    let dir = chaos_tests::TempDir::new();
    let file = dir.path().join("moved.toml");
    fs::write(
        &file,
        format!(
            "name = \"moved\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"5s\"\n\n[[fault]]\nkind = \"net drop\"\npercent = 10\n",
            cgroup.path()
        ),
    )
    .expect("write the experiment");
    let (status, stdout, stderr) = chaos::run(&["run", file.to_str().unwrap(), "--dry-run", "-v"]);
    assert!(status.success(), "{stdout}{stderr}");
    format!("{stdout}{stderr}")
}

#[test]
fn an_experiment_names_moved_sockets_in_its_notes_and_only_then() {
    require_root!("an_experiment_names_moved_sockets_in_its_notes_and_only_then");
    let netns = Netns::new();
    let (moved, born_inside) = (TestCgroup::new(), TestCgroup::new());
    let sink = UdpSink::start(&netns, 7104, 60_000, false);
    fs::write(moved.dir().join("cgroup.procs"), sink.pid().to_string()).expect("move the sink into the cgroup");
    let _inside = UdpSink::start_in(&born_inside, &netns, 7105, 60_000);
    let output = experiment_dry_run(&moved);
    if sockets_unlisted("an_experiment_names_moved_sockets_in_its_notes_and_only_then", &output) {
        return;
    }
    assert!(output.contains(MOVED_NOTE), "no note about the moved socket: {output}");
    let output = experiment_dry_run(&born_inside);
    assert!(!output.contains(MOVED_NOTE), "a note where no socket moved: {output}");
}

/// A 12 s experiment of one 1 % drop on the cgroup: its timeline's events and its stderr.
fn twelve_second_experiment(cgroup: &TestCgroup) -> (Vec<serde_json::Value>, String) {
    let dir = chaos_tests::TempDir::new();
    let file = dir.file(
        "quiet.toml",
        &format!(
            "name = \"quiet\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"12s\"\n\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
            cgroup.path()
        ),
    );
    let timeline = dir.join("quiet.jsonl");
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{stdout}{stderr}");
    let text = fs::read_to_string(&timeline).expect("the timeline");
    (text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect(), format!("{stdout}{stderr}"))
}

#[test]
fn an_experiment_whose_fault_sees_no_packet_for_ten_seconds_says_why_in_its_output_and_timeline() {
    require_root!("an_experiment_whose_fault_sees_no_packet_for_ten_seconds_says_why_in_its_output_and_timeline");
    let cgroup = TestCgroup::new();
    let (events, output) = twelve_second_experiment(&cgroup);
    let hints: Vec<_> = events.iter().filter(|e| e["event"] == "hint").collect();
    assert_eq!(hints.len(), 1, "one hint event after 10 s without a packet: {events:?}");
    assert_eq!(hints[0]["fault"], 1, "{}", hints[0]);
    assert!(hints[0]["hint"].as_str().unwrap_or_default().contains(QUIET_HINT), "{}", hints[0]);
    let t = hints[0]["t"].as_f64().unwrap_or_default();
    let armed = events.iter().find(|e| e["event"] == "arm").and_then(|e| e["t"].as_f64()).expect("an arm event");
    eprintln!("measured: the experiment's hint came {:.3} s after its fault was armed", t - armed);
    assert!((10.0..12.5).contains(&(t - armed)), "the hint came {:.1} s after the fault was armed", t - armed);
    // Once on stderr as it happens, once in the summary.
    assert_eq!(output.matches(QUIET_HINT).count(), 2, "{output}");
}

#[test]
fn an_experiment_whose_fault_sees_traffic_gives_no_hint() {
    require_root!("an_experiment_whose_fault_sees_traffic_gives_no_hint");
    let netns = Netns::new();
    let cgroup = TestCgroup::new();
    let mut blast = command_in(workload_bin(), Some(&cgroup), Some(&netns))
        .args(["udp-blast", "--to", "127.0.0.1:7106", "--id", "1", "--count", "2000", "--pps", "100"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the blaster");
    let (events, output) = twelve_second_experiment(&cgroup);
    let _ = blast.kill();
    let _ = blast.wait();
    assert!(!events.iter().any(|e| e["event"] == "hint"), "a hint while traffic flows: {events:?}");
    assert!(!output.contains(QUIET_HINT), "{output}");
}
