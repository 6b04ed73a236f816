//! `cargo xtask bench`: side-by-side measurements written into BENCHMARKS.md.
//!
//! Every figure is a ratio of two things measured in the same run, variants interleaved round
//! by round so that drift hits them alike; medians over the rounds. The machine and kernel are
//! written next to the figures.
use std::{fmt::Write as _, fs, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use chaos_tests::{
    cgroup::TestCgroup,
    chaos::Chaos,
    kernel,
    net::TwoHosts,
    workload::{Blast, BlastReport, UdpSink, workload_loop},
};

use crate::{build, util, vm};

mod daemon;
mod entry_hook;
mod scale;
mod scale_entry;
mod scale_lsm;
mod thread_delay;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Packet drop: untargeted throughput armed vs not, CPU per packet vs iptables.
    Drop,
    /// Network faults: `drop`, plus the same 20 % loss with tc netem vs chaos in the VM tier.
    Net,
    /// Syscall errors: chaos vs strace --inject, and untargeted overhead (host and VM tier).
    Syscall,
    /// Delays: syscall delay cost and untargeted overhead (host; fentry vs sys_enter in the VM
    /// tier); per thread vs per process vs strace (host and VM tier); net delay vs tc netem (VM
    /// tier).
    Delay,
    /// Process faults: crash-point latency vs strace's signal injection, thaw after SIGKILL (host).
    Proc,
    /// Error injection: failed fsync vs strace --inject, and untargeted overhead of the kprobe
    /// (the kernel with error injection).
    Override,
    /// The daemon: CPU and RSS idle and during a run, untargeted throughput during a run (host).
    Daemon,
    /// The floor: per hook, an empty program vs chaos's (untargeted, and on the target at 0 %).
    Floor,
    /// `--trace-injections`: its cost off and on, on the connect4 hook (host).
    Trace,
    /// Start-up and memory: exec to "fault armed" and peak RSS per family (host).
    Startup,
    /// A real service: nginx and wrk between two namespaces, each family armed untargeted and at 0 %.
    Service,
    /// Many faults at once: an untargeted getpid() loop with 1, 10 and 50 syscall delays armed
    /// on distinct cgroups (host: raw sys_enter).
    Scale,
}

/// Benchmark halves that run inside a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InVm {
    Netem,
    Syscall,
    Delay,
    Override,
    /// The floor's error-injection row: the kprobe of `--backend override`.
    Floor,
    /// Syscall delay's untargeted cost on fentry vs raw sys_enter.
    DelayHooks,
    /// N LSM faults armed: an untargeted open loop, global vs per-cgroup programs.
    ScaleLsm,
    /// N syscall delays on fentry: an untargeted loop, one daemon vs a chaos per fault.
    ScaleEntry,
    /// Syscall delay per thread vs per process vs strace, on fentry.
    DelayThread,
}

/// A fault of each hook kind as `chaos` arguments that never fire (`--percent 0`): the service
/// and start-up benches measure what being there costs, not what injecting does.
pub(crate) struct SilentFault {
    pub name: &'static str,
    /// The hook it attaches to, for the start-up table.
    pub hook: &'static str,
    pub args: &'static [&'static str],
}

/// connect() failed through the cgroup hook, never firing: the service, start-up and floor
/// benches all arm it.
pub(crate) const SILENT_CONNECT_FAIL: &[&str] =
    &["syscall", "fail", "--syscall", "connect", "--errno", "ECONNREFUSED", "--backend", "cgroup", "--percent", "0"];

pub(crate) const SILENT_FAULTS: [SilentFault; 4] = [
    SilentFault { name: "net drop", hook: "cgroup_skb", args: &["net", "drop", "--percent", "0"] },
    SilentFault { name: "net corrupt", hook: "TC", args: &["net", "corrupt", "--percent", "0"] },
    SilentFault { name: "syscall fail connect", hook: "cgroup sock_addr", args: SILENT_CONNECT_FAIL },
    SilentFault {
        name: "syscall delay read",
        hook: "raw sys_enter",
        args: &["syscall", "delay", "--syscall", "read", "--by", "1ms", "--percent", "0"],
    },
];

const VM_SECTION_BEGIN: &str = "CHAOS_BENCH_SECTION_BEGIN";
const VM_SECTION_END: &str = "CHAOS_BENCH_SECTION_END";

