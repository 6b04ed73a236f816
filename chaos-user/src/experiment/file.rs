//! Reading an experiment file: the layout of the TOML, its defaults, and every check that does
//! not need this machine (the target's existence and the kernel are checked by the planner).
use std::{path::Path, time::Duration};

use super::{
    AbortRules, Experiment, FaultEntry, Ramp, SteadyState, faults,
    source::{FileError, Item, Source, Table},
};
use crate::{
    fault::{
        options::{self, Ppm},
        registry::{self, kind_named},
    },
    steady::{self, CheckKind, CheckSpec},
    target::TargetSpec,
};

/// Keys of a `[[fault]]` table that belong to the experiment, not to the fault's options.
pub const FAULT_KEYS: &[&str] = &["kind", "start", "duration", "ramp"];
const TOP_KEYS: &[&str] = &["name", "description", "target", "duration", "fault", "steady_state", "abort"];
const TARGET_KEYS: &[&str] = &["cgroup", "pid", "unit", "container"];
const STEADY_KEYS: &[&str] = &["before", "after", "interval", "timeout", "pass_rate", "check"];
const CHECK_KEYS: &[&str] = &[
    "name",
    "http",
    "tcp",
    "command",
    "status",
    "max_latency",
    "exit_code",
    "stdout_contains",
    "interval",
    "timeout",
    "pass_rate",
];
const ABORT_KEYS: &[&str] = &["on_violation", "consecutive_failures"];

/// Defaults of `[steady_state]`.
const DEFAULT_PHASE: Duration = Duration::from_secs(5);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_PASS_RATE: &str = "99";

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
    let steady_state = match root.get("steady_state") {
        Some(item) => parse_steady_state(&item.table("[steady_state]")?)?,
        None => SteadyState::default(),
    };
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
        duration,
        faults,
        steady_state,
        abort,
    })
}

fn parse_target(item: &Item<'_>) -> Result<TargetSpec, FileError> {
    let table = item.table("the target")?;
    let given: Vec<Item<'_>> = TARGET_KEYS.iter().filter_map(|k| table.get(k)).collect();
    table.finish(TARGET_KEYS)?;
    let [one] = given.as_slice() else {
        return Err(item.error(format!(
            "name exactly one of: {} (e.g. target = {{ unit = \"api.service\" }}){}",
            TARGET_KEYS.join(", "),
            if given.is_empty() { String::new() } else { format!(", not {}", given.len()) }
        )));
    };
    Ok(match one.key.as_str() {
        "cgroup" => TargetSpec::Cgroup(one.str()?.to_owned()),
        "pid" => TargetSpec::Pid(one.integer::<u32>("a process id")?),
        "unit" => TargetSpec::Unit(one.str()?.to_owned()),
        _ => TargetSpec::Container(one.str()?.to_owned()),
    })
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
            Some(item) => Some(parse_ramp(item, parsed.options.percent(), kind.name)?),
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

fn parse_ramp(item: &Item<'_>, percent: Option<Ppm>, kind: &str) -> Result<Ramp, FileError> {
    let Some(percent) = percent else {
        return Err(item.error(format!("{kind} has no percent to ramp")));
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
            if from >= percent {
                return Err(item.error(format!("a ramp rises: start it below the fault's percent ({percent})")));
            }
            from
        }
        // The first step of an even ramp from zero.
        None => Ppm::from_ppm(percent.get() / steps),
    };
    table.finish(&["steps", "from"])?;
    Ok(Ramp { from, steps })
}

