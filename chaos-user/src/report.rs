//! What a run did, for people (a short table) and for programs (`--output json`): why it
//! stopped, its counters per direction, and the output format.
use std::{fmt::Write as _, time::Duration};

use chaos_common::{Direction, FaultCounters};
use serde::Serialize;

use crate::{
    injections::{HitSummary, HitTally, Injection},
    plan::{FaultPlan, options::serialize_secs},
    targets::Target,
};

impl FaultPlan {
    /// The report of this plan's run: what it was, how it ended and what it counted.
    #[must_use]
    pub(crate) fn report(
        &self,
        elapsed: Duration,
        stopped: StopReason,
        counters: Vec<DirectionCounters>,
        hits: Option<Hits>,
    ) -> FaultReport<'_> {
        FaultReport {
            fault: self.fault,
            target: &self.target,
            summary: &self.summary,
            parameters: &self.parameters,
            requested: self.duration,
            elapsed,
            stopped,
            counters,
            hits,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub(crate) enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// The outcome of one fault.
#[derive(Debug, Serialize)]
pub(crate) struct FaultReport<'a> {
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
    /// Who was hit, when the fault was traced (`--trace-injections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hits: Option<Hits>,
}

/// A traced fault's records and their summary.
#[derive(Debug, Serialize)]
pub(crate) struct Hits {
    #[serde(flatten)]
    pub summary: HitSummary,
    /// Every record, in order (at most the trace rate a second of the run).
    pub samples: Vec<Injection>,
}

impl Hits {
    #[must_use]
    pub(crate) fn of(samples: Vec<Injection>) -> Self {
        let mut tally = HitTally::default();
        samples.iter().for_each(|s| tally.add(s));
        Self { summary: tally.summary(), samples }
    }
}

impl FaultReport<'_> {
    #[must_use]
    pub(crate) fn render(&self, format: OutputFormat, injected_word: &str) -> String {
        match format {
            OutputFormat::Json => serde_json::to_string_pretty(self).expect("report serializes") + "\n",
            OutputFormat::Text => self.text(injected_word),
        }
    }

    fn text(&self, injected_word: &str) -> String {
        let ended = match self.stopped {
            StopReason::Deadline => "reached its deadline".to_owned(),
            StopReason::Signal(signal) => format!("stopped early by {}", signal.name()),
            StopReason::Cancelled => "stopped early by the daemon".to_owned(),
            StopReason::TargetGone => "stopped early: target gone (its cgroup was removed)".to_owned(),
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
        match &self.hits {
            Some(hits) if hits.summary.records == 0 => out.push_str("who was hit: no injection records\n"),
            Some(hits) => out.push_str(&hits.summary.text()),
            None => {}
        }
        out
    }
}

/// The exit status of a fault or experiment whose target went away mid-run (0, 1 and 2 are
/// taken by the verdicts, 128 + n by signals).
pub(crate) const TARGET_GONE_EXIT: u8 = 3;

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "by", content = "signal")]
pub(crate) enum StopReason {
    Deadline,
    Signal(StopSignal),
    /// The daemon ended the run (kill switch, pause --now, stop-all, its own end).
    Cancelled,
    /// The target's cgroup was removed (its container or unit ended) while the fault ran.
    #[serde(rename = "target_gone")]
    TargetGone,
}

/// The signals that stop a run early (after clean-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum StopSignal {
    #[serde(rename = "SIGHUP")]
    Hup = 1,
    #[serde(rename = "SIGINT")]
    Int = 2,
    #[serde(rename = "SIGTERM")]
    Term = 15,
}

impl StopSignal {
    #[must_use]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Hup => "SIGHUP",
            Self::Int => "SIGINT",
            Self::Term => "SIGTERM",
        }
    }
}

impl StopReason {
    /// Conventional exit status: 0 for a run that reached its deadline, 128 + signal for one
    /// stopped by a signal, 3 for one whose target went away.
    #[must_use]
    pub(crate) const fn exit_code(self) -> u8 {
        match self {
            Self::Deadline => 0,
            Self::Signal(signal) => 128 + signal as u8,
            Self::Cancelled => 128 + StopSignal::Term as u8,
            Self::TargetGone => TARGET_GONE_EXIT,
        }
    }
}

/// Counters of one direction at one moment. The names are stable (they become metrics).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct DirectionCounters {
    pub direction: &'static str,
    pub seen: u64,
    pub matched: u64,
    pub injected: u64,
}

impl DirectionCounters {
    /// `label` names the slot when it does not count a packet direction (e.g. `calls`).
    pub(crate) fn new(direction: Direction, label: Option<&'static str>, c: FaultCounters) -> Self {
        let direction = label.unwrap_or_else(|| direction_name(direction));
        Self { direction, seen: c.seen, matched: c.matched, injected: c.injected }
    }
}

#[must_use]
pub(crate) const fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Egress => "egress",
        Direction::Ingress => "ingress",
    }
}
