//! Experiments: a file with a target, several faults with their own start and duration, a
//! steady-state hypothesis checked before, during and after them, and abort rules.
//!
//! The path of an experiment: [`file::load`] (the TOML file, every error at file:line:column)
//! -> [`plan::plan`] (the target resolved, each fault planned by its family's planner,
//! conflicts with running experiments refused) -> [`runner`] (baseline checks, faults armed at
//! their offsets with their own kernel deadlines, ramps, checks, abort rules, after checks) ->
//! the [`timeline`] (JSON Lines, written as things happen) -> the summary and the exit code.
pub mod armed;
pub mod detached;
pub mod events;
pub mod faults;
pub mod file;
pub mod follow;
pub mod hypothesis;
pub mod plan;
pub mod report_html;
pub mod report_markdown;
pub mod review;
pub mod runner;
pub mod source;
pub mod steps;
pub mod timeline;

use std::{ops::Range, time::Duration};

use source::{FileError, Source};

use crate::{
    fault::{PlanFault, registry::FaultKind},
    plan::options::Ppm,
    steady::Check,
    targets::TargetName,
};

/// An experiment as its file describes it, validated.
#[derive(Debug)]
pub struct Experiment {
    pub source: Source,
    /// `name`, or the file's stem.
    pub name: String,
    pub target: TargetName,
    pub target_span: Range<usize>,
    /// `follow = true`: when the target's cgroup goes away mid-run, resolve its name again and
    /// re-attach the live faults to the new cgroup instead of ending "target gone".
    pub follow: bool,
    /// How long the faults phase lasts (the baseline and after phases come on top).
    pub duration: Duration,
    pub faults: Vec<FaultEntry>,
    pub steady_state: SteadyState,
    pub abort: AbortRules,
}

impl Experiment {
    /// An error at a place in the file (for errors found after parsing: target, kernel).
    #[must_use]
    pub fn error_at(&self, span: &Range<usize>, message: impl Into<String>) -> FileError {
        self.source.error(span, message)
    }
}

/// One `[[fault]]`.
#[derive(Debug)]
pub struct FaultEntry {
    /// 1-based, in file order: how the timeline and the summary name it (`#1 net drop`).
    pub number: usize,
    pub kind: &'static FaultKind,
    pub options: Box<dyn PlanFault>,
    /// The command-line flags this table stands for.
    pub flags: Vec<String>,
    /// Offset from the start of the faults phase.
    pub start: Duration,
    pub duration: Duration,
    pub ramp: Option<Ramp>,
    /// Where its `kind` is, for errors found later.
    pub span: Range<usize>,
    pub ramp_span: Option<Range<usize>>,
}

impl FaultEntry {
    /// `#1 net drop`
    #[must_use]
    pub fn label(&self) -> String {
        format!("#{} {}", self.number, self.kind.name)
    }

    /// `chaos net drop --percent=20 ...`, for people.
    #[must_use]
    pub fn command_line(&self) -> String {
        format!("{} {}", self.kind.name, self.flags.join(" "))
    }
}

/// The percentage rises from `from` to the fault's own in `steps` equal steps, evenly spread
/// over the fault's duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ramp {
    pub from: Ppm,
    pub steps: u32,
}

#[derive(Debug, Default)]
pub struct SteadyState {
    /// How long the checks run before any fault (the baseline) and after the last one.
    pub before: Duration,
    pub after: Duration,
    pub checks: Vec<Check>,
    /// The control group, when the file has `[control]`.
    pub control: Option<Control>,
}

/// `[control]`: a replica that gets no fault, measured by the checks that name it.
#[derive(Debug)]
pub struct Control {
    pub target: TargetName,
    pub target_span: Range<usize>,
    /// How sure a comparison must be that the target is worse (default 0.99).
    pub confidence: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortRules {
    /// Abort as soon as a check has failed more often than its pass rate allows over the phase.
    pub on_violation: bool,
    /// Abort when any check fails this many times in a row.
    pub consecutive_failures: Option<u32>,
}

impl Default for AbortRules {
    fn default() -> Self {
        Self { on_violation: true, consecutive_failures: None }
    }
}

/// The phases of an experiment, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    During,
    After,
}

impl Phase {
    pub const ALL: [Self; 3] = [Self::Before, Self::During, Self::After];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::During => "during",
            Self::After => "after",
        }
    }
}

/// Removes what finished or crashed experiments left: records of foreground runs whose process
/// is gone (their links went with it), and the pins of detached experiments whose deadline
/// has passed or that no record describes. Returns one line per item removed.
#[must_use]
pub fn clean_stale_runs() -> Vec<String> {
    use crate::run_records::{self, Liveness};
    let mut lines = run_records::remove_unreadable();
    lines.extend(run_records::remove_orphan_schedules());
    let records = run_records::all();
    for record in &records {
        if record.liveness() != Liveness::Stale {
            continue;
        }
        if record.detached {
            let why = if record.starting { "its chaos died while setting it up" } else { "deadline passed" };
            lines.extend(detached::end(record, why));
        } else {
            record.remove();
            lines.push(format!(
                "removed the record of run {} (pid {} is gone; its links went with it)",
                record.id, record.pid
            ));
        }
    }
    // An orphan younger than a minute may belong to a run that is still writing its record.
    let old_enough = |path: &std::path::Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(60)))
    };
    for dir in detached::orphan_pins(&run_records::all()) {
        if !old_enough(&dir) {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => lines.push(format!("removed pins that no experiment describes: {}", dir.display())),
            Err(err) => lines.push(format!("could not remove {}: {err}", dir.display())),
        }
    }
    lines
}
