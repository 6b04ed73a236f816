//! `chaos run FILE`, `chaos validate FILE`, `chaos report FILE.jsonl`: experiments.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Args;

use crate::{
    experiment::{self, detached, file, plan, report_html, report_markdown, review::Review, runner, timeline},
    features,
    report::OutputFormat,
    run_records::RunKind,
};

#[derive(Debug, Args)]
pub(super) struct ExperimentArgs {
    /// The experiment file (TOML).
    file: PathBuf,
    /// Print the plan (which programs attach where, with which maps) and stop.
    #[arg(long)]
    dry_run: bool,
    /// Run without a foreground process: pinned under /sys/fs/bpf/chaos/ID, ended by
    /// `chaos stop ID` or its deadline. Runs no steady-state checks.
    #[arg(long)]
    detach: bool,
    /// Allow durations over the 1h cap, the root cgroup, chaos's own cgroup, init's, and TC
    /// faults on the host's interfaces.
    #[arg(long)]
    i_know: bool,
    /// Where to write the timeline (JSON Lines). Default: ./chaos-<name>-<time>.jsonl
    #[arg(long, value_name = "PATH")]
    timeline: Option<PathBuf>,
}

pub(super) fn run(args: &ExperimentArgs, output: OutputFormat) -> anyhow::Result<ExitCode> {
    // Whatever finished runs left (records, expired pins) goes first: it would look like a
    // conflict otherwise.
    for line in experiment::clean_stale_runs() {
        eprintln!("chaos: cleanup of an earlier run: {line}");
    }
    let experiment = file::load(&args.file, args.i_know)?;
    for warning in file::checks::ask_servers(&experiment.steady_state.checks, &experiment.source)? {
        eprintln!("chaos: warning: {warning}");
    }
    let kernel = features::Prober::new();
    let plan = plan::plan(&experiment, args.i_know, &kernel)?;
    if args.dry_run {
        match output {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&plan.to_json())?),
            OutputFormat::Text => println!("{}dry run: nothing attached", plan.to_text()),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for note in &plan.notes {
        eprintln!("chaos: note: {note}");
    }
    let timeline = args.timeline.clone().unwrap_or_else(|| default_timeline(&experiment.name));
    if args.detach {
        if experiment.follow {
            anyhow::bail!(
                "{}: `follow = true` needs chaos's own process to re-attach the faults, which --detach leaves: run \
                 the experiment without --detach, or remove `follow`",
                experiment.source.path
            );
        }
        if let Some(fault) = plan.faults.iter().find(|f| f.plan.userspace.is_some()) {
            anyhow::bail!(
                "fault {} ({}) runs from chaos's own process (signals, the cgroup freezer), which --detach leaves: run \
                 the experiment without --detach",
                fault.label,
                fault.plan.fault
            );
        }
        return detached::start(&plan, &timeline);
    }
    runner::run(&plan, &runner::RunOptions { timeline, output, kind: RunKind::Experiment, cancel: None })
}

fn default_timeline(name: &str) -> PathBuf {
    let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "");
    PathBuf::from(format!("chaos-{safe}-{stamp}.jsonl"))
}

/// Checks a file without touching this machine: syntax, keys, types, values, fault options (and
/// asks each Prometheus server about its query: a refusal is an error, no answer a warning).
pub(super) fn validate(path: &Path, i_know: bool) -> anyhow::Result<ExitCode> {
    let experiment = file::load(path, i_know)?;
    for warning in file::checks::ask_servers(&experiment.steady_state.checks, &experiment.source)? {
        eprintln!("chaos: warning: {warning}");
    }
    println!(
        "{}: valid: \"{}\", {} fault(s), {} check(s), {} (the target and the kernel are checked by `chaos run --dry-run`)",
        path.display(),
        experiment.name,
        experiment.faults.len(),
        experiment.steady_state.checks.len(),
        humantime::format_duration(experiment.duration)
    );
    Ok(ExitCode::SUCCESS)
}

/// Re-renders a saved timeline; exits with the code of its verdict.
pub(super) fn report(
    path: &Path,
    output: OutputFormat,
    html: Option<&Path>,
    markdown: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (written, events): (Vec<_>, Vec<_>) = timeline::read(path).map_err(anyhow::Error::msg)?.into_iter().unzip();
    if html.is_some() || markdown.is_some() {
        let review = Review::of(&events);
        for (out, text) in [(html, report_html::render as fn(&Review) -> String), (markdown, report_markdown::render)] {
            if let Some(out) = out {
                std::fs::write(out, text(&review)).with_context(|| format!("writing {}", out.display()))?;
                eprintln!("report: {}", out.display());
            }
        }
    }
    match output {
        OutputFormat::Text => print!("{}", timeline::summary(&events)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&written)?),
    }
    Ok(ExitCode::from(timeline::exit_code(&events)))
}
