//! `cargo xtask bench scale`, its LSM half (VM tier: the host refuses LSM programs): N
//! `syscall fail` faults on openat (EIO at 0 %, each for its own cgroup, each its own chaos
//! process) and an open()/read()/close() loop in a cgroup none of them targets, with 0, 1, 10
//! and 50 armed, through global LSM programs (`--hook lsm`: every task runs every fault's
//! program) and per-cgroup ones (`--hook lsm-cgroup`: the kernel runs only the programs of the
//! task's own cgroups).
use std::{fmt::Write as _, fs, time::Duration};

use anyhow::Context as _;
use chaos_tests::{TempDir, cgroup::TestCgroup, chaos::Chaos, programs, workload::workload_json};

use super::{
    common::{BpfStats, median},
    scale::{processes_that_fit, tcg_6_12_machine},
};

/// open rounds per measurement, and measurements per level.
const OPENS: u64 = 20_000;
const LOOPS: usize = 5;
const ROUNDS: usize = 2;
const COUNTS: [usize; 3] = [1, 10, 50];
const HOOKS: [&str; 2] = ["lsm-cgroup", "lsm"];

/// ns per round of the open loop in `cgroup`.
fn open_ns(cgroup: &TestCgroup, file: &str) -> anyhow::Result<f64> {
    let json = workload_json(&["open-loop", "--path", file, "--count", &OPENS.to_string()], Some(cgroup), None);
    let elapsed = json["elapsed_ns"].as_f64().context("open-loop reports elapsed_ns")?;
    anyhow::ensure!(json["ok"].as_u64() == Some(OPENS), "the untargeted open loop saw failures: {json}");
    Ok(elapsed / OPENS as f64)
}

/// The median of [`LOOPS`] measurements.
fn measure(cgroup: &TestCgroup, file: &str) -> anyhow::Result<f64> {
    let values = (0..LOOPS).map(|_| open_ns(cgroup, file)).collect::<anyhow::Result<Vec<f64>>>()?;
    Ok(median(&values))
}

/// Arms a fault on each of `targets` through `hook`, all started together, armed on return.
fn arm(targets: &[TestCgroup], hook: &str) -> Vec<Chaos> {
    let mut armed: Vec<Chaos> = targets
        .iter()
        .map(|cgroup| {
            Chaos::start(&[
                "syscall",
                "fail",
                "--cgroup",
                cgroup.path(),
                "--syscall",
                "openat",
                "--errno",
                "EIO",
                "--percent",
                "0",
                "--hook",
                hook,
                "--for",
                "30m",
                "-v",
            ])
        })
        .collect();
    for chaos in &mut armed {
        chaos.wait_until_armed(Duration::from_secs(300));
    }
    armed
}

/// How many times the file_open programs the `armed` processes hold have run so far
/// (kernel.bpf_stats_enabled).
fn file_open_runs(armed: &[Chaos]) -> u64 {
    armed
        .iter()
        .flat_map(|chaos| programs::programs_held_by(chaos.pid() as u32))
        .filter_map(programs::program_info)
        .filter(|info| info.name == "cg_file_open" || info.name == "sys_file_open")
        .map(|info| info.run_count)
        .sum()
}

/// Runs of the armed programs per untargeted open round, counted by the kernel over one loop
/// with the statistics on (apart from the timed loops, which the statistics would slow).
fn runs_per_round(armed: &[Chaos], other: &TestCgroup, file: &str) -> anyhow::Result<f64> {
    let _stats = BpfStats::enable()?;
    let before = file_open_runs(armed);
    open_ns(other, file)?;
    Ok(file_open_runs(armed).saturating_sub(before) as f64 / OPENS as f64)
}

