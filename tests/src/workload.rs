//! Starting processes inside a test cgroup and/or network namespace, and running the
//! `chaos-workload` traffic tools.
use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
};

use crate::{cgroup::TestCgroup, net::Netns};

/// The workload binary built next to the test binaries.
#[must_use]
pub fn workload_bin() -> PathBuf {
    sibling_binary("chaos-workload", "CHAOS_WORKLOAD_BIN", option_env!("CARGO_BIN_EXE_chaos-workload"))
}

/// A binary of the workspace: `$var` if set, else next to the running test's target dir.
#[must_use]
pub fn sibling_binary(name: &str, var: &str, compiled_in: Option<&str>) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let beside = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join(name));
    if let Some(path) = beside.filter(|p| p.exists()) {
        return path;
    }
    if let Some(path) = compiled_in.map(PathBuf::from).filter(|p| p.exists()) {
        return path;
    }
    panic!("{name} not found: build it first (`cargo build --bins`; `cargo xtask test` does) or set {var}")
}

/// A command that starts inside `cgroup` and `netns` (either optional): the child joins them
/// between fork and exec, so the program's very first socket already belongs to both.
#[must_use]
pub fn command_in(program: impl Into<PathBuf>, cgroup: Option<&TestCgroup>, netns: Option<&Netns>) -> Command {
    let mut command = Command::new(program.into());
    let procs: Option<File> =
        cgroup.map(|c| OpenOptions::new().write(true).open(c.dir().join("cgroup.procs")).expect("open cgroup.procs"));
    let ns: Option<File> = netns.map(|n| File::open(n.path()).expect("open netns file"));
    // SAFETY: only async-signal-safe calls (setns, write) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if let Some(ns) = &ns
                && libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(mut procs) = procs.as_ref() {
                // "0" moves the writing process: the child itself.
                procs.write_all(b"0")?;
            }
            Ok(())
        });
    }
    command
}

/// Starts a `chaos-workload` server in `netns` and waits until it says "ready".
fn spawn_ready(args: &[&str], netns: &Netns) -> (Child, BufReader<ChildStdout>) {
    spawn_ready_in(args, None, netns)
}

/// [`spawn_ready`] with the server in `cgroup` too.
fn spawn_ready_in(args: &[&str], cgroup: Option<&TestCgroup>, netns: &Netns) -> (Child, BufReader<ChildStdout>) {
    let mut child = command_in(workload_bin(), cgroup, Some(netns))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {args:?}: {e}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read from the workload");
    assert_eq!(line.trim(), "ready", "{args:?} did not start");
    (child, stdout)
}

/// A running `chaos-workload udp-sink`, killed on Drop if still running.
pub struct UdpSink {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl UdpSink {
    /// The sink's pid: /proc/<pid>/net/snmp shows its namespace's UDP statistics.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a sink on `port` in `netns` that stops after `idle_ms` without packets (counted from
    /// its first packet) and reports per-sender counts, and arrival times when `times`.
    #[must_use]
    pub fn start(netns: &Netns, port: u16, idle_ms: u64, times: bool) -> Self {
        let (port, idle_ms) = (port.to_string(), idle_ms.to_string());
        let mut args = vec!["udp-sink", "--port", &port, "--idle-ms", &idle_ms];
        if times {
            args.push("--times");
        }
        let (child, stdout) = spawn_ready(&args, netns);
        Self { child, stdout }
    }

    /// [`UdpSink::start`] inside `cgroup`: its socket belongs to the cgroup, so the cgroup's
    /// ingress hook sees what it receives.
    #[must_use]
    pub fn start_in(cgroup: &TestCgroup, netns: &Netns, port: u16, idle_ms: u64) -> Self {
        let (port, idle_ms) = (port.to_string(), idle_ms.to_string());
        let (child, stdout) =
            spawn_ready_in(&["udp-sink", "--port", &port, "--idle-ms", &idle_ms], Some(cgroup), netns);
        Self { child, stdout }
    }

