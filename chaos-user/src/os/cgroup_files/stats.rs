//! The statistics a cgroup's controllers keep, as the kernel writes them: pressure stall
//! information (`cpu.pressure`, `memory.pressure`, `io.pressure`), flat keyed files
//! (`cpu.stat`, `memory.events`, `pids.events`...) and `io.stat`. Reading them changes nothing.
use std::{collections::BTreeMap, fs, path::Path};

use serde::{Deserialize, Serialize};

/// One line of a pressure file (`some avg10=1.23 avg60=.. avg300=.. total=US`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// Share of the last 10 s in which some task of the cgroup waited for the resource, in %.
    pub avg10: f64,
    pub avg60: f64,
    /// Microseconds some task waited, in all (for exact deltas between two reads).
    pub total_us: u64,
}

/// The `some` line of `<dir>/<resource>.pressure` (`cpu`, `memory`, `io`); None when the file
/// is missing (no PSI, or the root cgroup before 5.2's per-cgroup PSI).
#[must_use]
pub fn pressure_some(dir: &Path, resource: &str) -> Option<Pressure> {
    let text = fs::read_to_string(dir.join(format!("{resource}.pressure"))).ok()?;
    parse_pressure(&text, "some")
}

fn parse_pressure(text: &str, kind: &str) -> Option<Pressure> {
    let line = text.lines().find(|l| l.starts_with(kind))?;
    let mut pressure = Pressure::default();
    for pair in line.split_whitespace().skip(1) {
        let (key, value) = pair.split_once('=')?;
        match key {
            "avg10" => pressure.avg10 = value.parse().ok()?,
            "avg60" => pressure.avg60 = value.parse().ok()?,
            "total" => pressure.total_us = value.parse().ok()?,
            _ => {}
        }
    }
    Some(pressure)
}

/// A flat keyed file (`key value` per line: `cpu.stat`, `memory.events`, `memory.stat`,
/// `pids.events`); empty when it is missing (the controller is not enabled for the cgroup).
#[must_use]
pub fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    fs::read_to_string(dir.join(file)).map(|text| parse_keyed(&text)).unwrap_or_default()
}

fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// A single-number file (`memory.current`, `pids.current`); None when missing or `max`.
#[must_use]
pub fn number(dir: &Path, file: &str) -> Option<u64> {
    fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

/// Bytes and operations of one device (or all), from `io.stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStat {
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

/// `io.stat` of the cgroup: the line of `device` (`MAJ:MIN`), or every device summed when None;
/// None when the file is missing (the io controller is not enabled for the cgroup).
#[must_use]
pub fn io_stat(dir: &Path, device: Option<&str>) -> Option<IoStat> {
    let text = fs::read_to_string(dir.join("io.stat")).ok()?;
    Some(parse_io_stat(&text, device))
}

fn parse_io_stat(text: &str, device: Option<&str>) -> IoStat {
    let mut total = IoStat::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(dev) = fields.next() else { continue };
        if device.is_some_and(|d| d != dev) {
            continue;
        }
        for pair in fields {
            let Some((key, value)) = pair.split_once('=') else { continue };
            let value: u64 = value.parse().unwrap_or(0);
            match key {
                "rbytes" => total.rbytes += value,
                "wbytes" => total.wbytes += value,
                "rios" => total.rios += value,
                "wios" => total.wios += value,
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_lines_parse() {
        let text =
            "some avg10=12.50 avg60=3.10 avg300=0.80 total=123456\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=99\n";
        let some = parse_pressure(text, "some").unwrap();
        assert_eq!((some.avg10, some.avg60, some.total_us), (12.5, 3.1, 123_456));
        assert_eq!(parse_pressure(text, "full").unwrap().total_us, 99);
    }

    #[test]
    fn keyed_files_and_io_stat_parse() {
        let stat = parse_keyed("usage_usec 100\nnr_throttled 7\nthrottled_usec 5000\n");
        assert_eq!(stat["nr_throttled"], 7);
        let text = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=1 rios=1 wios=1\n";
        assert_eq!(parse_io_stat(text, Some("254:0")), IoStat { rbytes: 4096, wbytes: 8192, rios: 1, wios: 2 });
        assert_eq!(parse_io_stat(text, None).wios, 3);
    }
}
