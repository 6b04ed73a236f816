//! The evidence of a limit, read from the target's own files: how much it ran, waited and was
//! refused, before, during and after. A [`Snapshot`] is the files at one moment; a [`Window`]
//! is what the kernel counted between two snapshots: CPU used (`cpu.stat` usage_usec),
//! throttled periods and time, the pressure each resource put on the target (PSI "some": the
//! share of the time some task of it waited, both the kernel's avg10 at the end and the exact
//! share of the window from the `total` counters), memory in use, `memory.events` high and
//! oom_kill, `io.stat` bytes and operations on the limited disk, tasks and refused forks.
//! A missing file (a controller not enabled for the target) gives no figure, never a zero.
use std::{fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};

use super::{Resource, amounts::format_bytes};
use crate::os::{
    cgroup_files::stats::{
        IoStat, Pressure, {self},
    },
    sys,
};

/// The target's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at_ns: u64,
    pub cpu_usage_us: Option<u64>,
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_us: Option<u64>,
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
    pub memory_current: Option<u64>,
    pub memory_high: Option<u64>,
    pub memory_max: Option<u64>,
    pub oom_kill: Option<u64>,
    pub io_stat: Option<IoStat>,
    pub pids_current: Option<u64>,
    pub pids_max: Option<u64>,
}

impl Snapshot {
    /// The files of the cgroup `dir` now; `device` (`MAJ:MIN`) picks the io.stat line, every
    /// device summed when None.
    #[must_use]
    pub fn read(dir: &Path, device: Option<&str>) -> Self {
        let cpu = stats::keyed(dir, "cpu.stat");
        let memory = stats::keyed(dir, "memory.events");
        let pids = stats::keyed(dir, "pids.events");
        Self {
            at_ns: sys::monotonic_now_ns(),
            cpu_usage_us: cpu.get("usage_usec").copied(),
            nr_periods: cpu.get("nr_periods").copied(),
            nr_throttled: cpu.get("nr_throttled").copied(),
            throttled_us: cpu.get("throttled_usec").copied(),
            cpu: stats::pressure_some(dir, "cpu"),
            memory: stats::pressure_some(dir, "memory"),
            io: stats::pressure_some(dir, "io"),
            memory_current: stats::number(dir, "memory.current"),
            memory_high: memory.get("high").copied(),
            memory_max: memory.get("max").copied(),
            oom_kill: memory.get("oom_kill").copied(),
            io_stat: stats::io_stat(dir, device),
            pids_current: stats::number(dir, "pids.current"),
            pids_max: pids.get("max").copied(),
        }
    }
}

/// The pressure of one resource over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stall {
    /// The kernel's 10 s average at the end of the window, in %.
    pub avg10: f64,
    /// The share of the window some task of the target waited, in % (from the `total` counter).
    pub share: f64,
}

/// The pressure of the three resources over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stalls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Stall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Stall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<Stall>,
}

impl Stalls {
    /// The pressure of `resource`'s kind (pids have none: their refusals are counted instead).
    #[must_use]
    pub const fn of(&self, resource: Resource) -> Option<Stall> {
        match resource {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Io => self.io,
            Resource::Pids => None,
        }
    }
}

/// What the kernel counted for the target between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub seconds: f64,
    /// CPUs used on average (0.25 is a quarter of one CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_used: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periods: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_periods: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_ms: Option<f64>,
    pub pressure: Stalls,
    /// memory.current at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_current: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kills: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<u64>,
    /// pids.current at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forks_refused: Option<u64>,
}