/// `kernel` picks the VM half of a benchmark alone; only `floor` has one to pick (6.1-errinj:
/// the kprobe row). Checked before anything is built.
pub fn run(which: &[Which], kernel: Option<vm::KernelName>) -> anyhow::Result<()> {
    if let Some(kernel) = kernel {
        if which != [Which::Floor] || kernel != vm::KernelName::V6_1ErrInj {
            let named: Vec<String> = which
                .iter()
                .filter_map(|w| clap::ValueEnum::to_possible_value(w).map(|v| v.get_name().to_owned()))
                .collect();
            bail!(
                "--kernel {} with `bench {}`: only `bench floor --kernel 6.1-errinj` (the kprobe row in the \
                 error-injection VM) picks a kernel; the other benchmarks choose their own. Drop --kernel, or run \
                 `cargo xtask bench floor --kernel 6.1-errinj`",
                kernel.label(),
                named.join(" ")
            );
        }
        let binaries = build::prepare_root_task("the benchmark")?;
        write_section("floor-errinj", &floor_errinj_section(&binaries, vm::ensure_kernel(kernel)?)?)?;
        println!("figures written to BENCHMARKS.md");
        return Ok(());
    }
    let binaries = build::prepare_root_task("the benchmark")?;
    let which = if which.is_empty() {
        &[
            Which::Drop,
            Which::Net,
            Which::Syscall,
            Which::Delay,
            Which::Proc,
            Which::Daemon,
            Which::Floor,
            Which::Trace,
            Which::Startup,
            Which::Service,
            Which::Scale,
        ][..]
    } else {
        which
    };
    // `net` includes the host drop figures: measure them once.
    if which.iter().any(|w| matches!(w, Which::Drop | Which::Net)) {
        write_section("drop", &drop_bench()?)?;
    }
    if which.contains(&Which::Net) {
        write_section("netem", &in_vm_section(&binaries, vm::KernelName::V6_12, "netem")?)?;
    }
    if which.contains(&Which::Syscall) {
        write_section("syscall-host", &syscall_connect_bench()?)?;
        write_section("syscall-vm", &in_vm_section(&binaries, vm::KernelName::V6_12, "syscall")?)?;
    }
    if which.contains(&Which::Proc) {
        write_section("proc-host", &proc_bench()?)?;
    }
    if which.contains(&Which::Delay) {
        write_section("delay-host", &syscall_delay_bench()?)?;
        write_section("delay-vm", &in_vm_section(&binaries, vm::KernelName::V6_12, "delay")?)?;
        write_section("delay-hooks-vm", &in_vm_section(&binaries, vm::KernelName::V6_12, "delay-hooks")?)?;
        write_section("delay-thread-host", &thread_delay::thread_delay_bench("host")?)?;
        write_section("delay-thread-vm", &in_vm_section(&binaries, vm::KernelName::V6_12, "delay-thread")?)?;
    }
    if which.contains(&Which::Override) {
        write_section("override-vm", &in_vm_section(&binaries, vm::KernelName::V6_1ErrInj, "override")?)?;
    }
    if which.contains(&Which::Daemon) {
        write_section("daemon", &daemon::daemon_bench()?)?;
    }
    if which.contains(&Which::Floor) {
        write_section("floor", &crate::floor::floor_bench(&binaries)?)?;
        // The kprobe row needs bpf_override_return: the error-injection kernel, when it is here.
        match vm::available_kernel(vm::KernelName::V6_1ErrInj)? {
            Some(kernel) => write_section("floor-errinj", &floor_errinj_section(&binaries, kernel)?)?,
            None => eprintln!(
                "bench floor: the kprobe row needs the 6.1-errinj kernel, which is not here (its section is left \
                 as it was): {}",
                crate::errinj::HOW_TO_GET
            ),
        }
    }
    if which.contains(&Which::Trace) {
        write_section("trace", &crate::floor::trace::trace_bench(&binaries)?)?;
    }
    if which.contains(&Which::Startup) {
        write_section("startup", &crate::startup::startup_bench(&binaries)?)?;
    }
    if which.contains(&Which::Service) {
        write_section("service", &crate::service::service_bench()?)?;
    }
    if which.contains(&Which::Scale) {
        write_section("scale", &scale::scale_bench()?)?;
        write_section("scale-entry-vm", &in_vm_section(&binaries, vm::KernelName::V6_12, "scale-entry")?)?;
        write_section("scale-lsm-vm", &in_vm_section(&binaries, vm::KernelName::V6_12, "scale-lsm")?)?;
    }
    println!("figures written to BENCHMARKS.md");
    Ok(())
}

/// The floor's kprobe row, in the error-injection VM (the floor object goes in beside chaos).
fn floor_errinj_section(binaries: &build::Binaries, kernel: vm::Kernel) -> anyhow::Result<String> {
    in_vm_kernel_section(binaries, &kernel, "floor", vec![crate::floor::floor_object(binaries)?])
}

/// Boots `kernel` with this xtask, chaos and the workload, runs `xtask bench-in-vm which` there
/// and returns the section it printed.
fn in_vm_section(binaries: &build::Binaries, kernel: vm::KernelName, which: &str) -> anyhow::Result<String> {
    in_vm_kernel_section(binaries, &vm::ensure_kernel(kernel)?, which, Vec::new())
}

/// [`in_vm_section`] on a kernel already found, with `more_files` copied in too.
fn in_vm_kernel_section(
    binaries: &build::Binaries,
    kernel: &vm::Kernel,
    which: &str,
    more_files: Vec<PathBuf>,
) -> anyhow::Result<String> {
    // If the build step rebuilt xtask itself, the running file was replaced: the new one at the
    // same path is this very source, freshly built.
    let xtask = std::env::current_exe()?;
    let xtask = PathBuf::from(xtask.to_string_lossy().trim_end_matches(" (deleted)"));
    let mut files = binaries.files();
    files.push(xtask.clone());
    files.extend(more_files);
    let job = vm::VmJob {
        kernel,
        guest: kernel.name.label().to_owned(),
        files,
        env: binaries.env(&kernel.name.tier()),
        script: format!("{} bench-in-vm {which}\n", vm::shell_quote(&xtask.display().to_string())),
        timeout: Duration::from_secs(30 * 60),
    };
    let outcome = vm::boot(&job)?;
    if outcome.exit_code != 0 {
        bail!("the {which} benchmark failed in the {} VM (exit {})", kernel.name.label(), outcome.exit_code);
    }
    let lines = &outcome.lines;
    let begin = lines.iter().position(|l| l == VM_SECTION_BEGIN).context("the VM printed no benchmark section")?;
    let end = lines.iter().position(|l| l == VM_SECTION_END).context("the VM's benchmark section did not end")?;
    Ok(lines[begin + 1..end].iter().map(|l| format!("{l}\n")).collect())
}

