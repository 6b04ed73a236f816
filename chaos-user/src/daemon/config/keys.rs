//! Every key of the daemon's configuration and what it is, in one table per TOML table: the
//! parser reads keys through it, so every error about a value names what the key is (a refused
//! `min_gap_per_target` speaks of the gap between two runs on one target, not of how long a
//! fault lasts), and an unknown key's error lists the keys of its table from the same place.
use crate::experiment::source::{FileError, Item, Table};

/// One key of a table: its name and what it is, as errors say it.
pub struct Key {
    pub name: &'static str,
    pub is: &'static str,
}

const fn key(name: &'static str, is: &'static str) -> Key {
    Key { name, is }
}

/// The file's top level.
pub const TOP: &[Key] = &[
    key("socket", "the control socket that `chaos daemon status|pause|resume` talk to"),
    key("kill_switch", "the file whose existence ends every run and pauses injection"),
    key("state_dir", "the directory the timelines of runs are kept in"),
    key("keep_timelines", "how many timelines of past runs are kept"),
    key("metrics", "the address:port that serves Prometheus /metrics, or false for none"),
    key("schedule", "when runs start"),
    key("budget", "how much injection the daemon allows itself"),
    key("safety", "what happens after a violated steady state"),
    key("kubernetes", "the namespaces whose pods may be picked"),
    key("experiment", "the catalogue: the experiment files the daemon picks from"),
];

/// `[schedule]`.
pub const SCHEDULE: &[Key] = &[
    key("every", "the time between two scheduled runs"),
    key("cron", "the times runs start, as a cron expression with seconds first"),
    key("jitter", "how far each start may move at random, either way; 0s for none"),
    key("time_zone", "the time zone of the windows, blackouts and cron expression"),
    key("windows", "when runs may start and run; absent: at any time"),
    key("blackouts", "when no run may start or run"),
];

/// One window of `windows` or `blackouts`.
pub const WINDOW: &[Key] = &[
    key("days", "the days the window is on"),
    key("from", "the time of day the window opens"),
    key("to", "the time of day the window closes"),
];

/// `[budget]`.
pub const BUDGET: &[Key] = &[
    key("max_runs_per_hour", "the most runs started in any hour"),
    key("max_concurrent", "the most runs under way at once"),
    key("min_gap_per_target", "the least time between two runs on one target; 0s for none"),
    key("max_share", "the largest share of a selector's matches under fault at once, in %"),
];

/// `[safety]`.
pub const SAFETY: &[Key] = &[key(
    "cool_down",
    "how long injection stays paused after a violated steady state; absent: until `chaos daemon resume`",
)];

/// `[kubernetes]`.
pub const KUBERNETES: &[Key] = &[key("namespaces", "the namespaces that opted in: only their pods may be picked")];

/// One `[[experiment]]` of the catalogue.
pub const EXPERIMENT: &[Key] = &[
    key("file", "an experiment file, or a directory of them, relative to this file"),
    key("weight", "this experiment's relative chance of being picked at a run"),
    key("targets", "the selector of the targets to pick from, instead of the file's own `target`"),
    key("follow", "whether a run re-attaches when the runtime restarts the container or pod it picked"),
];

/// `targets = { ... }` of an `[[experiment]]`.
pub const TARGETS: &[Key] = &[
    key("cgroup", "a glob over cgroup paths"),
    key("unit", "a glob over systemd unit names"),
    key("container", "a glob over container ids"),
    key("container_name", "a glob over container names"),
    key("pods", "the labels of the pods to pick from"),
    key("namespace", "the one namespace the pods are picked in"),
];

/// The value of `name` in `table`, whose errors say what the key is.
pub fn get<'a>(table: &Table<'a>, keys: &[Key], name: &str) -> Option<Item<'a>> {
    let item = table.get(name)?;
    Some(match keys.iter().find(|k| k.name == name) {
        Some(key) => item.described(key.is),
        None => item,
    })
}

/// The value of `name`, or an error at the table saying it is missing, with an example.
pub fn require<'a>(table: &Table<'a>, keys: &[Key], name: &str, example: &str) -> Result<Item<'a>, FileError> {
    let item = table.require(name, example)?;
    Ok(match keys.iter().find(|k| k.name == name) {
        Some(key) => item.described(key.is),
        None => item,
    })
}

/// Refuses the keys of `table` that are not in `keys`, listing those that are.
pub fn finish(table: &Table<'_>, keys: &[Key]) -> Result<(), FileError> {
    let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    table.finish(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_says_what_it_is_once() {
        for table in [TOP, SCHEDULE, WINDOW, BUDGET, SAFETY, KUBERNETES, EXPERIMENT, TARGETS] {
            for (i, key) in table.iter().enumerate() {
                assert!(!key.is.is_empty(), "{} says nothing", key.name);
                assert!(table[..i].iter().all(|k| k.name != key.name), "{} twice", key.name);
            }
        }
    }
}
