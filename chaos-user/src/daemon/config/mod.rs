//! The daemon's configuration (`/etc/chaos/daemon.toml`): its catalogue of experiments, their
//! target selectors, the schedule, budgets, safety and where its socket, kill switch and state
//! live. Read through the experiment files' positioned TOML, so every error is at
//! `file:line:column`; every experiment of the catalogue is loaded (and so validated) too.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::experiment::{
    Experiment, file,
    source::{FileError, Item, Source, Table},
};

pub const DEFAULT_CONFIG: &str = "/etc/chaos/daemon.toml";
pub const DEFAULT_SOCKET: &str = "/run/chaos/daemon.sock";
pub const DEFAULT_KILL_SWITCH: &str = "/run/chaos/kill";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/chaos";
pub const DEFAULT_METRICS: &str = "127.0.0.1:9464";

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct DaemonConfig {
    pub path: PathBuf,
    /// The experiments runs are picked from; empty: nothing is scheduled.
    pub catalogue: Vec<CatalogueEntry>,
    pub schedule: Schedule,
    pub budget: Budget,
    /// How long injection stays paused after a violated steady state; None: until `resume`.
    pub cool_down: Option<Duration>,
    pub socket: PathBuf,
    pub kill_switch: PathBuf,
    /// Timelines of the daemon's runs go to `<state_dir>/timelines`.
    pub state_dir: PathBuf,
    /// How many timelines are kept (the oldest go first).
    pub keep_timelines: usize,
    /// Where `/metrics` is served; None: nowhere.
    pub metrics: Option<String>,
    /// The namespaces whose pods pod selectors may pick.
    pub kubernetes: Kubernetes,
}

/// One experiment file of the catalogue.
#[derive(Debug)]
pub struct CatalogueEntry {
    /// The experiment's `name`.
    pub name: String,
    pub file: PathBuf,
    /// Relative chance of being picked at a scheduled run.
    pub weight: u32,
    /// Targets to pick from, instead of the file's own `target`.
    pub selector: Option<Selector>,
    /// Each run re-attaches when the runtime restarts the container or pod it picked (its
    /// name is resolved again), as `follow = true` does in an experiment file.
    pub follow: bool,
    /// The experiment as loaded (a run loads its file again: a change is picked up by SIGHUP).
    pub experiment: Experiment,
}

/// When runs start: every `every` or at each time of a cron expression, each start moved by up
/// to ± `jitter` at random; only inside the allowed windows (all the time if there are none)
/// and never in a blackout, both in `time_zone`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub when: When,
    pub jitter: Duration,
    pub time_zone: chrono_tz::Tz,
    pub windows: Vec<Window>,
    pub blackouts: Vec<Window>,
}

#[derive(Clone, Debug)]
pub enum When {
    Every(Duration),
    /// A cron expression (seconds first, as the `cron` crate reads it), in the time zone.
    Cron(Box<cron::Schedule>),
}

/// A weekly time window: on these days (Monday = 0), from `from` to `to` (seconds of the day;
/// `to` may pass midnight, then the window ends the next day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub days: [bool; 7],
    pub from: u32,
    pub to: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub max_runs_per_hour: u32,
    pub max_concurrent: usize,
    pub min_gap_per_target: Duration,
    /// The largest share (0..=1) of a selector's matches under fault at once.
    pub max_share: f64,
}

