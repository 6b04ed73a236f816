//! TC faults and what outlives chaos: on kernels before 6.6 a TC fault is a clsact qdisc and
//! cls_bpf filters, which neither die with chaos nor can be pinned. So `chaos run --detach`
//! refuses a TC fault there (and takes off what it had attached), while on tcx kernels it pins
//! it like any other; and the filters a SIGKILLed chaos left are removed by the daemon when it
//! starts, said in its log. On one tier of each TC API: tcx on the host, legacy filters on 6.1.
use std::{path::Path, time::Duration};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    daemon::{Daemon, plain},
    kernel,
    net::TwoHosts,
    require_root,
    workload::Resident,
};

/// Whether this kernel has tcx (6.6+): TC programs are links there, and legacy filters before.
fn tcx() -> bool {
    kernel::release_at_least(6, 6)
}

/// The ledger records (/run/chaos/ledger) of network namespace `netns`: those a run on it left.
fn ledger_records_of(netns: &chaos_tests::net::Netns) -> Vec<serde_json::Value> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(netns.path()).expect("the namespace file").ino();
    std::fs::read_dir("/run/chaos/ledger")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|r| r["netns_inode"].as_u64() == Some(inode))
        .collect()
}

#[test]
fn a_detached_tc_fault_is_pinned_on_tcx_and_refused_on_legacy_tc() {
    let test = "a_detached_tc_fault_is_pinned_on_tcx_and_refused_on_legacy_tc";
    require_root!(test);
    chaos_tests::only_on_tiers!(
        ["host", "vm-6.1"],
        test,
        "one tier of each TC API: tcx on the host, legacy filters on 6.1"
    );
    let _serial = chaos_tests::serialized();
    let _stale = chaos_tests::may_clean_stale_runs();
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let _resident = Resident::start(&cgroup, Some(&hosts.a));
    let had_clsact = kernel::has_clsact(&hosts.a, "veth-a");
    let scratch = TempDir::new();
    let file = scratch.file(
        "corrupt.toml",
        &format!(
            "name = \"detached corrupt\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"30s\"\n\n[[fault]]\nkind = \"net corrupt\"\n\
             percent = 1\ndirection = \"egress\"\n",
            cgroup.path()
        ),
    );
    let timeline = scratch.join("corrupt.jsonl");
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().unwrap(), "--detach", "--timeline", timeline.to_str().unwrap()]);
    if tcx() {
        assert_eq!(status.code(), Some(0), "tcx links can be pinned: {stdout}{stderr}");
        let id = stdout.trim();
        assert_eq!(kernel::tc_programs(&hosts.a, "veth-a"), 1, "the detached fault is not on veth-a");
        assert!(Path::new("/sys/fs/bpf/chaos").join(id).is_dir(), "no pins for {id}");
        let (status, out, err) = chaos::run(&["stop", id]);
        assert!(status.success(), "{out}{err}");
        kernel::wait_for_tc_programs(&hosts.a, "veth-a", 0, Duration::from_secs(5));
        eprintln!("measured: tcx: a detached net corrupt was pinned, and chaos stop removed it");
    } else {
        assert_eq!(status.code(), Some(2), "a legacy TC filter cannot be pinned: {stdout}{stderr}");
        assert!(
            stderr.contains("legacy TC filter on this kernel (before 6.6), which cannot be pinned")
                && stderr.contains("--detach needs tcx"),
            "{stderr}"
        );
        // What it attached before finding out is gone, and so is its record.
        assert_eq!(kernel::tc_programs(&hosts.a, "veth-a"), 0, "the refused run left its filter");
        assert_eq!(kernel::has_clsact(&hosts.a, "veth-a"), had_clsact, "the refused run left its clsact qdisc");
        assert!(
            ledger_records_of(&hosts.a).is_empty(),
            "the refused run left ledger records: {:?}",
            ledger_records_of(&hosts.a)
        );
        eprintln!("measured: legacy TC: --detach refused: {}", stderr.lines().last().unwrap_or_default());
    }
}

#[test]
fn the_daemon_removes_the_tc_filters_a_killed_chaos_left_before_its_first_run() {
    let test = "the_daemon_removes_the_tc_filters_a_killed_chaos_left_before_its_first_run";
    require_root!(test);
    chaos_tests::only_on_tiers!(
        ["vm-6.1"],
        test,
        "legacy TC filters (before 6.6) are what a killed chaos leaves; 6.1-errinj's are the same"
    );
    chaos_tests::skip_if!(tcx(), test, "tcx links die with chaos here: a killed chaos leaves no TC filter to remove");
    let _serial = chaos_tests::serialized();
    let _alone = chaos_tests::leaves_a_stale_run();
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let _resident = Resident::start(&cgroup, Some(&hosts.a));
    let had_clsact = kernel::has_clsact(&hosts.a, "veth-a");
    let mut chaos = Chaos::start(&["net", "duplicate", "--cgroup", cgroup.path(), "--percent", "10", "--for", "5m"]);
    chaos.wait_until("its TC filters attach", Duration::from_secs(60), || kernel::tc_programs(&hosts.a, "veth-a") == 2);
    chaos.signal(libc::SIGKILL);
    drop(chaos.wait(Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(kernel::tc_programs(&hosts.a, "veth-a"), 2, "legacy filters outlive chaos until something removes them");
    assert!(!ledger_records_of(&hosts.a).is_empty(), "no ledger record of the filters");
    let other = TestCgroup::new();
    let config = format!(
        "metrics = false\n[schedule]\nevery = \"1h\"\n\n[[experiment]]\nfile = \"experiment.toml\"\n\
         targets = {{ cgroup = \"{}\" }}\n",
        other.path()
    );
    let experiment = "name = \"x\"\ntarget = { cgroup = \"/placeholder\" }\nduration = \"1s\"\n\n\
                      [[fault]]\nkind = \"net drop\"\npercent = 1\n";
    let daemon = Daemon::start(experiment, &config);
    // The socket answers once the start-up cleanup is done.
    let log = plain(&daemon.chaos.as_ref().expect("the daemon").stderr_so_far());
    let left = kernel::tc_programs(&hosts.a, "veth-a");
    let clsact = kernel::has_clsact(&hosts.a, "veth-a");
    drop(daemon.terminate());
    let cleaned: Vec<&str> = log.lines().filter(|l| l.contains("cleaned what an earlier run left")).collect();
    eprintln!("measured: the daemon cleaned at start: {cleaned:?}");
    assert_eq!(left, 0, "the daemon started with the dead run's TC filters still on veth-a: {log}");
    assert_eq!(clsact, had_clsact, "the clsact qdisc the dead run added is still there");
    assert!(cleaned.iter().filter(|l| l.contains("removed TC filter")).count() >= 2, "{log}");
    assert!(ledger_records_of(&hosts.a).is_empty(), "ledger records left: {:?}", ledger_records_of(&hosts.a));
}