/// `xtask bench-in-vm`: runs inside the VM, prints its section between markers.
pub fn in_vm(which: InVm) -> anyhow::Result<()> {
    let section = match which {
        InVm::Netem => netem_bench()?,
        InVm::Syscall => syscall_open_bench()?,
        InVm::Delay => net_delay_bench()?,
        InVm::Override => syscall_override_bench()?,
        InVm::Floor => crate::floor::errinj_floor_bench()?,
        InVm::DelayHooks => entry_hook::syscall_delay_hooks_bench()?,
        InVm::ScaleLsm => scale_lsm::lsm_scale_bench()?,
        InVm::ScaleEntry => scale_entry::entry_scale_bench()?,
        InVm::DelayThread => thread_delay::thread_delay_bench("6.12 VM")?,
    };
    println!("{VM_SECTION_BEGIN}\n{section}{VM_SECTION_END}");
    Ok(())
}

/// In the VM tier (the host has no netem): 20 % loss by tc netem on the sender's interface vs
/// chaos on the sender's cgroup, CPU per packet and achieved rate.
fn netem_bench() -> anyhow::Result<String> {
    const VM_PACKETS: u64 = 50_000;
    const VM_ROUNDS: usize = 5;
    let hosts = TwoHosts::new();
    let workload = TestCgroup::new();
    let to = SocketAddr::from((TwoHosts::B, PORT));
    let mut cpu_ratio = Ratios::default();
    let (mut cpu_chaos, mut cpu_netem, mut cpu_none) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rate_chaos, mut rate_netem) = (Vec::new(), Vec::new());
    for round in 1..=VM_ROUNDS {
        eprintln!("bench netem: round {round}/{VM_ROUNDS}");
        let off = measure_n(&hosts, &workload, to, VM_PACKETS)?;
        let chaos = {
            let _armed = arm(&workload, "20", "egress")?;
            measure_n(&hosts, &workload, to, VM_PACKETS)?
        };
        let netem = {
            let _qdisc = Netem::add(&hosts)?;
            measure_n(&hosts, &workload, to, VM_PACKETS)?
        };
        cpu_ratio.push(chaos.cpu_ns_per_packet, netem.cpu_ns_per_packet);
        cpu_none.push(off.cpu_ns_per_packet);
        cpu_chaos.push(chaos.cpu_ns_per_packet);
        cpu_netem.push(netem.cpu_ns_per_packet);
        rate_chaos.push(chaos.lost_share);
        rate_netem.push(netem.lost_share);
    }
    let mut out = String::new();
    let _ = writeln!(out, "## Packet loss against tc netem (`cargo xtask bench net`, VM tier)\n");
    let _ = writeln!(
        out,
        "{}\n",
        machine()
            .replace("(host tier)", "(VM tier: QEMU with TCG on the host above; ratios are valid within this run)")
    );
    let _ = writeln!(
        out,
        "UDP, 64-byte payloads, {VM_PACKETS} packets per run as fast as one sender can, across a veth pair between \
         two network namespaces. netem drops 20 % on the sender's interface (`tc qdisc add dev veth-a root netem \
         loss 20%`); chaos drops 20 % on the sender's cgroup. Both are silent for the sender. {VM_ROUNDS} rounds, \
         variants back to back in each; median ratio and range.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| CPU per packet, 20 % loss: chaos vs tc netem | **{}** ({:.0} vs {:.0} ns of emulated CPU) | <= 1x |",
        cpu_ratio.summary(),
        median(&cpu_chaos),
        median(&cpu_netem)
    );
    let _ = writeln!(
        out,
        "| loss achieved | chaos {:.2} %, netem {:.2} % | 20 % |",
        100.0 * median(&rate_chaos),
        100.0 * median(&rate_netem)
    );
    let _ = writeln!(out, "| for scale: CPU per packet with no loss | {:.0} ns | |", median(&cpu_none));
    let _ = writeln!(
        out,
        "\nnetem needs a qdisc on the interface, so it delays or drops everything that leaves it, whoever sent \
         it; chaos attaches to one cgroup and leaves the other processes of the namespace alone."
    );
    Ok(out)
}

/// A workload loop run three ways: in the target with chaos failing its calls, in the target
/// under strace failing them, and in another cgroup with and without chaos armed.
struct Loop<'a> {
    args: &'a [&'a str],
    strace: &'a [&'a str],
    calls: u64,
    netns: Option<&'a chaos_tests::net::Netns>,
    target: &'a TestCgroup,
    other: &'a TestCgroup,
}

struct InjectionFigures {
    /// strace's time per call over chaos's, per round.
    vs_strace: Ratios,
    /// Untargeted throughput armed over not armed, per round.
    untargeted: Ratios,
    chaos_ns: Vec<f64>,
    strace_ns: Vec<f64>,
    bare_ns: Vec<f64>,
}

