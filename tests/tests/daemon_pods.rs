//! `chaos daemon` with the selectors that ask the container runtimes (host tier): pods by
//! kubelet's labels through a private containerd, only in namespaces that opted in (`[kubernetes]
//! namespaces`), the pod's cgroup or one named container's; and Docker containers by name
//! through a private dockerd. Schedules are compressed to seconds; what is asserted is where
//! the kernel has the daemon's programs attached, sampled every few milliseconds.
use std::{
    collections::BTreeSet,
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use chaos_tests::{
    TempDir,
    cgroup::cgroup2_mount,
    chaos::{self, Chaos},
    kernel, require_root,
    runtimes::{Containerd, Rootfs},
    skip, unique_name,
};

/// The VM guests' busybox userland has no container runtime, and the daemon's tests belong to
/// the host tier.
macro_rules! host_tier_only {
    ($test:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "the VM guests have no container runtime (busybox userland); the host tier starts Docker and containerd"
        );
    };
}

use chaos_tests::runtimes::only_runtime as env;

/// A 2 s drop of 10 % egress, every 500 ms, two at once at most, on `targets`, started.
fn daemon(kubernetes: &str, targets: &str, env: &[(&str, String)]) -> (Chaos, TempDir) {
    let dir = configuration(kubernetes, targets);
    let config = dir.join("daemon.toml");
    let mut chaos = Chaos::start_with_env(&["daemon", "--config", config.to_str().expect("utf-8")], env);
    let socket = dir.join("daemon.sock");
    chaos.wait_until("the daemon's socket answers", Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    (chaos, dir)
}

/// `chaos daemon --check` of that configuration: its output.
fn check(kubernetes: &str, targets: &str, env: &[(&str, String)]) -> String {
    let dir = configuration(kubernetes, targets);
    let config = dir.join("daemon.toml");
    let (status, stdout, stderr) = chaos::run_with_env(&["daemon", "--check", config.to_str().expect("utf-8")], env);
    assert!(status.success(), "{stdout}{stderr}");
    stdout
}

/// The daemon's files in a directory of their own.
fn configuration(kubernetes: &str, targets: &str) -> TempDir {
    let dir = TempDir::new();
    let experiment = "name = \"pod drop\"\ntarget = { cgroup = \"/placeholder\" }\nduration = \"2s\"\n\n\
                      [[fault]]\nkind = \"net drop\"\npercent = 10\ndirection = \"egress\"\n";
    fs::write(dir.join("experiment.toml"), experiment).expect("write the experiment");
    let config = format!(
        "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n\
         [schedule]\nevery = \"500ms\"\n[budget]\nmax_runs_per_hour = 1000\nmax_concurrent = 2\n{kubernetes}\n\n\
         [[experiment]]\nfile = \"experiment.toml\"\ntargets = {targets}\n"
    );
    fs::write(dir.join("daemon.toml"), config).expect("write the configuration");
    dir
}

/// SIGTERM, exit 0; its log.
fn terminate(chaos: Chaos) -> String {
    chaos.signal(libc::SIGTERM);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "the daemon ends cleanly on SIGTERM: {stderr}");
    stderr
}