    /// Waits for the sink to finish and returns its report.
    #[must_use]
    pub fn finish(mut self) -> SinkReport {
        let mut json = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut json).expect("read udp-sink report");
        let status = self.child.wait().expect("wait udp-sink");
        assert!(status.success(), "udp-sink failed: {status}");
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("udp-sink report {json:?}: {e}"))
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct SinkReport {
    /// Datagrams received per sender id.
    pub received: std::collections::BTreeMap<u32, u64>,
    /// Datagrams received more than once (same sender and sequence number), per sender id.
    pub duplicates: std::collections::BTreeMap<u32, u64>,
    /// Datagrams whose payload check failed (corrupted on the way), from any sender.
    pub corrupted: u64,
    /// Per sender: lengths of the runs of consecutive missing sequence numbers.
    pub loss_runs: std::collections::BTreeMap<u32, Vec<u64>>,
    /// `[sender id, sequence, CLOCK_MONOTONIC ns at receipt, ns at sending (the sender's
    /// stamp)]` when started with `times`. A busy guest can hold a receiver back for a second:
    /// what happened at sending (a fault's hook runs there) is placed by the sender's stamp.
    #[serde(default)]
    pub arrivals: Vec<(u32, u64, u64, u64)>,
}

impl SinkReport {
    #[must_use]
    pub fn received_from(&self, sender: u32) -> u64 {
        self.received.get(&sender).copied().unwrap_or(0)
    }

    #[must_use]
    pub fn duplicates_from(&self, sender: u32) -> u64 {
        self.duplicates.get(&sender).copied().unwrap_or(0)
    }
}

/// Starts a long-running process in `cgroup` (and `netns`, if any), so the cgroup has a member
/// there; killed on Drop.
pub struct Resident(Child);

impl Resident {
    #[must_use]
    pub fn start(cgroup: &TestCgroup, netns: Option<&Netns>) -> Self {
        Self::start_for(cgroup, netns, 600)
    }

