//! Traffic for chaos's tests and benchmarks, run inside test cgroups and namespaces.
//!
//!   chaos-workload udp-blast --to IP:PORT --id N --count N [--pps N]
//!       sends numbered datagrams, prints {"sent","errors","first_error"}
//!   chaos-workload udp-sink --port P [--idle-ms MS] [--max-secs S] [--times]
//!       prints "ready", counts datagrams per sender until idle, prints a JSON report
//!
//! Datagram payload: sender id (u32), sequence (u64), CLOCK_MONOTONIC send time (u64), padding.
use std::{
    collections::{BTreeMap, HashSet},
    io::{ErrorKind, Write as _},
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

const PAYLOAD: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, flags)) = args.split_first() else { usage() };
    let flag = |name: &str| flags.iter().position(|a| a == name).and_then(|i| flags.get(i + 1)).cloned();
    let has = |name: &str| flags.iter().any(|a| a == name);
    let num = |name: &str, default: u64| flag(name).map_or(default, |v| v.parse().unwrap_or_else(|_| usage()));
    match command.as_str() {
        "udp-blast" => {
            let to: SocketAddr = flag("--to").unwrap_or_else(|| usage()).parse().unwrap_or_else(|_| usage());
            udp_blast(to, num("--id", 0) as u32, num("--count", 1000), num("--pps", 0));
        }
        "udp-sink" => udp_sink(num("--port", 0) as u16, num("--idle-ms", 500), num("--max-secs", 120), has("--times")),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: chaos-workload udp-blast --to IP:PORT --id N --count N [--pps N] | udp-sink --port P [--idle-ms MS] [--max-secs S] [--times]");
    std::process::exit(2)
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn udp_blast(to: SocketAddr, id: u32, count: u64, pps: u64) {
    let bind: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("addr");
    let socket = UdpSocket::bind(bind).expect("bind");
    let start = Instant::now();
    let (mut errors, mut first_error) = (0u64, None::<String>);
    let mut payload = [0u8; PAYLOAD];
    payload[..4].copy_from_slice(&id.to_le_bytes());
    for seq in 0..count {
        if let Some(gap_ns) = 1_000_000_000u64.checked_div(pps) {
            let due = start + Duration::from_nanos(seq * gap_ns);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        payload[4..12].copy_from_slice(&seq.to_le_bytes());
        payload[12..20].copy_from_slice(&monotonic_ns().to_le_bytes());
        if let Err(err) = socket.send_to(&payload, to) {
            errors += 1;
            first_error.get_or_insert_with(|| err.to_string());
        }
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    let report = serde_json::json!({ "sent": count, "errors": errors, "first_error": first_error, "elapsed_ns": elapsed_ns });
    println!("{report}");
}

fn udp_sink(port: u16, idle_ms: u64, max_secs: u64, times: bool) {
    let socket = UdpSocket::bind(("0.0.0.0", port)).expect("bind");
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
    let mut received: BTreeMap<u32, u64> = BTreeMap::new();
    let mut duplicates: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < give_up {
        match socket.recv(&mut buf) {
            Ok(n) if n >= 20 => {
                let now = monotonic_ns();
                let id = u32::from_le_bytes(buf[..4].try_into().expect("4"));
                let seq = u64::from_le_bytes(buf[4..12].try_into().expect("8"));
                if seen.insert((id, seq)) {
                    *received.entry(id).or_default() += 1;
                } else {
                    *duplicates.entry(id).or_default() += 1;
                }
                if times {
                    arrivals.push((id, seq, now));
                }
                socket.set_read_timeout(Some(Duration::from_millis(idle_ms))).expect("timeout");
            }
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(err) => panic!("recv: {err}"),
        }
    }
    let report = serde_json::json!({ "received": received, "duplicates": duplicates, "arrivals": arrivals });
    println!("{report}");
}
