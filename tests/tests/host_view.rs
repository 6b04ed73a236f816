//! A chaos that runs in a cgroup namespace of its own (as in a container, the DaemonSet's pod)
//! still resolves targets by the host's cgroup paths and still refuses its own cgroup (every
//! tier). The kernel shows other namespaces' cgroups as `/../x` there: chaos joins init's
//! cgroup namespace where it can (the VM tiers: init is readable), else maps those paths under
//! the cgroup2 mount, whose root mountinfo shows as `/..` (the host tier: this machine's init
//! is not readable, so the join is refused).
use std::{
    fs,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use chaos_tests::{cgroup::TestCgroup, chaos, kernel, require_root};

/// `chaos args...` started in a new cgroup namespace rooted at `namespace_root` (it moves into
/// that cgroup first, as a container's processes are in theirs).
fn chaos_in_a_cgroup_namespace(namespace_root: &TestCgroup, args: &[&str]) -> std::process::Child {
    let procs = namespace_root.dir().join("cgroup.procs");
    let mut command = Command::new(chaos::chaos_bin());
    command.args(args).env("RUST_LOG", "chaos=debug").stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: between fork and exec only fs::write of the child's own pid and unshare(2).
    unsafe {
        command.pre_exec(move || {
            fs::write(&procs, std::process::id().to_string())?;
            if libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().expect("start chaos in a cgroup namespace")
}

#[test]
fn in_a_cgroup_namespace_of_its_own_chaos_aims_at_host_cgroups_and_refuses_its_own() {
    require_root!("in_a_cgroup_namespace_of_its_own_chaos_aims_at_host_cgroups_and_refuses_its_own");
    let (namespace_root, target) = (TestCgroup::new(), TestCgroup::new());
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("start a process for the target");
    fs::write(target.dir().join("cgroup.procs"), sleeper.id().to_string()).expect("move it into the target");
    let pid = sleeper.id().to_string();

    // By pid: /proc/PID/cgroup reads /../<target> from inside the namespace.
    let child = chaos_in_a_cgroup_namespace(
        &namespace_root,
        &["net", "drop", "--pid", &pid, "--percent", "50", "--for", "2s", "--output", "json"],
    );
    let started = Instant::now();
    let mut seen_attached = false;
    while started.elapsed() < Duration::from_secs(30) && !seen_attached {
        seen_attached = kernel::inet_programs_attached(target.dir()) > 0;
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().expect("wait for chaos");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "chaos in a cgroup namespace: {stdout}{stderr}");
    assert!(seen_attached, "the kernel never listed the drop on {}: {stderr}", target.path());
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["target"]["cgroup"], target.path(), "{summary}");
    assert_eq!(kernel::inet_programs_attached(target.dir()), 0, "the drop outlived chaos");
    // Which way it went: joined init's namespace where init is readable, mapped where not.
    let init_readable = fs::read_link("/proc/1/ns/cgroup").is_ok();
    assert_eq!(stderr.contains("joined init's cgroup namespace"), init_readable, "{stderr}");
    eprintln!("measured: {}", if init_readable { "joined init's cgroup namespace" } else { "mapped /../x paths" });

    // Its own cgroup (the namespace's root, which it reads as `/`) is still refused.
    let child = chaos_in_a_cgroup_namespace(
        &namespace_root,
        &["net", "drop", "--cgroup", namespace_root.path(), "--percent", "50", "--for", "2s"],
    );
    let output = child.wait_with_output().expect("wait for chaos");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("contains chaos itself"), "{stderr}");
    assert_eq!(kernel::inet_programs_attached(namespace_root.dir()), 0);
}
