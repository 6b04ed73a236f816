//! Steady-state checks: what "the system is fine" means, measured from the controller.
//!
//! Four kinds, one file each under `checks/`: an HTTP(S) request (status, optionally a latency
//! bound and a body match), a TCP connect, a command (exit code, optionally a string its output
//! must contain) and a Prometheus instant query (its value against bounds). Each result carries
//! how long it took, and a metric value when it has one. (The kernel feature tests of `features`
//! are "probes"; these are "checks", so the two are never confused.)
pub(crate) mod checks;
pub(crate) mod verdict;

use std::{fmt, time::Duration};

use serde::Serialize;
use tokio::time::{Instant, timeout};

pub(crate) use self::checks::{
    http::HttpCheck,
    prometheus::{Bounds, PrometheusCheck},
};
use crate::plan::options::Ppm;

/// One check, with how often it runs and how often it must pass.
#[derive(Clone, Debug)]
pub(crate) struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub interval: Duration,
    /// A result that takes longer is a failure.
    pub timeout: Duration,
    /// The share of results in a phase that must pass for the steady state to hold there.
    pub pass_rate: Ppm,
    /// The same check against the control group's replica (`control = "..."`), if any: run at
    /// the same times as this one, never faulted.
    pub control: Option<Box<CheckKind>>,
    /// How much worse than the control this check may be (checks with a control only).
    pub max_difference: Vec<verdict::MaxDifference>,
}

#[derive(Clone, Debug)]
pub(crate) enum CheckKind {
    Http(Box<HttpCheck>),
    Tcp { address: String },
    Command { argv: Vec<String>, exit_code: i32, stdout_contains: Option<String> },
    Prometheus(Box<PrometheusCheck>),
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(http) => http.fmt(f),
            Self::Tcp { address } => write!(f, "TCP connect to {address}"),
            Self::Command { argv, exit_code, stdout_contains } => {
                write!(f, "`{}` exits {exit_code}", argv.join(" "))?;
                if let Some(text) = stdout_contains {
                    write!(f, " printing {text:?}")?;
                }
                Ok(())
            }
            Self::Prometheus(query) => query.fmt(f),
        }
    }
}

/// One result of one check.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CheckResult {
    pub ok: bool,
    #[serde(rename = "latency_ms", serialize_with = "millis")]
    pub latency: Duration,
    /// What was seen: `200`, `connected`, `exit 0`, or why it failed.
    pub detail: String,
    /// The metric value a Prometheus check read (absent for the other kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// What an attempt saw when it passed: a description, and a value if it read one.
pub(crate) struct Seen {
    pub detail: String,
    pub value: Option<f64>,
}

impl From<String> for Seen {
    fn from(detail: String) -> Self {
        Self { detail, value: None }
    }
}

/// Why an attempt failed, and the value it read if the failure is the value's.
pub(crate) struct Failed {
    pub detail: String,
    pub value: Option<f64>,
}

impl From<String> for Failed {
    fn from(detail: String) -> Self {
        Self { detail, value: None }
    }
}

impl From<&str> for Failed {
    fn from(detail: &str) -> Self {
        Self { detail: detail.to_owned(), value: None }
    }
}

/// Runs the check once, within its timeout.
pub(crate) async fn run(check: &Check) -> CheckResult {
    run_kind(check, &check.kind).await
}

/// Runs the check and its control at the same time; the control's result is `None` without one.
/// `control_first` says which of the two is started (and polled) first: on one thread the first
/// gets ahead, so callers alternate it, and neither group is favoured by the order.
pub(crate) async fn run_with_control(check: &Check, control_first: bool) -> (CheckResult, Option<CheckResult>) {
    match &check.control {
        None => (run(check).await, None),
        Some(control) if control_first => {
            let (control, result) = tokio::join!(run_kind(check, control), run(check));
            (result, Some(control))
        }
        Some(control) => {
            let (result, control) = tokio::join!(run(check), run_kind(check, control));
            (result, Some(control))
        }
    }
}

async fn run_kind(check: &Check, kind: &CheckKind) -> CheckResult {
    let started = Instant::now();
    let outcome = timeout(check.timeout, attempt(kind)).await;
    let latency = started.elapsed();
    match outcome {
        Err(_) => CheckResult {
            ok: false,
            latency,
            detail: format!("no answer within {}", humantime::format_duration(check.timeout)),
            value: None,
        },
        Ok(Err(Failed { detail, value })) => CheckResult { ok: false, latency, detail, value },
        Ok(Ok(Seen { detail, value })) => {
            if let CheckKind::Http(http) = kind
                && let Some(max) = http.max_latency
                && latency > max
            {
                return CheckResult {
                    ok: false,
                    latency,
                    detail: format!("{detail} after {} ms, over {} ms", latency.as_millis(), max.as_millis()),
                    value,
                };
            }
            CheckResult { ok: true, latency, detail, value }
        }
    }
}

/// `Ok(what was seen)` when the check passes, `Err(why not)` otherwise.
async fn attempt(kind: &CheckKind) -> Result<Seen, Failed> {
    match kind {
        CheckKind::Http(http) => http.attempt().await.map(Seen::from).map_err(Failed::from),
        CheckKind::Tcp { address } => checks::tcp::attempt(address).await.map(Seen::from).map_err(Failed::from),
        CheckKind::Command { argv, exit_code, stdout_contains } => {
            checks::command::attempt(argv, *exit_code, stdout_contains.as_deref())
                .await
                .map(Seen::from)
                .map_err(Failed::from)
        }
        CheckKind::Prometheus(query) => query.attempt().await,
    }
}
