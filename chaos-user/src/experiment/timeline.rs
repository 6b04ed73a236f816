//! The timeline of a run: one JSON object per line, each with an RFC 3339 `time`, the seconds
//! since the experiment started (`t`) and an `event` name. Lines are written and flushed as
//! things happen, so a run that is killed leaves a readable partial timeline.
//!
//! Events, in order: `experiment`, `plan` (one per fault), `phase`, `check` (each result),
//! `attach` (one per fault), `arm`, `ramp`, `counts` (injections per fault per second),
//! `abort`, `detach` (one per fault, with its totals), `verdict`. The summary printed at the
//! end is rendered from these events alone, which is what `chaos report` does with a saved file.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::{self, BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use serde_json::{Value, json};

/// Appends events to a file, and keeps them for the summary.
pub struct Timeline {
    path: PathBuf,
    file: File,
    started: Instant,
    events: Vec<Value>,
}

impl Timeline {
    /// Creates (or truncates) the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        Ok(Self { path: path.to_owned(), file, started: Instant::now(), events: Vec::new() })
    }

    /// Appends to an existing timeline (a detached experiment's reaper, `chaos stop`).
    pub fn append(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Self { path: path.to_owned(), file, started: Instant::now(), events: Vec::new() })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Seconds since the timeline was created, rounded to ms.
    #[must_use]
    pub fn elapsed(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
    }

    /// Writes one event; `fields` is an object whose members are added to it. A write error is
    /// reported once on stderr and does not stop the run (the faults matter more than the log).
    pub fn event(&mut self, name: &str, fields: Value) {
        self.event_at(name, Some(self.elapsed()), fields);
    }

    /// An event without `t` (written by another process than the one that started the run).
    pub fn event_at(&mut self, name: &str, t: Option<f64>, fields: Value) {
        let mut event = json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "event": name,
        });
        if let Some(t) = t {
            event["t"] = json!(t);
        }
        if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
            event.extend(fields);
        }
        let line = format!("{event}\n");
        if let Err(err) = self.file.write_all(line.as_bytes()).and_then(|()| self.file.flush()) {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| eprintln!("chaos: warning: writing the timeline {}: {err}", self.path.display()));
        }
        self.events.push(event);
    }

    #[must_use]
    pub fn events(&self) -> &[Value] {
        &self.events
    }
}

/// Reads a saved timeline; a bad line is an error naming its line number.
pub fn read(path: &Path) -> Result<Vec<Value>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut events = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        // A run killed mid-write may leave a cut last line: say so, keep the rest.
        match serde_json::from_str::<Value>(&line) {
            Ok(event) if event.get("event").is_some() => events.push(event),
            Ok(_) => {
                return Err(format!("{}:{}: not a chaos timeline event (no \"event\")", path.display(), number + 1));
            }
            Err(err) => return Err(format!("{}:{}: not JSON: {err}", path.display(), number + 1)),
        }
    }
    if events.is_empty() {
        return Err(format!("{}: no events", path.display()));
    }
    Ok(events)
}

/// Pass counts of one check in one phase.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

