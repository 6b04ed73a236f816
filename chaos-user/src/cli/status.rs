//! `chaos status` and `chaos stop`: everything chaos runs now: experiments (foreground and
//! detached), one-shot faults from the command line, the daemon's runs.
use std::process::ExitCode;

use serde_json::json;

use crate::{
    engine::PinnedFault,
    experiment::{self, detached},
    report::OutputFormat,
    run_records::{self, Liveness, RunKind, RunRecord},
};

pub(super) fn status(output: OutputFormat) -> ExitCode {
    // Expired detached experiments and dead runs are removed, not listed as running.
    let cleaned = experiment::clean_stale_runs();
    let records = run_records::all();
    let rows: Vec<serde_json::Value> = records.iter().map(describe).collect();
    match output {
        OutputFormat::Json => println!("{}", json!({ "experiments": rows, "cleaned": cleaned })),
        OutputFormat::Text => {
            for line in &cleaned {
                println!("cleaned: {line}");
            }
            if records.is_empty() {
                println!("no experiment is running");
            }
            for (record, row) in records.iter().zip(&rows) {
                println!(
                    "{}  {:<10}  {}  {} on {}  {}s left  ({})",
                    record.id,
                    record.kind.name(),
                    if record.detached { "detached  " } else { "foreground" },
                    record.name,
                    record.target,
                    record.seconds_left(),
                    if record.detached { "pinned".to_owned() } else { format!("pid {}", record.pid) }
                );
                for fault in row["faults"].as_array().into_iter().flatten() {
                    println!("    {}  injected {}", fault["label"].as_str().unwrap_or("?"), fault["injected"]);
                }
            }
        }
    }
    ExitCode::SUCCESS
}

fn describe(record: &RunRecord) -> serde_json::Value {
    let faults: Vec<serde_json::Value> = record
        .faults
        .iter()
        .map(|fault| {
            // Detached faults are read from their pinned maps; foreground runs keep theirs fresh.
            let injected = fault
                .pin_dir
                .as_ref()
                .and_then(|dir| PinnedFault::open(dir).and_then(|p| p.total()).ok())
                .map_or(fault.injected, |t| t.injected);
            json!({ "label": fault.label, "hooks": fault.hooks, "injected": injected })
        })
        .collect();
    json!({
        "id": record.id,
        "detached": record.detached,
        "kind": record.kind,
        "pid": record.pid,
        "name": record.name,
        "file": record.file,
        "target": record.target,
        "seconds_left": record.seconds_left(),
        "timeline": record.timeline,
        "faults": faults,
    })
}

/// Stops one experiment, or all: a foreground run gets SIGTERM (it detaches and reports); a
/// detached one is unpinned here.
pub(super) fn stop(id: Option<&str>, all: bool) -> anyhow::Result<ExitCode> {
    let records = run_records::all();
    let chosen: Vec<&RunRecord> = match (id, all) {
        (_, true) => records.iter().collect(),
        (Some(id), false) => {
            let found: Vec<&RunRecord> = records.iter().filter(|r| r.id == id).collect();
            if found.is_empty() {
                let known: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
                anyhow::bail!(
                    "no experiment {id} is running ({}); `chaos status` lists them",
                    if known.is_empty() { "none is".to_owned() } else { format!("running: {}", known.join(", ")) }
                );
            }
            found
        }
        (None, false) => {
            anyhow::bail!("name the experiment to stop (`chaos stop ID`, ids from `chaos status`) or pass --all")
        }
    };
    if chosen.is_empty() {
        println!("no experiment is running");
    }
    for record in chosen {
        if record.detached {
            for line in detached::end(record, "stopped by chaos stop") {
                println!("{line}");
            }
            println!("stopped detached experiment {}", record.id);
        } else if record.liveness() == Liveness::Running
            && crate::os::process::process_alive(record.pid, record.pid_start)
        {
            // SAFETY: kill(2) on the run's own process (pid and start time checked).
            unsafe { libc::kill(record.pid as i32, libc::SIGTERM) };
            let what = match record.kind {
                RunKind::OneShot => "it detaches its fault and reports",
                RunKind::Daemon => "the daemon ends every run it has, detaching their faults, and exits",
                RunKind::Experiment => "it detaches its faults and writes its verdict",
            };
            println!("sent SIGTERM to {} {} (pid {}): {what}", record.kind.name(), record.id, record.pid);
        } else {
            record.remove();
            println!("experiment {} had already ended (pid {} is gone); removed its record", record.id, record.pid);
        }
    }
    Ok(ExitCode::SUCCESS)
}
