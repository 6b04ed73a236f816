//! Traffic for chaos's tests and benchmarks, run inside test cgroups and namespaces.
//!
//!   chaos-workload udp-blast --to ADDR:PORT --id N --count N [--pps N] [--from-port P] [--times]
//!       sends numbered datagrams (from local port P if given), prints {"sent","errors",
//!       "first_error","elapsed_ns"}; with --times also "times": [[ns before, ns after]] the
//!       sendto(2) of each datagram (CLOCK_MONOTONIC; "before" is the datagram's own stamp)
//!   chaos-workload udp-sink --port P [--idle-ms MS] [--max-secs S] [--times]
//!       prints "ready", counts datagrams per sender until idle, prints a JSON report
//!   chaos-workload tcp-listen --port P
//!       prints "ready", accepts and closes connections until killed
//!   chaos-workload tcp-connect --to ADDR:PORT [--timeout-ms MS]
//!       prints {"connected", "error", "elapsed_ms"}
//!   chaos-workload http-serve --port P [--addr IP] [--status N] [--delay-ms MS] [--log FILE]
//!       prints "ready", answers every HTTP request with N (default 200) "ok", MS after it came in
//!       (default at once), until killed; with --log, appends one line to FILE per request
//!       answered (what the server saw, for tests)
//!   chaos-workload metrics-serve --port P --probe ADDR:PORT [--timeout-ms MS]
//!       a Prometheus exporter: TCP-connects to ADDR:PORT every 20 ms (each attempt waits at most
//!       MS, default 100) and serves the counters `workload_probe_total` and
//!       `workload_probe_errors_total` at /metrics on 127.0.0.1:P; prints "ready"
//!   chaos-workload sleep --secs S
//!       a resident process (gives a test cgroup a member in a namespace)
//!   chaos-workload connect-loop --to ADDR:PORT --count N [--udp] [--gap-ms MS]
//!       N TCP connects (a new socket each), prints {"calls", "ok", "errors": {errno: n}, "failed_at": [i],
//!       "at_ns": [CLOCK_MONOTONIC ns at the start of each call]};
//!       with --udp, N connect() calls on one UDP socket (no packets: just the syscall and its hooks)
//!   chaos-workload open-loop --path P --count N
//!       N rounds of openat+read+close of P; prints {"calls", "ok", "errors", "failed_at", "elapsed_ns"}
//!   chaos-workload latency-loop --count N [--gap-ms MS]
//!       N read() calls of 1 byte from /dev/zero, prints {"latencies_ns": [...], "starts_ns": [CLOCK_MONOTONIC]}
//!   chaos-workload getppid-loop --count N [--gap-ms MS]
//!       N raw getppid() calls (a call no program's start-up makes), prints {"latencies_ns": [...]}
//!   chaos-workload icmp-ping --to IP --count N [--interval-ms MS] [--wait-ms MS]
//!       N ICMP echo requests from a raw socket, prints {"sent", "answered"}
//!   chaos-workload heartbeat --secs S [--over-ms G]
//!       prints "ready", ticks every millisecond for S seconds, then prints {"gaps": [[from_ns,
//!       to_ns]]}: the CLOCK_MONOTONIC spans between two ticks longer than G ms (default 50), i.e.
//!       when it could not run (frozen, stopped)
//!   chaos-workload getpid-loop --count N
//!       N getpid() syscalls (raw, not glibc's), prints {"calls", "elapsed_ns"}
//!   chaos-workload udp-echo --port P
//!       prints "ready", echoes every datagram back until killed
//!   chaos-workload udp-ping --to ADDR:PORT --count N --interval-ms MS
//!       N pings, prints {"rtts_ns": [...], "sent_ns": [CLOCK_MONOTONIC send time of each answered ping], "lost": n}
//!   chaos-workload socket-calls
//!       makes its sockets, prints "ready", waits for a line on stdin, then makes one call of
//!       each kind a cgroup socket hook sees (socket, bind, connect, sendto, each in IPv4 and
//!       IPv6 where the hook has both, setsockopt, getsockopt); prints {call: errno, 0 if it worked}
//!   chaos-workload lsm-calls --dir D
//!       prepares files, descriptors and sockets in D, prints "ready" and stops itself (SIGSTOP);
//!       once continued, makes one call per BPF LSM hook chaos serves (bprm_check_security aside:
//!       see lsm_calls) and stops itself again; once continued, prints {"hook:call": errno, 0 if it
//!       worked}. Stopping instead of reading a line keeps the calls the only syscalls on a hook.
//!   chaos-workload file-loop --dir D --count N
//!       N rounds of openat(create)+write+fsync+close, openat+read+close, unlink in D; prints per
//!       syscall {"calls", "ok", "errors", "failed_at"} (attempt numbers count from 1)
//!   chaos-workload append-fsync --file F --count N
//!       appends records "record I\n" (I from 1) to F, each with one write(2) then fsync(2); prints
//!       "done I" after the last (a crash point kills it before)
//!   chaos-workload crash-stamp --file F
//!       writes CLOCK_MONOTONIC ns into F (mapped shared, so no syscall) just before one raw
//!       getppid(2), the call a benchmark's crash point kills; exits 0 if it survives
//!   chaos-workload counter --file F
//!       prints "ready", then rewrites F with an increasing counter every millisecond until killed
//!   chaos-workload resolve --name N [--count K] [--gap-ms MS] [--family any|4|6]
//!       [--nameserver IP]... [--timeout S] [--attempts N] [--tcp]
//!       K getaddrinfo() lookups of N through glibc's resolver (with --nameserver: in a private
//!       /etc naming those servers, see resolve.rs; --tcp asks over TCP); prints {"lookups": [{"ok", "addresses" or
//!       "error" (EAI_NONAME...), "elapsed_us", "at_ns"}], "cpu_ns"}
//!   chaos-workload tcp-serve --port P [--echo] | tcp-clients --to ADDR:PORT --count N ...
//!       long-lived TCP connections that report how each one ended (chaos-workload/tcp.rs)
//!   chaos-workload supervise --restart-ms MS [--into-cgroup DIR] -- COMMAND ARGS...
//!       runs COMMAND (in cgroup DIR if given, the supervisor staying where it is) and starts it
//!       again MS after each exit, as systemd or a container runtime would; prints "started PID"
//!       per start and "exited PID signal S" (S 0: it exited by itself) per end, until killed
//!   chaos-workload burn | touch-memory | disk-writer | fork-probe
//!       pressure on one resource, for the limit tests (chaos_tests::pressure says how)
//!   chaos-workload threads --call CALL --count N [--workers W] [--together] [--heartbeat-ms MS]
//!       [--gap-ms MS] [--wait-line] [--child] [--spin-threads K] [--idle-threads I]
//!       worker threads making timed calls beside a heartbeat thread (threads.rs)
//!
//! Datagram payload (64 bytes): sender id (u32), sequence (u64), CLOCK_MONOTONIC send time (u64),
//! a filler derived from the sequence, and an FNV-1a checksum of the rest in the last 4 bytes, so
//! a sink recognises corrupted datagrams even when the UDP checksum was fixed.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{ErrorKind, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

