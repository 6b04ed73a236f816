//! `chaos daemon` as the DaemonSet runs it (host tier): its configuration in a directory laid
//! out as kubelet mounts a ConfigMap (every file a symlink through `..data` to a timestamped
//! directory, swapped at once on an update). A changed experiment is picked up without a
//! restart or a SIGHUP, and the ConfigMap key `kill` is the kill switch.
use std::{
    fs,
    os::unix::fs::symlink,
    path::Path,
    time::{Duration, Instant},
};

use chaos_tests::{TempDir, cgroup::TestCgroup, chaos::Chaos, kernel, require_root};

/// Writes `files` as a new generation of the ConfigMap in `dir` and swaps `..data` to it, as
/// kubelet does (the visible names are symlinks through `..data`).
fn publish(dir: &Path, generation: u32, files: &[(&str, String)]) {
    let data = format!("..2026_12_02_00_00_0{generation}.000000000");
    fs::create_dir(dir.join(&data)).expect("a new generation");
    for (name, text) in files {
        fs::write(dir.join(&data).join(name), text).expect("write a file");
        if fs::symlink_metadata(dir.join(name)).is_err() {
            symlink(format!("..data/{name}"), dir.join(name)).expect("the visible symlink");
        }
    }
    symlink(&data, dir.join("..data_tmp")).expect("the new ..data");
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
}

fn configuration(cgroup: &TestCgroup, name: &str) -> Vec<(&'static str, String)> {
    let experiment = format!(
        "name = \"{name}\"\ntarget = {{ cgroup = \"/placeholder\" }}\nduration = \"2s\"\n\n\
         [[fault]]\nkind = \"net drop\"\npercent = 10\ndirection = \"egress\"\n"
    );
    let daemon = format!(
        "socket = \"/run/chaos/test-{}.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n\
         [schedule]\nevery = \"1s\"\n[budget]\nmax_runs_per_hour = 1000\n\n\
         [[experiment]]\nfile = \"experiment.toml\"\ntargets = {{ cgroup = \"{}\" }}\n",
        std::process::id(),
        cgroup.path()
    );
    vec![("daemon.toml", daemon), ("experiment.toml", experiment)]
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < timeout, "{what} did not happen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn a_configmap_update_is_picked_up_without_a_restart_and_its_kill_key_pauses_injection() {
    require_root!("a_configmap_update_is_picked_up_without_a_restart_and_its_kill_key_pauses_injection");
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        "a_configmap_update_is_picked_up_without_a_restart_and_its_kill_key_pauses_injection",
        "the daemon's tests run on the host tier (its engine is the command line's, tested on every tier)"
    );
    let _serial = chaos_tests::serialized();
    let (first, second) = (TestCgroup::new(), TestCgroup::new());
    let mount = TempDir::new();
    let dir = mount.path();
    publish(dir, 1, &configuration(&first, "first"));
    let config = dir.join("daemon.toml");
    let mut daemon = Chaos::start(&["daemon", "--config", config.to_str().unwrap()]);
    daemon.wait_until("a run on the first cgroup", Duration::from_secs(60), || {
        kernel::inet_programs_attached(first.dir()) > 0
    });

    // The update: another experiment, aimed at the other cgroup.
    publish(dir, 2, &configuration(&second, "second"));
    let swapped = Instant::now();
    daemon.wait_until("a run of the changed experiment", Duration::from_secs(60), || {
        kernel::inet_programs_attached(second.dir()) > 0
    });
    eprintln!("measured: the changed experiment ran {:.1} s after the ..data swap", swapped.elapsed().as_secs_f64());
    let log = daemon.stderr_so_far();
    assert!(log.contains("configuration changed on disk"), "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(log.contains("second"), "the run is not of the changed experiment: {log}");

    // The cluster-wide kill switch: the key `kill` appears in the next generation.
    let mut files = configuration(&second, "second");
    files.push(("kill", "stop".to_owned()));
    publish(dir, 3, &files);
    let took = wait_for("the kill switch", Duration::from_secs(10), || daemon.stderr_so_far().contains("kill switch"));
    eprintln!("measured: the kill key paused the daemon {:.0} ms after the swap", took.as_secs_f64() * 1e3);
    wait_for("the runs to end", Duration::from_secs(5), || {
        kernel::inet_programs_attached(first.dir()) == 0 && kernel::inet_programs_attached(second.dir()) == 0
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kernel::inet_programs_attached(second.dir()), 0, "a run started while the kill key is there");
    daemon.signal(libc::SIGTERM);
    let (status, _, log) = daemon.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{log}");
}
