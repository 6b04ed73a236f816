//! `cargo xtask bench scale`, its fentry half (VM tier: the host refuses tracing programs): N
//! syscall delays on getrandom (each for its own cgroup) and a getrandom() loop in a cgroup none
//! of them targets, with 1, 10 and 50 armed, held by one daemon (one shared fentry program on
//! `__x64_sys_getrandom`, engine/dispatch.rs) and by one chaos process each (`--hook fentry`:
//! each process its own program on the function, every one run by every getrandom() on the
//! machine).
use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use chaos_tests::{cgroup::TestCgroup, chaos::Chaos, programs, workload::workload_json};

use super::{
    common::{BpfStats, median, status_kb},
    scale::{DelayDaemon, arm_delay_processes, processes_that_fit, tcg_6_12_machine},
};

const SYSCALL: &str = "getrandom";
/// getrandom() calls per loop, loops per measurement, rounds.
const CALLS: u64 = 20_000;
const LOOPS: usize = 3;
const ROUNDS: usize = 2;
const COUNTS: [usize; 3] = [1, 10, 50];
/// The programs a getrandom() can run, as the kernel names them (cut at 15 bytes): the shared
/// one and a fault's own.
const PROGRAMS: [&str; 2] = ["chaos_dispatch_", "syscall_delay_e"];

/// ns per getrandom() of one loop in `cgroup`.
fn getrandom_ns(cgroup: &TestCgroup) -> anyhow::Result<f64> {
    let json = workload_json(&["getrandom-loop", "--count", &CALLS.to_string()], Some(cgroup), None);
    let elapsed = json["elapsed_ns"].as_f64().context("getrandom-loop reports elapsed_ns")?;
    Ok(elapsed / CALLS as f64)
}

/// The median of [`LOOPS`] loops.
fn measure(cgroup: &TestCgroup) -> anyhow::Result<f64> {
    let values = (0..LOOPS).map(|_| getrandom_ns(cgroup)).collect::<anyhow::Result<Vec<f64>>>()?;
    Ok(median(&values))
}

/// Runs so far of the fentry programs `holders` hold (kernel.bpf_stats_enabled).
fn program_runs(holders: &[&Chaos]) -> u64 {
    holders
        .iter()
        .flat_map(|chaos| programs::programs_held_by(chaos.pid() as u32))
        .filter_map(programs::program_info)
        .filter(|info| PROGRAMS.contains(&info.name.as_str()))
        .map(|info| info.run_count)
        .sum()
}

/// Program runs per untargeted getrandom(), counted by the kernel over one more loop with the
/// statistics on (apart from the timed loops, which the statistics would slow).
fn runs_per_call(holders: &[&Chaos], other: &TestCgroup) -> anyhow::Result<f64> {
    let _stats = BpfStats::enable()?;
    let before = program_runs(holders);
    getrandom_ns(other)?;
    Ok(program_runs(holders).saturating_sub(before) as f64 / CALLS as f64)
}

/// Per level: ns per untargeted call, program runs per call.
type Levels = [(Vec<f64>, f64); 3];

