//! One chaos process holds many faults on one hook through one program there: on the raw
//! `sys_enter` tracepoint (host and VM tiers) and on fentry of a syscall's entry function (VM
//! tiers, where the kernel has BPF trampolines). The kernel lists one link for all of them, each
//! target is still delayed, nothing else is, a fault nested under another gets a link of its
//! own, and nothing is left once the process ends.
use std::{fs, os::unix::net::UnixStream, path::Path, time::Duration};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel::{self, LinkKind},
    programs, require_root, skip, timeline_so_far,
    workload::workload_json,
};

const DELAY_MS: f64 = 20.0;

/// `syscalls`: two or more take the raw tracepoint on every kernel; one takes fentry where the
/// kernel has it.
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
    // `nested` delays other calls than `first`: two delays of one call on one task resume each
    // other's stops (docs/syscalls.md, "Which hook").
    let runs =
        [("first", &first, "read,readv"), ("second", &second, "read,readv"), ("nested", &nested, "getrandom,getppid")];
    let daemon = daemon_with_armed_runs(dir.path(), &runs);
    // What the kernel holds: the shared program once, and two links on the tracepoint (the
    // shared one for `first` and `second`, and `nested`'s own: a task of `nested` is also a
    // task of `first`, and one lookup reaches one fault).
    let links = kernel::raw_tracepoint_links_held_by(daemon.pid() as u32);
    let shared = programs_named_held_by(&daemon, SYS_ENTER_DISPATCH);
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
    kill_and_wait_for_its_programs_to_go(daemon);
    assert!(median_read_ms(&first) < DELAY_MS / 2.0, "first's reads are still delayed after the daemon died");
}

#[test]
fn faults_of_one_daemon_on_one_syscall_share_one_fentry_program() {
    require_root!("faults_of_one_daemon_on_one_syscall_share_one_fentry_program");
    if let Some(reason) = chaos_tests::probe::fentry_missing() {
        skip::missing(
            skip::Feature::Fentry,
            "faults_of_one_daemon_on_one_syscall_share_one_fentry_program",
            &format!("{reason}; the sys_enter test covers the shared program here"),
        );
        return;
    }
    let _serial = chaos_tests::serialized();
    let (first, second, third, untargeted) =
        (TestCgroup::new(), TestCgroup::new(), TestCgroup::new(), TestCgroup::new());
    let nested = first.child("nested");
    let dir = TempDir::new();
    // One syscall each, so fentry: three faults on read() and one on getrandom() under `first`,
    // which is another entry function and so another shared program.
    let runs = [
        ("first", &first, "read"),
        ("second", &second, "read"),
        ("third", &third, "read"),
        ("nested", &nested, "getrandom"),
    ];
    let daemon = daemon_with_armed_runs(dir.path(), &runs);

    // What the kernel holds: one shared program and one fentry link per entry function (four
    // faults took four links before).
    let links = kernel::links_held_by(daemon.pid() as u32, LinkKind::Fentry);
    let shared = programs_named_held_by(&daemon, ENTRY_DISPATCH);
    let reads: Vec<(&str, f64)> = [("first", &first), ("second", &second), ("third", &third), ("nested", &nested)]
        .into_iter()
        .map(|(name, cgroup)| (name, median_read_ms(cgroup)))
        .collect();
    let untargeted_ms = median_read_ms(&untargeted);
    let (nested_getrandom_ms, untargeted_getrandom_ms) = (getrandom_ms(&nested), getrandom_ms(&untargeted));
    eprintln!(
        "measured: {links} fentry links, {shared} shared fentry programs; median read: {reads:?} ms, untargeted \
         {untargeted_ms:.3} ms; getrandom: nested {nested_getrandom_ms:.2} ms, untargeted {untargeted_getrandom_ms:.3} ms"
    );
    assert_eq!(shared, 2, "one shared fentry program for read() and one for getrandom()");
    assert_eq!(links, 2, "one fentry link per entry function for the daemon's four faults");
    for (name, ms) in reads {
        // `nested` is under `first`, whose fault holds its reads too.
        assert!(ms >= DELAY_MS * 0.9, "{name}'s reads were not delayed: {ms:.2} ms");
    }
    assert!(nested_getrandom_ms >= DELAY_MS * 0.9, "nested's getrandom() was not delayed: {nested_getrandom_ms:.2} ms");
    for (what, ms) in [("reads", untargeted_ms), ("getrandom()", untargeted_getrandom_ms)] {
        assert!(ms < DELAY_MS / 2.0, "an untargeted cgroup's {what} were delayed: {ms:.2} ms");
    }

    kill_and_wait_for_its_programs_to_go(daemon);
    assert!(median_read_ms(&second) < DELAY_MS / 2.0, "second's reads are still delayed after the daemon died");
}

