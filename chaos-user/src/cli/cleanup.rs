//! `chaos cleanup`: removes what crashed runs left in the kernel.
use std::process::ExitCode;

use crate::{experiment, ledger};

pub(super) fn run() -> ExitCode {
    let mut report = ledger::cleanup_stale();
    report.extend(experiment::clean_stale_runs());
    if report.is_empty() {
        println!("nothing to clean up: no run left anything behind");
    }
    for line in &report {
        println!("{line}");
    }
    if report.iter().any(|l| l.contains("could not")) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
