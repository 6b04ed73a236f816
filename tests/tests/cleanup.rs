//! `chaos cleanup` where nothing else can undo what a run left (host tier: thawing, SIGCONT and
//! unpinning are alike on every kernel): a cgroup frozen by a
//! pause, and a task stopped by a syscall delay, after both chaos and its guard died (chaos
//! stopped first so it cannot resume anything itself when the guard goes); the pins of a
//! detached experiment whose reaper was killed, past their deadline; and pins no record
//! describes (a run that died between pinning and recording). Each is shown left behind by the
//! kernel first, then undone by `chaos cleanup`, which says what it did.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel, require_root,
    workload::{command_in, start_stopped_reader, workload_bin},
};

/// The `chaos __guard` child of chaos `pid`.
fn guard_of(pid: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let guard = fs::read_dir("/proc").expect("read /proc").flatten().find_map(|entry| {
            let child: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let ppid: i32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            let cmdline = fs::read_to_string(format!("/proc/{child}/cmdline")).ok()?;
            (ppid == pid && cmdline.split('\0').any(|a| a == "__guard")).then_some(child)
        });
        if let Some(guard) = guard {
            return guard;
        }
        assert!(Instant::now() < deadline, "chaos {pid} has no guard");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills chaos and its guard so that neither can undo anything: chaos is stopped first (it
/// resumes and thaws by itself when its guard dies), then the guard and chaos are SIGKILLed.
fn kill_chaos_and_its_guard(chaos: Chaos) {
    let guard = guard_of(chaos.pid());
    chaos.signal(libc::SIGSTOP);
    // SAFETY: kill(2) on the guard of the chaos this test started.
    assert_eq!(unsafe { libc::kill(guard, libc::SIGKILL) }, 0, "SIGKILL the guard");
    chaos.signal(libc::SIGKILL);
    drop(chaos.wait(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{guard}")).exists()
        && !fs::read_to_string(format!("/proc/{guard}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the guard {guard} outlived its SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `chaos cleanup`: its output, which must say `expected`.
fn cleanup_says(expected: &str) -> String {
    let (status, stdout, stderr) = chaos::run(&["cleanup"]);
    assert!(status.success(), "chaos cleanup failed: {stdout}{stderr}");
    assert!(stdout.contains(expected), "chaos cleanup did not say {expected:?}: {stdout}");
    stdout
}

#[test]
fn cleanup_thaws_a_cgroup_a_pause_left_frozen_when_chaos_and_its_guard_died() {
    let test = "cleanup_thaws_a_cgroup_a_pause_left_frozen_when_chaos_and_its_guard_died";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    // Any other test's cleanup would undo what this one leaves: one at a time.
    let _alone = chaos_tests::leaves_a_stale_run();
    let cgroup = TestCgroup::new();
    let mut heartbeat: Child = command_in(workload_bin(), Some(&cgroup), None)
        .args(["heartbeat", "--secs", "60", "--over-ms", "500"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the heartbeat");
    let mut line = String::new();
    BufReader::new(heartbeat.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
    let mut chaos = Chaos::start(&["proc", "pause", "--cgroup", cgroup.path(), "--for", "60s", "-v"]);
    chaos.wait_until("the target is frozen", Duration::from_secs(30), || kernel::is_frozen(cgroup.dir()));
    kill_chaos_and_its_guard(chaos);
    std::thread::sleep(Duration::from_millis(500));
    assert!(kernel::is_frozen(cgroup.dir()), "something thawed the target though chaos and its guard are dead");
    let said = cleanup_says("thawed");
    eprintln!("measured: chaos cleanup said: {}", said.trim());
    assert!(said.contains(&cgroup.dir().display().to_string()), "cleanup does not name the cgroup: {said}");
    assert!(!kernel::is_frozen(cgroup.dir()), "still frozen after chaos cleanup");
    // The heartbeat runs again: its process is alive and not stopped.
    assert!(heartbeat.try_wait().expect("try_wait").is_none(), "the heartbeat died");
    assert!(!kernel::is_stopped(heartbeat.id()));
    let _ = heartbeat.kill();
    let _ = heartbeat.wait();
}

#[test]
fn cleanup_resumes_a_task_a_delay_left_stopped_when_chaos_and_its_guard_died() {
    let test = "cleanup_resumes_a_task_a_delay_left_stopped_when_chaos_and_its_guard_died";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    // Any other test's cleanup would undo what this one leaves: one at a time.
    let _alone = chaos_tests::leaves_a_stale_run();
    let cgroup = TestCgroup::new();
    // The whole-process scope stops the task with SIGSTOP, which outlives chaos and its guard;
    // a per-thread hold ends when its holder dies (the kernel detaches its tracees).
    let chaos =
        chaos::start_fault(&["syscall", "delay", "--syscall", "read", "--by", "10s", "--scope", "process"], &cgroup);
    let (mut reader, pid) = start_stopped_reader(&cgroup);
    kill_chaos_and_its_guard(chaos);
    std::thread::sleep(Duration::from_millis(500));
    assert!(kernel::is_stopped(pid), "the reader was resumed though chaos and its guard are dead");
    let said = cleanup_says("resumed 1 still stopped");
    eprintln!("measured: chaos cleanup said: {}", said.trim());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = reader.try_wait().expect("try_wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the reader did not finish after chaos cleanup");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "the reader failed after it was resumed: {status}");
}

/// A detached 100 % drop of `duration` on `cgroup`, with its reaper SIGKILLed once armed:
/// (its id, its pin directory).
fn detached_with_its_reaper_killed(
    cgroup: &TestCgroup,
    scratch: &TempDir,
    duration: &str,
) -> (String, std::path::PathBuf) {
    let file = scratch.file(
        "left.toml",
        &format!(
            "name = \"left\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"{duration}\"\n\n[[fault]]\nkind = \"net drop\"\n\
             percent = 100\ndirection = \"egress\"\n",
            cgroup.path()
        ),
    );
    let timeline = scratch.join("left.jsonl");
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().unwrap(), "--detach", "--timeline", timeline.to_str().unwrap()]);
    assert!(status.success(), "{stdout}{stderr}");
    let id = stdout.trim().to_owned();
    let started = Instant::now();
    while !fs::read_to_string(&timeline).is_ok_and(|t| t.contains("\"event\":\"arm\"")) {
        assert!(started.elapsed() < Duration::from_secs(60), "the detached run was not armed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("/run/chaos/runs/{id}.json")).expect("the run's record"))
            .expect("record JSON");
    let reaper = record["pid"].as_i64().expect("the reaper's pid") as i32;
    // SAFETY: kill(2) on the reaper of the experiment this test started.
    assert_eq!(unsafe { libc::kill(reaper, libc::SIGKILL) }, 0);
    let pins = Path::new("/sys/fs/bpf/chaos").join(&id);
    assert!(pins.is_dir(), "no pins at {}", pins.display());
    (id, pins)
}

#[test]
fn cleanup_removes_the_pins_of_a_detached_run_past_its_deadline_whose_reaper_died() {
    let test = "cleanup_removes_the_pins_of_a_detached_run_past_its_deadline_whose_reaper_died";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    let _alone = chaos_tests::leaves_a_stale_run();
    let cgroup = TestCgroup::new();
    let scratch = TempDir::new();
    let (id, pins) = detached_with_its_reaper_killed(&cgroup, &scratch, "1s");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(pins.is_dir(), "the pins went with the reaper");
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 1, "the pinned, now inert, program is not attached");
    let said = cleanup_says(&format!("removed the pins of detached experiment {id}"));
    eprintln!("measured: chaos cleanup said: {}", said.trim());
    assert!(!pins.exists(), "pins left after chaos cleanup");
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 0, "the program is still attached after chaos cleanup");
}

#[test]
fn cleanup_removes_pins_no_record_describes_once_they_are_a_minute_old() {
    let test = "cleanup_removes_pins_no_record_describes_once_they_are_a_minute_old";
    require_root!(test);
    chaos_tests::host_tier_only!(test);
    let _alone = chaos_tests::leaves_a_stale_run();
    let cgroup = TestCgroup::new();
    let scratch = TempDir::new();
    // A run that died between pinning and recording: its pins, no record (removed here).
    let (id, pins) = detached_with_its_reaper_killed(&cgroup, &scratch, "60s");
    fs::remove_file(format!("/run/chaos/runs/{id}.json")).expect("remove the run's record");
    // Younger than a minute, an orphan may be a run still writing its record: left alone.
    let said = chaos::run(&["cleanup"]).1;
    assert!(pins.is_dir(), "chaos cleanup removed pins under a minute old: {said}");
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 1);
    // A minute old (its time set back, as after a minute).
    let old = libc::timespec { tv_sec: 1, tv_nsec: 0 };
    let path = std::ffi::CString::new(pins.to_str().expect("utf-8")).expect("path");
    let times = [old, old];
    // SAFETY: utimensat on a path we own, with two valid timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) };
    assert_eq!(rc, 0, "set the pins' time back: {}", std::io::Error::last_os_error());
    let said = cleanup_says(&format!("removed pins that no experiment describes: {}", pins.display()));
    eprintln!("measured: chaos cleanup said: {}", said.trim());
    assert!(!pins.exists(), "orphan pins left after chaos cleanup");
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 0, "the orphan's program is still attached");
}
