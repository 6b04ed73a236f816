//! `cargo xtask bench`: side-by-side measurements written into BENCHMARKS.md.
//!
//! Every figure is a ratio of two things measured in the same run, variants interleaved round
//! by round so that drift hits them alike; medians over the rounds. The machine and kernel are
//! written next to the figures.
//!
//! This file only dispatches: [`Which`] is what `cargo xtask bench` can run, [`InVm`] the halves
//! that run inside a VM guest (`xtask bench-in-vm`). Each benchmark is a file of this folder
//! (`scale.rs` with its VM halves `scale_entry.rs` and `scale_lsm.rs`, and so on); what several
//! of them use is in `common` (ratios and medians, the machine line, BENCHMARKS.md sections,
//! readings of CPU and of BPF run time, the silent faults, the UDP flow), and `guest` runs a
//! half in a VM and reads its section back. Data flows down: a benchmark imports `common`,
//! `guest` and at most the benchmark it builds on (`syscall_lsm` the method of `syscall`,
//! `trace` the hooks of `floor`), never this file.
//!
//! Adding a benchmark NAME:
//! 1. `NAME.rs`, with a `//!` saying what it sets side by side and why, and `pub(super) fn
//!    NAME_bench() -> anyhow::Result<String>` returning its section: a `## ` title naming
//!    `cargo xtask bench NAME`, `common::machine()`, how it was measured (rounds, variants
//!    interleaved, `common::rotated`), a table of ratios measured in this run
//!    (`common::Ratios`, `common::median`) with their goals, and how to read the figures. What
//!    it creates (cgroups, namespaces, chaos processes) goes away on Drop, as in the tests.
//! 2. Here: `mod NAME;`, a [`Which`] variant (its doc line is its `--help` text; every variant
//!    runs when none is named, `override` excepted) and one `if` in [`run`] writing its section
//!    under its marker: `write_section("NAME", &NAME::NAME_bench()?)?`.
//! 3. A half that needs a VM kernel (BPF LSM, fentry, netem, error injection): `NAME_WHAT.rs`
//!    returning its section the same way (`common::machine_in` says which guest), an [`InVm`]
//!    variant with its arm in [`in_vm`], and in [`run`] `write_section("NAME-WHAT-vm",
//!    &guest::section(binaries, vm::KernelName::V6_12, "NAME-WHAT")?)?` (the variant's name in
//!    kebab case).
//!
//! A helper that a second benchmark needs moves to `common`; one benchmark's own plumbing stays
//! in its file.
use anyhow::bail;
use common::write_section;

use crate::{build, vm};

mod common;
mod daemon;
mod delay;
mod delay_net;
mod dns;
mod drop;
mod entry_hook;
mod floor;
mod guest;
mod limit;
mod net;
mod proc;
mod scale;
mod scale_entry;
mod scale_lsm;
mod service;
mod sever;
mod startup;
mod syscall;
mod syscall_lsm;
mod syscall_override;
mod trace;

/// The benchmarks, as `cargo xtask bench` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// Packet drop: untargeted throughput armed vs not, CPU per packet vs iptables.
    Drop,
    /// Network faults: `drop`, plus the same 20 % loss with tc netem vs chaos in the VM tier.
    Net,
    /// Syscall errors: chaos vs strace --inject, and untargeted overhead (host and VM tier).
    Syscall,
    /// Delays: syscall delay cost and untargeted overhead (host; fentry vs sys_enter in the VM
    /// tier); net delay vs tc netem (VM tier).
    Delay,
    /// Process faults: crash-point latency vs strace's signal injection, thaw after SIGKILL (host).
    Proc,
    /// Error injection: failed fsync vs strace --inject, and untargeted overhead of the kprobe
    /// (the kernel with error injection).
    // Not run when no benchmark is named: it needs the 6.1-errinj kernel, which Debian does not
    // ship (`floor` skips its own kprobe row without it).
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
    /// Connection sever: command to last reset for 10, 1 000 and 10 000 connections (against a
    /// bpf_sock_destroy iterator), and --after-bytes' CPU per packet against an empty program (host).
    Sever,
    /// Resource limits: a target at a quarter of a CPU by `chaos limit cpu` vs stress-ng in its
    /// cgroup: CPU burned, the share's steadiness, a neighbour's throughput (VM tier).
    Limit,
    /// DNS faults: untargeted lookups armed vs not, the target's other names through chaos vs
    /// direct, a failed lookup from chaos vs a resolver configured to fail it (host).
    Dns,
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
    /// `chaos limit cpu` vs stress-ng in the target (the host has no cgroup v2 controllers).
    Limit,
}

/// What `cargo xtask bench` was asked to run, checked before anything is built.
pub enum Selection {
    /// These benchmarks, in the order of [`run`].
    Benches(Vec<Which>),
    /// `floor --kernel 6.1-errinj`: the floor's kprobe row alone, in the error-injection VM.
    FloorErrinj,
}