/// The human summary of a run, from its events: verdict, faults with their counts, and the
/// checks' pass rates before, during and after.
#[must_use]
pub fn summary(events: &[Value]) -> String {
    let mut out = String::new();
    let find = |name: &str| events.iter().find(|e| e["event"] == name);
    let Some(start) = find("experiment") else {
        return "not a chaos experiment timeline: it has no \"experiment\" event\n".into();
    };
    let _ = writeln!(
        out,
        "experiment \"{}\" ({}) on {}",
        start["name"].as_str().unwrap_or("?"),
        start["id"].as_str().unwrap_or("?"),
        start["target"].as_str().unwrap_or("?")
    );
    // Faults: kind and window from `plan`, totals from `detach` (or the last `counts`).
    let mut faults: BTreeMap<u64, (String, String, u64, u64, u64, &str)> = BTreeMap::new();
    for event in events.iter().filter(|e| e["event"] == "plan") {
        let number = event["fault"].as_u64().unwrap_or(0);
        let window = format!(
            "+{}s for {}s",
            event["start_s"].as_f64().unwrap_or(0.0),
            event["duration_s"].as_f64().unwrap_or(0.0)
        );
        faults.insert(number, (event["kind"].as_str().unwrap_or("?").to_owned(), window, 0, 0, 0, "not armed"));
    }
    for event in events {
        match event["event"].as_str() {
            Some("arm") => {
                if let Some(f) = faults.get_mut(&event["fault"].as_u64().unwrap_or(0)) {
                    f.5 = "armed";
                }
            }
            Some("counts") => {
                for c in event["faults"].as_array().into_iter().flatten() {
                    if let Some(f) = faults.get_mut(&c["fault"].as_u64().unwrap_or(0)) {
                        (f.2, f.3, f.4) = (
                            c["seen_total"].as_u64().unwrap_or(f.2),
                            c["matched_total"].as_u64().unwrap_or(f.3),
                            c["injected_total"].as_u64().unwrap_or(f.4),
                        );
                    }
                }
            }
            Some("detach") => {
                if let Some(f) = faults.get_mut(&event["fault"].as_u64().unwrap_or(0)) {
                    (f.2, f.3, f.4) = (
                        event["seen"].as_u64().unwrap_or(f.2),
                        event["matched"].as_u64().unwrap_or(f.3),
                        event["injected"].as_u64().unwrap_or(f.4),
                    );
                    f.5 = "detached";
                }
            }
            _ => {}
        }
    }
    let _ = writeln!(
        out,
        "{:<22} {:<18} {:>10} {:>10} {:>10} {:>8}  state",
        "fault", "window", "seen", "matched", "injected", "rate"
    );
    for (number, (kind, window, seen, matched, injected, state)) in &faults {
        let rate =
            if *matched == 0 { "-".to_owned() } else { format!("{:.2}%", 100.0 * *injected as f64 / *matched as f64) };
        let _ = writeln!(
            out,
            "{:<22} {window:<18} {seen:>10} {matched:>10} {injected:>10} {rate:>8}  {state}",
            format!("#{number} {kind}")
        );
    }
    // Checks: pass counts per phase.
    let mut checks: BTreeMap<String, (BTreeMap<String, Tally>, String)> = BTreeMap::new();
    for check in start["checks"].as_array().into_iter().flatten() {
        let name = check["name"].as_str().unwrap_or("?").to_owned();
        checks
            .insert(name, (BTreeMap::new(), check["pass_rate"].as_f64().map_or_else(String::new, |r| format!("{r}%"))));
    }
    for event in events.iter().filter(|e| e["event"] == "check") {
        let name = event["check"].as_str().unwrap_or("?").to_owned();
        let phase = event["phase"].as_str().unwrap_or("?").to_owned();
        let tally = checks.entry(name).or_default().0.entry(phase).or_default();
        if event["ok"].as_bool() == Some(true) {
            tally.passed += 1;
        } else {
            tally.failed += 1;
        }
    }
    if !checks.is_empty() {
        let _ = writeln!(out, "{:<22} {:>16} {:>16} {:>16}  needs", "check", "before", "during", "after");
        for (name, (phases, needs)) in &checks {
            let cell = |phase: &str| {
                phases.get(phase).map_or_else(
                    || "-".to_owned(),
                    |t| {
                        let total = t.passed + t.failed;
                        format!("{}/{} {:.1}%", t.passed, total, 100.0 * t.passed as f64 / total.max(1) as f64)
                    },
                )
            };
            let _ = writeln!(
                out,
                "{name:<22} {:>16} {:>16} {:>16}  {needs}",
                cell("before"),
                cell("during"),
                cell("after")
            );
        }
    }
    if let Some(abort) = find("abort") {
        let _ = writeln!(
            out,
            "aborted at {}s: {}",
            abort["t"].as_f64().unwrap_or(0.0),
            abort["reason"].as_str().unwrap_or("?")
        );
    }
    match find("verdict") {
        Some(verdict) => {
            let _ = writeln!(out, "verdict: {}", verdict["summary"].as_str().unwrap_or("?"));
        }
        None => {
            let _ = writeln!(out, "verdict: none (the timeline ends before the run did: killed, or still running)");
        }
    }
    out
}

/// The exit code a timeline's verdict stands for (2 when it has none).
#[must_use]
pub fn exit_code(events: &[Value]) -> u8 {
    events
        .iter()
        .find(|e| e["event"] == "verdict")
        .and_then(|v| v["exit_code"].as_u64())
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(2)
}
