//! Crashing chaos at each of its own steps: a second chaos puts a crash point on the victim's
//! cgroup (`proc kill --on-syscall LIST --after N --max 1`), so the victim chaos (or its guard,
//! which runs in the same cgroup) is SIGKILLed at its N-th call of the listed syscalls, for
//! N = 0, 1, 2, ... until a run in which the crash point never fired: the victim's whole
//! sequence then ran. After every death the caller's checks look at what the kernel and the
//! target show (nothing attached, nothing stopped, frozen or traced), then `chaos cleanup`
//! runs, and no file of the dead victim may be left in /run/chaos. Each next run on the same
//! target is the proof that the one before left it usable; the last one runs to its end.
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    workload::command_in,
};

/// The syscalls the crash points watch: what chaos calls around each change it makes (files
/// and records, signals to its guard, processes, sockets, netlink, ioctls, renames).
pub const CHAOS_STEPS: &str =
    "write,openat,kill,clone3,clone,rename,renameat2,unlinkat,ioctl,fsync,close,sendmsg,sendto,socket";

/// What one sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Crash points tried: runs in which the crash point fired.
    pub points: usize,
    /// How the victim ended at each point (killed, or its exit code: its guard was killed).
    pub outcomes: Vec<String>,
}

/// How a victim runs: its command line, and, for one that runs until told (the daemon), how long
/// before the sweep sends it SIGTERM.
#[derive(Clone, Copy, Debug)]
pub struct Victim<'a> {
    pub args: &'a [&'a str],
    pub stop_after: Option<Duration>,
    /// Every how many crash points one is tried (1: every one). Under TCG a point costs
    /// seconds (two chaos starts), so a VM tier may try every k-th; the count says so.
    pub stride: usize,
}

/// [`sweep_victim`] for a victim that ends by itself.
pub fn sweep(
    family: &str,
    victim_args: &[&str],
    syscalls: &str,
    max_points: usize,
    after_death: impl FnMut(usize, bool),
) -> Sweep {
    sweep_victim(family, Victim { args: victim_args, stop_after: None, stride: 1 }, syscalls, max_points, after_death)
}

/// Runs a victim (a chaos command line) inside a fresh cgroup under a crash point at its
/// N-th call of `syscalls`, for every N until the crash point no longer fires (at most
/// `max_points`, a guard against a sweep that never ends). After each run: waits until every
/// process of the victim's cgroup (its guard too) is gone, calls `after_death(n, false)` to
/// check what the victim's family may have left, runs `chaos cleanup` (which must succeed),
/// calls `after_death(n, true)`, and checks that no record of the victim is left in /run/chaos.
/// A crash point kills one process per run (`--max 1`): the victim or its guard, never both, so
/// whatever a guard undoes is undone before `chaos cleanup` runs.
pub fn sweep_victim(
    family: &str,
    victim: Victim<'_>,
    syscalls: &str,
    max_points: usize,
    mut after_death: impl FnMut(usize, bool),
) -> Sweep {
    let victims = TestCgroup::new();
    let mut found = Sweep::default();
    for n in (0..max_points).step_by(victim.stride.max(1)) {
        let after = n.to_string();
        let mut killer = Chaos::start(&[
            "proc",
            "kill",
            "--cgroup",
            victims.path(),
            "--on-syscall",
            syscalls,
            "--after",
            &after,
            "--max",
            "1",
            "--for",
            "10m",
            "--output",
            "json",
            "-v",
        ]);
        killer.wait_until_armed(Duration::from_secs(60));
        let mut process = command_in(chaos::chaos_bin(), Some(&victims), None)
            .args(victim.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the victim chaos: {e}"));
        let victim_pid = process.id();
        let status = wait_with_timeout(&mut process, victim.stop_after, Duration::from_secs(120), family, n);
        let stderr = read_all(process.stderr.take());
        let report = killer.stop_json();
        let fired = report["counters"].as_array().map_or(0, |c| c.iter().filter_map(|d| d["injected"].as_u64()).sum());
        wait_for_empty(&victims, Duration::from_secs(10), family, n);
        if fired == 0 {
            let ended_well = status.success() || (victim.stop_after.is_some() && status.code() == Some(143));
            assert!(
                ended_well,
                "{family}: the victim ran its whole sequence without a crash point and failed ({status}): {stderr}"
            );
            after_death(n, false);
            break;
        }
        found.points += 1;
        found.outcomes.push(std::os::unix::process::ExitStatusExt::signal(&status).map_or_else(
            || format!("exit {}", status.code().unwrap_or(-1)),
            |signal| if signal == libc::SIGKILL { "killed".to_owned() } else { format!("signal {signal}") },
        ));
        after_death(n, false);
        let (status, stdout, stderr) = chaos::run(&["cleanup"]);
        assert!(status.success(), "{family} point {n}: `chaos cleanup` failed: {stdout}{stderr}");
        after_death(n, true);
        let left = files_of(victim_pid);
        assert!(left.is_empty(), "{family} point {n}: after `chaos cleanup` ({stdout}) the dead victim left {left:?}");
        assert!(
            n + victim.stride < max_points,
            "{family}: the crash point still fired at point {n}: is the sweep endless?"
        );
    }
    eprintln!(
        "measured: {family}: {} crash points tried{}, then a whole run; the victim ended: {}",
        found.points,
        if victim.stride > 1 { format!(" (one point in {})", victim.stride) } else { String::new() },
        summarise(&found.outcomes)
    );
    found
}

/// Waits for the victim to end (SIGTERM after `stop_after`, if given), at most `timeout`.
fn wait_with_timeout(
    child: &mut std::process::Child,
    stop_after: Option<Duration>,
    timeout: Duration,
    family: &str,
    n: usize,
) -> std::process::ExitStatus {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut stop_sent = false;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait the victim") {
            return status;
        }
        if !stop_sent && stop_after.is_some_and(|after| started.elapsed() >= after) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            stop_sent = true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{family} point {n}: the victim chaos did not end within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_all(pipe: Option<std::process::ChildStderr>) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = pipe {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
    }
    text
}

/// Waits until the victim's cgroup holds no process: its guard (if any) has done its job.
fn wait_for_empty(cgroup: &TestCgroup, timeout: Duration, family: &str, n: usize) {
    let deadline = Instant::now() + timeout;
    while !cgroup.pids().is_empty() {
        assert!(
            Instant::now() < deadline,
            "{family} point {n}: processes of the victim stayed {timeout:?} after it ended: {:?}",
            cgroup.pids()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Files in /run/chaos's record directories that belong to process `pid`: its ledger records
/// (`PID-...`), run records (ids end in `-PID`) and temporaries (`.NAME.PID.tmp`).
#[must_use]
pub fn files_of(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["/run/chaos/ledger", "/run/chaos/runs"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let base = name.trim_start_matches('.');
            let mine = base.starts_with(&format!("{pid}-"))
                || base.contains(&format!("-{pid}."))
                || name.ends_with(&format!(".{pid}.tmp"));
            if mine {
                found.push(Path::new(dir).join(name).display().to_string());
            }
        }
    }
    found
}

/// "killed 40, exit 2 3" from the list of outcomes.
fn summarise(outcomes: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for outcome in outcomes {
        match counts.iter_mut().find(|(o, _)| o == outcome) {
            Some((_, count)) => *count += 1,
            None => counts.push((outcome.clone(), 1)),
        }
    }
    counts.iter().map(|(o, c)| format!("{o} {c}")).collect::<Vec<_>>().join(", ")
}
