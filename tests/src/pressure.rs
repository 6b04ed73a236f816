//! The `chaos-workload` subcommands that put pressure on a resource, for the `limit` tests and
//! benchmark: each does real work the kernel accounts to its cgroup, and reports what it got.
//!
//!   chaos-workload burn [--threads N]
//!       spins on N threads (default 1) until killed; prints {"ops": n} each second, the loop
//!       iterations done in that second (a neighbour's throughput)
//!   chaos-workload touch-memory --mib N [--chunk-mib C]
//!       allocates N MiB, C MiB at a time (default 4), writing every page; prints "touched M" after
//!       each chunk, then "done", and holds the memory until killed
//!   chaos-workload disk-writer --file F --count N [--direct] [--fsync] [--block B]
//!       N writes of B bytes (default 4096) at successive offsets of F, each followed by fsync with
//!       --fsync, through O_DIRECT with --direct; a second thread of the same process wakes every
//!       10 ms and does no disk I/O at all. Prints {"op_ns": [each write(+fsync)], "elapsed_ns",
//!       "heartbeat_gaps_ns": [time between its wake-ups]}
//!   chaos-workload fork-probe [--count N]
//!       forks N times (default 1), each child exiting at once; prints {"ok": n, "errors": {errno: n}}
use std::{
    collections::BTreeMap,
    hint::black_box,
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Runs `command` if it is one of these; false when it is not.
#[must_use]
pub fn run(command: &str, flags: &[String]) -> bool {
    let flag = |name: &str| flags.iter().position(|a| a == name).and_then(|i| flags.get(i + 1)).cloned();
    let num = |name: &str, default: u64| flag(name).map_or(default, |v| v.parse().expect("a number"));
    let has = |name: &str| flags.iter().any(|a| a == name);
    match command {
        "burn" => burn(num("--threads", 1)),
        "touch-memory" => touch_memory(num("--mib", 100), num("--chunk-mib", 4)),
        "disk-writer" => disk_writer(
            &flag("--file").expect("--file F"),
            num("--count", 100),
            num("--block", 4096) as usize,
            has("--direct"),
            has("--fsync"),
        ),
        "fork-probe" => fork_probe(num("--count", 1)),
        _ => return false,
    }
    true
}

fn burn(threads: u64) {
    let ops = Arc::new(AtomicU64::new(0));
    for _ in 0..threads.max(1) {
        let ops = Arc::clone(&ops);
        std::thread::spawn(move || {
            let mut x = 1u64;
            loop {
                for _ in 0..10_000 {
                    x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut last = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = ops.load(Ordering::Relaxed);
        // Nobody may be reading (a test that only needs the CPU burned): keep burning.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::json!({ "ops": now - last }));
        let _ = out.flush();
        last = now;
    }
}

fn touch_memory(mib: u64, chunk_mib: u64) {
    let page = 4096;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut touched = 0;
    while touched < mib {
        let size = chunk_mib.min(mib - touched).max(1);
        let mut chunk = vec![0u8; (size << 20) as usize];
        for i in (0..chunk.len()).step_by(page) {
            chunk[i] = 1;
        }
        held.push(black_box(chunk));
        touched += size;
        println!("touched {touched}");
        let _ = std::io::stdout().flush();
    }
    println!("done");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        black_box(&held);
    }
}

/// A buffer of `len` bytes aligned to 4096, as O_DIRECT needs.
struct Aligned(*mut u8, std::alloc::Layout);

impl Aligned {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("layout");
        // SAFETY: a non-zero size (callers pass a block size).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocation failed");
        Self(ptr, layout)
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(self.0, self.1) };
    }
}

fn disk_writer(path: &str, count: u64, block: usize, direct: bool, fsync: bool) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.create(true).write(true).truncate(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options.open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let buffer = Aligned::new(block);
    let done = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut gaps = Vec::new();
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                let now = Instant::now();
                gaps.push(now.duration_since(last).as_nanos() as u64);
                last = now;
            }
            gaps
        })
    };
    let start = Instant::now();
    let mut op_ns = Vec::new();
    for i in 0..count {
        let op = Instant::now();
        // SAFETY: pwrite(2) of our aligned buffer to our fd; fsync(2) on our fd.
        let written = unsafe { libc::pwrite(fd, buffer.0.cast(), block, (i * block as u64) as libc::off_t) };
        assert_eq!(written, block as isize, "pwrite: {}", std::io::Error::last_os_error());
        if fsync {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::fsync(fd) }, 0, "fsync: {}", std::io::Error::last_os_error());
        }
        op_ns.push(op.elapsed().as_nanos() as u64);
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    done.store(true, Ordering::Relaxed);
    let gaps = heartbeat.join().expect("heartbeat thread");
    println!("{}", serde_json::json!({ "op_ns": op_ns, "elapsed_ns": elapsed_ns, "heartbeat_gaps_ns": gaps }));
}

fn fork_probe(count: u64) {
    let (mut ok, mut errors) = (0u64, BTreeMap::<String, u64>::new());
    for _ in 0..count {
        // SAFETY: the child only calls _exit, which is async-signal-safe.
        match unsafe { libc::fork() } {
            // SAFETY: the forked child leaves at once, running nothing of the parent's.
            0 => unsafe { libc::_exit(0) },
            -1 => {
                let err = std::io::Error::last_os_error();
                let name = match err.raw_os_error() {
                    Some(libc::EAGAIN) => "EAGAIN".to_owned(),
                    Some(n) => format!("errno {n}"),
                    None => err.to_string(),
                };
                *errors.entry(name).or_default() += 1;
            }
            child => {
                ok += 1;
                // SAFETY: waitpid(2) on our own child.
                unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            }
        }
    }
    println!("{}", serde_json::json!({ "ok": ok, "errors": errors }));
}
