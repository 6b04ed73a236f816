//! Building what the tests, benchmarks and VM jobs run: the workspace's binaries and the
//! integration test executables, found through cargo's JSON messages. It only builds: setting the
//! machine up first is for the caller (main.rs orders setup, then build, then the task).
use std::{io::BufRead as _, path::PathBuf};

use anyhow::{Context as _, bail};

use crate::util;

/// The binaries the tests need, built once.
pub struct Binaries {
    pub chaos: PathBuf,
    pub workload: PathBuf,
    /// Integration test executables of the `chaos-tests` package.
    pub integration_tests: Vec<PathBuf>,
}

impl Binaries {
    /// Files to copy into a VM.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.chaos.clone(), self.workload.clone()];
        files.extend(self.integration_tests.iter().cloned());
        files.extend(golden_files());
        files
    }

    /// Environment that points the tests at these binaries and names the tier.
    pub fn env(&self, tier: &str) -> Vec<(String, String)> {
        vec![
            ("CHAOS_TEST_TIER".into(), tier.into()),
            ("CHAOS_BIN".into(), self.chaos.display().to_string()),
            ("CHAOS_WORKLOAD_BIN".into(), self.workload.display().to_string()),
        ]
    }
}

/// `cargo build --bins` and `cargo test --no-run -p chaos-tests`, returning the executables.
pub fn build_binaries() -> anyhow::Result<Binaries> {
    let mut binaries = build_bins()?;
    let tests = executables(
        util::cargo().args(["test", "--no-run", "-p", "chaos-tests", "--message-format=json-render-diagnostics"]),
        "build tests",
    )?;
    binaries.integration_tests =
        tests.into_iter().filter(|(_, kind, _)| kind == "test").map(|(_, _, path)| path).collect();
    Ok(binaries)
}

/// Only `cargo build --bins` (chaos and the workload, without the integration tests): what the
/// demo runs.
pub fn build_bins() -> anyhow::Result<Binaries> {
    let bins =
        executables(util::cargo().args(["build", "--bins", "--message-format=json-render-diagnostics"]), "build")?;
    let find = |name: &str| {
        bins.iter()
            .find(|(target, kind, _)| target == name && kind == "bin")
            .map(|(_, _, path)| path.clone())
            .with_context(|| format!("cargo build produced no {name} binary"))
    };
    Ok(Binaries { chaos: find("chaos")?, workload: find("chaos-workload")?, integration_tests: Vec::new() })
}

/// (target name, target kind, executable) of every executable artifact cargo reports.
fn executables(command: &mut std::process::Command, step: &str) -> anyhow::Result<Vec<(String, String, PathBuf)>> {
    let output =
        command.stderr(std::process::Stdio::inherit()).output().with_context(|| format!("{step}: cannot run cargo"))?;
    if !output.status.success() {
        bail!("{step}: cargo failed ({}); the compiler's messages are above", output.status);
    }
    let mut found = Vec::new();
    for line in output.stdout.lines().map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(executable) = message["executable"].as_str() {
            let name = message["target"]["name"].as_str().unwrap_or_default().to_owned();
            let kind = message["target"]["kind"][0].as_str().unwrap_or_default().to_owned();
            found.push((name, kind, PathBuf::from(executable)));
        }
    }
    Ok(found)
}

/// The golden files of `tests/tests/golden.rs` (what chaos prints, one set per distinct output:
/// `host`, and `vm` shared by the VM kernels): the test reads them at their path in the source
/// tree, inside the VM too.
fn golden_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(sets) = std::fs::read_dir(crate::util::root().join("tests/golden")) else { return files };
    for set in sets.flatten() {
        if let Ok(entries) = std::fs::read_dir(set.path()) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}
