//! `chaos syscall fail` on a real kernel: cgroup socket hooks everywhere, BPF LSM hooks where
//! the kernel has them (the VM tier), real programs making real calls.
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel::{self, LinkKind},
    net::Netns,
    require_root,
    skip::Feature,
    skip_unless_has,
    workload::{LsmCalls, Resident, SocketCalls, TcpListen, command_in, connect_loop, connect_loop_paced, file_loop},
};

const ECONNREFUSED: i32 = 111;
const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const EMFILE: i32 = 24;
const ETIMEDOUT: i32 = 110;

fn localhost(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), port)
}

/// `chaos syscall fail <args>` on the cgroup, armed.
fn start(args: &[&str], cgroup: &TestCgroup) -> Chaos {
    let mut full = vec!["syscall", "fail"];
    full.extend_from_slice(args);
    chaos::start_fault(&full, cgroup)
}

fn stop(chaos: Chaos) -> serde_json::Value {
    chaos.stop_json()
}

#[test]
fn connect_fails_with_the_errno_at_the_rate_through_cgroup_hooks() {
    require_root!("connect_fails_with_the_errno_at_the_rate_through_cgroup_hooks");
    let ns = Netns::new();
    let _server = TcpListen::start(&ns, 7400);
    let cgroup = TestCgroup::new();
    let chaos =
        start(&["--syscall", "connect", "--errno", "ECONNREFUSED", "--percent", "20", "--backend", "cgroup"], &cgroup);
    let inside = connect_loop(localhost(1, 7400), 5000, Some(&cgroup), &ns);
    let outside = connect_loop(localhost(1, 7400), 500, None, &ns);
    let report = stop(chaos);
    let rate = inside.failed() as f64 / inside.calls as f64;
    eprintln!(
        "measured: connect failed {} of {} ({:.2} %) with {:?}",
        inside.failed(),
        inside.calls,
        rate * 100.0,
        inside.errors
    );
    assert!((rate - 0.20).abs() <= 0.02, "{:.2} % failed, expected 20 % +- 2", rate * 100.0);
    assert_eq!(inside.errors.keys().copied().collect::<Vec<_>>(), [ECONNREFUSED], "only the chosen errno");
    assert_eq!(outside.failed(), 0, "a process outside the cgroup saw failures: {:?}", outside.errors);
    assert_eq!(report["counters"][0]["direction"], "calls");
    assert_eq!(report["counters"][0]["injected"].as_u64(), Some(inside.failed()), "{report}");
}

#[test]
fn schedules_give_exact_counts() {
    require_root!("schedules_give_exact_counts");
    let ns = Netns::new();
    let _server = TcpListen::start(&ns, 7410);
    let cgroup = TestCgroup::new();
    let cases: &[(&[&str], u64, Vec<u64>)] = &[
        (&["--first", "10"], 100, (1..=10).collect()),
        (&["--every", "7"], 700, (1..=100).map(|i| i * 7).collect()),
        (&["--after", "50", "--first", "10"], 100, (51..=60).collect()),
        (&["--after", "5", "--every", "3", "--max", "4"], 100, vec![8, 11, 14, 17]),
    ];
    for (schedule, calls, expected) in cases {
        let mut args = vec!["--syscall", "connect", "--errno", "ECONNREFUSED", "--backend", "cgroup"];
        args.extend_from_slice(schedule);
        let chaos = start(&args, &cgroup);
        let result = connect_loop(localhost(1, 7410), *calls, Some(&cgroup), &ns);
        drop(stop(chaos));
        assert_eq!(&result.failed_at, expected, "{schedule:?}");
    }
    // --max with a probability: exactly K failures, wherever they fall.
    let chaos = start(
        &["--syscall", "connect", "--errno", "ECONNREFUSED", "--percent", "50", "--max", "25", "--backend", "cgroup"],
        &cgroup,
    );
    let result = connect_loop(localhost(1, 7410), 1000, Some(&cgroup), &ns);
    drop(stop(chaos));
    assert_eq!(result.failed(), 25, "--max 25 at 50 %");
}

