//! `cargo xtask bench floor`: what each hook chaos uses costs with an empty program on it, set
//! beside what it costs with chaos's program (untargeted, and on the target at 0 %), all in one
//! run with the variants interleaved round by round.
//!
//! The host runs every hook its kernel has; the error-injection backend's kprobe needs
//! bpf_override_return, so its row runs in the 6.1-errinj VM (`bench floor --kernel 6.1-errinj`,
//! the `bench-in-vm floor` half). The empty programs are the test-only object `chaos-floor`
//! (chaos-ebpf/src/floor.rs), built with the real one by chaos-user's build script; `empty`
//! loads them with aya itself, `report` writes the tables. `trace` measures on the same hook and
//! setup.
pub(super) mod empty;
mod report;

use std::{net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context as _, bail};
use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos::{Chaos, chaos_bin},
    net::{Netns, TwoHosts},
    workload::{Resident, UdpSink, command_in, workload_bin},
};
use empty::Empty;

use super::{
    common::{BpfStats, SILENT_CONNECT_FAIL, held_program_ids, load_average, rotated},
    guest,
};
use crate::{build, vm};

const ROUNDS: usize = 5;
const GETPIDS: u64 = 1_000_000;
pub(super) const CONNECTS: u64 = 100_000;
const PACKETS: u64 = 100_000;
/// Emulated (TCG) and on an in-memory file, where fsync does no I/O: the probe is most of it.
/// 300 000 takes about two minutes a run there; the rounds' spread comes from the shared host
/// (100 000 and 300 000 spread alike), the count only keeps each run well above the clock's grain.
const FSYNCS: u64 = 300_000;
const PORT: u16 = 7400;
/// The entry function chaos's override backend probes for fsync.
const FSYNC_ENTRY: &str = "__x64_sys_fsync";

/// One hook: where chaos puts a program and which workload makes it run once per event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    SkbEgress,
    SkbIngress,
    Connect4,
    SysEnter,
    /// sys_enter again, against a program that makes the one helper call chaos's untargeted path
    /// makes (`floor_cgroup_id`): what chaos adds beyond the least a cgroup test costs.
    SysEnterCgroupTest,
    TcEgress,
    /// The error-injection backend (`--backend override`); only kernels with
    /// bpf_override_return load chaos's program there.
    KprobeFsync,
}

impl Hook {
    /// What the host kernel runs.
    const HOST: [Self; 6] =
        [Self::SkbEgress, Self::SkbIngress, Self::Connect4, Self::SysEnter, Self::SysEnterCgroupTest, Self::TcEgress];
    /// What needs the error-injection kernel.
    const ERRINJ: [Self; 1] = [Self::KprobeFsync];

