//! `cargo xtask bench syscall`, its host half: connect() failed by chaos's cgroup hook against
//! `strace -e inject`, and what chaos armed costs an untargeted loop. The method (a workload loop
//! run three ways, round by round) serves the VM halves too: `syscall_lsm` and
//! `syscall_override`.
use std::{fmt::Write as _, time::Duration};

use chaos_tests::{cgroup::TestCgroup, chaos::Chaos, workload::workload_loop};

use super::common::{Ratios, machine, median};

/// Rounds of the host half.
const ROUNDS: usize = 9;

/// A workload loop run three ways: in the target with chaos failing its calls, in the target
/// under strace failing them, and in another cgroup with and without chaos armed.
pub(super) struct Loop<'a> {
    pub(super) args: &'a [&'a str],
    pub(super) strace: &'a [&'a str],
    pub(super) calls: u64,
    pub(super) netns: Option<&'a chaos_tests::net::Netns>,
    pub(super) target: &'a TestCgroup,
    pub(super) other: &'a TestCgroup,
}

/// What [`injection_vs_strace`] measured, round by round.
pub(super) struct InjectionFigures {
    /// strace's time per call over chaos's, per round.
    pub(super) vs_strace: Ratios,
    /// Untargeted throughput armed over not armed, per round.
    pub(super) untargeted: Ratios,
    pub(super) chaos_ns: Vec<f64>,
    pub(super) strace_ns: Vec<f64>,
    pub(super) bare_ns: Vec<f64>,
}

pub(super) fn injection_vs_strace(
    tier: &str,
    rounds: usize,
    workload: &Loop<'_>,
    arm: impl Fn() -> Chaos,
) -> anyhow::Result<InjectionFigures> {
    let mut figures = InjectionFigures {
        vs_strace: Ratios::default(),
        untargeted: Ratios::default(),
        chaos_ns: Vec::new(),
        strace_ns: Vec::new(),
        bare_ns: Vec::new(),
    };
    let run =
        |wrapper: &[&str], cgroup: &TestCgroup| workload_loop(wrapper, workload.args, Some(cgroup), workload.netns);
    for round in 1..=rounds {
        eprintln!("bench syscall ({tier}): round {round}/{rounds}");
        let bare = run(&[], workload.other);
        let (injected, armed_elsewhere) = {
            let _armed = arm();
            (run(&[], workload.target), run(&[], workload.other))
        };
        let traced = run(workload.strace, workload.target);
        anyhow::ensure!(
            injected.failed() == workload.calls && traced.failed() == workload.calls,
            "every call must fail under both injectors (chaos failed {}, strace {}, of {})",
            injected.failed(),
            traced.failed(),
            workload.calls
        );
        figures.vs_strace.push(traced.ns_per_call(), injected.ns_per_call());
        figures.untargeted.push(bare.ns_per_call(), armed_elsewhere.ns_per_call());
        figures.chaos_ns.push(injected.ns_per_call());
        figures.strace_ns.push(traced.ns_per_call());
        figures.bare_ns.push(bare.ns_per_call());
    }
    Ok(figures)
}

/// A `chaos syscall fail` on `cgroup` until dropped.
pub(super) fn arm_syscall(cgroup: &TestCgroup, syscall: &str, errno: &str, backend: &str, path: Option<&str>) -> Chaos {
    let mut args = vec![
        "syscall",
        "fail",
        "--cgroup",
        cgroup.path(),
        "--syscall",
        syscall,
        "--errno",
        errno,
        "--backend",
        backend,
        "--for",
        "30m",
        "-v",
    ];
    if let Some(path) = path {
        args.extend(["--path", path]);
    }
    let mut chaos = Chaos::start(&args);
    chaos.wait_until_armed(Duration::from_secs(120));
    chaos
}

/// Host tier: connect() failed through the cgroup hook vs `strace -e inject`, and an untargeted
/// connect loop with chaos armed on another cgroup vs nothing armed.
pub(super) fn syscall_connect_bench() -> anyhow::Result<String> {
    const CALLS: u64 = 20_000;
    let ns = chaos_tests::net::Netns::new();
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let count = CALLS.to_string();
    // connect() on a UDP socket sends nothing: each round is exactly one syscall and its hooks.
    let args = ["connect-loop", "--udp", "--to", "127.0.0.1:7500", "--count", &count];
    let strace = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=connect:error=ECONNREFUSED"];
    let InjectionFigures { vs_strace, untargeted, chaos_ns, strace_ns, bare_ns } = injection_vs_strace(
        "host",
        ROUNDS,
        &Loop { args: &args, strace: &strace, calls: CALLS, netns: Some(&ns), target: &target, other: &other },
        || arm_syscall(&target, "connect", "ECONNREFUSED", "cgroup", None),
    )?;
    let mut out = String::new();
    let _ = writeln!(out, "## Syscall errors on the host: connect() (`cargo xtask bench syscall`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "A loop of connect() calls on one UDP socket (a syscall that runs the cgroup connect hook and sends \
         nothing), {CALLS} calls per run, {ROUNDS} runs; ratios within each run, median (range). chaos fails connect() \
         through its cgroup hook (`--backend cgroup`; this host has no BPF LSM); strace through ptrace: `strace -f -e \
         inject=connect:error=ECONNREFUSED`.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| time per failed connect(): strace vs chaos (how many times faster chaos is) | **{}** ({:.0} vs {:.0} ns) | >= 100x |",
        vs_strace.summary(),
        median(&strace_ns),
        median(&chaos_ns)
    );
    let _ = writeln!(
        out,
        "| untargeted connect loop: throughput with chaos armed on another cgroup vs nothing armed | **{}** | >= 0.97x |",
        untargeted.summary()
    );
    let _ =
        writeln!(out, "| for scale: one connect() with nothing armed (it succeeds) | {:.0} ns | |", median(&bare_ns));
    let _ = writeln!(
        out,
        "\nThe ratio is bounded by what the syscall costs without any tracer: strace pays two ptrace stops per call, \
         chaos one map lookup and a draw in the cgroup hook (for scale, this machine's kernel-facts measure a bare \
         getppid() at about 205 ns and strace's injection at about 31 us: about 150x). Untargeted cgroups do not \
         run the hook at all."
    );
    Ok(out)
}
