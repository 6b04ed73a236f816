//! The daemon's control API: one JSON request line and one JSON reply line per connection on a
//! Unix socket that only root can open (mode 0600), and the client `chaos daemon status | pause
//! [--now] | resume | run NAME | stop-all` uses.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream},
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "command")]
pub enum Request {
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
pub struct Reply {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Binds the socket, replacing a stale one, readable and writable by its owner only.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
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
pub fn ask(socket: &Path, request: &Request) -> anyhow::Result<Reply> {
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
