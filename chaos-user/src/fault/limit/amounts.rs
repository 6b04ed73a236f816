//! The amounts `chaos limit` takes, parsed and checked before anything is read or written: a
//! CPU share (`25%` of one CPU, `1.5` CPUs, `250m` millicores), a memory size (`200M`, `1G`,
//! `50%`), a disk rate (`10M` a second) and plain counts. Each parser returns the whole
//! explanation, so clap prints "invalid value '0' for '--to <SHARE>': ..." and experiment files
//! say the same at file:line:column.
//!
//! Sizes follow the kernel's own notation for these files (`memparse`, as systemd's
//! `MemoryHigh=200M`): K, M, G, T are powers of 1024, with or without `i`/`iB`/`B`.
use std::fmt;

use serde::Serialize;

use crate::plan::options::{Ppm, parse_percent};

/// The kernel's smallest CPU quota per period (1 ms), at the default period of 100 ms: 1 % of a
/// CPU. cpu.max refuses less.
pub const MIN_CPU_SHARE: u64 = 10_000;

/// A CPU share in millionths of one CPU: 250 000 is a quarter of a CPU, 1 500 000 one and a half.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct CpuShare(pub u64);

impl CpuShare {
    /// The share as a fraction of one CPU (0.25).
    #[must_use]
    pub fn cpus(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl fmt::Display for CpuShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 <= 1_000_000 {
            write!(f, "{}% of a CPU", trim(self.0 as f64 / 10_000.0))
        } else {
            write!(f, "{} CPUs", trim(self.cpus()))
        }
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The CPUs this machine has online: a share above them could never be used.
#[must_use]
pub fn online_cpus() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(online).unwrap_or(1).max(1)
}

/// `--to`: `25%` (of one CPU), `1.5` (CPUs), `250m` (millicores, as Kubernetes writes them).
pub fn parse_cpu_share(text: &str) -> Result<CpuShare, String> {
    let trimmed = text.trim();
    let bad = || {
        format!(
            "'{text}' is not a CPU share: give a percentage of one CPU (25%), a number of CPUs (1.5) or millicores \
             (250m)"
        )
    };
    let millionths = if let Some(percent) = trimmed.strip_suffix('%') {
        decimal_millionths(percent.trim(), 4).ok_or_else(bad)? / 100
    } else if let Some(milli) = trimmed.strip_suffix('m') {
        decimal_millionths(milli.trim(), 3).ok_or_else(bad)? / 1000
    } else {
        decimal_millionths(trimmed, 6).ok_or_else(bad)?
    };
    if millionths == 0 {
        return Err(format!(
            "'{text}' is zero: a target with no CPU at all does not run (that is `chaos proc pause`); give a share, \
             e.g. 25%"
        ));
    }
    if millionths < MIN_CPU_SHARE {
        return Err(format!("'{text}' is below 1% of a CPU, the least cpu.max allows (1 ms of every 100 ms period)"));
    }
    let cpus = online_cpus();
    if millionths > cpus * 1_000_000 {
        return Err(format!(
            "'{text}' is {} CPUs, more than the {cpus} this machine has online: the target could never use that \
             much, so nothing would be starved; give at most {}%",
            trim(millionths as f64 / 1e6),
            cpus * 100
        ));
    }
    Ok(CpuShare(millionths))
}

/// A non-negative decimal with at most `places` decimals, times 10^6 (`"1.5"` -> 1 500 000).
fn decimal_millionths(text: &str, places: usize) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > places
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac: u64 = format!("{frac:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

/// A memory amount: bytes, or a share of the target's own limit (memory.max) or, when it has
/// none, of its current usage. Never of the node's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryAmount {
    Bytes(u64),
    Percent(Ppm),
}

impl fmt::Display for MemoryAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(bytes) => f.write_str(&format_bytes(*bytes)),
            Self::Percent(ppm) => write!(f, "{ppm} of the target's memory.max (or current usage)"),
        }
    }
}

/// `--high` / `--max` of `limit memory`: `200M`, `1G`, `512Ki`, `1048576`, `50%`.
pub fn parse_memory(text: &str) -> Result<MemoryAmount, String> {
    let trimmed = text.trim();
    if let Some(percent) = trimmed.strip_suffix('%') {
        let ppm = parse_percent(percent)?;
        if ppm == Ppm::ZERO {
            return Err(format!(
                "'{text}' is zero: the kernel would reclaim everything the target has at once; give a share, e.g. 50%"
            ));
        }
        return Ok(MemoryAmount::Percent(ppm));
    }
    let bytes = parse_bytes(trimmed).ok_or_else(|| {
        format!("'{text}' is not a memory size: give bytes with a unit (200M, 1G, 512K: powers of 1024) or a percentage of the target's own limit (50%)")
    })?;
    if bytes == 0 {
        return Err(format!(
            "'{text}' is zero: the kernel would reclaim everything the target has at once; give a size, e.g. 100M"
        ));
    }
    Ok(MemoryAmount::Bytes(bytes))
}

