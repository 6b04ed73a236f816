//! `chaos daemon --check FILE`: the configuration validated, and the schedule of the next runs
//! printed as the daemon would keep it (windows and blackouts skip starts); attaches nothing.
use std::{path::Path, process::ExitCode, time::Duration};

use super::{
    config::{self, DaemonConfig, Selector},
    scheduler::{self, next_delay, pick_weighted, random_u64},
};
use crate::targets::CgroupFs;

#[must_use]
pub fn describe_selector(selector: &Selector) -> String {
    match selector {
        Selector::Cgroup(glob) => format!("cgroup {glob}"),
        Selector::Unit(glob) => format!("unit {glob}"),
        Selector::Container(glob) => format!("container {glob}"),
        Selector::ContainerName(glob) => format!("container name {glob}"),
        Selector::Pods(pods) => {
            let namespace = pods.namespace.as_ref().map(|n| format!(" in namespace {n}")).unwrap_or_default();
            let container = pods.container_name.as_ref().map(|c| format!(", container {c}")).unwrap_or_default();
            format!("pods {}{namespace}{container}", pods.text)
        }
    }
}

/// `chaos daemon --check FILE`: validates and prints the catalogue, budgets and next runs.
pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = DaemonConfig::load(path)?;
    if config.catalogue.is_empty() {
        println!("{}: valid: no experiment, so nothing is scheduled until an [[experiment]] is added", path.display());
    } else {
        println!("{}: valid: {} experiment(s)", path.display(), config.catalogue.len());
    }
    let cgroups = CgroupFs::discover().ok();
    let opted_in = if config.kubernetes.namespaces.is_empty() {
        "none (no pod is eligible)".to_owned()
    } else {
        config.kubernetes.namespaces.join(", ")
    };
    if !config.kubernetes.namespaces.is_empty()
        || config.catalogue.iter().any(|e| matches!(e.selector, Some(Selector::Pods(_))))
    {
        println!("kubernetes namespaces opted in: {opted_in}");
    }
    for entry in &config.catalogue {
        let targets = match (&entry.selector, &cgroups) {
            (Some(selector), Some(cgroups)) => {
                let found = scheduler::matches(selector, cgroups, &config.kubernetes);
                let notes: String = found.notes.iter().map(|n| format!("\n    note: {n}")).collect();
                format!("{} ({} match now){notes}", describe_selector(selector), found.cgroups.len())
            }
            (Some(selector), None) => describe_selector(selector),
            (None, _) => "the file's own target".to_owned(),
        };
        println!("  {} (weight {}, {}): {}", entry.name, entry.weight, entry.file.display(), targets);
    }
    let budget = &config.budget;
    println!(
        "budget: at most {} run(s) an hour, {} at once, {} between runs on one target, {:.0} % of a selector's matches",
        budget.max_runs_per_hour,
        budget.max_concurrent,
        humantime::format_duration(budget.min_gap_per_target),
        budget.max_share * 100.0
    );
    println!(
        "after a violated steady state: paused {}",
        config
            .cool_down
            .map_or("until `chaos daemon resume`".to_owned(), |d| format!("for {}", humantime::format_duration(d)))
    );
    let schedule = &config.schedule;
    let when = match &schedule.when {
        config::When::Every(every) => format!("every {}", humantime::format_duration(*every)),
        config::When::Cron(cron) => format!("cron \"{cron}\""),
    };
    println!("next runs ({when} ± {}, time zone {}):", humantime::format_duration(schedule.jitter), schedule.time_zone);
    for window in &schedule.windows {
        println!("  allowed: {}", scheduler::describe_window(window));
    }
    for window in &schedule.blackouts {
        println!("  blackout: {}", scheduler::describe_window(window));
    }
    let weights: Vec<u32> = config.catalogue.iter().map(|e| e.weight).collect();
    let mut at = chrono::Utc::now();
    let mut shown = 0;
    // Starts that fall outside the windows are skipped, as the daemon skips them.
    for _ in 0..if config.catalogue.is_empty() { 0 } else { 100_000 } {
        let delay = next_delay(schedule, at, random_u64());
        at += chrono::TimeDelta::from_std(delay.max(Duration::from_millis(1))).unwrap_or(chrono::TimeDelta::MAX);
        if scheduler::allowed_at(schedule, at).is_err() {
            continue;
        }
        let name = pick_weighted(&weights, random_u64()).map_or("?", |i| config.catalogue[i].name.as_str());
        println!("  {}  {name}", at.with_timezone(&schedule.time_zone).format("%Y-%m-%dT%H:%M:%S%:z"));
        shown += 1;
        if shown == 10 {
            break;
        }
    }
    if config.catalogue.is_empty() {
        println!("  none: the catalogue is empty");
    } else if shown == 0 {
        println!("  none: the windows and blackouts leave no time to run");
    }
    println!("check: nothing attached");
    Ok(ExitCode::SUCCESS)
}
