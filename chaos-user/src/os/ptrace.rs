//! The few ptrace(2) requests the holder makes, and what a tracee's wait status means, as safe
//! functions. ptrace is per tracer thread: every call here must come from the one thread that
//! seized the tracee (the holder process is single-threaded for that reason).
use std::io;

use libc::{c_int, c_void, pid_t};

/// What the holder asks to hear about: threads and processes the tracee starts (so they are
/// traced from their first instruction) and exec (which changes a thread's id). No syscall
/// stops: PTRACE_SEIZE with these options stops nothing and costs the tracee nothing until it
/// gets a signal.
pub(crate) const OPTIONS: c_int =
    libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEVFORK | libc::PTRACE_O_TRACEEXEC;

fn request(request: libc::c_uint, tid: pid_t, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: ptrace(2) with integer arguments, or (GETEVENTMSG, GETSIGINFO) a pointer to a local
    // the caller owns and sized for the request.
    let rc = unsafe { libc::ptrace(request, tid, addr as *mut c_void, data as *mut c_void) };
    if rc == -1 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// PTRACE_SEIZE: traced from now on, without being stopped.
pub(crate) fn seize(tid: pid_t) -> io::Result<()> {
    request(libc::PTRACE_SEIZE, tid, 0, OPTIONS as usize).map(drop)
}

/// Resumes a tracee from a ptrace-stop, delivering `signal` (0: none).
pub(crate) fn cont(tid: pid_t, signal: c_int) -> io::Result<()> {
    request(libc::PTRACE_CONT, tid, 0, signal as usize).map(drop)
}

/// Leaves a tracee in a group-stop (a user's SIGSTOP) stopped, yet able to report what comes
/// next (the SIGCONT that ends it).
pub(crate) fn listen(tid: pid_t) -> io::Result<()> {
    request(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
}

/// Asks a running tracee to stop (PTRACE_EVENT_STOP), so that it can be detached.
pub(crate) fn interrupt(tid: pid_t) -> io::Result<()> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// Detaches a tracee in a ptrace-stop, delivering `signal` (0: none).
pub(crate) fn detach(tid: pid_t, signal: c_int) -> io::Result<()> {
    request(libc::PTRACE_DETACH, tid, 0, signal as usize).map(drop)
}

/// The event's message: the new task's id (clone, fork, vfork), the former thread id (exec).
pub(crate) fn event_message(tid: pid_t) -> io::Result<u64> {
    let mut message: libc::c_ulong = 0;
    request(libc::PTRACE_GETEVENTMSG, tid, 0, (&raw mut message) as usize)?;
    Ok(message)
}

/// Who sent the signal a tracee stopped for: `si_code` (SI_KERNEL for the kernel's own, as
/// `bpf_send_signal_thread` sends) and `si_pid`.
pub(crate) fn signal_origin(tid: pid_t) -> io::Result<(c_int, pid_t)> {
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    request(libc::PTRACE_GETSIGINFO, tid, 0, (&raw mut info) as usize)?;
    // SAFETY: the kernel filled `info`; si_pid is read from its union as the kernel laid it out.
    Ok((info.si_code, unsafe { info.si_pid() }))
}

/// What a tracee's wait status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The thread is gone (exited or killed): reaped by this wait.
    Gone,
    /// Signal-delivery-stop: the thread is about to get `signal`, which the tracer passes on or
    /// suppresses.
    Signal(c_int),
    /// Group-stop (a SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU acting on the whole process): the
    /// tracer leaves it stopped with PTRACE_LISTEN.
    Group,
    /// PTRACE_EVENT_STOP outside a group-stop: a new tracee's first stop, or an interrupt.
    Trap,
    /// The thread made a thread or a process (clone, fork, vfork), whose id the event holds.
    NewTask,
    /// The thread called exec, and now has the process's id; the event holds its former id.
    Exec,
    /// Another ptrace event (not asked for).
    Other,
}

impl Stop {
    /// Reads a wait status.
    #[must_use]
    pub(crate) fn of(status: c_int) -> Self {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Self::Gone;
        }
        if !libc::WIFSTOPPED(status) {
            return Self::Other;
        }
        let signal = libc::WSTOPSIG(status);
        match status >> 16 {
            0 => Self::Signal(signal),
            libc::PTRACE_EVENT_STOP => match signal {
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Self::Group,
                _ => Self::Trap,
            },
            libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => Self::NewTask,
            libc::PTRACE_EVENT_EXEC => Self::Exec,
            _ => Self::Other,
        }
    }
}

/// The next tracee that changed state, without waiting: `(thread id, status)`, or `None` when
/// none has. `__WALL`: threads as well as processes; `__WNOTHREAD`: only this thread's tracees.
pub(crate) fn next_change() -> io::Result<Option<(pid_t, c_int)>> {
    let mut status: c_int = 0;
    // SAFETY: waitpid(2) with a pointer to a local.
    let tid = unsafe { libc::waitpid(-1, &raw mut status, libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG) };
    match tid {
        0 => Ok(None),
        -1 => {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ECHILD) { Ok(None) } else { Err(err) }
        }
        tid => Ok(Some((tid, status))),
    }
}

/// The pid of the process tracing `tid` (`TracerPid` in /proc/TID/status), 0 for none.
#[must_use]
pub(crate) fn tracer_of(tid: pid_t) -> pid_t {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| line.strip_prefix("TracerPid:")).and_then(|pid| pid.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_read_as_the_stops_they_are() {
        // Layouts from wait(2) and ptrace(2): stopped is 0x7f | signal << 8 | event << 16.
        let stopped = |signal: c_int, event: c_int| 0x7f | (signal << 8) | (event << 16);
        assert_eq!(Stop::of(0), Stop::Gone, "exited 0");
        assert_eq!(Stop::of(libc::SIGKILL), Stop::Gone, "killed");
        assert_eq!(Stop::of(stopped(libc::SIGURG, 0)), Stop::Signal(libc::SIGURG));
        assert_eq!(Stop::of(stopped(libc::SIGSTOP, libc::PTRACE_EVENT_STOP)), Stop::Group);
        assert_eq!(Stop::of(stopped(libc::SIGTRAP, libc::PTRACE_EVENT_STOP)), Stop::Trap);
        assert_eq!(Stop::of(stopped(libc::SIGTRAP, libc::PTRACE_EVENT_CLONE)), Stop::NewTask);
        assert_eq!(Stop::of(stopped(libc::SIGTRAP, libc::PTRACE_EVENT_EXEC)), Stop::Exec);
    }
}
