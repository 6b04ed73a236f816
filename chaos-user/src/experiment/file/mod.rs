//! Reading an experiment file: the layout of the TOML, its defaults, and every check that does
//! not need this machine (the target's existence and the kernel are checked by the planner).
use std::{path::Path, time::Duration};

use super::{
    AbortRules, Control, Experiment, FaultEntry, Ramp, SteadyState, faults,
    source::{FileError, Item, Source, Table},
};
use crate::{
    fault::registry::{
        kind_named, {self},
    },
    plan::options::{
        Ppm, {self},
    },
    steady::Check,
    targets::{TargetName, registry as target_kinds},
};

/// Keys of a `[[fault]]` table that belong to the experiment, not to the fault's options.
pub const FAULT_KEYS: &[&str] = &["kind", "start", "duration", "ramp"];
const TOP_KEYS: &[&str] =
    &["name", "description", "target", "follow", "duration", "fault", "control", "steady_state", "abort"];
const CONTROL_KEYS: &[&str] = &["target", "confidence"];
const STEADY_KEYS: &[&str] = &["before", "after", "interval", "timeout", "pass_rate", "check"];
const ABORT_KEYS: &[&str] = &["on_violation", "consecutive_failures"];

/// Defaults of `[steady_state]`.
const DEFAULT_PHASE: Duration = Duration::from_secs(5);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PASS_RATE: &str = "99";
/// Defaults of `[control]`.
const DEFAULT_CONFIDENCE: f64 = 0.99;

/// Reads and validates an experiment file. `i_know` lifts the duration cap.
pub fn load(path: &Path, i_know: bool) -> Result<Experiment, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.display().to_string(),
        line: 1,
        column: 1,
        message: format!("cannot read the file: {e}"),
    })?;
    parse(Source::new(path.display().to_string(), text), i_know)
}

/// Parses and validates an experiment from its text.
pub fn parse(source: Source, i_know: bool) -> Result<Experiment, FileError> {
    let parsed = parse_parts(&source, i_know)?;
    Ok(Experiment { source, ..parsed })
}

fn parse_parts(source: &Source, i_know: bool) -> Result<Experiment, FileError> {
    let document = source.parse()?;
    let root = document.root();
    let name = match root.get("name") {
        Some(item) => item.str()?.to_owned(),
        None => Path::new(&source.path)
            .file_stem()
            .map_or_else(|| "experiment".into(), |s| s.to_string_lossy().into_owned()),
    };
    if let Some(item) = root.get("description") {
        item.str()?;
    }
    let target_item = root.require("target", "target = { cgroup = \"/system.slice/api.service\" }")?;
    let target = parse_target(&target_item)?;
    let follow = parse_follow(root.get("follow").as_ref(), &target)?;
    let duration_item = root.require("duration", "duration = \"2m\"")?;
    let duration = duration_item.duration()?;
    if let Err(reason) = options::check_duration_cap(duration, i_know) {
        return Err(duration_item.error(reason.replace("--for ", "")));
    }
    let faults = match root.get("fault") {
        Some(item) => parse_faults(&item, duration)?,
        None => Vec::new(),
    };
    if faults.is_empty() {
        return Err(root.error(format!(
            "an experiment needs at least one [[fault]] (kinds: {})",
            registry::kind_names().join(", ")
        )));
    }
    let control = root.get("control").map(|item| parse_control(&item)).transpose()?;
    let mut steady_state = match root.get("steady_state") {
        Some(item) => parse_steady_state(&item.table("[steady_state]")?, control.is_some())?,
        None => SteadyState::default(),
    };
    if let (Some(control), false) = (&control, steady_state.checks.iter().any(|c| c.control.is_some())) {
        return Err(source.error(
            &control.target_span,
            "[control] is measured by checks that name it: give a [[steady_state.check]] `control = \"...\"`",
        ));
    }
    steady_state.control = control;
    let abort = match root.get("abort") {
        Some(item) => parse_abort(&item.table("[abort]")?)?,
        None => AbortRules::default(),
    };
    root.finish(TOP_KEYS)?;
    Ok(Experiment {
        source: source.clone(),
        name,
        target,
        target_span: target_item.span.clone(),
        follow,
        duration,
        faults,
        steady_state,
        abort,
    })
}

