//! `chaos syscall fail --backend override` (error injection: a kprobe on the syscall's entry
//! function calling bpf_override_return) on a real kernel. It runs on kernels with
//! CONFIG_FUNCTION_ERROR_INJECTION and CONFIG_BPF_KPROBE_OVERRIDE (the vm-6.1-errinj tier);
//! elsewhere these tests check that the backend is refused with doctor's reason and that
//! `--backend auto` never picks it.
use std::{path::Path, process::Command, time::Duration};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    require_root,
    skip::Feature,
    skip_unless_has,
    workload::{Calls, command_in, workload_loop},
};

const EIO: i32 = 5;
const EAGAIN: i32 = 11;
const OVERRIDE: &str = "syscall-errno-override";
const DEBUGFS: &str = "/sys/kernel/debug";

/// Why error injection cannot run here, if it cannot: the kernel's own answer (a kprobe
/// program calling bpf_override_return loaded through bpf(2)), not doctor's.
fn override_unavailable() -> Option<String> {
    chaos_tests::probe::error_injection_missing()
}

/// debugfs mounted for the length of a test (the error-injection list and the kernel's list of
/// kprobes live there); unmounted again if the test mounted it. Tests holding one run one at a
/// time, so none unmounts it under another.
struct Debugfs {
    mounted_here: bool,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Debugfs {
    fn mount() -> Self {
        let serial = chaos_tests::serialized();
        let mounted = Path::new(DEBUGFS).join("kprobes").exists();
        if !mounted {
            let status = Command::new("mount").args(["-t", "debugfs", "debugfs", DEBUGFS]).status().expect("mount");
            assert!(status.success(), "mount -t debugfs debugfs {DEBUGFS} failed");
        }
        Self { mounted_here: !mounted, _serial: serial }
    }

    /// The kernel's own list of registered kprobes.
    fn kprobes(&self) -> String {
        std::fs::read_to_string(Path::new(DEBUGFS).join("kprobes/list")).expect("read the kprobe list")
    }
}

impl Drop for Debugfs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = Command::new("umount").arg(DEBUGFS).status();
        }
    }
}

fn start(args: &[&str], cgroup: &TestCgroup) -> Chaos {
    let mut full = vec!["syscall", "fail"];
    full.extend_from_slice(args);
    chaos::start_fault(&full, cgroup)
}

fn sync_loop(file: &Path, count: u64, cgroup: Option<&TestCgroup>) -> (Calls, Calls) {
    let output = command_in(chaos_tests::workload::workload_bin(), cgroup, None)
        .args(["sync-loop", "--path", &file.display().to_string(), "--count", &count.to_string()])
        .output()
        .expect("run sync-loop");
    assert!(output.status.success(), "sync-loop failed: {}", String::from_utf8_lossy(&output.stderr));
    let mut report: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("sync-loop report");
    let mut take = |name: &str| serde_json::from_value(report.remove(name).expect(name)).expect("calls");
    (take("fsync"), take("fdatasync"))
}

#[test]
fn fsync_and_fdatasync_fail_with_eio_for_the_cgroup_only_and_only_under_the_path() {
    let name = "fsync_and_fdatasync_fail_with_eio_for_the_cgroup_only_and_only_under_the_path";
    require_root!(name);
    skip_unless_has!(Feature::ErrorInjection, override_unavailable(), name);
    let _debugfs = Debugfs::mount();
    let cgroup = TestCgroup::new();
    let (inside, elsewhere) = (TempDir::new(), TempDir::new());
    let prefix = inside.path().display().to_string();
    // The schedule counts matching calls over both syscalls: the loop does 20 fsyncs, then 20
    // fdatasyncs, so --every 4 fails fsyncs 4, 8, .. 20 and fdatasyncs 4, 8, .. 20 (calls 24..40).
    let chaos = start(
        &["--syscall", "fsync,fdatasync", "--errno", "EIO", "--every", "4", "--path", &prefix, "--backend", "override"],
        &cgroup,
    );
    let (fsync, fdatasync) = sync_loop(&inside.path().join("data"), 20, Some(&cgroup));
    let (other_path_fsync, other_path_fdatasync) = sync_loop(&elsewhere.path().join("data"), 20, Some(&cgroup));
    let (other_cgroup_fsync, other_cgroup_fdatasync) = sync_loop(&inside.path().join("other"), 20, None);
    let report = chaos.stop_json();
    eprintln!("measured: fsync {fsync:?}; fdatasync {fdatasync:?}");
    let every_fourth: Vec<u64> = vec![4, 8, 12, 16, 20];
    assert_eq!(fsync.failed_at, every_fourth, "fsync --every 4: {fsync:?}");
    assert_eq!(fdatasync.failed_at, every_fourth, "fdatasync --every 4: {fdatasync:?}");
    assert_eq!(fsync.errors.keys().copied().collect::<Vec<_>>(), [EIO]);
    assert_eq!(fdatasync.errors.keys().copied().collect::<Vec<_>>(), [EIO]);
    for (what, calls) in [
        ("fsync of a file outside the path", &other_path_fsync),
        ("fdatasync of a file outside the path", &other_path_fdatasync),
        ("fsync from outside the cgroup", &other_cgroup_fsync),
        ("fdatasync from outside the cgroup", &other_cgroup_fdatasync),
    ] {
        assert_eq!(calls.failed(), 0, "{what} failed: {calls:?}");
        assert_eq!(calls.ok, 20, "{what}: {calls:?}");
    }
    assert_eq!(report["counters"][0]["injected"].as_u64(), Some(10), "{report}");
    // Matched counts only calls under the path from the cgroup: 40, whatever the others did.
    assert_eq!(report["counters"][0]["matched"].as_u64(), Some(40), "{report}");
}

