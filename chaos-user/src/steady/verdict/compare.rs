//! `max_difference`: how much worse than the control the experimental group may be, and the
//! comparison of the two groups' results against it, stated in plain words.
//!
//! As canary judges do (Kayenta's Mann-Whitney judge), a difference counts only when it is both
//! beyond the tolerance and significant at the configured confidence: pass rates through a
//! two-proportion z-test of a shortfall beyond the tolerance, latencies (or metric values)
//! against the control's scaled by the tolerance, through a Mann-Whitney U test for the median
//! (and lower quantiles, and "lower is worse" tolerances) and a quantile test for the tail (p90,
//! p99: a U test does not see a tail), with the named quantile of each group as the effect a
//! person reads.
use std::fmt;

use serde::{Deserialize, Serialize};

use super::stats::{self, MannWhitney};

/// One tolerance, e.g. `pass rate -1%` or `p99 +20%`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum MaxDifference {
    /// The experimental pass rate may be at most `points` percentage points below the control's.
    PassRate { points: f64 },
    /// The experimental `q` quantile of the latency (or the metric value) may be at most
    /// `percent` % above the control's (below it when `percent` is negative: lower is worse).
    Quantile { q: f64, label: String, percent: f64 },
}

/// The tolerances of a check with a control but no `max_difference`.
pub(crate) const DEFAULT_MAX_DIFFERENCE: [&str; 2] = ["pass rate -1%", "p99 +20%"];

impl std::str::FromStr for MaxDifference {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{text}' is not a tolerance: write \"pass rate -1%\" (at most 1 point below the control) or \
                 \"p99 +20%\" (a latency quantile at most 20 % above the control's; p50 to p99.9, or median)"
            )
        };
        let lower = text.trim().to_ascii_lowercase();
        let (what, amount) = lower.rsplit_once(' ').ok_or_else(bad)?;
        let amount = amount.trim();
        let (what, amount) = if amount == "%" {
            // "p99 +20 %": the number is the word before.
            let (what, number) = what.trim_end().rsplit_once(' ').ok_or_else(bad)?;
            (what.trim(), number.trim())
        } else {
            (what.trim(), amount.strip_suffix('%').ok_or_else(bad)?.trim_end())
        };
        let signed: f64 = amount.parse().map_err(|_| bad())?;
        if !signed.is_finite() || !(amount.starts_with('+') || amount.starts_with('-')) {
            return Err(format!("{}: give the direction with a sign, e.g. +20% or -1%", bad()));
        }
        if what == "pass rate" {
            if signed > 0.0 {
                return Err(format!("'{text}': a pass rate can only be worse by being lower: write -{}%", signed));
            }
            return Ok(Self::PassRate { points: -signed });
        }
        let q = match what {
            "median" => 0.5,
            _ => what
                .strip_prefix('p')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| (1.0..100.0).contains(n))
                .map(|n| n / 100.0)
                .ok_or_else(bad)?,
        };
        if signed <= -100.0 {
            return Err(format!("'{text}': a value cannot be more than 100 % lower"));
        }
        Ok(Self::Quantile { q, label: what.to_owned(), percent: signed })
    }
}

impl fmt::Display for MaxDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PassRate { points } => write!(f, "pass rate -{points}%"),
            Self::Quantile { label, percent, .. } => write!(f, "{label} {percent:+}%"),
        }
    }
}

/// One group's results of one check during the faults.
#[derive(Clone, Debug, Default)]
pub(crate) struct Samples {
    pub passed: u64,
    pub total: u64,
    /// Latencies in ms, or the metric values of a Prometheus check.
    pub values: Vec<f64>,
}

/// The outcome of one tolerance of one check, as the timeline's `comparison` event holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Comparison {
    pub check: String,
    pub tolerance: String,
    /// "two-proportion z-test", "Mann-Whitney U" or "quantile test".
    pub test: String,
    pub experimental: f64,
    pub control: f64,
    pub n_experimental: u64,
    pub n_control: u64,
    pub z: f64,
    pub p_value: f64,
    /// Mann-Whitney only: P(an experimental value is worse than a tolerance-scaled control one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    pub confidence: f64,
    /// The experimental group is worse than the control beyond the tolerance, with the confidence.
    pub worse: bool,
    /// The same in plain words.
    pub words: String,
}