fn parse_target(item: &Item<'_>) -> Result<TargetName, FileError> {
    let table = item.table("the target")?;
    let keys = target_kinds::keys();
    let given: Vec<Item<'_>> = keys.iter().filter_map(|k| table.get(k)).collect();
    table.finish(&keys)?;
    let [one] = given.as_slice() else {
        return Err(item.error(format!(
            "name exactly one of: {} (e.g. target = {{ unit = \"api.service\" }}){}",
            keys.join(", "),
            if given.is_empty() { String::new() } else { format!(", not {}", given.len()) }
        )));
    };
    let kind = target_kinds::kind_named(&one.key).expect("a key of the registry");
    let value = if kind.numeric { one.integer::<u32>("a process id")?.to_string() } else { one.str()?.to_owned() };
    // The whole pod; `--container-name`, `--namespace` and `--pick-pod` are command-line only.
    kind.name(value, &target_kinds::Narrowing::default()).map_err(|reason| one.error(reason))
}

/// `follow = true`: only a target a runtime names can come back under its name.
fn parse_follow(item: Option<&Item<'_>>, target: &TargetName) -> Result<bool, FileError> {
    let Some(item) = item else { return Ok(false) };
    let follow = item.bool()?;
    if follow && !target.kind().followable {
        return Err(item.error(format!(
            "`follow` re-resolves a container or pod name when its runtime restarts it; a target given by \
             {} has no name to resolve again: use target = {{ container = \"NAME\" }}, {{ pod = \"NS/NAME\" }} \
             or {{ selector = \"app=web\" }}, or remove `follow`",
            target.flag().trim_start_matches("--")
        )));
    }
    Ok(follow)
}

fn parse_faults(item: &Item<'_>, experiment: Duration) -> Result<Vec<FaultEntry>, FileError> {
    let mut faults = Vec::new();
    for (index, entry) in item.array()?.iter().enumerate() {
        let number = index + 1;
        let (line, _) = entry_position(entry);
        let table = entry.table(format!("the [[fault]] at line {line}"))?;
        let kind_item = table.require("kind", "kind = \"net drop\"")?;
        let kind = kind_named(kind_item.str()?).ok_or_else(|| {
            kind_item.error(format!(
                "unknown fault kind \"{}\"; chaos knows: {}",
                kind_item.str().unwrap_or_default(),
                registry::kind_names().join(", ")
            ))
        })?;
        let parsed = faults::parse_options(kind, &table, FAULT_KEYS)?;
        let start = match table.get("start") {
            Some(item) => zero_or_duration(&item)?,
            None => Duration::ZERO,
        };
        if start >= experiment {
            let item = table.get("start").expect("start was given");
            return Err(item.error(format!(
                "starts at {} but the experiment lasts {}",
                humantime::format_duration(start),
                humantime::format_duration(experiment)
            )));
        }
        let duration = match table.get("duration") {
            Some(item) => {
                let duration = item.duration()?;
                if start + duration > experiment {
                    return Err(item.error(format!(
                        "{} from {} ends after the experiment's {}; shorten it or start it earlier",
                        humantime::format_duration(duration),
                        humantime::format_duration(start),
                        humantime::format_duration(experiment)
                    )));
                }
                duration
            }
            None => experiment - start,
        };
        let ramp_item = table.get("ramp");
        let ramp = match &ramp_item {
            Some(item) => Some(parse_ramp(item, parsed.options.percent(), parsed.options.ramp_tightens(), kind.name)?),
            None => None,
        };
        faults.push(FaultEntry {
            number,
            kind,
            options: parsed.options,
            flags: parsed.flags,
            start,
            duration,
            ramp,
            span: kind_item.span.clone(),
            ramp_span: ramp_item.map(|i| i.span.clone()),
        });
    }
    Ok(faults)
}

fn entry_position(item: &Item<'_>) -> (usize, usize) {
    let err = item.error("");
    (err.line, err.column)
}

/// `start = "0s"` is allowed (the default, written out).
fn zero_or_duration(item: &Item<'_>) -> Result<Duration, FileError> {
    let text = item.str()?;
    if humantime::parse_duration(text.trim()).is_ok_and(|d| d.is_zero()) {
        return Ok(Duration::ZERO);
    }
    item.duration()
}