#[test]
fn dd_with_conv_fsync_reports_an_input_output_error() {
    let name = "dd_with_conv_fsync_reports_an_input_output_error";
    require_root!(name);
    skip_unless_has!(Feature::ErrorInjection, override_unavailable(), name);
    let _debugfs = Debugfs::mount();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let chaos = start(
        &["--syscall", "fsync", "--errno", "EIO", "--path", &dir.path().display().to_string(), "--backend", "override"],
        &cgroup,
    );
    let dd = |cgroup: Option<&TestCgroup>, file: &str| {
        command_in("dd", cgroup, None)
            .arg("if=/dev/zero")
            .arg(format!("of={}/{file}", dir.path().display()))
            .args(["bs=4096", "count=4", "conv=fsync"])
            .output()
            .expect("run dd")
    };
    let inside = dd(Some(&cgroup), "in.out");
    let outside = dd(None, "out.out");
    drop(chaos.stop_json());
    let stderr = String::from_utf8_lossy(&inside.stderr);
    eprintln!("measured: dd conv=fsync said: {}", stderr.trim());
    assert!(!inside.status.success(), "dd conv=fsync succeeded under an fsync fault");
    assert!(stderr.contains("Input/output error"), "dd: {stderr}");
    assert!(outside.status.success(), "dd outside the cgroup: {}", String::from_utf8_lossy(&outside.stderr));
    // The data was written: only the durability promise failed.
    assert_eq!(std::fs::metadata(dir.path().join("in.out")).map(|m| m.len()).ok(), Some(16384));
}

#[test]
fn a_call_no_hook_serves_fails_with_its_errno_at_the_rate() {
    let name = "a_call_no_hook_serves_fails_with_its_errno_at_the_rate";
    require_root!(name);
    skip_unless_has!(Feature::ErrorInjection, override_unavailable(), name);
    let _debugfs = Debugfs::mount();
    let cgroup = TestCgroup::new();
    // auto: getrandom has no LSM hook and no cgroup hook, so error injection serves it.
    let chaos = start(&["--syscall", "getrandom", "--errno", "EAGAIN", "--percent", "30"], &cgroup);
    let inside = workload_loop(&[], &["getrandom-loop", "--count", "5000"], Some(&cgroup), None);
    let outside = workload_loop(&[], &["getrandom-loop", "--count", "500"], None, None);
    let report = chaos.stop_json();
    let rate = inside.failed() as f64 / inside.calls as f64;
    eprintln!("measured: getrandom failed {} of {} ({:.2} %)", inside.failed(), inside.calls, rate * 100.0);
    // 5000 draws at 30 %: one standard deviation is 0.65 %; 3 % is more than four.
    assert!((rate - 0.30).abs() <= 0.03, "{:.2} % failed, expected 30 % +- 3", rate * 100.0);
    assert_eq!(inside.errors.keys().copied().collect::<Vec<_>>(), [EAGAIN]);
    assert_eq!(outside.failed(), 0, "outside the cgroup: {outside:?}");
    // The workload's own runtime may call getrandom once at start (std seeds itself): the
    // counters count it, the loop does not.
    let matched = report["counters"][0]["matched"].as_u64().expect("matched");
    let injected = report["counters"][0]["injected"].as_u64().expect("injected");
    let extra = matched.checked_sub(inside.calls).filter(|&e| e <= 2).expect("matched = the loop's calls + start");
    assert!(injected >= inside.failed() && injected - inside.failed() <= extra, "{report}");
}

