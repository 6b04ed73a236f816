//! What a limit writes, and how each value is worked out from the target's own files at the
//! moment it is written: `cpu.max` keeps the target's period (`QUOTA PERIOD`), a memory
//! percentage is of the target's `memory.max` (or its current usage when it has none, never
//! the node's memory), an `io.max` line keeps the keys the user did not name (a read limit
//! kubelet set stays when chaos adds a write limit).
use std::path::Path;

use serde::Serialize;

use super::amounts::{CpuShare, MemoryAmount, format_bytes};
use crate::{
    os::cgroup_files::{Knob, stats},
    plan::options::Ppm,
};

/// cpu.max's period when the file does not say (the kernel's default, 100 ms).
const DEFAULT_PERIOD_US: u64 = 100_000;

/// The kernel's smallest quota per period.
const MIN_QUOTA_US: u64 = 1_000;

/// One file a limit writes, and with what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "file")]
pub enum Setting {
    #[serde(rename = "cpu.max")]
    CpuMax { share: CpuShare },
    #[serde(rename = "memory.high")]
    MemoryHigh { amount: MemoryAmount },
    #[serde(rename = "memory.max")]
    MemoryMax { amount: MemoryAmount },
    #[serde(rename = "io.max")]
    IoMax {
        device: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        rbps: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        wbps: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        riops: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        wiops: Option<u64>,
    },
    #[serde(rename = "pids.max")]
    PidsMax { max: u64 },
}