/// `--pid` finds the cgroup of a process started in a test cgroup: the fault lands on that
/// cgroup (the kernel shows its programs there) and its calls fail; others do not.
#[test]
fn a_pid_target_faults_the_cgroup_the_process_is_in() {
    require_root!("a_pid_target_faults_the_cgroup_the_process_is_in");
    let ns = Netns::new();
    let _server = TcpListen::start(&ns, 7460);
    let cgroup = TestCgroup::new();
    let resident = Resident::start(&cgroup, None);
    let pid = resident.pid().to_string();
    let mut chaos = Chaos::start(&[
        "syscall",
        "fail",
        "--syscall",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--backend",
        "cgroup",
        "--pid",
        &pid,
        "--for",
        "5m",
        "--output",
        "json",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(60));
    assert_eq!(kernel::cgroup_programs_at(cgroup.dir(), 10), 1, "no connect4 program on the pid's cgroup");
    let inside = connect_loop(localhost(1, 7460), 20, Some(&cgroup), &ns);
    let outside = connect_loop(localhost(1, 7460), 20, None, &ns);
    let report = stop(chaos);
    assert_eq!(inside.failed(), 20, "connects from the pid's cgroup: {inside:?}");
    assert_eq!(outside.failed(), 0, "connects from outside it: {outside:?}");
    assert_eq!(report["target"]["cgroup"], cgroup.path(), "{report}");
    assert_eq!(kernel::cgroup_programs(cgroup.dir()), 0);
}

#[test]
fn remote_filters_pick_the_peer() {
    require_root!("remote_filters_pick_the_peer");
    let ns = Netns::new();
    let _server = TcpListen::start(&ns, 7420);
    let _other_server = TcpListen::start(&ns, 7421);
    let cgroup = TestCgroup::new();
    let chaos = start(
        &[
            "--syscall",
            "connect",
            "--errno",
            "ECONNREFUSED",
            "--remote",
            "127.0.0.2",
            "--remote-port",
            "7420",
            "--backend",
            "cgroup",
        ],
        &cgroup,
    );
    let listed = connect_loop(localhost(2, 7420), 50, Some(&cgroup), &ns);
    let other_address = connect_loop(localhost(1, 7420), 50, Some(&cgroup), &ns);
    let other_port = connect_loop(localhost(2, 7421), 50, Some(&cgroup), &ns);
    drop(stop(chaos));
    assert_eq!(listed.failed(), 50, "{listed:?}");
    assert_eq!(other_address.failed(), 0, "{other_address:?}");
    assert_eq!(other_port.failed(), 0, "the listed address on another port: {other_port:?}");
}

#[test]
fn socket_and_sendto_fail_through_cgroup_hooks() {
    require_root!("socket_and_sendto_fail_through_cgroup_hooks");
    let ns = Netns::new();
    let _server = TcpListen::start(&ns, 7430);
    let cgroup = TestCgroup::new();
    let chaos = start(&["--syscall", "socket", "--errno", "EMFILE", "--first", "3", "--backend", "cgroup"], &cgroup);
    let result = connect_loop(localhost(1, 7430), 10, Some(&cgroup), &ns);
    drop(stop(chaos));
    assert_eq!(result.failed_at, [1, 2, 3]);
    assert_eq!(result.errors.keys().copied().collect::<Vec<_>>(), [EMFILE]);

    let chaos = start(&["--syscall", "sendto", "--errno", "ETIMEDOUT", "--max", "10", "--backend", "cgroup"], &cgroup);
    let blast = chaos_tests::workload::Blast {
        to: localhost(1, 7431),
        sender_id: 1,
        count: 100,
        pps: 0,
        cgroup: Some(&cgroup),
        netns: &ns,
    }
    .run();
    drop(stop(chaos));
    assert_eq!(blast.errors, 10, "sendto with --max 10: {blast:?}");
    assert!(blast.first_error.unwrap_or_default().contains("timed out"));
}

#[test]
fn file_syscalls_fail_through_lsm_only_under_the_path_and_only_for_the_cgroup() {
    require_root!("file_syscalls_fail_through_lsm_only_under_the_path_and_only_for_the_cgroup");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(
        Feature::BpfLsm,
        chaos::lsm_unavailable(),
        "file_syscalls_fail_through_lsm_only_under_the_path_and_only_for_the_cgroup"
    );
    let cgroup = TestCgroup::new();
    let (inside, elsewhere) = (TempDir::new(), TempDir::new());
    let prefix = inside.path().display().to_string();
    for (syscall, errno, name) in
        [("openat", EIO, "EIO"), ("write", ENOSPC, "ENOSPC"), ("read", EIO, "EIO"), ("unlink", EIO, "EIO")]
    {
        let chaos = start(
            &["--syscall", syscall, "--errno", name, "--every", "4", "--path", &prefix, "--backend", "lsm"],
            &cgroup,
        );
        let target = file_loop(inside.path(), 200, Some(&cgroup));
        let other_path = file_loop(elsewhere.path(), 50, Some(&cgroup));
        let other_cgroup = file_loop(inside.path(), 50, None);
        let report = stop(chaos);
        let calls = &target[syscall];
        let expected: Vec<u64> = (1..=calls.calls / 4).map(|i| i * 4).collect();
        eprintln!("measured: {syscall}: {} of {} calls failed, errnos {:?}", calls.failed(), calls.calls, calls.errors);
        assert_eq!(calls.failed_at, expected, "{syscall} --every 4: {calls:?}");
        assert_eq!(calls.errors.keys().copied().collect::<Vec<_>>(), [errno], "{syscall}");
        for (what, run) in [("a path outside the prefix", &other_path), ("a process outside the cgroup", &other_cgroup)]
        {
            let failures: u64 = run.values().map(chaos_tests::workload::Calls::failed).sum();
            assert_eq!(failures, 0, "{syscall}: {what} saw failures: {run:?}");
        }
        assert_eq!(report["counters"][0]["injected"].as_u64(), Some(calls.failed()), "{report}");
    }
}

#[test]
fn a_real_program_reports_the_injected_error() {
    require_root!("a_real_program_reports_the_injected_error");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::BpfLsm, chaos::lsm_unavailable(), "a_real_program_reports_the_injected_error");
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let chaos =
        start(&["--syscall", "write", "--errno", "ENOSPC", "--path", &dir.path().display().to_string()], &cgroup);
    let output = command_in("dd", Some(&cgroup), None)
        .arg("if=/dev/zero")
        .arg(format!("of={}/dd.out", dir.path().display()))
        .args(["bs=4096", "count=16"])
        .output()
        .expect("run dd");
    drop(stop(chaos));
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("measured: dd said: {}", stderr.trim());
    assert!(!output.status.success(), "dd succeeded under a write fault");
    assert!(stderr.contains("No space left on device"), "dd: {stderr}");
}