#[path = "chaos-workload/resolve.rs"]
mod resolve;
#[path = "chaos-workload/tcp.rs"]
mod tcp;
#[path = "chaos-workload/threads.rs"]
mod threads;

const PAYLOAD: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, flags)) = args.split_first() else { usage() };
    let flag = |name: &str| flags.iter().position(|a| a == name).and_then(|i| flags.get(i + 1)).cloned();
    let has = |name: &str| flags.iter().any(|a| a == name);
    let num = |name: &str, default: u64| flag(name).map_or(default, |v| v.parse().unwrap_or_else(|_| usage()));
    let addr_of =
        |name: &str| -> SocketAddr { flag(name).unwrap_or_else(|| usage()).parse().unwrap_or_else(|_| usage()) };
    let addr = || addr_of("--to");
    match command.as_str() {
        "udp-blast" => udp_blast(
            addr(),
            num("--id", 0) as u32,
            (num("--count", 1000), num("--pps", 0)),
            num("--from-port", 0) as u16,
            has("--times"),
        ),
        "udp-sink" => udp_sink(num("--port", 0) as u16, num("--idle-ms", 500), num("--max-secs", 120), has("--times")),
        "tcp-listen" => tcp_listen(num("--port", 0) as u16),
        "tcp-connect" => tcp_connect(addr(), num("--timeout-ms", 1000)),
        "tcp-serve" => tcp::serve(num("--port", 0) as u16, has("--echo")),
        "tcp-hold" => tcp::hold(num("--port", 0) as u16),
        "tcp-many" => tcp::many(addr(), num("--count", 1)),
        "tcp-clients" => tcp::clients(
            addr(),
            num("--count", 1),
            flag("--ping-ms").map(|_| Duration::from_millis(num("--ping-ms", 0))),
            flag("--send").map(|_| tcp::Send {
                bytes: num("--send", 0),
                chunk: num("--chunk", 100),
                gap: Duration::from_millis(num("--gap-ms", 20)),
            }),
        ),
        "http-serve" => http_serve(
            flag("--addr").unwrap_or_else(|| "127.0.0.1".into()),
            num("--port", 0) as u16,
            num("--status", 200) as u16,
            num("--delay-ms", 0),
            flag("--log"),
        ),
        "getppid-loop" => getppid_loop(num("--count", 100), num("--gap-ms", 0)),
        "icmp-ping" => icmp_ping(
            flag("--to").unwrap_or_else(|| usage()).parse().unwrap_or_else(|_| usage()),
            num("--count", 10),
            num("--interval-ms", 10),
            num("--wait-ms", 1000),
        ),
        "heartbeat" => heartbeat(num("--secs", 5), num("--over-ms", 50)),
        "metrics-serve" => metrics_serve(num("--port", 0) as u16, addr_of("--probe"), num("--timeout-ms", 100)),
        "sleep" => std::thread::sleep(Duration::from_secs(num("--secs", 60))),
        "connect-loop" if has("--udp") => udp_connect_loop(addr(), num("--count", 100)),
        "connect-loop" => connect_loop(addr(), num("--count", 100), num("--gap-ms", 0)),
        "file-loop" => file_loop(&flag("--dir").unwrap_or_else(|| usage()), num("--count", 100)),
        "open-loop" => open_loop(&flag("--path").unwrap_or_else(|| usage()), num("--count", 100)),
        "latency-loop" => latency_loop(num("--count", 100), num("--gap-ms", 0)),
        "udp-echo" => udp_echo(num("--port", 0) as u16),
        "getpid-loop" => getpid_loop(num("--count", 1_000_000)),
        "sync-loop" => sync_loop(&flag("--path").unwrap_or_else(|| usage()), num("--count", 100)),
        "getrandom-loop" => getrandom_loop(num("--count", 100)),
        "fsync-loop" => fsync_loop(&flag("--path").unwrap_or_else(|| usage()), num("--count", 100)),
        "udp-ping" => udp_ping(addr(), num("--count", 100), num("--interval-ms", 10)),
        "append-fsync" => append_fsync(&flag("--file").unwrap_or_else(|| usage()), num("--count", 200)),
        "crash-stamp" => crash_stamp(&flag("--file").unwrap_or_else(|| usage())),
        "counter" => counter(&flag("--file").unwrap_or_else(|| usage())),
        "supervise" => {
            let command = flags.iter().position(|a| a == "--").map(|i| &flags[i + 1..]).unwrap_or_else(|| usage());
            supervise(num("--restart-ms", 100), flag("--into-cgroup"), command);
        }
        "resolve" => resolve::resolve(&resolve::Lookups {
            name: flag("--name").unwrap_or_else(|| usage()),
            count: num("--count", 1),
            gap: Duration::from_millis(num("--gap-ms", 0)),
            family: match flag("--family").as_deref() {
                None | Some("any") => libc::AF_UNSPEC,
                Some("4") => libc::AF_INET,
                Some("6") => libc::AF_INET6,
                Some(_) => usage(),
            },
            nameservers: flags
                .iter()
                .zip(flags.iter().skip(1))
                .filter(|(f, _)| *f == "--nameserver")
                .map(|(_, v)| v.clone())
                .collect(),
            timeout_s: num("--timeout", 2),
            attempts: num("--attempts", 1),
            tcp: has("--tcp"),
        }),
        "socket-calls" => socket_calls(),
        "lsm-calls" => lsm_calls(std::path::Path::new(&flag("--dir").unwrap_or_else(|| usage()))),
        "threads" => threads::run(&threads::Options {
            call: flag("--call").unwrap_or_else(|| usage()),
            count: num("--count", 10),
            workers: num("--workers", 1),
            together: has("--together"),
            heartbeat_ms: num("--heartbeat-ms", 0),
            gap_ms: num("--gap-ms", 0),
            wait_line: has("--wait-line"),
            child: has("--child"),
            spin_threads: num("--spin-threads", 0),
            idle_threads: num("--idle-threads", 0),
        }),
        other if chaos_tests::pressure::run(other, flags) => {}
        _ => usage(),
    }
}