impl DaemonConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            path: path.display().to_string(),
            line: 1,
            column: 1,
            message: format!("cannot read the daemon configuration: {e}"),
        })?;
        Self::parse(&Source::new(path.display().to_string(), text))
    }

    pub fn parse(source: &Source) -> Result<Self, FileError> {
        let document = source.parse()?;
        let root = document.root();
        let base = Path::new(&source.path).parent().unwrap_or_else(|| Path::new("."));
        let path_of = |item: Option<Item<'_>>, default: &str| -> Result<PathBuf, FileError> {
            match item {
                None => Ok(PathBuf::from(default)),
                Some(item) => {
                    let text = item.str()?;
                    if text.is_empty() { Err(item.error("an empty path")) } else { Ok(base.join(text)) }
                }
            }
        };
        let socket = path_of(keys::get(&root, keys::TOP, "socket"), DEFAULT_SOCKET)?;
        let kill_switch = path_of(keys::get(&root, keys::TOP, "kill_switch"), DEFAULT_KILL_SWITCH)?;
        let state_dir = path_of(keys::get(&root, keys::TOP, "state_dir"), DEFAULT_STATE_DIR)?;
        let keep_timelines = match keys::get(&root, keys::TOP, "keep_timelines") {
            Some(item) => {
                let keep = item.integer::<usize>("1 to 100000")?;
                if !(1..=100_000).contains(&keep) {
                    return Err(item.error(format!("{keep} is out of range: expected 1 to 100000")));
                }
                keep
            }
            None => 200,
        };
        let metrics = match keys::get(&root, keys::TOP, "metrics") {
            None => Some(DEFAULT_METRICS.to_owned()),
            Some(item) if item.value.as_bool() == Some(false) => None,
            Some(item) => {
                let address = item.str()?;
                address.parse::<std::net::SocketAddr>().map_err(|e| {
                    item.error(format!("\"{address}\" is not an address:port ({e}), e.g. \"127.0.0.1:9464\""))
                })?;
                Some(address.to_owned())
            }
        };
        let schedule = parse_schedule(&keys::require(&root, keys::TOP, "schedule", "[schedule] every = \"10m\"")?)?;
        let budget = match keys::get(&root, keys::TOP, "budget") {
            Some(item) => parse_budget(&item)?,
            None => {
                Budget { max_runs_per_hour: 6, max_concurrent: 1, min_gap_per_target: Duration::ZERO, max_share: 1.0 }
            }
        };
        let cool_down = match keys::get(&root, keys::TOP, "safety") {
            Some(item) => {
                let table = item.table("[safety]")?;
                let cool_down = keys::get(&table, keys::SAFETY, "cool_down").map(|i| i.duration()).transpose()?;
                keys::finish(&table, keys::SAFETY)?;
                cool_down
            }
            None => None,
        };
        let kubernetes = keys::get(&root, keys::TOP, "kubernetes")
            .map(|i| selector::parse_kubernetes(&i))
            .transpose()?
            .unwrap_or_default();
        // No `[[experiment]]` is an empty catalogue: a valid configuration that schedules nothing
        // (the packaged default, until an operator adds one); `--check` and the start say so.
        let mut catalogue = Vec::new();
        if let Some(experiments) = keys::get(&root, keys::TOP, "experiment") {
            for item in experiments.array()? {
                let table = item.table("an [[experiment]]")?;
                catalogue.extend(parse_entry(&table, base, &kubernetes)?);
            }
        }
        keys::finish(&root, keys::TOP)?;
        Ok(Self {
            path: PathBuf::from(&source.path),
            catalogue,
            schedule,
            budget,
            cool_down,
            socket,
            kill_switch,
            state_dir,
            keep_timelines,
            metrics,
            kubernetes,
        })
    }

    #[must_use]
    pub fn timelines_dir(&self) -> PathBuf {
        self.state_dir.join("timelines")
    }
}

fn parse_schedule(item: &Item<'_>) -> Result<Schedule, FileError> {
    let table = item.table("[schedule]")?;
    let (when, every_item) =
        match (keys::get(&table, keys::SCHEDULE, "every"), keys::get(&table, keys::SCHEDULE, "cron")) {
            (Some(every), None) => (When::Every(every.duration()?), every),
            (None, Some(cron)) => {
                let text = cron.str()?;
                let parsed = text.parse::<cron::Schedule>().map_err(|e| {
                    let e = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
                    cron.error(format!(
                        "not a cron expression ({e}); seconds come first, e.g. \"0 */10 10-15 * * Mon-Fri\""
                    ))
                })?;
                (When::Cron(Box::new(parsed)), cron)
            }
            _ => {
                return Err(
                    table.error("[schedule] needs exactly one of `every = \"10m\"` or `cron = \"0 */10 * * * *\"`")
                );
            }
        };
    let jitter_item = keys::get(&table, keys::SCHEDULE, "jitter");
    let jitter = jitter_item.as_ref().map(Item::duration_or_zero).transpose()?.unwrap_or_default();
    if let When::Every(every) = when
        && jitter >= every
    {
        let at = jitter_item.unwrap_or(every_item);
        return Err(at.error(format!(
            "a jitter of {} would let runs overlap their neighbours: keep it under `every` ({})",
            humantime::format_duration(jitter),
            humantime::format_duration(every)
        )));
    }
    let time_zone = match keys::get(&table, keys::SCHEDULE, "time_zone") {
        Some(item) => {
            let name = item.str()?;
            name.parse::<chrono_tz::Tz>().map_err(|_| {
                item.error(format!("\"{name}\" is not a time zone of the tz database, e.g. \"Europe/Paris\""))
            })?
        }
        None => chrono_tz::UTC,
    };
    let windows =
        keys::get(&table, keys::SCHEDULE, "windows").map(|i| parse_windows(&i)).transpose()?.unwrap_or_default();
    let blackouts =
        keys::get(&table, keys::SCHEDULE, "blackouts").map(|i| parse_windows(&i)).transpose()?.unwrap_or_default();
    keys::finish(&table, keys::SCHEDULE)?;
    Ok(Schedule { when, jitter, time_zone, windows, blackouts })
}

