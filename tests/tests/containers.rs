//! Containers aimed at through their runtimes' own APIs, each runtime started by the test on a
//! private socket (tests/src/runtimes.rs): Docker and Podman by short id, full id and name, with
//! a drop that hits the container and nothing else; containerd "pods" carrying kubelet's labels
//! in namespace k8s.io, picked by `--pod`, `--selector` and `--container-name`, with a fault on
//! one pod that leaves the other alone. Traffic stays on the containers' own loopbacks.
use std::{net::SocketAddr, process::Command, time::Duration};

use chaos_tests::{
    chaos::{self, Chaos},
    net::Netns,
    require_root,
    runtimes::{Containerd, DockerApi, Engine, Rootfs},
    skip, unique_name,
    workload::{Blast, UdpSink},
};

/// The VM guests' busybox userland has no container runtime: these run on the host tier.
macro_rules! host_tier_only {
    ($test:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "the VM guests have no container runtime (busybox userland); the host tier starts Docker, Podman and containerd"
        );
    };
}

const PACKETS: u64 = 4000;
const PORT: u16 = 7301;
use chaos_tests::runtimes::only_runtime as env;

/// The cgroup v2 path of `pid`, as the kernel shows it.
fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line").trim().to_owned()
}

/// `chaos net drop <target> --dry-run --output json`: the cgroup chaos resolved, or its error.
fn resolved(target: &[&str], env: &[(&str, String)]) -> Result<String, String> {
    let mut args = vec!["net", "drop"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["--percent", "10", "--for", "30s", "--dry-run", "--output", "json"]);
    let (status, stdout, stderr) = chaos::run_with_env(&args, env);
    if !status.success() {
        assert_eq!(status.code(), Some(2), "a refused target exits 2: {stderr}");
        return Err(stderr);
    }
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    Ok(json["target"]["cgroup"].as_str().expect("target.cgroup").to_owned())
}

/// Starts a 50 % egress drop on `target` and waits until it is armed.
fn start_drop(target: &[&str], env: &[(&str, String)]) -> Chaos {
    let mut args = vec!["net", "drop"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["--percent", "50", "--direction", "egress", "--for", "2m", "--output", "json", "-v"]);
    let mut chaos = Chaos::start_with_env(&args, env);
    chaos.wait_until_armed(Duration::from_secs(60));
    chaos
}

/// Runs `exec` (a command that runs its arguments inside a container) with a udp-blast of
/// sender `id` to the container's own loopback.
fn blast_inside(exec: &[&str], id: u32) {
    let (to, count, id) = (format!("127.0.0.1:{PORT}"), PACKETS.to_string(), id.to_string());
    let mut command = Command::new(exec[0]);
    command.args(&exec[1..]).args(["/chaos-workload", "udp-blast", "--to", &to, "--id", &id]);
    command.args(["--count", &count, "--pps", "10000"]);
    let output = command.output().expect("run the blast inside the container");
    assert!(output.status.success(), "blast inside: {}", String::from_utf8_lossy(&output.stderr));
}

/// Share of sender `id`'s datagrams the sink did not get.
fn lost(report: &chaos_tests::workload::SinkReport, id: u32) -> f64 {
    (PACKETS - report.received_from(id)) as f64 / PACKETS as f64
}

