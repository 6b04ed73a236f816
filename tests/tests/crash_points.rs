//! chaos killed at each of its own steps (tests/src/crash.rs): a second chaos's crash point
//! SIGKILLs the victim chaos, or its guard, at its N-th call of the syscalls chaos makes around
//! every change, for every N until the victim's whole sequence runs. After each death the target
//! must be as it was (nothing frozen, stopped, delayed or left on its interfaces) once the guard
//! has done its job or, for what no guard undoes (a replaced qdisc, legacy TC filters), once
//! `chaos cleanup` has; and no record of the dead victim may stay in /run/chaos: a record is
//! written atomically before the change it describes, so it is early or whole, never empty.
use std::{process::Stdio, time::Duration};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos,
    crash::{self, CHAOS_STEPS, Victim},
    kernel,
    net::TwoHosts,
    require_root,
    skip::Feature,
    skip_unless_has,
    workload::{Resident, command_in, workload_bin},
};

/// Every sweep of a kind-independent sequence runs on the host; in a TCG guest a crash point
/// costs seconds (two chaos starts), so sweeps of what only a VM kernel has try every
/// [`VM_STRIDE`]th point there, each on the one VM tier whose kernel makes it different.
const VM_STRIDE: usize = 4;

/// Skips the calling test unless the tier is `tier`, saying which tier sweeps it and why.
macro_rules! only_on_tier {
    ($tier:expr, $test:expr, $why:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().as_deref() != Some($tier),
            $test,
            format!("swept on {} only: {}", $tier, $why)
        );
    };
}

fn stride() -> usize {
    if chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")) { VM_STRIDE } else { 1 }
}

/// Sweeps whose sequence is the same on every kernel (userspace steps, cgroup hooks every
/// kernel has) run on the host tier only.
macro_rules! host_tier_only {
    ($test:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "a crash sweep of a sequence the host runs the same (a point costs seconds under TCG); the host tier sweeps it"
        );
    };
}

/// More than any family's sequence has (measured: 181 for a pause and 247 for a syscall delay
/// on the host, debug build); a sweep that reaches it fails.
const MAX_POINTS: usize = 400;

/// A counter process in `cgroup`: rewrites its file every millisecond (openat, write, close).
struct Counter {
    child: std::process::Child,
    file: std::path::PathBuf,
    _dir: TempDir,
}

