//! Experiments that follow their target (`follow = true`): a private dockerd restarts the target
//! container mid-run, which gives it a new cgroup and a new network namespace; the partition
//! must hold at the receiver before and after the restart (it hit the new container), the
//! timeline must say `reattach` from the old cgroup to the new one, and nothing may stay
//! attached after the run. Without `follow`, the same restart ends the run "target gone".
use std::{fs, net::SocketAddr, process::Command, time::Duration};

use chaos_tests::{
    TempDir,
    cgroup::cgroup2_mount,
    chaos::{self, Chaos},
    kernel,
    net::Netns,
    require_root,
    runtimes::{self, DockerApi, Rootfs},
    unique_name,
    workload::{Blast, UdpSink},
};
use serde_json::Value;

const PACKETS: u64 = 2000;
const PORT: u16 = 7311;

/// The VM guests' busybox userland has no container runtime: these run on the host tier.
macro_rules! host_tier_only {
    ($test:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "the VM guests have no container runtime (busybox userland); the host tier starts Docker"
        );
    };
}

/// `chaos run FILE --timeline TIMELINE` against the private dockerd, once its fault is armed.
fn run_armed(file: &std::path::Path, timeline: &std::path::Path, docker: &DockerApi) -> Chaos {
    let mut run =
        Chaos::start_with_env(&["run", file.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()], &env(docker));
    run.wait_until("the partition is armed", Duration::from_secs(60), || {
        chaos_tests::timeline_so_far(timeline).iter().any(|e| e["event"] == "arm")
    });
    run
}

/// Only the private dockerd answers chaos.
fn env(docker: &DockerApi) -> Vec<(&'static str, String)> {
    runtimes::only_runtime("DOCKER_HOST", docker.host())
}

fn cgroup_of(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line").trim().to_owned()
}

fn pid_of(docker: &DockerApi, name: &str) -> u32 {
    let pid = docker.cli(&["inspect", "-f", "{{.State.Pid}}", name]).expect("docker inspect");
    pid.parse().unwrap_or_else(|e| panic!("pid {pid:?}: {e}"))
}

/// A partition from the container to its own loopback: (datagrams from inside that arrived,
/// datagrams from beside it that arrived), each of [`PACKETS`].
fn measure(docker: &DockerApi, name: &str) -> (u64, u64) {
    let netns = Netns::of_process(pid_of(docker, name));
    let sink = UdpSink::start(&netns, PORT, 1000, false);
    let (to, count) = (format!("127.0.0.1:{PORT}"), PACKETS.to_string());
    let output = Command::new("docker")
        .args(["-H", &docker.host(), "exec", name, "/chaos-workload", "udp-blast", "--to", &to, "--id", "1"])
        .args(["--count", &count, "--pps", "10000"])
        .output()
        .expect("run the blast inside the container");
    assert!(output.status.success(), "blast inside: {}", String::from_utf8_lossy(&output.stderr));
    let to = SocketAddr::from(([127, 0, 0, 1], PORT));
    let beside = Blast { to, sender_id: 2, count: PACKETS, pps: 10_000, cgroup: None, netns: &netns }.run();
    assert_eq!(beside.errors, 0);
    let report = sink.finish();
    (report.received_from(1), report.received_from(2))
}

/// A partition of the container named `name` from its loopback, for `duration`.
fn experiment(scratch: &TempDir, name: &str, follow: bool, duration: &str) -> std::path::PathBuf {
    scratch.file(
        "follow.toml",
        &format!(
            "name = \"follow\"\ntarget = {{ container = \"{name}\" }}\nfollow = {follow}\nduration = \"{duration}\"\n\n\
             [[fault]]\nkind = \"net partition\"\nto = [\"127.0.0.1/32\"]\n"
        ),
    )
}

/// The run record (what `chaos status` and other runs' conflict checks read) of the run of
/// experiment `file`.
fn record_of(file: &std::path::Path) -> Option<Value> {
    fs::read_dir("/run/chaos/runs")
        .ok()?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_str::<Value>(&fs::read_to_string(e.path()).ok()?).ok())
        .find(|r| r["file"] == file.to_str().unwrap())
}

/// A private dockerd with a sleeping container, or the reason the test is skipped.
fn docker_with_container(test: &str) -> Option<(Rootfs, DockerApi, String)> {
    let (rootfs, docker) = runtimes::private_docker(test)?;
    let name = unique_name("followed");
    docker.run_sleeper(&name).expect("start the target container");
    Some((rootfs, docker, name))
}