/// Docker and Podman: the same checks through the Engine API.
fn found_by_id_and_name_and_dropped(engine: Engine, test: &str) {
    let rootfs = match Rootfs::build() {
        Ok(rootfs) => rootfs,
        Err(why) => return skip::record(test, &why),
    };
    let api = match DockerApi::start(engine, &rootfs) {
        Ok(api) => api,
        Err(why) => return skip::record(test, &format!("{engine:?} cannot run here: {why}")),
    };
    let (name, other_name) = (unique_name("web"), unique_name("other"));
    let (id, pid) = api.run_sleeper(&name).expect("start the target container");
    let (_, other_pid) = api.run_sleeper(&other_name).expect("start a second container");
    let env = env(if engine == Engine::Docker { "DOCKER_HOST" } else { "CONTAINER_HOST" }, api.host());
    let expected = cgroup_of(pid);
    assert_ne!(expected, cgroup_of(other_pid));
    for given in [&id[..12], &id, &name] {
        assert_eq!(resolved(&["--container", given], &env).as_deref(), Ok(expected.as_str()), "--container {given}");
    }
    let err = resolved(&["--container", "no-such-container"], &env).unwrap_err();
    assert!(err.contains("no running container has that id, id prefix or name"), "{err}");

    // A sink and a control sender in the container's network namespace but outside its
    // cgroup; the target sender inside the container (`exec` joins its cgroup).
    let netns = Netns::of_process(pid);
    let sink = UdpSink::start(&netns, PORT, 1000, false);
    let chaos = start_drop(&["--container", &name], &env);
    let exec = ["docker", "-H", &api.host(), "exec", &name];
    blast_inside(&exec, 1);
    let to = SocketAddr::from(([127, 0, 0, 1], PORT));
    let outside = Blast { to, sender_id: 2, count: PACKETS, pps: 10_000, cgroup: None, netns: &netns }.run();
    assert_eq!(outside.errors, 0);
    let report = sink.finish();
    let json = chaos.stop_json();
    let (inside, beside) = (lost(&report, 1), lost(&report, 2));
    eprintln!(
        "measured ({engine:?}): the container lost {:.1} % of {PACKETS}, a sender beside it {:.1} %",
        inside * 100.0,
        beside * 100.0
    );
    assert!((0.45..=0.55).contains(&inside), "the container lost {:.1} %, expected 50 +- 5", inside * 100.0);
    assert_eq!(report.received_from(2), PACKETS, "a sender outside the container lost packets");
    assert_eq!(json["target"]["cgroup"], expected.as_str(), "{json}");

    // A partition from the container to its loopback, by short id: nothing it sends arrives,
    // everything from beside it does.
    let sink = UdpSink::start(&netns, PORT, 1000, false);
    let mut chaos = Chaos::start_with_env(
        &[
            "net",
            "partition",
            "--container",
            &id[..12],
            "--to",
            "127.0.0.1/32",
            "--for",
            "2m",
            "--output",
            "json",
            "-v",
        ],
        &env,
    );
    chaos.wait_until_armed(Duration::from_secs(60));
    blast_inside(&exec, 1);
    let outside = Blast { to, sender_id: 2, count: PACKETS, pps: 10_000, cgroup: None, netns: &netns }.run();
    assert_eq!(outside.errors, 0);
    let report = sink.finish();
    let json = chaos.stop_json();
    eprintln!(
        "measured ({engine:?}): partitioned, the container got {} of {PACKETS} through, a sender beside it {}",
        report.received_from(1),
        report.received_from(2)
    );
    assert_eq!(report.received_from(1), 0, "a partitioned container got datagrams through");
    assert_eq!(report.received_from(2), PACKETS, "a sender outside the container lost packets");
    assert_eq!(json["target"]["cgroup"], expected.as_str(), "{json}");
}

#[test]
fn docker_containers_are_found_by_short_id_full_id_and_name_and_a_drop_and_a_partition_hit_only_them() {
    let test = "docker_containers_are_found_by_short_id_full_id_and_name_and_a_drop_and_a_partition_hit_only_them";
    require_root!(test);
    host_tier_only!(test);
    found_by_id_and_name_and_dropped(Engine::Docker, test);
}

#[test]
fn podman_containers_are_found_through_its_docker_compatible_socket_and_a_drop_and_a_partition_hit_only_them() {
    let test =
        "podman_containers_are_found_through_its_docker_compatible_socket_and_a_drop_and_a_partition_hit_only_them";
    require_root!(test);
    host_tier_only!(test);
    found_by_id_and_name_and_dropped(Engine::Podman, test);
}