fn injection_vs_strace(
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
fn arm_syscall(cgroup: &TestCgroup, syscall: &str, errno: &str, backend: &str, path: Option<&str>) -> Chaos {
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
fn syscall_connect_bench() -> anyhow::Result<String> {
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

/// VM tier (BPF LSM): openat() + read() failed through the LSM hook vs `strace -e inject`, and
/// an untargeted loop with chaos's global LSM hooks armed for another cgroup vs nothing armed.
fn syscall_open_bench() -> anyhow::Result<String> {
    const CALLS: u64 = 3000;
    const VM_ROUNDS: usize = 5;
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let dir = chaos_tests::TempDir::new();
    let file = dir.path().join("data");
    fs::write(&file, b"chaos")?;
    let (count, path) = (CALLS.to_string(), file.display().to_string());
    let args = ["open-loop", "--path", &path, "--count", &count];
    // Both injectors are scoped to the file (`-P` for strace, `--path` for chaos): an unscoped
    // openat fault also fails the workload's own dynamic loader, before the loop even starts.
    let strace = ["strace", "-f", "-qq", "-o", "/dev/null", "-P", &path, "-e", "inject=openat:error=EIO"];
    let prefix = dir.path().display().to_string();
    let InjectionFigures { vs_strace, untargeted, chaos_ns, strace_ns, bare_ns } = injection_vs_strace(
        "VM",
        VM_ROUNDS,
        &Loop { args: &args, strace: &strace, calls: CALLS, netns: None, target: &target, other: &other },
        || arm_syscall(&target, "openat,read", "EIO", "lsm", Some(&prefix)),
    )?;
    let mut out = String::new();
    let _ =
        writeln!(out, "## Syscall errors through BPF LSM: openat()/read() (`cargo xtask bench syscall`, VM tier)\n");
    let _ = writeln!(
        out,
        "{}\n",
        machine().replace("(host tier)", "(VM tier: QEMU with TCG; ratios are valid within this run)")
    );
    let _ = writeln!(
        out,
        "A loop of openat() + read() + close() of a small file, {CALLS} rounds per run, {VM_ROUNDS} runs; ratios within \
         each run, median (range). Under injection each round is one failed openat(). chaos fails openat and read \
         through BPF LSM hooks (`--backend lsm --path DIR`); strace through ptrace: `strace -f -P FILE -e \
         inject=openat:error=EIO` (both scoped to the file, or the workload's own loader fails).\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| time per failed open round: strace vs chaos (how many times faster chaos is) | **{}** ({:.0} vs {:.0} ns) | >= 100x |",
        vs_strace.summary(),
        median(&strace_ns),
        median(&chaos_ns)
    );
    let _ = writeln!(
        out,
        "| untargeted open/read loop: throughput with chaos's LSM hooks armed for another cgroup vs nothing armed | **{}** | >= 0.97x |",
        untargeted.summary()
    );
    let _ = writeln!(
        out,
        "| for scale: one round with nothing armed (open and read succeed) | {:.0} ns | |",
        median(&bare_ns)
    );
    let _ = writeln!(
        out,
        "\nLSM hooks run for every task: an untargeted task pays one map lookup and one cgroup-id helper call per \
         hooked syscall before the program leaves. Times are emulated (TCG), so only the ratios carry over."
    );
    Ok(out)
}

/// Error-injection kernel: fsync() failed by chaos's kprobe (`--backend override`) vs `strace -e
/// inject`, and an untargeted fsync loop with the kprobe armed for another cgroup vs nothing.
fn syscall_override_bench() -> anyhow::Result<String> {
    const CALLS: u64 = 3000;
    const VM_ROUNDS: usize = 5;
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let dir = chaos_tests::TempDir::new();
    let path = dir.path().join("data").display().to_string();
    let count = CALLS.to_string();
    let args = ["fsync-loop", "--path", &path, "--count", &count];
    let strace = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=fsync:error=EIO"];
    let InjectionFigures { vs_strace, untargeted, chaos_ns, strace_ns, bare_ns } = injection_vs_strace(
        "VM",
        VM_ROUNDS,
        &Loop { args: &args, strace: &strace, calls: CALLS, netns: None, target: &target, other: &other },
        || arm_syscall(&target, "fsync", "EIO", "override", None),
    )?;
    let mut out = String::new();
    let _ = writeln!(out, "## Syscall errors through error injection: fsync() (`cargo xtask bench override`)\n");
    let _ = writeln!(
        out,
        "{}\n",
        machine().replace(
            "(host tier)",
            "(VM tier, error-injection kernel: QEMU with TCG; ratios are valid within this run)"
        )
    );
    let _ = writeln!(
        out,
        "A loop of fsync() on one file, {CALLS} calls per run, {VM_ROUNDS} runs; ratios within each run, median \
         (range). chaos fails fsync through a kprobe on `__x64_sys_fsync` calling bpf_override_return (`--backend \
         override`): the call returns EIO before it does any work; strace through ptrace: `strace -f -e \
         inject=fsync:error=EIO`.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| time per failed fsync(): strace vs chaos (how many times faster chaos is) | **{}** ({:.0} vs {:.0} ns) | >= 100x |",
        vs_strace.summary(),
        median(&strace_ns),
        median(&chaos_ns)
    );
    let _ = writeln!(
        out,
        "| untargeted fsync loop: throughput with the kprobe armed for another cgroup vs nothing armed | **{}** | >= 0.97x |",
        untargeted.summary()
    );
    let _ = writeln!(out, "| for scale: one fsync() with nothing armed (it succeeds) | {:.0} ns | |", median(&bare_ns));
    let _ = writeln!(
        out,
        "\nThe kprobe runs for every task's fsync: an untargeted task pays the probe (an ftrace call at the \
         function's entry), one map lookup and one cgroup-id helper call; an empty kprobe on the same function, \
         the floor, is set beside it in `cargo xtask bench floor --kernel 6.1-errinj` (section \
         \"The floor of the error-injection kprobe\"). Not measured: fmod_ret (aya 0.14 cannot load \
         BPF_MODIFY_RETURN programs). Times are emulated (TCG) on a machine shared with other work, so only the ratios carry over, \
         and their ranges are wide: measure the untargeted cost on hardware before relying on it."
    );
    Ok(out)
}

/// Host tier: what a delayed syscall costs, and what the armed `sys_enter` tracepoint costs
/// every other syscall on the machine (a getpid loop in another cgroup).
fn syscall_delay_bench() -> anyhow::Result<String> {
    const GETPIDS: u64 = 2_000_000;
    const DELAYED: u64 = 2000;
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let count = GETPIDS.to_string();
    let mut untargeted = Ratios::default();
    let (mut bare_ns, mut armed_ns) = (Vec::new(), Vec::new());
    let getpid_ns = |json: &serde_json::Value| json["elapsed_ns"].as_f64().unwrap_or(0.0) / GETPIDS as f64;
    for round in 1..=ROUNDS {
        eprintln!("bench delay (host): round {round}/{ROUNDS}");
        let bare =
            getpid_ns(&chaos_tests::workload::workload_json(&["getpid-loop", "--count", &count], Some(&other), None));
        let armed = {
            let _armed = arm_delay(&target, "read", "1ms")?;
            getpid_ns(&chaos_tests::workload::workload_json(&["getpid-loop", "--count", &count], Some(&other), None))
        };
        untargeted.push(bare, armed);
        bare_ns.push(bare);
        armed_ns.push(armed);
    }
    // The program's own share of the untargeted cost (the rest is the syscall slow path).
    let program_ns = {
        let _armed = arm_delay(&target, "read", "1ms")?;
        let stats = BpfStats::enable()?;
        let _ = chaos_tests::workload::workload_json(&["getpid-loop", "--count", &count], Some(&other), None);
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

/// CPU time (user + system) a process has used, in ns.
fn process_cpu_ns(pid: i32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<u64> =
        stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // After the command: state is not numeric, so utime and stime are fields 11 and 12 here.
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ticks * 1_000_000_000 / hz)
}

/// VM tier (fq and netem): 100 ms of delay by tc netem vs chaos: accuracy of the added round
/// trip, and CPU per packet at a fixed packet rate.
fn net_delay_bench() -> anyhow::Result<String> {
    const PINGS: u32 = 100;
    const VM_ROUNDS: usize = 3;
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let _resident = chaos_tests::workload::Resident::start(&cgroup, Some(&hosts.a));
    let _echo = chaos_tests::workload::UdpEcho::start(&hosts.b, 7700);
    let to = SocketAddr::from((TwoHosts::B, 7700));
    let ping = |count: u32, interval: u32| -> Vec<f64> {
        let json = chaos_tests::workload::workload_json(
            &[
                "udp-ping",
                "--to",
                &to.to_string(),
                "--count",
                &count.to_string(),
                "--interval-ms",
                &interval.to_string(),
            ],
            Some(&cgroup),
            Some(&hosts.a),
        );
        json["rtts_ns"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).map(|ns| ns / 1e6).collect())
            .unwrap_or_default()
    };
    let blast_cpu = || -> anyhow::Result<f64> {
        let sink = UdpSink::start(&hosts.b, PORT, 500, false);
        let before = busy_cpu_ns()?;
        let _ = Blast {
            to: SocketAddr::from((TwoHosts::B, PORT)),
            sender_id: 1,
            count: 4000,
            pps: 2000,
            cgroup: Some(&cgroup),
            netns: &hosts.a,
        }
        .run();
        let busy = busy_cpu_ns()? - before;
        let _ = sink.finish();
        Ok(busy as f64 / 4000.0)
    };
    let baseline = median(&ping(50, 10));
    let (mut chaos_err, mut netem_err) = (Vec::new(), Vec::new());
    let (mut cpu_chaos, mut cpu_netem, mut cpu_none) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=VM_ROUNDS {
        eprintln!("bench delay (VM): round {round}/{VM_ROUNDS}");
        cpu_none.push(blast_cpu()?);
        {
            let mut chaos =
                Chaos::start(&["net", "delay", "--cgroup", cgroup.path(), "--by", "100ms", "--for", "30m", "-v"]);
            chaos.wait_until_armed(Duration::from_secs(120));
            chaos_err.extend(ping(PINGS, 20).iter().map(|rtt| (rtt - baseline - 100.0).abs()));
            cpu_chaos.push(blast_cpu()?);
        }
        {
            let ns = hosts.a.name();
            util::output(
                std::process::Command::new("tc").args([
                    "-n", ns, "qdisc", "add", "dev", "veth-a", "root", "netem", "delay", "100ms", "limit", "100000",
                ]),
                "bench: tc netem",
            )?;
            netem_err.extend(ping(PINGS, 20).iter().map(|rtt| (rtt - baseline - 100.0).abs()));
            cpu_netem.push(blast_cpu()?);
            let _ = std::process::Command::new("tc").args(["-n", ns, "qdisc", "del", "dev", "veth-a", "root"]).status();
        }
    }
    let pct = |v: &[f64], p: f64| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[((p / 100.0) * (s.len() - 1) as f64).round() as usize]
    };
    let mut out = String::new();
    let _ = writeln!(out, "## Network delay against tc netem (`cargo xtask bench delay`, VM tier)\n");
    let _ = writeln!(
        out,
        "{}\n",
        machine().replace("(host tier)", "(VM tier: QEMU with TCG; ratios and errors are within this run)")
    );
    let _ = writeln!(
        out,
        "100 ms of delay on what the sender in host a sends: `tc qdisc add dev veth-a root netem delay 100ms` against \
         `chaos net delay --by 100ms` (a TC egress program setting departure times, fq holding the packets). Accuracy: \
         UDP pings from the target cgroup, {PINGS} per round, error = |round trip - baseline - 100 ms|. CPU: 4000 packets \
         at 2000 packets/s. {VM_ROUNDS} rounds.\n"
    );
    let _ = writeln!(out, "| measurement | chaos | tc netem |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| added-delay error p50 | **{:.2} ms** | {:.2} ms |",
        pct(&chaos_err, 50.0),
        pct(&netem_err, 50.0)
    );
    let _ = writeln!(
        out,
        "| added-delay error p99 | **{:.2} ms** | {:.2} ms |",
        pct(&chaos_err, 99.0),
        pct(&netem_err, 99.0)
    );
    let _ = writeln!(
        out,
        "| CPU per packet at 2000 packets/s (nothing: {:.0} ns) | **{:.0} ns** ({:.2}x netem) | {:.0} ns |",
        median(&cpu_none),
        median(&cpu_chaos),
        median(&cpu_chaos) / median(&cpu_netem),
        median(&cpu_netem)
    );
    let _ = writeln!(
        out,
        "\nnetem delays everything that leaves the interface; chaos delays the target cgroup's packets (and only \
         those matching its filters), with fq doing the holding."
    );
    Ok(out)
}

/// `tc qdisc add dev veth-a root netem loss 20%` in host a's namespace, removed on Drop.
struct Netem<'a> {
    ns: &'a str,
}

impl<'a> Netem<'a> {
    fn add(hosts: &'a TwoHosts) -> anyhow::Result<Self> {
        let ns = hosts.a.name();
        util::output(
            std::process::Command::new("tc")
                .args(["-n", ns, "qdisc", "add", "dev", "veth-a", "root", "netem", "loss", "20%"]),
            "bench: tc netem",
        )?;
        Ok(Self { ns })
    }
}

impl Drop for Netem<'_> {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("tc").args(["-n", self.ns, "qdisc", "del", "dev", "veth-a", "root"]).status();
    }
}