pub(super) fn lsm_scale_bench() -> anyhow::Result<String> {
    let other = TestCgroup::new();
    let dir = TempDir::new();
    let file = dir.path().join("data");
    fs::write(&file, b"chaos")?;
    let file = file.display().to_string();
    let targets: Vec<TestCgroup> = (0..COUNTS[2]).map(|_| TestCgroup::new()).collect();
    let (fit, rss) = processes_that_fit(arm(std::slice::from_ref(&targets[0]), "lsm"))?;
    let counts: Vec<usize> = COUNTS.iter().map(|&n| n.min(fit)).collect::<Vec<_>>();
    // [hook][level]: ns per open round, one value per round; bare: between the hooks' runs.
    let mut with = [[Vec::new(), Vec::new(), Vec::new()], [Vec::new(), Vec::new(), Vec::new()]];
    let mut bare = Vec::new();
    // [hook][level]: the kernel's count of armed-program runs per untargeted round (exact).
    let mut runs = [[0.0; 3]; 2];
    for round in 1..=ROUNDS {
        // The hooks' order alternates between rounds.
        let order: Vec<usize> = if round % 2 == 1 { vec![0, 1] } else { vec![1, 0] };
        for h in order {
            eprintln!("bench scale (VM, LSM): round {round}/{ROUNDS}, --hook {}", HOOKS[h]);
            bare.push(measure(&other, &file)?);
            let mut armed: Vec<Chaos> = Vec::new();
            for (level, &count) in counts.iter().enumerate() {
                armed.extend(arm(&targets[armed.len()..count], HOOKS[h]));
                with[h][level].push(measure(&other, &file)?);
                runs[h][level] = runs_per_round(&armed, &other, &file)?;
            }
            drop(armed);
        }
    }
    let bare = median(&bare);
    let mut out = String::new();
    let _ = writeln!(out, "## Many LSM faults at once (`cargo xtask bench scale`, VM tier)\n");
    let _ = writeln!(out, "{}\n", tcg_6_12_machine());
    let _ = writeln!(
        out,
        "N `syscall fail` faults on openat (EIO at 0 %: they never fire), each armed for its own cgroup by its own \
         chaos, and a loop of open()+read()+close() of one file ({OPENS} rounds, median of {LOOPS} loops) in a cgroup \
         none of them targets. Global LSM programs (`--hook lsm`) against per-cgroup ones (`--hook lsm-cgroup`, the \
         default where the kernel has them); {ROUNDS} rounds, the hooks' order alternating, medians. Times are \
         emulated (TCG): compare within the table.\n"
    );
    if counts[2] < COUNTS[2] {
        let _ = writeln!(
            out,
            "The guest's memory held {fit} chaos processes ({rss} kB resident each, three quarters of MemAvailable), so the last \
             level is {} faults, not {}.\n",
            counts[2], COUNTS[2]
        );
    }
    let _ = writeln!(
        out,
        "| faults armed | untargeted ns per round, global (`lsm`) | added | armed-program runs per round | per-cgroup \
         (`lsm-cgroup`) | added | armed-program runs per round | goal |\n|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(out, "| 0 | {bare:.0} | | | {bare:.0} | | | |");
    let (global, per_cgroup) = (&with[1], &with[0]);
    for (level, &count) in counts.iter().enumerate() {
        let (g, c) = (median(&global[level]), median(&per_cgroup[level]));
        let goal = if level == 2 {
            let flat = c / median(&per_cgroup[0]);
            format!("per-cgroup {flat:.2}x of 1 fault (goal <= 1.10x){}", if flat > 1.10 { ": missed" } else { "" })
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {count} | {g:.0} | {:.0} ns | {:.2} | {c:.0} | {:.0} ns | {:.2} | {goal} |",
            g - bare,
            runs[1][level],
            c - bare,
            runs[0][level]
        );
    }
    let per_fault = |v: &[Vec<f64>; 3]| (median(&v[2]) - median(&v[0])) / (counts[2] - counts[0]).max(1) as f64;
    let none_ran = runs[0].iter().all(|&r| r == 0.0);
    let _ = writeln!(
        out,
        "\nThe run counts are the kernel's (kernel.bpf_stats_enabled, over one more loop apart from the timed ones) \
         and exact; the times are TCG's, on a host shared with other work. Global: every open of every task runs \
         every armed fault's program (its first act is the ancestor-cgroup test), {:.1} runs per round with {} armed, \
         and the time grows by about {:.0} ns per round per armed fault. Per cgroup: {}; the time moved by {:.0} ns \
         per round per added fault. The kernel's shim is on the hook once any cgroup has a program there, so with \
         one fault armed the per-cgroup path already pays it (the 1-fault row).",
        runs[1][2],
        counts[2],
        per_fault(global),
        if none_ran {
            "the kernel ran none of the armed programs for the untargeted loop at any N (its cgroup has no \
             effective program), so a difference of times between these rows is not chaos's programs running"
        } else {
            "the kernel ran armed programs for the untargeted loop: see the counts"
        },
        per_fault(per_cgroup)
    );
    Ok(out)
}
