//! `cargo xtask test`: set up, build, then run the tests on the host kernel and on each VM kernel
//! (two guests at a time).
//! Skipped tests are listed per tier with their reasons, so a skip never passes unnoticed.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::Stdio,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    build::{self, Binaries},
    errinj, setup, util, vm,
};

struct TierResult {
    tier: String,
    passed: bool,
    detail: String,
    skips: Vec<String>,
    /// One line per failed test (name and the first line of its panic) and per kernel oops,
    /// repeated in the summary: a long run's log is often cut, and the end is what is read.
    failures: Vec<String>,
}

/// The failures a test run printed: "test: panic message" for each panicked test, and the
/// first line of any kernel oops or BUG the guest printed.
fn failure_digest(lines: &[String]) -> Vec<String> {
    let mut digest = Vec::new();
    let mut lines = lines.iter().map(String::as_str).peekable();
    while let Some(line) = lines.next() {
        let panicked = line.strip_prefix("thread '").and_then(|rest| rest.split_once('\''));
        if let Some((test, _)) = panicked.filter(|(_, tail)| tail.contains("panicked at")) {
            let message = lines.peek().copied().unwrap_or_default();
            digest.push(format!("{test}: {message}"));
        } else if ["Oops:", "BUG:", "traps: double fault", "Kernel panic"].iter().any(|m| line.contains(m)) {
            digest.push(format!("kernel: {}", line.trim()));
        }
    }
    digest
}

pub fn run(host: bool, vms: bool, kernels: &[vm::KernelName]) -> anyhow::Result<()> {
    // As non-root every integration test of the host tier would skip and the tier would pass
    // having run nothing. (The VM tiers run as root inside their guest.)
    // SAFETY: geteuid has no preconditions.
    if host && unsafe { libc::geteuid() } != 0 {
        bail!(
            "the host tier's integration tests create cgroups, network namespaces and BPF programs: run \
             `cargo xtask test` as root, or `cargo xtask test --vm-only`; `cargo test --workspace --exclude \
             chaos-tests` runs the unit tests without root"
        );
    }
    setup::run()?;
    let binaries = build::build_binaries()?;
    let mut results = Vec::new();
    // Tiers whose kernel is missing (only the 6.1-errinj one can be): listed, never silent.
    let mut skipped_tiers = Vec::new();
    if host {
        results.push(host_tier(&binaries)?);
    }
    for result in &mut results {
        result.fail_on_required_skips();
    }
    if vms {
        let kernels = if kernels.is_empty() { &vm::KernelName::ALL[..] } else { kernels };
        let mut available = Vec::new();
        for &kernel in kernels {
            match vm::available_kernel(kernel)? {
                Some(kernel) => available.push(kernel),
                None => skipped_tiers.push(format!(
                    "{:<13} skipped: no {} kernel on this machine; {}",
                    kernel.tier(),
                    kernel.label(),
                    errinj::HOW_TO_GET
                )),
            }
        }
        results.extend(vm_tiers(&binaries, &available)?);
    }
    println!("\ntest summary");
    for result in &results {
        println!("  {:<13} {} {}", result.tier, if result.passed { "passed" } else { "FAILED" }, result.detail);
        for failure in &result.failures {
            println!("                FAILED {failure}");
        }
        for skip in &result.skips {
            println!("                {skip}");
        }
    }
    for skipped in &skipped_tiers {
        println!("  {skipped}");
    }
    let failed: Vec<&str> = results.iter().filter(|r| !r.passed).map(|r| r.tier.as_str()).collect();
    if !failed.is_empty() {
        bail!("tests failed on: {}", failed.join(", "));
    }
    Ok(())
}

fn skip_log(tier: &str) -> anyhow::Result<PathBuf> {
    let path = util::cache_dir().join(format!("skips-{tier}.txt"));
    fs::create_dir_all(util::cache_dir())?;
    let _ = fs::remove_file(&path);
    Ok(path)
}

fn host_tier(binaries: &Binaries) -> anyhow::Result<TierResult> {
    println!("== host tier: kernel {}", fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim());
    let skips_path = skip_log("host")?;
    let mut command = util::cargo();
    command.args(["test", "--", "--show-output"]).env("CHAOS_SKIP_LOG", &skips_path);
    for (key, value) in binaries.env("host") {
        command.env(key, value);
    }
    // The test output is passed through line by line and kept for the failure digest.
    let mut child = command.stdout(Stdio::piped()).spawn().context("running cargo test")?;
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        println!("{line}");
        lines.push(line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    let skips = fs::read_to_string(&skips_path).unwrap_or_default().lines().map(str::to_owned).collect();
    let failures = failure_digest(&lines);
    Ok(TierResult { tier: "host".into(), passed: status.success(), detail: String::new(), skips, failures })
}

/// How many VM guests run at once. A guest runs both its vCPUs on one TCG thread (see `vm`), so
/// it keeps one core busy: two guests use this machine's two cores, and the VM tiers take the
/// time of the longest pair instead of their sum.
const GUESTS_AT_ONCE: usize = 2;

/// Every VM tier, `GUESTS_AT_ONCE` at a time, each tier's required skips checked; the results
/// in the order of `kernels` (their lines are told apart by each guest's `[vm K]` prefix).
fn vm_tiers(binaries: &Binaries, kernels: &[vm::Kernel]) -> anyhow::Result<Vec<TierResult>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<TierResult>>>> = Mutex::new(kernels.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..GUESTS_AT_ONCE.min(kernels.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(kernel) = kernels.get(index) else { break };
                    let result = vm_tier(binaries, kernel).map(|mut result| {
                        result.fail_on_required_skips();
                        result
                    });
                    results.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(anyhow::anyhow!("a VM tier did not run"))))
        .collect()
}

