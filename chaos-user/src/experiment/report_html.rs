//! `chaos report FILE.jsonl --html OUT.html`: one self-contained page (no network, no script:
//! a Content-Security-Policy forbids both) with the timeline drawn as inline SVG, the faults,
//! the checks, the comparison with the control and the verdict with its reasons.
//!
//! The charts are drawn by hand: two kinds of chart (points over time, lines over time) with
//! shaded phases are a few dozen lines of SVG, smaller than a plotting crate and its fonts.
use std::fmt::Write as _;

use super::review::{Point, Review};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 30.0;

/// Escapes text for HTML and SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[must_use]
pub fn render(review: &Review) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <title>chaos: {name}</title>\n<style>{STYLE}</style></head><body>\n\
         <h1>{name}</h1>\n<p class=\"verdict {class}\">{verdict}</p>\n",
        name = esc(&review.name),
        class = review.outcome().replace(' ', "-"),
        verdict =
            esc(review.verdict.as_ref().map_or("no verdict: the timeline ends before the run did", |v| v.1.as_str())),
    );
    let _ = writeln!(
        out,
        "<table class=\"facts\"><tr><th>run</th><td>{}</td></tr><tr><th>file</th><td>{}</td></tr>\
         <tr><th>target</th><td>{}</td></tr><tr><th>machine</th><td>{}</td></tr></table>",
        esc(&review.id),
        esc(&review.file),
        esc(&review.target),
        esc(&review.machine_line())
    );
    for (t, reason) in &review.aborts {
        let _ = writeln!(out, "<p class=\"abort\">aborted at {t:.1} s: {}</p>", esc(reason));
    }
    for note in &review.notes {
        let _ = writeln!(out, "<p class=\"note\">note: {}</p>", esc(note));
    }
    out.push_str("<h2>Checks over time</h2>\n");
    for (name, check) in &review.checks {
        let _ = writeln!(out, "<h3>{} <small>{}</small></h3>", esc(name), esc(&check.what));
        out.push_str(&latency_chart(review, &check.target, &check.control));
    }
    out.push_str("<h2>Injections per second</h2>\n");
    out.push_str(&injection_chart(review));
    out.push_str(&pressure_charts(review));
    out.push_str(&who_was_hit(review));
    out.push_str(&tables(review));
    out.push_str("</body></html>\n");
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:960px}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}\
.verdict{font-size:1.3em;padding:.5em;border-radius:4px}.held{background:#dfd}.violated{background:#fdd}\
.could-not-run,.no-verdict{background:#eee}.abort{color:#b00}code{font-size:.9em}svg{background:#fff}\
.legend span{margin-right:1.5em}";

/// x of a time, y of a value in [0, max] (log scale for latencies: they span orders of magnitude).
struct Axes {
    end: f64,
    log_max: f64,
}

impl Axes {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.end.max(1e-9)).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y_log(&self, ms: f64) -> f64 {
        let v = (ms.max(0.01) / 0.01).log10() / self.log_max;
        HEIGHT - BOTTOM - v.clamp(0.0, 1.0) * (HEIGHT - TOP - BOTTOM)
    }
}

/// The phases shaded, the abort and ramp marks, and the time axis.
fn frame(review: &Review, axes: &Axes) -> String {
    let mut svg = String::new();
    for (phase, start, length) in &review.phases {
        let colour = match phase.name() {
            "during" => "#fde8d0",
            _ => "#e8f0fb",
        };
        let (x0, x1) = (axes.x(*start), axes.x(start + length));
        let _ = write!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#666\">{}</text>",
            (x1 - x0).max(0.5),
            HEIGHT - TOP - BOTTOM,
            phase.name(),
            x0 + 3.0,
            TOP + 11.0,
            phase.name()
        );
    }
    for fault in review.faults.values() {
        for (t, percent) in &fault.ramps {
            let x = axes.x(*t);
            let _ = write!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"3,3\"><title>ramp to {percent} %</title></line>",
                HEIGHT - BOTTOM
            );
        }
    }
    for (t, reason) in &review.aborts {
        let x = axes.x(*t);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#c00\" stroke-width=\"2\"><title>abort: {}</title></line>",
            HEIGHT - BOTTOM,
            esc(reason)
        );
    }
    let y = HEIGHT - BOTTOM;
    let _ = write!(svg, "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#333\"/>", WIDTH - RIGHT);
    let step = nice_step(axes.end);
    let mut t = 0.0;
    while t <= axes.end + 1e-9 {
        let x = axes.x(t);
        let _ =
            write!(svg, "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{t}s</text>", y + 14.0);
        t += step;
    }
    svg
}