fn append_fsync(path: &str, count: u64) {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the record file");
    for i in 1..=count {
        let record = format!("record {i}\n");
        // SAFETY: write(2) and fsync(2) on an fd this process owns, with a valid buffer; raw calls so
        // each record is exactly one write and one fsync.
        unsafe {
            libc::write(file.as_raw_fd(), record.as_ptr().cast(), record.len());
            libc::fsync(file.as_raw_fd());
        }
    }
    println!("done {count}");
}

fn crash_stamp(path: &str) {
    let file =
        std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(path).expect("open stamp");
    file.set_len(8).expect("size the stamp file");
    // SAFETY: mapping 8 bytes of a file we own, shared, so the stamp reaches the file without a
    // syscall (the benchmark's crash point watches syscalls).
    let map = unsafe {
        libc::mmap(std::ptr::null_mut(), 8, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0)
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap the stamp file");
    let stamp = monotonic_ns();
    // SAFETY: the mapping is 8 bytes, aligned (page start), and ours; volatile so it is not elided.
    unsafe { std::ptr::write_volatile(map.cast::<u64>(), stamp) };
    // SAFETY: getppid has no preconditions; raw, so it is exactly one syscall.
    unsafe { libc::syscall(libc::SYS_getppid) };
}

fn counter(path: &str) {
    println!("ready");
    std::io::stdout().flush().expect("flush");
    for i in 0u64.. {
        let _ = std::fs::write(path, i.to_string());
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn supervise(restart_ms: u64, cgroup: Option<String>, command: &[String]) {
    use std::os::unix::process::CommandExt as _;
    let Some((program, args)) = command.split_first() else { usage() };
    loop {
        let mut child = std::process::Command::new(program);
        child.args(args).stdout(std::process::Stdio::null());
        if let Some(dir) = &cgroup {
            let procs = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("{dir}/cgroup.procs"))
                .expect("open the target's cgroup.procs");
            // SAFETY: only write(2) between fork and exec.
            unsafe {
                child.pre_exec(move || {
                    // "0" moves the writing process: the child itself.
                    (&procs).write_all(b"0")
                });
            }
        }
        match child.spawn() {
            Ok(mut child) => {
                use std::os::unix::process::ExitStatusExt as _;
                println!("started {}", child.id());
                std::io::stdout().flush().expect("flush");
                let signal = child.wait().ok().and_then(|status| status.signal()).unwrap_or(0);
                println!("exited {} signal {signal}", child.id());
                std::io::stdout().flush().expect("flush");
            }
            Err(err) => eprintln!("supervise: cannot start {program}: {err}"),
        }
        std::thread::sleep(Duration::from_millis(restart_ms));
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: chaos-workload udp-blast --to ADDR:PORT --id N --count N [--pps N] | udp-sink --port P \
         [--idle-ms MS] [--max-secs S] [--times] | tcp-listen --port P | tcp-connect --to ADDR:PORT \
         [--timeout-ms MS] | http-serve --port P [--addr IP] [--log FILE] | sleep --secs S | sync-loop --path FILE --count N \
         | getrandom-loop --count N | fsync-loop --path FILE --count N"
    );
    std::process::exit(2)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

fn datagram(id: u32, seq: u64, stamp: u64) -> [u8; PAYLOAD] {
    let mut payload = [0u8; PAYLOAD];
    payload[..4].copy_from_slice(&id.to_le_bytes());
    payload[4..12].copy_from_slice(&seq.to_le_bytes());
    payload[12..20].copy_from_slice(&stamp.to_le_bytes());
    for (i, byte) in payload[20..PAYLOAD - 4].iter_mut().enumerate() {
        *byte = (seq as u8).wrapping_add(i as u8);
    }
    let check = fnv1a(&payload[..PAYLOAD - 4]);
    payload[PAYLOAD - 4..].copy_from_slice(&check.to_le_bytes());
    payload
}

/// `(count, pps)`: how many datagrams, how many a second (0: as fast as possible).
fn udp_blast(to: SocketAddr, id: u32, (count, pps): (u64, u64), from_port: u16, times: bool) {
    let bind: SocketAddr = if to.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], from_port))
    } else {
        SocketAddr::from(([0u16; 8], from_port))
    };
    let socket = UdpSocket::bind(bind).expect("bind");
    let start = Instant::now();
    let (mut errors, mut first_error) = (0u64, None::<String>);
    let mut sent_ns = Vec::with_capacity(if times { count as usize } else { 0 });
    for seq in 0..count {
        if let Some(gap_ns) = 1_000_000_000u64.checked_div(pps) {
            let due = start + Duration::from_nanos(seq * gap_ns);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let before = monotonic_ns();
        if let Err(err) = socket.send_to(&datagram(id, seq, before), to) {
            errors += 1;
            first_error.get_or_insert_with(|| err.to_string());
        }
        if times {
            sent_ns.push([before, monotonic_ns()]);
        }
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    let mut report =
        serde_json::json!({ "sent": count, "errors": errors, "first_error": first_error, "elapsed_ns": elapsed_ns });
    if times {
        report["times"] = serde_json::json!(sent_ns);
    }
    println!("{report}");
}

/// Per-sender statistics of what arrived.
#[derive(Default)]
struct Sender {
    received: u64,
    duplicates: u64,
    seqs: BTreeSet<u64>,
}

fn udp_sink(port: u16, idle_ms: u64, max_secs: u64, times: bool) {
    // Dual-stack: IPv4 arrives as mapped addresses on the same socket.
    let socket = UdpSocket::bind(("::", port)).expect("bind");
    // A big receive buffer, so the sink never drops what the network delivered (root only;
    // falls back to the default silently).
    let size: libc::c_int = 64 << 20;
    // SAFETY: valid fd, option pointer and length.
    unsafe {
        libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, (&raw const size).cast(), 4);
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let give_up = Instant::now() + Duration::from_secs(max_secs);
    socket.set_read_timeout(Some(Duration::from_secs(max_secs))).expect("timeout");
    let mut senders: BTreeMap<u32, Sender> = BTreeMap::new();
    let (mut corrupted, mut arrivals) = (0u64, Vec::new());
    let mut buf = [0u8; 2048];
    while Instant::now() < give_up {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let now = monotonic_ns();
                socket.set_read_timeout(Some(Duration::from_millis(idle_ms))).expect("timeout");
                let intact = n == PAYLOAD
                    && u32::from_le_bytes(buf[PAYLOAD - 4..PAYLOAD].try_into().expect("4"))
                        == fnv1a(&buf[..PAYLOAD - 4]);
                if !intact {
                    corrupted += 1;
                    continue;
                }
                let id = u32::from_le_bytes(buf[..4].try_into().expect("4"));
                let seq = u64::from_le_bytes(buf[4..12].try_into().expect("8"));
                let sender = senders.entry(id).or_default();
                if sender.seqs.insert(seq) {
                    sender.received += 1;
                } else {
                    sender.duplicates += 1;
                }
                if times {
                    let sent = u64::from_le_bytes(buf[12..20].try_into().expect("8"));
                    arrivals.push((id, seq, now, sent));
                }
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(err) => panic!("recv: {err}"),
        }
    }
    let received: BTreeMap<u32, u64> = senders.iter().map(|(id, s)| (*id, s.received)).collect();
    let duplicates: BTreeMap<u32, u64> = senders.iter().map(|(id, s)| (*id, s.duplicates)).collect();
    // Runs of consecutive missing sequence numbers below the highest received one.
    let loss_runs: BTreeMap<u32, Vec<u64>> = senders
        .iter()
        .map(|(id, s)| {
            let (mut runs, mut expected) = (Vec::new(), 0u64);
            for &seq in &s.seqs {
                if seq > expected {
                    runs.push(seq - expected);
                }
                expected = seq + 1;
            }
            (*id, runs)
        })
        .collect();
    let report = serde_json::json!({
        "received": received, "duplicates": duplicates, "corrupted": corrupted,
        "loss_runs": loss_runs, "arrivals": arrivals,
    });
    println!("{report}");
}