/// Packets per run and rounds per variant.
const PACKETS: u64 = 300_000;
const ROUNDS: usize = 9;
const PORT: u16 = 7100;

fn drop_bench() -> anyhow::Result<String> {
    let hosts = TwoHosts::new();
    let workload = TestCgroup::new();
    let other = TestCgroup::new();
    let to = SocketAddr::from((TwoHosts::B, PORT));

    // Each round measures every variant back to back; ratios are taken within a round, so slow
    // phases of the machine (this is a 2-vCPU VM) hit both sides of a ratio alike.
    let mut untargeted = Ratios::default();
    let mut targeted_zero = Ratios::default();
    let mut cpu_vs_iptables_in = Ratios::default();
    let mut cpu_vs_iptables_out = Ratios::default();
    let (mut cpu_chaos, mut cpu_iptables_in, mut cpu_iptables_out, mut cpu_none) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rate_chaos, mut rate_iptables_in, mut rate_iptables_out) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("bench drop: round {round}/{ROUNDS}");
        let off = measure(&hosts, &workload, to)?;
        let armed_elsewhere = {
            let _armed = arm(&other, "20", "both")?;
            measure(&hosts, &workload, to)?
        };
        let zero = {
            let _armed = arm(&workload, "0", "egress")?;
            measure(&hosts, &workload, to)?
        };
        let chaos = {
            let _armed = arm(&workload, "20", "egress")?;
            measure(&hosts, &workload, to)?
        };
        let iptables_in = {
            let _rule = IptablesDrop::add(hosts.b.name(), "raw", "PREROUTING", PORT)?;
            measure(&hosts, &workload, to)?
        };
        let iptables_out = {
            let _rule = IptablesDrop::add(hosts.a.name(), "filter", "OUTPUT", PORT)?;
            measure(&hosts, &workload, to)?
        };
        untargeted.push(armed_elsewhere.pps, off.pps);
        targeted_zero.push(zero.pps, off.pps);
        cpu_vs_iptables_in.push(chaos.cpu_ns_per_packet, iptables_in.cpu_ns_per_packet);
        cpu_vs_iptables_out.push(chaos.cpu_ns_per_packet, iptables_out.cpu_ns_per_packet);
        cpu_none.push(off.cpu_ns_per_packet);
        cpu_chaos.push(chaos.cpu_ns_per_packet);
        cpu_iptables_in.push(iptables_in.cpu_ns_per_packet);
        cpu_iptables_out.push(iptables_out.cpu_ns_per_packet);
        rate_chaos.push(chaos.lost_share);
        rate_iptables_in.push(iptables_in.lost_share);
        rate_iptables_out.push(iptables_out.lost_share);
    }
    // The program's own cost per packet, measured apart: the statistics slow every run a bit.
    let program_ns = {
        let _armed = arm(&workload, "0", "egress")?;
        let stats = BpfStats::enable()?;
        let _ = measure(&hosts, &workload, to)?;
        stats.ns_per_run("net_drop_egress")?
    };

    let mut out = String::new();
    let _ = writeln!(out, "## Packet drop (`cargo xtask bench drop`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "UDP, 64-byte payloads, {PACKETS} packets per run sent as fast as one sender can, from a test cgroup \
         across a veth pair between two network namespaces. {ROUNDS} rounds; in each round every variant runs \
         back to back and ratios are taken within the round; the table shows the median ratio and the range \
         over rounds.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| untargeted throughput: chaos armed (20 %, both directions) on another cgroup vs nothing armed | **{}** | >= 0.98x |",
        untargeted.summary()
    );
    let _ = writeln!(
        out,
        "| CPU per packet dropping 20 % as silent loss: chaos vs `iptables -m statistic --mode random` in the receiver's raw PREROUTING | **{}** ({:.0} vs {:.0} ns) | <= 1x |",
        cpu_vs_iptables_in.summary(),
        median(&cpu_chaos),
        median(&cpu_iptables_in)
    );
    let _ = writeln!(
        out,
        "| CPU per packet dropping 20 % at the sender: chaos vs the same iptables rule in the sender's OUTPUT (which fails `sendto()` with EPERM instead) | {} ({:.0} vs {:.0} ns) | |",
        cpu_vs_iptables_out.summary(),
        median(&cpu_chaos),
        median(&cpu_iptables_out)
    );
    let _ = writeln!(
        out,
        "| drop rate achieved | chaos {:.2} %, iptables PREROUTING {:.2} %, iptables OUTPUT {:.2} % | 20 % |",
        100.0 * median(&rate_chaos),
        100.0 * median(&rate_iptables_in),
        100.0 * median(&rate_iptables_out)
    );
    let _ = writeln!(
        out,
        "| for scale: the target's own throughput at 0 % (program on every packet, never dropping) vs nothing armed | {} | |",
        targeted_zero.summary()
    );
    let _ = writeln!(
        out,
        "| for scale: time inside chaos's egress program per packet (kernel.bpf_stats_enabled) | {program_ns:.0} ns | |"
    );
    let _ = writeln!(out, "| for scale: CPU per packet with nothing armed | {:.0} ns | |", median(&cpu_none));
    let _ = writeln!(
        out,
        "\nCPU is all CPUs' busy time (/proc/stat: user, system, irq, softirq) over the run divided by packets \
         sent, so it includes the receiver. chaos drops in the sender's egress path and the sender sees no error, as \
         with real loss. iptables cannot do that at the sender: a DROP in OUTPUT makes `sendto()` fail with EPERM \
         (an errno fault, not loss), so the like-for-like anchor drops on arrival at the receiver, after the packet \
         crossed the link. Both placements are shown. Untargeted cgroups do not run chaos's \
         programs at all (they are attached to the target cgroup only), which is why the first ratio is 1 within \
         noise; the target itself pays for the cgroup-BPF hook on each packet, shown for scale."
    );
    Ok(out)
}