pub(super) fn entry_scale_bench() -> anyhow::Result<String> {
    let other = TestCgroup::new();
    let targets: Vec<TestCgroup> = (0..COUNTS[2]).map(|_| TestCgroup::new()).collect();
    let (fit, rss) = processes_that_fit(arm_delay_processes(std::slice::from_ref(&targets[0]), SYSCALL, "fentry"))?;
    let process_counts: Vec<usize> = COUNTS.iter().map(|&n| n.min(fit)).collect();
    let (mut daemon, mut processes): (Levels, Levels) = Default::default();
    let mut bare = Vec::new();
    // The daemon's resident memory with each level armed (the last round's).
    let mut daemon_rss = [0u64; 3];
    for round in 1..=ROUNDS {
        eprintln!("bench scale (VM, fentry): round {round}/{ROUNDS}, one daemon");
        bare.push(measure(&other)?);
        eprintln!("bench scale (VM, fentry): bare loop measured, starting the daemon");
        let mut held = DelayDaemon::start(&targets, SYSCALL)?;
        for (level, &count) in COUNTS.iter().enumerate() {
            held.run_until(count)?;
            eprintln!("bench scale (VM, fentry): {count} armed in the daemon");
            daemon_rss[level] = status_kb(held.daemon.pid(), "VmRSS:").unwrap_or(0);
            daemon[level].0.push(measure(&other)?);
            daemon[level].1 = runs_per_call(&[&held.daemon], &other)?;
        }
        held.daemon.signal(libc::SIGINT);
        drop(held.daemon.wait(Duration::from_secs(60)));
        eprintln!("bench scale (VM, fentry): round {round}/{ROUNDS}, one chaos per fault");
        bare.push(measure(&other)?);
        let mut armed: Vec<Chaos> = Vec::new();
        for (level, &count) in process_counts.iter().enumerate() {
            armed.extend(arm_delay_processes(&targets[armed.len()..count], SYSCALL, "fentry"));
            eprintln!("bench scale (VM, fentry): {count} chaos processes armed");
            processes[level].0.push(measure(&other)?);
            processes[level].1 = runs_per_call(&armed.iter().collect::<Vec<_>>(), &other)?;
        }
        for chaos in &armed {
            chaos.signal(libc::SIGINT);
        }
        for chaos in armed {
            drop(chaos.wait(Duration::from_secs(60)));
        }
    }
    let bare = median(&bare);
    let mut out = String::new();
    let _ = writeln!(out, "## Many syscall delays on fentry at once (`cargo xtask bench scale`, VM tier)\n");
    let _ = writeln!(out, "{}\n", tcg_6_12_machine());
    let _ = writeln!(
        out,
        "N `syscall delay` faults on {SYSCALL} (1 ms), each armed for its own cgroup, and a loop of {CALLS} \
         {SYSCALL}() calls (median of {LOOPS} loops) in a cgroup none of them targets; on this kernel they are fentry \
         programs on `__x64_sys_{SYSCALL}`. Held by one daemon (an experiment per fault, started with `chaos daemon \
         run`) and by one chaos process each (`--hook fentry`); {ROUNDS} rounds, medians. Times are emulated (TCG): \
         compare within the table.\n"
    );
    if process_counts[2] < COUNTS[2] {
        let _ = writeln!(
            out,
            "The guest's memory held {fit} chaos processes ({rss} kB resident each, three quarters of MemAvailable), so \
             the processes' last level is {} faults, not {}.\n",
            process_counts[2], COUNTS[2]
        );
    }
    let _ = writeln!(
        out,
        "| faults armed | one daemon: ns per untargeted call | added | program runs per call | vs 1 fault | one chaos \
         each: faults | ns per call | added | program runs per call |\n|---|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(out, "| 0 | {bare:.0} | | | | 0 | {bare:.0} | | |");
    for level in 0..COUNTS.len() {
        let (d, p) = (median(&daemon[level].0), median(&processes[level].0));
        let flat = d / median(&daemon[0].0);
        let goal = if level == 2 {
            format!(" (goal <= 1.10x: {})", if flat > 1.10 { "missed" } else { "met" })
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {d:.0} | {:.0} ns | {:.2} | {flat:.2}x{goal} | {} | {p:.0} | {:.0} ns | {:.2} |",
            COUNTS[level],
            d - bare,
            daemon[level].1,
            process_counts[level],
            p - bare,
            processes[level].1
        );
    }
    let _ = writeln!(
        out,
        "\nThe run counts are the kernel's (kernel.bpf_stats_enabled, over one more loop apart from the timed ones) \
         and exact: the shared program's and the faults' own, for an untargeted call. The trampoline on the \
         function calls every program attached there for every call of every task: one chaos process per fault \
         puts one program each there ({:.2} runs per call with {} armed), one daemon puts its one shared program \
         there ({:.2} runs per call with {} armed), which finds no fault for the untargeted task's cgroup and \
         returns. The daemon column's times also carry the daemon's own work in the guest (while runs are live \
         it looks at its schedule, kill switch and windows every 40 ms, and each run's thread keeps its own \
         timers; TCG runs both vCPUs on one host thread), which is why \
         its 1-fault row is above the single process's: the run counts are the figures to compare.",
        processes[2].1, process_counts[2], daemon[2].1, COUNTS[2]
    );
    let _ = writeln!(
        out,
        "\nThe daemon's resident memory with 1, 10 and {} faults armed: {} kB, {} kB and {} kB (one chaos process \
         with one fault: {rss} kB). The kernel's BTF, which fentry programs need to load, is parsed once per \
         process and shared by its faults.",
        COUNTS[2], daemon_rss[0], daemon_rss[1], daemon_rss[2]
    );
    Ok(out)
}
