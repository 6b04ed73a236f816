//! `cargo xtask test`: set up, build, then run the tests on the host kernel and on each VM kernel
//! (two guests at a time).
//! Each tier is held against its manifest (tests/src/manifest.rs, through `tally`): a test the
//! tier must run that skipped, for any reason, fails the tier, and the summary says per tier
//! what ran, what skipped as the manifest says (with the reason) and what skipped unexpectedly.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
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
    errinj, host_state, setup,
    tally::{self, Observed, Tally},
    util, vm,
};

struct TierResult {
    tier: String,
    passed: bool,
    detail: String,
    /// What the tier's binaries did (exits, panics, skips), to hold against its manifest.
    observed: Observed,
    /// The tier's tests against its manifest, once all its guests are in.
    tally: Tally,
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

pub(crate) fn run(host: bool, vms: bool, kernels: &[vm::KernelName]) -> anyhow::Result<()> {
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
    // Every test must have its line in the manifest before any tier runs: a new test is placed
    // (runs here, or not here because ...) or the run stops, saying how.
    let listing = tally::list(&binaries.integration_tests)?;
    let problems = tally::coverage(&listing);
    if !problems.is_empty() {
        bail!("the test manifest does not match the tests:\n  {}", problems.join("\n  "));
    }
    let mut results = Vec::new();
    if host {
        results.push(host_tier(&binaries)?);
    }
    if vms {
        let kernels = if kernels.is_empty() { &vm::KernelName::ALL[..] } else { kernels };
        let mut available = Vec::new();
        for &kernel in kernels {
            match vm::available_kernel(kernel)? {
                Some(kernel) => available.push(kernel),
                // CI keeps the kernel beside its clone: missing there, the six error-injection
                // tests would pass having run nowhere.
                None if std::env::var("CI").is_ok_and(|v| v == "true") => bail!(
                    "CI=true and no {} kernel (looked at CHAOS_ERRINJ_KERNEL, `cargo xtask kernel`'s output and \
                     ../shared/kernels beside the clone): its tier must run in CI; {}",
                    kernel.label(),
                    errinj::HOW_TO_GET
                ),
                None => results.push(TierResult {
                    tier: kernel.tier(),
                    passed: true,
                    detail: format!("not run: no {} kernel on this machine; {}", kernel.label(), errinj::HOW_TO_GET),
                    observed: Observed::default(),
                    tally: Tally::default(),
                    failures: Vec::new(),
                }),
            }
        }
        results.extend(vm_tiers(&binaries, &available)?);
    }
    let installed = |package: &str| setup::installs(package);
    for result in results.iter_mut().filter(|r| r.detail.is_empty() || !r.detail.starts_with("not run")) {
        result.tally = tally::tally(&result.tier, &listing, &result.observed, &installed);
        if !result.tally.problems.is_empty() {
            result.passed = false;
        }
    }
    summary(&results);
    let failed: Vec<&str> = results.iter().filter(|r| !r.passed).map(|r| r.tier.as_str()).collect();
    if !failed.is_empty() {
        bail!("tests failed on: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo xtask manifest`: each tier's manifest, from the built test binaries' `--list`.
pub(crate) fn manifest() -> anyhow::Result<()> {
    let binaries = build::build_binaries()?;
    let listing = tally::list(&binaries.integration_tests)?;
    let problems = tally::coverage(&listing);
    if !problems.is_empty() {
        bail!("the test manifest does not match the tests:\n  {}", problems.join("\n  "));
    }
    let installed = |package: &str| setup::installs(package);
    let tests: usize = listing.values().map(Vec::len).sum();
    println!("{tests} tests in {} binaries", listing.len());
    for tier in chaos_tests::manifest::TIERS {
        let mut not_here: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for (name, needs) in chaos_tests::manifest::all() {
            if let chaos_tests::manifest::Expect::NotHere(reason) =
                chaos_tests::manifest::expect(tier, needs, &installed)
            {
                not_here.entry(reason).or_default().push(name);
            }
        }
        let absent: usize = not_here.values().map(Vec::len).sum();
        println!("{tier}: must run {}, not here {absent}", tests - absent);
        for (reason, names) in not_here {
            println!("  {} not here, because {reason}: {}", names.len(), names.join(", "));
        }
    }
    Ok(())
}

/// The end of the run's output: per tier, what skipped as its manifest says (with the reason),
/// then the counts and every failure. Failures last: a long run's log is often cut, and its end
/// is what is read.
fn summary(results: &[TierResult]) {
    println!("\ntest summary: skipped as each tier's manifest says (tests/src/manifest.rs)");
    for result in results {
        for (reason, tests) in &result.tally.not_here {
            println!("  {:<13} {} not here, because {reason}: {}", result.tier, tests.len(), tests.join(", "));
        }
    }
    println!("\ntest summary: tiers");
    for result in results {
        if result.detail.starts_with("not run") {
            println!("  {:<13} {}", result.tier, result.detail);
            continue;
        }
        let tally = &result.tally;
        println!(
            "  {:<13} {} {}ran {}, skipped as the manifest says {}, skipped unexpectedly {}",
            result.tier,
            if result.passed { "passed" } else { "FAILED" },
            if result.detail.is_empty() { String::new() } else { format!("{} ", result.detail) },
            tally.ran,
            tally.not_here_count(),
            tally.problems.iter().filter(|p| p.contains(" skipped, but ")).count(),
        );
        for problem in &tally.problems {
            println!("  {:<13} FAILED {problem}", result.tier);
        }
        for failure in &result.failures {
            println!("  {:<13} FAILED {failure}", result.tier);
        }
        if !result.passed && result.failures.is_empty() && tally.problems.is_empty() {
            println!("  {:<13} FAILED without a panicked test: look above for its `error:` or timeout", result.tier);
        }
    }
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
    let network_before = host_state::Snapshot::read();
    // The unit tests of every crate (no root needed, no manifest: they never skip).
    let units = util::cargo()
        .args(["test", "--no-fail-fast", "--lib", "--bins", "--", "--show-output"])
        .status()
        .context("running the unit tests")?;
    // Then each integration test binary, as in a guest: the same executables, one at a time,
    // each run to its end (a cut-short tier hid the rest), its exit status marked for the tally.
    // The output is passed through line by line and kept for the failure digest.
    let mut lines = Vec::new();
    let mut integration_passed = true;
    for test in &binaries.integration_tests {
        let mark = format!("{}{}", tally::START_MARK, test.display());
        println!("{mark}");
        lines.push(mark);
        let mut command = std::process::Command::new(test);
        command.arg("--show-output").env("CHAOS_SKIP_LOG", &skips_path).current_dir(util::root().join("tests"));
        for (key, value) in binaries.env("host") {
            command.env(key, value);
        }
        let mut child =
            command.stdout(Stdio::piped()).spawn().with_context(|| format!("running {}", test.display()))?;
        for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
            println!("{line}");
            lines.push(line);
        }
        let status = child.wait().with_context(|| format!("waiting for {}", test.display()))?;
        integration_passed &= status.success();
        let code = status.code().unwrap_or(-1);
        lines.push(format!("{}{} {code}", tally::EXIT_MARK, tally::binary_name(test)));
    }
    let skips: Vec<String> = fs::read_to_string(&skips_path).unwrap_or_default().lines().map(str::to_owned).collect();
    let mut failures = failure_digest(&lines);
    // The tests may change the machine's network only inside namespaces of their own.
    let changed = host_state::Snapshot::read().changes_since(&network_before);
    for change in &changed {
        failures.push(format!("the host's network changed during the tier and was not put back: {change}"));
    }
    if !units.success() {
        failures.push(format!("the unit tests failed ({units}): see `cargo test --lib --bins` above"));
    }
    let passed = units.success() && integration_passed && changed.is_empty();
    let mut observed = Observed::default();
    observed.read(&lines, &skips);
    Ok(TierResult { tier: "host".into(), passed, detail: String::new(), observed, tally: Tally::default(), failures })
}

/// How many VM guests run at once. A guest runs both its vCPUs on one TCG thread (see `vm`), so
/// it keeps one core busy: two guests use this machine's two cores.
const GUESTS_AT_ONCE: usize = 2;

/// `GUESTS_AT_ONCE`, or fewer where CHAOS_GUESTS_AT_ONCE says so: on a machine shared with
/// other runs, `CHAOS_GUESTS_AT_ONCE=1` keeps to one guest (and one core).
fn guests_at_once() -> usize {
    std::env::var("CHAOS_GUESTS_AT_ONCE").ok().and_then(|n| n.parse().ok()).filter(|&n| n > 0).unwrap_or(GUESTS_AT_ONCE)
}

/// How many guests share one tier's test binaries. Three tiers of whole suites on two cores
/// leave one core idle for the last tier; halves of each keep both busy to the end.
const SHARDS_PER_TIER: usize = 2;

/// Minutes each test binary takes in a TCG guest (measured on 6.12 beside another guest, with aya
/// optimised in the dev profile): the shards are balanced by these. A binary not listed counts
/// as one minute.
const GUEST_MINUTES: &[(&str, f64)] = &[
    ("delay", 3.8),
    // Measured on 6.12 and 6.1 alone: 2.4 min (143 s of tests).
    ("trace", 2.5),
    ("syscall_faults", 1.8),
    ("net_faults", 1.8),
    ("experiments", 1.4),
    ("proc", 1.6),
    // The limit tests: 115 s on 6.12 alone at load 6, 150-190 s in a busy guest (faults held
    // for seconds on real workloads: cpu shares, memory, io, pids).
    ("limits", 2.2),
    ("entry_hook", 0.8),
    // Per-thread syscall delay: measured alone at 56-75 s on 6.12 and 84 s on 6.1; beside
    // another guest, more.
    ("thread_delay", 1.5),
    ("lsm_cgroup", 1.0),
    ("net_drop", 0.65),
    // Measured on 6.12 alone at load 10: 92 s of tests (the dig tests skip there; the experiment
    // test looks up for the whole run, however long attaching takes).
    ("dns", 1.6),
    ("net_sever", 1.1),
    ("golden", 0.55),
    ("syscall_override", 0.9),
    ("hints", 0.6),
    ("target_gone", 0.2),
    ("shared_programs", 0.5),
    ("host_view", 0.05),
    ("daemon", 0.15),
    ("doctor", 0.15),
    ("verdict", 0.0),
    // TC filters of both APIs run on 6.1 only (tcx is the host's): measured there alone at
    // load 4-5, 23-40 s and 9-16 s of tests; they skip on 6.12 and 6.1-errinj.
    ("tc_filters", 0.7),
    ("legacy_tc", 0.3),
    // Host-tier tests: they skip in the guests.
    ("proc_schedules", 0.01),
    ("cleanup", 0.01),
    ("delay_schedules", 0.01),
    ("daemon_brakes", 0.01),
    ("checks", 0.01),
    ("stop_all", 0.01),
    ("containers", 0.01),
    ("cri", 0.01),
    ("follow", 0.01),
    ("daemon_configmap", 0.01),
    ("daemon_pods", 0.01),
    ("manifests", 0.02),
    ("package", 0.01),
    ("runtimes_network", 0.01),
    // With the `limit cpu` sweep on 6.12: about 1.5 min more there (one point in 20).
    ("crash_points", 7.0),
];

/// A test binary's name without cargo's hash suffix (`delay-6beb36907909f233` is `delay`).
fn test_name(path: &Path) -> &str {
    tally::binary_name(path)
}

fn guest_minutes(test: &Path) -> f64 {
    GUEST_MINUTES.iter().find(|(name, _)| *name == test_name(test)).map_or(1.0, |&(_, minutes)| minutes)
}

/// `tests` in `count` groups of about equal guest time: the longest first, each to the group
/// with the least so far.
fn shards(tests: &[PathBuf], count: usize) -> Vec<Vec<PathBuf>> {
    let mut by_length: Vec<&PathBuf> = tests.iter().collect();
    by_length.sort_by(|a, b| guest_minutes(b).total_cmp(&guest_minutes(a)));
    let mut groups: Vec<(f64, Vec<PathBuf>)> = (0..count).map(|_| (0.0, Vec::new())).collect();
    for test in by_length {
        let least = groups.iter_mut().min_by(|a, b| a.0.total_cmp(&b.0)).expect("count > 0");
        least.0 += guest_minutes(test);
        least.1.push(test.clone());
    }
    groups.into_iter().map(|(_, tests)| tests).filter(|tests| !tests.is_empty()).collect()
}

/// One guest's share of a tier.
struct GuestJob<'a> {
    kernel_index: usize,
    kernel: &'a vm::Kernel,
    guest: String,
    tests: Vec<PathBuf>,
    minutes: f64,
}

/// Every VM tier, its test binaries split over `SHARDS_PER_TIER` guests, `GUESTS_AT_ONCE` guests
/// at a time (the longest first); each tier's results merged, in the order of `kernels` (the
/// lines are told apart by each guest's `[vm K i/n]` prefix).
fn vm_tiers(binaries: &Binaries, kernels: &[vm::Kernel]) -> anyhow::Result<Vec<TierResult>> {
    if binaries.integration_tests.is_empty() {
        bail!("cargo test --no-run -p chaos-tests built no integration test binary: the VM tiers would run nothing");
    }
    let mut jobs = Vec::new();
    for (kernel_index, kernel) in kernels.iter().enumerate() {
        let groups = shards(&binaries.integration_tests, SHARDS_PER_TIER);
        let count = groups.len();
        for (i, tests) in groups.into_iter().enumerate() {
            let minutes = tests.iter().map(|t| guest_minutes(t)).sum();
            let guest = format!("{} {}/{count}", kernel.name.label(), i + 1);
            jobs.push(GuestJob { kernel_index, kernel, guest, tests, minutes });
        }
    }
    jobs.sort_by(|a, b| b.minutes.total_cmp(&a.minutes));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, GuestResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..guests_at_once().min(jobs.len()) {
            scope.spawn(|| {
                while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = guest_run(binaries, job);
                    results.lock().unwrap_or_else(PoisonError::into_inner).push((job.kernel_index, result));
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    let mut tiers = Vec::new();
    for (index, kernel) in kernels.iter().enumerate() {
        let mut tier = TierResult {
            tier: kernel.name.tier(),
            passed: true,
            detail: String::new(),
            observed: Observed::default(),
            tally: Tally::default(),
            failures: Vec::new(),
        };
        for (_, part) in results.iter().filter(|(i, _)| *i == index) {
            tier.passed &= part.passed;
            if !part.detail.is_empty() {
                tier.detail = format!("{} {}", tier.detail, part.detail).trim().to_owned();
            }
            tier.failures.extend(part.failures.iter().cloned());
            let part = &part.observed;
            tier.observed.exits.extend(part.exits.iter().map(|(k, v)| (k.clone(), *v)));
            tier.observed.failed.extend(part.failed.iter().cloned());
            for (test, lines) in &part.skips {
                tier.observed.skips.entry(test.clone()).or_default().extend(lines.iter().cloned());
            }
        }
        tiers.push(tier);
    }
    Ok(tiers)
}

/// What one guest reported.
struct GuestResult {
    passed: bool,
    detail: String,
    observed: Observed,
    failures: Vec<String>,
}

/// Boots one guest and runs its share of a tier's test binaries. A guest that cannot boot or
/// does not finish fails its tier with the reason, and the other guests still run.
fn guest_run(binaries: &Binaries, job: &GuestJob<'_>) -> GuestResult {
    let tier = job.kernel.name.tier();
    println!("== VM tier: {} under QEMU (TCG), guest {}: {}", job.kernel.package, job.guest, {
        let names: Vec<&str> = job.tests.iter().map(|t| test_name(t)).collect();
        names.join(", ")
    });
    let mut script = String::from("export RUST_BACKTRACE=1 CHAOS_SKIP_LOG=/tmp/skips\nrc=0\n");
    // Each test's time in the log (`<12.3s>`), to keep the shards balanced and the slow tests
    // in sight: libtest's --report-time, which asks for its unstable options switch. Each
    // binary's exit status is marked for the tally.
    for test in &job.tests {
        let quoted = vm::shell_quote(&test.display().to_string());
        script.push_str(&format!(
            "echo \"{}{}\"\nRUSTC_BOOTSTRAP=1 {quoted} --test-threads=2 --show-output -Zunstable-options --report-time\n\
             code=$?\necho \"{}{} $code\"\n[ $code -eq 0 ] || rc=1\n",
            tally::START_MARK,
            test.display(),
            tally::EXIT_MARK,
            test_name(test),
        ));
    }
    script.push_str(
        "[ -f /tmp/skips ] && while read -r line; do echo \"CHAOS_SKIP $line\"; done < /tmp/skips\nexit $rc\n",
    );
    let vm_job = vm::VmJob {
        kernel: job.kernel,
        guest: job.guest.clone(),
        files: binaries.files(),
        env: binaries.env(&tier),
        script,
        timeout: Duration::from_secs(40 * 60),
        parallel_vcpus: false,
    };
    match vm::boot(&vm_job) {
        Ok(outcome) => {
            let skips: Vec<String> = outcome
                .lines
                .iter()
                .filter_map(|l| l.find("CHAOS_SKIP ").map(|at| l[at + "CHAOS_SKIP ".len()..].to_owned()))
                .collect();
            let mut observed = Observed::default();
            observed.read(&outcome.lines, &skips);
            GuestResult {
                passed: outcome.exit_code == 0,
                detail: if outcome.exit_code == 0 {
                    String::new()
                } else {
                    format!("(guest {} exit {})", job.guest, outcome.exit_code)
                },
                observed,
                failures: failure_digest(&outcome.lines),
            }
        }
        Err(error) => GuestResult {
            passed: false,
            detail: format!("(guest {})", job.guest),
            observed: Observed::default(),
            failures: vec![format!("guest {}: {error:#}", job.guest)],
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{failure_digest, guest_minutes, shards, test_name};

    #[test]
    fn shards_split_the_binaries_by_guest_time_and_keep_every_one() {
        let tests: Vec<PathBuf> = ["delay-1a", "net_faults-2b", "experiments-3c", "doctor-4d", "unknown-5e"]
            .iter()
            .map(|name| PathBuf::from("/t/deps").join(name))
            .collect();
        assert_eq!(test_name(&tests[1]), "net_faults");
        let groups = shards(&tests, 2);
        assert_eq!(groups.len(), 2);
        let mut all: Vec<PathBuf> = groups.concat();
        all.sort();
        let mut expected = tests.clone();
        expected.sort();
        assert_eq!(all, expected, "every binary runs exactly once");
        let minutes: Vec<f64> = groups.iter().map(|g| g.iter().map(|t| guest_minutes(t)).sum()).collect();
        assert!((minutes[0] - minutes[1]).abs() <= 5.5, "unbalanced: {minutes:?}");
        assert_eq!(shards(&tests[..1], 2).len(), 1, "no empty guest");
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