#[test]
fn the_kernel_ends_the_override_at_its_deadline_even_if_chaos_is_frozen() {
    let name = "the_kernel_ends_the_override_at_its_deadline_even_if_chaos_is_frozen";
    require_root!(name);
    skip_unless_has!(Feature::ErrorInjection, override_unavailable(), name);
    let _debugfs = Debugfs::mount();
    let cgroup = TestCgroup::new();
    let mut chaos = Chaos::start(&[
        "syscall",
        "fail",
        "--syscall",
        "getrandom",
        "--errno",
        "EIO",
        "--backend",
        "override",
        "--cgroup",
        cgroup.path(),
        "--for",
        "3s",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(60));
    let armed = std::time::Instant::now();
    chaos.signal(libc::SIGSTOP);
    let during = workload_loop(&[], &["getrandom-loop", "--count", "10"], Some(&cgroup), None);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(armed.elapsed()) + Duration::from_millis(200));
    let after = workload_loop(&[], &["getrandom-loop", "--count", "10"], Some(&cgroup), None);
    chaos.signal(libc::SIGCONT);
    drop(chaos.wait(Duration::from_secs(20)));
    assert_eq!(during.failed(), 10, "the fault was not in force before the deadline: {during:?}");
    assert_eq!(after.failed(), 0, "the fault outlived its deadline with chaos frozen: {after:?}");
}

#[test]
fn after_sigkill_no_kprobe_stays_attached() {
    let name = "after_sigkill_no_kprobe_stays_attached";
    require_root!(name);
    skip_unless_has!(Feature::ErrorInjection, override_unavailable(), name);
    let debugfs = Debugfs::mount();
    let cgroup = TestCgroup::new();
    let dir = TempDir::new();
    let before = debugfs.kprobes();
    assert!(!before.contains("__x64_sys_fdatasync"), "a kprobe on fdatasync before the test: {before}");
    let chaos = start(&["--syscall", "fdatasync", "--errno", "EIO", "--backend", "override"], &cgroup);
    let attached = debugfs.kprobes();
    assert!(attached.contains("__x64_sys_fdatasync"), "the kernel lists no kprobe on fdatasync: {attached}");
    let (_, failing) = sync_loop(&dir.path().join("f"), 5, Some(&cgroup));
    assert_eq!(failing.failed(), 5, "{failing:?}");
    chaos.signal(libc::SIGKILL);
    drop(chaos.wait(Duration::from_secs(20)));
    // The perf-event link is owned by chaos's file descriptors: the kernel drops it with them.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while debugfs.kprobes().contains("__x64_sys_fdatasync") {
        assert!(std::time::Instant::now() < deadline, "a kprobe outlived chaos: {}", debugfs.kprobes());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, after) = sync_loop(&dir.path().join("f"), 5, Some(&cgroup));
    assert_eq!(after.failed(), 0, "fdatasync still fails after chaos was killed: {after:?}");
}

/// Every syscall chaos names has an entry function this kernel's kprobes accept for an override:
/// a fault on all of them at 0 % (an empty test cgroup; nothing fails) attaches every one.
#[test]
fn every_syscall_chaos_knows_attaches_through_error_injection() {
    let name = "every_syscall_chaos_knows_attaches_through_error_injection";
    require_root!(name);
    skip_unless_has!(Feature::ErrorInjection, override_unavailable(), name);
    let debugfs = Debugfs::mount();
    let cgroup = TestCgroup::new();
    let (status, stdout, _) = chaos::run(&["syscall", "list", "--output", "json"]);
    assert!(status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("JSON rows");
    // The kernel decides which entries may be overridden (fork and vfork are not, on 6.1), and
    // a few table entries Linux does not implement (uselib: ENOSYS) have nothing to override:
    // `syscall list` says which and why, and the others must all attach.
    let (overridable, refused): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r["override_refused"].is_null());
    for row in &refused {
        let why = row["override_refused"].as_str().unwrap_or_default();
        assert!(
            why.contains("not on the kernel's error-injection list") || why.contains("is not implemented by Linux"),
            "{row}"
        );
    }
    let refused: Vec<&str> = refused.iter().filter_map(|r| r["syscall"].as_str()).collect();
    eprintln!("measured: not on this kernel's error-injection list: {refused:?}");
    let names: Vec<&str> = overridable.iter().filter_map(|r| r["syscall"].as_str()).collect();
    let list = names.join(",");
    let chaos = start(&["--syscall", &list, "--errno", "EIO", "--percent", "0", "--backend", "override"], &cgroup);
    let probes = debugfs.kprobes();
    // Each entry by the function it enters through (`stat` is `__x64_sys_newstat`).
    let functions: Vec<&str> = overridable.iter().filter_map(|r| r["override_function"].as_str()).collect();
    assert_eq!(functions.len(), names.len(), "every overridable row names its function");
    let missing: Vec<&str> = functions.iter().copied().filter(|f| !probes.contains(&format!("{f}+"))).collect();
    let attached = functions.len() - missing.len();
    // Hundreds of kprobes: each one's removal waits for an RCU grace period, which under TCG
    // adds up to tens of seconds, so the stop gets longer than stop_json's 20 s.
    let stopping = std::time::Instant::now();
    chaos.signal(libc::SIGINT);
    let (status, stdout, stderr) = chaos.wait(Duration::from_secs(300));
    assert_eq!(status.code(), Some(130), "chaos stopped by SIGINT must exit 130; stderr: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!(
        "measured: {attached} of {} syscall entries carry chaos's kprobe; detached in {:?}",
        names.len(),
        stopping.elapsed()
    );
    assert!(missing.is_empty(), "no kprobe on {missing:?}; kprobes listed by the kernel: {probes}");
    assert_eq!(report["counters"][0]["injected"], 0);
}