fn nice_step(end: f64) -> f64 {
    [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0].into_iter().find(|s| end / s <= 12.0).unwrap_or(1200.0)
}

fn latency_chart(review: &Review, target: &[Point], control: &[Point]) -> String {
    let max = target.iter().chain(control).map(|p| p.latency_ms).fold(1.0, f64::max);
    let axes = Axes { end: review.end, log_max: (max / 0.01).log10().ceil().max(1.0) };
    let mut svg = format!("<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">");
    svg.push_str(&frame(review, &axes));
    let mut decade = 0.01;
    while decade <= 0.01 * 10f64.powf(axes.log_max) * 1.0001 {
        let y = axes.y_log(decade);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{} ms</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 3.0,
            decade
        );
        decade *= 10.0;
    }
    for (points, shape) in [(control, "control"), (target, "target")] {
        for p in points {
            let (x, y) = (axes.x(p.t), axes.y_log(p.latency_ms));
            let colour = if p.ok { "#2a7" } else { "#d22" };
            let title = format!("{shape} at {:.2}s: {} ms, {}", p.t, p.latency_ms, if p.ok { "pass" } else { "fail" });
            if shape == "control" {
                let _ = write!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"4\" height=\"4\" fill=\"none\" stroke=\"#36c\"><title>{title}</title></rect>",
                    x - 2.0,
                    y - 2.0
                );
            } else {
                let _ = write!(
                    svg,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{colour}\"><title>{title}</title></circle>"
                );
            }
        }
    }
    svg.push_str("</svg>\n<p class=\"legend\"><span>● target: green pass, red fail</span>");
    if !control.is_empty() {
        svg.push_str("<span>□ control (blue)</span>");
    }
    svg.push_str("<span>latency, log scale; shaded: phases; red line: abort; dashed: ramp step</span></p>\n");
    svg
}

fn injection_chart(review: &Review) -> String {
    let max =
        review.faults.values().flat_map(|f| f.per_second.iter().map(|(_, n)| *n)).max().unwrap_or(0).max(1) as f64;
    let axes = Axes { end: review.end, log_max: 1.0 };
    let mut svg = format!("<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">");
    svg.push_str(&frame(review, &axes));
    let y = |n: f64| HEIGHT - BOTTOM - n / max * (HEIGHT - TOP - BOTTOM);
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{max}</text>",
        LEFT - 4.0,
        y(max) + 3.0
    );
    let colours = ["#c50", "#36c", "#393", "#939", "#996"];
    let mut legend = String::new();
    for (i, (number, fault)) in review.faults.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let points: Vec<String> =
            fault.per_second.iter().map(|(t, n)| format!("{:.1},{:.1}", axes.x(*t), y(*n as f64))).collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = write!(legend, "<span style=\"color:{colour}\">— #{number} {}</span>", esc(&fault.kind));
    }
    let _ = write!(
        svg,
        "</svg>\n<p class=\"legend\">{legend}<span>injections per sample (about one a second)</span></p>\n"
    );
    svg
}