/// `kernel` picks the VM half of a benchmark alone; only `floor` has one to pick (6.1-errinj:
/// the kprobe row). No benchmark named: all of them but `override` (see [`Which::Override`]).
pub fn select(which: &[Which], kernel: Option<vm::KernelName>) -> anyhow::Result<Selection> {
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
        return Ok(Selection::FloorErrinj);
    }
    if !which.is_empty() {
        return Ok(Selection::Benches(which.to_vec()));
    }
    let every = <Which as clap::ValueEnum>::value_variants();
    Ok(Selection::Benches(every.iter().copied().filter(|&w| w != Which::Override).collect()))
}

/// Runs the selected benchmarks with the built `binaries` (as root, the machine set up), each
/// writing its sections into BENCHMARKS.md.
pub fn run(selection: Selection, binaries: &build::Binaries) -> anyhow::Result<()> {
    let which = match selection {
        Selection::FloorErrinj => {
            let kernel = vm::ensure_kernel(vm::KernelName::V6_1ErrInj)?;
            write_section("floor-errinj", &floor::errinj_section(binaries, kernel)?)?;
            println!("figures written to BENCHMARKS.md");
            return Ok(());
        }
        Selection::Benches(which) => which,
    };
    // `net` includes the host drop figures: measure them once.
    if which.iter().any(|w| matches!(w, Which::Drop | Which::Net)) {
        write_section("drop", &drop::drop_bench()?)?;
    }
    if which.contains(&Which::Net) {
        write_section("netem", &guest::section(binaries, vm::KernelName::V6_12, "netem")?)?;
    }
    if which.contains(&Which::Syscall) {
        write_section("syscall-host", &syscall::syscall_connect_bench()?)?;
        write_section("syscall-vm", &guest::section(binaries, vm::KernelName::V6_12, "syscall")?)?;
    }
    if which.contains(&Which::Proc) {
        write_section("proc-host", &proc::proc_bench()?)?;
    }
    if which.contains(&Which::Delay) {
        write_section("delay-host", &delay::syscall_delay_bench()?)?;
        write_section("delay-vm", &guest::section(binaries, vm::KernelName::V6_12, "delay")?)?;
        write_section("delay-hooks-vm", &guest::section(binaries, vm::KernelName::V6_12, "delay-hooks")?)?;
    }
    if which.contains(&Which::Override) {
        write_section("override-vm", &guest::section(binaries, vm::KernelName::V6_1ErrInj, "override")?)?;
    }
    if which.contains(&Which::Daemon) {
        write_section("daemon", &daemon::daemon_bench()?)?;
    }
    if which.contains(&Which::Floor) {
        write_section("floor", &floor::floor_bench(binaries)?)?;
        // The kprobe row needs bpf_override_return: the error-injection kernel, when it is here.
        match vm::available_kernel(vm::KernelName::V6_1ErrInj)? {
            Some(kernel) => write_section("floor-errinj", &floor::errinj_section(binaries, kernel)?)?,
            None => eprintln!(
                "bench floor: the kprobe row needs the 6.1-errinj kernel, which is not here (its section is left \
                 as it was): {}",
                crate::errinj::HOW_TO_GET
            ),
        }
    }
    if which.contains(&Which::Trace) {
        write_section("trace", &trace::trace_bench(binaries)?)?;
    }
    if which.contains(&Which::Startup) {
        write_section("startup", &startup::startup_bench(binaries)?)?;
    }
    if which.contains(&Which::Service) {
        write_section("service", &service::service_bench()?)?;
    }
    if which.contains(&Which::Scale) {
        write_section("scale", &scale::scale_bench()?)?;
        write_section("scale-entry-vm", &guest::section(binaries, vm::KernelName::V6_12, "scale-entry")?)?;
        write_section("scale-lsm-vm", &guest::section(binaries, vm::KernelName::V6_12, "scale-lsm")?)?;
    }
    if which.contains(&Which::Sever) {
        write_section("sever", &sever::sever_bench()?)?;
    }
    if which.contains(&Which::Limit) {
        // stress-ng goes into the guest beside chaos (its libraries follow it).
        let kernel = vm::ensure_kernel(vm::KernelName::V6_12)?;
        write_section("limit-vm", &guest::section_on(binaries, &kernel, "limit", vec!["/usr/bin/stress-ng".into()])?)?;
    }
    if which.contains(&Which::Dns) {
        write_section("dns", &dns::dns_bench(binaries)?)?;
    }
    println!("figures written to BENCHMARKS.md");
    Ok(())
}

/// `xtask bench-in-vm`: runs inside the VM, prints its section between markers.
pub fn in_vm(which: InVm) -> anyhow::Result<()> {
    let section = match which {
        InVm::Netem => net::netem_bench()?,
        InVm::Syscall => syscall_lsm::syscall_open_bench()?,
        InVm::Delay => delay_net::net_delay_bench()?,
        InVm::Override => syscall_override::syscall_override_bench()?,
        InVm::Floor => floor::errinj_floor_bench()?,
        InVm::DelayHooks => entry_hook::syscall_delay_hooks_bench()?,
        InVm::ScaleLsm => scale_lsm::lsm_scale_bench()?,
        InVm::ScaleEntry => scale_entry::entry_scale_bench()?,
        InVm::Limit => limit::limit_bench()?,
    };
    guest::print_section(&section);
    Ok(())
}