#[test]
fn connect_fails_through_lsm_with_a_remote_filter() {
    require_root!("connect_fails_through_lsm_with_a_remote_filter");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::BpfLsm, chaos::lsm_unavailable(), "connect_fails_through_lsm_with_a_remote_filter");
    let ns = Netns::new();
    let _server = TcpListen::start(&ns, 7440);
    let cgroup = TestCgroup::new();
    let chaos = start(
        &["--syscall", "connect", "--errno", "ETIMEDOUT", "--remote", "127.0.0.2/32", "--backend", "lsm"],
        &cgroup,
    );
    let listed = connect_loop(localhost(2, 7440), 20, Some(&cgroup), &ns);
    let other = connect_loop(localhost(1, 7440), 20, Some(&cgroup), &ns);
    drop(stop(chaos));
    assert_eq!(listed.errors.get(&ETIMEDOUT), Some(&20), "{listed:?}");
    assert_eq!(other.failed(), 0, "{other:?}");
}

#[test]
fn syscall_list_tells_the_mechanism_of_this_kernel() {
    require_root!("syscall_list_tells_the_mechanism_of_this_kernel");
    let _serial = chaos_tests::serialized();
    let (status, stdout, stderr) = chaos::run(&["syscall", "list", "--output", "json"]);
    assert!(status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("JSON rows");
    let row =
        |name: &str| rows.iter().find(|r| r["syscall"] == name).unwrap_or_else(|| panic!("no row for {name}")).clone();
    match chaos::lsm_unavailable() {
        Some(_) => {
            assert_eq!(row("openat")["mechanism"], serde_json::Value::Null);
            assert!(row("openat")["note"].as_str().unwrap_or_default().contains("BPF LSM is not available"));
            assert_eq!(row("connect")["mechanism"], "cgroup/connect4 + cgroup/connect6");
        }
        None => {
            assert_eq!(row("openat")["mechanism"], "lsm/file_open");
            assert_eq!(row("read")["filters"][0], "path");
        }
    }
}

#[test]
fn bad_syscall_input_is_refused_and_changes_nothing() {
    require_root!("bad_syscall_input_is_refused_and_changes_nothing");
    let cgroup = TestCgroup::new();
    let mut cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--syscall", "opnat", "--errno", "EIO"], "unknown syscall 'opnat'".into()),
        (vec!["--syscall", "connect", "--errno", "EBOGUS"], "unknown errno 'EBOGUS'".into()),
        (vec!["--syscall", "openat", "--errno", "EIO", "--path", "relative/dir", "--backend", "auto"], String::new()),
        (vec!["--syscall", "connect", "--errno", "EIO", "--path", "/tmp"], "--path applies to file syscalls".into()),
        (
            vec!["--syscall", "bind", "--errno", "EIO", "--remote", "10.0.0.0/8"],
            "--remote and --remote-port apply to calls with a peer".into(),
        ),
        (vec!["--syscall", "connect", "--errno", "EIO", "--every", "0"], "invalid value '0'".into()),
        (vec!["--syscall", "setsockopt", "--errno", "EIO", "--backend", "lsm"], "has no BPF LSM hook".into()),
    ];
    match chaos::lsm_unavailable() {
        // Here a file syscall has no mechanism at all: that is what the relative path hits first.
        Some(_) => {
            cases[2].1 = "BPF LSM is not available".into();
            cases.push((
                vec!["--syscall", "openat", "--errno", "EIO", "--backend", "lsm"],
                "BPF LSM is not available".into(),
            ));
            // Doctor agrees with the kernel, and says why.
            let reason = chaos::family_unavailable("syscall-errno-lsm").expect("doctor says BPF LSM works here");
            assert!(reason.contains("program type lsm"), "{reason}");
        }
        None => cases[2].1 = "--path relative/dir: not an absolute path".into(),
    }
    for (args, expected) in &cases {
        let mut full = vec!["syscall", "fail"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--cgroup", cgroup.path(), "--for", "5s"]);
        let (status, stderr, changes) = chaos::run_watching_attaches(&full);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected.as_str()), "{args:?}: expected {expected:?} in: {stderr}");
        // The kernel saw no attach, link (cgroup, LSM, raw tracepoint), pin or map write...
        assert!(changes.is_empty(), "{args:?} was refused but changed the kernel: {changes:#?}");
        // ...and nothing is left on any cgroup hook of the target.
        assert_eq!(kernel::cgroup_programs(cgroup.dir()), 0, "{args:?} left programs on the cgroup");
    }
}

