//! A `chaos daemon` under test (its configuration, socket, kill switch and state in a directory
//! of its own, killed on Drop), and what the daemon tests read from the kernel and the daemon:
//! programs on a cgroup appearing and going, the metrics endpoint.
use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{self, Chaos},
    kernel,
};

/// A daemon under test: its configuration, socket, kill switch and state in a directory of its
/// own; killed on Drop (its faults go with it: fd-owned links and kernel deadlines).
pub struct Daemon {
    pub chaos: Option<Chaos>,
    pub dir: TempDir,
    /// More arguments of `chaos daemon` (e.g. `--log-format json`).
    pub args: Vec<String>,
}

impl Daemon {
    /// Writes `experiment` (TOML) and a configuration around it (`extra` is appended to the
    /// configuration), and starts the daemon; returns once its socket answers.
    pub fn start(experiment: &str, extra: &str) -> Self {
        Self::start_with(experiment, extra, &[])
    }

    pub fn start_with(experiment: &str, extra: &str, args: &[&str]) -> Self {
        let mut daemon = Self::start_stopped(experiment, extra);
        daemon.args = args.iter().map(|a| (*a).to_owned()).collect();
        daemon.launch();
        daemon
    }

    pub fn start_stopped(experiment: &str, extra: &str) -> Self {
        let dir = TempDir::new();
        fs::write(dir.path().join("experiment.toml"), experiment).expect("write the experiment");
        let config = format!("socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\n{extra}\n");
        fs::write(dir.path().join("daemon.toml"), config).expect("write the configuration");
        Self { chaos: None, dir, args: Vec::new() }
    }

    pub fn launch(&mut self) {
        let config = self.dir.path().join("daemon.toml");
        let mut args = vec!["daemon", "--config", config.to_str().expect("utf-8")];
        args.extend(self.args.iter().map(String::as_str));
        let mut chaos = Chaos::start(&args);
        let socket = self.socket();
        chaos.wait_until("the daemon's socket answers", Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        self.chaos = Some(chaos);
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("daemon.sock")
    }

    pub fn kill_switch(&self) -> PathBuf {
        self.dir.path().join("kill")
    }

    pub fn chaos(&mut self) -> &mut Chaos {
        self.chaos.as_mut().expect("the daemon runs")
    }

    /// `chaos daemon <args> --socket S --output json`: (ok, reply).
    pub fn ask(&self, args: &[&str]) -> (bool, serde_json::Value) {
        let socket = self.socket();
        let mut full = vec!["daemon"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--socket", socket.to_str().expect("utf-8"), "--output", "json"]);
        let (status, stdout, stderr) = chaos::run(&full);
        let reply =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("chaos daemon {args:?}: {e}: {stdout}{stderr}"));
        (status.success(), reply)
    }

    pub fn wait_for_log(&mut self, what: &str, timeout: Duration) {
        let chaos = self.chaos();
        let log = |c: &Chaos| c.stderr_so_far().contains(what);
        let deadline = Instant::now() + timeout;
        while !log(chaos) {
            assert!(
                Instant::now() < deadline,
                "no \"{what}\" in the daemon's log after {timeout:?}: {}",
                chaos.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: every run ends, the daemon exits 0. Returns its log.
    pub fn terminate(mut self) -> String {
        let chaos = self.chaos.take().expect("the daemon runs");
        chaos.signal(libc::SIGTERM);
        let (status, _, stderr) = chaos.wait(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "the daemon ends cleanly on SIGTERM: {stderr}");
        stderr
    }
}

/// Waits until programs are attached to (`present`) or gone from the cgroup, sampling every
/// millisecond; how long that took.
pub fn wait_for_programs(cgroup: &TestCgroup, present: bool, timeout: Duration) -> Duration {
    let started = Instant::now();
    while (kernel::inet_programs_attached(cgroup.dir()) > 0) != present {
        assert!(
            started.elapsed() < timeout,
            "programs on {} {} after {timeout:?}",
            cgroup.path(),
            if present { "not attached" } else { "still attached" }
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

/// GET /metrics from the daemon.
#[must_use]
pub fn scrape(address: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("response");
    assert!(text.starts_with("HTTP/1.") && text.contains(" 200 "), "{text}");
    text
}

/// `log` without its terminal colour codes (`ESC [ ... m`), so fields read `runs_ended=2`.
#[must_use]
pub fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
