//! The holder of per-thread syscall delays, the controller's side: one `chaos __holder` process
//! per chaos process (process.rs), shared by all of its per-thread delays, told about each fault
//! when it starts and ends.
//!
//! Why a process of its own, not a thread of chaos: a traced thread that gets any signal, starts
//! a thread or exits waits for its tracer. A tracer thread inside chaos would stop with chaos (a
//! Ctrl-Z, a `kill -STOP`, a debugger), and so would every target thread that got a signal
//! meanwhile. The holder runs in its own session, does nothing else, and is the guard of what it
//! holds: when chaos dies its pipe closes and it lets everything go at once. If the holder dies,
//! the kernel detaches its tracees, and chaos starts another one for the faults still running.
//!
//! Why one holder for the process: a thread has one tracer, and one chaos process may run
//! several delays on the same threads (two `[[fault]]`s of one experiment, a daemon's experiments
//! on nested cgroups). One holder serves them all, and holds a thread for the longest of the
//! delays that fired on its call.
//!
//! Why here in `os`, beside the guard and the resumer: it is their per-thread counterpart, kernel
//! plumbing that knows nothing of faults (a cgroup, a delay, two map descriptors), and the
//! engine starts it as it attaches a program that stops tasks, as it starts them.
//!
//! The holder takes each fault's `HELD_THREADS` map and stop-event ring buffer from chaos with
//! pidfd_getfd(2) (Linux 5.6+), by descriptor number: the fault's maps stay chaos's own.
use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};

pub(crate) mod process;

/// What chaos asks of the holder, one JSON line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    /// Seize the threads of `cgroup_dir` and hold the ones this fault's program signals.
    Add { id: u64, cgroup_dir: PathBuf, delay_ns: u64, jitter_ns: u64, held_fd: RawFd, events_fd: RawFd },
    /// The fault is disarmed: resume what it holds, let go of what no other fault needs.
    Remove { id: u64 },
}

/// The holder's answers, one JSON line each, in the order of the requests.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ready,
    Added { id: u64, seized: Seized },
    Refused { id: u64, reason: String },
    Removed { id: u64, stats: HoldStats },
}

/// What the holder seized for a fault as it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seized {
    pub processes: u32,
    pub threads: u32,
    /// How long seizing them took.
    pub seize_ns: u64,
    /// Processes left out, and why (they exited meanwhile, or another tracer holds them).
    pub skipped: Vec<String>,
}

/// What a fault's delays did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HoldStats {
    /// Calls held on their own thread.
    pub held: u64,
    /// Calls that stopped their whole process (a process that joined the target during the
    /// fault, held whole for that one call before it was seized).
    pub whole_process: u64,
    /// How late each thread was resumed against its due time, in ns (the first 100 000).
    pub lateness_ns: Vec<u64>,
}

impl HoldStats {
    fn record(&mut self, late_ns: u64) {
        self.held += 1;
        if self.lateness_ns.len() < 100_000 {
            self.lateness_ns.push(late_ns);
        }
    }
}

/// Why the holder could not take a fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HolderError {
    #[error("starting the holder of delayed threads (chaos __holder): {0}")]
    Start(#[source] io::Error),
    #[error("the holder of delayed threads: {0}")]
    Refused(String),
    #[error("the holder of delayed threads stopped answering: {0}")]
    Gone(String),
}

/// Where Yama says who may trace whom (0 to 3; 3: nobody, not even root).
const YAMA_PTRACE_SCOPE: &str = "/proc/sys/kernel/yama/ptrace_scope";

/// CAP_SYS_PTRACE (linux/capability.h): seizing threads of other users' processes, and any
/// under Yama's restricted scopes.
const CAP_SYS_PTRACE: u32 = 19;

/// Whether the threads of `cgroup_dir`'s processes can be held here, or why not (before
/// anything is attached: the holder checks again as it seizes them).
pub(crate) fn can_hold(cgroup_dir: &Path) -> Result<(), String> {
    let alternative = "--scope process stops the whole process instead, which needs no tracing";
    if let Ok(scope) = std::fs::read_to_string(YAMA_PTRACE_SCOPE)
        && scope.trim() == "3"
    {
        return Err(format!(
            "{YAMA_PTRACE_SCOPE} is 3: Yama lets no process trace another, so chaos cannot hold one thread; \
             {alternative}"
        ));
    }
    let capabilities = crate::os::sys::effective_capabilities().unwrap_or(0);
    if capabilities & (1 << CAP_SYS_PTRACE) == 0 {
        return Err(format!(
            "holding one thread needs CAP_SYS_PTRACE (chaos traces the target's threads), which chaos lacks: run it \
             as root or give it CAP_SYS_PTRACE; {alternative}"
        ));
    }
    for pid in crate::os::cgroup::pids_below(cgroup_dir) {
        for tid in process::threads_of(pid) {
            let tracer = crate::os::ptrace::tracer_of(tid);
            if tracer != 0 {
                return Err(traced_refusal(pid, tracer));
            }
        }
    }
    Ok(())
}