/// Per-round ratios a/b.
#[derive(Default)]
struct Ratios(Vec<f64>);

impl Ratios {
    fn push(&mut self, a: f64, b: f64) {
        self.0.push(a / b);
    }

    fn summary(&self) -> String {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(0.0, f64::max);
        format!("{:.3}x ({min:.3}-{max:.3})", median(&self.0))
    }
}

struct Run {
    pps: f64,
    cpu_ns_per_packet: f64,
    lost_share: f64,
}

fn measure(hosts: &TwoHosts, workload: &TestCgroup, to: SocketAddr) -> anyhow::Result<Run> {
    measure_n(hosts, workload, to, PACKETS)
}

fn measure_n(hosts: &TwoHosts, workload: &TestCgroup, to: SocketAddr, packets: u64) -> anyhow::Result<Run> {
    let sink = UdpSink::start(&hosts.b, to.port(), 300, false);
    let busy_before = busy_cpu_ns()?;
    let blast: BlastReport =
        Blast { to, sender_id: 1, count: packets, pps: 0, cgroup: Some(workload), netns: &hosts.a }.run();
    let busy = busy_cpu_ns()? - busy_before;
    let received = sink.finish().received_from(1);
    Ok(Run {
        pps: blast.pps(),
        cpu_ns_per_packet: busy as f64 / packets as f64,
        lost_share: 1.0 - received as f64 / packets as f64,
    })
}

