//! One `[[steady_state.check]]` table: which kind of check, its options, and the defaults it
//! takes from `[steady_state]`.
use std::{path::Path, time::Duration};

use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
};

use super::super::source::{FileError, Item, Table};
use crate::{
    plan::options::Ppm,
    steady::{
        Bounds, Check, CheckKind, HttpCheck, PrometheusCheck,
        checks::{
            http::{HttpRequest, Trust},
            prometheus::QueryCheck,
        },
        verdict::{MaxDifference, compare::DEFAULT_MAX_DIFFERENCE},
    },
};

const CHECK_KEYS: &[&str] = &[
    "name",
    "http",
    "tcp",
    "command",
    "prometheus",
    "status",
    "max_latency",
    "method",
    "headers",
    "body_contains",
    "ca",
    "insecure",
    "exit_code",
    "stdout_contains",
    "max",
    "min",
    "between",
    "reduce",
    "control",
    "max_difference",
    "interval",
    "timeout",
    "pass_rate",
];
const KINDS: [&str; 4] = ["http", "tcp", "command", "prometheus"];
const HTTP_KEYS: &[&str] = &["status", "max_latency", "method", "headers", "body_contains", "ca", "insecure"];
const COMMAND_KEYS: &[&str] = &["exit_code", "stdout_contains"];
const PROMETHEUS_KEYS: &[&str] = &["max", "min", "between", "reduce"];

pub(crate) struct CheckDefaults {
    pub interval: Duration,
    pub timeout: Option<Duration>,
    pub pass_rate: Ppm,
    /// Whether the file has a `[control]` group for checks to name.
    pub has_control: bool,
}

pub(crate) fn parse_check(table: &Table<'_>, defaults: &CheckDefaults) -> Result<Check, FileError> {
    let kinds: Vec<Item<'_>> = KINDS.iter().filter_map(|k| table.get(k)).collect();
    let [what] = kinds.as_slice() else {
        return Err(table.error(format!(
            "{} needs exactly one of `http`, `tcp`, `command`, `prometheus`{}",
            table.name,
            if kinds.is_empty() { String::new() } else { format!(", not {}", kinds.len()) }
        )));
    };
    let interval = table.get("interval").map(|i| i.duration()).transpose()?.unwrap_or(defaults.interval);
    // A check that may take longer than its interval would overlap the next one.
    let timeout = table.get("timeout").map(|i| i.duration()).transpose()?.or(defaults.timeout).unwrap_or(interval);
    let pass_rate = table.get("pass_rate").map(|i| i.percent()).transpose()?.unwrap_or(defaults.pass_rate);
    let kind = match what.key.as_str() {
        "http" => CheckKind::Http(Box::new(parse_http(table, what)?)),
        "tcp" => {
            let address = what.str()?.to_owned();
            if address.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()) {
                return Err(what.error(format!("'{address}' is not host:port, e.g. \"127.0.0.1:5432\"")));
            }
            CheckKind::Tcp { address }
        }
        "prometheus" => CheckKind::Prometheus(Box::new(parse_prometheus(table, what)?)),
        _ => {
            // A string runs through `sh -c`; an array is the program and its arguments.
            let argv = match what.value {
                toml::de::DeValue::String(s) => vec!["sh".to_owned(), "-c".to_owned(), s.to_string()],
                _ => what.strings()?,
            };
            if argv.is_empty() || argv[0].is_empty() {
                return Err(what.error("is empty: give a command line or [program, args...]"));
            }
            let exit_code =
                table.get("exit_code").map(|i| i.integer::<i32>("an exit code, 0 to 255")).transpose()?.unwrap_or(0);
            let stdout_contains = table.get("stdout_contains").map(|i| i.str().map(str::to_owned)).transpose()?;
            CheckKind::Command { argv, exit_code, stdout_contains }
        }
    };
    // Options that only make sense for another kind are a mistake worth pointing at.
    let own: &[&str] = match &kind {
        CheckKind::Http(_) => HTTP_KEYS,
        CheckKind::Tcp { .. } => &[],
        CheckKind::Command { .. } => COMMAND_KEYS,
        CheckKind::Prometheus(_) => PROMETHEUS_KEYS,
    };
    for key in HTTP_KEYS.iter().chain(COMMAND_KEYS).chain(PROMETHEUS_KEYS).filter(|k| !own.contains(k)) {
        if let Some(item) = table.get(key) {
            return Err(item.error_at_key(format!("`{key}` does not apply to a `{}` check", what.key)));
        }
    }
    let name = match table.get("name") {
        Some(item) => item.str()?.to_owned(),
        None => what.value.as_str().map_or_else(|| what.key.clone(), str::to_owned),
    };
    let control = match table.get("control") {
        None => None,
        Some(_) if !defaults.has_control => {
            let item = table.get("control").expect("given");
            return Err(item.error_at_key("`control` needs a control group: add [control] with target = { ... }"));
        }
        Some(item) => Some(Box::new(parse_control(&kind, &item)?)),
    };
    let max_difference = match (table.get("max_difference"), &control) {
        (Some(item), None) => {
            return Err(item.error_at_key("`max_difference` compares with the control: give this check a `control`"));
        }
        (Some(item), Some(_)) => {
            let items = match item.value {
                toml::de::DeValue::Array(_) => item.array()?,
                _ => vec![item.clone()],
            };
            items.iter().map(|i| i.str()?.parse::<MaxDifference>().map_err(|e| i.error(e))).collect::<Result<_, _>>()?
        }
        (None, Some(_)) => DEFAULT_MAX_DIFFERENCE.iter().map(|t| t.parse().expect("valid default")).collect(),
        (None, None) => Vec::new(),
    };
    table.finish(CHECK_KEYS)?;
    Ok(Check { name, kind, interval, timeout, pass_rate, control, max_difference })
}

