//! `chaos-workload threads`: a multi-threaded target for per-thread syscall delays.
//!
//!   chaos-workload threads --call fsync|read|getppid|bpf|io_uring_enter --count N [--workers W]
//!       [--together] [--heartbeat-ms MS] [--gap-ms MS] [--wait-line] [--child] [--spin-threads K]
//!       [--idle-threads I]
//!
//! W worker threads (default 1) each make N calls of `--call` (fsync after a one-byte write to a
//! file of their own; the others raw, failing harmlessly where they take arguments), timed;
//! `--together`: the workers start each call at the same moment (a barrier); `--gap-ms`: a pause
//! after each call. `--heartbeat-ms`: one more thread (real-time priority where allowed) sleeps
//! MS in a loop and records the largest gap between its wake-ups, for as long as the workers run. `--wait-line`: prints "ready" and
//! waits for a line on stdin before it starts the workers (threads started during a fault);
//! `--child`: the calls are made by a child process (this program again, started after the
//! line), whose report is included. `--spin-threads K`: K more threads make raw getpid() calls
//! in a loop while the workers run (a benchmark's untargeted threads of the target);
//! `--idle-threads I`: I more threads that only sleep, started before "ready" (a target with
//! many threads to seize). SIGUSR1 is counted by a handler. Prints {"calls_ns": [[per worker]],
//! "starts_ns": [[CLOCK_MONOTONIC]], "heartbeat_max_gap_ns", "heartbeats", "usr1", "spins",
//! "spin_ns", "spin_wait_ns" (of that, time the spinners waited for a CPU), "cpu_ns" (this
//! process's user + system time), "child": report or null}.
use std::{
    io::{BufRead as _, Write as _},
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

static USR1: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_usr1(_: libc::c_int) {
    USR1.fetch_add(1, Ordering::Relaxed);
}

/// The options, as parsed by the caller.
pub(crate) struct Options {
    pub call: String,
    pub count: u64,
    pub workers: u64,
    pub together: bool,
    pub heartbeat_ms: u64,
    pub gap_ms: u64,
    pub wait_line: bool,
    pub child: bool,
    pub spin_threads: u64,
    pub idle_threads: u64,
}

pub(crate) fn run(options: &Options) {
    // SAFETY: installing a handler that only touches an atomic.
    unsafe { libc::signal(libc::SIGUSR1, count_usr1 as *const () as libc::sighandler_t) };
    let running = Arc::new(AtomicBool::new(true));
    // Idle threads block on a futex (park) until the end: no wake-ups (a thousand threads waking
    // every few ms would take a TCG guest's whole CPU).
    let idle: Vec<_> = (0..options.idle_threads)
        .map(|_| {
            let running = Arc::clone(&running);
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    std::thread::park();
                }
            })
        })
        .collect();
    if options.wait_line {
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    let spinners: Vec<_> = (0..options.spin_threads)
        .map(|_| {
            let running = Arc::clone(&running);
            std::thread::spawn(move || {
                let (started, waited_before, mut spins) = (Instant::now(), runqueue_wait_ns(), 0u64);
                while running.load(Ordering::Relaxed) {
                    // SAFETY: getpid has no preconditions; the raw syscall always enters the kernel.
                    unsafe { libc::syscall(libc::SYS_getpid) };
                    spins += 1;
                }
                (spins, started.elapsed().as_nanos() as u64, runqueue_wait_ns().saturating_sub(waited_before))
            })
        })
        .collect();
    let heartbeat = (options.heartbeat_ms > 0).then(|| {
        let (running, period) = (Arc::clone(&running), Duration::from_millis(options.heartbeat_ms));
        std::thread::spawn(move || {
            // Real-time priority (where allowed): on a busy machine a normal thread can wait tens
            // of ms for a CPU, and the heartbeat is there to see stalls of the process, not the
            // machine's load.
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: sched_setscheduler on this thread (0) with a valid parameter.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) };
            let (mut last, mut max_gap, mut beats) = (Instant::now(), Duration::ZERO, 0u64);
            while running.load(Ordering::Relaxed) {
                std::thread::sleep(period);
                let now = Instant::now();
                max_gap = max_gap.max(now - last);
                last = now;
                beats += 1;
            }
            (max_gap.as_nanos() as u64, beats)
        })
    });
    let child = options.child.then(|| child_report(options));
    let barrier = Arc::new(Barrier::new(options.workers as usize));
    let workers: Vec<_> = if options.child {
        Vec::new()
    } else {
        (0..options.workers)
            .map(|index| {
                let (barrier, call, count, together, gap_ms) =
                    (Arc::clone(&barrier), options.call.clone(), options.count, options.together, options.gap_ms);
                std::thread::spawn(move || worker(index, &call, count, together.then_some(&*barrier), gap_ms))
            })
            .collect()
    };
    let (mut calls, mut starts) = (Vec::new(), Vec::new());
    for worker in workers {
        let (latencies, started) = worker.join().expect("a worker panicked");
        calls.push(latencies);
        starts.push(started);
    }
    running.store(false, Ordering::Relaxed);
    let (max_gap, beats) = heartbeat.map_or((0, 0), |h| h.join().expect("the heartbeat panicked"));
    let (mut spins, mut spin_ns, mut spin_wait_ns) = (0, 0, 0);
    for spinner in spinners {
        let (count, ns, waited) = spinner.join().expect("a spinner panicked");
        spins += count;
        spin_ns += ns;
        spin_wait_ns += waited;
    }
    for thread in idle {
        thread.thread().unpark();
        let _ = thread.join();
    }
    println!(
        "{}",
        serde_json::json!({
            "calls_ns": calls,
            "starts_ns": starts,
            "heartbeat_max_gap_ns": max_gap,
            "heartbeats": beats,
            "usr1": USR1.load(Ordering::Relaxed),
            "spins": spins,
            "spin_ns": spin_ns,
            "spin_wait_ns": spin_wait_ns,
            "cpu_ns": cpu_ns(),
            "child": child,
        })
    );
}