/// The shared programs as the kernel names them (cut at 15 bytes).
const SYS_ENTER_DISPATCH: &str = "chaos_dispatch";
const ENTRY_DISPATCH: &str = "chaos_dispatch_";

/// The programs named `name` that `chaos` holds (counted by the process, not machine-wide: a
/// program another test's chaos just let go may still be in the kernel for a moment).
fn programs_named_held_by(chaos: &Chaos, name: &str) -> usize {
    let held = programs::programs_held_by(chaos.pid() as u32).into_iter().filter_map(programs::program_info);
    held.filter(|info| info.name == name).count()
}

/// A daemon in `dir` whose experiments (name, target, delayed syscalls) have all armed.
fn daemon_with_armed_runs(dir: &Path, runs: &[(&str, &TestCgroup, &str)]) -> Chaos {
    let mut config = String::from(
        "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n[schedule]\n\
         every = \"24h\"\n[budget]\nmax_runs_per_hour = 1000\nmax_concurrent = 10\n",
    );
    for (name, cgroup, syscalls) in runs {
        fs::write(dir.join(format!("{name}.toml")), delay_experiment(name, cgroup.path(), syscalls)).expect("write");
        config.push_str(&format!("\n[[experiment]]\nfile = \"{name}.toml\"\n"));
    }
    fs::write(dir.join("daemon.toml"), config).expect("write the configuration");
    let socket = dir.join("daemon.sock");
    let socket_arg = socket.to_str().expect("utf-8").to_owned();
    let mut daemon = Chaos::start(&["daemon", "--config", dir.join("daemon.toml").to_str().expect("utf-8")]);
    daemon.wait_until("the daemon's socket answers", Duration::from_secs(60), || UnixStream::connect(&socket).is_ok());
    for (name, _, _) in runs {
        let (status, stdout, stderr) = chaos::run(&["daemon", "run", name, "--socket", &socket_arg]);
        assert!(status.success(), "chaos daemon run {name}: {stdout}{stderr}");
    }
    let timelines = dir.join("state/timelines");
    daemon.wait_until("all runs armed", Duration::from_secs(120), || {
        let armed = fs::read_dir(&timelines).into_iter().flatten().flatten();
        armed.filter(|e| timeline_so_far(&e.path()).iter().any(|event| event["event"] == "arm")).count() == runs.len()
    });
    daemon
}

/// SIGKILLs the daemon and waits for the kernel to free every program it held: its links were
/// the daemon's descriptors, so the kernel drops them with it.
fn kill_and_wait_for_its_programs_to_go(daemon: Chaos) {
    let held = programs::programs_held_by(daemon.pid() as u32);
    daemon.signal(libc::SIGKILL);
    drop(daemon.wait(Duration::from_secs(30)));
    let gone = std::time::Instant::now();
    while let Some(id) = held.iter().copied().find(|&id| programs::program_info(id).is_some()) {
        assert!(gone.elapsed() < Duration::from_secs(5), "program {id} outlived the daemon by 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
