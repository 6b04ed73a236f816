//! `chaos cleanup`: removes what crashed runs left in the kernel.
use std::process::ExitCode;

use crate::ledger;

pub fn run() -> ExitCode {
    let report = ledger::cleanup_stale();
    if report.is_empty() {
        println!("nothing to clean up: no run left anything behind");
    }
    for line in &report {
        println!("{line}");
    }
    if report.iter().any(|l| l.contains("could not")) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