/// `doctor`'s words for per-thread delays here: whether chaos may trace (Yama, CAP_SYS_PTRACE).
#[must_use]
pub(crate) fn tracing_words() -> String {
    let yama = std::fs::read_to_string(YAMA_PTRACE_SCOPE)
        .map_or_else(|_| "no Yama".to_owned(), |scope| format!("Yama ptrace_scope {}", scope.trim()));
    let capable = crate::os::sys::effective_capabilities().unwrap_or(0) & (1 << CAP_SYS_PTRACE) != 0;
    let verdict = if std::fs::read_to_string(YAMA_PTRACE_SCOPE).is_ok_and(|s| s.trim() == "3") || !capable {
        "per thread: not available here, --scope process only"
    } else {
        "per thread: available"
    };
    format!("; {verdict} ({yama}, CAP_SYS_PTRACE {})", if capable { "yes" } else { "no" })
}

/// Why a target traced by someone else is refused.
fn traced_refusal(pid: i32, tracer: i32) -> String {
    format!(
        "process {pid} ({}) of the target is traced by process {tracer} ({}), and a thread has one tracer: \
         end that trace, or use --scope process (which stops the whole process and needs no tracing)",
        process::command_of(pid),
        process::command_of(tracer)
    )
}

/// How long chaos waits for an answer: seizing thousands of threads takes milliseconds, under
/// emulation seconds.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// Holders started again after one died, at most, for the life of chaos.
const RESTARTS: u32 = 3;

/// A fault the holder serves; [`HeldFault::finish`] (or dropping it) ends it.
#[derive(Debug)]
pub(crate) struct HeldFault {
    id: u64,
    finished: bool,
}

/// What the holder needs to know of a fault, kept to tell a new holder if one dies.
#[derive(Clone, Debug)]
struct Registration {
    id: u64,
    cgroup_dir: PathBuf,
    delay_ns: u64,
    jitter_ns: u64,
    held_fd: RawFd,
    events_fd: RawFd,
}

impl Registration {
    fn request(&self) -> Request {
        Request::Add {
            id: self.id,
            cgroup_dir: self.cgroup_dir.clone(),
            delay_ns: self.delay_ns,
            jitter_ns: self.jitter_ns,
            held_fd: self.held_fd,
            events_fd: self.events_fd,
        }
    }
}

/// The running holder.
struct HolderProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its answers; `None` once its stdout closed.
    replies: mpsc::Receiver<Option<Reply>>,
    registered: Vec<Registration>,
}

static HOLDER: Mutex<Option<HolderProcess>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static RESTARTED: AtomicU64 = AtomicU64::new(0);

impl HeldFault {
    /// Has the process's holder (started now if there is none) seize the threads of
    /// `cgroup_dir` and hold those the fault's program signals for `delay` (± `jitter`).
    /// `held` and `events` are the fault's `HELD_THREADS` map and `STOP_EVENTS` ring buffer,
    /// which must stay open until [`HeldFault::finish`].
    pub(crate) fn start(
        cgroup_dir: &Path,
        delay: Duration,
        jitter: Duration,
        held: BorrowedFd<'_>,
        events: BorrowedFd<'_>,
    ) -> Result<(Self, Seized), HolderError> {
        let registration = Registration {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cgroup_dir: cgroup_dir.to_path_buf(),
            delay_ns: u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX),
            jitter_ns: u64::try_from(jitter.as_nanos()).unwrap_or(0),
            held_fd: held.as_fd().as_raw_fd(),
            events_fd: events.as_fd().as_raw_fd(),
        };
        let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
        if holder.is_none() {
            *holder = Some(HolderProcess::spawn()?);
        }
        let running = holder.as_mut().expect("just started");
        match running.add(&registration) {
            Ok(seized) => {
                running.registered.push(registration.clone());
                Ok((Self { id: registration.id, finished: false }, seized))
            }
            Err(err) => {
                if running.registered.is_empty()
                    && let Some(mut idle) = holder.take()
                {
                    // No fault of this process needs it: it exits as its pipe closes.
                    drop(idle.stdin.take());
                    let _ = idle.child.wait();
                }
                Err(err)
            }
        }
    }

    /// Ends the fault: the holder resumes what it holds for it (disarm the fault first, so that
    /// nothing new is signalled), and exits with the process's last fault.
    pub(crate) fn finish(mut self) -> Result<HoldStats, HolderError> {
        self.end()
    }

    fn end(&mut self) -> Result<HoldStats, HolderError> {
        if std::mem::replace(&mut self.finished, true) {
            return Ok(HoldStats::default());
        }
        let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(running) = holder.as_mut() else {
            return Err(HolderError::Gone("it had already exited".into()));
        };
        running.registered.retain(|r| r.id != self.id);
        let stats = running.remove(self.id);
        if running.registered.is_empty() {
            // Its last fault: closing its pipe lets it exit, and the kernel detaches everything.
            if let Some(mut last) = holder.take() {
                drop(last.stdin.take());
                let _ = last.child.wait();
            }
        }
        stats
    }
}

