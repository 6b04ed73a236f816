//! `cargo xtask bench delay`, its VM half for the hooks at a syscall's entry: what a syscall
//! delay armed on `read` for one cgroup costs an untargeted getpid() loop in another cgroup,
//! on fentry (the one syscall's entry function) and on the raw sys_enter tracepoint, against
//! nothing armed, round by round in the same guest.
use std::{fmt::Write as _, time::Duration};

use chaos_tests::{cgroup::TestCgroup, chaos::Chaos};

use super::common::{BpfStats, Ratios, getpid_ns, held_program_ids, machine_in, median};

/// getpid() calls per measurement: about a second under TCG.
const GETPIDS: u64 = 500_000;
const ROUNDS: usize = 9;

/// The hooks compared, as `--hook` spells them.
const HOOKS: [&str; 2] = ["fentry", "sys-enter"];

fn arm(target: &TestCgroup, hook: &str) -> Chaos {
    let mut chaos = Chaos::start(&[
        "syscall",
        "delay",
        "--cgroup",
        target.path(),
        "--syscall",
        "read",
        "--by",
        "1ms",
        "--hook",
        hook,
        "--for",
        "30m",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(120));
    chaos
}

/// The runs of the delay program on its hook that process `pid` holds (kernel.bpf_stats_enabled):
/// the fault's own on fentry; on raw sys_enter the process's shared program, which tail-calls
/// the fault's (a tail-called program's runs count as its caller's).
fn delay_program_runs(pid: i32) -> anyhow::Result<u64> {
    let held = held_program_ids(pid)?;
    let on_hook = |name: &str| name.starts_with("syscall_delay") || name == "chaos_dispatch";
    let programs: Vec<_> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| held.contains(&p.id()) && p.name_as_str().is_some_and(on_hook))
        .collect();
    anyhow::ensure!(!programs.is_empty(), "process {pid} holds no syscall_delay program");
    Ok(programs.iter().map(aya::programs::ProgramInfo::run_count).sum())
}

/// Runs of the armed program per untargeted getpid(), per hook: what the ratios measure
/// through TCG's noise, counted exactly.
fn runs_per_getpid(target: &TestCgroup, other: &TestCgroup) -> anyhow::Result<[f64; 2]> {
    let _stats = BpfStats::enable()?;
    let mut runs = [0.0; 2];
    for (i, hook) in HOOKS.iter().enumerate() {
        let chaos = arm(target, hook);
        let before = delay_program_runs(chaos.pid())?;
        getpid_ns(other, GETPIDS);
        runs[i] = delay_program_runs(chaos.pid())?.saturating_sub(before) as f64 / GETPIDS as f64;
    }
    Ok(runs)
}

pub(super) fn syscall_delay_hooks_bench() -> anyhow::Result<String> {
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let mut ratios = [Ratios::default(), Ratios::default()];
    let mut bare_ns = Vec::new();
    let mut armed_ns = [Vec::new(), Vec::new()];
    for round in 1..=ROUNDS {
        eprintln!("bench delay (VM, entry hooks): round {round}/{ROUNDS}");
        // Each armed run between two bare ones (their mean is its baseline): the guest shares
        // the machine, and its speed drifts between runs more than fentry costs.
        for (i, hook) in HOOKS.iter().enumerate() {
            let before = getpid_ns(&other, GETPIDS);
            let armed = {
                let _armed = arm(&target, hook);
                getpid_ns(&other, GETPIDS)
            };
            let bare = (before + getpid_ns(&other, GETPIDS)) / 2.0;
            ratios[i].push(bare, armed);
            bare_ns.push(bare);
            armed_ns[i].push(armed);
        }
    }
    let runs = runs_per_getpid(&target, &other)?;
    let mut out = String::new();
    let _ = writeln!(out, "## Syscall delay in the VM: fentry vs raw sys_enter (`cargo xtask bench delay`)\n");
    let _ = writeln!(out, "{}\n", machine_in("VM tier: QEMU with TCG; ratios are valid within this run"));
    let _ = writeln!(
        out,
        "chaos delays `read` for one cgroup (1 ms, 100 %), once with its fentry program on `__x64_sys_read` (`--hook \
         fentry`, what `auto` picks on this kernel) and once with its raw `sys_enter` tracepoint program (`--hook \
         sys-enter`, the fallback, and what the host runs). {ROUNDS} rounds of {GETPIDS} raw getpid() calls in another \
         cgroup, each armed run between two bare ones (their mean is its baseline).\n"
    );
    let _ = writeln!(
        out,
        "| untargeted getpid() loop, throughput armed vs nothing armed | median (range) | runs of chaos's program \
         per getpid() | goal |\n|---|---|---|---|"
    );
    for (i, hook) in HOOKS.iter().enumerate() {
        let goal = if *hook == "fentry" { ">= 0.98x" } else { "" };
        let _ = writeln!(
            out,
            "| delay on `read` through {} | **{}** ({:.0} vs {:.0} ns per call) | {:.3} | {goal} |",
            if *hook == "fentry" { "fentry on `__x64_sys_read`" } else { "raw `sys_enter`" },
            ratios[i].summary(),
            median(&armed_ns[i]),
            median(&bare_ns),
            runs[i]
        );
    }
    let _ = writeln!(
        out,
        "\nOn fentry, getpid() never reaches chaos's program: the trampoline sits on `__x64_sys_read` alone, so other \
         syscalls keep the kernel's fast path. On raw `sys_enter` every syscall of every task takes the tracepoint's \
         slow path and runs the program up to its bitmap test. Times are emulated (TCG), so only the ratios carry \
         over, and their ranges are wide: the guest runs slower whenever the shared host is busy. The run counts \
         (kernel.bpf_stats_enabled, over one loop) are exact."
    );
    Ok(out)
}