/// Compares the groups of one check under one tolerance.
#[must_use]
pub(crate) fn compare(
    check: &str,
    what: &str,
    tolerance: &MaxDifference,
    experimental: &Samples,
    control: &Samples,
    confidence: f64,
) -> Comparison {
    let alpha = 1.0 - confidence;
    let verdict = |worse: bool, p: f64| {
        if worse {
            format!("worse beyond the tolerance (p = {} < {})", p_text(p), p_text(alpha))
        } else if p < alpha {
            "a significant difference, but within the tolerance".to_owned()
        } else {
            format!("no significant difference beyond the tolerance (p = {})", p_text(p))
        }
    };
    match tolerance {
        MaxDifference::PassRate { points } => {
            let test = stats::two_proportion(
                experimental.passed,
                experimental.total,
                control.passed,
                control.total,
                points / 100.0,
            );
            let rate = |s: &Samples| if s.total == 0 { 0.0 } else { s.passed as f64 * 100.0 / s.total as f64 };
            let (e, c) = (rate(experimental), rate(control));
            let worse = test.p_value < alpha;
            let words = format!(
                "pass rate: experimental {e:.1} % ({}/{}) against control {c:.1} % ({}/{}); a two-proportion z-test \
                 of a shortfall beyond {points} point(s) gives z = {:.2}: {}",
                experimental.passed,
                experimental.total,
                control.passed,
                control.total,
                test.z,
                verdict(worse, test.p_value)
            );
            Comparison {
                check: check.to_owned(),
                tolerance: tolerance.to_string(),
                test: "two-proportion z-test".into(),
                experimental: e,
                control: c,
                n_experimental: experimental.total,
                n_control: control.total,
                z: test.z,
                p_value: test.p_value,
                effect: None,
                confidence,
                worse,
                words,
            }
        }
        MaxDifference::Quantile { q, label, percent } => {
            let scale = 1.0 + percent / 100.0;
            let scaled: Vec<f64> = control.values.iter().map(|v| v * scale).collect();
            let (e, c) = (stats::quantile(&experimental.values, *q), stats::quantile(&control.values, *q));
            let beyond = if *percent >= 0.0 { e > c * scale } else { e < c * scale };
            let change = if c == 0.0 { String::new() } else { format!(" ({:+.0} %)", (e / c - 1.0) * 100.0) };
            let head = format!(
                "{label} {what}: experimental {} against control {}{change}, tolerance {percent:+} %",
                number(e),
                number(c)
            );
            let (n_e, n_c) = (experimental.values.len(), control.values.len());
            // Above the median a tolerance is about the tail, which a U test does not see (the
            // many unharmed results outvote the slow ones): count the tail instead.
            let (name, test, effect, how) = if *q > 0.5 && *percent >= 0.0 {
                let t = stats::quantile_test(&experimental.values, &scaled, *q);
                let how = format!(
                    "a quantile test (Fisher's exact test on the results at or above the pooled {label} of the \
                     experimental group and the control scaled by the tolerance, {}) finds {} of {n_e} experimental \
                     and {} of {n_c} control results at or above it",
                    number(t.threshold),
                    t.above_experimental,
                    t.above_control
                );
                ("quantile test", t.test, None, how)
            } else {
                // Higher is worse for a + tolerance, lower for a - one: test in that direction.
                let MannWhitney { test, effect, .. } = if *percent >= 0.0 {
                    stats::mann_whitney(&experimental.values, &scaled)
                } else {
                    stats::mann_whitney(&scaled, &experimental.values)
                };
                let how = format!(
                    "a Mann-Whitney U test over {n_e}×{n_c} results against the control scaled by the tolerance \
                     gives z = {:.2}, and an experimental result is the worse one in {:.0} % of pairs",
                    test.z,
                    effect * 100.0
                );
                ("Mann-Whitney U", test, Some(effect), how)
            };
            let worse = beyond && test.p_value < alpha;
            Comparison {
                check: check.to_owned(),
                tolerance: tolerance.to_string(),
                test: name.into(),
                experimental: e,
                control: c,
                n_experimental: n_e as u64,
                n_control: n_c as u64,
                z: test.z,
                p_value: test.p_value,
                effect,
                confidence,
                worse,
                words: format!("{head}; {how}: {}", verdict(worse, test.p_value)),
            }
        }
    }
}

fn p_text(p: f64) -> String {
    if p < 1e-4 { format!("{p:.1e}") } else { format!("{p:.4}") }
}

fn number(v: f64) -> String {
    if v.is_nan() { "no data".into() } else { format!("{v:.3}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_parse_and_bad_ones_say_how() {
        assert_eq!("pass rate -1%".parse::<MaxDifference>(), Ok(MaxDifference::PassRate { points: 1.0 }));
        assert_eq!("pass rate -0.5 %".parse::<MaxDifference>(), Ok(MaxDifference::PassRate { points: 0.5 }));
        assert_eq!(
            "p99 +20 %".parse::<MaxDifference>(),
            Ok(MaxDifference::Quantile { q: 0.99, label: "p99".into(), percent: 20.0 })
        );
        assert_eq!(
            "median -10%".parse::<MaxDifference>(),
            Ok(MaxDifference::Quantile { q: 0.5, label: "median".into(), percent: -10.0 })
        );
        for bad in ["p99 20%", "p99 +20", "pass rate +1%", "p100 +1%", "latency +5%", "", "p99 +x%"] {
            assert!(bad.parse::<MaxDifference>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_slower_experimental_group_is_worse_and_a_like_one_is_not() {
        let control =
            Samples { passed: 200, total: 200, values: (0..200).map(|i| 1.0 + f64::from(i % 10) / 10.0).collect() };
        let slow = Samples { values: control.values.iter().map(|v| v * 2.0).collect(), ..control.clone() };
        let p99 = "p99 +20%".parse().unwrap();
        let result = compare("web", "latency (ms)", &p99, &slow, &control, 0.99);
        assert!(result.worse && result.p_value < 1e-6, "{result:?}");
        assert!(result.words.contains("worse beyond the tolerance"), "{}", result.words);
        let result = compare("web", "latency (ms)", &p99, &control, &control, 0.99);
        assert!(!result.worse, "{result:?}");
        let failing = Samples { passed: 180, ..control.clone() };
        let result = compare("web", "latency (ms)", &"pass rate -1%".parse().unwrap(), &failing, &control, 0.99);
        assert!(result.worse && result.words.contains("90.0 % (180/200)"), "{}", result.words);
    }
}