#[test]
fn a_name_two_runtimes_know_is_refused_listing_both() {
    let test = "a_name_two_runtimes_know_is_refused_listing_both";
    require_root!(test);
    host_tier_only!(test);
    let rootfs = match Rootfs::build() {
        Ok(rootfs) => rootfs,
        Err(why) => return skip::record(test, &why),
    };
    let (docker, podman) = match (DockerApi::start(Engine::Docker, &rootfs), DockerApi::start(Engine::Podman, &rootfs))
    {
        (Ok(d), Ok(p)) => (d, p),
        (Err(why), _) | (_, Err(why)) => return skip::record(test, &format!("a runtime cannot run here: {why}")),
    };
    let name = unique_name("twin");
    let (docker_id, _) = docker.run_sleeper(&name).expect("start the Docker container");
    let (podman_id, _) = podman.run_sleeper(&name).expect("start the Podman container");
    let mut env = env("DOCKER_HOST", docker.host());
    env[1].1 = podman.host();
    let err = resolved(&["--container", &name], &env).unwrap_err();
    assert!(err.contains("matches more than one container"), "{err}");
    assert!(err.contains(&format!("docker {}", &docker_id[..12])), "{err}");
    assert!(err.contains(&format!("podman {}", &podman_id[..12])), "{err}");
    // Its id still names one of them.
    assert!(resolved(&["--container", &docker_id], &env).is_ok());
}

#[test]
fn a_container_name_with_no_runtime_answering_is_refused_saying_what_to_do() {
    require_root!("a_container_name_with_no_runtime_answering_is_refused_saying_what_to_do");
    host_tier_only!("a_container_name_with_no_runtime_answering_is_refused_saying_what_to_do");
    let env = env("none", String::new());
    let err = resolved(&["--container", "web"], &env).unwrap_err();
    assert!(err.contains("no container runtime answered") && err.contains("DOCKER_HOST"), "{err}");
    let err = resolved(&["--pod", "shop/web-1"], &env).unwrap_err();
    assert!(err.contains("no container runtime answered"), "{err}");
}

/// Two pods of two containers each (and a sandbox each) in shop, a third pod with one, as
/// kubelet would label them.
fn kubelet_labels<'a>(
    pod: &'a str,
    container: Option<&'a str>,
    pod_labels: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("io.kubernetes.pod.name", pod), ("io.kubernetes.pod.namespace", "shop")];
    match container {
        Some(name) => labels.extend([("io.kubernetes.container.name", name), ("io.cri-containerd.kind", "container")]),
        None => {
            labels.push(("io.cri-containerd.kind", "sandbox"));
            labels.extend_from_slice(pod_labels);
        }
    }
    labels
}

/// A test pod: its name, its own labels (on its sandbox), its containers' names.
type PodSpec = (&'static str, &'static [(&'static str, &'static str)], &'static [&'static str]);

/// The three test pods in a private containerd, as kubelet would label them: the runtime, the
/// prefix of the containers' ids, and each member's (`pod/container`) init pid. None: skipped.
fn three_pods(test: &str) -> Option<(Rootfs, Containerd, String, std::collections::BTreeMap<String, u32>)> {
    let rootfs = match Rootfs::build() {
        Ok(rootfs) => rootfs,
        Err(why) => {
            skip::record(test, &why);
            return None;
        }
    };
    let mut containerd = match Containerd::start() {
        Ok(c) => c,
        Err(why) => {
            skip::record(test, &format!("containerd cannot run here: {why}"));
            return None;
        }
    };
    let prefix = unique_name("t").replace('-', "");
    let pods: [PodSpec; 3] = [
        ("web-1", &[("app", "web"), ("tier", "front")], &["nginx", "sidecar"]),
        ("db-1", &[("app", "db")], &["postgres", "backup"]),
        ("web-2", &[("app", "web")], &["nginx"]),
    ];
    let mut pids = std::collections::BTreeMap::new();
    for (pod, pod_labels, containers) in pods {
        let members = std::iter::once(None).chain(containers.iter().map(|c| Some(*c)));
        for member in members {
            let id = format!("{prefix}-{pod}-{}", member.unwrap_or("sandbox"));
            let labels = kubelet_labels(pod, member, pod_labels);
            let cgroup = format!("pod-{pod}/{id}");
            let pid = containerd.run(&rootfs, &id, &cgroup, &labels).expect("run a container with ctr");
            pids.insert(format!("{pod}/{}", member.unwrap_or("sandbox")), pid);
        }
    }
    Some((rootfs, containerd, prefix, pids))
}

