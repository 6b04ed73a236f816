//! `chaos stop --all` (all tiers): every run chaos knows of is stopped, one-shot faults by
//! SIGTERM (they detach and report) and detached experiments by removing their pins, and the
//! kernel shows nothing left on any of their cgroups.
//!
//! `--all` means every run of the machine, and several test binaries (and people) run chaos on
//! this one at once: the test runs its chaos commands in a mount namespace of its own, where
//! `/run/chaos` is a fresh tmpfs, so the records `--all` reads are the test's alone. A one-shot
//! fault started outside that namespace must still be running afterwards.
use std::{
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel, require_root,
    workload::workload_bin,
};

/// A process holding a private mount namespace with a tmpfs on /run/chaos; killed on Drop.
struct PrivateRunDir(Child);

impl PrivateRunDir {
    fn new() -> Self {
        std::fs::create_dir_all("/run/chaos").expect("create /run/chaos");
        let mut command = Command::new(workload_bin());
        command.args(["sleep", "--secs", "600"]).stdin(Stdio::null());
        // SAFETY: between fork and exec only unshare(2) and mount(2), on constant C strings.
        unsafe {
            command.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        c"chaos-test".as_ptr(),
                        c"/run/chaos".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self(command.spawn().expect("start the namespace holder"))
    }

    /// `chaos args...` inside the namespace (joined between fork and exec).
    fn chaos(&self, args: &[&str]) -> Command {
        let namespace =
            std::fs::File::open(format!("/proc/{}/ns/mnt", self.0.id())).expect("open the holder's mount namespace");
        let mut command = Command::new(chaos::chaos_bin());
        command.args(args);
        // SAFETY: only setns(2) between fork and exec; the child is single-threaded there and
        // does not share its filesystem attributes with the test (fork copies them).
        unsafe {
            command.pre_exec(move || {
                if libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }
}

impl Drop for PrivateRunDir {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn stop_all_stops_every_run_it_knows_of_and_nothing_is_left_attached() {
    let test = "stop_all_stops_every_run_it_knows_of_and_nothing_is_left_attached";
    require_root!(test);
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        test,
        "a host-tier test: chaos stop --all reads run records in userspace, the same on every kernel"
    );
    let private = PrivateRunDir::new();
    let (one, two, detached, outside) = (TestCgroup::new(), TestCgroup::new(), TestCgroup::new(), TestCgroup::new());
    let start = |cgroup: &TestCgroup| {
        let mut chaos = Chaos::start_command(private.chaos(&[
            "net",
            "drop",
            "--percent",
            "10",
            "--direction",
            "egress",
            "--cgroup",
            cgroup.path(),
            "--for",
            "5m",
            "--output",
            "json",
            "-v",
        ]));
        chaos.wait_until_armed(Duration::from_secs(60));
        chaos
    };
    let (first, second) = (start(&one), start(&two));
    let scratch = TempDir::new();
    let file = scratch.file(
        "detached.toml",
        &format!(
            "name = \"detached\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"60s\"\n\n[[fault]]\nkind = \"net drop\"\n\
             percent = 10\ndirection = \"egress\"\n",
            detached.path()
        ),
    );
    let timeline = scratch.join("detached.jsonl");
    let output = private
        .chaos(&["run", file.to_str().unwrap(), "--detach", "--timeline", timeline.to_str().unwrap()])
        .output()
        .expect("chaos run --detach");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let pins = Path::new("/sys/fs/bpf/chaos").join(&id);
    assert!(pins.is_dir(), "no pins for the detached run {id}");
    // Outside the namespace: a run --all must not see.
    let control = chaos::start_fault(&["net", "drop", "--percent", "10", "--direction", "egress"], &outside);
    for cgroup in [&one, &two, &detached, &outside] {
        assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 1, "{} is not under its drop", cgroup.path());
    }

    let output = private.chaos(&["stop", "--all"]).output().expect("chaos stop --all");
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{said}{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("measured: chaos stop --all said: {}", said.trim());
    for (chaos, name) in [(first, "first"), (second, "second")] {
        let pid = chaos.pid();
        assert!(said.contains(&format!("(pid {pid})")), "stop --all does not name the {name} one-shot fault: {said}");
        let (status, stdout, stderr) = chaos.wait(Duration::from_secs(20));
        assert_eq!(status.code(), Some(143), "the {name} one-shot fault ends as by SIGTERM: {stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(report["stopped"]["signal"], "SIGTERM", "{report}");
    }
    assert!(said.contains(&format!("stopped detached experiment {id}")), "{said}");
    assert!(!pins.exists(), "the detached run's pins are left");
    for cgroup in [&one, &two, &detached] {
        assert_eq!(kernel::cgroup_programs(cgroup.dir()), 0, "{} still has a program after stop --all", cgroup.path());
    }
    assert_eq!(kernel::inet_programs_attached(outside.dir()), 1, "stop --all reached a run it was not to see");
    drop(control.stop_json());
}
