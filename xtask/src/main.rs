//! `cargo xtask <task>`: everything around the code, so that a fresh machine needs two commands
//! (`cargo xtask demo`, `cargo xtask test`) and nothing else.
mod bench;
mod build;
mod demo;
mod errinj;
mod floor;
mod host_state;
mod lint;
mod service;
mod setup;
mod startup;
mod test;
mod util;
mod vm;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "chaos project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The kernels `cargo xtask kernel` can build.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BuildableKernel {
    /// Debian's linux-source-6.1 with error injection and BPF kprobe override, all built in
    /// (the recipe of the prebuilt copy; about 20 minutes on two cores).
    #[value(name = "6.1-errinj")]
    V6_1ErrInj,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the project needs: nightly rust-src, bpf-linker 0.10.0, Debian packages, and
    /// the Debian 6.1 / 6.12 kernels of the VM tier. Idempotent; quiet when nothing is missing.
    Setup,
    /// Check formatting and clippy, then run every test: the host tier, then the VM tier on each
    /// kernel.
    Test {
        /// Only the host tier.
        #[arg(long, conflicts_with = "vm_only")]
        host_only: bool,
        /// Only the VM tier.
        #[arg(long)]
        vm_only: bool,
        /// VM kernels to use (default: all).
        #[arg(long = "kernel", value_enum)]
        kernels: Vec<vm::KernelName>,
        /// Skip the rustfmt and clippy checks (local iteration only: CI always runs them).
        #[arg(long)]
        skip_lint: bool,
    },
    /// Boot a Debian kernel under QEMU (TCG) and run a command inside; exits with its status.
    /// The workspace's binaries, `ip` and `tc` are always there; the command's own file too.
    Vm {
        #[arg(long, value_enum)]
        kernel: vm::KernelName,
        /// More files to copy into the VM (same path inside; shared libraries follow).
        #[arg(long)]
        include: Vec<PathBuf>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Build a VM kernel that Debian does not ship, from Debian's source package.
    Kernel {
        #[arg(value_enum)]
        name: BuildableKernel,
    },
    /// Run benchmarks side by side and write the figures into BENCHMARKS.md.
    Bench {
        /// Which benchmarks (default: all).
        #[arg(value_enum)]
        which: Vec<bench::Which>,
        /// Only the benchmark's half in this VM kernel: `floor --kernel 6.1-errinj` measures the
        /// error-injection kprobe's row alone (the one kernel with bpf_override_return).
        #[arg(long, value_enum)]
        kernel: Option<vm::KernelName>,
    },
    /// Show chaos dropping packets for one cgroup, end to end, in test namespaces.
    Demo,
    /// Inside a VM only: the VM half of a benchmark (prints a BENCHMARKS.md section).
    #[command(hide = true)]
    BenchInVm {
        #[arg(value_enum)]
        which: bench::InVm,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Test { host_only, vm_only, kernels, skip_lint } => {
            let lint = if skip_lint { Ok(()) } else { lint::run() };
            lint.and_then(|()| test::run(!vm_only, !host_only, &kernels))
        }
        Task::Vm { kernel, include, command } => vm::run_command(kernel, &include, &command),
        Task::Kernel { name: BuildableKernel::V6_1ErrInj } => errinj::build(),
        Task::Bench { which, kernel } => bench::run(&which, kernel),
        Task::Demo => demo::run(),
        Task::BenchInVm { which } => bench::in_vm(which),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