/// Share of a blast from inside `member` (`pod/container`, container id `id`) that its sink,
/// in the container's netns but outside its cgroup, did not get.
fn lost_by_member(
    containerd: &Containerd,
    pids: &std::collections::BTreeMap<String, u32>,
    member: &str,
    id: &str,
) -> f64 {
    let netns = Netns::of_process(pids[member]);
    let sink = UdpSink::start(&netns, PORT, 1000, false);
    let exec_id = unique_name("exec");
    let address = containerd.address();
    blast_inside(&["ctr", "--address", &address, "-n", "k8s.io", "tasks", "exec", "--exec-id", &exec_id, id], 1);
    lost(&sink.finish(), 1)
}

#[test]
fn containerd_pods_are_picked_by_pod_selector_and_container_name_and_a_fault_hits_one_pod() {
    let test = "containerd_pods_are_picked_by_pod_selector_and_container_name_and_a_fault_hits_one_pod";
    require_root!(test);
    host_tier_only!(test);
    let Some((_rootfs, containerd, prefix, pids)) = three_pods(test) else { return };
    let env = env("CONTAINERD_ADDRESS", containerd.address());
    let top = containerd.cgroup_top.clone();
    let pod_cgroup = |pod: &str| format!("{top}/pod-{pod}");
    let container_cgroup = |member: &str| cgroup_of(pids[member]);
    let check = |target: &[&str], want: String| {
        assert_eq!(resolved(target, &env), Ok(want), "{target:?}");
    };
    check(&["--pod", "shop/web-1"], pod_cgroup("web-1"));
    check(&["--pod", "shop/db-1"], pod_cgroup("db-1"));
    check(&["--pod", "shop/web-1", "--container-name", "sidecar"], container_cgroup("web-1/sidecar"));
    check(&["--selector", "app=db"], pod_cgroup("db-1"));
    check(&["--selector", "app=web,tier=front", "--container-name", "nginx"], container_cgroup("web-1/nginx"));
    check(&["--selector", "app=web", "--namespace", "shop", "--pick-pod", "2"], pod_cgroup("web-2"));
    let many = resolved(&["--selector", "app=web"], &env).unwrap_err();
    assert!(
        many.contains("matches 2 pods") && many.contains("1. shop/web-1") && many.contains("2. shop/web-2"),
        "{many}"
    );
    let none = resolved(&["--selector", "app=web", "--namespace", "other"], &env).unwrap_err();
    assert!(none.contains("no pod on this node matches"), "{none}");
    let unknown = resolved(&["--pod", "shop/web-1", "--container-name", "redis"], &env).unwrap_err();
    assert!(unknown.contains("has no container named redis; it has: nginx, sidecar"), "{unknown}");
    let by_id = format!("{prefix}-db-1-postgres");
    check(&["--container", &by_id], container_cgroup("db-1/postgres"));

    // The fault on pod web-1 as a whole: its nginx loses half, db-1's postgres nothing. Each
    // sender is exec'd into its container; each sink is in that container's netns, outside it.
    let chaos = start_drop(&["--pod", "shop/web-1"], &env);
    let mut lost_by = Vec::new();
    for (member, id) in [("web-1/nginx", format!("{prefix}-web-1-nginx")), ("db-1/postgres", by_id.clone())] {
        lost_by.push(lost_by_member(&containerd, &pids, member, &id));
    }
    let json = chaos.stop_json();
    eprintln!(
        "measured (containerd): pod web-1's nginx lost {:.1} % of {PACKETS}, pod db-1's postgres {:.1} %",
        lost_by[0] * 100.0,
        lost_by[1] * 100.0
    );
    assert!((0.45..=0.55).contains(&lost_by[0]), "web-1 lost {:.1} %, expected 50 +- 5", lost_by[0] * 100.0);
    assert!(lost_by[1] == 0.0, "db-1, not targeted, lost {:.1} %", lost_by[1] * 100.0);
    assert_eq!(json["target"]["cgroup"], pod_cgroup("web-1").as_str(), "{json}");
}