impl Counter {
    fn start(cgroup: &TestCgroup) -> Self {
        let dir = TempDir::new();
        let file = dir.join("counter");
        let mut child = command_in(workload_bin(), Some(cgroup), None)
            .args(["counter", "--file", file.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the counter");
        let mut ready = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut ready)
            .expect("the counter's ready line");
        Self { child, file, _dir: dir }
    }

    fn value(&self) -> u64 {
        std::fs::read_to_string(&self.file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }

    /// The counter is running: not stopped, and its value moves within a second.
    fn assert_running(&self, what: &str) {
        let pid = self.child.id();
        assert!(!kernel::is_stopped(pid), "{what}: the target process {pid} is stopped");
        let first = self.value();
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while self.value() == first {
            assert!(std::time::Instant::now() < deadline, "{what}: the target's counter stood still for 1 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_pause_killed_at_any_step_leaves_the_target_thawed_and_no_record() {
    let test = "a_pause_killed_at_any_step_leaves_the_target_thawed_and_no_record";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let target = TestCgroup::new();
    let counter = Counter::start(&target);
    let sweep = crash::sweep(
        "proc pause",
        &["proc", "pause", "--cgroup", target.path(), "--for", "50ms"],
        CHAOS_STEPS,
        MAX_POINTS,
        |n, cleaned| {
            let what = format!("proc pause point {n}{}", if cleaned { " after cleanup" } else { "" });
            assert!(!kernel::is_frozen(target.dir()), "{what}: the target is still frozen");
            counter.assert_running(&what);
        },
    );
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

#[test]
fn a_syscall_delay_killed_at_any_step_leaves_no_task_stopped_and_no_record() {
    let test = "a_syscall_delay_killed_at_any_step_leaves_no_task_stopped_and_no_record";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let target = TestCgroup::new();
    let counter = Counter::start(&target);
    let victim = ["syscall", "delay", "--cgroup", target.path(), "--syscall", "write", "--by", "20ms", "--for", "50ms"];
    let sweep = crash::sweep("syscall delay", &victim, CHAOS_STEPS, MAX_POINTS, |n, cleaned| {
        let what = format!("syscall delay point {n}{}", if cleaned { " after cleanup" } else { "" });
        counter.assert_running(&what);
    });
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

#[test]
fn a_network_delay_killed_at_any_step_leaves_the_interface_as_it_was_after_cleanup() {
    let test = "a_network_delay_killed_at_any_step_leaves_the_interface_as_it_was_after_cleanup";
    require_root!(test);
    let _serial = chaos_tests::serialized();
    only_on_tier!(
        "vm-6.1",
        test,
        "its legacy TC filters and clsact qdisc are what only the ledger undoes (tcx links go with chaos); the host has no fq"
    );
    skip_unless_has!(Feature::Fq, kernel::qdisc_missing("fq"), test);
    let hosts = TwoHosts::new();
    let target = TestCgroup::new();
    let _resident = Resident::start_for(&target, Some(&hosts.a), 3600);
    let qdisc_before = kernel::root_qdisc(&hosts.a, "veth-a");
    let clsact_before = kernel::has_clsact(&hosts.a, "veth-a");
    let victim = ["net", "delay", "--cgroup", target.path(), "--by", "20ms", "--for", "50ms"];
    let victim = Victim { args: &victim, stop_after: None, stride: stride() };
    let sweep = crash::sweep_victim("net delay", victim, CHAOS_STEPS, MAX_POINTS, |n, cleaned| {
        // Nothing undoes a replaced qdisc or a legacy filter of a SIGKILLed chaos but the
        // ledger: they are checked once `chaos cleanup` has run.
        if !cleaned {
            return;
        }
        let what = format!("net delay point {n} after cleanup");
        assert_eq!(kernel::root_qdisc(&hosts.a, "veth-a"), qdisc_before, "{what}: the root qdisc");
        assert_eq!(kernel::tc_programs(&hosts.a, "veth-a"), 0, "{what}: TC programs left on veth-a");
        assert_eq!(kernel::has_clsact(&hosts.a, "veth-a"), clsact_before, "{what}: the clsact qdisc");
    });
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

#[test]
fn a_drop_killed_at_any_step_leaves_no_program_on_the_cgroup() {
    let test = "a_drop_killed_at_any_step_leaves_no_program_on_the_cgroup";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let target = TestCgroup::new();
    let victim = ["net", "drop", "--cgroup", target.path(), "--percent", "50", "--for", "50ms"];
    let sweep = crash::sweep("net drop", &victim, CHAOS_STEPS, MAX_POINTS, |n, _| {
        // fd-owned links go with the process that held them: nothing waits for cleanup.
        assert_eq!(kernel::cgroup_programs(target.dir()), 0, "net drop point {n}: programs left on the cgroup");
    });
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

/// TC faults: tcx links on the host and 6.12 go with chaos; legacy filters and the clsact
/// qdisc on 6.1 stay until `chaos cleanup`, whose ledger records were written before them.
#[test]
fn a_corruption_killed_at_any_step_leaves_the_interface_as_it_was_after_cleanup() {
    let test = "a_corruption_killed_at_any_step_leaves_the_interface_as_it_was_after_cleanup";
    require_root!(test);
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier != "vm-6.1" && tier.starts_with("vm-")),
        test,
        "swept on the host (tcx) and vm-6.1 (legacy TC filters, which only the ledger undoes)"
    );
    let _serial = chaos_tests::serialized();
    let hosts = TwoHosts::new();
    let target = TestCgroup::new();
    let _resident = Resident::start_for(&target, Some(&hosts.a), 3600);
    let clsact_before = kernel::has_clsact(&hosts.a, "veth-a");
    let victim = ["net", "corrupt", "--cgroup", target.path(), "--percent", "10", "--for", "50ms"];
    let victim = Victim { args: &victim, stop_after: None, stride: stride() };
    let sweep = crash::sweep_victim("net corrupt", victim, CHAOS_STEPS, MAX_POINTS, |n, cleaned| {
        if !cleaned {
            return;
        }
        let what = format!("net corrupt point {n} after cleanup");
        assert_eq!(kernel::tc_programs(&hosts.a, "veth-a"), 0, "{what}: TC programs left on veth-a");
        assert_eq!(kernel::has_clsact(&hosts.a, "veth-a"), clsact_before, "{what}: the clsact qdisc");
    });
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

/// BPF LSM programs (the VM kernels): fd-owned, global or per cgroup, gone with chaos.
#[test]
fn a_syscall_fail_killed_at_any_step_leaves_the_targets_calls_working() {
    let test = "a_syscall_fail_killed_at_any_step_leaves_the_targets_calls_working";
    require_root!(test);
    only_on_tier!(
        "vm-6.12",
        test,
        "BPF LSM (the host refuses LSM programs); 6.12 attaches them per cgroup, as 6.1 does"
    );
    let _serial = chaos_tests::serialized();
    skip_unless_has!(Feature::BpfLsm, chaos::lsm_unavailable(), test);
    let target = TestCgroup::new();
    let counter = Counter::start(&target);
    let victim =
        ["syscall", "fail", "--cgroup", target.path(), "--syscall", "openat", "--errno", "EIO", "--for", "50ms"];
    let victim = Victim { args: &victim, stop_after: None, stride: stride() };
    let sweep = crash::sweep_victim("syscall fail", victim, CHAOS_STEPS, MAX_POINTS, |n, _| {
        // The counter opens its file every millisecond: it moves only if openat works again.
        counter.assert_running(&format!("syscall fail point {n}"));
    });
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

/// A detached experiment: its record is written before its pins, the reaper (a child, killed
/// at its own steps too) arms and ends it; after each death and `chaos cleanup` once the
/// experiment's time is over, no pin and no program is left.
#[test]
fn a_detached_experiment_killed_at_any_step_leaves_no_pin_after_cleanup() {
    let test = "a_detached_experiment_killed_at_any_step_leaves_no_pin_after_cleanup";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let _stale = chaos_tests::leaves_a_stale_run();
    let target = TestCgroup::new();
    let scratch = TempDir::new();
    let file = scratch.file(
        "detached.toml",
        &format!(
            "name = \"crash\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"300ms\"\n\n[[fault]]\nkind = \"net drop\"\npercent = 50\n",
            target.path()
        ),
    );
    let timeline = scratch.join("detached.jsonl");
    let (pins_before, schedules_before) = (pins(), schedules());
    let victim = ["run", file.to_str().unwrap(), "--detach", "--timeline", timeline.to_str().unwrap()];
    let sweep = crash::sweep("detached experiment", &victim, CHAOS_STEPS, MAX_POINTS, |n, cleaned| {
        if !cleaned {
            // A detached run whose reaper died stays until its deadline (armed faults end by
            // the kernel's); cleanup removes its pins once that has passed.
            wait_past_deadline_of(&file);
            return;
        }
        assert_eq!(kernel::cgroup_programs(target.dir()), 0, "detached point {n}: programs left on the cgroup");
        assert_eq!(pins(), pins_before, "detached point {n}: pins left after cleanup");
        assert_eq!(schedules(), schedules_before, "detached point {n}: reaper schedules left after cleanup");
    });
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

/// Waits until the run of experiment `file`, if it left a record, is past its recorded end.
fn wait_past_deadline_of(file: &std::path::Path) {
    let ends_ns = std::fs::read_dir("/run/chaos/runs")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|r| r["file"] == file.to_str().unwrap_or_default())
        .filter_map(|r| r["ends_ns"].as_u64())
        .max();
    if let Some(ends_ns) = ends_ns {
        let now = kernel::monotonic_ns();
        std::thread::sleep(Duration::from_nanos(ends_ns.saturating_sub(now) + 20_000_000));
    }
}

/// The reaper schedules in /run/chaos/runs (`ID.schedule`, one per detached run).
fn schedules() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/chaos/runs")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".schedule"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The run directories pinned under /sys/fs/bpf/chaos.
fn pins() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/fs/bpf/chaos")
        .map(|dir| dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The daemon mid-run: started, one scheduled run of a drop under way, then SIGTERM; killed at
/// each of its steps (every 5th), its runs' programs go with it and its records with cleanup.
#[test]
fn the_daemon_killed_at_any_step_leaves_no_program_and_no_record() {
    let test = "the_daemon_killed_at_any_step_leaves_no_program_and_no_record";
    require_root!(test);
    host_tier_only!(test);
    let _serial = chaos_tests::serialized();
    let target = TestCgroup::new();
    let scratch = TempDir::new();
    scratch.file(
        "experiment.toml",
        "name = \"crash\"\ntarget = { cgroup = \"/placeholder\" }\nduration = \"300ms\"\n\n[[fault]]\nkind = \"net drop\"\npercent = 10\n",
    );
    let config = scratch.file(
        "daemon.toml",
        &format!(
            "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n\
             [schedule]\nevery = \"200ms\"\n[budget]\nmax_runs_per_hour = 100000\n\n\
             [[experiment]]\nfile = \"experiment.toml\"\ntargets = {{ cgroup = \"{}\" }}\n",
            target.path()
        ),
    );
    let victim = ["daemon", "--config", config.to_str().unwrap()];
    let victim = Victim { args: &victim, stop_after: Some(Duration::from_millis(700)), stride: 5 };
    let sweep = crash::sweep_victim("daemon", victim, CHAOS_STEPS, 20_000, |n, _| {
        assert_eq!(kernel::cgroup_programs(target.dir()), 0, "daemon point {n}: programs left on the cgroup");
    });
    assert!(sweep.points >= 10, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

/// `limit cpu`: the value chaos wrote into the target's cpu.max goes back after any death: the
/// guard puts it back when the controller dies, the controller when its guard does, and `chaos
/// cleanup` (from the record written before the write) when both are gone.
#[test]
fn a_cpu_limit_killed_at_any_step_leaves_cpu_max_as_it_was_after_cleanup() {
    let test = "a_cpu_limit_killed_at_any_step_leaves_cpu_max_as_it_was_after_cleanup";
    require_root!(test);
    // The host's cpu controller is bound to cgroup v1 (a limit is refused there); 6.12 and 6.1
    // write cpu.max alike, so one VM tier sweeps it.
    only_on_tier!("vm-6.12", test, "the host has no cgroup v2 cpu controller; 6.1 writes cpu.max the same way");
    let _serial = chaos_tests::serialized();
    let _stale = chaos_tests::may_clean_stale_runs();
    let delegated = match chaos_tests::controllers::Delegated::new(&["cpu"]) {
        Ok(delegated) => delegated,
        Err(why) => panic!("{test}: this tier should have the cpu controller: {why}"),
    };
    let target = delegated.target();
    let before = delegated.read("cpu.max");
    let victim = ["limit", "cpu", "--cgroup", target.path(), "--to", "25%", "--for", "50ms"];
    // A limit's run watches its target a second before and after: each point costs two
    // chaos starts and those two seconds under TCG, so one point in LIMIT_STRIDE is tried.
    let victim = Victim { args: &victim, stop_after: None, stride: LIMIT_STRIDE };
    let sweep = crash::sweep_victim("limit cpu", victim, CHAOS_STEPS, MAX_POINTS, |n, cleaned| {
        if cleaned {
            assert_eq!(delegated.read("cpu.max"), before, "limit cpu point {n} after cleanup: cpu.max");
        }
    });
    assert!(sweep.points >= 5, "only {} crash points: the victim's sequence is not being crashed", sweep.points);
}

/// One point in how many a `limit cpu` sweep tries: its sequence has about 240 points, and one
/// in 12 (20 points) took 157 s in the 6.12 guest on a host at load 17; one in 20 keeps the
/// sweep near a minute and a half.
const LIMIT_STRIDE: usize = 20;