fn parse_steady_state(table: &Table<'_>) -> Result<SteadyState, FileError> {
    let before = table.get("before").map(|i| zero_or_duration(&i)).transpose()?.unwrap_or(DEFAULT_PHASE);
    let after = table.get("after").map(|i| zero_or_duration(&i)).transpose()?.unwrap_or(DEFAULT_PHASE);
    let defaults = CheckDefaults {
        interval: table.get("interval").map(|i| i.duration()).transpose()?.unwrap_or(DEFAULT_INTERVAL),
        timeout: table.get("timeout").map(|i| i.duration()).transpose()?,
        pass_rate: match table.get("pass_rate") {
            Some(item) => item.percent()?,
            None => options::parse_percent(DEFAULT_PASS_RATE).expect("valid default"),
        },
    };
    let mut checks: Vec<CheckSpec> = Vec::new();
    if let Some(item) = table.get("check") {
        for entry in item.array()? {
            let (line, _) = entry_position(&entry);
            let check = parse_check(&entry.table(format!("the [[steady_state.check]] at line {line}"))?, &defaults)?;
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
    Ok(SteadyState { before, after, checks })
}

struct CheckDefaults {
    interval: Duration,
    timeout: Option<Duration>,
    pass_rate: Ppm,
}

fn parse_check(table: &Table<'_>, defaults: &CheckDefaults) -> Result<CheckSpec, FileError> {
    let kinds: Vec<Item<'_>> = ["http", "tcp", "command"].iter().filter_map(|k| table.get(k)).collect();
    let [what] = kinds.as_slice() else {
        return Err(table.error(format!(
            "{} needs exactly one of `http`, `tcp`, `command`{}",
            table.name,
            if kinds.is_empty() { String::new() } else { format!(", not {}", kinds.len()) }
        )));
    };
    let interval = table.get("interval").map(|i| i.duration()).transpose()?.unwrap_or(defaults.interval);
    // A check that may take longer than its interval would overlap the next one.
    let timeout = table.get("timeout").map(|i| i.duration()).transpose()?.or(defaults.timeout).unwrap_or(interval);
    let pass_rate = table.get("pass_rate").map(|i| i.percent()).transpose()?.unwrap_or(defaults.pass_rate);
    let kind = match what.key.as_str() {
        "http" => {
            let url = steady::parse_http_url(what.str()?).map_err(|e| what.error(e))?;
            let status =
                table.get("status").map(|i| i.integer::<u16>("an HTTP status, 100 to 599")).transpose()?.unwrap_or(200);
            if !(100..=599).contains(&status) {
                return Err(table
                    .get("status")
                    .expect("given")
                    .error(format!("{status} is not an HTTP status (100 to 599)")));
            }
            let max_latency = table.get("max_latency").map(|i| i.duration()).transpose()?;
            CheckKind::Http { url, status, max_latency }
        }
        "tcp" => {
            let address = what.str()?.to_owned();
            if address.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()) {
                return Err(what.error(format!("'{address}' is not host:port, e.g. \"127.0.0.1:5432\"")));
            }
            CheckKind::Tcp { address }
        }
        _ => {
            // A string runs through `sh -c`; an array is the program and its arguments.
            let argv = match what.value {
                toml::de::DeValue::String(s) => vec!["sh".to_owned(), "-c".to_owned(), s.to_string()],
                _ => what.strings()?,
            };
            if argv.is_empty() || argv[0].is_empty() {
                return Err(what.error("is empty: give a command line or [program, args...]"));
            }
            let exit_code =
                table.get("exit_code").map(|i| i.integer::<i32>("an exit code, 0 to 255")).transpose()?.unwrap_or(0);
            let stdout_contains = table.get("stdout_contains").map(|i| i.str().map(str::to_owned)).transpose()?;
            CheckKind::Command { argv, exit_code, stdout_contains }
        }
    };
    // Options that only make sense for another kind are a mistake worth pointing at.
    let stray = match &kind {
        CheckKind::Http { .. } => &["exit_code", "stdout_contains"][..],
        CheckKind::Tcp { .. } => &["status", "max_latency", "exit_code", "stdout_contains"][..],
        CheckKind::Command { .. } => &["status", "max_latency"][..],
    };
    for key in stray {
        if let Some(item) = table.get(key) {
            return Err(item.error_at_key(format!("`{key}` does not apply to a `{}` check", what.key)));
        }
    }
    let name = match table.get("name") {
        Some(item) => item.str()?.to_owned(),
        None => what.value.as_str().map_or_else(|| what.key.clone(), str::to_owned),
    };
    table.finish(CHECK_KEYS)?;
    Ok(CheckSpec { name, kind, interval, timeout, pass_rate })
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "api under loss"
target = { cgroup = "/app" }
duration = "2m"

[[fault]]
kind = "net drop"
percent = 20
burst_len = 4
direction = "egress"
remote = ["10.0.3.0/24", "fd00::/64"]
remote_port = [80, "8000-8100"]
start = "10s"
duration = "1m"

[[fault]]
kind = "net partition"
to = ["192.0.2.7"]

[[fault]]
kind = "net corrupt"
percent = 0.5
fix_checksum = true
ramp = { steps = 5, from = 0.1 }

[steady_state]
before = "3s"
interval = "500ms"
pass_rate = "95%"

[[steady_state.check]]
name = "health"
http = "http://127.0.0.1:8080/health"
max_latency = "200ms"

[[steady_state.check]]
tcp = "127.0.0.1:5432"
timeout = "2s"

[[steady_state.check]]
command = "test -e /tmp"

[abort]
consecutive_failures = 3
"#;

    fn parse_text(text: &str) -> Result<Experiment, FileError> {
        parse(Source::new("exp.toml", text), false)
    }

    #[test]
    fn a_full_experiment_parses() {
        let exp = parse_text(GOOD).unwrap();
        assert_eq!(exp.name, "api under loss");
        assert_eq!(exp.target, TargetSpec::Cgroup("/app".into()));
        assert_eq!(exp.duration, Duration::from_secs(120));
        assert_eq!(exp.faults.len(), 3);
        let drop = &exp.faults[0];
        assert_eq!(drop.kind.name, "net drop");
        assert_eq!((drop.start, drop.duration), (Duration::from_secs(10), Duration::from_secs(60)));
        assert_eq!(
            drop.flags,
            [
                "--percent=20",
                "--burst-len=4",
                "--direction=egress",
                "--remote=10.0.3.0/24",
                "--remote=fd00::/64",
                "--remote-port=80",
                "--remote-port=8000-8100"
            ]
        );
        // Defaults: from its start to the end of the experiment.
        assert_eq!((exp.faults[1].start, exp.faults[1].duration), (Duration::ZERO, Duration::from_secs(120)));
        assert_eq!(exp.faults[2].flags, ["--percent=0.5", "--fix-checksum"]);
        assert_eq!(exp.faults[2].ramp, Some(Ramp { from: options::parse_percent("0.1").unwrap(), steps: 5 }));
        let steady = &exp.steady_state;
        assert_eq!((steady.before, steady.after), (Duration::from_secs(3), Duration::from_secs(5)));
        assert_eq!(steady.checks.len(), 3);
        assert_eq!(steady.checks[0].timeout, Duration::from_millis(500), "the timeout defaults to the interval");
        assert_eq!(steady.checks[1].name, "127.0.0.1:5432");
        assert_eq!(steady.checks[1].pass_rate, options::parse_percent("95").unwrap());
        assert!(matches!(&steady.checks[2].kind, CheckKind::Command { argv, .. } if argv[0] == "sh"));
        assert_eq!(exp.abort, AbortRules { on_violation: true, consecutive_failures: Some(3) });
    }

    /// (file text, line, column, expected message part)
    const BAD: &[(&str, usize, usize, &str)] = &[
        ("target = { cgroup = \"/a\" \nduration = \"1m\"", 2, 1, "not valid TOML: missing comma"),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net fly\"\n",
            4,
            8,
            "unknown fault kind \"net fly\"; chaos knows: net drop",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = true\n",
            5,
            11,
            "expected a number or a string, found the boolean true",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"-5s\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
            2,
            12,
            "is negative",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 101\n",
            5,
            11,
            "`percent`: '101' is over 100 %",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = \"150%\"\n",
            5,
            11,
            "is over 100 %",
        ),
        (
            "target = { vm = \"/a\" }\nduration = \"1m\"\n",
            1,
            12,
            "unknown key `vm` in the target; expected one of: cgroup, pid, unit, container",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\nburst = 4\n",
            6,
            1,
            "unknown option `burst` for net drop; it takes: percent, burst_len",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\ndirection = \"up\"\n",
            6,
            13,
            "'up' is not one of: egress, ingress, both",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\n",
            3,
            1,
            "net drop needs `percent`",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net partition\"\n",
            3,
            1,
            "net partition needs `to`",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"2h\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
            2,
            12,
            "longer than the 1h cap; pass --i-know",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\nstart = \"50s\"\nduration = \"20s\"\n",
            7,
            12,
            "ends after the experiment's 1m",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net partition\"\nto = [\"10.0.0.0/33\"]\n",
            5,
            7,
            "`to`: '10.0.0.0/33': the prefix length must be a number from 0 to 32",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net partition\"\nto = [\"10.0.0.0/8\"]\nramp = { steps = 3 }\n",
            6,
            8,
            "net partition has no percent to ramp",
        ),
        ("target = { cgroup = \"/a\" }\nduration = \"1m\"\n", 1, 1, "needs at least one [[fault]]"),
        ("duration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n", 1, 1, "needs `target`"),
        (
            "target = { cgroup = \"/a\" }\nduration = 60\n",
            2,
            12,
            "expected a duration with a unit as a string, e.g. \"60s\"",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\nhttp = \"https://x/\"\n",
            8,
            8,
            "https is not supported",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\ntcp = \"x:1\"\nstatus = 200\n",
            9,
            1,
            "`status` does not apply to a `tcp` check",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\ncolour = 1\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
            3,
            1,
            "unknown key `colour` in the file",
        ),
        (
            "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[abort]\nconsecutive_failures = 0\n",
            7,
            24,
            "0 failures in a row",
        ),
    ];

    #[test]
    fn bad_files_point_at_the_line_and_column_with_the_reason() {
        let mut wrong = Vec::new();
        for &(text, line, column, expected) in BAD {
            let err = parse_text(text).expect_err(text);
            if !err.message.contains(expected) || !err.to_string().starts_with(&format!("exp.toml:{line}:{column}: ")) {
                wrong.push(format!("{text:?}\n  expected {line}:{column} {expected:?}\n  got      {err}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    mod fuzz {
        use proptest::prelude::*;

        use super::{GOOD, parse_text};

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            /// Arbitrary text: an error or an experiment, never a panic.
            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
                let _ = parse_text(&text);
            }

            /// A valid file with a slice cut out and something else put in: close to valid, so
            /// it reaches deep into the parser.
            #[test]
            fn mutated_experiments_never_panic(
                at in 0usize..GOOD.len(),
                cut in 0usize..40,
                insert in prop::sample::select(vec!["", "\"", "[", "]", "=", "\n", "-1", "1e99", "\"-5s\"", "true",
                    "[[fault]]\n", "{ }", "99999999999999999999", "\"\u{0}\"", "percent = 101\n", "ramp = { steps = 0 }"]),
            ) {
                let mut text = GOOD.to_owned();
                let start = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                let end = (start + cut..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
                text.replace_range(start..end, insert);
                if let Err(err) = parse_text(&text) {
                    // Every error has a position inside the text.
                    prop_assert!(err.line >= 1 && err.line <= text.lines().count().max(1) + 1, "{err}");
                }
            }
        }
    }
}
