//! What the benchmarks share, so that a benchmark's file holds only what it measures:
//! - figures: per-round [`Ratios`], medians, percentiles, the rotating order of the variants;
//! - the report: the machine line (host, or which VM guest) and BENCHMARKS.md's sections;
//! - readings: the machine's busy CPU, a process's CPU and memory, the BPF programs it holds and
//!   their run time, a getpid() loop;
//! - the faults that never fire (service, startup, floor), and the UDP flow between two test
//!   hosts that `drop`, `net` and `daemon` measure.
use std::{fmt::Display, fs, net::SocketAddr, time::Duration};

use anyhow::{Context as _, bail};
use chaos_tests::{
    cgroup::TestCgroup,
    chaos::Chaos,
    kernel,
    net::TwoHosts,
    workload::{Blast, BlastReport, UdpSink, workload_json},
};

use crate::util;

/// Per-round ratios a/b.
#[derive(Clone, Default)]
pub(super) struct Ratios(Vec<f64>);

impl Ratios {
    pub(super) fn push(&mut self, a: f64, b: f64) {
        self.0.push(a / b);
    }

    pub(super) fn summary(&self) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(0.0, f64::max);
        format!("{:.3}x ({min:.3}-{max:.3})", median(&self.0))
    }
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The `p`th percentile of `values` (0 to 100), the nearest rank.
pub(super) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

/// The median and the range of `values` in whole units: "12 (8 to 15)".
pub(super) fn median_and_range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.0} ({min:.0} to {max:.0})", median(values))
}

/// The order in which `count` variants run in round `round`: each round starts one further on,
/// so that no variant always runs first (warm caches, drift).
pub(super) fn rotated(round: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |k| (k + round) % count)
}

/// The load average now, as /proc/loadavg says it: a bench notes it at its start and end, since
/// the machine is shared and its other work is what widens the ranges.
pub(super) fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

/// Where and when the figures were measured: this host.
pub(super) fn machine() -> String {
    machine_in("host tier")
}

/// Where and when a VM half's figures were measured: `tier` says which guest, on what, and what
/// its figures are valid for.
pub(super) fn machine_in(tier: &str) -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = util::output(std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]), "date").unwrap_or_default();
    format!("Measured {} on {cpu} ({cpus} CPUs), kernel {} ({tier}).", date.trim(), kernel.trim())
}

/// Replaces (or appends) the section between this benchmark's markers in BENCHMARKS.md.
pub(super) fn write_section(name: &str, body: &str) -> anyhow::Result<()> {
    let path = util::root().join("BENCHMARKS.md");
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let text = fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by `cargo xtask bench`; each section is replaced when its benchmark runs again.\n"
            .into()
    });
    let block = format!("{start}\n{body}{end}");
    let updated = match (text.find(&start), text.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{block}{}", &text[..s], &text[e + end.len()..]),
        _ => format!("{}\n{block}\n", text.trim_end()),
    };
    fs::write(&path, updated)?;
    Ok(())
}

/// A fault of each hook kind as `chaos` arguments that never fire (`--percent 0`): the service
/// and start-up benches measure what being there costs, not what injecting does.
pub(super) struct SilentFault {
    pub name: &'static str,
    /// The hook it attaches to, for the start-up table.
    pub hook: &'static str,
    pub args: &'static [&'static str],
}

/// connect() failed through the cgroup hook, never firing: the service, start-up and floor
/// benches all arm it.
pub(super) const SILENT_CONNECT_FAIL: &[&str] =
    &["syscall", "fail", "--syscall", "connect", "--errno", "ECONNREFUSED", "--backend", "cgroup", "--percent", "0"];

pub(super) const SILENT_FAULTS: [SilentFault; 4] = [
    SilentFault { name: "net drop", hook: "cgroup_skb", args: &["net", "drop", "--percent", "0"] },
    SilentFault { name: "net corrupt", hook: "TC", args: &["net", "corrupt", "--percent", "0"] },
    SilentFault { name: "syscall fail connect", hook: "cgroup sock_addr", args: SILENT_CONNECT_FAIL },
    SilentFault {
        name: "syscall delay read",
        hook: "raw sys_enter",
        args: &["syscall", "delay", "--syscall", "read", "--by", "1ms", "--percent", "0"],
    },
];

/// The UDP flow: its port, and packets per run.
pub(super) const FLOW_PORT: u16 = 7100;
pub(super) const FLOW_PACKETS: u64 = 300_000;

/// What one run of the flow measured.
pub(super) struct FlowRun {
    pub(super) pps: f64,
    pub(super) cpu_ns_per_packet: f64,
    pub(super) lost_share: f64,
}

/// One run of [`FLOW_PACKETS`] packets from `workload` in host a to `to` in host b.
pub(super) fn measure_flow(hosts: &TwoHosts, workload: &TestCgroup, to: SocketAddr) -> anyhow::Result<FlowRun> {
    measure_flow_packets(hosts, workload, to, FLOW_PACKETS)
}