fn delta(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

fn stall(a: Option<Pressure>, b: Option<Pressure>, seconds: f64) -> Option<Stall> {
    let (a, b) = (a?, b?);
    let share = if seconds > 0.0 { b.total_us.saturating_sub(a.total_us) as f64 / 1e4 / seconds } else { 0.0 };
    Some(Stall { avg10: b.avg10, share: share.min(100.0) })
}

impl Window {
    /// What changed from `a` to `b`.
    #[must_use]
    pub fn between(a: &Snapshot, b: &Snapshot) -> Self {
        let seconds = b.at_ns.saturating_sub(a.at_ns) as f64 / 1e9;
        let per = |us: Option<u64>| us.map(|us| if seconds > 0.0 { us as f64 / 1e6 / seconds } else { 0.0 });
        let io = |field: fn(&IoStat) -> u64| Some(field(&b.io_stat?).saturating_sub(field(&a.io_stat?)));
        Self {
            seconds,
            cpu_used: per(delta(a.cpu_usage_us, b.cpu_usage_us)),
            periods: delta(a.nr_periods, b.nr_periods),
            throttled_periods: delta(a.nr_throttled, b.nr_throttled),
            throttled_ms: delta(a.throttled_us, b.throttled_us).map(|us| us as f64 / 1e3),
            pressure: Stalls {
                cpu: stall(a.cpu, b.cpu, seconds),
                memory: stall(a.memory, b.memory, seconds),
                io: stall(a.io, b.io, seconds),
            },
            memory_current: b.memory_current,
            memory_high_events: delta(a.memory_high, b.memory_high),
            memory_max_events: delta(a.memory_max, b.memory_max),
            oom_kills: delta(a.oom_kill, b.oom_kill),
            read_bytes: io(|s| s.rbytes),
            written_bytes: io(|s| s.wbytes),
            reads: io(|s| s.rios),
            writes: io(|s| s.wios),
            tasks: b.pids_current,
            forks_refused: delta(a.pids_max, b.pids_max),
        }
    }

    /// Consecutive windows as one: counts added, averages weighted by length, levels (memory
    /// in use, tasks, avg10) as the last window ends.
    #[must_use]
    pub fn merged(windows: &[Self]) -> Self {
        let seconds: f64 = windows.iter().map(|w| w.seconds).sum();
        let sum = |pick: fn(&Self) -> Option<u64>| {
            windows.iter().map(pick).fold(None, |total: Option<u64>, n| match (total, n) {
                (Some(t), Some(n)) => Some(t + n),
                (t, n) => t.or(n),
            })
        };
        let weighted = |pick: &dyn Fn(&Self) -> Option<f64>| {
            let (mut total, mut length) = (0.0, 0.0);
            for w in windows {
                if let Some(value) = pick(w) {
                    total += value * w.seconds;
                    length += w.seconds;
                }
            }
            (length > 0.0).then(|| total / length)
        };
        let last = windows.last().copied().unwrap_or_default();
        let stall = |pick: fn(&Stalls) -> Option<Stall>| {
            Some(Stall {
                avg10: pick(&last.pressure)?.avg10,
                share: weighted(&|w| pick(&w.pressure).map(|s| s.share))?,
            })
        };
        Self {
            seconds,
            cpu_used: weighted(&|w| w.cpu_used),
            periods: sum(|w| w.periods),
            throttled_periods: sum(|w| w.throttled_periods),
            throttled_ms: weighted(&|w| w.throttled_ms.map(|ms| ms / w.seconds.max(1e-9))).map(|per| per * seconds),
            pressure: Stalls { cpu: stall(|s| s.cpu), memory: stall(|s| s.memory), io: stall(|s| s.io) },
            memory_current: last.memory_current,
            memory_high_events: sum(|w| w.memory_high_events),
            memory_max_events: sum(|w| w.memory_max_events),
            oom_kills: sum(|w| w.oom_kills),
            read_bytes: sum(|w| w.read_bytes),
            written_bytes: sum(|w| w.written_bytes),
            reads: sum(|w| w.reads),
            writes: sum(|w| w.writes),
            tasks: last.tasks,
            forks_refused: sum(|w| w.forks_refused),
        }
    }

    /// How many times the kernel enforced a limit of `resource` in the window: throttled
    /// periods, memory.high events plus OOM kills, milliseconds the target stalled on I/O,
    /// refused forks.
    #[must_use]
    pub fn enforced(&self, resource: Resource) -> u64 {
        match resource {
            Resource::Cpu => self.throttled_periods.unwrap_or(0),
            Resource::Memory => self.memory_high_events.unwrap_or(0) + self.oom_kills.unwrap_or(0),
            Resource::Io => self.pressure.io.map_or(0, |io| (io.share / 100.0 * self.seconds * 1000.0).round() as u64),
            Resource::Pids => self.forks_refused.unwrap_or(0),
        }
    }

    /// The figures that matter for `resource`, on one line (the live line, timeline summaries).
    #[must_use]
    pub fn line(&self, resource: Resource) -> String {
        let mut parts = Vec::new();
        let rate = |n: Option<u64>| n.map(|n| n as f64 / self.seconds.max(1e-9));
        match resource {
            Resource::Cpu => {
                if let Some(used) = self.cpu_used {
                    parts.push(format!("used {used:.2} CPU"));
                }
                if let (Some(throttled), Some(periods)) = (self.throttled_periods, self.periods) {
                    parts.push(format!("throttled {throttled}/{periods} periods"));
                }
            }
            Resource::Memory => {
                if let Some(current) = self.memory_current {
                    parts.push(format!("memory {}", format_bytes(current)));
                }
                if let Some(high) = self.memory_high_events {
                    parts.push(format!("high events +{high}"));
                }
                if let Some(kills) = self.oom_kills.filter(|&k| k > 0) {
                    parts.push(format!("OOM kills +{kills}"));
                }
            }
            Resource::Io => {
                if let (Some(read), Some(written)) = (rate(self.read_bytes), rate(self.written_bytes)) {
                    parts.push(format!(
                        "read {}/s, wrote {}/s",
                        format_bytes(read as u64),
                        format_bytes(written as u64)
                    ));
                }
                if let (Some(reads), Some(writes)) = (rate(self.reads), rate(self.writes)) {
                    parts.push(format!("{reads:.0} reads/s, {writes:.0} writes/s"));
                }
            }
            Resource::Pids => {
                if let Some(tasks) = self.tasks {
                    parts.push(format!("{tasks} tasks"));
                }
                if let Some(refused) = self.forks_refused {
                    parts.push(format!("forks refused +{refused}"));
                }
            }
        }
        if let Some(stall) = self.pressure.of(resource) {
            parts.push(format!("{} pressure {:.1}% (avg10 {:.1})", resource.controller(), stall.share, stall.avg10));
        }
        parts.join(", ")
    }
}

/// A row of the evidence table: its name, and its cell for a window (None: no figure).
type Row<'a> = (&'a str, Box<dyn Fn(&Window) -> Option<String>>);

