//! Processes as /proc shows them: when one started, so that a pid the kernel gave to another
//! process since is not taken for the one chaos recorded.
use std::fs;

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
#[must_use]
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` runs and is the one that started at `start` (not a reused pid).
#[must_use]
pub(crate) fn process_alive(pid: u32, start: u64) -> bool {
    start_time(pid).is_some_and(|now| now == start)
}