/// One run of `packets` packets, as fast as one sender can.
pub(super) fn measure_flow_packets(
    hosts: &TwoHosts,
    workload: &TestCgroup,
    to: SocketAddr,
    packets: u64,
) -> anyhow::Result<FlowRun> {
    let sink = UdpSink::start(&hosts.b, to.port(), 300, false);
    let busy_before = busy_cpu_ns()?;
    let blast: BlastReport =
        Blast { to, sender_id: 1, count: packets, pps: 0, cgroup: Some(workload), netns: &hosts.a }.run();
    let busy = busy_cpu_ns()? - busy_before;
    let received = sink.finish().received_from(1);
    Ok(FlowRun {
        pps: blast.pps(),
        cpu_ns_per_packet: busy as f64 / packets as f64,
        lost_share: 1.0 - received as f64 / packets as f64,
    })
}

/// chaos net drop armed on `cgroup` until dropped.
pub(super) fn arm_drop(cgroup: &TestCgroup, percent: &str, direction: &str) -> anyhow::Result<Chaos> {
    let chaos = Chaos::start(&[
        "net",
        "drop",
        "--cgroup",
        cgroup.path(),
        "--percent",
        percent,
        "--for",
        "30m",
        "--direction",
        direction,
    ]);
    let programs = if direction == "both" { 2 } else { 1 };
    kernel::wait_for_inet_programs(cgroup.dir(), programs, Duration::from_secs(20));
    Ok(chaos)
}

/// The kernel's per-program run-time statistics, switched on for a measurement and back to
/// their previous setting on Drop (they cost a little on every program run).
pub(super) struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(super) fn enable() -> anyhow::Result<Self> {
        let previous = fs::read_to_string(BPF_STATS).context("read kernel.bpf_stats_enabled")?;
        fs::write(BPF_STATS, "1").context("enable kernel.bpf_stats_enabled")?;
        Ok(Self { previous })
    }

    /// Mean ns per run of the loaded program named `name`, from `bpftool -j prog show`.
    pub(super) fn ns_per_run(&self, name: &str) -> anyhow::Result<f64> {
        let json = util::output(
            std::process::Command::new("bpftool").args(["-j", "prog", "show", "name", name]),
            "bench: bpftool",
        )?;
        let value: serde_json::Value = serde_json::from_str(&json)?;
        let program = if value.is_array() { &value[0] } else { &value };
        let (time, runs) = (program["run_time_ns"].as_f64(), program["run_cnt"].as_f64());
        match (time, runs) {
            (Some(time), Some(runs)) if runs > 0.0 => Ok(time / runs),
            _ => bail!("bpftool reported no run statistics for {name}: {json}"),
        }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, self.previous.trim());
    }
}

/// Busy CPU time of the whole machine so far, in ns.
pub(super) fn busy_cpu_ns() -> anyhow::Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| fields.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(busy * 1_000_000_000 / hz)
}

/// ns per getpid() of a raw getpid() loop of `calls` in `cgroup`, by the workload's own clock.
pub(super) fn getpid_ns(cgroup: &TestCgroup, calls: u64) -> f64 {
    let json = workload_json(&["getpid-loop", "--count", &calls.to_string()], Some(cgroup), None);
    json["elapsed_ns"].as_f64().unwrap_or(0.0) / calls as f64
}

/// A `/proc/PID/status` field in kB (`VmRSS:`, `VmHWM:`).
pub(super) fn status_kb(pid: impl Display, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.split_whitespace().next()?.parse().ok())
}

/// The ids of the BPF programs process `pid` holds, from its descriptors: so that other users'
/// programs of the same name on this shared machine do not count.
pub(super) fn held_program_ids(pid: impl Display) -> anyhow::Result<Vec<u32>> {
    let mut held = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let text = fs::read_to_string(entry?.path()).unwrap_or_default();
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("prog_id:")).and_then(|id| id.trim().parse().ok()) {
            held.push(id);
        }
    }
    Ok(held)
}

/// CPU time (user + system) a process has used, in ns.
pub(super) fn process_cpu_ns(pid: i32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<u64> =
        stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // After the command: state is not numeric, so utime and stime are fields 11 and 12 here.
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

#[cfg(test)]
mod tests {
    use super::{Ratios, median_and_range, percentile, rotated, status_kb};

    #[test]
    fn each_round_starts_one_variant_further_on_and_runs_every_variant_once() {
        assert_eq!(rotated(0, 4).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(rotated(1, 4).collect::<Vec<_>>(), [1, 2, 3, 0]);
        assert_eq!(rotated(6, 4).collect::<Vec<_>>(), [2, 3, 0, 1]);
    }

    #[test]
    fn the_table_cells_read_as_before_the_helpers_were_shared() {
        let mut ratios = Ratios::default();
        for (a, b) in [(3.0, 2.0), (1.0, 1.0), (9.0, 10.0)] {
            ratios.push(a, b);
        }
        assert_eq!(ratios.summary(), "1.000x (0.900-1.500)");
        assert_eq!(median_and_range(&[12.4, -3.0, 8.0]), "8 (-3 to 12)");
        let values: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(
            (percentile(&values, 50.0), percentile(&values, 99.0), percentile(&values, 100.0)),
            (51.0, 100.0, 101.0)
        );
    }

    #[test]
    fn a_process_status_field_is_read_in_kb() {
        let rss = status_kb(std::process::id(), "VmRSS:").expect("this process has a VmRSS");
        assert!(rss > 0);
        assert_eq!(status_kb(std::process::id(), "NoSuchField:"), None);
    }
}
