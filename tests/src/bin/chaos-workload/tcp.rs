//! Long-lived TCP connections for `net sever`'s tests: a server and a set of clients that each
//! say, when asked ("report" on stdin), what became of every connection: bytes carried, and the
//! error that ended it with the CLOCK_MONOTONIC time it was seen (each connection has a thread
//! blocked in read(2), which the kernel wakes the moment the connection is aborted or reset).
//!
//!   chaos-workload tcp-serve --port P [--echo]
//!       prints "ready"; counts (and with --echo returns) what each connection sends
//!   chaos-workload tcp-clients --to ADDR:PORT --count N [--ping-ms MS] [--send BYTES --chunk C --gap-ms G]
//!       opens N connections and prints "ready"; --ping-ms writes one byte on each every MS (an
//!       echo server returns it); --send writes BYTES on each in chunks of C, G ms apart
//!       (TCP_NODELAY: one segment per chunk)
//!   chaos-workload tcp-hold --port P / tcp-many --to ADDR:PORT --count N
//!       the benchmark's thousands of idle connections: a server that only holds them, and
//!       clients watched by one epoll that report how many ended and when (see `many`)
//!
//! Both answer "report" on stdin with one JSON line {"connections": [{"local", "remote",
//! "received", "sent", "error", "error_at_ns", "state"}]} and exit when stdin closes.
use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;

/// What happened to one connection so far.
#[derive(Default)]
struct Connection {
    local: String,
    remote: String,
    received: u64,
    sent: u64,
    /// The error that ended it (`ECONNRESET`, `ECONNABORTED`...), or `EOF`.
    error: Option<String>,
    error_at_ns: u64,
}

type Shared = Arc<Mutex<Vec<Connection>>>;

/// `a.b.c.d:p` for a v4-mapped IPv6 address, as the clients see themselves.
fn address(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().map_or(addr.to_string(), |v4| format!("{v4}:{}", v6.port())),
        SocketAddr::V4(_) => addr.to_string(),
    }
}

fn errno_name(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ECONNRESET) => "ECONNRESET".into(),
        Some(libc::ECONNABORTED) => "ECONNABORTED".into(),
        Some(libc::EPIPE) => "EPIPE".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(n) => format!("errno {n}"),
        None => err.to_string(),
    }
}

/// Records the end of connection `index`, seen by one of its threads at `at_ns`: the earliest
/// time either saw it, and its cause. The kernel reports the cause (ECONNRESET, ECONNABORTED)
/// to the first call after it; the other thread's call then gets the consequence (EPIPE from a
/// write, EOF from a read), and may take the lock first.
fn ended(shared: &Shared, index: usize, error: String, at_ns: u64) {
    let consequence = |e: &str| matches!(e, "EPIPE" | "EOF");
    let mut all = shared.lock().expect("lock");
    let connection = &mut all[index];
    match &connection.error {
        None => (connection.error, connection.error_at_ns) = (Some(error), at_ns),
        Some(old) => {
            if consequence(old) && !consequence(&error) {
                connection.error = Some(error);
            }
            connection.error_at_ns = connection.error_at_ns.min(at_ns);
        }
    }
}

/// Reads until the connection ends, counting bytes; echoes them back when asked.
fn read_until_end(mut stream: TcpStream, shared: &Shared, index: usize, echo: bool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return ended(shared, index, "EOF".into(), super::monotonic_ns()),
            Ok(n) => {
                shared.lock().expect("lock")[index].received += n as u64;
                if echo && let Err(err) = stream.write_all(&buf[..n]) {
                    return ended(shared, index, errno_name(&err), super::monotonic_ns());
                }
            }
            Err(err) => return ended(shared, index, errno_name(&err), super::monotonic_ns()),
        }
    }
}

/// The TCP state of a socket (TCP_INFO's first byte: 1 is ESTABLISHED).
fn tcp_state(stream: &TcpStream) -> u8 {
    let mut info = [0u8; 104];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of the length given.
    let rc = unsafe {
        libc::getsockopt(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &raw mut len)
    };
    if rc == 0 { info[0] } else { 0 }
}

/// Answers "report" lines on stdin until it closes.
fn serve_reports(shared: &Shared, streams: &Mutex<Vec<TcpStream>>) {
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if line.trim() != "report" {
            continue;
        }
        let streams = streams.lock().expect("lock");
        let all = shared.lock().expect("lock");
        let connections: Vec<serde_json::Value> = all
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "local": c.local, "remote": c.remote, "received": c.received, "sent": c.sent,
                    "error": c.error, "error_at_ns": c.error_at_ns,
                    "state": streams.get(i).map_or(0, tcp_state),
                })
            })
            .collect();
        println!("{}", json!({ "connections": connections }));
        std::io::stdout().flush().expect("flush");
    }
}