/// Every cgroup hook chaos ships must pass this kernel's verifier and attach: the kernel must
/// show each one attached, and each must fire on one matching call at 100 %.
#[test]
fn every_cgroup_hook_loads_and_attaches_on_this_kernel() {
    require_root!("every_cgroup_hook_loads_and_attaches_on_this_kernel");
    let _serial = chaos_tests::serialized();
    let rows = syscall_rows();
    // Every hook attached (asked of the kernel per attach type), then one call of each kind
    // from sockets made in the cgroup before the fault, each refused with EIO.
    let cgroup = TestCgroup::new();
    let ns = Netns::new();
    let cgroup_rows: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["cgroup_hooks"].as_array().is_some_and(|h| !h.is_empty())).collect();
    let names: Vec<&str> = cgroup_rows.iter().filter_map(|r| r["syscall"].as_str()).collect();
    let hooks: std::collections::BTreeSet<&str> = cgroup_rows
        .iter()
        .flat_map(|r| r["cgroup_hooks"].as_array().expect("hooks").iter().filter_map(|h| h.as_str()))
        .collect();
    assert!(!names.is_empty(), "no cgroup syscalls listed");
    let calls = SocketCalls::start(&cgroup, &ns);
    let chaos =
        start(&["--syscall", &names.join(","), "--errno", "EIO", "--percent", "100", "--backend", "cgroup"], &cgroup);
    for hook in &hooks {
        let attach_type = kernel::cgroup_attach_type(hook).unwrap_or_else(|| panic!("unknown cgroup hook {hook}"));
        assert_eq!(kernel::cgroup_programs_at(cgroup.dir(), attach_type), 1, "{hook} is not attached to the cgroup");
    }
    let results = calls.call();
    let report = stop(chaos);
    eprintln!(
        "measured: cgroup: {} syscalls on {} hooks attached; calls at 100 %: {results:?}",
        names.len(),
        hooks.len()
    );
    for (call, errno) in &results {
        assert_eq!(*errno, EIO, "{call} in the cgroup was not refused by its hook");
    }
    assert_eq!(results.len(), 9, "{results:?}");
    let injected: u64 =
        report["counters"].as_array().expect("counters").iter().filter_map(|c| c["injected"].as_u64()).sum();
    assert_eq!(injected, 9, "one injection per call: {report}");
    assert_eq!(kernel::cgroup_programs(cgroup.dir()), 0, "programs left on the cgroup");
}

