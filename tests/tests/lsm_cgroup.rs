//! BPF LSM faults per cgroup (lsm_cgroup, the VM tiers) and globally (`--hook lsm`): both
//! paths fail the target's calls and its children's and spare its siblings; the kernel's own
//! counts say that an untargeted task runs no per-cgroup program at all (while it runs the
//! global one), that `--dry-run` names the attachment, and that a SIGKILLed chaos leaves no
//! per-cgroup link behind.
use std::time::{Duration, Instant};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel::{self, BPF_LSM_CGROUP, LinkKind},
    programs::{self, BpfStats},
    require_root,
    skip::Feature,
    skip_unless_has,
    workload::{Calls, file_loop},
};

const EIO: i32 = 5;

/// `syscall fail` on openat with EIO for every call of `cgroup` under `dir` (not the exec of
/// the workload's binary), through `hook`.
fn fail_opens(cgroup: &TestCgroup, dir: &TempDir, hook: &str) -> Chaos {
    let path = dir.path().display().to_string();
    chaos::start_fault(
        &["syscall", "fail", "--syscall", "openat", "--errno", "EIO", "--path", &path, "--hook", hook],
        cgroup,
    )
}

/// The openat calls of a file loop of 20 rounds in `cgroup`.
fn opens_in(cgroup: &TestCgroup, dir: &TempDir) -> Calls {
    file_loop(dir.path(), 20, Some(cgroup)).remove("openat").expect("file-loop reports openat")
}

/// Waits until the kernel has let go of what chaos held (link release may trail its exit).
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `chaos <args> --cgroup <cgroup> --for 5s --dry-run`.
fn dry_run(cgroup: &TestCgroup, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut full = args.to_vec();
    full.extend(["--cgroup", cgroup.path(), "--for", "5s", "--dry-run"]);
    chaos::run(&full)
}