    fn name(self) -> &'static str {
        match self {
            Self::SkbEgress => "cgroup_skb egress",
            Self::SkbIngress => "cgroup_skb ingress",
            Self::Connect4 => "cgroup connect4",
            Self::SysEnter => "raw tracepoint sys_enter",
            Self::SysEnterCgroupTest => "raw tracepoint sys_enter, against one cgroup helper call",
            Self::TcEgress => "TC egress (tcx)",
            Self::KprobeFsync => "kprobe __x64_sys_fsync",
        }
    }

    /// What one event is, for the table.
    fn event(self) -> &'static str {
        match self {
            Self::SkbEgress | Self::SkbIngress | Self::TcEgress => "UDP packet (64 B) across a veth pair",
            Self::Connect4 => "connect() on a UDP socket",
            Self::SysEnter | Self::SysEnterCgroupTest => "getpid()",
            Self::KprobeFsync => "fsync() on a small file in memory",
        }
    }

    /// The names of the empty program and chaos's (the kernel keeps 15 characters).
    fn programs(self) -> (&'static str, &'static str) {
        match self {
            Self::SkbEgress => ("floor_egress", "net_drop_egress"),
            Self::SkbIngress => ("floor_ingress", "net_drop_ingress"),
            Self::Connect4 => ("floor_connect4", "sys_connect4"),
            // The program on the tracepoint is the process's shared one, which tail-calls the
            // fault's: its run time includes the fault program's.
            Self::SysEnter => ("floor_sys_enter", "chaos_dispatch"),
            Self::SysEnterCgroupTest => ("floor_cgroup_id", "chaos_dispatch"),
            Self::TcEgress => ("floor_tc", "net_corrupt_egress"),
            Self::KprobeFsync => ("floor_kprobe", "sys_override"),
        }
    }

    /// Whether every task's events run the program (not only the attached cgroup's).
    fn global(self) -> bool {
        matches!(self, Self::SysEnter | Self::SysEnterCgroupTest | Self::TcEgress | Self::KprobeFsync)
    }

    /// The chaos command that puts its program on this hook, for `cgroup`, never firing.
    pub(super) fn chaos_args(self, cgroup: &str) -> Vec<String> {
        let args: &[&str] = match self {
            Self::SkbEgress => &["net", "drop", "--percent", "0", "--direction", "egress"],
            Self::SkbIngress => &["net", "drop", "--percent", "0", "--direction", "ingress"],
            Self::Connect4 => SILENT_CONNECT_FAIL,
            // getpid itself, so the untargeted run passes the syscall test and reaches the
            // cgroup test: the worst case for other cgroups.
            Self::SysEnter | Self::SysEnterCgroupTest => {
                &["syscall", "delay", "--syscall", "getpid", "--by", "1ms", "--percent", "0"]
            }
            Self::TcEgress => &["net", "corrupt", "--percent", "0", "--direction", "egress"],
            Self::KprobeFsync => {
                &["syscall", "fail", "--syscall", "fsync", "--backend", "override", "--errno", "EIO", "--percent", "0"]
            }
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
pub(super) struct Setup {
    hosts: TwoHosts,
    /// The workload's cgroup (its sockets, its syscalls).
    pub(super) target: TestCgroup,
    /// Where chaos is armed in the untargeted variant.
    other: TestCgroup,
    floor: PathBuf,
    /// Where the fsync loop's file lives.
    dir: TempDir,
    /// Members in namespace a, so that chaos finds the namespace for TC faults.
    _residents: [Resident; 2],
}

impl Setup {
    pub(super) fn new(floor: PathBuf) -> Self {
        let hosts = TwoHosts::new();
        let (target, other) = (TestCgroup::new(), TestCgroup::new());
        let residents = [Resident::start(&target, Some(&hosts.a)), Resident::start(&other, Some(&hosts.a))];
        Self { hosts, target, other, floor, dir: TempDir::new(), _residents: residents }
    }
}

/// CPU ns per event of the hook's workload, run in the target cgroup: the workload process's
/// own user + system time (from wait4), which other tasks on this shared machine do not inflate
/// the way they inflate wall time. This kernel has no IRQ time accounting, so the softirq work a
/// sender does for its own packets on the veth pair (the receiver's ingress path included) is
/// charged to the sender.
pub(super) fn measure(hook: Hook, setup: &Setup) -> anyhow::Result<f64> {
    let (getpids, connects) = (GETPIDS.to_string(), CONNECTS.to_string());
    let (fsyncs, file) = (FSYNCS.to_string(), setup.dir.join("data").display().to_string());
    let to = SocketAddr::from((TwoHosts::B, PORT)).to_string();
    let packets = PACKETS.to_string();
    let (args, netns, events): (Vec<&str>, Option<&Netns>, u64) = match hook {
        Hook::SysEnter | Hook::SysEnterCgroupTest => (vec!["getpid-loop", "--count", &getpids], None, GETPIDS),
        Hook::KprobeFsync => (vec!["fsync-loop", "--path", &file, "--count", &fsyncs], None, FSYNCS),
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
/// count), from the kernel's run-time statistics. Through aya, not bpftool: the VM has none.
pub(super) fn program_ns_per_run(pid: u32, name: &str) -> anyhow::Result<f64> {
    let held = held_program_ids(pid)?;
    for program in aya::programs::loaded_programs() {
        let Ok(program) = program else { continue };
        let shown = program.name_as_str().unwrap_or_default();
        if !held.contains(&program.id()) || (shown != name && !(shown.len() == 15 && name.starts_with(shown))) {
            continue;
        }
        let (time, runs) = (program.run_time().as_nanos() as f64, program.run_count());
        if runs == 0 {
            bail!("no run statistics for {name} (id {})", program.id());
        }
        return Ok(time / runs as f64);
    }
    bail!("process {pid} holds no program named {name}")
}

/// Time inside the programs per run (kernel.bpf_stats_enabled, measured apart: the statistics
/// slow every run a little): the empty program, chaos untargeted (global hooks only: elsewhere
/// it does not run for other cgroups), chaos on the target at 0 %, and on sys_enter chaos with a
/// fault on another syscall.
fn program_times(hook: Hook, setup: &Setup) -> anyhow::Result<[Option<f64>; 4]> {
    let _stats = BpfStats::enable()?;
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

/// One run over `hooks`: the interleaved rounds, then the time inside the programs.
struct Run {
    figures: Vec<Figures>,
    times: Vec<[Option<f64>; 4]>,
    load: String,
    load_after: String,
}

fn run(hooks: &[Hook], floor: PathBuf) -> anyhow::Result<Run> {
    let setup = Setup::new(floor);
    let load = load_average();
    let mut figures: Vec<Figures> =
        hooks.iter().map(|_| Figures { nothing: Vec::new(), added: Default::default() }).collect();
    for round in 0..ROUNDS {
        eprintln!("bench floor: round {}/{ROUNDS}", round + 1);
        for (hook, figures) in hooks.iter().zip(&mut figures) {
            // Rotate the order each round so no variant always runs first (warm caches, drift).
            let mut ns = [0.0; 4];
            for i in rotated(round, VARIANTS.len()) {
                ns[i] = measure_variant(*hook, VARIANTS[i], &setup)?;
            }
            figures.nothing.push(ns[0]);
            for (added, value) in figures.added.iter_mut().zip(&ns[1..]) {
                added.push(value - ns[0]);
            }
        }
    }
    let mut times = Vec::new();
    for &hook in hooks {
        // The rounds' figures stand without these: report a failure here and go on.
        times.push(program_times(hook, &setup).unwrap_or_else(|err| {
            eprintln!("bench floor: time inside the programs on {}: {err:#}", hook.name());
            [None; 4]
        }));
    }
    let load_after = load_average();
    Ok(Run { figures, times, load, load_after })
}

/// The host's hooks (`cargo xtask bench floor`, host half).
pub(super) fn floor_bench(binaries: &build::Binaries) -> anyhow::Result<String> {
    let run = run(&Hook::HOST, empty::floor_object(&binaries.chaos)?)?;
    Ok(report::host(&Hook::HOST, &run))
}

/// The floor object, for the VM job to copy in (at the same path, where the VM half finds it).
pub(super) fn floor_object(binaries: &build::Binaries) -> anyhow::Result<PathBuf> {
    empty::floor_object(&binaries.chaos)
}

/// The floor's kprobe row, in the error-injection VM (the floor object goes in beside chaos).
pub(super) fn errinj_section(binaries: &build::Binaries, kernel: vm::Kernel) -> anyhow::Result<String> {
    guest::section_on(binaries, &kernel, "floor", vec![floor_object(binaries)?])
}

/// Inside the error-injection VM (`xtask bench-in-vm floor`): the kprobe row.
pub(super) fn errinj_floor_bench() -> anyhow::Result<String> {
    let run = run(&Hook::ERRINJ, empty::floor_object(&chaos_bin())?)?;
    Ok(report::errinj(&Hook::ERRINJ, &run))
}