/// What happened to the calls of one syscall: attempt numbers of the failures, errno counts.
#[derive(Default, serde::Serialize)]
struct Calls {
    calls: u64,
    ok: u64,
    errors: BTreeMap<i32, u64>,
    failed_at: Vec<u64>,
    /// Wall time of the whole loop (loops that time themselves).
    elapsed_ns: u64,
    /// CLOCK_MONOTONIC ns at the start of each call (loops that time their calls).
    at_ns: Vec<u64>,
}

impl Calls {
    fn record<T>(&mut self, result: std::io::Result<T>) -> Option<T> {
        self.calls += 1;
        match result {
            Ok(value) => {
                self.ok += 1;
                Some(value)
            }
            Err(err) => {
                *self.errors.entry(err.raw_os_error().unwrap_or(-1)).or_default() += 1;
                self.failed_at.push(self.calls);
                None
            }
        }
    }
}

fn connect_loop(to: SocketAddr, count: u64, gap_ms: u64) {
    let mut calls = Calls::default();
    let start = Instant::now();
    for _ in 0..count {
        calls.at_ns.push(monotonic_ns());
        calls.record(TcpStream::connect_timeout(&to, Duration::from_secs(2)));
        if gap_ms > 0 {
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
    }
    calls.elapsed_ns = start.elapsed().as_nanos() as u64;
    println!("{}", serde_json::to_string(&calls).expect("serialize"));
}

fn udp_connect_loop(to: SocketAddr, count: u64) {
    let socket = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).expect("bind");
    let mut calls = Calls::default();
    let start = Instant::now();
    for _ in 0..count {
        calls.record(socket.connect(to));
    }
    calls.elapsed_ns = start.elapsed().as_nanos() as u64;
    println!("{}", serde_json::to_string(&calls).expect("serialize"));
}