    /// [`Resident::start`] for a process that lives `secs` seconds (a long test's target).
    #[must_use]
    pub fn start_for(cgroup: &TestCgroup, netns: Option<&Netns>, secs: u64) -> Self {
        let child = command_in(workload_bin(), Some(cgroup), netns)
            .args(["sleep", "--secs", &secs.to_string()])
            .spawn()
            .expect("start resident");
        // pre_exec joined the cgroup before exec, so it is normally there at once; a resident
        // that is not in the cgroup would make every test using it prove nothing.
        let pid = child.id() as i32;
        let mut joined = false;
        for _ in 0..500 {
            joined = cgroup.pids().contains(&pid);
            if joined {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let resident = Self(child);
        assert!(joined, "resident {pid} is not in the test cgroup {} after 5 s", cgroup.path());
        resident
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `chaos-workload udp-echo` in `netns`, killed on Drop.
pub struct UdpEcho(Child);

impl UdpEcho {
    #[must_use]
    pub fn start(netns: &Netns, port: u16) -> Self {
        Self(spawn_ready(&["udp-echo", "--port", &port.to_string()], netns).0)
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a workload subcommand to completion in `cgroup`/`netns` and returns its JSON output.
#[must_use]
pub fn workload_json(args: &[&str], cgroup: Option<&TestCgroup>, netns: Option<&Netns>) -> serde_json::Value {
    let output = command_in(workload_bin(), cgroup, netns).args(args).output().expect("run workload");
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// A `chaos-workload tcp-listen` in `netns`, killed on Drop.
pub struct TcpListen(Child);

impl TcpListen {
    #[must_use]
    pub fn start(netns: &Netns, port: u16) -> Self {
        Self(spawn_ready(&["tcp-listen", "--port", &port.to_string()], netns).0)
    }
}

impl Drop for TcpListen {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What happened to one syscall's calls in a workload loop.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Calls {
    pub calls: u64,
    pub ok: u64,
    /// errno -> count.
    pub errors: std::collections::BTreeMap<i32, u64>,
    /// Attempt numbers (from 1) of the calls that failed.
    pub failed_at: Vec<u64>,
    /// Wall time of the loop, for the loops that time themselves.
    #[serde(default)]
    pub elapsed_ns: u64,
    /// CLOCK_MONOTONIC ns at the start of each call, for the loops that time their calls.
    #[serde(default)]
    pub at_ns: Vec<u64>,
}

impl Calls {
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Mean wall time per loop round, in ns.
    #[must_use]
    pub fn ns_per_call(&self) -> f64 {
        self.elapsed_ns as f64 / self.calls.max(1) as f64
    }
}

/// Runs a workload loop (`connect-loop ...`, `open-loop ...`) in `cgroup`/`netns`, optionally
/// under a wrapper command such as strace, and returns its report.
#[must_use]
pub fn workload_loop(wrapper: &[&str], args: &[&str], cgroup: Option<&TestCgroup>, netns: Option<&Netns>) -> Calls {
    let workload = workload_bin();
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = command_in(*program, cgroup, netns);
            command.args(rest).arg(&workload);
            command
        }
        None => command_in(workload, cgroup, netns),
    };
    let output = command.args(args).output().expect("run workload loop");
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?} report: {e}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// `chaos-workload connect-loop`: `count` TCP connects from `cgroup` in `netns`.
#[must_use]
pub fn connect_loop(to: std::net::SocketAddr, count: u64, cgroup: Option<&TestCgroup>, netns: &Netns) -> Calls {
    connect_loop_paced(to, count, 0, cgroup, netns)
}

/// [`connect_loop`] with `gap_ms` between calls (each call's start time is in `at_ns`).
#[must_use]
pub fn connect_loop_paced(
    to: std::net::SocketAddr,
    count: u64,
    gap_ms: u64,
    cgroup: Option<&TestCgroup>,
    netns: &Netns,
) -> Calls {
    let output = command_in(workload_bin(), cgroup, Some(netns))
        .args(["connect-loop", "--to", &to.to_string(), "--count", &count.to_string(), "--gap-ms", &gap_ms.to_string()])
        .output()
        .expect("run connect-loop");
    assert!(output.status.success(), "connect-loop failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("connect-loop report: {e}"))
}

/// `chaos-workload file-loop` in `dir`, from `cgroup`: per syscall, what happened.
#[must_use]
pub fn file_loop(
    dir: &std::path::Path,
    count: u64,
    cgroup: Option<&TestCgroup>,
) -> std::collections::BTreeMap<String, Calls> {
    let output = command_in(workload_bin(), cgroup, None)
        .args(["file-loop", "--dir", &dir.display().to_string(), "--count", &count.to_string()])
        .output()
        .expect("run file-loop");
    assert!(output.status.success(), "file-loop failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("file-loop report: {e}"))
}

#[derive(Debug, serde::Deserialize)]
pub struct ConnectReport {
    pub connected: bool,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// `chaos-workload tcp-connect` from `cgroup` in `netns`.
#[must_use]
pub fn tcp_connect(
    to: std::net::SocketAddr,
    timeout_ms: u64,
    cgroup: Option<&TestCgroup>,
    netns: &Netns,
) -> ConnectReport {
    let output = command_in(workload_bin(), cgroup, Some(netns))
        .args(["tcp-connect", "--to", &to.to_string(), "--timeout-ms", &timeout_ms.to_string()])
        .output()
        .expect("run tcp-connect");
    assert!(
        output.status.success(),
        "tcp-connect failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("tcp-connect report: {e}"))
}

#[derive(Debug, serde::Deserialize)]
pub struct BlastReport {
    pub sent: u64,
    /// sendto() calls that returned an error.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Wall time of the whole send loop.
    pub elapsed_ns: u64,
    /// Per datagram, when its sendto(2) began and ended (CLOCK_MONOTONIC ns), when started with
    /// [`Blast::start_timed`]. A hook that runs in sendto ran between the two: a fault that
    /// ended at a kernel deadline must have let through every datagram begun at or after it, and
    /// dropped every one ended before it, whatever the scheduler did to the sender.
    #[serde(default)]
    pub times: Vec<(u64, u64)>,
}

impl BlastReport {
    /// Send rate achieved, in packets per second.
    #[must_use]
    pub fn pps(&self) -> f64 {
        self.sent as f64 * 1e9 / self.elapsed_ns.max(1) as f64
    }
}

/// Options for `chaos-workload udp-blast`.
pub struct Blast<'a> {
    pub to: std::net::SocketAddr,
    pub sender_id: u32,
    pub count: u64,
    /// Packets per second; 0 means as fast as possible.
    pub pps: u64,
    pub cgroup: Option<&'a TestCgroup>,
    pub netns: &'a Netns,
}

impl Blast<'_> {
    /// Starts the blaster; [`BlastRun::finish`] waits for its report.
    #[must_use]
    pub fn start(&self) -> BlastRun {
        self.start_with(&[])
    }

    /// [`Blast::start`], the report with each datagram's send times ([`BlastReport::times`]).
    #[must_use]
    pub fn start_timed(&self) -> BlastRun {
        self.start_with(&["--times"])
    }

    /// [`Blast::run`] with each datagram's send times.
    #[must_use]
    pub fn run_timed(&self) -> BlastReport {
        self.start_timed().finish()
    }

    /// [`Blast::start`] with more flags of `udp-blast` (`--from-port P`, `--times`).
    #[must_use]
    pub fn start_with(&self, flags: &[&str]) -> BlastRun {
        let child = command_in(workload_bin(), self.cgroup, Some(self.netns))
            .args([
                "udp-blast",
                "--to",
                &self.to.to_string(),
                "--id",
                &self.sender_id.to_string(),
                "--count",
                &self.count.to_string(),
                "--pps",
                &self.pps.to_string(),
            ])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start udp-blast");
        BlastRun { child: Some(child) }
    }

    /// Runs the blaster to completion.
    #[must_use]
    pub fn run(&self) -> BlastReport {
        self.start().finish()
    }
}

pub struct BlastRun {
    child: Option<Child>,
}

impl BlastRun {
    /// The sender's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    #[must_use]
    pub fn finish(mut self) -> BlastReport {
        let output = self.child.take().expect("running").wait_with_output().expect("wait udp-blast");
        assert!(output.status.success(), "udp-blast failed: {}", output.status);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("udp-blast report {:?}: {e}", String::from_utf8_lossy(&output.stdout)))
    }
}

impl Drop for BlastRun {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `chaos-workload http-serve` on 127.0.0.1 (root namespace) inside `cgroup`: its sockets
/// belong to the cgroup, so cgroup programs on the test cgroup see its traffic and nothing is
/// attached to `lo` itself. Killed on Drop.
pub struct HttpServer {
    child: Child,
    pub port: u16,
}

impl HttpServer {
    #[must_use]
    pub fn start(cgroup: &TestCgroup, port: u16) -> Self {
        Self::start_with(cgroup, port, &[])
    }

    /// [`HttpServer::start`], appending one line per request answered to `log` (the request
    /// line): what the server saw.
    #[must_use]
    pub fn start_logging(cgroup: &TestCgroup, port: u16, log: &std::path::Path) -> Self {
        Self::start_with(cgroup, port, &["--log", &log.display().to_string()])
    }

    /// [`HttpServer::start`] with more flags of `http-serve` (`--status N`, `--delay-ms MS`).
    #[must_use]
    pub fn start_with(cgroup: &TestCgroup, port: u16, flags: &[&str]) -> Self {
        let mut child = command_in(workload_bin(), Some(cgroup), None)
            .args(["http-serve", "--port", &port.to_string()])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start http-serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready", "http-serve did not start (port {port} taken?)");
        Self { child, port }
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a one-read workload in the cgroup and waits until a read delay has stopped it.
pub fn start_stopped_reader(cgroup: &TestCgroup) -> (Child, u32) {
    let started = std::time::Instant::now();
    let target = command_in(workload_bin(), Some(cgroup), None)
        .args(["latency-loop", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the target");
    let pid = target.id();
    wait_until_stopped(pid, started);
    (target, pid)
}

/// Waits until process `pid` is stopped, at most 15 s after `since` (generous: starting a
/// process takes seconds in a busy TCG VM).
pub fn wait_until_stopped(pid: u32, since: std::time::Instant) {
    while !crate::kernel::is_stopped(pid) {
        assert!(since.elapsed() < std::time::Duration::from_secs(15), "process {pid} was never stopped");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A `chaos-workload socket-calls` in `cgroup` and `netns`: its sockets are made (in the
/// cgroup) at start; [`SocketCalls::call`] makes one call of each hooked kind.
pub struct SocketCalls(Option<Child>);

impl SocketCalls {
    #[must_use]
    pub fn start(cgroup: &TestCgroup, netns: &Netns) -> Self {
        let mut child = command_in(workload_bin(), Some(cgroup), Some(netns))
            .arg("socket-calls")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start socket-calls");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout")).read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "ready", "socket-calls did not start");
        Self(Some(child))
    }

    /// Makes the calls: call name -> errno (0 if it worked).
    #[must_use]
    pub fn call(mut self) -> std::collections::BTreeMap<String, i32> {
        let mut child = self.0.take().expect("running");
        child.stdin.take().expect("stdin").write_all(b"go\n").expect("write to socket-calls");
        let output = child.wait_with_output().expect("wait socket-calls");
        assert!(output.status.success(), "socket-calls failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("socket-calls report: {e}"))
    }
}

impl Drop for SocketCalls {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `chaos-workload lsm-calls` in `cgroup`, its files in `dir`: started with
/// [`LsmCalls::start`] (everything prepared, the process stopped), [`LsmCalls::call`] lets it
/// make its calls and stop again, [`LsmCalls::report`] (after the fault is gone) its errnos.
pub struct LsmCalls(Option<Child>);

impl LsmCalls {
    #[must_use]
    pub fn start(cgroup: &TestCgroup, dir: &std::path::Path) -> Self {
        let child = command_in(workload_bin(), Some(cgroup), None)
            .arg("lsm-calls")
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start lsm-calls");
        let calls = Self(Some(child));
        calls.wait_until_stopped("prepare");
        calls
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// Waits (10 s at most) until the workload has stopped itself after `step`.
    fn wait_until_stopped(&self, step: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !crate::kernel::is_stopped(self.pid()) {
            assert!(std::time::Instant::now() < deadline, "lsm-calls did not stop after it {step}d");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn resume(&self) {
        // SAFETY: kill(2) on our own child.
        assert!(unsafe { libc::kill(self.pid() as i32, libc::SIGCONT) } == 0, "SIGCONT lsm-calls");
    }

    /// Makes the calls; returns once they are all made.
    pub fn call(&self) {
        // SIGCONT wakes a stopped process before kill(2) returns, so a stopped state seen
        // from here on is the stop after the calls.
        self.resume();
        self.wait_until_stopped("call");
    }

    /// The calls' errnos, "hook:call" -> errno (0 if it worked). Call after the fault is gone:
    /// printing is a write.
    #[must_use]
    pub fn report(mut self) -> std::collections::BTreeMap<String, i32> {
        self.resume();
        let child = self.0.take().expect("running");
        let output = child.wait_with_output().expect("wait lsm-calls");
        assert!(output.status.success(), "lsm-calls failed: {:?}", output.status);
        let report = String::from_utf8_lossy(&output.stdout);
        let json = report.lines().nth(1).unwrap_or_else(|| panic!("lsm-calls printed no report: {report}"));
        serde_json::from_str(json).unwrap_or_else(|e| panic!("lsm-calls report {json}: {e}"))
    }
}

impl Drop for LsmCalls {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            // SIGKILL ends a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
