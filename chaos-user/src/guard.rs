//! The guard of `syscall delay`: a small process that makes sure no task stays stopped.
//!
//! The controller stops tasks (SIGSTOP, from the kernel) and resumes them (SIGCONT) when their
//! delay is over. If the controller dies in between, even by SIGKILL, nothing would resume
//! them. So before anything is attached, chaos starts `chaos __guard <cgroup dir>` in its own
//! session (terminal signals do not reach it), tells it every task it stops and resumes, and
//! keeps the write end of its stdin. When that pipe closes (the controller exited, crashed or
//! was killed) the guard resumes every task still recorded as stopped, then every stopped
//! process of the target cgroup (a task stopped just before the controller died may not have
//! been recorded yet), and exits.
use std::{
    collections::BTreeSet,
    fs,
    io::{self, BufRead as _, Write as _},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, ChildStdin, Command, ExitCode, Stdio},
};

use crate::netns::pids_below;

/// The controller's side: the pipe to a running guard.
pub struct Guard {
    stdin: Option<ChildStdin>,
    child: Child,
}

impl Guard {
    /// Starts a guard for the tasks of `cgroup_dir`.
    pub fn spawn(cgroup_dir: &Path) -> io::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("__guard").arg(cgroup_dir).stdin(Stdio::piped()).stdout(Stdio::null());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        Ok(Self { stdin, child })
    }

    fn tell(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin
            && writeln!(stdin, "{line}").is_err()
        {
            tracing::warn!("the guard of stopped tasks is gone; chaos resumes them itself");
            self.stdin = None;
        }
    }

    pub fn stopped(&mut self, pid: u32) {
        self.tell(&format!("stop {pid}"));
    }

    pub fn resumed(&mut self, pid: u32) {
        self.tell(&format!("cont {pid}"));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // EOF: the guard resumes whatever is left and exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `chaos __guard <cgroup dir>`: the guard's side.
pub fn run(cgroup_dir: &Path) -> ExitCode {
    // Only the pipe ends the guard: Ctrl-C, SIGTERM or a hang-up aimed at chaos must not.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: ignoring a signal.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let mut stopped = BTreeSet::new();
    for line in io::stdin().lock().lines().map_while(Result::ok) {
        match line.split_once(' ') {
            Some(("stop", pid)) => {
                stopped.insert(pid.trim().parse::<i32>().unwrap_or(0));
            }
            Some(("cont", pid)) => {
                stopped.remove(&pid.trim().parse::<i32>().unwrap_or(0));
            }
            _ => {}
        }
    }
    let stragglers = pids_below(cgroup_dir).into_iter().filter(|&pid| is_stopped(pid));
    for pid in stopped.into_iter().filter(|&pid| pid > 0).chain(stragglers) {
        // SAFETY: kill(2) with SIGCONT on a task chaos stopped (or of the target cgroup).
        unsafe { libc::kill(pid, libc::SIGCONT) };
    }
    ExitCode::SUCCESS
}

/// Whether a process is stopped by a signal (state T in /proc/PID/stat).
#[must_use]
pub fn is_stopped(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
        .unwrap_or(false)
}