/// Samples the inet programs attached to each of `cgroups` (paths) for `how_long`; returns
/// the ones that ever had any.
fn hit_during(cgroups: &[String], how_long: Duration) -> BTreeSet<String> {
    let mount = cgroup2_mount();
    let dirs: Vec<PathBuf> = cgroups.iter().map(|c| mount.join(c.trim_start_matches('/'))).collect();
    let mut hit = BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < how_long {
        for (cgroup, dir) in cgroups.iter().zip(&dirs) {
            if kernel::inet_programs_attached(dir) > 0 {
                hit.insert(cgroup.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    hit
}

/// The cgroup v2 path of `pid`.
fn cgroup_of(pid: u32) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line").trim().to_owned()
}

/// kubelet's labels on a pod's sandbox (`container` None: with the pod's labels) or container.
fn kubelet_labels<'a>(
    namespace: &'a str,
    pod: &'a str,
    container: Option<&'a str>,
    pod_labels: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("io.kubernetes.pod.name", pod), ("io.kubernetes.pod.namespace", namespace)];
    match container {
        Some(name) => labels.extend([("io.kubernetes.container.name", name), ("io.cri-containerd.kind", "container")]),
        None => {
            labels.push(("io.cri-containerd.kind", "sandbox"));
            labels.extend_from_slice(pod_labels);
        }
    }
    labels
}

#[test]
fn a_pod_selector_runs_only_on_the_selected_pods_of_opted_in_namespaces_and_says_why_it_skips_the_others() {
    let test = "a_pod_selector_runs_only_on_the_selected_pods_of_opted_in_namespaces_and_says_why_it_skips_the_others";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let rootfs = match Rootfs::build() {
        Ok(rootfs) => rootfs,
        Err(why) => return skip::record(test, &why),
    };
    let mut containerd = match Containerd::start() {
        Ok(c) => c,
        Err(why) => return skip::record(test, &format!("containerd cannot run here: {why}")),
    };
    // web-1 (shop, app=web) is the target; db-1 (shop, app=db) has other labels; web-x has the
    // target's labels in a namespace that has not opted in.
    let prefix = unique_name("d").replace('-', "");
    let pods = [("shop", "web-1", ("app", "web")), ("shop", "db-1", ("app", "db")), ("team", "web-x", ("app", "web"))];
    let mut pids = std::collections::BTreeMap::new();
    for (namespace, pod, label) in pods {
        for member in [None, Some("main")] {
            let id = format!("{prefix}-{pod}-{}", member.unwrap_or("sandbox"));
            let labels = kubelet_labels(namespace, pod, member, &[label]);
            let pid = containerd.run(&rootfs, &id, &format!("pod-{pod}/{id}"), &labels).expect("run a container");
            pids.insert(format!("{pod}/{}", member.unwrap_or("sandbox")), pid);
        }
    }
    let env = env("CONTAINERD_ADDRESS", containerd.address());
    let pod_cgroup = |pod: &str| format!("{}/pod-{pod}", containerd.cgroup_top);
    let mut watched: Vec<String> = ["web-1", "db-1", "web-x"].into_iter().map(pod_cgroup).collect();
    watched.extend(pids.values().map(|&pid| cgroup_of(pid)));

    let shop = "[kubernetes]\nnamespaces = [\"shop\"]";
    let started = Instant::now();
    let checked = check(shop, "{ pods = \"app=web\" }", &env);
    // An upper bound of what a pod selector's match costs the daemon's control task per run.
    eprintln!("measured: `chaos daemon --check` with a pod selector took {:?}", started.elapsed());
    assert!(checked.contains("pods app=web (1 match now)") && checked.contains("opted in: shop"), "{checked}");
    let checked = check("", "{ pods = \"app=web\" }", &env);
    assert!(checked.contains("(0 match now)") && checked.contains("note: 2 pod(s) match but"), "{checked}");

    // The pod as a whole: its own cgroup, nothing else.
    let (chaos, _dir) = daemon("[kubernetes]\nnamespaces = [\"shop\"]", "{ pods = \"app=web\" }", &env);
    let hit = hit_during(&watched, Duration::from_secs(5));
    let log = terminate(chaos);
    eprintln!("measured: the pod selector's runs attached to {hit:?}");
    assert_eq!(hit, BTreeSet::from([pod_cgroup("web-1")]), "only pod web-1's cgroup is hit: {log}");
    assert!(log.contains("run started") && log.contains(&pod_cgroup("web-1")), "{log}");

    // `container_name`: that container of the pod, not the pod's cgroup.
    let (chaos, _dir) = daemon(
        "[kubernetes]\nnamespaces = [\"shop\"]",
        "{ pods = \"app=web\", namespace = \"shop\", container_name = \"main\" }",
        &env,
    );
    let hit = hit_during(&watched, Duration::from_secs(4));
    let log = terminate(chaos);
    eprintln!("measured: with container_name, the runs attached to {hit:?}");
    assert_eq!(hit, BTreeSet::from([cgroup_of(pids["web-1/main"])]), "only web-1's container is hit: {log}");

    // No opt-in: nothing runs, and each skipped run says why.
    let (chaos, _dir) = daemon("", "{ pods = \"app=web\" }", &env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !chaos.stderr_so_far().contains("has not opted in") {
        assert!(Instant::now() < deadline, "no skipped run says why: {}", chaos.stderr_so_far());
        std::thread::sleep(Duration::from_millis(20));
    }
    let hit = hit_during(&watched, Duration::from_secs(2));
    let log = terminate(chaos);
    assert!(hit.is_empty(), "a pod of a namespace that did not opt in was hit: {hit:?}");
    assert!(
        log.contains("2 pod(s) match but their namespace (shop, team) has not opted in")
            && log.contains("shop/web-1")
            && log.contains("team/web-x"),
        "{log}"
    );
    assert!(!log.contains("run started"), "{log}");
}

#[test]
fn a_container_name_selector_runs_only_on_the_docker_containers_it_names() {
    let test = "a_container_name_selector_runs_only_on_the_docker_containers_it_names";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let Some((_rootfs, api)) = chaos_tests::runtimes::private_docker(test) else { return };
    let tag = unique_name("n");
    let names = [format!("web-a-{tag}"), format!("web-b-{tag}"), format!("db-{tag}")];
    let cgroups: Vec<String> =
        names.iter().map(|name| cgroup_of(api.run_sleeper(name).expect("start a container").1)).collect();
    let env = env("DOCKER_HOST", api.host());
    let (chaos, _dir) = daemon("", &format!("{{ container_name = \"web-*-{tag}\" }}"), &env);
    let hit = hit_during(&cgroups, Duration::from_secs(4));
    let log = terminate(chaos);
    eprintln!("measured: the container name selector's runs attached to {hit:?}");
    // Two at once are allowed and each run lasts 2 s: the second start (500 ms after the first)
    // must take the other web container.
    assert_eq!(hit, BTreeSet::from([cgroups[0].clone(), cgroups[1].clone()]), "{log}");
}

/// Every event of every timeline under `dir`, so far.
fn timeline_events(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| chaos_tests::timeline_so_far(&e.path())).collect()
}

#[test]
fn a_daemon_run_that_follows_a_container_name_reattaches_after_a_docker_restart() {
    let test = "a_daemon_run_that_follows_a_container_name_reattaches_after_a_docker_restart";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let Some((_rootfs, api)) = chaos_tests::runtimes::private_docker(test) else { return };
    let name = format!("web-{}", unique_name("f"));
    let old_cgroup = cgroup_of(api.run_sleeper(&name).expect("start a container").1);
    let dir = TempDir::new();
    let experiment = "name = \"followed drop\"\ntarget = { cgroup = \"/placeholder\" }\nduration = \"20s\"\n\n\
                      [[fault]]\nkind = \"net drop\"\npercent = 10\ndirection = \"egress\"\n";
    fs::write(dir.join("experiment.toml"), experiment).expect("write the experiment");
    let config = format!(
        "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n\
         [schedule]\nevery = \"500ms\"\n[budget]\nmax_runs_per_hour = 1000\n\n\
         [[experiment]]\nfile = \"experiment.toml\"\ntargets = {{ container_name = \"{name}\" }}\nfollow = true\n"
    );
    fs::write(dir.join("daemon.toml"), config).expect("write the configuration");
    let mut daemon = Chaos::start_with_env(
        &["daemon", "--config", dir.join("daemon.toml").to_str().expect("utf-8")],
        &env("DOCKER_HOST", api.host()),
    );
    let old_dir = cgroup2_mount().join(old_cgroup.trim_start_matches('/'));
    daemon.wait_until("the run attached", Duration::from_secs(30), || kernel::inet_programs_attached(&old_dir) > 0);
    let old_id = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&old_dir).expect("the cgroup"));

    api.cli(&["restart", "-t", "0", &name]).expect("docker restart");
    let pid: u32 =
        api.cli(&["inspect", "-f", "{{.State.Pid}}", &name]).expect("docker inspect").trim().parse().expect("a pid");
    let new_cgroup = cgroup_of(pid);
    let new_dir = cgroup2_mount().join(new_cgroup.trim_start_matches('/'));
    let timelines = dir.join("state").join("timelines");
    daemon.wait_until("a reattach event", Duration::from_secs(15), || {
        timeline_events(&timelines).iter().any(|e| e["event"] == "reattach")
    });
    let new_id = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&new_dir).expect("the new cgroup"));
    assert_ne!(old_id, new_id, "docker restart made a new cgroup");
    assert!(kernel::inet_programs_attached(&new_dir) > 0, "nothing attached to the restarted container's cgroup");
    let log = terminate(daemon);
    let events = timeline_events(&timelines);
    let reattach = events.iter().find(|e| e["event"] == "reattach").expect("a reattach event");
    eprintln!("measured: the daemon's run re-attached: {reattach}");
    assert_eq!(reattach["new_cgroup"], new_cgroup.as_str(), "{reattach}");
    assert!(log.contains("following --container"), "{log}");
    // Its only abort is the daemon's SIGTERM, never "target gone".
    let gone =
        |e: &&serde_json::Value| e["event"] == "abort" && e["reason"].as_str().is_some_and(|r| r.contains("gone"));
    assert!(!events.iter().any(|e| gone(&e)), "the followed run ended target gone: {events:?}");
    assert_eq!(kernel::inet_programs_attached(&new_dir), 0, "the drop outlived the daemon");
}
