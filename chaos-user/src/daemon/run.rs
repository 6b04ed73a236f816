//! One run of the daemon: the same path as `chaos run FILE` (load, plan, run to a verdict) on
//! the target the daemon picked, and the retention of the runs' timelines.
use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::{
    experiment::{file, plan, runner},
    features::Prober,
    report::OutputFormat,
    run_records::RunKind,
    targets::TargetName,
};

/// Runs `file` on the cgroup the daemon picked, or, when the run follows its target, on the
/// name that cgroup was found by (resolved to the same cgroup now, and again after a restart).
pub(super) fn run_one(
    file: &Path,
    target: &str,
    follow: Option<&TargetName>,
    timeline: &Path,
    cancel: watch::Receiver<bool>,
) -> Result<u8, String> {
    let mut experiment = file::load(file, false).map_err(|e| e.to_string())?;
    match follow {
        Some(name) => {
            experiment.target = name.clone();
            experiment.follow = true;
        }
        None => {
            // A cgroup it picked, with no name to resolve again: the run ends "target gone"
            // and the schedule picks a target afresh.
            experiment.target = TargetName::Cgroup(target.to_owned());
            experiment.follow = false;
        }
    }
    let kernel = Prober::new();
    let plan = plan::plan(&experiment, false, &kernel).map_err(|e| e.to_string())?;
    let options = runner::RunOptions {
        timeline: timeline.to_owned(),
        output: OutputFormat::Json,
        kind: RunKind::Daemon,
        cancel: Some(cancel),
    };
    runner::run_to_verdict(&plan, &options).map_err(|e| format!("{e:#}"))
}

/// The summary of the verdict a run's timeline ends with ("fault 1 could not attach: ..."), for
/// the daemon's log line of a run that ended without one of its own words.
pub(super) fn verdict_summary(timeline: &Path) -> Option<String> {
    let events = crate::experiment::timeline::read(timeline).ok()?;
    events.into_iter().rev().find_map(|(_, recorded)| match recorded.event {
        crate::experiment::events::TimelineEvent::Verdict { summary, .. } => Some(summary),
        _ => None,
    })
}

/// Keeps the newest `keep` timelines (their names start with the time).
pub(super) fn prune_timelines(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "jsonl")).collect();
    if files.len() <= keep {
        return;
    }
    files.sort();
    for old in &files[..files.len() - keep] {
        let _ = std::fs::remove_file(old);
    }
}
