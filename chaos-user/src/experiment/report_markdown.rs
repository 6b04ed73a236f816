//! `chaos report FILE.jsonl --markdown OUT.md`: the run as a learning-review document: what was
//! done, what was seen, how it compares with the control, and the questions a review asks.
use std::fmt::Write as _;

use super::review::{Review, this_machine};

/// The sections every report has, in order (the tests check each is there).
pub const SECTIONS: [&str; 7] = [
    "## Summary",
    "## Timeline",
    "## Faults",
    "## Checks",
    "## Compared with the control",
    "## Machine",
    "## Questions for the review",
];

#[must_use]
pub fn render(review: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Learning review: {}\n", review.name);
    let _ = writeln!(out, "{}\n", SECTIONS[0]);
    let verdict = review.verdict.as_ref().map_or("no verdict: the timeline ends before the run did", |v| v.1.as_str());
    let _ = writeln!(out, "- **Verdict**: {} ({verdict})", review.outcome());
    let _ = writeln!(out, "- **Target**: {}", review.target);
    let _ = writeln!(out, "- **Experiment file**: `{}`, run `{}`", review.file, review.id);
    for (t, reason) in &review.aborts {
        let _ = writeln!(out, "- **Aborted** at {t:.1} s: {reason}");
    }
    for note in &review.notes {
        let _ = writeln!(out, "- Note: {note}");
    }
    let _ = writeln!(out, "\n{}\n", SECTIONS[1]);
    let _ = writeln!(out, "| from | to | what |\n| ---: | ---: | --- |");
    for (phase, start, length) in &review.phases {
        let _ = writeln!(out, "| {start:.1} s | {:.1} s | phase: {} |", start + length, phase.name());
    }
    for (number, f) in &review.faults {
        if let Some(t) = f.armed_at {
            let _ = writeln!(out, "| {t:.1} s | | fault #{number} armed ({}) |", f.kind);
        }
        for (t, percent) in &f.ramps {
            let _ = writeln!(out, "| {t:.1} s | | fault #{number} ramped to {percent} % |");
        }
    }
    for (t, reason) in &review.aborts {
        let _ = writeln!(out, "| {t:.1} s | | abort: {reason} |");
    }
    let _ = writeln!(out, "\n{}\n", SECTIONS[2]);
    let _ = writeln!(out, "| # | kind | window | seen | matched | injected | equivalent command |");
    let _ = writeln!(out, "| ---: | --- | --- | ---: | ---: | ---: | --- |");
    for (number, f) in &review.faults {
        let _ = writeln!(
            out,
            "| {number} | {} | +{}s for {}s | {} | {} | {} | `chaos {}` |",
            f.kind, f.start_s, f.duration_s, f.seen, f.matched, f.injected, f.command_line
        );
    }
    let _ = writeln!(out, "\n{}\n", SECTIONS[3]);
    let _ = writeln!(out, "| check | what | before | during | after | needs |\n| --- | --- | --- | --- | --- | --- |");
    for (name, c) in &review.checks {
        let cell = |phase: &str| {
            c.phases.get(phase).map_or_else(
                || "-".to_owned(),
                |(p, n)| format!("{p}/{n} ({:.1} %)", *p as f64 * 100.0 / (*n).max(1) as f64),
            )
        };
        let what = c.what.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {name} | {what} | {} | {} | {} | {} % |",
            cell("before"),
            cell("during"),
            cell("after"),
            c.pass_rate
        );
    }
    let _ = writeln!(out, "\n{}\n", SECTIONS[4]);
    if review.comparisons.is_empty() {
        let _ = writeln!(out, "No control group: the verdict rests on the checks' thresholds alone.");
    }
    for c in &review.comparisons {
        let mark = if c.worse { "**worse**" } else { "not worse" };
        let _ = writeln!(out, "- `{}` ({}, {}): {mark}. {}", c.check, c.tolerance, c.test, c.words);
    }
    let _ = writeln!(out, "\n{}\n", SECTIONS[5]);
    let _ = writeln!(out, "Rendered on {} (the timeline does not record the machine it ran on).", this_machine());
    let _ = writeln!(out, "\n{}\n", SECTIONS[6]);
    for question in [
        "What did we expect to happen, and why?",
        "What happened instead, and when did we notice (see the timeline)?",
        "Which requests, calls or processes were hit, and which were spared?",
        "What made the system cope, or not: retries, timeouts, fallbacks?",
        "What will we change, and how will we know it worked (the next run of this experiment)?",
    ] {
        let _ = writeln!(out, "- {question}\n  - ");
    }
    out
}