/// A ramp rises to the fault's percentage; for a limit (`tightens`) it falls from a looser
/// value to the fault's own.
fn parse_ramp(item: &Item<'_>, percent: Option<Ppm>, tightens: bool, kind: &str) -> Result<Ramp, FileError> {
    let Some(percent) = percent else {
        let what = if tightens {
            format!(
                "{kind} has no percentage to ramp: a ramp moves a CPU share up to one CPU (to = \"25%\") or a memory \
                 percentage (high = \"50%\")"
            )
        } else {
            format!("{kind} has no percent to ramp")
        };
        return Err(item.error(what));
    };
    let table = item.table("the ramp")?;
    let steps = table.require("steps", "ramp = { steps = 4 }")?.integer::<u32>("2 to 100 steps")?;
    if !(2..=100).contains(&steps) {
        let item = table.get("steps").expect("steps was given");
        return Err(item.error(format!("{steps} steps: a ramp has 2 to 100 steps")));
    }
    let from = match table.get("from") {
        Some(item) => {
            let from = item.percent()?;
            if tightens && from <= percent {
                return Err(item.error(format!(
                    "a limit's ramp tightens: start it above the fault's own value ({percent}), e.g. from = \"80%\""
                )));
            }
            if !tightens && from >= percent {
                return Err(item.error(format!("a ramp rises: start it below the fault's percent ({percent})")));
            }
            from
        }
        // The first step of an even ramp down from 100 %.
        None if tightens => Ppm::from_ppm(percent.get() + (Ppm::ALL.get() - percent.get()) / steps),
        // The first step of an even ramp from zero.
        None => Ppm::from_ppm(percent.get() / steps),
    };
    table.finish(&["steps", "from"])?;
    Ok(Ramp { from, steps })
}

/// `[control]`: the replica that gets no fault, and how sure a comparison must be.
fn parse_control(item: &Item<'_>) -> Result<Control, FileError> {
    let table = item.table("[control]")?;
    let target_item = table.require("target", "target = { cgroup = \"/system.slice/api-replica.service\" }")?;
    let target = parse_target(&target_item)?;
    let confidence = match table.get("confidence") {
        None => DEFAULT_CONFIDENCE,
        Some(item) => {
            let text = item.scalar_text()?;
            let value = text.trim_end_matches('%').trim().parse::<f64>().ok();
            let value = value.map(|v| if text.ends_with('%') { v / 100.0 } else { v });
            value.filter(|v| (0.5..1.0).contains(v)).ok_or_else(|| {
                item.error(format!("'{text}' is not a confidence: give 0.5 to 0.9999, e.g. 0.99 (or \"99%\")"))
            })?
        }
    };
    table.finish(CONTROL_KEYS)?;
    Ok(Control { target, target_span: target_item.span.clone(), confidence })
}

fn parse_steady_state(table: &Table<'_>, has_control: bool) -> Result<SteadyState, FileError> {
    let before = table.get("before").map(|i| zero_or_duration(&i)).transpose()?.unwrap_or(DEFAULT_PHASE);
    let after = table.get("after").map(|i| zero_or_duration(&i)).transpose()?.unwrap_or(DEFAULT_PHASE);
    let defaults = checks::CheckDefaults {
        interval: table.get("interval").map(|i| i.duration()).transpose()?.unwrap_or(DEFAULT_INTERVAL),
        timeout: table.get("timeout").map(|i| i.duration()).transpose()?,
        pass_rate: match table.get("pass_rate") {
            Some(item) => item.percent()?,
            None => options::parse_percent(DEFAULT_PASS_RATE).expect("valid default"),
        },
        has_control,
    };
    let mut checks: Vec<Check> = Vec::new();
    if let Some(item) = table.get("check") {
        for entry in item.array()? {
            let (line, _) = entry_position(&entry);
            let check =
                checks::parse_check(&entry.table(format!("the [[steady_state.check]] at line {line}"))?, &defaults)?;
            if checks.iter().any(|c| c.name == check.name) {
                return Err(entry.error(format!("two checks are named \"{}\"; give each its own name", check.name)));
            }
            checks.push(check);
        }
    }
    table.finish(STEADY_KEYS)?;
    if checks.is_empty() {
        return Err(table.error("[steady_state] has no [[steady_state.check]]: add one, or remove the section"));
    }
    Ok(SteadyState { before, after, checks, control: None })
}

fn parse_abort(table: &Table<'_>) -> Result<AbortRules, FileError> {
    let on_violation = table.get("on_violation").map(|i| i.bool()).transpose()?.unwrap_or(true);
    let consecutive_failures = match table.get("consecutive_failures") {
        Some(item) => {
            let n = item.integer::<u32>("a number of results, at least 1")?;
            if n == 0 {
                return Err(item.error("0 failures in a row would abort at once: use 1 or more"));
            }
            Some(n)
        }
        None => None,
    };
    table.finish(ABORT_KEYS)?;
    Ok(AbortRules { on_violation, consecutive_failures })
}

pub mod checks;
#[cfg(test)]
mod tests;