/// `chaos syscall list --output json`: one row per syscall chaos knows.
fn syscall_rows() -> Vec<serde_json::Value> {
    let (status, stdout, stderr) = chaos::run(&["syscall", "list", "--output", "json"]);
    assert!(status.success(), "{stderr}");
    serde_json::from_str(&stdout).expect("JSON rows")
}

/// Every LSM hook chaos ships must pass this kernel's verifier and attach, and fail one real
/// call (the BPF LSM tiers).
#[test]
fn every_lsm_hook_loads_and_attaches_on_this_kernel() {
    require_root!("every_lsm_hook_loads_and_attaches_on_this_kernel");
    // It counts the LSM links of the whole machine: no other test of this file may hold one
    // meanwhile (each LSM test, and `syscall list`'s probes, take this lock).
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::BpfLsm, chaos::lsm_unavailable(), "every_lsm_hook_loads_and_attaches_on_this_kernel");
    let rows = syscall_rows();
    // Every distinct LSM hook is a link chaos holds, as the kernel reports it, and each fails
    // one real call of a workload in the cgroup, prepared before the fault.
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let lsm_rows: Vec<&serde_json::Value> = rows.iter().filter(|r| !r["lsm_hook"].is_null()).collect();
    let names: Vec<&str> = lsm_rows.iter().filter_map(|r| r["syscall"].as_str()).collect();
    let hooks: std::collections::BTreeSet<&str> = lsm_rows.iter().filter_map(|r| r["lsm_hook"].as_str()).collect();
    let links_before = kernel::lsm_links_held_by_anyone();
    let lsm_started = std::time::Instant::now();
    let calls = LsmCalls::start(&cgroup, dir.path());
    let chaos =
        start(&["--syscall", &names.join(","), "--errno", "EIO", "--percent", "100", "--backend", "lsm"], &cgroup);
    // Per cgroup (lsm_cgroup) where the kernel can, for at most 10 hooks machine-wide: the
    // others take their global programs, each with a note.
    let links = kernel::lsm_links_held_by(chaos.pid() as u32);
    let per_cgroup = kernel::links_held_by(chaos.pid() as u32, LinkKind::LsmCgroup);
    let notes = chaos.stderr_so_far();
    calls.call();
    let report = stop(chaos);
    // Printing is a write: the workload reports only once the fault is gone.
    let results = calls.report();
    eprintln!(
        "measured: lsm: {} syscalls on {} hooks, {links} global and {per_cgroup} per-cgroup LSM links in the kernel; \
         calls at 100 %: {results:?} ({:.1} s)",
        names.len(),
        hooks.len(),
        lsm_started.elapsed().as_secs_f64()
    );
    for (call, errno) in &results {
        assert_eq!(*errno, EIO, "{call} in the cgroup was not refused by its LSM hook");
    }
    // execve opens its binary first, which file_open refuses: bprm_check_security gets its own
    // fault below.
    let called: std::collections::BTreeSet<&str> =
        results.keys().filter_map(|k| k.split(':').next()).chain(["bprm_check_security"]).collect();
    assert_eq!(called, hooks, "the workload's calls cover exactly the listed LSM hooks");
    let injected: u64 =
        report["counters"].as_array().expect("counters").iter().filter_map(|c| c["injected"].as_u64()).sum();
    assert_eq!(injected, results.len() as u64, "one injection per call: {report}");
    assert_eq!((links + per_cgroup) as usize, hooks.len(), "LSM links held by chaos, one per hook {hooks:?}");
    assert!(per_cgroup <= 10, "{per_cgroup} per-cgroup LSM hooks: the kernel has 10");
    let fallbacks = notes.matches("attaching the global program").count();
    assert_eq!(fallbacks, links as usize * usize::from(per_cgroup > 0), "a note per global fallback: {notes}");

    // bprm_check_security alone: the exec's open passes, the check refuses it.
    let exec: Vec<&str> = lsm_rows
        .iter()
        .filter(|r| r["lsm_hook"] == "bprm_check_security")
        .filter_map(|r| r["syscall"].as_str())
        .collect();
    let exec_started = std::time::Instant::now();
    let chaos =
        start(&["--syscall", &exec.join(","), "--errno", "EIO", "--percent", "100", "--backend", "lsm"], &cgroup);
    let mut exec_result =
        command_in(chaos_tests::workload::workload_bin(), Some(&cgroup), None).args(["sleep", "--secs", "0"]).spawn();
    let report = stop(chaos);
    if let Ok(child) = &mut exec_result {
        let _ = child.wait();
    }
    let exec_errno = exec_result.as_ref().err().and_then(std::io::Error::raw_os_error);
    eprintln!(
        "measured: lsm: exec in the cgroup with {exec:?} failing: {:?} ({:.1} s)",
        exec_result.as_ref().map(|c| c.id()),
        exec_started.elapsed().as_secs_f64()
    );
    assert_eq!(exec_errno, Some(EIO), "exec in the cgroup was not refused by bprm_check_security");
    let injected: u64 =
        report["counters"].as_array().expect("counters").iter().filter_map(|c| c["injected"].as_u64()).sum();
    assert_eq!(injected, 1, "one injection for the exec: {report}");

    // Nothing left: no LSM link anywhere beyond those before, and the cgroup's calls work again.
    assert_eq!(kernel::lsm_links_held_by_anyone(), links_before, "LSM links left behind");
    assert_eq!(kernel::cgroup_programs_at(cgroup.dir(), kernel::BPF_LSM_CGROUP), 0, "lsm_cgroup programs left behind");
    let after = command_in("mkdir", Some(&cgroup), None).arg(dir.path().join("after")).status().expect("run mkdir");
    assert!(after.success(), "mkdir in the cgroup failed after chaos stopped");
}