/// `[{ days = "Mon-Fri", from = "10:00", to = "16:00" }, ...]`
fn parse_windows(item: &Item<'_>) -> Result<Vec<Window>, FileError> {
    item.array()?
        .iter()
        .map(|entry| {
            let table = entry.table(format!("a window of `{}`", item.key))?;
            let days = match keys::get(&table, keys::WINDOW, "days") {
                Some(days) => parse_days(&days)?,
                None => [true; 7],
            };
            let from = parse_time_of_day(&keys::require(&table, keys::WINDOW, "from", "from = \"10:00\"")?)?;
            let to = parse_time_of_day(&keys::require(&table, keys::WINDOW, "to", "to = \"16:00\"")?)?;
            if from == to {
                return Err(table.error("a window from a time to the same time is empty"));
            }
            keys::finish(&table, keys::WINDOW)?;
            Ok(Window { days, from, to })
        })
        .collect()
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// "Mon-Fri", "Sat,Sun", "Mon-Wed,Fri".
fn parse_days(item: &Item<'_>) -> Result<[bool; 7], FileError> {
    let text = item.str()?;
    let day = |name: &str| {
        DAY_NAMES.iter().position(|d| name.trim().eq_ignore_ascii_case(d)).ok_or_else(|| {
            item.error(format!(
                "\"{}\" is not a day: use Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges (Mon-Fri) and commas",
                name.trim()
            ))
        })
    };
    let mut days = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                let mut d = first;
                loop {
                    days[d] = true;
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

/// "HH:MM" or "HH:MM:SS" (24:00 is the end of the day), as seconds of the day.
fn parse_time_of_day(item: &Item<'_>) -> Result<u32, FileError> {
    let text = item.str()?;
    let parts: Vec<Option<u32>> = text.split(':').map(|p| p.parse().ok()).collect();
    let seconds = match parts.as_slice() {
        [Some(h), Some(m)] => Some((*h, *m, 0)),
        [Some(h), Some(m), Some(s)] => Some((*h, *m, *s)),
        _ => None,
    }
    .filter(|&(h, m, s)| (h < 24 && m < 60 && s < 60) || (h == 24 && m == 0 && s == 0))
    .map(|(h, m, s)| h * 3600 + m * 60 + s);
    seconds.ok_or_else(|| item.error(format!("\"{text}\" is not a time of day: HH:MM or HH:MM:SS, e.g. \"16:00\"")))
}

fn parse_budget(item: &Item<'_>) -> Result<Budget, FileError> {
    let table = item.table("[budget]")?;
    let get = |key| keys::get(&table, keys::BUDGET, key);
    let max_runs_per_hour = get("max_runs_per_hour").map(|i| i.integer::<u32>("1 to 100000")).transpose()?;
    let max_concurrent = get("max_concurrent").map(|i| i.integer::<usize>("1 to 1000")).transpose()?;
    let min_gap_per_target = get("min_gap_per_target").map(|i| i.duration_or_zero()).transpose()?;
    let max_share = get("max_share").map(|i| i.percent()).transpose()?.map(|share| f64::from(share.get()) / 1e6);
    for (key, is_zero) in [
        ("max_runs_per_hour", max_runs_per_hour == Some(0)),
        ("max_concurrent", max_concurrent == Some(0)),
        ("max_share", max_share == Some(0.0)),
    ] {
        if is_zero && let Some(item) = get(key) {
            return Err(item.error("0 would never run anything: remove the experiment instead"));
        }
    }
    keys::finish(&table, keys::BUDGET)?;
    Ok(Budget {
        max_runs_per_hour: max_runs_per_hour.unwrap_or(6),
        max_concurrent: max_concurrent.unwrap_or(1),
        min_gap_per_target: min_gap_per_target.unwrap_or_default(),
        max_share: max_share.unwrap_or(1.0),
    })
}

/// One `[[experiment]]`: a file, or a directory of them (each `*.toml`), with a weight and a
/// selector shared by all.
fn parse_entry(table: &Table<'_>, base: &Path, kubernetes: &Kubernetes) -> Result<Vec<CatalogueEntry>, FileError> {
    let file_item = keys::require(table, keys::EXPERIMENT, "file", "file = \"latency.toml\"")?;
    let path = base.join(file_item.str()?);
    let weight = match keys::get(table, keys::EXPERIMENT, "weight") {
        Some(item) => item.integer::<u32>("1 to 1000000")?,
        None => 1,
    };
    let selector = match keys::get(table, keys::EXPERIMENT, "targets") {
        Some(item) => Some(selector::parse_selector(&item, kubernetes)?),
        None => None,
    };
    let follow = match keys::get(table, keys::EXPERIMENT, "follow") {
        Some(item) => {
            let follow = item.bool()?;
            if follow && !matches!(selector, Some(Selector::ContainerName(_) | Selector::Pods(_))) {
                return Err(item.error(
                    "`follow = true` re-resolves a name: it needs `targets = { container_name = \"...\" }` or \
                     `targets = { pods = \"...\" }` (a cgroup, unit or id glob names no container to find again)",
                ));
            }
            follow
        }
        None => false,
    };
    keys::finish(table, keys::EXPERIMENT)?;
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| file_item.error(format!("cannot read the directory {}: {e}", path.display())))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(file_item.error(format!("{} holds no experiment file (*.toml)", path.display())));
        }
        files
    } else if path.exists() {
        vec![path]
    } else {
        return Err(file_item.error(format!("{} does not exist", path.display())));
    };
    files
        .into_iter()
        .map(|file| {
            let experiment = file::load(&file, false)?;
            Ok(CatalogueEntry {
                name: experiment.name.clone(),
                file,
                weight,
                selector: selector.clone(),
                follow,
                experiment,
            })
        })
        .collect()
}

mod keys;
mod selector;
#[cfg(test)]
mod tests;

pub use self::selector::{Kubernetes, PodSelector, Selector};