impl Drop for HeldFault {
    fn drop(&mut self) {
        if let Err(err) = self.end() {
            tracing::warn!("{err}");
        }
    }
}

impl HolderProcess {
    /// Starts `chaos __holder` in its own session and waits until it is ready.
    fn spawn() -> Result<Self, HolderError> {
        let mount = crate::os::cgroup::CgroupFs::discover().map_err(|e| HolderError::Start(io::Error::other(e)))?;
        let mut command = Command::new(std::env::current_exe().map_err(HolderError::Start)?);
        command.arg("__holder").arg(mount.mount()).stdin(Stdio::piped()).stdout(Stdio::piped());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(HolderError::Start)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| HolderError::Start(io::Error::other("no stdout")))?;
        let (send, replies) = mpsc::channel();
        let pid = child.id();
        std::thread::Builder::new()
            .name("chaos-holder-replies".into())
            .spawn(move || read_replies(stdout, &send, pid))
            .map_err(HolderError::Start)?;
        let mut holder = Self { child, stdin, replies, registered: Vec::new() };
        match holder.answer()? {
            Reply::Ready => Ok(holder),
            other => Err(HolderError::Gone(format!("it said {other:?} instead of being ready"))),
        }
    }

    fn ask(&mut self, request: &Request) -> Result<Reply, HolderError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| HolderError::Gone("its pipe is closed".into()))?;
        let mut line = serde_json::to_vec(request).map_err(|e| HolderError::Gone(e.to_string()))?;
        line.push(b'\n');
        stdin.write_all(&line).and_then(|()| stdin.flush()).map_err(|e| HolderError::Gone(e.to_string()))?;
        self.answer()
    }

    fn answer(&mut self) -> Result<Reply, HolderError> {
        match self.replies.recv_timeout(ANSWER_WITHIN) {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => Err(HolderError::Gone("it exited".into())),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(HolderError::Gone(format!("no answer in {} s", ANSWER_WITHIN.as_secs())))
            }
        }
    }

    fn add(&mut self, registration: &Registration) -> Result<Seized, HolderError> {
        match self.ask(&registration.request())? {
            Reply::Added { id, seized } if id == registration.id => Ok(seized),
            Reply::Refused { reason, .. } => Err(HolderError::Refused(reason)),
            other => Err(HolderError::Gone(format!("it answered {other:?} to an add"))),
        }
    }

    fn remove(&mut self, id: u64) -> Result<HoldStats, HolderError> {
        match self.ask(&Request::Remove { id })? {
            Reply::Removed { stats, .. } => Ok(stats),
            other => Err(HolderError::Gone(format!("it answered {other:?} to a remove"))),
        }
    }
}

/// Forwards the holder's answers; when it dies while faults still need it, continues what it
/// stopped and starts another for them.
fn read_replies(stdout: std::process::ChildStdout, send: &mpsc::Sender<Option<Reply>>, pid: u32) {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        match serde_json::from_str(&line) {
            Ok(reply) => {
                if send.send(Some(reply)).is_err() {
                    return;
                }
            }
            Err(err) => tracing::warn!("the holder of delayed threads said something unreadable ({err}): {line}"),
        }
    }
    // Wake whoever waits for an answer first: it holds the lock taken below.
    let _ = send.send(None);
    let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(dead) = holder.as_mut().filter(|h| h.child.id() == pid) else { return };
    let registered = std::mem::take(&mut dead.registered);
    let _ = dead.child.wait();
    *holder = None;
    if registered.is_empty() {
        return;
    }
    // The kernel detached its threads; the processes it had stopped whole are still stopped.
    for registration in &registered {
        crate::os::guard::continue_stopped(&registration.cgroup_dir);
    }
    if RESTARTED.fetch_add(1, Ordering::Relaxed) >= u64::from(RESTARTS) {
        tracing::error!(
            "the holder of delayed threads died again; {} per-thread delays hold nothing more (the kernel still \
             signals their threads, which ignore SIGURG unless they handle it)",
            registered.len()
        );
        return;
    }
    tracing::error!("the holder of delayed threads died; starting another for {} delays", registered.len());
    match HolderProcess::spawn() {
        Ok(mut fresh) => {
            for registration in registered {
                match fresh.add(&registration) {
                    Ok(_) => fresh.registered.push(registration),
                    Err(err) => tracing::error!("the new holder of delayed threads: {err}"),
                }
            }
            *holder = Some(fresh);
        }
        Err(err) => tracing::error!("{err}"),
    }
}