#[test]
fn a_followed_container_restarted_mid_run_is_partitioned_again_in_its_new_cgroup() {
    let test = "a_followed_container_restarted_mid_run_is_partitioned_again_in_its_new_cgroup";
    require_root!(test);
    host_tier_only!(test);
    let Some((_rootfs, docker, name)) = docker_with_container(test) else { return };
    let scratch = TempDir::new();
    let file = experiment(&scratch, &name, true, "45s");
    let timeline = scratch.join("follow.jsonl");
    let old_cgroup = cgroup_of(pid_of(&docker, &name));
    let (status, stdout, stderr) =
        chaos::run_with_env(&["run", file.to_str().unwrap(), "--dry-run", "--output", "json"], &env(&docker));
    assert!(status.success(), "{stderr}");
    let dry: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((&dry["follow"], &dry["target"]["cgroup"]), (&Value::Bool(true), &Value::from(old_cgroup.as_str())));
    let mut run = run_armed(&file, &timeline, &docker);
    let (inside, beside) = measure(&docker, &name);
    eprintln!("measured before the restart: {inside} of {PACKETS} from inside arrived, {beside} from beside it");
    assert_eq!((inside, beside), (0, PACKETS), "the partition does not hold before the restart");

    docker.cli(&["restart", "-t", "0", &name]).expect("docker restart");
    let new_cgroup = cgroup_of(pid_of(&docker, &name));
    let new_dir = cgroup2_mount().join(new_cgroup.trim_start_matches('/'));
    run.wait_until("a reattach event", Duration::from_secs(20), || {
        chaos_tests::timeline_so_far(&timeline).iter().any(|e| e["event"] == "reattach")
    });
    assert!(kernel::inet_programs_attached(&new_dir) > 0, "nothing attached to the new cgroup {new_cgroup}");
    // The run's record (what `chaos status` and the conflict checks read) names the new cgroup.
    let new_id = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&new_dir).expect("the new cgroup"));
    let record = record_of(&file).expect("the run's record");
    assert_eq!(record["target_id"], new_id, "{record}");
    let (inside, beside) = measure(&docker, &name);
    eprintln!("measured after the restart: {inside} of {PACKETS} from inside arrived, {beside} from beside it");
    assert_eq!((inside, beside), (0, PACKETS), "the partition does not hold on the restarted container");

    let (status, stdout, stderr) = run.wait(Duration::from_secs(90));
    assert_eq!(status.code(), Some(0), "a followed run ends as any other: {stdout}{stderr}");
    let events = chaos_tests::timeline_so_far(&timeline);
    let reattach = events.iter().find(|e| e["event"] == "reattach").expect("a reattach event");
    eprintln!("reattach: {reattach}");
    assert_eq!(reattach["old_cgroup"], old_cgroup.as_str(), "{reattach}");
    assert_eq!(reattach["new_cgroup"], new_cgroup.as_str(), "{reattach}");
    assert_ne!(reattach["old_id"], reattach["new_id"], "{reattach}");
    assert_eq!(reattach["faults"], serde_json::json!([1]), "{reattach}");
    let gone_s = reattach["gone_s"].as_f64().expect("gone_s");
    assert!((0.0..10.0).contains(&gone_s), "the target was away {gone_s} s by the timeline");
    assert!(!events.iter().any(|e| e["event"] == "abort"), "a followed restart is no abort: {events:?}");
    let detach = events.iter().find(|e| e["event"] == "detach").expect("a detach event");
    assert_eq!(detach["why"], "end", "{detach}");
    assert!(detach["injected"].as_u64().unwrap_or(0) >= 2 * PACKETS, "counts carry over the re-attach: {detach}");
    assert!(stdout.contains("re-attached 1 time(s)"), "the summary does not count the re-attach: {stdout}");
    assert_eq!(kernel::cgroup_programs(&new_dir), 0, "programs left on {new_cgroup} after the run");
}

#[test]
fn an_unfollowed_container_restarted_mid_run_ends_target_gone() {
    let test = "an_unfollowed_container_restarted_mid_run_ends_target_gone";
    require_root!(test);
    host_tier_only!(test);
    let Some((_rootfs, docker, name)) = docker_with_container(test) else { return };
    let scratch = TempDir::new();
    let file = experiment(&scratch, &name, false, "60s");
    let timeline = scratch.join("follow.jsonl");
    let run = run_armed(&file, &timeline, &docker);
    docker.cli(&["restart", "-t", "0", &name]).expect("docker restart");
    let new_dir = cgroup2_mount().join(cgroup_of(pid_of(&docker, &name)).trim_start_matches('/'));
    let (status, stdout, stderr) = run.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "without follow a restarted target is gone: {stdout}{stderr}");
    let events = chaos_tests::timeline_so_far(&timeline);
    assert!(!events.iter().any(|e| e["event"] == "reattach"), "{events:?}");
    let detach = events.iter().find(|e| e["event"] == "detach").expect("a detach event");
    assert_eq!(detach["why"], "target gone", "{detach}");
    assert_eq!(kernel::cgroup_programs(&new_dir), 0, "something attached to the restarted container");
}