/// How long this thread has waited for a CPU while runnable (the scheduler's count): on a busy
/// machine, time the spinners lose to other processes rather than to the target's own stops.
fn runqueue_wait_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// This process's CPU time so far (user + system), in ns.
fn cpu_ns() -> u64 {
    // SAFETY: getrusage into a local.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// One worker's calls: their latencies and start times.
fn worker(index: u64, call: &str, count: u64, barrier: Option<&Barrier>, gap_ms: u64) -> (Vec<u64>, Vec<u64>) {
    let path = std::env::temp_dir().join(format!("chaos-workload-threads-{}-{index}", std::process::id()));
    let mut file = std::fs::File::create(&path).expect("create the worker's file");
    let _ = std::fs::remove_file(&path);
    let (mut latencies, mut starts) = (Vec::new(), Vec::new());
    for _ in 0..count {
        if let Some(barrier) = barrier {
            barrier.wait();
        }
        if call == "fsync" {
            file.write_all(b"x").expect("write");
        }
        starts.push(super::monotonic_ns());
        let started = Instant::now();
        make(call, &file);
        latencies.push(started.elapsed().as_nanos() as u64);
        if gap_ms > 0 {
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
    }
    (latencies, starts)
}

/// One call of `call`.
fn make(call: &str, file: &std::fs::File) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: raw syscalls with valid or deliberately invalid (negative descriptor, zero size)
    // arguments: the ones that take arguments fail harmlessly with EBADF or EINVAL.
    unsafe {
        match call {
            "fsync" => {
                libc::fsync(file.as_raw_fd());
            }
            "read" => {
                let mut byte = 0u8;
                libc::syscall(libc::SYS_read, -1, (&raw mut byte).cast::<libc::c_void>(), 0);
            }
            "getppid" => {
                libc::syscall(libc::SYS_getppid);
            }
            "bpf" => {
                libc::syscall(libc::SYS_bpf, -1, std::ptr::null::<libc::c_void>(), 0);
            }
            "io_uring_enter" => {
                libc::syscall(libc::SYS_io_uring_enter, -1, 0, 0, 0, std::ptr::null::<libc::c_void>(), 0);
            }
            other => panic!("no such call: {other}"),
        }
    }
}

/// Runs the calls in a child process (this program again), started now; its report.
fn child_report(options: &Options) -> serde_json::Value {
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["threads", "--call", &options.call, "--count", &options.count.to_string()])
        .args(["--workers", &options.workers.to_string(), "--gap-ms", &options.gap_ms.to_string()])
        .args(["--heartbeat-ms", &options.heartbeat_ms.to_string()])
        .output()
        .expect("run the child");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        serde_json::json!({ "failed": String::from_utf8_lossy(&output.stderr), "status": output.status.to_string() })
    })
}