/// chaos net drop armed on `cgroup` until dropped.
fn arm(cgroup: &TestCgroup, percent: &str, direction: &str) -> anyhow::Result<Chaos> {
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

/// `iptables -m statistic` dropping 20 % of the flow in a test namespace, removed on Drop.
struct IptablesDrop<'a> {
    ns: &'a str,
    rule: Vec<String>,
}

impl<'a> IptablesDrop<'a> {
    fn add(ns: &'a str, table: &str, chain: &str, port: u16) -> anyhow::Result<Self> {
        let port = port.to_string();
        let rule: Vec<String> = [
            "-t",
            table,
            chain,
            "-p",
            "udp",
            "--dport",
            &port,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.2",
            "-j",
            "DROP",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let this = Self { ns, rule };
        this.iptables("-A")?;
        Ok(this)
    }

    fn iptables(&self, action: &str) -> anyhow::Result<()> {
        // -t TABLE goes before the action: iptables -t raw -A PREROUTING ...
        let mut args = vec!["netns", "exec", self.ns, "iptables", &self.rule[0], &self.rule[1], action];
        args.extend(self.rule[2..].iter().map(String::as_str));
        util::output(std::process::Command::new("ip").args(&args), "bench: iptables").map(drop)
    }
}

impl Drop for IptablesDrop<'_> {
    fn drop(&mut self) {
        let _ = self.iptables("-D");
    }
}