/// A line of a chart: its label, its colour, its (t, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Per `limit` fault, its target's pressure over time (the kernel's "some" avg10 of CPU,
/// memory and I/O, in %) and, where cpu.stat says, the CPU it used (as % of one CPU).
fn pressure_charts(review: &Review) -> String {
    let limited: Vec<_> = review.faults.iter().filter(|(_, f)| !f.pressure.is_empty()).collect();
    if limited.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Pressure on the limited target</h2>\n");
    for (number, fault) in limited {
        let series: [Series<'_>; 4] = [
            ("cpu pressure", "#c50", fault.pressure.iter().filter_map(|p| Some((p.t, p.cpu?))).collect()),
            ("memory pressure", "#36c", fault.pressure.iter().filter_map(|p| Some((p.t, p.memory?))).collect()),
            ("io pressure", "#393", fault.pressure.iter().filter_map(|p| Some((p.t, p.io?))).collect()),
            (
                "CPU used (% of one CPU)",
                "#939",
                fault.pressure.iter().filter_map(|p| Some((p.t, p.cpu_used? * 100.0))).collect(),
            ),
        ];
        let max = series.iter().flat_map(|(_, _, points)| points.iter().map(|p| p.1)).fold(100.0, f64::max);
        let axes = Axes { end: review.end, log_max: 1.0 };
        let y = |v: f64| HEIGHT - BOTTOM - v / max * (HEIGHT - TOP - BOTTOM);
        let _ = writeln!(out, "<h3>#{number} {} <small>{}</small></h3>", esc(&fault.kind), esc(&fault.command_line));
        let mut svg =
            format!("<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">");
        svg.push_str(&frame(review, &axes));
        for mark in [0.0, 50.0, 100.0] {
            let _ = write!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{mark} %</text>",
                WIDTH - RIGHT,
                y(mark),
                y(mark),
                LEFT - 4.0,
                y(mark) + 3.0
            );
        }
        let mut legend = String::new();
        for (label, colour, points) in &series {
            if points.is_empty() {
                continue;
            }
            let drawn: Vec<String> = points.iter().map(|(t, v)| format!("{:.1},{:.1}", axes.x(*t), y(*v))).collect();
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{label}</title></polyline>",
                drawn.join(" ")
            );
            let _ = write!(legend, "<span style=\"color:{colour}\">— {label}</span>");
        }
        let _ = write!(
            out,
            "{svg}</svg>\n<p class=\"legend\">{legend}<span>pressure: share of time some task of the target waited (the kernel's avg10)</span></p>\n"
        );
    }
    out
}

/// The traced faults' top processes, peers and calls.
fn who_was_hit(review: &Review) -> String {
    let hit = review.who_was_hit();
    if hit.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Who was hit</h2>\n");
    for (fault, summary) in &hit {
        let _ = writeln!(
            out,
            "<h3>{} <small>{} injection records (a sample)</small></h3>\n<table>",
            esc(fault),
            summary.records
        );
        for (title, list) in [("processes", &summary.processes), ("peers", &summary.peers), ("calls", &summary.calls)] {
            if !list.is_empty() {
                let items: Vec<String> = list.iter().map(|(name, n)| format!("{} ({n})", esc(name))).collect();
                let _ = writeln!(out, "<tr><th>top {title}</th><td>{}</td></tr>", items.join(", "));
            }
        }
        out.push_str("</table>\n");
    }
    out
}

fn tables(review: &Review) -> String {
    let mut out = String::from(
        "<h2>Faults</h2>\n<table><tr><th>#</th><th>kind</th><th>window</th><th>seen</th><th>matched</th><th>injected</th><th>equivalent command</th></tr>\n",
    );
    for (number, f) in &review.faults {
        let _ = writeln!(
            out,
            "<tr><td>{number}</td><td>{}</td><td>+{}s for {}s</td><td>{}</td><td>{}</td><td>{}</td><td><code>chaos {}</code></td></tr>",
            esc(&f.kind),
            f.start_s,
            f.duration_s,
            f.seen,
            f.matched,
            f.injected,
            esc(&f.command_line)
        );
    }
    out.push_str("</table>\n<h2>Checks</h2>\n<table><tr><th>check</th><th>what</th><th>before</th><th>during</th><th>after</th><th>needs</th></tr>\n");
    for (name, c) in &review.checks {
        let cell = |phase: &str| {
            c.phases.get(phase).map_or_else(
                || "-".to_owned(),
                |(p, n)| format!("{p}/{n} ({:.1} %)", *p as f64 * 100.0 / (*n).max(1) as f64),
            )
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} %</td></tr>",
            esc(name),
            esc(&c.what),
            cell("before"),
            cell("during"),
            cell("after"),
            c.pass_rate
        );
    }
    out.push_str("</table>\n");
    if !review.comparisons.is_empty() {
        out.push_str("<h2>Compared with the control</h2>\n<table><tr><th>check</th><th>tolerance</th><th>test</th><th>p-value</th><th>worse</th><th>in words</th></tr>\n");
        for c in &review.comparisons {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3e}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.check),
                esc(&c.tolerance),
                esc(&c.test),
                c.p_value,
                if c.worse { "yes" } else { "no" },
                esc(&c.words)
            );
        }
        out.push_str("</table>\n");
    }
    out
}