/// `control = "..."`: the same check against the control's replica: another URL, address,
/// command or query, with every other option the same.
fn parse_control(kind: &CheckKind, item: &Item<'_>) -> Result<CheckKind, FileError> {
    Ok(match kind {
        CheckKind::Http(http) => CheckKind::Http(Box::new(http.with_url(item.str()?).map_err(|e| item.error(e))?)),
        CheckKind::Tcp { .. } => {
            let address = item.str()?.to_owned();
            if address.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()) {
                return Err(item.error(format!("'{address}' is not host:port, e.g. \"127.0.0.1:5433\"")));
            }
            CheckKind::Tcp { address }
        }
        CheckKind::Command { exit_code, stdout_contains, .. } => {
            let argv = match item.value {
                toml::de::DeValue::String(s) => vec!["sh".to_owned(), "-c".to_owned(), s.to_string()],
                _ => item.strings()?,
            };
            if argv.is_empty() || argv[0].is_empty() {
                return Err(item.error("is empty: give a command line or [program, args...]"));
            }
            CheckKind::Command { argv, exit_code: *exit_code, stdout_contains: stdout_contains.clone() }
        }
        CheckKind::Prometheus(query) => {
            CheckKind::Prometheus(Box::new(query.with_query(item.str()?.trim().to_owned(), item.span.clone())))
        }
    })
}

fn parse_http(table: &Table<'_>, what: &Item<'_>) -> Result<HttpCheck, FileError> {
    let original = what.str()?.to_owned();
    let status =
        table.get("status").map(|i| i.integer::<u16>("an HTTP status, 100 to 599")).transpose()?.unwrap_or(200);
    if !(100..=599).contains(&status) {
        return Err(table.get("status").expect("given").error(format!("{status} is not an HTTP status (100 to 599)")));
    }
    let max_latency = table.get("max_latency").map(|i| i.duration()).transpose()?;
    let method = match table.get("method") {
        None => Method::GET,
        Some(item) => {
            let text = item.str()?;
            Method::from_bytes(text.to_ascii_uppercase().as_bytes())
                .map_err(|_| item.error(format!("'{text}' is not an HTTP method, e.g. \"GET\" or \"HEAD\"")))?
        }
    };
    let mut headers = HeaderMap::new();
    if let Some(item) = table.get("headers") {
        let entries = item.table("`headers`")?;
        for header in entries.items() {
            let name = HeaderName::from_bytes(header.key.as_bytes())
                .map_err(|_| header.error_at_key(format!("'{}' is not an HTTP header name", header.key)))?;
            let value = HeaderValue::from_str(header.str()?)
                .map_err(|_| header.error("is not a valid header value (printable ASCII only)"))?;
            headers.append(name, value);
        }
    }
    let body_contains = table.get("body_contains").map(|i| i.str().map(str::to_owned)).transpose()?;
    let ca = table.get("ca");
    let insecure = table.get("insecure").map(|i| i.bool()).transpose()?.unwrap_or(false);
    let trust = match (&ca, insecure) {
        (Some(ca), true) => return Err(ca.error("`ca` and `insecure = true` contradict each other: keep one")),
        (Some(ca), false) => {
            // A relative CA path is relative to the experiment file, so the file works from anywhere.
            let path = Path::new(ca.str()?);
            let base = Path::new(&table.source().path).parent().unwrap_or_else(|| Path::new(""));
            Trust::Ca(if path.is_absolute() { path.to_owned() } else { base.join(path) })
        }
        (None, true) => Trust::Insecure,
        (None, false) => Trust::System,
    };
    if !matches!(trust, Trust::System) && !original.starts_with("https://") {
        let key = ca.clone().or_else(|| table.get("insecure")).expect("one is given");
        return Err(key.error_at_key(format!("`{}` only applies to an https:// URL", key.key)));
    }
    let request = HttpRequest { original, method, headers, status, max_latency, body_contains, trust };
    HttpCheck::new(request).map_err(|e| match (&ca, e.contains("CA file") || e.contains("PEM")) {
        (Some(ca), true) => ca.error(e),
        _ => what.error(e),
    })
}

