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
    let output = Command::new(chaos_bin()).args(args).output().expect("run chaos");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
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

/// Why BPF LSM faults cannot run here, if they cannot (asks `chaos doctor`).
#[must_use]
pub fn lsm_unavailable() -> Option<String> {
    family_unavailable("syscall-errno-lsm").map(|reason| format!("BPF LSM unavailable: {reason}"))
}

/// Doctor's reason why fault family `id` cannot run here, if it cannot.
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
        let mut child = Command::new(chaos_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chaos");
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
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
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
