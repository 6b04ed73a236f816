//! The daemon's brakes, each shown to bind on a real kernel (host tier): `max_concurrent` and
//! `max_runs_per_hour` (the share cap is in daemon.rs), the `[safety] cool_down` after a
//! violated steady state, `chaos daemon stop-all`, `chaos stop` on a daemon's run, the metrics a
//! dashboard reads, and the start-up cleanup of what an earlier run left. What ran is read from
//! the kernel (programs on each test cgroup, sampled every few milliseconds), not from the
//! daemon's own account.
use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos,
    daemon::{Daemon, plain, scrape, wait_for_programs},
    kernel, require_root,
    workload::HttpServer,
};

macro_rules! host_tier_only {
    ($test:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "the daemon's tests run on the host tier (its engine is the command line's, tested on every tier)"
        );
    };
}

/// A parent test cgroup with `n` children: the daemon's glob `<parent>/*` matches the children
/// and nothing of another test.
struct Family {
    children: Vec<TestCgroup>,
    parent: TestCgroup,
}

impl Family {
    fn new(n: usize) -> Self {
        let parent = TestCgroup::new();
        let children = (0..n).map(|i| parent.child(&format!("c{i}"))).collect();
        Self { children, parent }
    }

    fn glob(&self) -> String {
        format!("{}/*", self.parent.path())
    }

    /// How many children have a program attached now, by BPF_PROG_QUERY.
    fn under_fault(&self) -> Vec<bool> {
        self.children.iter().map(|c| kernel::inet_programs_attached(c.dir()) > 0).collect()
    }
}

impl Drop for Family {
    fn drop(&mut self) {
        self.children.clear(); // children first: a cgroup with children cannot be removed
    }
}

/// A drop of `duration` on the glob's matches, every `every`, with `budget` lines.
fn drop_config(family: &Family, every: &str, budget: &str) -> String {
    format!(
        "metrics = false\n[schedule]\nevery = \"{every}\"\n[budget]\n{budget}\n\n\
         [[experiment]]\nfile = \"experiment.toml\"\ntargets = {{ cgroup = \"{}\" }}\n",
        family.glob()
    )
}

fn drop_experiment(duration: &str) -> String {
    format!(
        "name = \"brake\"\ntarget = {{ cgroup = \"/placeholder\" }}\nduration = \"{duration}\"\n\n\
         [[fault]]\nkind = \"net drop\"\npercent = 10\ndirection = \"egress\"\n"
    )
}

/// The attach episodes the kernel showed on each child, sampling every 2 ms for `watch`, from
/// the state `before` (a run attached before the first sample is not counted).
fn episodes(family: &Family, watch: Duration, mut before: Vec<bool>, mut check: impl FnMut(&[bool])) -> Vec<usize> {
    let mut counts = vec![0; family.children.len()];
    let started = Instant::now();
    while started.elapsed() < watch {
        let now = family.under_fault();
        for (i, (&was, &is)) in before.iter().zip(&now).enumerate() {
            if is && !was {
                counts[i] += 1;
            }
        }
        check(&now);
        before = now;
        std::thread::sleep(Duration::from_millis(2));
    }
    counts
}