fn parse_prometheus(table: &Table<'_>, what: &Item<'_>) -> Result<PrometheusCheck, FileError> {
    let spec = what.table("`prometheus`")?;
    let example = "prometheus = { url = \"http://127.0.0.1:9090\", query = \"up\" }";
    let url = spec.require("url", example)?;
    let query = spec.require("query", example)?;
    spec.finish(&["url", "query"])?;
    let query_text = query.str()?.trim().to_owned();
    if query_text.is_empty() {
        return Err(query.error("is empty: give a PromQL expression, e.g. \"rate(errors_total[30s])\""));
    }
    let mut bounds = Bounds {
        min: table.get("min").map(|i| number(&i)).transpose()?,
        max: table.get("max").map(|i| number(&i)).transpose()?,
    };
    if let Some(between) = table.get("between") {
        if bounds.min.is_some() || bounds.max.is_some() {
            return Err(between.error_at_key("`between` sets both bounds: do not also give `min` or `max`"));
        }
        let ends = between.array()?;
        let [low, high] = ends.as_slice() else {
            return Err(between.error("expected two numbers [low, high], e.g. [0, 0.05]"));
        };
        bounds = Bounds { min: Some(number(low)?), max: Some(number(high)?) };
    }
    if let (Some(min), Some(max)) = (bounds.min, bounds.max)
        && min > max
    {
        return Err(table.error(format!("the minimum {min} is above the maximum {max}: no value could pass")));
    }
    let reduce = match table.get("reduce") {
        Some(item) => Some(item.str()?.parse().map_err(|e: String| item.error(e))?),
        None => None,
    };
    let mut check = PrometheusCheck::new(url.str()?, query_text, bounds, reduce).map_err(|e| url.error(e))?;
    check.query_span = query.span.clone();
    Ok(check)
}

/// A number: an integer, a float, or a string holding one.
fn number(item: &Item<'_>) -> Result<f64, FileError> {
    let text = item.scalar_text()?;
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| !n.is_nan())
        .ok_or_else(|| item.error(format!("'{text}' is not a number")))
}

/// Asks each Prometheus check's server whether its query is valid: a query the server refuses
/// is an error at the query's position; a server that cannot be reached gives a warning (it may
/// be up by the time of the run). Returns the warnings.
pub(crate) fn ask_servers(checks: &[Check], source: &super::super::source::Source) -> Result<Vec<String>, FileError> {
    let queries: Vec<&PrometheusCheck> = checks
        .iter()
        .flat_map(|c| std::iter::once(&c.kind).chain(c.control.as_deref()))
        .filter_map(|kind| match kind {
            CheckKind::Prometheus(query) => Some(&**query),
            _ => None,
        })
        .collect();
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| source.error(&(0..0), format!("cannot start the runtime that asks Prometheus: {e}")))?;
    runtime.block_on(async {
        let mut warnings = Vec::new();
        for query in queries {
            let asked = tokio::time::timeout(Duration::from_secs(3), query.validate()).await;
            match asked.unwrap_or_else(|_| QueryCheck::Unreachable(format!("{} did not answer within 3s", query.server))) {
                QueryCheck::Accepted => {}
                QueryCheck::Invalid(why) => {
                    return Err(source.error(&query.query_span, format!("`query`: Prometheus refuses it: {why}")));
                }
                QueryCheck::Unreachable(why) => {
                    let (line, column) = source.position(query.query_span.start);
                    warnings.push(format!(
                        "{}:{line}:{column}: the query was not checked: {why} (it is checked again when the run starts)",
                        source.path
                    ));
                }
            }
        }
        Ok(warnings)
    })
}