/// `--read-bps` / `--write-bps`: bytes a second, `10M`, `512K`, `1048576` (an optional `/s`).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let number = trimmed.strip_suffix("/s").unwrap_or(trimmed);
    let bytes = parse_bytes(number.trim()).ok_or_else(|| {
        format!("'{text}' is not a rate: give bytes a second with a unit, e.g. 10M or 512K (powers of 1024)")
    })?;
    if bytes == 0 {
        return Err(format!(
            "'{text}' is zero: no disk I/O at all would hang the target's writers for good; give a rate, e.g. 1M \
             (to stop the target, use `chaos proc pause`)"
        ));
    }
    Ok(bytes)
}

/// `--read-iops`, `--write-iops`, `limit pids --max`: a whole number, at least 1.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let count: u64 = text.trim().parse().map_err(|_| format!("'{text}' is not a whole number, e.g. 20"))?;
    if count == 0 {
        return Err(format!("'{text}' is zero: nothing could get through at all; give 1 or more"));
    }
    Ok(count)
}

/// `limit pids --max`: at least 1.
pub fn parse_pids_max(text: &str) -> Result<u64, String> {
    let max: u64 = text.trim().parse().map_err(|_| format!("'{text}' is not a whole number of tasks, e.g. 50"))?;
    if max == 0 {
        return Err(format!(
            "'{text}' is zero: every fork would fail and the target could not even restart a process; give 1 or more"
        ));
    }
    Ok(max)
}

/// Bytes with an optional binary unit: `200M`, `200MiB`, `200MB`, `1g`, `4096`.
fn parse_bytes(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit =
        unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).or_else(|| unit.strip_suffix('i')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// `100 MiB`, `1.5 GiB`, `512 KiB`, `100 B`.
#[must_use]
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{} {unit}", trim(bytes as f64 / size as f64));
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_parse_in_every_notation() {
        assert_eq!(parse_cpu_share("25%"), Ok(CpuShare(250_000)));
        assert_eq!(parse_cpu_share("12.5%"), Ok(CpuShare(125_000)));
        assert_eq!(parse_cpu_share("250m"), Ok(CpuShare(250_000)));
        assert_eq!(parse_cpu_share("0.25"), Ok(CpuShare(250_000)));
        assert_eq!(parse_cpu_share("1"), Ok(CpuShare(1_000_000)));
        assert_eq!(CpuShare(250_000).to_string(), "25% of a CPU");
        assert_eq!(CpuShare(1_000_000).to_string(), "100% of a CPU");
    }

    #[test]
    fn bad_cpu_shares_say_why() {
        let over = format!("{}%", (online_cpus() + 1) * 100);
        for (input, expected) in [
            ("0", "is zero"),
            ("0%", "is zero"),
            ("0.5%", "below 1% of a CPU"),
            (over.as_str(), "more than the"),
            ("abc", "is not a CPU share"),
            ("-5%", "is not a CPU share"),
            ("", "is not a CPU share"),
        ] {
            let err = parse_cpu_share(input).expect_err(input);
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn memory_sizes_follow_the_kernel_notation() {
        assert_eq!(parse_memory("100M"), Ok(MemoryAmount::Bytes(100 << 20)));
        assert_eq!(parse_memory("100MiB"), Ok(MemoryAmount::Bytes(100 << 20)));
        assert_eq!(parse_memory("1g"), Ok(MemoryAmount::Bytes(1 << 30)));
        assert_eq!(parse_memory("4096"), Ok(MemoryAmount::Bytes(4096)));
        assert_eq!(parse_memory("50%"), Ok(MemoryAmount::Percent(Ppm::from_ppm(500_000))));
        for (input, expected) in [
            ("0", "is zero"),
            ("0%", "is zero"),
            ("100X", "not a memory size"),
            ("lots", "not a memory size"),
            ("101%", "over 100"),
        ] {
            let err = parse_memory(input).expect_err(input);
            assert!(err.contains(expected), "{input:?}: {err}");
        }
        assert_eq!(format_bytes(100 << 20), "100 MiB");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
    }

    #[test]
    fn rates_and_counts_are_positive() {
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("512K/s"), Ok(512 << 10));
        assert!(parse_rate("0").unwrap_err().contains("is zero"));
        assert_eq!(parse_count("20"), Ok(20));
        assert!(parse_count("0").unwrap_err().contains("is zero"));
        assert!(parse_count("x").unwrap_err().contains("whole number"));
    }
}
