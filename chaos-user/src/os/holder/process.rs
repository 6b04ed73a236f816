//! `chaos __holder`: the process that holds the threads of per-thread syscall delays.
//!
//! It seizes every thread of the targets' processes (PTRACE_SEIZE: nothing stops, no syscall is
//! traced) and lists them in each fault's `HELD_THREADS` map. When a fault's program decides a
//! call is delayed, it marks the thread and sends it SIGURG; the thread alone stops in
//! signal-delivery-stop, this process keeps it there for the delay and resumes it with the signal
//! suppressed. Everything else a tracee does passes through unchanged: signals from elsewhere
//! are delivered as they came (a SIGURG the program did not mark too), a user's SIGSTOP stops the
//! process (PTRACE_LISTEN keeps it stopped until SIGCONT), threads and processes the targets
//! start are traced from their first instruction (PTRACE_O_TRACECLONE, FORK, VFORK), and exec
//! is followed (the execing thread takes the process's id).
//!
//! A process that joins a target later is not seized yet: the program stops it whole for its
//! first delayed call (SIGSTOP, with an event in the fault's ring buffer), and this process seizes
//! it then and sends SIGCONT when the delay is over. A process another tracer holds (a debugger)
//! is left to that mechanism, and said so on stderr.
//!
//! One thread does everything (ptrace is per tracer thread), waiting with ppoll on the
//! controller's pipe, a signalfd for SIGCHLD (every tracee stop), the faults' ring buffers and the
//! next resume time. Its own session keeps terminal signals away. When the controller's pipe
//! closes (it exited, crashed or was killed) it resumes every held thread and stopped process at
//! once and exits, and the kernel detaches every tracee. If it is killed itself, the kernel
//! detaches them too: a held thread then gets its pending SIGURG, which it ignores unless it
//! handles SIGURG.
use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::{self, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::{Path, PathBuf},
    process::ExitCode,
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, RingBuf};
use chaos_common::{StopEvent, held};
use libc::pid_t;

use super::{Reply, Request, Seized};
use crate::os::{
    cgroup::pids_below,
    ptrace::{self, Stop},
    sys,
};

/// How often the holder looks for a dying controller while it holds something.
const EXIT_POLL_NS: u64 = 5_000_000;

/// One fault the holder serves.
struct Fault {
    id: u64,
    /// The target cgroup's path below the cgroup2 mount (`/app/db`), for membership.
    cgroup: String,
    delay_ns: u64,
    jitter_ns: u64,
    held: BpfHashMap<MapData, u32, u32>,
    events: RingBuf<MapData>,
    stats: super::HoldStats,
}

/// A seized thread.
struct Thread {
    /// Its cgroup's path below the mount, when it was seized.
    cgroup: String,
    /// Held until this time (CLOCK_MONOTONIC ns), for this fault.
    hold: Option<(u64, u64)>,
    /// Being let go: detached at its next stop.
    detaching: bool,
}

/// A process the program stopped whole (SIGSTOP), resumed with SIGCONT at `due_ns`.
struct StoppedProcess {
    tgid: pid_t,
    due_ns: u64,
    fault: u64,
}

struct Holder {
    cgroup_mount: PathBuf,
    controller: pid_t,
    faults: Vec<Fault>,
    threads: HashMap<pid_t, Thread>,
    /// (due ns, tid) of every held thread.
    holds: BTreeSet<(u64, pid_t)>,
    stopped: Vec<StoppedProcess>,
    /// Processes left to another tracer, said once each.
    noted: BTreeSet<pid_t>,
    /// The `HELD_THREADS` maps of faults removed lately, until the time given: a thread its
    /// program signalled just before it was disarmed may stop after the fault is gone (at the
    /// end of a long call), and that SIGURG is suppressed rather than passed on.
    retired: Vec<(u64, BpfHashMap<MapData, u32, u32>)>,
    input: Vec<u8>,
}

/// How long a removed fault's marks are honoured.
const RETIRED_FOR_NS: u64 = 30_000_000_000;