#[test]
fn a_followed_container_that_never_comes_back_ends_target_gone_when_the_faults_phase_ends() {
    let test = "a_followed_container_that_never_comes_back_ends_target_gone_when_the_faults_phase_ends";
    require_root!(test);
    host_tier_only!(test);
    let Some((_rootfs, docker, name)) = docker_with_container(test) else { return };
    let scratch = TempDir::new();
    let file = experiment(&scratch, &name, true, "8s");
    let (status, _, stderr) = chaos::run_with_env(&["run", file.to_str().unwrap(), "--detach"], &env(&docker));
    assert_eq!(status.code(), Some(2), "follow needs a foreground run: {stderr}");
    assert!(stderr.contains("--detach"), "{stderr}");
    let timeline = scratch.join("follow.jsonl");
    let run = run_armed(&file, &timeline, &docker);
    docker.cli(&["stop", "-t", "0", &name]).expect("docker stop");
    let stopped = std::time::Instant::now();
    let (status, stdout, stderr) = run.wait(Duration::from_secs(30));
    eprintln!("measured: the run ended {:.1} s after the container stopped", stopped.elapsed().as_secs_f64());
    assert_eq!(status.code(), Some(3), "a followed target that never came back is gone: {stdout}{stderr}");
    let events = chaos_tests::timeline_so_far(&timeline);
    assert!(!events.iter().any(|e| e["event"] == "reattach"), "{events:?}");
    let abort = events.iter().find(|e| e["event"] == "abort").expect("an abort event");
    assert!(abort["reason"].as_str().unwrap_or_default().starts_with("target gone"), "{abort}");
    let phase = events.iter().find(|e| e["event"] == "phase" && e["phase"] == "during").expect("a during phase");
    let (during_at, abort_at) = (phase["t"].as_f64().unwrap_or_default(), abort["t"].as_f64().unwrap_or_default());
    assert!(abort_at - during_at >= 7.5, "it waited for the name only {:.1} s of the 8 s phase", abort_at - during_at);
    assert!(stdout.contains("target gone"), "{stdout}");
}

/// The record must name the new cgroup by the time anything announces the move: a reader that
/// sees the `reattach` event and then reads the record must never find the old cgroup there.
/// The race this guards against lost one run in a few dozen, so the order is checked at each
/// of many restarts, reading the record the moment the event appears.
#[test]
fn a_followed_runs_record_names_the_new_cgroup_before_its_reattach_event_is_written() {
    let test = "a_followed_runs_record_names_the_new_cgroup_before_its_reattach_event_is_written";
    require_root!(test);
    host_tier_only!(test);
    const RESTARTS: usize = 50;
    let Some((_rootfs, docker, name)) = docker_with_container(test) else { return };
    let scratch = TempDir::new();
    let file = experiment(&scratch, &name, true, "10m");
    let timeline = scratch.join("follow.jsonl");
    let run = run_armed(&file, &timeline, &docker);
    let reattaches = |timeline: &std::path::Path| -> Vec<Value> {
        chaos_tests::timeline_so_far(timeline).into_iter().filter(|e| e["event"] == "reattach").collect()
    };
    for restart in 1..=RESTARTS {
        docker.cli(&["restart", "-t", "0", &name]).expect("docker restart");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let event = loop {
            if let Some(event) = reattaches(&timeline).into_iter().nth(restart - 1) {
                break event;
            }
            assert!(std::time::Instant::now() < deadline, "no reattach event for restart {restart} within 20 s");
            std::thread::sleep(Duration::from_millis(1));
        };
        // Read at once: the event is out, so the record must already say the same.
        let record = record_of(&file).expect("the run's record");
        assert_eq!(
            (&record["target_id"], &record["target"]),
            (&event["new_id"], &event["new_cgroup"]),
            "restart {restart}: the reattach event was seen while the record still named another cgroup"
        );
    }
    eprintln!("measured: {RESTARTS} restarts, the record named the new cgroup at each reattach event");
    run.signal(libc::SIGINT);
    let (status, stdout, stderr) = run.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "stopped by SIGINT: no verdict: {stdout}{stderr}");
    let new_dir = cgroup2_mount().join(cgroup_of(pid_of(&docker, &name)).trim_start_matches('/'));
    assert_eq!(kernel::cgroup_programs(&new_dir), 0, "programs left after the run");
    assert!(record_of(&file).is_none(), "the run's record outlived it");
}

