//! What a run did, for people (a short table) and for programs (`--output json`).
use std::{fmt::Write as _, time::Duration};

use serde::Serialize;

use crate::{
    plan::serialize_secs,
    run::{DirectionCounters, StopReason},
    target::Target,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// The outcome of one fault.
#[derive(Debug, Serialize)]
pub struct FaultReport<'a> {
    pub fault: &'static str,
    pub target: &'a Target,
    #[serde(skip)]
    pub summary: &'a str,
    pub parameters: &'a serde_json::Value,
    #[serde(serialize_with = "serialize_secs")]
    pub requested: Duration,
    #[serde(serialize_with = "serialize_secs")]
    pub elapsed: Duration,
    pub stopped: StopReason,
    /// Counter names are stable: seen, matched, injected.
    pub counters: Vec<DirectionCounters>,
}

impl FaultReport<'_> {
    #[must_use]
    pub fn render(&self, format: OutputFormat, injected_word: &str) -> String {
        match format {
            OutputFormat::Json => serde_json::to_string_pretty(self).expect("report serializes") + "\n",
            OutputFormat::Text => self.text(injected_word),
        }
    }

    fn text(&self, injected_word: &str) -> String {
        let ended = match self.stopped {
            StopReason::Deadline => "reached its deadline".to_owned(),
            StopReason::Signal(signal) => format!("stopped early by {}", signal.name()),
        };
        let mut out = format!(
            "{} ({}) on {} {ended} after {:.1}s of {}; detached.\n",
            self.fault,
            self.summary,
            self.target.describe(),
            self.elapsed.as_secs_f64(),
            humantime::format_duration(self.requested),
        );
        let _ =
            writeln!(out, "{:<10} {:>12} {:>12} {:>12} {:>8}", "direction", "seen", "matched", injected_word, "rate");
        for c in &self.counters {
            let rate = if c.matched == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}%", 100.0 * c.injected as f64 / c.matched as f64)
            };
            let _ =
                writeln!(out, "{:<10} {:>12} {:>12} {:>12} {:>8}", c.direction, c.seen, c.matched, c.injected, rate);
        }
        out
    }
}
