//! One chaos process holds many faults on the raw `sys_enter` tracepoint through one program
//! there (host and VM tiers): the kernel lists one link for all of them, each target is still
//! delayed, nothing else is, a fault nested under another gets a link of its own, and nothing is
//! left once the process ends.
use std::{fs, os::unix::net::UnixStream, time::Duration};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel, require_root, timeline_so_far,
    workload::workload_json,
};

const DELAY_MS: f64 = 20.0;

/// Two syscalls, so the raw tracepoint on every kernel (fentry serves one).
fn delay_experiment(name: &str, cgroup: &str, syscalls: &str) -> String {
    format!(
        "name = \"{name}\"\ntarget = {{ cgroup = \"{cgroup}\" }}\nduration = \"10m\"\n\n[[fault]]\n\
         kind = \"syscall delay\"\nsyscall = \"{syscalls}\"\nby = \"{DELAY_MS}ms\"\n"
    )
}

/// ms per getrandom() of a short loop in `cgroup`.
fn getrandom_ms(cgroup: &TestCgroup) -> f64 {
    let json = workload_json(&["getrandom-loop", "--count", "10"], Some(cgroup), None);
    json["elapsed_ns"].as_f64().unwrap_or_else(|| panic!("no elapsed_ns in {json}")) / 1e6 / 10.0
}

/// The median read latency (ms) of a short loop in `cgroup`.
fn median_read_ms(cgroup: &TestCgroup) -> f64 {
    let json = workload_json(&["latency-loop", "--count", "15"], Some(cgroup), None);
    let mut ms: Vec<f64> = json["latencies_ns"]
        .as_array()
        .unwrap_or_else(|| panic!("no latencies in {json}"))
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .map(|ns| ns / 1e6)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

#[test]
fn faults_of_one_daemon_share_one_sys_enter_program() {
    require_root!("faults_of_one_daemon_share_one_sys_enter_program");
    let _serial = chaos_tests::serialized();
    let (first, second, untargeted) = (TestCgroup::new(), TestCgroup::new(), TestCgroup::new());
    let nested = first.child("nested");
    let dir = TempDir::new();
    let mut config = String::from(
        "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n[schedule]\n\
         every = \"24h\"\n[budget]\nmax_runs_per_hour = 1000\nmax_concurrent = 10\n",
    );
    // `nested` delays other calls than `first`: two delays of one call on one task resume each
    // other's stops (README, syscall delay).
    let runs =
        [("first", &first, "read,readv"), ("second", &second, "read,readv"), ("nested", &nested, "getrandom,getppid")];
    for (name, cgroup, syscalls) in runs {
        fs::write(dir.path().join(format!("{name}.toml")), delay_experiment(name, cgroup.path(), syscalls))
            .expect("write");
        config.push_str(&format!("\n[[experiment]]\nfile = \"{name}.toml\"\n"));
    }
    fs::write(dir.path().join("daemon.toml"), config).expect("write the configuration");
    let socket = dir.path().join("daemon.sock");
    let socket_arg = socket.to_str().expect("utf-8").to_owned();
    let mut daemon = Chaos::start(&["daemon", "--config", dir.path().join("daemon.toml").to_str().expect("utf-8")]);
    daemon.wait_until("the daemon's socket answers", Duration::from_secs(60), || UnixStream::connect(&socket).is_ok());
    for (name, _, _) in runs {
        let (status, stdout, stderr) = chaos::run(&["daemon", "run", name, "--socket", &socket_arg]);
        assert!(status.success(), "chaos daemon run {name}: {stdout}{stderr}");
    }
    let timelines = dir.path().join("state/timelines");
    daemon.wait_until("all three runs armed", Duration::from_secs(120), || {
        let armed = fs::read_dir(&timelines).into_iter().flatten().flatten();
        armed.filter(|e| timeline_so_far(&e.path()).iter().any(|event| event["event"] == "arm")).count() == runs.len()
    });

    // What the kernel holds: the shared program once, and two links on the tracepoint (the
    // shared one for `first` and `second`, and `nested`'s own: a task of `nested` is also a
    // task of `first`, and one lookup reaches one fault).
    let links = kernel::raw_tracepoint_links_held_by(daemon.pid() as u32);
    let shared = kernel::programs_named("chaos_dispatch");
    let (first_ms, second_ms, nested_ms, untargeted_ms) =
        (median_read_ms(&first), median_read_ms(&second), median_read_ms(&nested), median_read_ms(&untargeted));
    let (nested_getrandom_ms, untargeted_getrandom_ms) = (getrandom_ms(&nested), getrandom_ms(&untargeted));
    eprintln!(
        "measured: {links} raw tracepoint links, {shared} shared program; median read: first {first_ms:.2} ms, \
         second {second_ms:.2} ms, nested {nested_ms:.2} ms (first's fault), untargeted {untargeted_ms:.3} ms; \
         getrandom: nested {nested_getrandom_ms:.2} ms, untargeted {untargeted_getrandom_ms:.3} ms"
    );
    assert_eq!(shared, 1, "one shared sys_enter program for the daemon");
    assert_eq!(links, 2, "one link shared by first and second, one of nested's own");
    let delayed = [("first's reads", first_ms), ("second's reads", second_ms), ("nested's reads", nested_ms)];
    for (what, ms) in delayed.into_iter().chain([("nested's getrandom()", nested_getrandom_ms)]) {
        assert!(ms >= DELAY_MS * 0.9, "{what} were not delayed: {ms:.2} ms");
    }
    for (what, ms) in [("reads", untargeted_ms), ("getrandom()", untargeted_getrandom_ms)] {
        assert!(ms < DELAY_MS / 2.0, "an untargeted cgroup's {what} were delayed: {ms:.2} ms");
    }

    // SIGKILL: the links were the daemon's descriptors, so the kernel drops them with it.
    daemon.signal(libc::SIGKILL);
    drop(daemon.wait(Duration::from_secs(30)));
    let gone = std::time::Instant::now();
    while kernel::programs_named("chaos_dispatch") != 0 {
        assert!(gone.elapsed() < Duration::from_secs(5), "the shared program outlived the daemon by 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(median_read_ms(&first) < DELAY_MS / 2.0, "first's reads are still delayed after the daemon died");
}
