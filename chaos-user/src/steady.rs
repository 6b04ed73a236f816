//! Steady-state checks: what "the system is fine" means, measured from the controller.
//!
//! Three kinds: an HTTP GET (status code, and optionally a latency bound), a TCP connect, and a
//! command (exit code, and optionally a string its output must contain). Each result carries
//! how long it took. (The kernel feature tests of `features` are "probes"; these are "checks",
//! so the two are never confused.)
use std::{fmt, process::Stdio, time::Duration};

use serde::Serialize;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::{Instant, timeout},
};

use crate::fault::options::Ppm;

/// One check, with how often it runs and how often it must pass.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    /// A result that takes longer is a failure.
    pub timeout: Duration,
    /// The share of results in a phase that must pass for the steady state to hold there.
    pub pass_rate: Ppm,
}

#[derive(Clone, Debug)]
pub enum CheckKind {
    Http { url: HttpUrl, status: u16, max_latency: Option<Duration> },
    Tcp { address: String },
    Command { argv: Vec<String>, exit_code: i32, stdout_contains: Option<String> },
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http { url, status, max_latency } => {
                write!(f, "GET {} -> {status}", url.original)?;
                if let Some(max) = max_latency {
                    write!(f, " within {}", humantime::format_duration(*max))?;
                }
                Ok(())
            }
            Self::Tcp { address } => write!(f, "TCP connect to {address}"),
            Self::Command { argv, exit_code, stdout_contains } => {
                write!(f, "`{}` exits {exit_code}", argv.join(" "))?;
                if let Some(text) = stdout_contains {
                    write!(f, " printing {text:?}")?;
                }
                Ok(())
            }
        }
    }
}

/// An `http://host[:port][/path]` URL (plain HTTP/1.1; no TLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub original: String,
}

pub fn parse_http_url(text: &str) -> Result<HttpUrl, String> {
    let rest = text.strip_prefix("http://").ok_or_else(|| {
        if text.starts_with("https://") {
            format!(
                "'{text}': https is not supported; check a plain http:// endpoint, or use a command check (e.g. curl)"
            )
        } else {
            format!("'{text}' is not an http:// URL, e.g. http://127.0.0.1:8080/health")
        }
    })?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        // [v6]:port
        let (host, after) = bracketed.split_once(']').ok_or_else(|| format!("'{text}': unclosed [ in the address"))?;
        (host.to_owned(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{text}' has no host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("'{text}': '{p}' is not a port"))?,
    };
    Ok(HttpUrl { host, port, path: path.to_owned(), original: text.to_owned() })
}

/// One result of one check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub ok: bool,
    #[serde(rename = "latency_ms", serialize_with = "millis")]
    pub latency: Duration,
    /// What was seen: `200`, `connected`, `exit 0`, or why it failed.
    pub detail: String,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Runs the check once, within its timeout.
pub async fn run(check: &Check) -> CheckResult {
    let started = Instant::now();
    let outcome = timeout(check.timeout, attempt(&check.kind)).await;
    let latency = started.elapsed();
    match outcome {
        Err(_) => CheckResult {
            ok: false,
            latency,
            detail: format!("no answer within {}", humantime::format_duration(check.timeout)),
        },
        Ok(Err(detail)) => CheckResult { ok: false, latency, detail },
        Ok(Ok(detail)) => {
            if let CheckKind::Http { max_latency: Some(max), .. } = &check.kind
                && latency > *max
            {
                return CheckResult {
                    ok: false,
                    latency,
                    detail: format!("{detail} after {} ms, over {} ms", latency.as_millis(), max.as_millis()),
                };
            }
            CheckResult { ok: true, latency, detail }
        }
    }
}

/// `Ok(what was seen)` when the check passes, `Err(why not)` otherwise.
async fn attempt(kind: &CheckKind) -> Result<String, String> {
    match kind {
        CheckKind::Http { url, status, .. } => {
            let got = http_get(url).await?;
            if got == *status { Ok(got.to_string()) } else { Err(format!("status {got}, expected {status}")) }
        }
        CheckKind::Tcp { address } => {
            TcpStream::connect(address.as_str()).await.map_err(|e| format!("connect: {e}"))?;
            Ok("connected".into())
        }
        CheckKind::Command { argv, exit_code, stdout_contains } => {
            let (program, args) = argv.split_first().ok_or("empty command")?;
            let output = tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("cannot run {program}: {e}"))?;
            let code = output.status.code();
            if code != Some(*exit_code) {
                return Err(code.map_or_else(
                    || format!("killed by a signal ({})", output.status),
                    |c| format!("exit {c}, expected {exit_code}"),
                ));
            }
            if let Some(text) = stdout_contains
                && !String::from_utf8_lossy(&output.stdout).contains(text.as_str())
            {
                return Err(format!("exit {exit_code} but the output does not contain {text:?}"));
            }
            Ok(format!("exit {exit_code}"))
        }
    }
}

/// A minimal HTTP/1.1 GET: returns the status code once the response headers are in.
async fn http_get(url: &HttpUrl) -> Result<u16, String> {
    let mut stream = TcpStream::connect((url.host.as_str(), url.port)).await.map_err(|e| format!("connect: {e}"))?;
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: chaos\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path, url.port
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        if response.len() > 64 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse::<u16>().ok())) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => Ok(code),
        _ if response.is_empty() => Err("the connection closed without a response".into()),
        _ => Err(format!("not an HTTP response: {:?}", status_line.chars().take(60).collect::<String>())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_parse() {
        let url = parse_http_url("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("127.0.0.1", 8080, "/health?x=1"));
        let url = parse_http_url("http://api.internal").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("api.internal", 80, "/"));
        let url = parse_http_url("http://[::1]:81/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 81));
    }

    #[test]
    fn bad_http_urls_say_why() {
        for (input, expected) in [
            ("https://x/", "https is not supported"),
            ("ftp://x/", "is not an http:// URL"),
            ("http://:80/", "has no host"),
            ("http://x:99999/", "is not a port"),
            ("http://x:0/", "is not a port"),
        ] {
            let err = parse_http_url(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
