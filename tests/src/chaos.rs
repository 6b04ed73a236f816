//! Running the `chaos` binary under test, with a guard that never lets it outlive the test.
use std::{
    io::{BufRead as _, BufReader, Read as _},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::workload::sibling_binary;

#[must_use]
pub fn chaos_bin() -> PathBuf {
    sibling_binary("chaos", "CHAOS_BIN", None)
}

/// Runs `chaos args...` to completion: (exit status, stdout, stderr).
#[must_use]
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    run_with_env(args, &[])
}

/// [`run`] with `env` added to chaos's environment.
#[must_use]
pub fn run_with_env(args: &[&str], env: &[(&str, String)]) -> (ExitStatus, String, String) {
    let output = Command::new(chaos_bin())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run chaos");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `chaos status --output json`'s rows: every run on this machine (other tests' too: pick
/// yours by pid or target).
#[must_use]
pub fn status_rows() -> Vec<serde_json::Value> {
    let (status, stdout, stderr) = run(&["status", "--output", "json"]);
    assert!(status.success(), "chaos status failed: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    json["experiments"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most `timeout`) until `chaos status` lists the run of process `pid` with a row
/// that `ready` accepts; returns that row.
#[must_use]
pub fn wait_for_status_row(
    pid: i32,
    timeout: Duration,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = status_rows();
        if let Some(row) = rows.iter().find(|r| r["pid"] == pid && ready(r)) {
            return row.clone();
        }
        assert!(Instant::now() < deadline, "after {timeout:?}, chaos status has no such run of pid {pid}: {rows:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `chaos stop ID` for the one-shot fault `run`: it must exit within `within` with 143 (it
/// ended on the SIGTERM `chaos stop` sends, as every one-shot fault does), having printed its
/// summary, and its record must be gone. Returns the summary (`--output json`).
#[must_use]
pub fn stop_by_id(run: Chaos, id: &str, within: Duration) -> serde_json::Value {
    let (status, stdout, stderr) = self::run(&["stop", id]);
    assert!(status.success(), "chaos stop {id}: {stdout}{stderr}");
    let stopped = Instant::now();
    let (status, stdout, stderr) = run.wait(within);
    eprintln!("measured: run {id} exited {:.1} ms after chaos stop", stopped.elapsed().as_secs_f64() * 1e3);
    assert_eq!(status.code(), Some(143), "a one-shot fault ended by chaos stop exits 143 (SIGTERM): {stderr}");
    assert!(
        !std::path::Path::new("/run/chaos/runs").join(format!("{id}.json")).exists(),
        "the record of run {id} is still there after its end"
    );
    assert!(status_rows().iter().all(|r| r["id"] != id), "chaos status still lists run {id}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr: {stderr}"))
}

/// Runs `chaos args...` to completion under `strace -e trace=bpf`: (exit status, stderr, the
/// bpf(2) calls the kernel accepted that attach, link, pin or write a map). Feature probes are
/// not changes: they load unnamed programs (aya's probes, and the attach some of them try to see
/// whether the kernel allows it) that do nothing and die with their file descriptors.
#[must_use]
pub fn run_watching_attaches(args: &[&str]) -> (ExitStatus, String, Vec<String>) {
    const CHANGES: &[&str] =
        &["BPF_PROG_ATTACH", "BPF_LINK_CREATE", "BPF_RAW_TRACEPOINT_OPEN", "BPF_OBJ_PIN", "BPF_MAP_UPDATE_ELEM"];
    let trace = crate::TempDir::new();
    let log = trace.path().join("bpf.trace");
    let output = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=bpf", "-o"])
        .arg(&log)
        .arg(chaos_bin())
        .args(args)
        .output()
        .expect("run chaos under strace (`cargo xtask setup` installs it)");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let field = |line: &str, name: &str| -> Option<String> {
        let rest = line.split(name).nth(1)?;
        Some(rest.split([',', '}']).next()?.trim_matches('"').to_owned())
    };
    // The name each program fd was loaded with, as the calls go (fds are reused).
    let mut program_names = std::collections::HashMap::new();
    let mut changes = Vec::new();
    for line in calls.lines() {
        let result = line.rsplit_once(") = ").map(|(_, r)| r.split_whitespace().next().unwrap_or("")).unwrap_or("");
        if result.starts_with('-') {
            continue; // refused by the kernel: changed nothing
        }
        if line.contains("BPF_PROG_LOAD") {
            program_names.insert(result.to_owned(), field(line, "prog_name=").unwrap_or_default());
        } else if CHANGES.iter().any(|c| line.contains(c)) {
            let program = field(line, "prog_fd=").or_else(|| field(line, "attach_bpf_fd="));
            let probe = program.is_some_and(|fd| program_names.get(&fd).is_some_and(String::is_empty));
            if !probe {
                changes.push(line.to_owned());
            }
        }
    }
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned(), changes)
}

/// Starts `chaos <args> --cgroup <cgroup> --for 5m --output json -v` and waits until the fault
/// is armed (every program attached).
#[must_use]
pub fn start_fault(args: &[&str], cgroup: &crate::cgroup::TestCgroup) -> Chaos {
    let mut full = args.to_vec();
    full.extend_from_slice(&["--cgroup", cgroup.path(), "--for", "5m", "--output", "json", "-v"]);
    let mut chaos = Chaos::start(&full);
    chaos.wait_until_armed(Duration::from_secs(60));
    chaos
}

/// The kernel deadline (CLOCK_MONOTONIC ns) that `chaos -v` logged when it armed its fault.
#[must_use]
pub fn logged_deadline_ns(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| l.split("kernel deadline CLOCK_MONOTONIC ns=").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("chaos -v did not log its kernel deadline: {stderr}"))
}

/// Asserts that the kernel deadline is `--for` after arming: chaos arms between `started_ns`
/// (before it was started) and `armed_seen_ns` (when the test saw it armed), so the deadline
/// lies between those two plus `in_force_for`.
pub fn assert_deadline_is_for(deadline_ns: u64, started_ns: u64, armed_seen_ns: u64, in_force_for: Duration) {
    let for_ns = in_force_for.as_nanos() as u64;
    assert!(
        (started_ns + for_ns..=armed_seen_ns + for_ns).contains(&deadline_ns),
        "the kernel deadline is {:.3} s after chaos started and {:.3} s after it was seen armed: --for is {:?}",
        (deadline_ns as f64 - started_ns as f64) / 1e9,
        (deadline_ns as f64 - armed_seen_ns as f64) / 1e9,
        in_force_for
    );
}

/// Why BPF LSM faults cannot run here, if they cannot: the kernel's own answer
/// ([`crate::probe`]), not doctor's (doctor.rs checks that doctor agrees).
#[must_use]
pub fn lsm_unavailable() -> Option<String> {
    crate::probe::bpf_lsm_missing().map(|reason| format!("BPF LSM unavailable: {reason}"))
}

/// Why BPF LSM programs cannot attach per cgroup here (lsm_cgroup), if they cannot: the
/// kernel's own answer.
#[must_use]
pub fn lsm_cgroup_unavailable() -> Option<String> {
    crate::probe::lsm_cgroup_missing().map(|reason| format!("no lsm_cgroup programs: {reason}"))
}

/// Whether `chaos doctor` says one-syscall delays and crash points run on fentry here (BPF
/// trampolines: the VM tiers), rather than on the raw sys_enter tracepoint (the host). What
/// doctor says, to compare with the kernel's own answer (`probe::fentry_missing`): never a
/// test's gate.
#[must_use]
pub fn entry_hook_is_fentry() -> bool {
    let (status, stdout, stderr) = run(&["doctor", "--output", "json"]);
    assert!(status.success(), "chaos doctor failed: {stderr}");
    let doctor: serde_json::Value = serde_json::from_str(&stdout).expect("doctor JSON");
    let delay = doctor["families"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == "syscall-delay"))
        .expect("doctor lists syscall-delay");
    delay["mechanism"].as_str().unwrap_or_default().contains("one syscall: fentry")
}

/// Doctor's reason why fault family `id` cannot run here, if it cannot: what doctor says, to
/// compare with the kernel's own answer ([`crate::probe`]), never a test's gate.
#[must_use]
pub fn family_unavailable(id: &str) -> Option<String> {
    let (status, stdout, stderr) = run(&["doctor", "--output", "json"]);
    assert!(status.success(), "chaos doctor failed: {stderr}");
    let doctor: serde_json::Value = serde_json::from_str(&stdout).expect("doctor JSON");
    let family = doctor["families"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == id))
        .unwrap_or_else(|| panic!("doctor lists no family {id}"));
    (family["supported"] != true).then(|| family["reason"].as_str().unwrap_or("?").to_owned())
}