fn open_loop(path: &str, count: u64) {
    use std::io::Read as _;
    let mut calls = Calls::default();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    for _ in 0..count {
        if let Some(mut file) = calls.record(std::fs::File::open(path)) {
            let _ = file.read(&mut buf);
        }
    }
    calls.elapsed_ns = start.elapsed().as_nanos() as u64;
    println!("{}", serde_json::to_string(&calls).expect("serialize"));
}

fn file_loop(dir: &str, count: u64) {
    use std::io::{Read as _, Write as _};
    let (mut open, mut write, mut fsync, mut read, mut unlink) =
        (Calls::default(), Calls::default(), Calls::default(), Calls::default(), Calls::default());
    let data = [0x5au8; 4096];
    for i in 0..count {
        let path = format!("{dir}/file-{i}");
        if let Some(mut file) =
            open.record(std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path))
        {
            write.record(file.write(&data));
            fsync.record(file.sync_all());
        }
        if let Some(mut file) = open.record(std::fs::File::open(&path)) {
            let mut buf = [0u8; 4096];
            read.record(file.read(&mut buf));
        }
        unlink.record(std::fs::remove_file(&path));
    }
    let report = serde_json::json!({ "openat": open, "write": write, "fsync": fsync, "read": read, "unlink": unlink });
    println!("{report}");
}