/// A TCP client inside the container (`docker exec -i`: in its cgroup and network namespace)
/// with one connection to `port` on the container's loopback; it lives while its stdin is open
/// (killed on Drop) or until the container stops.
struct ClientInside(std::process::Child);

impl ClientInside {
    fn start(docker: &DockerApi, name: &str, port: u16) -> Self {
        let to = format!("127.0.0.1:{port}");
        let child = Command::new("docker")
            .args(["-H", &docker.host(), "exec", "-i", name, "/chaos-workload", "tcp-clients", "--to", &to])
            .args(["--count", "1", "--ping-ms", "20"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("docker exec a TCP client in the container");
        Self(child)
    }
}

impl Drop for ClientInside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server beside the container (the test's own cgroup) in its network namespace, and a client
/// inside it connected to it; returns once the connection carries bytes. (server, client).
fn connection_into(docker: &DockerApi, name: &str, port: u16) -> (Netns, chaos_tests::tcp::Endpoint, ClientInside) {
    let netns = Netns::of_process(pid_of(docker, name));
    let mut server = chaos_tests::tcp::Endpoint::server(&netns, None, port, true);
    let client = ClientInside::start(docker, name, port);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.report().iter().any(|c| c.received > 0) {
        assert!(std::time::Instant::now() < deadline, "the client inside {name} never reached the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    (netns, server, client)
}

/// Waits until the server saw its one connection reset; returns the client's address.
fn reset_seen(server: &mut chaos_tests::tcp::Endpoint, run: &mut Chaos, when: &str) -> String {
    run.wait_until(&format!("the server to see the reset {when}"), Duration::from_secs(20), || {
        server.report().iter().any(|c| c.error.is_some())
    });
    let ended: Vec<_> = server.report().into_iter().filter(|c| c.error.is_some()).collect();
    assert_eq!(ended.len(), 1, "{when}: {ended:?}");
    assert_eq!(ended[0].error.as_deref(), Some("ECONNRESET"), "{when}: {ended:?}");
    ended[0].remote.clone()
}

/// `net sever` acts from chaos's own process: with `follow = true` its sweeps start again on the
/// restarted container's new cgroup, and its connections there are reset too (the server beside
/// it sees each RST); the timeline names both connections, before and after the `reattach`.
#[test]
fn a_followed_sever_resets_the_connections_of_the_restarted_container_too() {
    let test = "a_followed_sever_resets_the_connections_of_the_restarted_container_too";
    require_root!(test);
    host_tier_only!(test);
    let Some((_rootfs, docker, name)) = docker_with_container(test) else { return };
    const SEVER_PORT: u16 = 7312;
    let scratch = TempDir::new();
    let file = scratch.file(
        "sever.toml",
        &format!(
            "name = \"follow sever\"\ntarget = {{ container = \"{name}\" }}\nfollow = true\nduration = \"60s\"\n\n\
             [[fault]]\nkind = \"net sever\"\nremote_port = [\"{SEVER_PORT}\"]\nevery = \"300ms\"\n"
        ),
    );
    let timeline = scratch.join("sever.jsonl");
    let (_old_netns, mut server, _client) = connection_into(&docker, &name, SEVER_PORT);
    let mut run = run_armed(&file, &timeline, &docker);
    let before = reset_seen(&mut server, &mut run, "before the restart");

    docker.cli(&["restart", "-t", "0", &name]).expect("docker restart");
    run.wait_until("a reattach event", Duration::from_secs(20), || {
        chaos_tests::timeline_so_far(&timeline).iter().any(|e| e["event"] == "reattach")
    });
    let (_new_netns, mut server, _client) = connection_into(&docker, &name, SEVER_PORT);
    let after = reset_seen(&mut server, &mut run, "after the restart");

    run.signal(libc::SIGINT);
    let (_, _, stderr) = run.wait(Duration::from_secs(20));
    let events = chaos_tests::timeline_so_far(&timeline);
    let position =
        |local: &str| events.iter().position(|e| e["event"] == "proc" && e["what"] == "sever" && e["local"] == local);
    let reattach = events.iter().position(|e| e["event"] == "reattach").expect("a reattach event");
    let (first, second) = (position(&before), position(&after));
    assert!(first.is_some() && second.is_some(), "the timeline names both connections: {events:?}\n{stderr}");
    eprintln!(
        "measured: severed {before} in the old container and {after} in the restarted one; away {} s",
        events[reattach]["gone_s"]
    );
    let detach = events.iter().find(|e| e["event"] == "detach").expect("a detach event");
    assert_eq!(detach["injected"], 2, "counts carry over the re-attach: {detach}");
    assert!(events[reattach]["faults"] == serde_json::json!([1]), "{}", events[reattach]);
}