#[test]
fn max_concurrent_keeps_to_one_run_at_a_time_across_targets() {
    let test = "max_concurrent_keeps_to_one_run_at_a_time_across_targets";
    require_root!(test);
    host_tier_only!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let family = Family::new(3);
    // No share cap (100 %), runs of 30 s every 200 ms: only max_concurrent can hold them back.
    let config = drop_config(&family, "200ms", "max_runs_per_hour = 1000\nmax_concurrent = 1");
    let daemon = Daemon::start(&drop_experiment("30s"), &config);
    let started = Instant::now();
    while !family.under_fault().iter().any(|&b| b) {
        assert!(started.elapsed() < Duration::from_secs(30), "no run started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut most = 0;
    let counts = episodes(&family, Duration::from_secs(3), family.under_fault(), |now| {
        let under = now.iter().filter(|&&b| b).count();
        assert!(under <= 1, "max_concurrent = 1, yet {under} targets are under fault at once: {now:?}");
        most = most.max(under);
    });
    let (_, status) = daemon.ask(&["status"]);
    let log = daemon.terminate();
    eprintln!("measured: max_concurrent = 1: attach episodes per target {counts:?} over 3 s");
    assert_eq!(most, 1);
    assert_eq!(counts.iter().sum::<usize>(), 0, "a second run started while the first held its 30 s: {counts:?}");
    assert_eq!(status["details"]["runs"].as_array().map(Vec::len), Some(1), "{status}");
    assert!(log.contains("1 run(s) under way, the budget allows 1 at once"), "the skip says why: {log}");
}

#[test]
fn max_runs_per_hour_stops_starting_runs_at_its_count() {
    let test = "max_runs_per_hour_stops_starting_runs_at_its_count";
    require_root!(test);
    host_tier_only!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let family = Family::new(3);
    // Runs of 400 ms every 200 ms, three at once allowed: only the hourly count stops them.
    let config = drop_config(&family, "200ms", "max_runs_per_hour = 3\nmax_concurrent = 3");
    let daemon = Daemon::start(&drop_experiment("400ms"), &config);
    let counts = episodes(&family, Duration::from_secs(5), vec![false; 3], |_| {});
    let timelines = fs::read_dir(daemon.dir.path().join("state/timelines")).map_or(0, Iterator::count);
    let log = daemon.terminate();
    eprintln!("measured: max_runs_per_hour = 3: attach episodes per target {counts:?} in 5 s, {timelines} timelines");
    assert_eq!(counts.iter().sum::<usize>(), 3, "the kernel saw {counts:?} runs: the budget allows 3 an hour");
    assert_eq!(timelines, 3, "one timeline per run");
    assert!(log.contains("3 runs in the last hour, the budget allows 3"), "the skip says why: {log}");
}

/// A 100 % drop under an HTTP check that must pass 99 %: every run violates its steady state.
fn violating(cgroup: &TestCgroup, server: &HttpServer, duration: &str) -> String {
    format!(
        "name = \"web under total loss\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"{duration}\"\n\n\
         [[fault]]\nkind = \"net drop\"\npercent = 100\ndirection = \"egress\"\n\n\
         [steady_state]\nbefore = \"500ms\"\nafter = \"0s\"\ninterval = \"100ms\"\ntimeout = \"200ms\"\npass_rate = \"99%\"\n\n\
         [[steady_state.check]]\nname = \"web\"\nhttp = \"{}\"\n",
        cgroup.path(),
        server.url()
    )
}

#[test]
fn a_cool_down_pauses_injection_after_a_violation_and_resumes_by_itself() {
    let test = "a_cool_down_pauses_injection_after_a_violation_and_resumes_by_itself";
    require_root!(test);
    host_tier_only!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let cgroup = TestCgroup::new();
    let server = HttpServer::start(&cgroup, 18_481);
    let config = "metrics = \"127.0.0.1:19481\"\n[safety]\ncool_down = \"3s\"\n[schedule]\nevery = \"500ms\"\n\
                  [budget]\nmax_runs_per_hour = 1000\n\n[[experiment]]\nfile = \"experiment.toml\"\n";
    let mut daemon = Daemon::start(&violating(&cgroup, &server, "20s"), config);
    wait_for_programs(&cgroup, true, Duration::from_secs(30));
    // The violation ends the run: the kernel shows the drop gone, then nothing for the cool-down.
    wait_for_programs(&cgroup, false, Duration::from_secs(20));
    let detached = Instant::now();
    daemon.wait_for_log("steady state violated", Duration::from_secs(5));
    assert!(daemon.chaos().stderr_so_far().contains("injection paused for 3s"), "{}", daemon.chaos().stderr_so_far());
    let metrics = scrape("127.0.0.1:19481");
    assert!(metrics.contains("chaos_daemon_paused{reason=\"steady state violated"), "{metrics}");
    assert!(
        metrics.contains("chaos_daemon_last_verdict_exit_code{experiment=\"web under total loss\"} 1"),
        "{metrics}"
    );
    wait_for_programs(&cgroup, true, Duration::from_secs(20));
    let resumed_after = detached.elapsed();
    drop(daemon.terminate());
    eprintln!(
        "measured: cool_down 3s: the next run attached {:.2} s after the violated one detached",
        resumed_after.as_secs_f64()
    );
    // Not before the cool-down (its clock starts when the run's end is handled, just after the
    // detach the kernel showed), and then at the next look: the schedule's 500 ms, the daemon's
    // one-second idle look, and the next run's start-up (its baseline of 500 ms comes before
    // the fault) on a loaded machine.
    assert!(resumed_after >= Duration::from_millis(2950), "injection resumed {resumed_after:?} after the violation");
    assert!(resumed_after <= Duration::from_secs(7), "injection resumed only {resumed_after:?} after the violation");
}

#[test]
fn stop_all_ends_every_run_and_the_schedule_goes_on() {
    let test = "stop_all_ends_every_run_and_the_schedule_goes_on";
    require_root!(test);
    host_tier_only!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let family = Family::new(2);
    let config = drop_config(&family, "1s", "max_runs_per_hour = 1000\nmax_concurrent = 2");
    let daemon = Daemon::start(&drop_experiment("60s"), &config);
    let started = Instant::now();
    while family.under_fault() != [true, true] {
        assert!(started.elapsed() < Duration::from_secs(30), "two runs did not start: {:?}", family.under_fault());
        std::thread::sleep(Duration::from_millis(5));
    }
    let asked = Instant::now();
    let (ok, reply) = daemon.ask(&["stop-all"]);
    let answered = asked.elapsed();
    assert!(ok, "{reply}");
    assert!(reply["message"].as_str().is_some_and(|m| m.contains("ended 2 run(s); the schedule goes on")), "{reply}");
    // The reply comes once the runs have ended: the kernel shows nothing at that moment.
    assert_eq!(family.under_fault(), [false, false], "runs still attached when stop-all answered");
    let (_, status) = daemon.ask(&["status"]);
    assert!(status["details"]["paused"].is_null(), "stop-all is not a pause: {status}");
    let started = Instant::now();
    while !family.under_fault().iter().any(|&b| b) {
        assert!(started.elapsed() < Duration::from_secs(10), "the schedule did not go on after stop-all");
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "measured: stop-all answered {:.1} ms after the command started; a new run attached {:.2} s after that",
        answered.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64()
    );
    drop(daemon.terminate());
}

#[test]
fn chaos_stop_on_a_daemon_run_stops_the_daemon_and_detaches_everything() {
    let test = "chaos_stop_on_a_daemon_run_stops_the_daemon_and_detaches_everything";
    require_root!(test);
    host_tier_only!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let family = Family::new(2);
    let config = drop_config(&family, "1s", "max_runs_per_hour = 1000\nmax_concurrent = 2");
    let mut daemon = Daemon::start(&drop_experiment("60s"), &config);
    let started = Instant::now();
    while family.under_fault() != [true, true] {
        assert!(started.elapsed() < Duration::from_secs(30), "two runs did not start: {:?}", family.under_fault());
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = daemon.chaos().pid();
    let (status, stdout, stderr) = chaos::run(&["status", "--output", "json"]);
    assert!(status.success(), "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    let ours: Vec<&serde_json::Value> =
        rows["experiments"].as_array().expect("experiments").iter().filter(|r| r["pid"] == pid).collect();
    assert_eq!(ours.len(), 2, "chaos status lists both of the daemon's runs: {rows}");
    assert!(ours.iter().all(|r| r["kind"] == "daemon"), "{ours:?}");
    let id = ours[0]["id"].as_str().expect("an id");
    let (status, stdout, stderr) = chaos::run(&["stop", id]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("the daemon ends every run it has"), "chaos stop says what it does: {stdout}");
    let chaos = daemon.chaos.take().expect("the daemon");
    let (status, _, log) = chaos.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "the daemon ends cleanly on chaos stop (SIGTERM): {log}");
    assert_eq!(family.under_fault(), [false, false], "a run is still attached after the daemon stopped");
    assert!(plain(&log).contains("runs_ended=2"), "{log}");
}

#[test]
fn the_metrics_follow_the_runs_the_kernel_shows() {
    let test = "the_metrics_follow_the_runs_the_kernel_shows";
    require_root!(test);
    host_tier_only!(test);
    let _stale = chaos_tests::may_clean_stale_runs();
    let cgroup = TestCgroup::new();
    // Two faults in one experiment: two programs on the cgroup while it runs.
    let experiment = "name = \"two faults\"\ntarget = { cgroup = \"/placeholder\" }\nduration = \"2s\"\n\n\
                      [[fault]]\nkind = \"net drop\"\npercent = 10\ndirection = \"egress\"\n\n\
                      [[fault]]\nkind = \"net drop\"\npercent = 10\ndirection = \"ingress\"\n";
    let config = format!(
        "metrics = \"127.0.0.1:19482\"\n[schedule]\nevery = \"10s\"\n[budget]\nmax_runs_per_hour = 1000\n\n\
         [[experiment]]\nfile = \"experiment.toml\"\ntargets = {{ cgroup = \"{}\" }}\n",
        cgroup.path()
    );
    let daemon = Daemon::start(experiment, &config);
    let config_path = daemon.dir.path().join("daemon.toml");
    let value = |metrics: &str, name: &str| -> Option<f64> {
        metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
    };
    let metrics = scrape("127.0.0.1:19482");
    assert_eq!(
        value(&metrics, &format!("chaos_daemon_config_loaded{{path=\"{}\"}}", config_path.display())),
        Some(1.0),
        "{metrics}"
    );
    assert!(value(&metrics, "chaos_daemon_cleaned_at_start").is_some(), "{metrics}");
    // While the kernel shows both programs: one run, two faults.
    let started = Instant::now();
    while kernel::inet_programs_attached(cgroup.dir()) < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "the run did not attach both faults");
        std::thread::sleep(Duration::from_millis(2));
    }
    let during = scrape("127.0.0.1:19482");
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 2, "the run ended while the metrics were read");
    assert_eq!(value(&during, "chaos_daemon_runs_active"), Some(1.0), "{during}");
    assert_eq!(value(&during, "chaos_daemon_faults_active"), Some(2.0), "{during}");
    // Once the kernel shows nothing, the run has ended: held (no check), ended about then.
    wait_for_programs(&cgroup, false, Duration::from_secs(20));
    let detached_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs_f64();
    let label = "{experiment=\"two faults\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let after = scrape("127.0.0.1:19482");
        if value(&after, &format!("chaos_daemon_last_run_end_timestamp_seconds{label}")).is_some()
            || Instant::now() > deadline
        {
            break after;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(daemon.terminate());
    let ended = value(&after, &format!("chaos_daemon_last_run_end_timestamp_seconds{label}")).expect("an end time");
    eprintln!(
        "measured: last_run_end_timestamp_seconds {:.3} s from when the kernel showed the detach",
        ended - detached_at
    );
    assert!((ended - detached_at).abs() <= 1.0, "the run ended at {ended}, the kernel saw the detach at {detached_at}");
    assert_eq!(value(&after, &format!("chaos_daemon_last_verdict_exit_code{label}")), Some(0.0), "{after}");
    assert_eq!(value(&after, "chaos_daemon_runs_active"), Some(0.0), "{after}");
    assert_eq!(value(&after, "chaos_daemon_faults_active"), Some(0.0), "{after}");
}

/// Waits (30 s at most) for the first `arm` event of `timeline`.
fn wait_for_arm(timeline: &Path) {
    let started = Instant::now();
    while !fs::read_to_string(timeline).is_ok_and(|t| t.contains("\"event\":\"arm\"")) {
        assert!(started.elapsed() < Duration::from_secs(60), "not armed: {}", timeline.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a crashed run left (a dead run's record, a detached run's pins past its deadline with
/// its reaper killed) is removed by the daemon before its first run, said in its log and
/// counted by `chaos_daemon_cleaned_at_start`.
#[test]
fn the_daemon_removes_what_dead_runs_left_before_its_first_run() {
    let test = "the_daemon_removes_what_dead_runs_left_before_its_first_run";
    require_root!(test);
    host_tier_only!(test);
    // Every other test of this file starts a daemon, which would clean the stale run first.
    let _alone = chaos_tests::leaves_a_stale_run();
    let cgroup = TestCgroup::new();
    let scratch = TempDir::new();
    // A detached 1 s drop whose reaper is killed: its pins stay, inert after the deadline.
    let file = scratch.file(
        "detached.toml",
        &format!(
            "name = \"left\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"1s\"\n\n[[fault]]\nkind = \"net drop\"\n\
             percent = 100\ndirection = \"egress\"\n",
            cgroup.path()
        ),
    );
    let timeline = scratch.join("left.jsonl");
    let (status, stdout, stderr) =
        chaos::run(&["run", file.to_str().unwrap(), "--detach", "--timeline", timeline.to_str().unwrap()]);
    assert!(status.success(), "{stdout}{stderr}");
    let id = stdout.trim().to_owned();
    wait_for_arm(&timeline);
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("/run/chaos/runs/{id}.json")).expect("the run's record"))
            .expect("record JSON");
    let reaper = record["pid"].as_i64().expect("the reaper's pid") as i32;
    // SAFETY: kill(2) on the reaper of the experiment this test started.
    unsafe { libc::kill(reaper, libc::SIGKILL) };
    let pins = Path::new("/sys/fs/bpf/chaos").join(&id);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(pins.is_dir(), "the pins went with the reaper: {}", pins.display());
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 1, "the pinned program is not attached");
    // The daemon's first act: its log names the run, the metric counts each line.
    let other = TestCgroup::new();
    let config = format!(
        "metrics = \"127.0.0.1:19483\"\n[schedule]\nevery = \"1h\"\n\n[[experiment]]\nfile = \"experiment.toml\"\n\
         targets = {{ cgroup = \"{}\" }}\n",
        other.path()
    );
    let daemon = Daemon::start(&drop_experiment("1s"), &config);
    let log = plain(&daemon.chaos.as_ref().expect("the daemon").stderr_so_far());
    let cleaned: Vec<&str> = log.lines().filter(|l| l.contains("cleaned what an earlier run left")).collect();
    let metrics = scrape("127.0.0.1:19483");
    drop(daemon.terminate());
    eprintln!("measured: the daemon cleaned at start: {cleaned:?}");
    assert!(!pins.exists(), "the daemon left the dead run's pins: {log}");
    assert_eq!(kernel::inet_programs_attached(cgroup.dir()), 0, "the dead run's program is still attached");
    assert!(cleaned.iter().any(|l| l.contains(&id)), "the log does not name run {id}: {log}");
    let counted = metrics.lines().find_map(|l| l.strip_prefix("chaos_daemon_cleaned_at_start ")).map(str::trim);
    assert_eq!(counted, Some(cleaned.len().to_string().as_str()), "{metrics}");
}
