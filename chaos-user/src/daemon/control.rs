//! The daemon's control API: one JSON request line and one JSON reply line per connection on a
//! Unix socket that only root can open (mode 0600): the service's side (answering), and the
//! client `chaos daemon status | pause [--now] | resume | run NAME | stop-all` uses.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use super::{Pause, Service, check::describe_selector, config};

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "command")]
pub(crate) enum Request {
    Status,
    /// Stop starting runs; with `now`, also end every running one (the kill switch).
    Pause {
        now: bool,
    },
    Resume,
    /// Start the named experiment now (budgets and pause still apply).
    Run {
        name: String,
    },
    /// End every running experiment; the schedule goes on.
    StopAll,
}

/// The daemon's answer: whether it did it, a sentence for people, and details.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Binds the socket, replacing a stale one, readable and writable by its owner only.
pub(crate) fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("another daemon answers on {}; stop it first", path.display()),
        ));
    }
    let _ = std::fs::remove_file(path);
    // The mode is set before anyone could connect: bind under a umask that keeps others out.
    // SAFETY: umask(2) has no preconditions; the old mask is put back right after.
    let old = unsafe { libc::umask(0o177) };
    let listener = tokio::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Sends one request to the daemon at `socket` and returns its reply.
pub(crate) fn ask(socket: &Path, request: &Request) -> anyhow::Result<Reply> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the daemon at {}: {e} (is `chaos daemon` running? --socket names another path)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|e| anyhow::anyhow!("the daemon's reply is not understood ({e}): {reply}"))
}

/// The service's side: a request, what it does, the reply.
impl Service {
    /// Answers one control connection (a request line, a reply line).
    pub(super) async fn answer(&mut self, stream: tokio::net::UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(read);
        let reply = match tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line)).await {
            Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
                Ok(request) => self.handle(request),
                Err(e) => Reply { ok: false, message: format!("not a request: {e}"), details: json!(null) },
            },
            _ => return,
        };
        let mut text = serde_json::to_string(&reply).unwrap_or_default();
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
    }

    fn handle(&mut self, request: Request) -> Reply {
        let reply = |ok: bool, message: String| Reply { ok, message, details: json!(null) };
        match request {
            Request::Status => Reply { ok: true, message: self.status_line(), details: self.status_json() },
            Request::Pause { now: false } => {
                self.set_paused(Some(Pause { reason: "paused by `chaos daemon pause`".into(), until: None }));
                tracing::info!("paused: running experiments finish, no new one starts");
                reply(true, format!("paused; {} run(s) finish on their own", self.runs.len()))
            }
            Request::Pause { now: true } => {
                let started = Instant::now();
                let ended = self.pause_now("paused by `chaos daemon pause --now`");
                let ms = started.elapsed().as_secs_f64() * 1e3;
                tracing::warn!(runs_ended = ended, ms, "kill switch: every fault detached");
                Reply {
                    ok: true,
                    message: format!("paused; ended {ended} run(s), every fault detached in {ms:.1} ms"),
                    details: json!({ "ended": ended, "ms": ms }),
                }
            }
            Request::Resume => {
                if self.config.kill_switch.exists() {
                    return reply(
                        false,
                        format!("the kill-switch file {} exists: remove it first", self.config.kill_switch.display()),
                    );
                }
                self.set_paused(None);
                tracing::info!("resumed");
                reply(true, "resumed".into())
            }
            Request::Run { name } => {
                let Some(index) = self.config.catalogue.iter().position(|e| e.name == name) else {
                    let known: Vec<&str> = self.config.catalogue.iter().map(|e| e.name.as_str()).collect();
                    return reply(
                        false,
                        format!("no experiment \"{name}\" in the catalogue (it has: {})", known.join(", ")),
                    );
                };
                if let Some(pause) = &self.paused {
                    return reply(
                        false,
                        format!("injection is paused ({}): `chaos daemon resume` first", pause.reason),
                    );
                }
                match self.start(index) {
                    Ok(number) => reply(true, format!("started run {number} of \"{name}\"")),
                    Err(why) => reply(false, format!("\"{name}\" not started: {why}")),
                }
            }
            Request::StopAll => {
                let ended = self.end_all("stopped by `chaos daemon stop-all`");
                reply(true, format!("ended {ended} run(s); the schedule goes on"))
            }
        }
    }

    fn status_line(&self) -> String {
        let state = self.paused.as_ref().map_or_else(|| "running".to_owned(), |p| format!("paused: {}", p.reason));
        format!(
            "{state}; {} run(s) under way; next scheduled run in {}s",
            self.runs.len(),
            self.next_run.saturating_duration_since(Instant::now()).as_secs()
        )
    }

    fn status_json(&self) -> serde_json::Value {
        let runs: Vec<_> = self
            .runs
            .iter()
            .map(|r| json!({ "run": r.number, "experiment": r.name, "target": r.target, "seconds": r.started.elapsed().as_secs_f64() }))
            .collect();
        let catalogue: Vec<_> = self
            .config
            .catalogue
            .iter()
            .map(|e| json!({ "experiment": e.name, "file": e.file, "weight": e.weight, "targets": e.selector.as_ref().map(describe_selector) }))
            .collect();
        json!({
            "paused": self.paused.as_ref().map(|p| p.reason.clone()),
            "runs": runs,
            "next_run_in_s": self.next_run.saturating_duration_since(Instant::now()).as_secs_f64(),
            "config": self.config.path,
            "catalogue": catalogue,
        })
    }
}

/// The client side of `chaos daemon status | pause | resume | run | stop-all`.
pub(crate) fn run_client(socket: &Path, request: &Request, json_output: bool) -> anyhow::Result<ExitCode> {
    let reply = ask(socket, request)?;
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "ok": reply.ok, "message": reply.message, "details": reply.details })
            )?
        );
    } else {
        println!("{}", reply.message);
        if let Some(runs) = reply.details["runs"].as_array() {
            for run in runs {
                println!(
                    "  run {} {} on {} ({:.0}s)",
                    run["run"],
                    run["experiment"],
                    run["target"],
                    run["seconds"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    Ok(if reply.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The socket of the configuration at `config`, if it loads; the default otherwise.
#[must_use]
pub(crate) fn socket_of(config: &Path) -> PathBuf {
    config::DaemonConfig::load(config).map_or_else(|_| PathBuf::from(config::DEFAULT_SOCKET), |c| c.socket)
}
