//! What a tier ran, held against its manifest (chaos_tests::manifest): every test the tier
//! must run ran and did not skip, and every test the manifest says is not on the tier skipped.
//! Skips count as passes in libtest's own output, so they are read from the skip log (each
//! line names its test as `<binary>::<test>`); the tests come from each binary's `--list`,
//! and a binary's tests count as run when it reported its exit status (0, or libtest's 101
//! when some failed: its panicked tests are read from the output).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use anyhow::{Context as _, bail};
use chaos_tests::{
    manifest::{self, Expect},
    skip,
};

/// The line a guest script (and the host tier) prints after each test binary.
pub const EXIT_MARK: &str = "CHAOS_BINARY_EXIT ";
/// The line printed before each test binary runs, followed by its path.
pub const START_MARK: &str = "=== ";

/// Every test of every binary, as `--list` gives them: binary name -> test names.
pub type Listing = BTreeMap<String, Vec<String>>;

/// Runs `<binary> --list` for each test binary.
pub fn list(binaries: &[impl AsRef<Path>]) -> anyhow::Result<Listing> {
    let mut listing = Listing::new();
    for binary in binaries {
        let binary = binary.as_ref();
        let output = Command::new(binary)
            .arg("--list")
            .output()
            .with_context(|| format!("listing the tests of {}", binary.display()))?;
        if !output.status.success() {
            bail!(
                "{} --list failed ({}): {}",
                binary.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tests = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_suffix(": test"))
            .map(str::to_owned)
            .collect();
        listing.insert(binary_name(binary).to_owned(), tests);
    }
    Ok(listing)
}

/// A test binary's target name (`delay-6beb36907909f233` is `delay`).
pub fn binary_name(path: &Path) -> &str {
    skip::test_binary_name(path.file_name().and_then(|f| f.to_str()).unwrap_or_default())
}

/// Tests with no line in the manifest, and lines that name no test: each a problem, with what
/// to do.
pub fn coverage(listing: &Listing) -> Vec<String> {
    let mut problems = Vec::new();
    for (binary, tests) in listing {
        for test in tests {
            if manifest::needs_of(binary, test).is_none() {
                problems.push(format!(
                    "{binary}::{test} is in no manifest entry: add `(\"{test}\", &[needs])` to the `{binary}` block of \
                     tests/src/manifest.rs (`&[]` for every tier; see docs/tests.md)"
                ));
            }
        }
    }
    for (name, _) in manifest::all() {
        let (binary, test) = name.split_once("::").expect("binary::test");
        if !listing.get(binary).is_some_and(|tests| tests.iter().any(|t| t == test)) {
            problems.push(format!("tests/src/manifest.rs names {name}, which no test binary has: remove or rename it"));
        }
    }
    problems
}

/// What one tier's binaries did, read from their output and the skip log.
#[derive(Default)]
pub struct Observed {
    /// Binary name -> its exit status.
    pub exits: BTreeMap<String, i32>,
    /// `binary::test` of each test that panicked.
    pub failed: BTreeSet<String>,
    /// `binary::test` -> the skip log's lines for it.
    pub skips: BTreeMap<String, Vec<String>>,
}

impl Observed {
    /// Reads the output lines of a run (start and exit marks, panics) and its skip log lines.
    pub fn read(&mut self, lines: &[String], skip_lines: &[String]) {
        let mut binary = String::new();
        for line in lines {
            if let Some(path) = line.strip_prefix(START_MARK) {
                binary = binary_name(Path::new(path.trim())).to_owned();
            } else if let Some(at) = line.find(EXIT_MARK) {
                let mut words = line[at + EXIT_MARK.len()..].split_whitespace();
                if let (Some(name), Some(code)) = (words.next(), words.next().and_then(|c| c.parse().ok())) {
                    self.exits.insert(name.to_owned(), code);
                }
            } else if let Some((test, tail)) = line.strip_prefix("thread '").and_then(|rest| rest.split_once('\''))
                && tail.contains("panicked at")
                && !binary.is_empty()
            {
                self.failed.insert(format!("{binary}::{test}"));
            }
        }
        for line in skip_lines {
            if let Some((test, _)) = skip::parse_line(line) {
                self.skips.entry(test.to_owned()).or_default().push(line.clone());
            }
        }
    }
}

/// One tier's tests against its manifest.
#[derive(Default)]
pub struct Tally {
    pub ran: usize,
    /// (reason, tests) of the tests the manifest says are not on the tier, which skipped.
    pub not_here: BTreeMap<String, Vec<String>>,
    /// Each a line that fails the tier: a test that skipped where it must run, ran where the
    /// manifest says it cannot, or whose binary never said how it ended.
    pub problems: Vec<String>,
}

impl Tally {
    pub fn not_here_count(&self) -> usize {
        self.not_here.values().map(Vec::len).sum()
    }
}

/// Holds what `tier` did against its manifest. `installed` says whether setup installs a
/// Debian package on the host.
pub fn tally(tier: &str, listing: &Listing, observed: &Observed, installed: &dyn Fn(&str) -> bool) -> Tally {
    let mut tally = Tally::default();
    for (binary, tests) in listing {
        let exit = observed.exits.get(binary).copied();
        // libtest exits 101 when tests failed, having run them all.
        let finished = matches!(exit, Some(0 | 101));
        for test in tests {
            let name = format!("{binary}::{test}");
            let Some(needs) = manifest::needs_of(binary, test) else { continue }; // see `coverage`
            let skips = observed.skips.get(&name);
            match (manifest::expect(tier, needs, installed), skips) {
                (Expect::Run, Some(lines)) => {
                    for line in lines {
                        tally
                            .problems
                            .push(format!("{name} skipped, but the manifest says {tier} must run it: {line}"));
                    }
                }
                (Expect::Run, None) if finished => tally.ran += 1,
                (Expect::Run, None) => tally.problems.push(match exit {
                    None => format!("{name} did not run: its binary {binary} reported no exit status"),
                    Some(code) => format!("{name} may not have run: its binary {binary} ended with status {code}"),
                }),
                (Expect::NotHere(reason), Some(_)) => tally.not_here.entry(reason).or_default().push(name),
                (Expect::NotHere(reason), None) if finished && !observed.failed.contains(&name) => {
                    tally.problems.push(format!(
                        "{name} ran, but the manifest says it is not on {tier}, because {reason}: correct its line in \
                         tests/src/manifest.rs, or the test's gate"
                    ));
                }
                (Expect::NotHere(_), None) => {}
            }
        }
    }
    for (name, lines) in &observed.skips {
        let known =
            name.split_once("::").is_some_and(|(b, t)| listing.get(b).is_some_and(|ts| ts.iter().any(|x| x == t)));
        if !known {
            for line in lines {
                tally
                    .problems
                    .push(format!("a skip names no test of the listing (skipped off its test's thread?): {line}"));
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::{Listing, Observed, coverage, tally};

    fn listing(tests: &[(&str, &[&str])]) -> Listing {
        tests.iter().map(|(b, ts)| ((*b).to_owned(), ts.iter().map(|t| (*t).to_owned()).collect())).collect()
    }

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn skips_are_held_against_the_tiers_manifest() {
        let listing = listing(&[
            ("delay", &["net_rate_holds_the_limit", "network_delay_is_refused_plainly_where_fq_is_missing"]),
            ("net_drop", &["two_drops_on_one_cgroup_compose", "sigkill_of_chaos_leaves_nothing_attached"]),
        ]);
        let output = lines(&[
            "=== /t/deps/delay-0123abcd",
            "CHAOS_BINARY_EXIT delay 0",
            "=== /t/deps/net_drop-4567ef",
            "thread 'sigkill_of_chaos_leaves_nothing_attached' (12) panicked at tests/tests/net_drop.rs:1:1:",
            "[vm 6.12 1/2] CHAOS_BINARY_EXIT net_drop 101",
        ]);
        let skip_log = lines(&[
            "SKIPPED delay::net_rate_holds_the_limit on 6.18.0 [needs fq]: no fq",
            "SKIPPED net_drop::two_drops_on_one_cgroup_compose on 6.18.0: openssl is not installed",
        ]);
        let mut observed = Observed::default();
        observed.read(&output, &skip_log);
        let all = |_: &str| true;
        // The host: fq's test skips as its manifest says; the refusal runs; a skip of a test
        // the host must run fails it, naming the test and the reason.
        let host = tally("host", &listing, &observed, &all);
        assert_eq!(host.ran, 2, "the refusal and the failed test ran");
        assert_eq!(host.not_here_count(), 1);
        assert_eq!(host.problems.len(), 1, "{:?}", host.problems);
        assert!(
            host.problems[0].contains("two_drops_on_one_cgroup_compose skipped")
                && host.problems[0].contains("openssl")
        );
        // A VM: the refusal ran where the manifest says it cannot, and fq's test skipped.
        let vm = tally("vm-6.12", &listing, &observed, &all);
        assert_eq!(vm.problems.len(), 3, "{:?}", vm.problems);
        assert!(vm.problems.iter().any(|p| p.contains("network_delay_is_refused_plainly_where_fq_is_missing ran")));
        // A binary that never said how it ended: its tests did not run.
        let mut partial = Observed::default();
        partial.read(&output[..1], &[]);
        let cut = tally("host", &listing, &partial, &all);
        assert!(cut.problems.iter().any(|p| p.contains("did not run: its binary net_drop reported no exit status")));
    }

    #[test]
    fn every_package_the_manifest_names_is_one_setup_installs() {
        for (name, needs) in chaos_tests::manifest::all() {
            for need in needs {
                if let chaos_tests::manifest::Need::Package(package) = need {
                    assert!(crate::setup::installs(package), "{name} needs {package}, which setup does not install");
                }
            }
        }
    }

    #[test]
    fn a_test_in_no_manifest_entry_and_an_entry_for_no_test_are_named() {
        let mut all = Listing::new();
        for (name, _) in chaos_tests::manifest::all() {
            let (binary, test) = name.split_once("::").expect("binary::test");
            all.entry(binary.to_owned()).or_default().push(test.to_owned());
        }
        assert!(coverage(&all).is_empty(), "{:?}", coverage(&all));
        all.get_mut("delay").expect("delay").push("a_new_test".into());
        all.get_mut("golden").expect("golden").clear();
        let problems = coverage(&all);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("delay::a_new_test is in no manifest entry"), "{problems:?}");
        assert!(problems[1].contains("golden::the_output_of_every_family_is_unchanged, which no test binary has"));
    }
}
