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
    crash::{self, CHAOS_STEPS},
    kernel,
    net::TwoHosts,
    require_root,
    skip::Feature,
    skip_unless_has,
    workload::{Resident, command_in, workload_bin},
};

/// More than any family's sequence has (measured: 47 for a pause on the host); a sweep that
/// reaches it fails.
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
    skip_unless_has!(Feature::Fq, kernel::qdisc_missing("fq"), test);
    let hosts = TwoHosts::new();
    let target = TestCgroup::new();
    let _resident = Resident::start(&target, Some(&hosts.a));
    let qdisc_before = kernel::root_qdisc(&hosts.a, "veth-a");
    let clsact_before = kernel::has_clsact(&hosts.a, "veth-a");
    let victim = ["net", "delay", "--cgroup", target.path(), "--by", "20ms", "--for", "50ms"];
    let sweep = crash::sweep("net delay", &victim, CHAOS_STEPS, MAX_POINTS, |n, cleaned| {
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
