//! Running the `chaos` binary under test, with a guard that never lets it outlive the test.
use std::{
    io::Read as _,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
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

/// A `chaos` running in the background; SIGKILLed on Drop if the test did not end it.
pub struct Chaos {
    child: Child,
}

impl Chaos {
    #[must_use]
    pub fn start(args: &[&str]) -> Self {
        let child = Command::new(chaos_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chaos");
        Self { child }
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
                let mut stderr = String::new();
                let _ = self.child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
                panic!("chaos exited ({status}) before {what}: {stderr}");
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), signal) };
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
        let mut stderr = String::new();
        self.child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
        self.child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
        (status, stdout, stderr)
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