pub fn serve(port: u16, echo: bool) {
    let listener = TcpListener::bind(("::", port)).expect("bind");
    let shared: Shared = Arc::default();
    let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    {
        let (shared, streams) = (Arc::clone(&shared), Arc::clone(&streams));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let index = {
                    let mut all = shared.lock().expect("lock");
                    all.push(Connection {
                        local: stream.local_addr().map(address).unwrap_or_default(),
                        remote: stream.peer_addr().map(address).unwrap_or_default(),
                        ..Connection::default()
                    });
                    streams.lock().expect("lock").push(stream.try_clone().expect("clone"));
                    all.len() - 1
                };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || read_until_end(stream, &shared, index, echo));
            }
        });
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    serve_reports(&shared, &streams);
}

/// What `tcp-clients --send` writes on each connection.
pub struct Send {
    pub bytes: u64,
    pub chunk: u64,
    pub gap: Duration,
}

pub fn clients(to: SocketAddr, count: u64, ping: Option<Duration>, send: Option<Send>) {
    let shared: Shared = Arc::default();
    let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    for index in 0..count as usize {
        let stream = TcpStream::connect(to).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        shared.lock().expect("lock").push(Connection {
            local: stream.local_addr().map(address).unwrap_or_default(),
            remote: address(to),
            ..Connection::default()
        });
        streams.lock().expect("lock").push(stream.try_clone().expect("clone"));
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || read_until_end(stream, &shared, index, false));
    }
    let writers: Vec<TcpStream> = streams.lock().expect("lock").iter().map(|s| s.try_clone().expect("clone")).collect();
    if let Some(send) = send {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let mut sent = 0;
            while sent < send.bytes {
                let chunk = vec![b's'; send.chunk.min(send.bytes - sent) as usize];
                for (index, mut stream) in writers.iter().enumerate() {
                    match stream.write_all(&chunk) {
                        Ok(()) => shared.lock().expect("lock")[index].sent += chunk.len() as u64,
                        Err(err) => ended(&shared, index, errno_name(&err), super::monotonic_ns()),
                    }
                }
                sent += chunk.len() as u64;
                std::thread::sleep(send.gap);
            }
        });
    } else if let Some(every) = ping {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            loop {
                for (index, mut stream) in writers.iter().enumerate() {
                    if shared.lock().expect("lock")[index].error.is_some() {
                        continue;
                    }
                    match stream.write_all(b"p") {
                        Ok(()) => shared.lock().expect("lock")[index].sent += 1,
                        Err(err) => ended(&shared, index, errno_name(&err), super::monotonic_ns()),
                    }
                }
                std::thread::sleep(every);
            }
        });
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    serve_reports(&shared, &streams);
}

/// Raises this process's open-file limit to its hard limit: the benchmark's thousands of
/// connections are as many descriptors.
fn more_descriptors() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointers to an rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
    }
}

/// `tcp-hold --port P`: accepts connections and keeps them open, one thread for all (the
/// benchmark's servers hold thousands); prints "ready".
pub fn hold(port: u16) {
    more_descriptors();
    let listener = TcpListener::bind(("::", port)).expect("bind");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    let mut held = Vec::new();
    for stream in listener.incoming().map_while(Result::ok) {
        held.push(stream);
    }
}

/// `tcp-many --to ADDR:PORT --count N`: N idle connections watched by one epoll; prints "ready"
/// once all are up, then answers "report" on stdin with {"count", "ended", "first_ns",
/// "last_ns"}: how many have ended (error or hang-up) and the CLOCK_MONOTONIC times the first
/// and the last end were seen.
pub fn many(to: SocketAddr, count: u64) {
    more_descriptors();
    // SAFETY: epoll_create1 returns a new descriptor (kept for the process's life).
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1: {}", std::io::Error::last_os_error());
    let mut streams = Vec::with_capacity(count as usize);
    for index in 0..count {
        let stream = TcpStream::connect(to).unwrap_or_else(|e| panic!("connection {index}: {e}"));
        let mut event =
            libc::epoll_event { events: (libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) as u32, u64: index };
        // SAFETY: a valid epoll and socket descriptor, and an event to copy.
        let rc = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &raw mut event) };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        streams.push(stream);
    }
    let ends: Arc<Mutex<(u64, u64, u64)>> = Arc::default();
    {
        let ends = Arc::clone(&ends);
        std::thread::spawn(move || {
            let mut seen = vec![false; count as usize];
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
            loop {
                // SAFETY: a valid epoll descriptor and a buffer of the length given.
                let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
                let at_ns = super::monotonic_ns();
                for event in events.iter().take(n.max(0) as usize) {
                    let index = event.u64 as usize;
                    if index < seen.len() && !seen[index] {
                        seen[index] = true;
                        let mut ends = ends.lock().expect("lock");
                        if ends.0 == 0 {
                            ends.1 = at_ns;
                        }
                        (ends.0, ends.2) = (ends.0 + 1, at_ns);
                    }
                }
            }
        });
    }
    println!("ready");
    std::io::stdout().flush().expect("flush");
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if line.trim() == "report" {
            let (ended, first_ns, last_ns) = *ends.lock().expect("lock");
            println!("{}", json!({ "count": count, "ended": ended, "first_ns": first_ns, "last_ns": last_ns }));
            std::io::stdout().flush().expect("flush");
        }
    }
    drop(streams);
}
