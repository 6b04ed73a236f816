//! The guard of `syscall delay` and `proc pause`: a small process that makes sure no task stays
//! stopped and no cgroup stays frozen.
//!
//! The controller stops tasks (SIGSTOP, from the kernel) and resumes them (SIGCONT) when their
//! delay is over. If the controller dies in between, even by SIGKILL, nothing would resume
//! them. So before anything is attached, chaos starts `chaos __guard <cgroup dir>` in its own
//! session (terminal signals do not reach it), tells it every task it stops and resumes, and
//! keeps the write end of its stdin. When that pipe closes (the controller exited, crashed or
//! was killed) the guard resumes every task still recorded as stopped, then every stopped
//! process of the target cgroup (a task stopped just before the controller died may not have
//! been recorded yet), and exits.
//!
//! A controller that is stopped rather than dead keeps the pipe open, so the guard also knows
//! when the fault's time box is over (its kernel deadline plus the longest delay, plus a
//! margin): then it resumes everything whatever the controller is doing. After the deadline the
//! kernel stops nobody new, so no task stays stopped past the time box. The controller sends
//! the time box again whenever the fault's deadline changes (an experiment arms a fault it
//! attached inert).
//!
//! `proc pause` uses the same guard for the cgroup freezer: the controller says `freeze` before
//! it writes `cgroup.freeze` (so a controller killed in between still leaves a guard that knows)
//! and `thaw` after it thawed; the guard thaws the cgroup when the pipe closes or the time box
//! is over while a freeze is recorded. A pause never targets a cgroup that holds chaos, and so
//! the guard (which runs in chaos's cgroup), so the guard itself is never frozen.
//!
//! `limit` faults use it for the cgroup files they change: the controller says `limit` with the
//! file, the value it is about to write and the previous one, before it writes; and `unlimit`
//! once it has put the previous value back. When the pipe closes or the time box is over, the
//! guard puts back every previous value whose file still holds what the controller wrote
//! (`cgroup_files::restore`: a value someone else set since is left alone).
use std::{
    collections::BTreeSet,
    fs,
    io::{self, BufRead as _, Write as _},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, ChildStdin, Command, ExitCode, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::os::{
    cgroup::pids_below,
    cgroup_files::{self, Knob},
    sys,
};

/// Slack after the time box before the guard resumes everything on its own.
const MARGIN_NS: u64 = 200_000_000;

/// How often the guard looks for a dying controller while the target is frozen.
const EXIT_POLL: Duration = Duration::from_millis(2);

/// How often it looks while it holds only limits: they must be back within a second of the
/// controller's death (a loaded guest took 1.04 s with a look every 200 ms), and a limit may be
/// held for an hour, so a lighter look than a freeze's: one read of an open /proc file.
const EXIT_POLL_LIMITS: Duration = Duration::from_millis(50);

/// A `limit` line: a file the controller is about to change, what it writes, what was there.
#[derive(serde::Serialize, serde::Deserialize)]
struct Limit {
    knob: Knob,
    written: String,
    previous: String,
}

/// The controller's side: the pipe to a running guard.
pub struct Guard {
    stdin: Option<ChildStdin>,
    child: Child,
}

impl Guard {
    /// Starts a guard for the tasks of `cgroup_dir`; no task may stay stopped past
    /// `time_box_end_ns` (CLOCK_MONOTONIC: the fault's deadline plus its longest delay). None
    /// for a fault attached inert: the kernel stops nobody until it is armed, and arming sends
    /// the time box ([`Guard::time_box`]).
    pub fn spawn(cgroup_dir: &Path, time_box_end_ns: Option<u64>) -> io::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("__guard")
            .arg(cgroup_dir)
            .arg(time_box_end_ns.map_or(0, |end| end.saturating_add(MARGIN_NS)).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
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
        // Wait until the guard is watching: starting a large binary takes a while (hundreds of
        // ms under emulation), and a controller that died before then would leave the target
        // stopped or frozen that long.
        let mut ready = String::new();
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("the guard has no stdout"))?;
        io::BufReader::new(stdout).read_line(&mut ready)?;
        if ready.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the guard exited before it was ready"));
        }
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

    /// The controller is about to freeze the cgroup: thaw it if the controller goes away.
    pub fn freezing(&mut self) {
        self.tell("freeze");
    }

    /// The controller thawed the cgroup.
    pub fn thawed(&mut self) {
        self.tell("thaw");
    }

    /// The controller is about to write `written` into `knob`, which holds `previous` (the
    /// value to put back if the controller goes away); sent again for each new value.
    pub fn limiting(&mut self, knob: &Knob, written: &str, previous: &str) {
        let limit = Limit { knob: knob.clone(), written: written.to_owned(), previous: previous.to_owned() };
        self.tell(&format!("limit {}", serde_json::to_string(&limit).expect("a limit serializes")));
    }

    /// The controller put `knob`'s previous value back (or left it to whoever changed it).
    pub fn unlimited(&mut self, knob: &Knob) {
        self.tell(&format!("unlimit {}", serde_json::to_string(knob).expect("a knob serializes")));
    }

    /// The fault's time box moved: no task may stay stopped past `time_box_end_ns`.
    pub fn time_box(&mut self, time_box_end_ns: u64) {
        self.tell(&format!("until {}", time_box_end_ns.saturating_add(MARGIN_NS)));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // EOF: the guard resumes whatever is left and exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `chaos __guard <cgroup dir> <resume-all-at ns, 0 for none yet>`: the guard's side.
pub fn run(cgroup_dir: &Path, mut resume_all_at_ns: u64) -> ExitCode {
    // Only the pipe (or the time box) ends the guard's watch: Ctrl-C, SIGTERM or a hang-up
    // aimed at chaos must not.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: ignoring a signal.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let (lines, from_controller) = mpsc::channel();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Tell the controller the watch has begun: it waits for this before attaching anything.
    // (Its end of the pipe closes then; nothing is written to stdout after this.)
    println!("ready");
    let _ = io::stdout().flush();
    let mut stopped = BTreeSet::new();
    let mut frozen = false;
    let mut limits = Limits::default();
    // No time box yet: the fault was attached inert, and arming it sends one. (Treating that as
    // a time box long over would resume everything at this process's first look, which in a
    // slow start can come after the fault was armed and legitimately stopped a task.)
    let mut time_box_over = resume_all_at_ns == 0;
    // SAFETY: getppid has no preconditions. The guard is the controller's child until it dies.
    let controller = Controller::watch(unsafe { libc::getppid() });
    loop {
        let mut wait = if time_box_over {
            Duration::from_secs(3600)
        } else {
            Duration::from_nanos(resume_all_at_ns.saturating_sub(sys::monotonic_now_ns()))
        };
        if frozen {
            // A dying controller closes the pipe only once the kernel has torn its memory down,
            // which takes a while for a large process (hundreds of ms under emulation): while the
            // target is frozen, also look for the controller starting to exit.
            wait = wait.min(EXIT_POLL);
        } else if !limits.is_empty() {
            wait = wait.min(EXIT_POLL_LIMITS);
        }
        match from_controller.recv_timeout(wait) {
            Ok(line) if line == "freeze" => frozen = true,
            Ok(line) if line == "thaw" => frozen = false,
            Ok(line) => match line.split_once(' ') {
                Some(("limit", json)) => limits.hold(json),
                Some(("unlimit", json)) => limits.release(json),
                Some(("stop", pid)) => {
                    stopped.insert(pid.trim().parse::<i32>().unwrap_or(0));
                }
                Some(("cont", pid)) => {
                    stopped.remove(&pid.trim().parse::<i32>().unwrap_or(0));
                }
                Some(("until", at)) => {
                    resume_all_at_ns = at.trim().parse().unwrap_or(resume_all_at_ns);
                    time_box_over = false;
                }
                _ => {}
            },
            Err(mpsc::RecvTimeoutError::Timeout) if (frozen || !limits.is_empty()) && controller.exiting() => {
                thaw_if_frozen(cgroup_dir, &mut frozen);
                limits.restore_all();
            }
            Err(mpsc::RecvTimeoutError::Timeout) if !time_box_over && sys::monotonic_now_ns() >= resume_all_at_ns => {
                // The controller is alive but not doing its job (stopped?): end the stops now.
                resume_all(cgroup_dir, &mut stopped);
                thaw_if_frozen(cgroup_dir, &mut frozen);
                limits.restore_all();
                time_box_over = true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Thaw first: a frozen task cannot act on SIGCONT until it is thawed anyway.
    thaw_if_frozen(cgroup_dir, &mut frozen);
    resume_all(cgroup_dir, &mut stopped);
    limits.restore_all();
    ExitCode::SUCCESS
}

/// The files the controller has changed, each with the values it wrote (the last two: while
/// it changes a value, the file may still hold the one before) and the value to put back.
#[derive(Default)]
struct Limits(Vec<(Knob, Vec<String>, String)>);

impl Limits {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn hold(&mut self, json: &str) {
        let Ok(limit) = serde_json::from_str::<Limit>(json) else { return };
        match self.0.iter_mut().find(|(knob, ..)| *knob == limit.knob) {
            Some((_, written, _)) => {
                written.push(limit.written);
                if written.len() > 2 {
                    written.remove(0);
                }
            }
            None => self.0.push((limit.knob, vec![limit.written], limit.previous)),
        }
    }

    fn release(&mut self, json: &str) {
        if let Ok(knob) = serde_json::from_str::<Knob>(json) {
            self.0.retain(|(k, ..)| *k != knob);
        }
    }

    /// Puts every previous value back, the last change first.
    fn restore_all(&mut self) {
        for (knob, written, previous) in std::mem::take(&mut self.0).into_iter().rev() {
            let _ = cgroup_files::restore(&knob, &written, &previous);
        }
    }
}

/// The controller's /proc/PID/stat, open, so that each look is one read.
struct Controller(Option<fs::File>);

impl Controller {
    fn watch(pid: i32) -> Self {
        Self(fs::File::open(format!("/proc/{pid}/stat")).ok())
    }

    /// Whether the controller is gone or exiting (PF_EXITING, set as the kernel starts
    /// `do_exit`, in the flags field of /proc/PID/stat; a reaped process's file reads ESRCH).
    fn exiting(&self) -> bool {
        const PF_EXITING: u64 = 0x4;
        let mut buffer = [0u8; 1024];
        let Some(read) = self.0.as_ref().and_then(|f| std::os::unix::fs::FileExt::read_at(f, &mut buffer, 0).ok())
        else {
            return true;
        };
        // The flags are the 9th field, the 7th after the command name's closing parenthesis.
        let stat = &buffer[..read];
        let after_comm = stat.iter().rposition(|&b| b == b')').map_or(stat, |at| &stat[at + 1..]);
        let flags = after_comm
            .split(|&b| b == b' ')
            .filter(|field| !field.is_empty())
            .nth(6)
            .and_then(|field| std::str::from_utf8(field).ok()?.parse::<u64>().ok());
        flags.is_none_or(|flags| flags & PF_EXITING != 0)
    }
}

fn thaw_if_frozen(cgroup_dir: &Path, frozen: &mut bool) {
    if std::mem::take(frozen) {
        let _ = crate::os::freezer::thaw(cgroup_dir);
    }
}

fn resume_all(cgroup_dir: &Path, stopped: &mut BTreeSet<i32>) {
    let stragglers = pids_below(cgroup_dir).into_iter().filter(|&pid| is_stopped(pid));
    for pid in std::mem::take(stopped).into_iter().filter(|&pid| pid > 0).chain(stragglers) {
        // SAFETY: kill(2) with SIGCONT on a task chaos stopped (or of the target cgroup).
        unsafe { libc::kill(pid, libc::SIGCONT) };
    }
}

/// Whether a process is stopped by a signal (state T in /proc/PID/stat).
#[must_use]
pub fn is_stopped(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
        .unwrap_or(false)
}
