//! `cargo xtask bench floor`: what each hook chaos uses costs with an empty program on it, set
//! beside what it costs with chaos's program (untargeted, and on the target at 0 %), all in one
//! run with the variants interleaved round by round.
//!
//! The empty programs are the test-only object `chaos-floor` (chaos-ebpf/src/floor.rs), built
//! with the real one by chaos-user's build script; this module loads them with aya itself.
use std::{
    fmt::Write as _,
    fs,
    net::SocketAddr,
    os::fd::AsFd as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, RawTracePoint, SchedClassifier, TcAttachType,
    },
};
use chaos_tests::{
    cgroup::TestCgroup,
    chaos::Chaos,
    net::{Netns, TwoHosts},
    workload::{Resident, UdpSink, command_in, workload_bin},
};

use crate::{bench, build, util};

const ROUNDS: usize = 5;
const GETPIDS: u64 = 1_000_000;
const CONNECTS: u64 = 100_000;
const PACKETS: u64 = 100_000;
const PORT: u16 = 7400;

/// One hook: where chaos puts a program and which workload makes it run once per event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    SkbEgress,
    SkbIngress,
    Connect4,
    SysEnter,
    TcEgress,
}

impl Hook {
    const ALL: [Self; 5] = [Self::SkbEgress, Self::SkbIngress, Self::Connect4, Self::SysEnter, Self::TcEgress];

    fn name(self) -> &'static str {
        match self {
            Self::SkbEgress => "cgroup_skb egress",
            Self::SkbIngress => "cgroup_skb ingress",
            Self::Connect4 => "cgroup connect4",
            Self::SysEnter => "raw tracepoint sys_enter",
            Self::TcEgress => "TC egress (tcx)",
        }
    }

    /// What one event is, for the table.
    fn event(self) -> &'static str {
        match self {
            Self::SkbEgress | Self::SkbIngress | Self::TcEgress => "UDP packet (64 B) across a veth pair",
            Self::Connect4 => "connect() on a UDP socket",
            Self::SysEnter => "getpid()",
        }
    }

    /// The names of the empty program and chaos's (the kernel keeps 15 characters; bpftool shows
    /// the full name where the program's BTF has it).
    fn programs(self) -> (&'static str, &'static str) {
        match self {
            Self::SkbEgress => ("floor_egress", "net_drop_egress"),
            Self::SkbIngress => ("floor_ingress", "net_drop_ingress"),
            Self::Connect4 => ("floor_connect4", "sys_connect4"),
            Self::SysEnter => ("floor_sys_enter", "syscall_delay"),
            Self::TcEgress => ("floor_tc", "net_corrupt_egress"),
        }
    }

    /// Whether every task's events run the program (not only the attached cgroup's).
    fn global(self) -> bool {
        matches!(self, Self::SysEnter | Self::TcEgress)
    }

    /// The chaos command that puts its program on this hook, for `cgroup`, never firing.
    fn chaos_args(self, cgroup: &str) -> Vec<String> {
        let args: &[&str] = match self {
            Self::SkbEgress => &["net", "drop", "--percent", "0", "--direction", "egress"],
            Self::SkbIngress => &["net", "drop", "--percent", "0", "--direction", "ingress"],
            Self::Connect4 => &[
                "syscall",
                "fail",
                "--syscall",
                "connect",
                "--errno",
                "ECONNREFUSED",
                "--backend",
                "cgroup",
                "--percent",
                "0",
            ],
            // getpid itself, so the untargeted run passes the syscall test and reaches the
            // cgroup test: the worst case for other cgroups.
            Self::SysEnter => &["syscall", "delay", "--syscall", "getpid", "--by", "1ms", "--percent", "0"],
            Self::TcEgress => &["net", "corrupt", "--percent", "0", "--direction", "egress"],
        };
        let mut all: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        all.extend(["--cgroup", cgroup, "--for", "30m", "-v"].map(str::to_owned));
        all
    }
}

/// The variants measured for each hook, in the order of the table.
#[derive(Clone, Copy)]
enum Variant {
    Nothing,
    Empty,
    ChaosUntargeted,
    ChaosTargetZero,
}

const VARIANTS: [Variant; 4] = [Variant::Nothing, Variant::Empty, Variant::ChaosUntargeted, Variant::ChaosTargetZero];