/// Every tier: where the kernel cannot do it, `--backend override` is refused (exit 2) with
/// the reason `chaos doctor` gives; `--backend auto` never picks it there, and where BPF LSM
/// serves a call, auto takes LSM even when error injection is available.
#[test]
fn override_is_refused_with_doctors_reason_and_auto_never_picks_it_where_it_cannot_run() {
    let name = "override_is_refused_with_doctors_reason_and_auto_never_picks_it_where_it_cannot_run";
    require_root!(name);
    let cgroup = TestCgroup::new();
    let dry_run = |args: &[&str]| {
        let mut full = vec!["syscall", "fail"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--errno", "EIO", "--cgroup", cgroup.path(), "--for", "5s", "--dry-run"]);
        full.extend_from_slice(&["--output", "json"]);
        chaos::run(&full)
    };
    let (status, stdout, _) = chaos::run(&["syscall", "list", "--output", "json"]);
    assert!(status.success());
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("JSON rows");
    let row = |name: &str| rows.iter().find(|r| r["syscall"] == name).unwrap_or_else(|| panic!("no row for {name}"));
    let doctor_says = chaos::family_unavailable(OVERRIDE);
    match override_unavailable() {
        Some(missing) => {
            let reason = doctor_says
                .unwrap_or_else(|| panic!("the kernel has no error injection ({missing}), but doctor offers it"));
            eprintln!("measured: doctor says error injection is unavailable: {reason}");
            let (status, _, stderr) = dry_run(&["--syscall", "fsync", "--backend", "override"]);
            assert_eq!(status.code(), Some(2), "{stderr}");
            assert!(stderr.contains(&reason), "expected doctor's reason {reason:?} in: {stderr}");
            // fsync has nothing else: auto is refused too, naming every mechanism's reason.
            let (status, _, stderr) = dry_run(&["--syscall", "fsync"]);
            assert_eq!(status.code(), Some(2), "{stderr}");
            assert!(stderr.contains(&reason) && stderr.contains("no BPF LSM hook"), "{stderr}");
            assert!(rows.iter().all(|r| r["backend"] != "override"), "syscall list picks override here");
            assert!(row("fsync")["note"].as_str().unwrap_or_default().contains(&reason), "{}", row("fsync"));
        }
        None => {
            assert_eq!(doctor_says, None, "the kernel has error injection, but doctor refuses it");
            let _debugfs = Debugfs::mount();
            let (status, stdout, stderr) = dry_run(&["--syscall", "fsync,getrandom"]);
            assert!(status.success(), "{stderr}");
            let plan: serde_json::Value = serde_json::from_str(&stdout).expect("plan JSON");
            let attached: Vec<&str> = plan["programs"]
                .as_array()
                .expect("programs")
                .iter()
                .filter_map(|p| p["attach"]["function"].as_str())
                .collect();
            assert_eq!(attached, ["__x64_sys_fsync", "__x64_sys_getrandom"], "{plan}");
            assert_eq!(row("fsync")["backend"], "override");
        }
    }
    // Where BPF LSM serves the call, auto takes it; it never takes override for such a call.
    if chaos::lsm_unavailable().is_none() {
        let (status, stdout, stderr) = dry_run(&["--syscall", "openat"]);
        assert!(status.success(), "{stderr}");
        let plan: serde_json::Value = serde_json::from_str(&stdout).expect("plan JSON");
        // Per-cgroup (lsm_cgroup, 6.0+) or global: both are BPF LSM.
        let on_lsm = |p: &serde_json::Value| p["attach"]["to"] == "lsm" || p["attach"]["to"] == "lsm-cgroup";
        assert!(plan["programs"].as_array().expect("programs").iter().all(on_lsm), "{plan}");
        assert_eq!(row("openat")["backend"], "lsm");
    }
}
