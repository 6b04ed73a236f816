//! The timeline of a run: one JSON object per line, each with an RFC 3339 `time`, the seconds
//! since the experiment started (`t`) and an `event` name ([`TimelineEvent`]). Lines are written
//! and flushed as things happen, so a run that is killed leaves a readable partial timeline.
//! The summary printed at the end is rendered from these events alone, which is what
//! `chaos report` does with a saved file.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::{self, BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use serde::Deserialize;
use serde_json::{Value, json};

use super::events::TimelineEvent;
use crate::fault::limit::events::LimitEvent;

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

    /// Writes one event. A write error is reported once on stderr and does not stop the run
    /// (the faults matter more than the log).
    pub fn event(&mut self, event: &TimelineEvent) {
        self.event_at(Some(self.elapsed()), event);
    }

    /// An event with its own `t` (none: written by another process than the one that started
    /// the run, which does not know its clock).
    pub fn event_at(&mut self, t: Option<f64>, event: &TimelineEvent) {
        let mut line =
            serde_json::to_value(event).unwrap_or_else(|e| json!({ "event": "unknown", "error": e.to_string() }));
        line["time"] = json!(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
        if let Some(t) = t {
            line["t"] = json!(t);
        }
        let text = format!("{line}\n");
        if let Err(err) = self.file.write_all(text.as_bytes()).and_then(|()| self.file.flush()) {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| eprintln!("chaos: warning: writing the timeline {}: {err}", self.path.display()));
        }
        self.events.push(line);
    }

    /// The events written so far, as written.
    #[must_use]
    pub fn events(&self) -> &[Value] {
        &self.events
    }
}

/// One event as a timeline holds it.
#[derive(Clone, Debug, Deserialize)]
pub struct Recorded {
    #[serde(default)]
    pub t: Option<f64>,
    #[serde(flatten)]
    pub event: TimelineEvent,
}

/// Reads a saved timeline: each event as written (for `--output json`) and typed. A bad line
/// is an error naming its line number.
pub fn read(path: &Path) -> Result<Vec<(Value, Recorded)>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut events = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: {e}", path.display(), number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str::<Value>(&line)
            .map_err(|err| format!("{}:{}: not JSON: {err}", path.display(), number + 1))?;
        if value.get("event").is_none() {
            return Err(format!("{}:{}: not a chaos timeline event (no \"event\")", path.display(), number + 1));
        }
        let recorded = Recorded::deserialize(&value)
            .map_err(|err| format!("{}:{}: not a chaos timeline event: {err}", path.display(), number + 1))?;
        events.push((value, recorded));
    }
    if events.is_empty() {
        return Err(format!("{}: no events", path.display()));
    }
    Ok(events)
}

/// The events as written, typed (the runner's own, for its summary).
#[must_use]
pub fn typed(events: &[Value]) -> Vec<Recorded> {
    events.iter().filter_map(|e| Recorded::deserialize(e).ok()).collect()
}

/// Pass counts of one check in one phase.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    passed: u64,
    failed: u64,
}

/// One fault's line in the summary.
struct FaultLine {
    kind: String,
    window: String,
    seen: u64,
    matched: u64,
    injected: u64,
    state: &'static str,
}