/// The test hosts and cgroups every measurement runs in.
struct Setup {
    hosts: TwoHosts,
    /// The workload's cgroup (its sockets, its syscalls).
    target: TestCgroup,
    /// Where chaos is armed in the untargeted variant.
    other: TestCgroup,
    floor: PathBuf,
    /// Members in namespace a, so that chaos finds the namespace for TC faults.
    _residents: [Resident; 2],
}

/// The floor object aya-build wrote beside the real one: chaos-user's newest build output.
fn floor_object(binaries: &build::Binaries) -> anyhow::Result<PathBuf> {
    let build_dir = binaries.chaos.parent().context("chaos binary has no directory")?.join("build");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(&build_dir).with_context(|| format!("read {}", build_dir.display()))? {
        let path = entry?.path().join("out").join("chaos-floor");
        if let Ok(modified) = fs::metadata(&path).and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            newest = Some((modified, path));
        }
    }
    match newest {
        Some((_, path)) => Ok(path),
        None => bail!(
            "no chaos-floor object under {}/chaos-user-*/out: build chaos-user without AYA_BUILD_SKIP",
            build_dir.display()
        ),
    }
}

/// The empty program for one hook, loaded and attached; detached when dropped (aya's links are
/// owned by the object's file descriptors).
struct Empty {
    _ebpf: Ebpf,
}

impl Empty {
    fn attach(hook: Hook, setup: &Setup) -> anyhow::Result<Self> {
        let object = fs::read(&setup.floor)?;
        // No kernel BTF: nothing here needs CO-RE, and the LSM programs are not loaded here.
        let mut ebpf = EbpfLoader::new().btf(None).load(&object).context("load the chaos-floor object")?;
        let cgroup = || fs::File::open(setup.target.dir()).context("open the target cgroup");
        match hook {
            Hook::SkbEgress | Hook::SkbIngress => {
                let (name, kind) = if hook == Hook::SkbEgress {
                    ("floor_egress", CgroupSkbAttachType::Egress)
                } else {
                    ("floor_ingress", CgroupSkbAttachType::Ingress)
                };
                let program: &mut CgroupSkb = program(&mut ebpf, name)?;
                program.load()?;
                program.attach(cgroup()?.as_fd(), kind, CgroupAttachMode::Single)?;
            }
            Hook::Connect4 => {
                let program: &mut CgroupSockAddr = program(&mut ebpf, "floor_connect4")?;
                program.load()?;
                program.attach(cgroup()?.as_fd(), CgroupAttachMode::Single)?;
            }
            Hook::SysEnter => {
                let program: &mut RawTracePoint = program(&mut ebpf, "floor_sys_enter")?;
                program.load()?;
                program.attach("sys_enter")?;
            }
            Hook::TcEgress => {
                let program: &mut SchedClassifier = program(&mut ebpf, "floor_tc")?;
                program.load()?;
                in_netns(&setup.hosts.a, || Ok(program.attach("veth-a", TcAttachType::Egress).map(drop)?))?;
            }
        }
        Ok(Self { _ebpf: ebpf })
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).with_context(|| format!("no program {name} in chaos-floor"))?;
    Ok(program.try_into()?)
}

/// Runs `f` on a thread that has entered `netns` (aya attaches TC programs by interface name in
/// the calling thread's namespace); the process itself stays where it is.
fn in_netns(netns: &Netns, f: impl FnOnce() -> anyhow::Result<()> + Send) -> anyhow::Result<()> {
    let file = fs::File::open(netns.path()).with_context(|| format!("open {}", netns.path()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                use std::os::fd::AsRawFd as _;
                // SAFETY: a valid namespace descriptor; only this short-lived thread changes.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns into {}: {}", netns.name(), std::io::Error::last_os_error());
                }
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
    })
}

