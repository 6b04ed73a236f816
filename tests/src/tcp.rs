//! Long-lived TCP connections in test cgroups and namespaces (`chaos-workload tcp-serve` and
//! `tcp-clients`), and what each side saw of every connection: bytes carried, the error that
//! ended it and when. `net sever`'s tests assert on these, not on what chaos printed.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddr,
    process::{Child, ChildStdin, ChildStdout, Stdio},
};

use crate::{
    cgroup::TestCgroup,
    net::Netns,
    workload::{command_in, workload_bin},
};

/// One connection as one end saw it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Seen {
    pub local: String,
    pub remote: String,
    pub received: u64,
    pub sent: u64,
    /// `ECONNRESET`, `ECONNABORTED`, `EPIPE`, `EOF`... None while it is open.
    pub error: Option<String>,
    /// CLOCK_MONOTONIC ns when the end was seen.
    pub error_at_ns: u64,
    /// TCP_INFO's state (1: ESTABLISHED; 0 once the socket is closed).
    pub state: u8,
}

#[derive(serde::Deserialize)]
struct Report {
    connections: Vec<Seen>,
}

/// A running `chaos-workload tcp-serve` or `tcp-clients`; killed on Drop.
pub struct Endpoint {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Endpoint {
    fn start(args: &[&str], cgroup: Option<&TestCgroup>, netns: &Netns) -> Self {
        let mut child = command_in(workload_bin(), cgroup, Some(netns))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {args:?}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read from the workload");
        assert_eq!(line.trim(), "ready", "{args:?} did not start");
        Self { child, stdin, stdout }
    }

    /// A server on `port` (IPv4 and IPv6) in `netns`, echoing what it receives when `echo`.
    #[must_use]
    pub fn server(netns: &Netns, cgroup: Option<&TestCgroup>, port: u16, echo: bool) -> Self {
        let port = port.to_string();
        let mut args = vec!["tcp-serve", "--port", &port];
        if echo {
            args.push("--echo");
        }
        Self::start(&args, cgroup, netns)
    }

    /// `count` connections to `to`, from `cgroup` (if any) in `netns`, each writing one byte
    /// every `ping_ms` (an echo server returns it).
    #[must_use]
    pub fn pinging(netns: &Netns, cgroup: Option<&TestCgroup>, to: SocketAddr, count: u32, ping_ms: u64) -> Self {
        let (to, count, ping) = (to.to_string(), count.to_string(), ping_ms.to_string());
        Self::start(&["tcp-clients", "--to", &to, "--count", &count, "--ping-ms", &ping], cgroup, netns)
    }

    /// One connection to `to` that writes `bytes` in chunks of `chunk`, `gap_ms` apart.
    #[must_use]
    pub fn sending(
        netns: &Netns,
        cgroup: Option<&TestCgroup>,
        to: SocketAddr,
        bytes: u64,
        chunk: u64,
        gap_ms: u64,
    ) -> Self {
        let (to, bytes, chunk, gap) = (to.to_string(), bytes.to_string(), chunk.to_string(), gap_ms.to_string());
        Self::start(
            &["tcp-clients", "--to", &to, "--count", "1", "--send", &bytes, "--chunk", &chunk, "--gap-ms", &gap],
            cgroup,
            netns,
        )
    }

    /// Every connection as this end sees it now.
    #[must_use]
    pub fn report(&mut self) -> Vec<Seen> {
        writeln!(self.stdin, "report").expect("ask the workload for its report");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the workload's report");
        let report: Report = serde_json::from_str(&line).unwrap_or_else(|e| panic!("report {line:?}: {e}"));
        report.connections
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