fn latency_loop(count: u64, gap_ms: u64) {
    use std::io::Read as _;
    let mut zero = std::fs::File::open("/dev/zero").expect("open /dev/zero");
    let mut byte = [0u8; 1];
    let (mut latencies, mut starts) = (Vec::with_capacity(count as usize), Vec::with_capacity(count as usize));
    for _ in 0..count {
        starts.push(monotonic_ns());
        let start = Instant::now();
        zero.read_exact(&mut byte).expect("read /dev/zero");
        latencies.push(start.elapsed().as_nanos() as u64);
        if gap_ms > 0 {
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
    }
    println!("{}", serde_json::json!({ "latencies_ns": latencies, "starts_ns": starts }));
}

fn getpid_loop(count: u64) {
    let start = Instant::now();
    for _ in 0..count {
        // SAFETY: getpid has no preconditions; the raw syscall always enters the kernel.
        unsafe { libc::syscall(libc::SYS_getpid) };
    }
    println!("{}", serde_json::json!({ "calls": count, "elapsed_ns": start.elapsed().as_nanos() as u64 }));
}

/// Writes `path`, then `count` fsyncs and after them `count` fdatasyncs of it (in that order, so
/// a schedule over both calls has a known sequence).
fn sync_loop(path: &str, count: u64) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("create the file to sync");
    let (mut fsync, mut fdatasync) = (Calls::default(), Calls::default());
    let start = Instant::now();
    for _ in 0..count {
        file.write_all(b"x").expect("write");
        fsync.record(file.sync_all());
    }
    for _ in 0..count {
        file.write_all(b"y").expect("write");
        fdatasync.record(file.sync_data());
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    (fsync.elapsed_ns, fdatasync.elapsed_ns) = (elapsed_ns, elapsed_ns);
    println!("{}", serde_json::json!({ "fsync": fsync, "fdatasync": fdatasync }));
}

/// `count` fsync(2) calls on one file, timed (the benchmark's loop: nothing else per round).
fn fsync_loop(path: &str, count: u64) {
    let file = std::fs::File::create(path).expect("create the file to sync");
    let mut calls = Calls::default();
    let start = Instant::now();
    for _ in 0..count {
        calls.record(file.sync_all());
    }
    calls.elapsed_ns = start.elapsed().as_nanos() as u64;
    println!("{}", serde_json::to_string(&calls).expect("serialize"));
}

/// `count` getrandom(2) calls for 16 bytes (a call no LSM or cgroup hook sees).
fn getrandom_loop(count: u64) {
    let mut calls = Calls::default();
    let mut buf = [0u8; 16];
    let start = Instant::now();
    for _ in 0..count {
        // SAFETY: the buffer is valid for its length; flags 0.
        let n = unsafe { libc::syscall(libc::SYS_getrandom, buf.as_mut_ptr(), buf.len(), 0) };
        calls.record(if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    calls.elapsed_ns = start.elapsed().as_nanos() as u64;
    println!("{}", serde_json::to_string(&calls).expect("serialize"));
}

fn udp_echo(port: u16) {
    let socket = UdpSocket::bind(("::", port)).expect("bind");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

fn udp_ping(to: SocketAddr, count: u64, interval_ms: u64) {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("addr");
    let socket = UdpSocket::bind(bind).expect("bind");
    socket.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let (mut rtts, mut sent, mut lost) = (Vec::new(), Vec::new(), 0u64);
    let mut buf = [0u8; 64];
    for seq in 0..count {
        let sent_ns = monotonic_ns();
        let start = Instant::now();
        socket.send_to(&seq.to_le_bytes(), to).expect("send");
        // Wait for this ping's echo; older echoes arriving late are skipped.
        loop {
            match socket.recv(&mut buf) {
                Ok(n) if n >= 8 && u64::from_le_bytes(buf[..8].try_into().expect("8")) == seq => {
                    rtts.push(start.elapsed().as_nanos() as u64);
                    sent.push(sent_ns);
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
        let spent = start.elapsed();
        if spent < Duration::from_millis(interval_ms) {
            std::thread::sleep(Duration::from_millis(interval_ms) - spent);
        }
    }
    println!("{}", serde_json::json!({ "rtts_ns": rtts, "sent_ns": sent, "lost": lost }));
}

fn tcp_listen(port: u16) {
    let listener = TcpListener::bind(("::", port)).expect("bind");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    for stream in listener.incoming() {
        drop(stream);
    }
}

fn tcp_connect(to: SocketAddr, timeout_ms: u64) {
    let start = Instant::now();
    let result = TcpStream::connect_timeout(&to, Duration::from_millis(timeout_ms));
    let report = serde_json::json!({
        "connected": result.is_ok(),
        "error": result.err().map(|e| e.to_string()),
        "elapsed_ms": start.elapsed().as_millis() as u64,
    });
    println!("{report}");
}

/// A tiny HTTP/1.1 server: one thread per connection, 200 "ok" to every request.
fn metrics_serve(port: u16, probe: SocketAddr, timeout_ms: u64) {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let (total, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    {
        let (total, errors) = (total.clone(), errors.clone());
        std::thread::spawn(move || {
            loop {
                if TcpStream::connect_timeout(&probe, Duration::from_millis(timeout_ms)).is_err() {
                    errors.fetch_add(1, Relaxed);
                }
                total.fetch_add(1, Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match std::io::Read::read(&mut stream, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let body = format!(
            "# TYPE workload_probe_total counter\nworkload_probe_total {}\n\
             # TYPE workload_probe_errors_total counter\nworkload_probe_errors_total {}\n",
            total.load(Relaxed),
            errors.load(Relaxed)
        );
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
}

fn http_serve(addr: String, port: u16, status: u16, delay_ms: u64, log: Option<String>) {
    let ip: std::net::IpAddr = addr.parse().unwrap_or_else(|_| usage());
    let listener = TcpListener::bind((ip, port)).expect("bind");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let answer = format!("HTTP/1.1 {status} Chaos\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let answer = answer.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut stream, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            std::thread::sleep(Duration::from_millis(delay_ms));
            let answered = stream.write_all(answer.as_bytes());
            if let (Ok(()), Some(log)) = (answered, log) {
                // One write per line: the threads append to one file.
                let line =
                    format!("{}\n", String::from_utf8_lossy(request.split(|&b| b == b'\r').next().unwrap_or_default()));
                let file = std::fs::OpenOptions::new().create(true).append(true).open(&log);
                file.and_then(|mut f| f.write_all(line.as_bytes())).expect("append to the request log");
            }
        });
    }
}

fn getppid_loop(count: u64, gap_ms: u64) {
    let mut latencies = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let start = Instant::now();
        // SAFETY: getppid has no preconditions; raw, so each round is exactly one call.
        unsafe { libc::syscall(libc::SYS_getppid) };
        latencies.push(start.elapsed().as_nanos() as u64);
        if gap_ms > 0 {
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
    }
    println!("{}", serde_json::json!({ "latencies_ns": latencies }));
}

/// ICMP echo requests from a raw socket (root), each waited for up to `wait_ms`.
fn icmp_ping(to: std::net::Ipv4Addr, count: u64, interval_ms: u64, wait_ms: u64) {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(fd >= 0, "raw ICMP socket: {}", std::io::Error::last_os_error());
    let timeout = libc::timeval { tv_sec: (wait_ms / 1000) as i64, tv_usec: ((wait_ms % 1000) * 1000) as i64 };
    // SAFETY: setsockopt with a valid timeval of its size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    // SAFETY: sockaddr_in is a plain C struct; all zeroes is a valid value.
    let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    address.sin_family = libc::AF_INET as u16;
    address.sin_addr.s_addr = u32::from_ne_bytes(to.octets());
    let id = (std::process::id() & 0xffff) as u16;
    let (mut sent, mut answered) = (0u64, 0u64);
    for seq in 0..count as u16 {
        // Echo request: type 8, code 0, checksum, identifier, sequence, 8 bytes of payload.
        let mut packet = [0u8; 16];
        packet[0] = 8;
        packet[4..6].copy_from_slice(&id.to_be_bytes());
        packet[6..8].copy_from_slice(&seq.to_be_bytes());
        let sum = packet.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        packet[2..4].copy_from_slice(&(!(((folded & 0xffff) + (folded >> 16)) as u16)).to_be_bytes());
        // SAFETY: sendto with a valid buffer and address of their sizes.
        let rc = unsafe {
            libc::sendto(
                fd,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if rc == packet.len() as isize {
            sent += 1;
        }
        // The raw socket gets every ICMP message of the namespace: wait for this echo's reply.
        let until = Instant::now() + Duration::from_millis(wait_ms);
        while Instant::now() < until {
            let mut reply = [0u8; 128];
            // SAFETY: recv into a buffer of its size.
            let n = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0) };
            if n < 0 {
                break; // timed out
            }
            let header = usize::from(reply[0] & 0x0f) * 4;
            let icmp = &reply[header..n as usize];
            if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
                answered += 1;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
    println!("{}", serde_json::json!({ "sent": sent, "answered": answered }));
}

fn heartbeat(secs: u64, over_ms: u64) {
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let end = monotonic_ns() + secs * 1_000_000_000;
    let mut gaps = Vec::new();
    let mut last = monotonic_ns();
    while last < end {
        std::thread::sleep(Duration::from_millis(1));
        let now = monotonic_ns();
        if now - last > over_ms * 1_000_000 {
            gaps.push([last, now]);
        }
        last = now;
    }
    println!("{}", serde_json::json!({ "gaps": gaps }));
}

/// The errno of a libc call that returned `rc`, 0 if it worked.
fn errno_of(rc: libc::c_long) -> i32 {
    if rc < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) } else { 0 }
}

fn socket_calls() {
    use std::io::BufRead as _;
    // SAFETY: socket(2) with constant arguments.
    let socket = |family: i32| unsafe { libc::socket(family, libc::SOCK_DGRAM, 0) };
    // Made before any fault is armed: a socket keeps the cgroup it was made in, so the hooks
    // of that cgroup see every later call on it.
    let sockets: Vec<i32> = [libc::AF_INET, libc::AF_INET6].iter().cycle().take(6).map(|&f| socket(f)).collect();
    assert!(sockets.iter().all(|&fd| fd >= 0), "socket: {}", std::io::Error::last_os_error());
    let (bind4, bind6, connect4, connect6, send4, send6) =
        (sockets[0], sockets[1], sockets[2], sockets[3], sockets[4], sockets[5]);
    // SAFETY: sockaddr_in and sockaddr_in6 are plain C structs; all zeroes is a valid value.
    let mut v4: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    v4.sin_family = libc::AF_INET as u16;
    v4.sin_port = 9u16.to_be();
    v4.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    // SAFETY: as above.
    let mut v6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    v6.sin6_family = libc::AF_INET6 as u16;
    v6.sin6_port = 9u16.to_be();
    v6.sin6_addr.s6_addr = std::net::Ipv6Addr::LOCALHOST.octets();
    let (mut bind_v4, mut bind_v6) = (v4, v6);
    (bind_v4.sin_port, bind_v6.sin6_port) = (0, 0);
    let addr4 =
        |a: &libc::sockaddr_in| (std::ptr::from_ref(a).cast::<libc::sockaddr>(), size_of::<libc::sockaddr_in>() as u32);
    let addr6 = |a: &libc::sockaddr_in6| {
        (std::ptr::from_ref(a).cast::<libc::sockaddr>(), size_of::<libc::sockaddr_in6>() as u32)
    };
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("read stdin");
    let byte = [0u8; 1];
    let mut value: libc::c_int = 65536;
    let mut length = size_of::<libc::c_int>() as libc::socklen_t;
    let value_ptr = std::ptr::from_mut(&mut value).cast::<libc::c_void>();
    // SAFETY: plain socket calls on our own descriptors with valid addresses and buffers that
    // outlive each call; each errno is read right after its call (an array's elements are
    // evaluated in order).
    let report: BTreeMap<&str, i32> = unsafe {
        [
            ("socket", errno_of(socket(libc::AF_INET) as libc::c_long)),
            ("bind4", errno_of(libc::bind(bind4, addr4(&bind_v4).0, addr4(&bind_v4).1) as libc::c_long)),
            ("bind6", errno_of(libc::bind(bind6, addr6(&bind_v6).0, addr6(&bind_v6).1) as libc::c_long)),
            ("connect4", errno_of(libc::connect(connect4, addr4(&v4).0, addr4(&v4).1) as libc::c_long)),
            ("connect6", errno_of(libc::connect(connect6, addr6(&v6).0, addr6(&v6).1) as libc::c_long)),
            (
                "sendto4",
                errno_of(libc::sendto(send4, byte.as_ptr().cast(), 1, 0, addr4(&v4).0, addr4(&v4).1) as libc::c_long),
            ),
            (
                "sendto6",
                errno_of(libc::sendto(send6, byte.as_ptr().cast(), 1, 0, addr6(&v6).0, addr6(&v6).1) as libc::c_long),
            ),
            (
                "setsockopt",
                errno_of(libc::setsockopt(send4, libc::SOL_SOCKET, libc::SO_RCVBUF, value_ptr, length) as libc::c_long),
            ),
            (
                "getsockopt",
                errno_of(libc::getsockopt(send4, libc::SOL_SOCKET, libc::SO_RCVBUF, value_ptr, &raw mut length)
                    as libc::c_long),
            ),
        ]
    }
    .into_iter()
    .collect();
    println!("{}", serde_json::to_string(&report).expect("serialize"));
}

/// One call per BPF LSM hook, made while every LSM-served syscall of the cgroup fails: so
/// between the two self-stops this process makes no syscall on a hook but the calls themselves
/// (no stdin read, no stdout write, no allocation that could mmap), and everything a call needs
/// is made beforehand. execve is left out: its open of the binary meets file_open before
/// bprm_check_security, so the test fails it alone in a second fault.
fn lsm_calls(dir: &std::path::Path) {
    use std::{ffi::CString, os::unix::ffi::OsStrExt as _};
    let path = |name: &str| CString::new(dir.join(name).as_os_str().as_bytes()).expect("path without NUL");
    let (file, victim, empty_dir, new_dir, rename_from, rename_to) =
        (path("file"), path("victim"), path("empty"), path("new"), path("from"), path("to"));
    let (listening, bound) = (path("listening.sock"), path("bound.sock"));
    std::fs::write(dir.join("file"), b"chaos").expect("write file");
    std::fs::write(dir.join("victim"), b"").expect("write victim");
    std::fs::write(dir.join("from"), b"").expect("write from");
    std::fs::create_dir(dir.join("empty")).expect("mkdir empty");
    let file_fd = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("file")).expect("open file");
    let fd = file_fd.as_raw_fd();
    // SAFETY: socket(2) with constant arguments.
    let unix_socket = |kind: i32| unsafe { libc::socket(libc::AF_UNIX, kind, 0) };
    let unix_address = |path: &CString| {
        // SAFETY: sockaddr_un is a plain C struct; all zeroes is a valid value.
        let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        address.sun_family = libc::AF_UNIX as u16;
        let bytes = path.as_bytes();
        assert!(bytes.len() < address.sun_path.len(), "socket path too long: {path:?}");
        for (slot, &byte) in address.sun_path.iter_mut().zip(bytes) {
            *slot = byte as libc::c_char;
        }
        address
    };
    let (listening_address, bound_address) = (unix_address(&listening), unix_address(&bound));
    let address_length = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    let as_sockaddr = |a: &libc::sockaddr_un| std::ptr::from_ref(a).cast::<libc::sockaddr>();
    // A non-blocking listener: accept would wait for a connection if its hook let it through.
    let listener = unix_socket(libc::SOCK_STREAM | libc::SOCK_NONBLOCK);
    let to_listen = unix_socket(libc::SOCK_STREAM);
    let to_bind = unix_socket(libc::SOCK_STREAM);
    let to_connect = unix_socket(libc::SOCK_STREAM);
    let mut pair = [0; 2];
    // SAFETY: socketpair writes two descriptors into `pair`; bind and listen get valid addresses.
    unsafe {
        assert!(libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, pair.as_mut_ptr()) == 0, "socketpair");
        assert!(libc::bind(listener, as_sockaddr(&listening_address), address_length) == 0, "bind listener");
        assert!(libc::listen(listener, 8) == 0, "listen");
        assert!(libc::bind(to_listen, as_sockaddr(&bound_address), address_length) == 0, "bind to_listen");
    }
    assert!([listener, to_listen, to_bind, to_connect].iter().all(|&s| s >= 0), "socket");
    let to_bind_address = unix_address(&path("to_bind.sock"));
    let mut byte = [0u8; 1];
    let mut queued: libc::c_int = 0;
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: msghdr is a plain C struct; all zeroes is a valid value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &raw mut iov;
    message.msg_iovlen = 1;
    println!("ready");
    std::io::stdout().flush().expect("flush");
    stop_self();
    let errno = errno_of;
    // SAFETY: (each call) plain syscalls on this process's own descriptors and paths, with
    // buffers and addresses that outlive the call.
    let report: [(&str, i32); 17] = unsafe {
        [
            (
                "file_open:openat",
                errno(libc::c_long::from(libc::openat(libc::AT_FDCWD, file.as_ptr(), libc::O_RDONLY))),
            ),
            ("file_permission:read", errno(libc::read(fd, byte.as_mut_ptr().cast(), 1) as libc::c_long)),
            ("file_permission:write", errno(libc::write(fd, byte.as_ptr().cast(), 1) as libc::c_long)),
            ("file_ioctl:ioctl", errno(libc::c_long::from(libc::ioctl(fd, libc::FIONREAD, &raw mut queued)))),
            ("mmap_file:mmap", {
                let map = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0);
                if map == libc::MAP_FAILED { errno(-1) } else { 0 }
            }),
            ("inode_unlink:unlink", errno(libc::c_long::from(libc::unlink(victim.as_ptr())))),
            ("inode_mkdir:mkdir", errno(libc::c_long::from(libc::mkdir(new_dir.as_ptr(), 0o755)))),
            ("inode_rmdir:rmdir", errno(libc::c_long::from(libc::rmdir(empty_dir.as_ptr())))),
            ("inode_rename:rename", errno(libc::c_long::from(libc::rename(rename_from.as_ptr(), rename_to.as_ptr())))),
            ("task_alloc:fork", {
                let pid = libc::fork();
                if pid == 0 {
                    // The hook let a child through: it leaves at once, without touching anything.
                    libc::_exit(0);
                }
                errno(libc::c_long::from(pid))
            }),
            ("socket_create:socket", errno(libc::c_long::from(unix_socket(libc::SOCK_STREAM)))),
            (
                "socket_bind:bind",
                errno(libc::c_long::from(libc::bind(to_bind, as_sockaddr(&to_bind_address), address_length))),
            ),
            ("socket_listen:listen", errno(libc::c_long::from(libc::listen(to_listen, 8)))),
            (
                "socket_connect:connect",
                errno(libc::c_long::from(libc::connect(to_connect, as_sockaddr(&listening_address), address_length))),
            ),
            (
                "socket_accept:accept",
                errno(libc::c_long::from(libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), 0))),
            ),
            ("socket_sendmsg:sendmsg", errno(libc::sendmsg(pair[0], &raw const message, 0) as libc::c_long)),
            (
                "socket_recvmsg:recvmsg",
                errno(libc::recvmsg(pair[1], &raw mut message, libc::MSG_DONTWAIT) as libc::c_long),
            ),
        ]
    };
    stop_self();
    let report: BTreeMap<&str, i32> = report.into_iter().collect();
    println!("{}", serde_json::to_string(&report).expect("serialize"));
}

/// Stops this process until the test continues it (kill(2) is on no LSM hook chaos serves).
fn stop_self() {
    // SAFETY: kill(2) on this process.
    assert!(unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) } == 0, "SIGSTOP");
}
