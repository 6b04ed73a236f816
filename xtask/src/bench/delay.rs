//! `cargo xtask bench delay`, its host half: what a delayed syscall costs, and what the armed raw
//! `sys_enter` program costs every other task's syscalls. The VM halves: `entry_hook` (fentry vs
//! sys_enter) and `delay_net` (net delay vs tc netem).
use std::{fmt::Write as _, time::Duration};

use chaos_tests::{cgroup::TestCgroup, chaos::Chaos};

use super::common::{BpfStats, Ratios, busy_cpu_ns, getpid_ns, machine, median, process_cpu_ns};

/// Rounds of the untargeted loop.
const ROUNDS: usize = 9;

/// Host tier: what a delayed syscall costs, and what the armed `sys_enter` tracepoint costs
/// every other syscall on the machine (a getpid loop in another cgroup).
pub(super) fn syscall_delay_bench() -> anyhow::Result<String> {
    const GETPIDS: u64 = 2_000_000;
    const DELAYED: u64 = 2000;
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let mut untargeted = Ratios::default();
    let (mut bare_ns, mut armed_ns) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("bench delay (host): round {round}/{ROUNDS}");
        let bare = getpid_ns(&other, GETPIDS);
        let armed = {
            let _armed = arm_delay(&target, "read", "1ms")?;
            getpid_ns(&other, GETPIDS)
        };
        untargeted.push(bare, armed);
        bare_ns.push(bare);
        armed_ns.push(armed);
    }
    // The program's own share of the untargeted cost (the rest is the syscall slow path).
    let program_ns = {
        let _armed = arm_delay(&target, "read", "1ms")?;
        let stats = BpfStats::enable()?;
        getpid_ns(&other, GETPIDS);
        // The process's shared sys_enter program, which tail-calls the fault's (its run time
        // includes the fault program's).
        stats.ns_per_run("chaos_dispatch")?
    };
    // CPU per delayed call: the whole machine's busy time over a run of delayed reads, less the
    // same reads undelayed, per call (the 1 ms waits themselves are idle time).
    let delayed = DELAYED.to_string();
    let busy_plain = {
        let before = busy_cpu_ns()?;
        let _ = chaos_tests::workload::workload_json(&["latency-loop", "--count", &delayed], Some(&target), None);
        busy_cpu_ns()? - before
    };
    let (busy_delayed, controller_ns) = {
        let chaos = arm_delay(&target, "read", "1ms")?;
        let controller_before = process_cpu_ns(chaos.pid())?;
        let before = busy_cpu_ns()?;
        let _ = chaos_tests::workload::workload_json(&["latency-loop", "--count", &delayed], Some(&target), None);
        (busy_cpu_ns()? - before, process_cpu_ns(chaos.pid())? - controller_before)
    };
    let per_call = busy_delayed.saturating_sub(busy_plain) as f64 / DELAYED as f64;
    let mut out = String::new();
    let _ = writeln!(out, "## Syscall delay on the host (`cargo xtask bench delay`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "chaos delays `read` for one cgroup with its raw `sys_enter` tracepoint program (SIGSTOP, then SIGCONT from the \
         controller). {ROUNDS} rounds of {GETPIDS} raw getpid() calls in another cgroup, with and without the fault armed; \
         then {DELAYED} delayed 1 ms reads.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| untargeted getpid() loop: throughput with the delay armed for another cgroup vs nothing armed | **{}** ({:.0} vs {:.0} ns per call) | >= 0.95x |",
        untargeted.summary(),
        median(&armed_ns),
        median(&bare_ns)
    );
    let _ = writeln!(
        out,
        "| of the added time per untargeted syscall, inside chaos's program (kernel.bpf_stats_enabled); the rest is the kernel's syscall slow path | {program_ns:.0} ns of {:.0} ns | |",
        median(&armed_ns) - median(&bare_ns)
    );
    let _ = writeln!(
        out,
        "| CPU per delayed call, whole machine (stop, resume, two context switches, the controller) | {:.1} us | |",
        per_call / 1e3
    );
    let _ = writeln!(
        out,
        "| of which in the chaos controller (reading the event, scheduling, SIGCONT) | {:.1} us | |",
        controller_ns as f64 / DELAYED as f64 / 1e3
    );
    let _ = writeln!(
        out,
        "\nAttaching any program to the raw syscall tracepoints switches every task on the machine to the kernel's \
         syscall slow path (the tracepoint flag is global), and the program then runs for every syscall until it finds \
         the task is not the target's. That is the untargeted cost above; it is the price of this mechanism on kernels \
         without BPF trampolines (this host cannot load tracing programs), and it ends when the fault is detached. \
         Where the kernel has them, chaos attaches fentry to the one syscall's entry function instead: the VM \
         section below measures both."
    );
    Ok(out)
}

fn arm_delay(cgroup: &TestCgroup, syscall: &str, by: &str) -> anyhow::Result<Chaos> {
    let mut chaos = Chaos::start(&[
        "syscall",
        "delay",
        "--cgroup",
        cgroup.path(),
        "--syscall",
        syscall,
        "--by",
        by,
        "--for",
        "30m",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(120));
    Ok(chaos)
}