/// The human summary of a run, from its events: verdict, faults with their counts, and the
/// checks' pass rates before, during and after.
#[must_use]
pub fn summary(events: &[Recorded]) -> String {
    let mut out = String::new();
    let Some((start, _)) = events.iter().find_map(|e| match &e.event {
        TimelineEvent::Experiment(start) => Some((start, e.t)),
        _ => None,
    }) else {
        return "not a chaos experiment timeline: it has no \"experiment\" event\n".into();
    };
    let _ = writeln!(out, "experiment \"{}\" ({}) on {}", start.name, start.id, start.target);
    // Faults: kind and window from `plan`, totals from `detach` (or the last `counts`).
    let mut faults: BTreeMap<usize, FaultLine> = BTreeMap::new();
    for event in events {
        match &event.event {
            TimelineEvent::Plan(plan) => {
                let window = format!("+{}s for {}s", plan.start_s, plan.duration_s);
                let line =
                    FaultLine { kind: plan.kind.clone(), window, seen: 0, matched: 0, injected: 0, state: "not armed" };
                faults.insert(plan.fault, line);
            }
            TimelineEvent::Arm { fault, .. } => {
                if let Some(f) = faults.get_mut(fault) {
                    f.state = "armed";
                }
            }
            TimelineEvent::Counts { faults: counts } => {
                for c in counts {
                    if let Some(f) = faults.get_mut(&c.fault) {
                        (f.seen, f.matched, f.injected) = (c.seen_total, c.matched_total, c.injected_total);
                    }
                }
            }
            TimelineEvent::Detach(detach) => {
                if let Some(f) = faults.get_mut(&detach.fault) {
                    (f.seen, f.matched, f.injected) = (detach.seen, detach.matched, detach.injected);
                    f.state = "detached";
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
    for (number, f) in &faults {
        let rate = if f.matched == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}%", 100.0 * f.injected as f64 / f.matched as f64)
        };
        let _ = writeln!(
            out,
            "{:<22} {:<18} {:>10} {:>10} {:>10} {rate:>8}  {}",
            format!("#{number} {}", f.kind),
            f.window,
            f.seen,
            f.matched,
            f.injected,
            f.state
        );
    }
    let reattaches: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            TimelineEvent::Reattach(r) => Some(r),
            _ => None,
        })
        .collect();
    if let Some(last) = reattaches.last() {
        let away: f64 = reattaches.iter().map(|r| r.gone_s).sum();
        let _ = writeln!(
            out,
            "re-attached {} time(s) (target away {away:.1}s in all); last on cgroup {} (id {})",
            reattaches.len(),
            last.new_cgroup,
            last.new_id
        );
    }
    for event in events {
        match &event.event {
            TimelineEvent::Hint { fault, hint } => {
                let _ = writeln!(out, "hint for fault #{fault}: {hint}");
            }
            TimelineEvent::Warning { warning } => {
                let _ = writeln!(out, "warning: {warning}");
            }
            TimelineEvent::Limit { fault, at_s, did } => {
                if let Some(line) = did.describe() {
                    let _ = writeln!(out, "limit #{fault} at {at_s:.1}s: {line}");
                }
            }
            _ => {}
        }
    }
    // Limits: what their targets went through while they held, from their samples.
    let mut limited: BTreeMap<usize, Vec<crate::fault::limit::evidence::Window>> = BTreeMap::new();
    let mut resources = BTreeMap::new();
    for event in events {
        if let TimelineEvent::Limit { fault, did: LimitEvent::Sample { resource, window, .. }, .. } = &event.event {
            limited.entry(*fault).or_default().push(*window);
            resources.insert(*fault, *resource);
        }
    }
    for (fault, windows) in &limited {
        let resource = resources[fault];
        let _ = writeln!(
            out,
            "limit #{fault} while it held ({} samples): {}",
            windows.len(),
            crate::fault::limit::evidence::Window::merged(windows).line(resource)
        );
    }
    // Checks: pass counts per phase.
    let mut checks: BTreeMap<String, (BTreeMap<&'static str, Tally>, String)> = BTreeMap::new();
    for check in &start.checks {
        checks.insert(check.name.clone(), (BTreeMap::new(), format!("{}%", check.pass_rate.as_percent())));
    }
    for event in events {
        if let TimelineEvent::Check { check, phase, ok, group, .. } = &event.event {
            let name = group.as_ref().map_or_else(|| check.clone(), |group| format!("{check} ({group})"));
            let tally = checks.entry(name).or_default().0.entry(phase.name()).or_default();
            if *ok {
                tally.passed += 1;
            } else {
                tally.failed += 1;
            }
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
    // Who was hit: traced faults' injection records, per fault.
    let mut hits: BTreeMap<usize, crate::injections::HitTally> = BTreeMap::new();
    for event in events {
        if let TimelineEvent::Injection { fault, hit, .. } = &event.event {
            hits.entry(*fault).or_default().add(hit);
        }
    }
    for (number, tally) in &hits {
        let kind = faults.get(number).map_or("", |f| f.kind.as_str());
        let _ = write!(out, "#{number} {kind}: {}", tally.summary().text());
    }
    for event in events {
        if let TimelineEvent::Comparison(comparison) = &event.event {
            let _ = writeln!(
                out,
                "compared with the control: {} ({}): {}",
                comparison.check, comparison.tolerance, comparison.words
            );
        }
    }
    if let Some((t, reason)) = events.iter().find_map(|e| match &e.event {
        TimelineEvent::Abort { reason, .. } => Some((e.t, reason)),
        _ => None,
    }) {
        let _ = writeln!(out, "aborted at {}s: {reason}", t.unwrap_or(0.0));
    }
    match events.iter().find_map(|e| match &e.event {
        TimelineEvent::Verdict { summary, .. } => Some(summary),
        _ => None,
    }) {
        Some(summary) => {
            let _ = writeln!(out, "verdict: {summary}");
        }
        None => {
            let _ = writeln!(out, "verdict: none (the timeline ends before the run did: killed, or still running)");
        }
    }
    out
}

/// The exit code a timeline's verdict stands for (2 when it has none).
#[must_use]
pub fn exit_code(events: &[Recorded]) -> u8 {
    events
        .iter()
        .find_map(|e| match &e.event {
            TimelineEvent::Verdict { exit_code, .. } => Some(*exit_code),
            _ => None,
        })
        .unwrap_or(2)
}