/// CPU ns per event of the hook's workload, run in the target cgroup: the workload process's
/// own user + system time (from wait4), which other tasks on this shared machine do not inflate
/// the way they inflate wall time. This kernel has no IRQ time accounting, so the softirq work a
/// sender does for its own packets on the veth pair (the receiver's ingress path included) is
/// charged to the sender.
fn measure(hook: Hook, setup: &Setup) -> anyhow::Result<f64> {
    let (getpids, connects) = (GETPIDS.to_string(), CONNECTS.to_string());
    let to = SocketAddr::from((TwoHosts::B, PORT)).to_string();
    let packets = PACKETS.to_string();
    let (args, netns, events): (Vec<&str>, Option<&Netns>, u64) = match hook {
        Hook::SysEnter => (vec!["getpid-loop", "--count", &getpids], None, GETPIDS),
        Hook::Connect4 => {
            (vec!["connect-loop", "--udp", "--to", &to, "--count", &connects], Some(&setup.hosts.a), CONNECTS)
        }
        Hook::SkbEgress | Hook::SkbIngress | Hook::TcEgress => (
            vec!["udp-blast", "--to", &to, "--id", "1", "--count", &packets, "--pps", "0"],
            Some(&setup.hosts.a),
            PACKETS,
        ),
    };
    // The receiver is in the target cgroup too, so ingress programs see its packets.
    let sink = (netns.is_some() && hook != Hook::Connect4)
        .then(|| UdpSink::start_in(&setup.target, &setup.hosts.b, PORT, 300));
    let child = command_in(workload_bin(), Some(&setup.target), netns)
        .args(&args)
        .stdout(Stdio::null())
        .spawn()
        .context("start the workload")?;
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaps our own child (std's Child is not waited on after this), valid pointers.
    if unsafe { libc::wait4(child.id() as i32, &raw mut status, 0, &raw mut usage) } < 0 {
        bail!("wait4 on the workload: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("the workload {args:?} failed (wait status {status})");
    }
    drop(sink.map(UdpSink::finish));
    let micros = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    Ok((micros(usage.ru_utime) + micros(usage.ru_stime)) * 1e3 / events as f64)
}

fn measure_variant(hook: Hook, variant: Variant, setup: &Setup) -> anyhow::Result<f64> {
    match variant {
        Variant::Nothing => measure(hook, setup),
        Variant::Empty => {
            let _empty = Empty::attach(hook, setup)?;
            measure(hook, setup)
        }
        Variant::ChaosUntargeted | Variant::ChaosTargetZero => {
            let cgroup = if matches!(variant, Variant::ChaosUntargeted) { &setup.other } else { &setup.target };
            let args = hook.chaos_args(cgroup.path());
            let mut chaos = Chaos::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
            chaos.wait_until_armed(Duration::from_secs(120));
            measure(hook, setup)
        }
    }
}

/// Mean ns per run of the program called `name` that process `pid` holds (found through its
/// descriptors, so other users' programs of the same name on this shared machine do not
/// count), from the kernel's run-time statistics.
fn program_ns_per_run(pid: u32, name: &str) -> anyhow::Result<f64> {
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let text = fs::read_to_string(entry?.path()).unwrap_or_default();
        let Some(id) = text.lines().find_map(|l| l.strip_prefix("prog_id:")).map(str::trim) else { continue };
        let json = util::output(Command::new("bpftool").args(["-j", "prog", "show", "id", id]), "bench: bpftool")?;
        let program: serde_json::Value = serde_json::from_str(&json)?;
        let shown = program["name"].as_str().unwrap_or_default();
        if shown != name && !(shown.len() == 15 && name.starts_with(shown)) {
            continue;
        }
        return match (program["run_time_ns"].as_f64(), program["run_cnt"].as_f64()) {
            (Some(time), Some(runs)) if runs > 0.0 => Ok(time / runs),
            _ => bail!("no run statistics for {name} (id {id}): {json}"),
        };
    }
    bail!("process {pid} holds no program named {name}")
}

/// Time inside the programs per run (kernel.bpf_stats_enabled, measured apart: the statistics
/// slow every run a little): the empty program, chaos untargeted (global hooks only: elsewhere
/// it does not run for other cgroups), chaos on the target at 0 %.
fn program_times(hook: Hook, setup: &Setup) -> anyhow::Result<[Option<f64>; 4]> {
    let _stats = bench::BpfStats::enable()?;
    let (empty_name, chaos_name) = hook.programs();
    let empty = {
        let _empty = Empty::attach(hook, setup)?;
        measure(hook, setup)?;
        program_ns_per_run(std::process::id(), empty_name)?
    };
    let chaos_on = |cgroup: &TestCgroup, syscall: &str| -> anyhow::Result<f64> {
        let args: Vec<String> = hook
            .chaos_args(cgroup.path())
            .into_iter()
            .map(|a| if a == "getpid" { syscall.to_owned() } else { a })
            .collect();
        let mut chaos = Chaos::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        chaos.wait_until_armed(Duration::from_secs(120));
        measure(hook, setup)?;
        program_ns_per_run(chaos.pid() as u32, chaos_name)
    };
    let untargeted = if hook.global() { Some(chaos_on(&setup.other, "getpid")?) } else { None };
    // The common untargeted case on sys_enter: a fault on another syscall, which the bitmap
    // test turns away before the cgroup test.
    let other_syscall = if hook == Hook::SysEnter { Some(chaos_on(&setup.other, "read")?) } else { None };
    Ok([Some(empty), untargeted, Some(chaos_on(&setup.target, "getpid")?), other_syscall])
}

/// Per hook and variant, the added ns per event in each round (variant less nothing).
struct Figures {
    nothing: Vec<f64>,
    added: [Vec<f64>; 3],
}

pub fn floor_bench(binaries: &build::Binaries) -> anyhow::Result<String> {
    let hosts = TwoHosts::new();
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let residents = [Resident::start(&target, Some(&hosts.a)), Resident::start(&other, Some(&hosts.a))];
    let setup = Setup { floor: floor_object(binaries)?, hosts, target, other, _residents: residents };
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut figures: Vec<Figures> =
        Hook::ALL.iter().map(|_| Figures { nothing: Vec::new(), added: Default::default() }).collect();
    for round in 0..ROUNDS {
        eprintln!("bench floor: round {}/{ROUNDS}", round + 1);
        for (hook, figures) in Hook::ALL.iter().zip(&mut figures) {
            // Rotate the order each round so no variant always runs first (warm caches, drift).
            let mut ns = [0.0; 4];
            for k in 0..VARIANTS.len() {
                let i = (k + round) % VARIANTS.len();
                ns[i] = measure_variant(*hook, VARIANTS[i], &setup)?;
            }
            figures.nothing.push(ns[0]);
            for (added, value) in figures.added.iter_mut().zip(&ns[1..]) {
                added.push(value - ns[0]);
            }
        }
    }
    let mut times = Vec::new();
    for hook in Hook::ALL {
        // The rounds' figures stand without these: report a failure here and go on.
        times.push(program_times(hook, &setup).unwrap_or_else(|err| {
            eprintln!("bench floor: time inside the programs on {}: {err:#}", hook.name());
            [None; 4]
        }));
    }
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(report(&figures, &times, load.trim(), load_after.trim()))
}

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.0} ({min:.0} to {max:.0})", bench::median(values))
}