/// `chaos __holder <cgroup2 mount>`, started by the controller (`super::HolderProcess`).
pub(crate) fn run(cgroup_mount: &Path) -> ExitCode {
    match serve(cgroup_mount) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chaos: the holder of delayed threads failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cgroup_mount: &Path) -> io::Result<()> {
    // Only the pipe ends the holder's watch: terminal signals aimed at chaos must not.
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: ignoring a signal.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let sigchld = sigchld_fd()?;
    // SAFETY: prctl on this thread only: its sleeps end on time, not up to 50 us late.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
    // The lowest real-time priority: a delay is as precise as the holder is quick to see a
    // thread stop and to resume it on time, and on a busy machine a normal process waits
    // milliseconds for a CPU. It sleeps between events, and each costs it microseconds.
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sched_setscheduler on this process with a valid parameter.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) } != 0 {
        tracing::debug!("the holder stays at normal priority: {}", io::Error::last_os_error());
    }
    // SAFETY: fcntl on stdin, which this process owns.
    unsafe { libc::fcntl(0, libc::F_SETFL, libc::fcntl(0, libc::F_GETFL) | libc::O_NONBLOCK) };
    let mut holder = Holder {
        cgroup_mount: cgroup_mount.to_path_buf(),
        // SAFETY: getppid has no preconditions: the holder is the controller's child.
        controller: unsafe { libc::getppid() },
        faults: Vec::new(),
        threads: HashMap::new(),
        holds: BTreeSet::new(),
        stopped: Vec::new(),
        noted: BTreeSet::new(),
        retired: Vec::new(),
        input: Vec::new(),
    };
    reply(&Reply::Ready)?;
    loop {
        holder.wait(&sigchld);
        holder.take_stops();
        holder.take_stop_events();
        holder.resume_due();
        if !holder.take_requests()? || holder.controller_exiting() {
            break;
        }
    }
    holder.release_everything();
    Ok(())
}

/// SIGCHLD blocked and read from a signalfd: every tracee stop makes it readable, and nothing
/// between a look at waitpid and the wait can be missed (the signal stays pending).
fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset operations on a local; sigprocmask on this (only) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &raw const set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn reply(reply: &Reply) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, reply).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// A duplicate of the controller's descriptor `fd` (pidfd_getfd, Linux 5.6+).
fn controller_fd(controller: pid_t, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) returns a new descriptor, owned below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, controller, 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: pidfd_getfd(2) returns a new descriptor, owned below.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(dup as RawFd) })
}

/// The cgroup (v2, its path below the mount) of task `tid`.
fn cgroup_of(tid: pid_t) -> Option<String> {
    let cgroups = fs::read_to_string(format!("/proc/{tid}/cgroup")).ok()?;
    Some(cgroups.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_owned())
}

/// The threads of process `tgid`.
pub(super) fn threads_of(tgid: pid_t) -> Vec<pid_t> {
    fs::read_dir(format!("/proc/{tgid}/task"))
        .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The name of process `pid`, for messages.
pub(super) fn command_of(pid: pid_t) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(|_| "?".into(), |c| c.trim().to_owned())
}

/// Whether cgroup `inner` is `outer` or below it (paths below the mount).
fn within(inner: &str, outer: &str) -> bool {
    inner == outer || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/')) || outer == "/"
}

/// A delay with a uniform jitter of up to `jitter_ns` either way.
fn jittered(delay_ns: u64, jitter_ns: u64) -> u64 {
    if jitter_ns == 0 {
        return delay_ns;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom into a local buffer.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) };
    let offset = (u64::from_ne_bytes(bytes) % (2 * jitter_ns + 1)) as i64 - jitter_ns as i64;
    delay_ns.saturating_add_signed(offset)
}

