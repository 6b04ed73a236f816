//! `chaos report FILE.jsonl --markdown OUT.md`: the run as a learning-review document: what was
//! done, what was seen, how it compares with the control, and the questions a review asks.
use std::fmt::Write as _;

use super::review::Review;

/// The sections every report has, in order (the tests check each is there).
pub(crate) const SECTIONS: [&str; 8] = [
    "## Summary",
    "## Timeline",
    "## Faults",
    "## Who was hit",
    "## Checks",
    "## Compared with the control",
    "## Machine",
    "## Questions for the review",
];

#[must_use]
pub(crate) fn render(review: &Review) -> String {
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
    let hit = review.who_was_hit();
    if hit.is_empty() {
        let _ =
            writeln!(out, "No traced fault recorded an injection (`trace = true` in a `[[fault]]` lists who was hit).");
    }
    for (fault, summary) in &hit {
        let _ = writeln!(
            out,
            "Fault {fault}, {} injection records (a sample, rate-limited in the kernel):\n",
            summary.records
        );
        for (title, list) in [("processes", &summary.processes), ("peers", &summary.peers), ("calls", &summary.calls)] {
            if !list.is_empty() {
                let items: Vec<String> = list.iter().map(|(name, n)| format!("`{name}` ({n})")).collect();
                let _ = writeln!(out, "- top {title}: {}", items.join(", "));
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\n{}\n", SECTIONS[4]);
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
    let _ = writeln!(out, "\n{}\n", SECTIONS[5]);
    if review.comparisons.is_empty() {
        let _ = writeln!(out, "No control group: the verdict rests on the checks' thresholds alone.");
    }
    for c in &review.comparisons {
        let mark = if c.worse { "**worse**" } else { "not worse" };
        let _ = writeln!(out, "- `{}` ({}, {}): {mark}. {}", c.check, c.tolerance, c.test, c.words);
    }
    let _ = writeln!(out, "\n{}\n", SECTIONS[6]);
    let _ = writeln!(out, "{}", review.machine_line());
    let _ = writeln!(out, "\n{}\n", SECTIONS[7]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::timeline::Recorded;

    /// A small violated run with a control group, as a timeline holds it.
    const TIMELINE: &[&str] = &[
        r#"{"t":0.0,"event":"experiment","id":"x1","name":"canary <a>","file":"c.toml","target":"cgroup /a","duration_s":2.0,"checks":[{"name":"web","what":"GET http://a/ -> 200","pass_rate":0.0}],"notes":[]}"#,
        r#"{"t":0.0,"event":"plan","fault":1,"kind":"net drop","command_line":"net drop --percent=5","start_s":0.0,"duration_s":2.0,"programs":[],"maps":{}}"#,
        r#"{"t":0.0,"event":"phase","phase":"during","length_s":2.0}"#,
        r#"{"t":0.1,"event":"arm","fault":1,"kernel_deadline_ns":5,"percent":5.0}"#,
        r#"{"t":0.5,"event":"check","check":"web","phase":"during","ok":false,"latency_ms":300.0,"detail":"no answer"}"#,
        r#"{"t":0.5,"event":"check","check":"web","phase":"during","ok":true,"latency_ms":1.0,"detail":"200","group":"control"}"#,
        r#"{"t":1.0,"event":"counts","faults":[{"fault":1,"injected":3,"seen":60,"matched":60,"injected_total":3,"seen_total":60,"matched_total":60}]}"#,
        r#"{"t":2.0,"event":"comparison","check":"web","tolerance":"pass rate -1%","test":"two-proportion z-test","experimental":0.0,"control":100.0,"n_experimental":1,"n_control":1,"z":9.0,"p_value":0.0001,"confidence":0.99,"worse":true,"words":"pass rate: worse"}"#,
        r#"{"t":2.1,"event":"verdict","held":false,"exit_code":1,"summary":"hypothesis violated: worse"}"#,
    ];

    fn review() -> Review {
        let events: Vec<Recorded> = TIMELINE.iter().map(|l| serde_json::from_str(l).expect("event")).collect();
        Review::of(&events)
    }

    #[test]
    fn the_review_has_every_section_and_the_facts() {
        let text = render(&review());
        for section in SECTIONS {
            assert!(text.contains(section), "no {section}: {text}");
        }
        assert!(text.contains("violated") && text.contains("`chaos net drop --percent=5`"), "{text}");
        assert!(text.contains("| web | GET http://a/ -> 200 | - | 0/1 (0.0 %) | - |"), "{text}");
        assert!(text.contains("**worse**") && text.contains("fault #1 armed"), "{text}");
    }

    #[test]
    fn the_page_escapes_text_and_fetches_nothing() {
        let page = super::super::report_html::render(&review());
        assert!(page.contains("canary &lt;a&gt;") && !page.contains("canary <a>"), "not escaped");
        for outside in ["<script", "src=", "<link", "url("] {
            assert!(!page.contains(outside), "{outside}");
        }
        // Both groups are drawn: the target's failing point and the control's square.
        assert!(
            page.contains("target at 0.50s: 300 ms, fail") && page.contains("control at 0.50s: 1 ms, pass"),
            "{page}"
        );
    }
}