/// A `chaos` running in the background; SIGKILLed on Drop if the test did not end it. Its
/// stderr is collected as it comes, so tests can wait for a line while it runs.
pub struct Chaos {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Chaos {
    #[must_use]
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// [`Chaos::start`] with `env` added to its environment (e.g. a test runtime's socket).
    #[must_use]
    pub fn start_with_env(args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(chaos_bin());
        command.args(args).envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        Self::start_command(command)
    }

    /// A chaos started by another program, e.g. `docker exec CONTAINER chaos ...` (its
    /// stdout and stderr are chaos's).
    #[must_use]
    pub fn start_command(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start chaos");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().expect("stderr lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        Self { child, stderr, stderr_reader: Some(stderr_reader) }
    }

    /// What chaos wrote to stderr so far.
    #[must_use]
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until chaos has armed its fault (it logs this with -v after every attach).
    pub fn wait_until_armed(&mut self, timeout: Duration) {
        let stderr = Arc::clone(&self.stderr);
        self.wait_until("the fault is armed", timeout, || stderr.lock().expect("stderr lock").contains("fault armed"));
    }

    #[must_use]
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether chaos is still running (not exited yet).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `ready()` holds, for at most `timeout`; panics with chaos's output if chaos
    /// exits first (it failed to start) or the time runs out.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready() {
            if let Some(status) = self.child.try_wait().expect("try_wait chaos") {
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                panic!("chaos exited ({status}) before {what}: {}", self.stderr_so_far());
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; chaos said: {}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Stops chaos with SIGINT (it must exit 130, having detached) and returns its JSON report.
    #[must_use]
    pub fn stop_json(self) -> serde_json::Value {
        self.signal(libc::SIGINT);
        let (status, stdout, stderr) = self.wait(Duration::from_secs(20));
        assert_eq!(status.code(), Some(130), "chaos stopped by SIGINT must exit 130; stderr: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr: {stderr}"))
    }

    /// Waits (at most `timeout`) for chaos to exit: (status, stdout, stderr).
    #[must_use]
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait chaos") {
                break status;
            }
            assert!(Instant::now() < deadline, "chaos did not exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stdout = String::new();
        self.child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (status, stdout, self.stderr_so_far())
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
