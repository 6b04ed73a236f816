//! Resumes the processes `syscall delay --scope process` stopped, each when its delay is over.
//! (Per thread, the holder does this for threads: holder/.)
//!
//! One thread reads the kernel's stop events from the ring buffer and keeps a heap of resume
//! times, counted from the moment the program stopped the task (`bpf_ktime_get_ns`, the same
//! clock as CLOCK_MONOTONIC), so the time it takes to hear about a stop does not add to the
//! delay. It sleeps with ppoll (nanosecond timeouts; the thread's timer slack is set to 1 ns)
//! until the next resume or the next event.
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use chaos_common::StopEvent;

use super::guard::Guard;
use crate::os::sys;

/// How precisely tasks were resumed: lateness of each SIGCONT against its due time.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResumeStats {
    pub resumed: u64,
    pub lateness_ns: Vec<u64>,
}

pub(crate) struct Resumer {
    stop: Arc<AtomicBool>,
    /// The fault's time box (deadline + longest delay), for the guard; 0 when unchanged.
    time_box: Arc<AtomicU64>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<ResumeStats>>,
}

impl Resumer {
    /// Starts resuming the tasks reported in `events` after `delay` (plus a uniform jitter of
    /// up to `jitter` either way), telling `guard` about every stop and resume.
    pub(crate) fn start(
        mut events: RingBuf<MapData>,
        mut guard: Guard,
        delay: Duration,
        jitter: Duration,
    ) -> std::io::Result<Self> {
        // SAFETY: eventfd(2) returns a new fd, owned below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd nobody else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let stop = Arc::new(AtomicBool::new(false));
        let time_box = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_wake, thread_time_box) = (Arc::clone(&stop), Arc::clone(&wake), Arc::clone(&time_box));
        let thread = std::thread::Builder::new().name("chaos-resumer".into()).spawn(move || {
            // SAFETY: prctl on this thread only: its sleeps end on time, not up to 50 us late.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
            let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            let jitter_ns = u64::try_from(jitter.as_nanos()).unwrap_or(0);
            let mut due: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
            let mut stats = ResumeStats::default();
            let events_fd = events.as_raw_fd();
            loop {
                let moved = thread_time_box.swap(0, Ordering::AcqRel);
                if moved != 0 {
                    guard.time_box(moved);
                }
                while let Some(item) = events.next() {
                    if item.len() < std::mem::size_of::<StopEvent>() {
                        continue;
                    }
                    // SAFETY: the program writes whole StopEvents; read_unaligned copies it out.
                    let event: StopEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                    guard.stopped(event.tgid);
                    due.push(Reverse((event.stopped_at_ns.saturating_add(jittered(delay_ns, jitter_ns)), event.tgid)));
                }
                let stopping = thread_stop.load(Ordering::Acquire);
                let now = sys::monotonic_now_ns();
                while let Some(&Reverse((at, pid))) = due.peek() {
                    if at > now && !stopping {
                        break;
                    }
                    due.pop();
                    resume(pid);
                    guard.resumed(pid);
                    stats.resumed += 1;
                    if !stopping {
                        stats.lateness_ns.push(sys::monotonic_now_ns().saturating_sub(at));
                    }
                }
                if stopping {
                    return stats;
                }
                let timeout =
                    due.peek().map_or(100_000_000, |Reverse((at, _))| at.saturating_sub(sys::monotonic_now_ns()));
                wait(events_fd, thread_wake.as_raw_fd(), timeout);
            }
        })?;
        Ok(Self { stop, time_box, wake, thread: Some(thread) })
    }

    /// The fault's deadline changed: tell the guard its new time box (deadline plus the
    /// longest delay).
    pub(crate) fn set_time_box(&self, time_box_end_ns: u64) {
        self.time_box.store(time_box_end_ns.max(1), Ordering::Release);
        self.wake_thread();
    }

    fn wake_thread(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our eventfd wakes the thread's ppoll.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    /// Resumes every task still stopped, now, and stops the thread. Disarm the fault first, so
    /// that no new stop comes in after this.
    pub(crate) fn finish(&mut self) -> ResumeStats {
        self.stop.store(true, Ordering::Release);
        self.wake_thread();
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

impl Drop for Resumer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

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

fn resume(pid: u32) {
    // SAFETY: kill(2) with SIGCONT on a process the program stopped.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
}

/// Sleeps until the ring buffer has data, the wake fd is written, or `timeout_ns` passes.
fn wait(events_fd: i32, wake_fd: i32, timeout_ns: u64) {
    let mut fds = [
        libc::pollfd { fd: events_fd, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: wake_fd, events: libc::POLLIN, revents: 0 },
    ];
    let timeout =
        libc::timespec { tv_sec: (timeout_ns / 1_000_000_000) as i64, tv_nsec: (timeout_ns % 1_000_000_000) as i64 };
    // SAFETY: valid pollfd array and timespec.
    unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &raw const timeout, std::ptr::null()) };
    if fds[1].revents & libc::POLLIN != 0 {
        // Reset the eventfd, or it stays readable and every later ppoll returns at once (a
        // busy loop for the rest of the fault).
        let mut count: u64 = 0;
        // SAFETY: reading 8 bytes from our nonblocking eventfd into a local.
        unsafe { libc::read(wake_fd, (&raw mut count).cast(), 8) };
    }
}
