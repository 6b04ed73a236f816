//! `cargo xtask bench startup`: how long chaos takes from exec to "fault armed", and its peak
//! memory, per fault family on this host (issue 15 part 5).
use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chaos_tests::{cgroup::TestCgroup, net::TwoHosts, workload::Resident};

use super::common::{SILENT_FAULTS, load_average, machine, median, status_kb};
use crate::build;

const RUNS: usize = 20;

/// One family's command for `cgroup` (never firing: start-up is what is measured).
fn families(cgroup: &str) -> Vec<(String, Vec<String>)> {
    SILENT_FAULTS
        .iter()
        .map(|fault| {
            let mut all: Vec<String> = fault.args.iter().map(|&a| a.to_owned()).collect();
            all.extend(["--cgroup", cgroup, "--for", "30m", "-v"].map(str::to_owned));
            (format!("{} ({})", fault.name, fault.hook), all)
        })
        .collect()
}

/// Runs chaos once: ms from spawn to its "fault armed" line, and its peak RSS (VmHWM, KiB)
/// just after; then SIGINT and wait (chaos removes what it attached).
fn once(chaos: &std::path::Path, args: &[String]) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let mut child = Command::new(chaos).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let armed_ms = loop {
        match lines.next() {
            Some(line) => {
                let line = line?;
                if line.contains("fault armed") {
                    break start.elapsed().as_secs_f64() * 1e3;
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            None => {
                let _ = child.wait();
                bail!("chaos {args:?} exited before arming:\n{seen}");
            }
        }
    };
    // Let it run a moment, so memory taken right after arming counts too.
    std::thread::sleep(Duration::from_millis(200));
    let hwm = status_kb(child.id(), "VmHWM:").context("no VmHWM")?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // Drain stderr so chaos never blocks on a full pipe while it cleans up.
    for _ in lines {}
    child.wait()?;
    Ok((armed_ms, hwm))
}

pub(super) fn startup_bench(binaries: &build::Binaries) -> anyhow::Result<String> {
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    // A member in its own namespace, so TC faults find the namespace.
    let _resident = Resident::start(&cgroup, Some(&hosts.a));
    let families = families(cgroup.path());
    let load = load_average();
    // The debug build the benches use, and the release build where one was made (`cargo build
    // --release -p chaos-user`): start-up is mostly CPU work, which the build profile changes.
    let mut builds = vec![("debug", binaries.chaos.clone())];
    let release = binaries.chaos.parent().and_then(|d| d.parent()).map(|t| t.join("release").join("chaos"));
    if let Some(release) = release.filter(|r| r.exists()) {
        builds.push(("release", release));
    }
    let rows = builds.len() * families.len();
    let mut armed: Vec<Vec<f64>> = vec![Vec::new(); rows];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); rows];
    for run in 1..=RUNS {
        eprintln!("bench startup: run {run}/{RUNS}");
        for (b, (_, chaos)) in builds.iter().enumerate() {
            for (f, (_, args)) in families.iter().enumerate() {
                let (ms, kib) = once(chaos, args)?;
                armed[b * families.len() + f].push(ms);
                rss[b * families.len() + f].push(kib as f64);
            }
        }
    }
    let load_after = load_average();
    let mut out = String::new();
    let _ = writeln!(out, "## Start-up and memory on the host (`cargo xtask bench startup`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "Load average at the start: {}; at the end: {} (shared machine). {RUNS} runs per family, families \
         interleaved; time from spawning `chaos ... -v` (the debug build `cargo xtask bench` builds, and the release \
         build if one is there) to its \
         \"fault armed\" line; peak RSS is VmHWM 200 ms after arming. Median (range).\n",
        load, load_after
    );
    let _ = writeln!(
        out,
        "| family | build | exec to armed, ms (goal <= 30) | peak RSS, MiB (goal <= 16) |\n|---|---|---|---|"
    );
    let spread = |v: &[f64], scale: f64| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min) / scale;
        let max = v.iter().copied().fold(0.0, f64::max) / scale;
        format!("{:.1} ({min:.1}-{max:.1})", median(v) / scale)
    };
    for (b, (build, _)) in builds.iter().enumerate() {
        for (f, (name, _)) in families.iter().enumerate() {
            let i = b * families.len() + f;
            let _ = writeln!(out, "| {name} | {build} | {} | {} |", spread(&armed[i], 1.0), spread(&rss[i], 1024.0));
        }
    }
    let _ = writeln!(
        out,
        "\nWhat the start-up costs, and what it no longer does: aya 0.14.0's `EbpfLoader::new()` parses the \
         kernel's whole BTF (/sys/kernel/btf/vmlinux, about 5 MB) even when `.btf(None)` follows, which is what \
         chaos does (its objects have no CO-RE relocations). Measured by hand with `strace -ttt -e trace=openat,bpf` \
         on `net drop` (2026-12-01), that parse was 37 of the 42 ms to the first attach in the release build and 130 \
         of 136 ms in the debug build, and about 15 MB mapped and unmapped around it (most of the peak RSS). chaos \
         now builds against aya 0.14.0 with one patch (vendor/aya, vendor/README.md): the loader parses BTF in \
         `load()` only when `btf()` was never called. TC faults asked a second full parse whether the kernel has \
         tcx (`tcx_link_attach` in its BTF): that is now a search of the BTF's string table (chaos-user/src/btf.rs). \
         What is left: reading the embedded object and creating its maps, the feature probes (each loads a trivial \
         program), and verifying and attaching the fault's programs (the cgroup connect backend loads several \
         sock_addr programs; BPF LSM and fentry faults still parse the BTF when they attach, which those program \
         types need). \
         What TC faults add (measured by hand with `strace -f -T`, 2026-12-02, debug build, host): per direction, \
         verifying the TC program (5.5 ms egress, 6.7 ms ingress) and creating its tcx link (11.0 and 11.5 ms in \
         BPF_LINK_CREATE: the kernel holds rtnl while it swaps in the device's new program array, so two links \
         cannot overlap). That is 35 ms of kernel work for the default `--direction both`, which chaos cannot make \
         shorter; `--direction egress` armed in 37.9 ms median against 54.9 ms for both (debug, 12 runs each)."
    );
    Ok(out)
}