#[test]
fn hooks_that_do_not_apply_are_refused_naming_the_flag() {
    require_root!("hooks_that_do_not_apply_are_refused_naming_the_flag");
    let cgroup = TestCgroup::new();
    let dry = |args: &[&str]| dry_run(&cgroup, args);
    // Everywhere: a hook of the other kind is refused, naming the flag.
    let refused: [(&[&str], &str); 2] = [
        (&["syscall", "delay", "--syscall", "read", "--by", "10ms", "--hook", "lsm-cgroup"], "--hook lsm-cgroup:"),
        (
            &["syscall", "fail", "--syscall", "connect", "--errno", "EIO", "--backend", "cgroup", "--hook", "lsm"],
            "--hook lsm: --hook chooses how BPF LSM programs attach",
        ),
    ];
    for (args, expected) in refused {
        let (status, stdout, stderr) = dry(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected '{expected}' in:\n{stderr}");
    }
}

#[test]
fn dry_runs_name_the_lsm_attachment() {
    require_root!("dry_runs_name_the_lsm_attachment");
    skip_unless_has!(Feature::LsmCgroup, chaos::lsm_cgroup_unavailable(), "dry_runs_name_the_lsm_attachment");
    let cgroup = TestCgroup::new();
    let dry = |args: &[&str]| dry_run(&cgroup, args);
    let open = ["syscall", "fail", "--syscall", "openat", "--errno", "EIO"];
    let kill = ["proc", "kill", "--on-syscall", "write", "--before-effect"];
    let per_cgroup =
        format!("attach cg_file_open (lsm_cgroup/file_open) to LSM hook file_open of {}", cgroup.dir().display());
    let cases: Vec<(Vec<&str>, String)> = vec![
        (open.to_vec(), per_cgroup.clone()),
        ([&open[..], &["--hook", "lsm-cgroup"]].concat(), per_cgroup),
        (
            [&open[..], &["--hook", "lsm"]].concat(),
            "attach sys_file_open (lsm/file_open) to LSM hook file_open (every task".into(),
        ),
        (kill.to_vec(), "attach cg_file_permission (lsm_cgroup/file_permission)".into()),
        ([&kill[..], &["--hook", "lsm"]].concat(), "attach sys_file_permission (lsm/file_permission)".into()),
        (
            vec!["syscall", "fail", "--syscall", "connect", "--errno", "EIO", "--backend", "lsm"],
            "only calls on sockets created there run it".into(),
        ),
    ];
    for (args, expected) in cases {
        let (status, stdout, stderr) = dry(&args);
        assert!(status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains(&expected), "{args:?}: expected '{expected}' in:\n{stdout}");
    }
    for args in [[&open[..], &["--hook", "fentry"]].concat(), [&kill[..], &["--hook", "sys-enter"]].concat()] {
        let (status, stdout, stderr) = dry(&args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("BPF LSM programs attach per cgroup or globally"), "{args:?}: {stderr}");
    }
}

#[test]
fn both_attachments_fail_the_targets_and_its_childrens_opens_and_spare_a_sibling() {
    require_root!("both_attachments_fail_the_targets_and_its_childrens_opens_and_spare_a_sibling");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(
        Feature::LsmCgroup,
        chaos::lsm_cgroup_unavailable(),
        "both_attachments_fail_the_targets_and_its_childrens_opens_and_spare_a_sibling"
    );
    let (target, sibling) = (TestCgroup::new(), TestCgroup::new());
    let child = target.child("child");
    let dir = TempDir::new();
    for hook in ["lsm-cgroup", "lsm"] {
        let chaos = fail_opens(&target, &dir, hook);
        let pid = chaos.pid() as u32;
        // What the kernel holds: a cgroup link on the target, or a global LSM link.
        let held = (kernel::links_held_by(pid, LinkKind::LsmCgroup), kernel::links_held_by(pid, LinkKind::Lsm));
        let on_target = kernel::cgroup_programs_at(target.dir(), BPF_LSM_CGROUP);
        let (in_target, in_child, in_sibling) =
            (opens_in(&target, &dir), opens_in(&child, &dir), opens_in(&sibling, &dir));
        let report = chaos.stop_json();
        eprintln!(
            "measured: {hook}: links (lsm_cgroup, lsm) {held:?}; opens failed: target {}/{}, child {}/{}, sibling {}/{}",
            in_target.failed(),
            in_target.calls,
            in_child.failed(),
            in_child.calls,
            in_sibling.failed(),
            in_sibling.calls
        );
        let expected = if hook == "lsm" { ((0, 1), 0) } else { ((1, 0), 1) };
        assert_eq!((held, on_target), expected, "{hook}: (links held, lsm_cgroup programs on the target)");
        for (what, calls) in [("target", &in_target), ("child", &in_child)] {
            assert!(calls.calls > 0 && calls.failed() == calls.calls, "{hook}: {what}'s opens: {calls:?}");
            assert_eq!(calls.errors.keys().copied().collect::<Vec<_>>(), [EIO], "{hook}: {what}");
        }
        assert_eq!(in_sibling.failed(), 0, "{hook}: the sibling's opens failed: {in_sibling:?}");
        let injected = report["counters"][0]["injected"].as_u64();
        assert_eq!(injected, Some(in_target.failed() + in_child.failed()), "{hook}: {report}");
    }
}

#[test]
fn an_untargeted_task_runs_no_per_cgroup_program_but_runs_the_global_one() {
    require_root!("an_untargeted_task_runs_no_per_cgroup_program_but_runs_the_global_one");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(
        Feature::LsmCgroup,
        chaos::lsm_cgroup_unavailable(),
        "an_untargeted_task_runs_no_per_cgroup_program_but_runs_the_global_one"
    );
    let stats = match BpfStats::enable() {
        Ok(stats) => stats,
        Err(e) => panic!("kernel.bpf_stats_enabled cannot be set: {e}"),
    };
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let dir = TempDir::new();
    // A fault at 0 %: nothing fails, but every event the program sees is counted by the kernel.
    for (hook, name) in [("lsm-cgroup", "cg_file_open"), ("lsm", "sys_file_open")] {
        let chaos = chaos::start_fault(
            &["syscall", "fail", "--syscall", "openat", "--errno", "EIO", "--percent", "0", "--hook", hook],
            &target,
        );
        let id = programs::programs_held_by(chaos.pid() as u32)
            .into_iter()
            .find(|&id| programs::program_info(id).is_some_and(|info| info.name == name))
            .unwrap_or_else(|| panic!("{hook}: chaos holds no program {name}"));
        let runs = || programs::program_info(id).expect("the program is loaded").run_count;
        let before = runs();
        let untargeted = opens_in(&other, &dir);
        let after_untargeted = runs();
        let targeted = opens_in(&target, &dir);
        let after_targeted = runs();
        drop(chaos.stop_json());
        eprintln!(
            "measured: {hook}: {name} ran {} times over {} untargeted opens (and everything else the machine \
             opened), {} times over {} of the target's",
            after_untargeted - before,
            untargeted.calls,
            after_targeted - after_untargeted,
            targeted.calls
        );
        assert!(after_targeted - after_untargeted >= targeted.calls, "{hook}: the target's opens were not seen");
        if hook == "lsm-cgroup" {
            assert_eq!(after_untargeted, before, "{hook}: an untargeted cgroup's opens ran the per-cgroup program");
        } else {
            assert!(after_untargeted - before >= untargeted.calls, "{hook}: the global program missed opens");
        }
    }
    drop(stats);
}

#[test]
fn a_sigkilled_chaos_leaves_no_per_cgroup_link() {
    require_root!("a_sigkilled_chaos_leaves_no_per_cgroup_link");
    let _serial = chaos_tests::serialized();
    skip_unless_has!(
        Feature::LsmCgroup,
        chaos::lsm_cgroup_unavailable(),
        "a_sigkilled_chaos_leaves_no_per_cgroup_link"
    );
    let target = TestCgroup::new();
    let dir = TempDir::new();
    let links_before = kernel::links_held_by_anyone(LinkKind::LsmCgroup);
    let chaos = fail_opens(&target, &dir, "lsm-cgroup");
    assert_eq!(kernel::cgroup_programs_at(target.dir(), BPF_LSM_CGROUP), 1, "the fault is not on the target");
    let armed = opens_in(&target, &dir);
    assert!(armed.calls > 0 && armed.failed() == armed.calls, "the fault does not fail the target's opens: {armed:?}");
    chaos.signal(libc::SIGKILL);
    let (status, _, _) = chaos.wait(Duration::from_secs(20));
    assert_eq!(status.code(), None, "chaos was not killed");
    wait_for("an lsm_cgroup program stayed on the target after SIGKILL", || {
        kernel::cgroup_programs_at(target.dir(), BPF_LSM_CGROUP) == 0
    });
    assert_eq!(kernel::links_held_by_anyone(LinkKind::LsmCgroup), links_before, "lsm_cgroup links left behind");
    wait_for("a cg_ program stayed loaded after SIGKILL", || kernel::programs_named("cg_") == 0);
    assert_eq!(opens_in(&target, &dir).failed(), 0, "the target's opens still fail after SIGKILL");
}