/// The kernel's per-program run-time statistics, switched on for a measurement and back to
/// their previous setting on Drop (they cost a little on every program run).
pub(crate) struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(crate) fn enable() -> anyhow::Result<Self> {
        let previous = fs::read_to_string(BPF_STATS).context("read kernel.bpf_stats_enabled")?;
        fs::write(BPF_STATS, "1").context("enable kernel.bpf_stats_enabled")?;
        Ok(Self { previous })
    }

    /// Mean ns per run of the loaded program named `name`, from `bpftool -j prog show`.
    fn ns_per_run(&self, name: &str) -> anyhow::Result<f64> {
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
fn busy_cpu_ns() -> anyhow::Result<u64> {
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

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The load average now, as /proc/loadavg says it: a bench notes it at its start and end, since
/// the machine is shared and its other work is what widens the ranges.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

/// Where and when the figures were measured.
pub fn machine() -> String {
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
    format!("Measured {} on {cpu} ({cpus} CPUs), kernel {} (host tier).", date.trim(), kernel.trim())
}

/// Replaces (or appends) the section between this benchmark's markers in BENCHMARKS.md.
fn write_section(name: &str, body: &str) -> anyhow::Result<()> {
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

/// Host tier: how long a crash point takes, from the syscall's entry (a timestamp the process
/// writes to shared memory just before the call) to the process being reaped by its parent,
/// against the same crash from userspace (`strace -e inject=getppid:signal=KILL`, where the
/// parent is strace); and how long a frozen target waits for its guard after chaos is SIGKILLed.
fn proc_bench() -> anyhow::Result<String> {
    const CRASHES: usize = 200;
    const THAWS: usize = 20;
    let (cgroup, traced) = (TestCgroup::new(), TestCgroup::new());
    let scratch = chaos_tests::TempDir::new();
    let stamp_file = scratch.path().join("stamp");
    let stamp = stamp_file.display().to_string();
    let workload = chaos_tests::workload::workload_bin().display().to_string();
    let read_stamp = || -> anyhow::Result<u64> {
        let bytes = fs::read(&stamp_file)?;
        Ok(u64::from_ne_bytes(bytes.get(..8).context("short stamp file")?.try_into()?))
    };
    // One crash: start `wrapper... workload crash-stamp` in the cgroup, wait for it, return the
    // entry-to-reaped time.
    let crash = |wrapper: &[&str], cgroup: &TestCgroup| -> anyhow::Result<f64> {
        let (program, args): (&str, Vec<&str>) = match wrapper.split_first() {
            Some((first, rest)) => (first, rest.iter().copied().chain([workload.as_str()]).collect()),
            None => (workload.as_str(), Vec::new()),
        };
        let status = chaos_tests::workload::command_in(program, Some(cgroup), None)
            .args(args)
            .args(["crash-stamp", "--file", &stamp])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        let reaped = kernel::monotonic_ns();
        anyhow::ensure!(!status.success() || !wrapper.is_empty(), "the crash point did not kill the process");
        Ok(reaped.saturating_sub(read_stamp()?) as f64)
    };
    let (mut chaos_ns, mut strace_ns) = (Vec::new(), Vec::new());
    let strace = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=getppid", "-e", "inject=getppid:signal=KILL"];
    {
        // Armed on `cgroup` only: strace's runs go to `traced`, out of the crash point's reach.
        let mut armed =
            Chaos::start(&["proc", "kill", "--cgroup", cgroup.path(), "--on-syscall", "getppid", "--for", "30m", "-v"]);
        armed.wait_until_armed(Duration::from_secs(120));
        for round in 0..CRASHES {
            if round % 50 == 0 {
                eprintln!("bench proc (host): crashes {round}/{CRASHES}");
            }
            chaos_ns.push(crash(&[], &cgroup)?);
            strace_ns.push(crash(&strace, &traced)?);
        }
    }
    // Thaw latency: chaos SIGKILLed mid-pause; time until cgroup.events says thawed.
    let mut thaw_ns = Vec::new();
    let counter = chaos_tests::workload::command_in(&workload, Some(&cgroup), None)
        .args(["counter", "--file", &scratch.path().join("counter").display().to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _counter = Killed(counter);
    for round in 0..THAWS {
        eprintln!("bench proc (host): thaw {}/{THAWS}", round + 1);
        let mut chaos = Chaos::start(&["proc", "pause", "--cgroup", cgroup.path(), "--for", "60s", "-v"]);
        chaos.wait_until("the target is frozen", Duration::from_secs(60), || kernel::is_frozen(cgroup.dir()));
        chaos.signal(libc::SIGKILL);
        let killed = kernel::monotonic_ns();
        while kernel::is_frozen(cgroup.dir()) {
            anyhow::ensure!(kernel::monotonic_ns() - killed < 5_000_000_000, "still frozen 5 s after SIGKILL");
            std::thread::sleep(Duration::from_micros(100));
        }
        thaw_ns.push((kernel::monotonic_ns() - killed) as f64);
        drop(chaos.wait(Duration::from_secs(10)));
    }
    let percentile = |values: &[f64], p: f64| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
    };
    let us = |ns: f64| ns / 1e3;
    let mut out = String::new();
    let _ = writeln!(out, "## Process faults on the host (`cargo xtask bench proc`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "A process writes CLOCK_MONOTONIC into shared memory and makes one raw getppid(2); a crash point kills it \
         there (`proc kill --on-syscall getppid`, raw sys_enter tracepoint, SIGKILL), or strace does (`strace -f -e \
         inject=getppid:signal=KILL`, ptrace). The time runs from the stamp to the moment the parent has reaped the \
         process (for strace, its own exit after it saw the tracee die), {} crashes each, interleaved. Then \
         chaos is SIGKILLed {THAWS} times while it holds the target frozen (`proc pause`), and the time until \
         cgroup.events says thawed is measured.\n",
        chaos_ns.len()
    );
    let _ = writeln!(out, "| measurement | median | p99 | max |\n|---|---|---|---|");
    for (name, values) in
        [("crash point (chaos, in the kernel)", &chaos_ns), ("strace inject=...:signal=KILL", &strace_ns)]
    {
        let _ = writeln!(
            out,
            "| {name}: syscall entry to reaped | {:.0} us | {:.0} us | {:.0} us |",
            us(percentile(values, 50.0)),
            us(percentile(values, 99.0)),
            us(percentile(values, 100.0))
        );
    }
    let _ = writeln!(
        out,
        "| thaw after SIGKILL of chaos mid-pause (the guard) | {:.1} ms | | {:.1} ms |",
        percentile(&thaw_ns, 50.0) / 1e6,
        percentile(&thaw_ns, 100.0) / 1e6
    );
    let _ = writeln!(
        out,
        "\nThe strace figure includes strace noticing the death and exiting itself (it is the parent here), and \
         strace slows every syscall of the traced process by two ptrace stops; the crash point adds nothing to the \
         target before the call it kills. The guard thaws the target as soon as chaos starts to exit (it reads chaos's PF_EXITING flag every \
         2 ms while a freeze is recorded), before the kernel has finished tearing chaos down."
    );
    Ok(out)
}