fn vm_tier(binaries: &Binaries, kernel: &vm::Kernel) -> anyhow::Result<TierResult> {
    let name = kernel.name;
    println!("== VM tier: {} under QEMU (TCG)", kernel.package);
    if binaries.integration_tests.is_empty() {
        bail!(
            "cargo test --no-run -p chaos-tests built no integration test binary: the {} VM would run nothing",
            name.tier()
        );
    }
    let mut script = String::from("export RUST_BACKTRACE=1 CHAOS_SKIP_LOG=/tmp/skips\nrc=0\n");
    for test in &binaries.integration_tests {
        let quoted = vm::shell_quote(&test.display().to_string());
        script.push_str(&format!("echo \"=== {}\"\n{quoted} --test-threads=2 --show-output || rc=1\n", test.display()));
    }
    script.push_str(
        "[ -f /tmp/skips ] && while read -r line; do echo \"CHAOS_SKIP $line\"; done < /tmp/skips\nexit $rc\n",
    );
    let job = vm::VmJob {
        kernel,
        files: binaries.files(),
        env: binaries.env(&name.tier()),
        script,
        timeout: Duration::from_secs(40 * 60),
    };
    let outcome = vm::boot(&job)?;
    let skips = outcome.lines.iter().filter_map(|l| l.strip_prefix("CHAOS_SKIP ")).map(str::to_owned).collect();
    Ok(TierResult {
        tier: name.tier(),
        passed: outcome.exit_code == 0,
        detail: if outcome.exit_code == 0 { String::new() } else { format!("(exit {})", outcome.exit_code) },
        skips,
        failures: failure_digest(&outcome.lines),
    })
}

/// The features whose tests must run on `tier`: a test skipping for want of one fails the tier
/// (a module that failed to load, a kernel booted without `lsm=bpf`, a run without root would
/// otherwise turn those tests into skips and the run green). The names are those of
/// chaos_tests::skip::Feature, which tags each such skip `[needs <name>]`.
fn required_features(tier: &str) -> &'static [&'static str] {
    match tier {
        "host" => &["root", "cgroup-hooks", "raw_tp", "tcx"],
        // 6.1 kernels (Debian's own and any build of it) predate tcx: legacy TC there.
        tier if tier == "vm-6.1" || tier.starts_with("vm-6.1-") => {
            &["root", "cgroup-hooks", "raw_tp", "bpf-lsm", "fq", "netem"]
        }
        _ => &["root", "cgroup-hooks", "raw_tp", "bpf-lsm", "fq", "netem", "tcx"],
    }
}

/// The skip lines of `skips` that name a feature in `required`.
fn required_skips<'a>(skips: &'a [String], required: &[&str]) -> Vec<&'a str> {
    skips
        .iter()
        .filter(|line| {
            line.split("[needs ").skip(1).filter_map(|rest| rest.split_once(']')).any(|(f, _)| required.contains(&f))
        })
        .map(String::as_str)
        .collect()
}

impl TierResult {
    fn fail_on_required_skips(&mut self) {
        let required = required_features(&self.tier);
        let bad: Vec<String> = required_skips(&self.skips, required).into_iter().map(str::to_owned).collect();
        for line in bad {
            self.passed = false;
            self.failures.push(format!("skipped a test {} must run: {line}", self.tier));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{failure_digest, required_features, required_skips};

    #[test]
    fn a_skip_for_a_required_feature_is_found_and_others_are_not() {
        let skips = [
            "SKIPPED a on 6.12.1 [needs fq]: network delay unavailable: no sch_fq",
            "SKIPPED b on 6.12.1: this kernel has fq: nothing to refuse",
            "SKIPPED c on 6.18.0 [needs bpf-lsm]: BPF LSM unavailable",
        ]
        .map(str::to_owned);
        assert_eq!(required_skips(&skips, required_features("vm-6.12")), [skips[0].as_str(), skips[2].as_str()]);
        assert!(required_skips(&skips, required_features("host")).is_empty());
        assert!(required_features("vm-6.1").contains(&"fq") && !required_features("vm-6.1").contains(&"tcx"));
        assert!(required_features("vm-6.12").contains(&"tcx") && required_features("host").contains(&"tcx"));
    }

    #[test]
    fn the_digest_names_each_failed_test_with_its_message_and_kernel_oopses() {
        let output = [
            "test a ... FAILED",
            "---- a stdout ----",
            "thread 'a' (984) panicked at tests/tests/net_drop.rs:95:5:",
            "a packet got through 8811 ms before the deadline",
            "thread 'b::c' panicked at src/lib.rs:1:1:",
            "left == right",
            "[   41.2] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
            "thread 'd' finished",
        ]
        .map(str::to_owned);
        assert_eq!(
            failure_digest(&output),
            [
                "a: a packet got through 8811 ms before the deadline",
                "b::c: left == right",
                "kernel: [   41.2] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
            ]
        );
    }
}