#[test]
fn a_one_shot_fault_with_all_hits_every_pod_the_selector_matches_and_no_other() {
    let test = "a_one_shot_fault_with_all_hits_every_pod_the_selector_matches_and_no_other";
    require_root!(test);
    host_tier_only!(test);
    let Some((_rootfs, containerd, prefix, pids)) = three_pods(test) else { return };
    let env = env("CONTAINERD_ADDRESS", containerd.address());
    let top = containerd.cgroup_top.clone();
    // A fault done from chaos's own process cannot be copied to every pod: refused, while both
    // web pods run (each pod is resolved and planned first, so the refusal is about the fault).
    let (status, _, stderr) =
        chaos::run_with_env(&["proc", "pause", "--selector", "app=web", "--all", "--for", "5s"], &env);
    assert_eq!(status.code(), Some(2), "a userspace fault on every pod is refused: {stderr}");
    assert!(stderr.contains("--pick-pod"), "{stderr}");
    let chaos = start_drop(&["--selector", "app=web", "--all"], &env);
    let mut lost_by = Vec::new();
    for (member, pod) in [("web-1/nginx", "web-1"), ("web-2/nginx", "web-2"), ("db-1/postgres", "db-1")] {
        let id = format!("{prefix}-{pod}-{}", member.split('/').nth(1).unwrap_or_default());
        lost_by.push(lost_by_member(&containerd, &pids, member, &id));
    }
    // Pod web-2 goes away (its members killed, its cgroup removed): its copy ends, web-1's not.
    for member in ["nginx", "sandbox"] {
        let id = format!("{prefix}-web-2-{member}");
        let _ = containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &id]);
        for _ in 0..50 {
            if containerd.ctr(&["tasks", "rm", "-f", &id]).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    chaos_tests::runtimes::remove_cgroup(&format!("{top}/pod-web-2"));
    let gone_by = std::time::Instant::now() + Duration::from_secs(10);
    while !chaos.stderr_so_far().contains("pod-web-2 was removed") {
        assert!(std::time::Instant::now() < gone_by, "web-2's copy did not end: {}", chaos.stderr_so_far());
        std::thread::sleep(Duration::from_millis(50));
    }
    let id = format!("{prefix}-web-1-nginx");
    let web_1_after = lost_by_member(&containerd, &pids, "web-1/nginx", &id);
    eprintln!("measured (containerd, --all): after web-2 went, web-1 lost {:.1} %", web_1_after * 100.0);
    assert!((0.45..=0.55).contains(&web_1_after), "web-1 lost {:.1} % after web-2 went", web_1_after * 100.0);
    let json = chaos.stop_json();
    eprintln!(
        "measured (containerd, --all): web-1 lost {:.1} % of {PACKETS}, web-2 {:.1} %, db-1 (not matched) {:.1} %",
        lost_by[0] * 100.0,
        lost_by[1] * 100.0,
        lost_by[2] * 100.0
    );
    for (pod, lost) in [("web-1", lost_by[0]), ("web-2", lost_by[1])] {
        assert!((0.45..=0.55).contains(&lost), "{pod} lost {:.1} %, expected 50 +- 5", lost * 100.0);
    }
    assert!(lost_by[2] == 0.0, "db-1, not matched, lost {:.1} %", lost_by[2] * 100.0);
    let reports = json.as_array().unwrap_or_else(|| panic!("--all reports one entry per pod: {json}"));
    let cgroups: Vec<&str> = reports.iter().filter_map(|r| r["target"]["cgroup"].as_str()).collect();
    assert_eq!(cgroups, [format!("{top}/pod-web-1"), format!("{top}/pod-web-2")], "{json}");
    assert_eq!(reports[0]["stopped"]["by"], "signal", "{json}");
    assert_eq!(reports[1]["stopped"]["by"], "target_gone", "{json}");
    for report in reports {
        let injected: u64 =
            report["counters"].as_array().expect("counters").iter().filter_map(|c| c["injected"].as_u64()).sum();
        assert!(injected > PACKETS / 3, "a pod's own counters show its drops: {report}");
    }
}