#[test]
fn mkdir_fails_under_the_path_through_lsm() {
    require_root!("mkdir_fails_under_the_path_through_lsm");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::BpfLsm, chaos::lsm_unavailable(), "mkdir_fails_under_the_path_through_lsm");
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let chaos = start(
        &["--syscall", "mkdir,mkdirat", "--errno", "EROFS", "--path", &dir.path().display().to_string()],
        &cgroup,
    );
    let inside = command_in("mkdir", Some(&cgroup), None).arg(dir.path().join("new")).output().expect("run mkdir");
    let outside = command_in("mkdir", None, None).arg(dir.path().join("other")).output().expect("run mkdir");
    drop(stop(chaos));
    let stderr = String::from_utf8_lossy(&inside.stderr);
    assert!(!inside.status.success() && stderr.contains("Read-only file system"), "mkdir in the cgroup: {stderr}");
    assert!(outside.status.success(), "mkdir outside the cgroup failed");
}

#[test]
fn the_kernel_ends_a_syscall_fault_at_its_deadline_even_if_chaos_is_frozen() {
    require_root!("the_kernel_ends_a_syscall_fault_at_its_deadline_even_if_chaos_is_frozen");
    let ns = Netns::new();
    let _server = TcpListen::start(&ns, 7450);
    let cgroup = TestCgroup::new();
    let started_ns = kernel::monotonic_ns();
    let mut chaos = Chaos::start(&[
        "syscall",
        "fail",
        "--syscall",
        "connect",
        "--errno",
        "ECONNREFUSED",
        "--backend",
        "cgroup",
        "--cgroup",
        cgroup.path(),
        "--for",
        "3s",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(60));
    // Only the kernel can end the fault now: the controller cannot run its own timer.
    chaos.signal(libc::SIGSTOP);
    let armed_ns = kernel::monotonic_ns();
    let deadline_ns = chaos::logged_deadline_ns(&chaos.stderr_so_far());
    chaos::assert_deadline_is_for(deadline_ns, started_ns, armed_ns, Duration::from_secs(3));
    // One connect every 20 ms from now until 1 s past the deadline (fewer if calls are slow).
    let gap_ms = 20;
    let count = (deadline_ns.saturating_sub(armed_ns) / 1_000_000 + 1000) / gap_ms;
    let calls = connect_loop_paced(localhost(1, 7450), count, gap_ms, Some(&cgroup), &ns);
    chaos.signal(libc::SIGCONT);
    let (status, _, stderr) = chaos.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "chaos thawed after its deadline: {stderr}");

    let failed: std::collections::BTreeSet<u64> = calls.failed_at.iter().copied().collect();
    let first_ok = (1..=calls.calls).find(|i| !failed.contains(i)).expect("no connect succeeded after the deadline");
    let first_ok_ns = calls.at_ns[first_ok as usize - 1];
    let after_ms = (first_ok_ns as f64 - deadline_ns as f64) / 1e6;
    eprintln!(
        "measured: with chaos frozen, {} of {} connects refused; the first to succeed started {after_ms:.1} ms after \
         the kernel deadline",
        calls.failed(),
        calls.calls
    );
    assert!(first_ok > 1, "the fault was not in force after arming: {calls:?}");
    assert!(failed.iter().all(|&i| i < first_ok), "a connect failed after one had succeeded: {calls:?}");
    // A call that starts just before the deadline may reach the hook just after it.
    assert!(after_ms >= -50.0, "the fault ended {:.1} ms before its deadline", -after_ms);
    assert!(after_ms <= 250.0, "the fault outlived its deadline by {after_ms:.1} ms with chaos frozen (limit 250 ms)");
}