/// The evidence of a whole run: before the limit, while it held, after it was lifted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Window>,
}

impl Evidence {
    /// A table for people: one row per figure of `resource`, one column per window.
    #[must_use]
    pub fn table(&self, resource: Resource) -> String {
        let windows = [("before", self.before), ("during", self.during), ("after", self.after)];
        let mut rows: Vec<Row<'_>> = Vec::new();
        let secs = |w: &Window| w.seconds.max(1e-9);
        match resource {
            Resource::Cpu => {
                rows.push(("CPU used", Box::new(|w: &Window| w.cpu_used.map(|c| format!("{c:.2} CPU")))));
                rows.push((
                    "throttled periods",
                    Box::new(|w: &Window| Some(format!("{}/{}", w.throttled_periods?, w.periods?))),
                ));
                rows.push(("throttled time", Box::new(|w: &Window| w.throttled_ms.map(|ms| format!("{ms:.0} ms")))));
            }
            Resource::Memory => {
                rows.push(("memory.current", Box::new(|w: &Window| w.memory_current.map(format_bytes))));
                rows.push(("memory.events high", Box::new(|w: &Window| w.memory_high_events.map(|n| format!("+{n}")))));
                rows.push(("memory.events max", Box::new(|w: &Window| w.memory_max_events.map(|n| format!("+{n}")))));
                rows.push(("OOM kills", Box::new(|w: &Window| w.oom_kills.map(|n| format!("+{n}")))));
            }
            Resource::Io => {
                rows.push((
                    "read",
                    Box::new(move |w: &Window| {
                        Some(format!("{}/s", format_bytes((w.read_bytes? as f64 / secs(w)) as u64)))
                    }),
                ));
                rows.push((
                    "written",
                    Box::new(move |w: &Window| {
                        Some(format!("{}/s", format_bytes((w.written_bytes? as f64 / secs(w)) as u64)))
                    }),
                ));
                rows.push(("reads", Box::new(move |w: &Window| Some(format!("{:.1}/s", w.reads? as f64 / secs(w))))));
                rows.push(("writes", Box::new(move |w: &Window| Some(format!("{:.1}/s", w.writes? as f64 / secs(w))))));
            }
            Resource::Pids => {
                rows.push(("tasks", Box::new(|w: &Window| w.tasks.map(|n| n.to_string()))));
                rows.push(("forks refused", Box::new(|w: &Window| w.forks_refused.map(|n| format!("+{n}")))));
            }
        }
        for (name, pick) in [
            ("cpu", (|s: &Stalls| s.cpu) as fn(&Stalls) -> Option<Stall>),
            ("memory", |s: &Stalls| s.memory),
            ("io", |s: &Stalls| s.io),
        ] {
            let label = match name {
                "cpu" => "cpu pressure (some)",
                "memory" => "memory pressure (some)",
                _ => "io pressure (some)",
            };
            rows.push((
                label,
                Box::new(move |w: &Window| pick(&w.pressure).map(|s| format!("{:.1}% avg10 {:.1}", s.share, s.avg10))),
            ));
        }
        let mut out = String::new();
        let _ = writeln!(out, "  {:<24} {:>22} {:>22} {:>22}", "", "before", "during", "after");
        for (name, pick) in &rows {
            let cells: Vec<String> =
                windows.iter().map(|(_, w)| w.as_ref().and_then(pick).unwrap_or_else(|| "-".to_owned())).collect();
            if cells.iter().all(|c| c == "-") {
                continue;
            }
            let _ = writeln!(out, "  {name:<24} {:>22} {:>22} {:>22}", cells[0], cells[1], cells[2]);
        }
        let lengths: Vec<String> = windows
            .iter()
            .map(|(name, w)| w.map_or_else(|| format!("{name} -"), |w| format!("{name} {:.1}s", w.seconds)))
            .collect();
        let _ = writeln!(out, "  (windows: {})", lengths.join(", "));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_what_changed_and_keeps_what_is_missing_missing() {
        let a = Snapshot {
            at_ns: 0,
            cpu_usage_us: Some(1_000_000),
            nr_periods: Some(10),
            nr_throttled: Some(2),
            cpu: Some(Pressure { avg10: 1.0, avg60: 0.0, total_us: 0 }),
            ..Snapshot::default()
        };
        let b = Snapshot {
            at_ns: 2_000_000_000,
            cpu_usage_us: Some(1_500_000),
            nr_periods: Some(30),
            nr_throttled: Some(20),
            cpu: Some(Pressure { avg10: 60.0, avg60: 0.0, total_us: 1_500_000 }),
            ..Snapshot::default()
        };
        let w = Window::between(&a, &b);
        assert_eq!(w.cpu_used, Some(0.25));
        assert_eq!((w.throttled_periods, w.periods), (Some(18), Some(20)));
        assert_eq!(w.pressure.cpu, Some(Stall { avg10: 60.0, share: 75.0 }));
        assert_eq!(w.memory_high_events, None, "no memory controller: no figure, not zero");
        assert_eq!(w.enforced(Resource::Cpu), 18);
        assert!(w.line(Resource::Cpu).contains("used 0.25 CPU, throttled 18/20 periods, cpu pressure 75.0%"));
        let table = Evidence { during: Some(w), ..Evidence::default() }.table(Resource::Cpu);
        assert!(table.contains("0.25 CPU"), "{table}");
        assert!(!table.contains("memory pressure"), "{table}");
    }
}
