//! The thread that does a fault's userspace action (periodic kills and pauses, `net sever`'s
//! resets) on its schedule: these need no eBPF program (a signal, a write to `cgroup.freeze`,
//! sock_diag's SOCK_DESTROY are the kernel's own mechanisms), so an [`Actor`] runs the action's
//! work until its deadline or until it is told to stop, and hands back what it did. Each action
//! says what its work is (proc/kill.rs, proc/pause.rs, net/sever/), through
//! `plan::action::UserspaceAction`; this file knows none of them.
use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{
    os::sys,
    plan::action::{ActionOutcome, RunningAction},
};

/// An action's work running in a thread of its own until its deadline or [`RunningAction::finish`].
pub struct Actor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<ActionOutcome>>,
    /// What the work has done so far (processes killed, connections severed), as it counts it:
    /// a run's record shows it every second (`chaos status`) before the outcome is handed back.
    acted: Arc<AtomicU64>,
}

impl Actor {
    /// Runs `work` on a new thread. `work` waits for each of its times through the function it
    /// is given: `wait(ns)` sleeps until CLOCK_MONOTONIC `ns` and says false once the action is
    /// told to stop, when `work` must end (a pause thaws first).
    pub fn spawn(work: impl FnOnce(&dyn Fn(u64) -> bool) -> ActionOutcome + Send + 'static) -> std::io::Result<Self> {
        Self::spawn_counting(move |wait, _| work(wait))
    }

    /// [`spawn`](Self::spawn) for work that also says what it did as it goes: `acted(n)` adds
    /// `n` to the count [`RunningAction::acted`] reads while it runs.
    pub fn spawn_counting(
        work: impl FnOnce(&dyn Fn(u64) -> bool, &dyn Fn(u64)) -> ActionOutcome + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let acted = Arc::new(AtomicU64::new(0));
        let (shared, counted) = (Arc::clone(&stop), Arc::clone(&acted));
        let thread = std::thread::Builder::new().name("chaos-proc".into()).spawn(move || {
            let wait = |until_ns: u64| wait_until(&shared, until_ns);
            let count = |n: u64| {
                counted.fetch_add(n, Ordering::Relaxed);
            };
            work(&wait, &count)
        })?;
        Ok(Self { stop, thread: Some(thread), acted })
    }

    fn stop_thread(&mut self) -> ActionOutcome {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop_thread();
        }
    }
}

impl RunningAction for Actor {
    /// Stops the action (a pause thaws) and returns what it did.
    fn finish(mut self: Box<Self>) -> ActionOutcome {
        self.stop_thread()
    }

    fn acted(&self) -> u64 {
        self.acted.load(Ordering::Relaxed)
    }
}

/// Sleeps until CLOCK_MONOTONIC `until_ns`; false if told to stop first.
fn wait_until(stop: &(Mutex<bool>, Condvar), until_ns: u64) -> bool {
    let (flag, wake) = stop;
    let mut stopped = flag.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        if *stopped {
            return false;
        }
        let now = sys::monotonic_now_ns();
        if now >= until_ns {
            return true;
        }
        stopped = wake
            .wait_timeout(stopped, Duration::from_nanos(until_ns - now))
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0;
    }
}