/// One write, worked out: the file, its value now, the value to write, and how that value was
/// reached when it is not what the user typed.
#[derive(Clone, Debug, Serialize)]
pub struct Write {
    #[serde(flatten)]
    pub knob: Knob,
    pub now: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What memory percentages are of, read once when a limit starts (so the steps of a ramp are
/// shares of the same amount, not of a usage the limit itself shrinks).
#[derive(Clone, Debug, Default)]
pub struct Basis {
    /// (bytes, words): `memory.max 512 MiB` or `current usage 300 MiB`.
    pub memory: Option<(u64, String)>,
}

impl Basis {
    /// The target's memory.max, or its current usage when memory.max is `max`.
    #[must_use]
    pub fn read(dir: &Path) -> Self {
        let limit = stats::number(dir, "memory.max");
        let memory = match limit {
            Some(bytes) => Some((bytes, format!("memory.max {}", format_bytes(bytes)))),
            None => stats::number(dir, "memory.current")
                .filter(|&bytes| bytes > 0)
                .map(|bytes| (bytes, format!("current usage {} (memory.max is max)", format_bytes(bytes)))),
        };
        Self { memory }
    }
}

impl Setting {
    /// The file (or io.max line) it writes in the cgroup directory `dir`.
    #[must_use]
    pub fn knob(&self, dir: &Path) -> Knob {
        match self {
            Self::CpuMax { .. } => Knob::file(dir, "cpu.max"),
            Self::MemoryHigh { .. } => Knob::file(dir, "memory.high"),
            Self::MemoryMax { .. } => Knob::file(dir, "memory.max"),
            Self::IoMax { device, .. } => Knob::io_max(dir, device),
            Self::PidsMax { .. } => Knob::file(dir, "pids.max"),
        }
    }

    /// The amount a ramp moves, in parts per million (of one CPU, or of the memory basis), when
    /// it has one: a CPU share up to one CPU, a memory percentage.
    #[must_use]
    pub fn ppm(&self) -> Option<Ppm> {
        match self {
            Self::CpuMax { share } if share.0 <= 1_000_000 => Some(Ppm::from_ppm(share.0 as u32)),
            Self::MemoryHigh { amount: MemoryAmount::Percent(ppm) }
            | Self::MemoryMax { amount: MemoryAmount::Percent(ppm) } => Some(*ppm),
            _ => None,
        }
    }

    /// The same setting at a ramp's step `ppm`.
    #[must_use]
    pub fn at_ppm(&self, ppm: u32) -> Self {
        let ppm = ppm.max(1);
        match self {
            Self::CpuMax { .. } => Self::CpuMax { share: CpuShare(u64::from(ppm)) },
            Self::MemoryHigh { amount: MemoryAmount::Percent(_) } => {
                Self::MemoryHigh { amount: MemoryAmount::Percent(Ppm::from_ppm(ppm)) }
            }
            Self::MemoryMax { amount: MemoryAmount::Percent(_) } => {
                Self::MemoryMax { amount: MemoryAmount::Percent(Ppm::from_ppm(ppm)) }
            }
            other => other.clone(),
        }
    }

    /// The value to write, given the file's value `now` and the memory `basis`; with a note
    /// saying how it was reached when that is not plain.
    pub fn value(&self, now: &str, basis: &Basis) -> Result<(String, Option<String>), String> {
        match self {
            Self::CpuMax { share } => {
                let period = now.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PERIOD_US);
                let quota = (u128::from(share.0) * u128::from(period) / 1_000_000) as u64;
                let quota = quota.max(MIN_QUOTA_US);
                Ok((format!("{quota} {period}"), Some(format!("{share}: {quota} us of every {period} us period"))))
            }
            Self::MemoryHigh { amount } | Self::MemoryMax { amount } => {
                let (bytes, note) = match amount {
                    MemoryAmount::Bytes(bytes) => (*bytes, None),
                    MemoryAmount::Percent(ppm) => {
                        let Some((of, words)) = &basis.memory else {
                            return Err(format!(
                                "{ppm} of what: the target has no memory.max and uses no memory now; give a size \
                                 (e.g. 100M)"
                            ));
                        };
                        let bytes = (u128::from(*of) * u128::from(ppm.get()) / 1_000_000) as u64;
                        (bytes, Some(format!("{ppm} of {words}")))
                    }
                };
                let page = page_size();
                let bytes = (bytes / page * page).max(page);
                Ok((bytes.to_string(), note.map(|n| format!("{n} = {}", format_bytes(bytes)))))
            }
            Self::IoMax { rbps, wbps, riops, wiops, .. } => {
                let asked = [("rbps", rbps), ("wbps", wbps), ("riops", riops), ("wiops", wiops)];
                let value = asked
                    .iter()
                    .map(|(key, asked)| {
                        let kept = now.split_whitespace().find_map(|p| p.strip_prefix(key)?.strip_prefix('='));
                        let value = asked.map_or_else(|| kept.unwrap_or("max").to_owned(), |v| v.to_string());
                        format!("{key}={value}")
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                Ok((value, None))
            }
            Self::PidsMax { max } => Ok((max.to_string(), None)),
        }
    }
}

/// What `settings` would write in `dir` now: the `--dry-run`'s files, values now and values to
/// write.
pub fn preview(settings: &[Setting], dir: &Path) -> Result<Vec<Write>, String> {
    let basis = Basis::read(dir);
    settings
        .iter()
        .map(|setting| {
            let knob = setting.knob(dir);
            let now = knob.read().map_err(|e| format!("reading {}: {e}", knob.file.display()))?;
            let (value, note) = setting.value(&now, &basis)?;
            Ok(Write { knob, now, value, note })
        })
        .collect()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_keeps_the_period_the_target_has() {
        let quarter = Setting::CpuMax { share: CpuShare(250_000) };
        assert_eq!(quarter.value("max 100000", &Basis::default()).unwrap().0, "25000 100000");
        assert_eq!(quarter.value("max 50000", &Basis::default()).unwrap().0, "12500 50000");
        let two = Setting::CpuMax { share: CpuShare(2_000_000) };
        assert_eq!(two.value("max 100000", &Basis::default()).unwrap().0, "200000 100000");
    }

    #[test]
    fn memory_percentages_are_of_the_targets_own_basis() {
        let basis = Basis { memory: Some((400 << 20, "memory.max 400 MiB".into())) };
        let half = Setting::MemoryHigh { amount: MemoryAmount::Percent(Ppm::from_ppm(500_000)) };
        let (value, note) = half.value("max", &basis).unwrap();
        assert_eq!(value, (200u64 << 20).to_string());
        assert!(note.unwrap().contains("of memory.max 400 MiB"));
        assert!(half.value("max", &Basis::default()).unwrap_err().contains("of what"));
        let bytes = Setting::MemoryHigh { amount: MemoryAmount::Bytes((100 << 20) + 5) };
        assert_eq!(bytes.value("max", &Basis::default()).unwrap().0, (100u64 << 20).to_string(), "whole pages");
    }

    #[test]
    fn io_max_keeps_the_keys_it_was_not_asked_to_change() {
        let write = Setting::IoMax { device: "254:0".into(), rbps: None, wbps: None, riops: None, wiops: Some(20) };
        let (value, _) = write.value("rbps=1048576 wbps=max riops=max wiops=max", &Basis::default()).unwrap();
        assert_eq!(value, "rbps=1048576 wbps=max riops=max wiops=20");
    }

    #[test]
    fn ramps_move_cpu_shares_and_memory_percentages_only() {
        assert_eq!(Setting::CpuMax { share: CpuShare(250_000) }.ppm(), Some(Ppm::from_ppm(250_000)));
        assert_eq!(Setting::CpuMax { share: CpuShare(1_500_000) }.ppm(), None);
        assert_eq!(Setting::PidsMax { max: 5 }.ppm(), None);
        assert_eq!(
            Setting::CpuMax { share: CpuShare(250_000) }.at_ppm(800_000),
            Setting::CpuMax { share: CpuShare(800_000) }
        );
    }
}