impl Holder {
    /// Sleeps until a tracee changes state, the controller writes, a fault's program stops a
    /// process, or the next resume is due.
    fn wait(&self, sigchld: &OwnedFd) {
        let mut fds = vec![
            libc::pollfd { fd: sigchld.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 },
        ];
        fds.extend(self.faults.iter().map(|f| libc::pollfd {
            fd: f.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        let next =
            self.holds.first().map(|&(due, _)| due).into_iter().chain(self.stopped.iter().map(|s| s.due_ns)).min();
        let mut timeout_ns = next.map_or(1_000_000_000, |due| due.saturating_sub(sys::monotonic_now_ns()));
        if self.holding_any() {
            timeout_ns = timeout_ns.min(EXIT_POLL_NS);
        }
        let timeout = libc::timespec {
            tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: valid pollfd array and timespec.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &raw const timeout, std::ptr::null()) };
        if fds[0].revents & libc::POLLIN != 0 {
            // Empty the signalfd first: a stop after the waitpid loop below sets it again.
            let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>() * 16];
            // SAFETY: reading into a local buffer from our nonblocking signalfd.
            while unsafe { libc::read(sigchld.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) } > 0 {}
        }
    }

    fn holding_any(&self) -> bool {
        !self.holds.is_empty() || !self.stopped.is_empty()
    }

    /// Whether the controller has begun to exit while something is held. Its pipe closes only
    /// once the kernel has torn its memory down, which takes a while for a large process
    /// (hundreds of ms under emulation); the held threads should not wait for that.
    fn controller_exiting(&self) -> bool {
        self.holding_any() && crate::os::guard::is_exiting(self.controller)
    }

    /// Handles every tracee stop there is.
    fn take_stops(&mut self) {
        while let Ok(Some((tid, status))) = ptrace::next_change() {
            self.on_stop(tid, Stop::of(status));
        }
    }

    fn on_stop(&mut self, tid: pid_t, stop: Stop) {
        if stop == Stop::Gone {
            self.forget(tid);
            return;
        }
        if !self.threads.contains_key(&tid) {
            // A new task's first stop can come before its parent's clone event: the same welcome.
            self.welcome(tid);
        }
        let detaching = self.threads.get(&tid).is_some_and(|t| t.detaching);
        let signal = match stop {
            Stop::Signal(signal) if signal == held::SIGNAL as i32 && !detaching && self.hold(tid) => return,
            Stop::Signal(signal) => signal,
            _ => 0,
        };
        if detaching {
            let _ = ptrace::detach(tid, signal);
            self.threads.remove(&tid);
            return;
        }
        match stop {
            Stop::Group => {
                let _ = ptrace::listen(tid);
            }
            Stop::NewTask => {
                if let Ok(child) = ptrace::event_message(tid) {
                    self.welcome(child as pid_t);
                }
                let _ = ptrace::cont(tid, 0);
            }
            Stop::Exec => {
                // The execing thread now has the process's id; its former id is gone.
                if let Ok(former) = ptrace::event_message(tid)
                    && former as pid_t != tid
                {
                    self.forget(former as pid_t);
                }
                let _ = ptrace::cont(tid, 0);
            }
            Stop::Signal(_) | Stop::Trap | Stop::Other | Stop::Gone => {
                let _ = ptrace::cont(tid, signal);
            }
        }
    }

    /// A task traced from its birth (clone, fork, vfork: the kernel seized it): listed in the
    /// maps of the faults whose cgroup holds it before it runs.
    /// A task no fault needs (started by a thread being let go, or moved out of every target)
    /// is let go at its first stop.
    fn welcome(&mut self, tid: pid_t) {
        if self.threads.contains_key(&tid) {
            return;
        }
        // A task gone before its cgroup could be read reports its exit next.
        let cgroup = cgroup_of(tid).unwrap_or_default();
        let mut needed = false;
        for fault in &mut self.faults {
            if within(&cgroup, &fault.cgroup) {
                let _ = fault.held.insert(tid as u32, held::SEIZED, 0);
                needed = true;
            }
        }
        self.threads.insert(tid, Thread { cgroup, hold: None, detaching: !needed && !self.faults.is_empty() });
    }

    /// A thread is gone: out of every map, its hold dropped.
    fn forget(&mut self, tid: pid_t) {
        if let Some(thread) = self.threads.remove(&tid)
            && let Some((due, _)) = thread.hold
        {
            self.holds.remove(&(due, tid));
        }
        for fault in &mut self.faults {
            let _ = fault.held.remove(&(tid as u32));
        }
    }

    /// A SIGURG stop: if a fault's program marked the thread, hold it (the longest of the
    /// faults' delays, if two fired for one call) and say true; else the SIGURG is someone
    /// else's and goes on to the thread.
    fn hold(&mut self, tid: pid_t) -> bool {
        if !matches!(ptrace::signal_origin(tid), Ok((libc::SI_KERNEL, _))) {
            return false;
        }
        let now = sys::monotonic_now_ns();
        let mut chosen: Option<(u64, u64)> = None;
        for fault in &mut self.faults {
            if fault.held.get(&(tid as u32), 0).ok() == Some(held::SIGNALLED) {
                let _ = fault.held.insert(tid as u32, held::SEIZED, 0);
                let due = now.saturating_add(jittered(fault.delay_ns, fault.jitter_ns));
                if chosen.is_none_or(|(at, _)| due > at) {
                    chosen = Some((due, fault.id));
                }
            }
        }
        let Some((due, fault)) = chosen else {
            // Marked by a fault removed meanwhile: the signal is chaos's, not the program's to
            // get, and there is no delay left to serve.
            self.retired.retain(|(until, _)| *until > now);
            let mut retired_mark = false;
            for (_, map) in &mut self.retired {
                if map.get(&(tid as u32), 0).ok() == Some(held::SIGNALLED) {
                    let _ = map.remove(&(tid as u32));
                    retired_mark = true;
                }
            }
            if retired_mark {
                let _ = ptrace::cont(tid, 0);
            }
            return retired_mark;
        };
        if let Some(thread) = self.threads.get_mut(&tid) {
            thread.hold = Some((due, fault));
            self.holds.insert((due, tid));
        }
        true
    }

    /// Processes the faults' programs stopped whole (not seized yet): resumed at their due time,
    /// and seized now, so their next delayed calls hold one thread.
    fn take_stop_events(&mut self) {
        let mut stops = Vec::new();
        for fault in &mut self.faults {
            while let Some(item) = fault.events.next() {
                if item.len() < std::mem::size_of::<StopEvent>() {
                    continue;
                }
                // SAFETY: the program writes whole StopEvents; read_unaligned copies it out.
                let event: StopEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                let due_ns = event.stopped_at_ns.saturating_add(jittered(fault.delay_ns, fault.jitter_ns));
                stops.push(StoppedProcess { tgid: event.tgid as pid_t, due_ns, fault: fault.id });
            }
        }
        for stop in stops {
            if let Some(fault) = self.faults.iter_mut().find(|f| f.id == stop.fault) {
                fault.stats.whole_process += 1;
            }
            let fault = stop.fault;
            let tgid = stop.tgid;
            self.stopped.push(stop);
            if let Err(refusal) = self.seize_process(tgid, &[fault])
                && self.noted.insert(tgid)
            {
                eprintln!(
                    "chaos: note: process {tgid} ({}) joined the target and cannot be held per thread ({refusal}): \
                     its delayed calls stop the whole process",
                    command_of(tgid)
                );
            }
        }
    }

    /// Resumes what is due.
    fn resume_due(&mut self) {
        let now = sys::monotonic_now_ns();
        while let Some(&(due, tid)) = self.holds.first() {
            if due > now {
                break;
            }
            self.holds.pop_first();
            let fault = self.threads.get_mut(&tid).and_then(|t| t.hold.take()).map(|(_, fault)| fault);
            self.resume(tid);
            let late = sys::monotonic_now_ns().saturating_sub(due);
            if let Some(fault) = self.faults.iter_mut().find(|f| Some(f.id) == fault) {
                fault.stats.record(late);
            }
        }
        let (due, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.stopped).into_iter().partition(|s| s.due_ns <= now);
        self.stopped = waiting;
        for stop in due {
            // SAFETY: kill(2) with SIGCONT on a process a fault's program stopped.
            unsafe { libc::kill(stop.tgid, libc::SIGCONT) };
        }
    }

    /// Resumes a held thread with its signal suppressed; one no fault needs any more is let go.
    fn resume(&mut self, tid: pid_t) {
        if self.threads.get(&tid).is_some_and(|t| t.detaching) {
            let _ = ptrace::detach(tid, 0);
            self.threads.remove(&tid);
        } else {
            let _ = ptrace::cont(tid, 0);
        }
    }

    /// Reads the controller's requests; false once its pipe has closed.
    fn take_requests(&mut self) -> io::Result<bool> {
        let mut buffer = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer from our nonblocking stdin.
            let n = unsafe { libc::read(0, buffer.as_mut_ptr().cast(), buffer.len()) };
            match n {
                0 => return Ok(false),
                n if n > 0 => self.input.extend_from_slice(&buffer[..n as usize]),
                _ => {
                    let err = io::Error::last_os_error();
                    match err.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => {}
                        _ => return Err(err),
                    }
                }
            }
        }
        while let Some(end) = self.input.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.input.drain(..=end).collect();
            let request: Request = serde_json::from_slice(&line).map_err(io::Error::other)?;
            let answer = match request {
                Request::Add { id, cgroup_dir, delay_ns, jitter_ns, held_fd, events_fd } => {
                    self.add(id, cgroup_dir, delay_ns, jitter_ns, held_fd, events_fd)
                }
                Request::Remove { id } => self.remove(id),
            };
            reply(&answer)?;
        }
        Ok(true)
    }

    fn add(
        &mut self,
        id: u64,
        cgroup_dir: PathBuf,
        delay_ns: u64,
        jitter_ns: u64,
        held_fd: RawFd,
        events_fd: RawFd,
    ) -> Reply {
        let started = sys::monotonic_now_ns();
        let refused = |reason: String| Reply::Refused { id, reason };
        let map = |fd: RawFd| -> io::Result<Map> {
            let data = MapData::from_fd(controller_fd(self.controller, fd)?).map_err(io::Error::other)?;
            Map::from_map_data(data).map_err(io::Error::other)
        };
        let (held, events) = match (map(held_fd), map(events_fd)) {
            (Ok(held), Ok(events)) => match (BpfHashMap::try_from(held), RingBuf::try_from(events)) {
                (Ok(held), Ok(events)) => (held, events),
                (Err(err), _) | (_, Err(err)) => return refused(format!("the fault's maps: {err}")),
            },
            (Err(err), _) | (_, Err(err)) => {
                return refused(format!("taking the fault's maps from chaos (pidfd_getfd, Linux 5.6+): {err}"));
            }
        };
        let Ok(cgroup) = cgroup_dir.strip_prefix(&self.cgroup_mount) else {
            return refused(format!("{} is not below {}", cgroup_dir.display(), self.cgroup_mount.display()));
        };
        let cgroup = format!("/{}", cgroup.display()).replace("//", "/");
        // Another tracer (a debugger, strace) on a target: refused before anything is seized.
        let processes: Vec<pid_t> = self.processes_of(&cgroup_dir);
        for &pid in &processes {
            for tid in threads_of(pid) {
                let tracer = ptrace::tracer_of(tid);
                // SAFETY: getpid has no preconditions.
                if tracer != 0 && tracer != unsafe { libc::getpid() } {
                    return refused(super::traced_refusal(pid, tracer));
                }
            }
        }
        self.faults.push(Fault { id, cgroup, delay_ns, jitter_ns, held, events, stats: super::HoldStats::default() });
        let mut seized = Seized::default();
        for pid in processes {
            match self.seize_process(pid, &[id]) {
                Ok(threads) => {
                    seized.processes += 1;
                    seized.threads += threads;
                }
                Err(refusal) => seized.skipped.push(format!("process {pid} ({}): {refusal}", command_of(pid))),
            }
        }
        seized.seize_ns = sys::monotonic_now_ns().saturating_sub(started);
        Reply::Added { id, seized }
    }

    /// The target's processes, less the holder and its controller.
    fn processes_of(&self, cgroup_dir: &Path) -> Vec<pid_t> {
        // SAFETY: getpid has no preconditions.
        let own = unsafe { libc::getpid() };
        pids_below(cgroup_dir).into_iter().filter(|&pid| pid != own && pid != self.controller).collect()
    }

    /// Seizes every thread of process `tgid` (again and again until no new one appears: a
    /// thread not yet seized may start others meanwhile) and lists them in the maps of `faults`
    /// and of every other fault whose cgroup holds them. The number of threads, or why not.
    fn seize_process(&mut self, tgid: pid_t, faults: &[u64]) -> Result<u32, String> {
        let mut seen = 0;
        loop {
            let mut new = 0;
            for tid in threads_of(tgid) {
                if let Some(thread) = self.threads.get_mut(&tid) {
                    thread.detaching = false;
                } else {
                    match ptrace::seize(tid) {
                        Ok(()) => {
                            new += 1;
                            self.welcome(tid);
                        }
                        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => continue,
                        Err(err) => {
                            let tracer = ptrace::tracer_of(tid);
                            return Err(if tracer != 0 {
                                format!("traced by process {tracer} ({})", command_of(tracer))
                            } else {
                                format!("PTRACE_SEIZE of thread {tid} failed: {err}")
                            });
                        }
                    }
                }
                for fault in self.faults.iter_mut().filter(|f| faults.contains(&f.id)) {
                    let _ = fault.held.insert(tid as u32, held::SEIZED, 0);
                }
                seen += 1;
            }
            if new == 0 {
                return Ok(seen);
            }
            seen = 0;
        }
    }

    /// The fault is over (its program disarmed): its held threads and stopped processes
    /// resumed now, and the threads no other fault needs let go.
    fn remove(&mut self, id: u64) -> Reply {
        let Some(at) = self.faults.iter().position(|f| f.id == id) else {
            return Reply::Removed { id, stats: super::HoldStats::default() };
        };
        let fault = self.faults.remove(at);
        let held: Vec<pid_t> =
            self.threads.iter().filter(|(_, t)| t.hold.is_some_and(|(_, f)| f == id)).map(|(&tid, _)| tid).collect();
        let needed = |thread: &Thread, faults: &[Fault]| faults.iter().any(|f| within(&thread.cgroup, &f.cgroup));
        let last = self.faults.is_empty();
        for thread in self.threads.values_mut() {
            // With no fault left the holder exits when the controller closes its pipe, and the
            // kernel detaches every tracee without interrupting anything. Else the threads no
            // other fault needs are let go one by one, each at its next stop.
            thread.detaching = !last && !needed(thread, &self.faults);
        }
        for tid in held {
            if let Some((due, _)) = self.threads.get_mut(&tid).and_then(|t| t.hold.take()) {
                self.holds.remove(&(due, tid));
            }
            self.resume(tid);
        }
        for stop in self.stopped.iter().filter(|s| s.fault == id) {
            // SAFETY: kill(2) with SIGCONT on a process this fault's program stopped.
            unsafe { libc::kill(stop.tgid, libc::SIGCONT) };
        }
        self.stopped.retain(|s| s.fault != id);
        // Running threads to let go are interrupted (PTRACE_INTERRUPT) and detached at that stop;
        // held ones when their hold ends.
        for (&tid, thread) in &self.threads {
            if thread.detaching && thread.hold.is_none() {
                let _ = ptrace::interrupt(tid);
            }
        }
        self.retired.push((sys::monotonic_now_ns().saturating_add(RETIRED_FOR_NS), fault.held));
        Reply::Removed { id, stats: fault.stats }
    }

    /// The controller is gone: every held thread resumed with its signal suppressed and every
    /// stopped process continued, now; the kernel detaches the rest when this process exits.
    fn release_everything(&mut self) {
        for (&tid, thread) in &mut self.threads {
            if thread.hold.take().is_some() {
                let _ = ptrace::detach(tid, 0);
            }
        }
        for stop in &self.stopped {
            // SAFETY: kill(2) with SIGCONT on a process a fault's program stopped.
            unsafe { libc::kill(stop.tgid, libc::SIGCONT) };
        }
        // A thread signalled just before the programs were disarmed may stop now: let it go
        // without the signal too.
        while let Ok(Some((tid, status))) = ptrace::next_change() {
            match Stop::of(status) {
                Stop::Signal(signal) if signal == held::SIGNAL as i32 => {
                    let _ = ptrace::detach(tid, 0);
                }
                Stop::Signal(signal) => {
                    let _ = ptrace::detach(tid, signal);
                }
                Stop::Gone => {}
                _ => {
                    let _ = ptrace::detach(tid, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_hold_their_descendants_only() {
        assert!(within("/app", "/app"));
        assert!(within("/app/db", "/app"));
        assert!(!within("/apple", "/app"));
        assert!(!within("/", "/app"));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        assert_eq!(jittered(1000, 0), 1000);
        for _ in 0..1000 {
            let delay = jittered(1000, 100);
            assert!((900..=1100).contains(&delay), "{delay}");
        }
    }
}