/// The goal: chaos's untargeted added cost at most 1.25x the empty program's, or within 10 ns.
fn verdict(chaos: f64, empty: f64) -> (String, &'static str) {
    let ratio = if empty > 0.0 { format!("{:.2}x", chaos / empty) } else { "n/a".to_owned() };
    let met = chaos <= empty * 1.25 || chaos - empty <= 10.0;
    (ratio, if met { "met" } else { "missed" })
}

fn report(figures: &[Figures], times: &[[Option<f64>; 4]], load: &str, load_after: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## The floor: empty programs on chaos's hooks (`cargo xtask bench floor`)\n");
    let _ = writeln!(out, "{}\n", bench::machine());
    let _ = writeln!(
        out,
        "Load average at the start: {load}; at the end: {load_after} (the machine is shared with other jobs). The figures are the workload process's own CPU time (user + system, from wait4), which other tasks inflate far less than wall time; this kernel has no IRQ time accounting, so the softirq work a sender triggers for its packets on the veth pair (the receiver's ingress path included) is charged to it.\n\n\
         Per hook, {ROUNDS} rounds; in each round four variants run back to back in a rotating order: nothing \
         attached, an empty program that only returns \"pass\" on the same hook (the test-only object \
         `chaos-floor`), chaos's program armed for another cgroup (untargeted), and chaos's program on the \
         workload's own cgroup at 0 %. Added ns per event = variant less nothing within the round; median \
         (range) over rounds. Workloads: {GETPIDS} getpid(), {CONNECTS} connect() on a UDP socket, {PACKETS} UDP \
         packets sent as fast as one sender can (the receiver in the same cgroup, so ingress programs run for \
         every packet).\n"
    );
    let _ = writeln!(
        out,
        "| hook | event | CPU ns per event, nothing | added: empty program | added: chaos untargeted | added: chaos on target, 0 % | untargeted / empty (goal <= 1.25x or +10 ns) | target 0 % / empty |\n|---|---|---|---|---|---|---|---|"
    );
    for (hook, f) in Hook::ALL.iter().zip(figures) {
        let [empty, untargeted, zero] = [0, 1, 2].map(|i| bench::median(&f.added[i]));
        let (ratio, met) = if hook.global() {
            verdict(untargeted, empty)
        } else {
            ("n/a".to_owned(), "chaos's program does not run for other cgroups")
        };
        let zero_ratio = if empty > 0.0 { format!("{:.2}x", zero / empty) } else { "n/a".to_owned() };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {ratio} ({met}) | {zero_ratio} |",
            hook.name(),
            hook.event(),
            bench::median(&f.nothing),
            range(&f.added[0]),
            range(&f.added[1]),
            range(&f.added[2]),
        );
    }
    let _ = writeln!(
        out,
        "\nTime inside the program per run (kernel.bpf_stats_enabled, one run of each workload apart from the rounds; \
         this excludes the hook's own dispatch, which is the same for every program on a hook):\n\n\
         | hook | empty program | chaos untargeted | chaos on target, 0 % | untargeted / empty |\n|---|---|---|---|---|"
    );
    let ns = |t: Option<f64>| t.map_or_else(|| "not measured (see text)".to_owned(), |t| format!("{t:.1} ns"));
    for (hook, [empty, untargeted, zero, other_syscall]) in Hook::ALL.iter().zip(times) {
        let ratio = match (empty, untargeted) {
            (Some(e), Some(u)) if *e > 0.0 => format!("{:.2}x (+{:.1} ns)", u / e, u - e),
            _ => String::new(),
        };
        let untargeted_text = if hook.global() { ns(*untargeted) } else { "never runs for other cgroups".to_owned() };
        let _ = writeln!(out, "| {} | {} | {untargeted_text} | {} | {ratio} |", hook.name(), ns(*empty), ns(*zero));
        if let (Some(e), Some(o)) = (empty, other_syscall) {
            let _ = writeln!(
                out,
                "| {}, fault on `read` (the loop calls getpid) | {} | {} | | {:.2}x (+{:.1} ns) |",
                hook.name(),
                ns(*empty),
                ns(*other_syscall),
                o / e,
                o - e
            );
        }
    }
    let _ = writeln!(
        out,
        "\nOn the cgroup hooks (cgroup_skb, connect4) an untargeted cgroup never runs chaos's program: the \
         kernel runs a cgroup's own programs only, so the untargeted figure is the kernel's price of the hook \
         being in use anywhere (a static key, the cgroup's empty program array; for connect4 also the socket \
         lock the kernel takes around every connect() once any cgroup has that hook), which no program can \
         lower: the empty program pays it too, plus its own run. The raw sys_enter tracepoint and TC run for everyone: there the untargeted figure is \
         chaos's \"not my target\" test (syscall-number bitmap, then the task's ancestor cgroup; for TC, the \
         packet's socket cgroup) set against a program that does nothing. LSM hooks (file_open, \
         file_permission) need the VM tier: this host cannot load LSM programs (not measured here). Negative \
         figures are noise (an added cost below the machine's run-to-run spread); the packet rows of the first \
         table are dominated by it (under load the receive softirq is often deferred to ksoftirqd and charged \
         to it rather than to the sender), so for packet hooks the time inside the program is the figure to \
         read.\n\n\
         Where chaos's untargeted cost is above the empty program's (raw sys_enter, TC): its untargeted path \
         already takes the cheapest test first and touches no counter before the target test. On sys_enter: \
         the syscall-number bitmap (an array lookup, which the verifier inlines), then the configuration (also \
         inlined), then one helper call, bpf_get_current_ancestor_cgroup_id, and a compare; a fault on another \
         syscall stops at the bitmap. On TC egress: the configuration, then bpf_skb_ancestor_cgroup_id. The \
         difference is that one helper call, the least a program on a hook every task runs can do to tell the \
         target's tasks (or packets) from the others. It cannot be cut inside the program; it goes away with \
         a hook that does not run for other tasks at all: fentry on the one syscall (issue 15 part 2; this \
         host refuses tracing programs) or per-cgroup attachment (cgroup hooks, lsm_cgroup)."
    );
    out
}
