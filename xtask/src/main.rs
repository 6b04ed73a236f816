//! `cargo xtask <task>`: everything around the code, so that a fresh machine needs two commands
//! (`cargo xtask demo`, `cargo xtask test`) and nothing else.
//!
//! Each module has one job, and this file orders them: `setup` (what the machine needs), `build`
//! (cargo), `vm` (kernels and QEMU), then the tasks `test`, `bench`, `demo`, `package`. Data flows down:
//! setup uses vm (for its kernels), the tasks use what they need below them, and no module
//! imports one that imports it back; `util` (commands, paths), `errinj` (the 6.1-errinj kernel)
//! and `host_state` sit at the bottom.
mod bench;
mod build;
mod demo;
mod errinj;
mod host_state;
mod links;
mod lint;
mod package;
mod setup;
mod structure;
mod tally;
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
    /// Check the Markdown links, formatting and clippy, then run every test: the host tier, then
    /// the VM tier on each kernel.
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
        /// Skip the lint step: links, rustfmt and clippy (local iteration only: CI always runs it).
        #[arg(long)]
        skip_lint: bool,
    },
    /// Only the lint step that opens `test`: the Markdown links between the project's pages,
    /// rustfmt and clippy.
    Lint,
    /// Print each tier's manifest (tests/src/manifest.rs): how many tests it must run, and which
    /// are not on it and why; fails on a test with no line there.
    Manifest,
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
    /// Show chaos dropping packets for one cgroup, end to end, in test namespaces (installs
    /// only what the demo needs).
    Demo,
    /// Build release chaos and write into target/dist/ the Debian package (man pages,
    /// completions, the systemd unit, a default daemon.toml, the examples) and the container
    /// image the DaemonSet runs, as an OCI archive (loaded into the local Docker if one runs).
    Package {
        /// The cargo profile to package: `release` (what people install), or `dev` (the
        /// binary the tests already built, into target/dist/dev/: the package test checks the
        /// packaging without a release build, which takes 10+ minutes on two cores).
        #[arg(long, value_enum, default_value = "release")]
        profile: package::Profile,
    },
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
        Task::Lint => lint::run(),
        Task::Manifest => test::manifest(),
        Task::Vm { kernel, include, command } => run_in_vm(kernel, &include, &command),
        Task::Kernel { name: BuildableKernel::V6_1ErrInj } => errinj::build(),
        Task::Bench { which, kernel } => bench::select(&which, kernel)
            .and_then(|selection| bench::run(selection, &prepare_root_task("the benchmark", setup::Purpose::Tests)?)),
        Task::Demo => prepare_root_task("the demo", setup::Purpose::Demo).and_then(|_| demo::run()),
        Task::Package { profile } => setup::run_for(setup::Purpose::Package).and_then(|()| package::run(profile)),
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

/// For the tasks that run chaos on this machine (bench, demo): root first (they create cgroups,
/// network namespaces and BPF programs), then what `purpose` needs of setup, then the build
/// (the demo's without the integration tests), whose binaries the test helpers find through
/// the environment.
fn prepare_root_task(task: &str, purpose: setup::Purpose) -> anyhow::Result<build::Binaries> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("{task} creates cgroups, network namespaces and BPF programs: run it as root");
    }
    setup::run_for(purpose)?;
    let binaries = if purpose == setup::Purpose::Demo { build::build_bins()? } else { build::build_binaries()? };
    for (key, value) in binaries.env("host") {
        // SAFETY: xtask is still single-threaded here; the helpers read these variables.
        unsafe { std::env::set_var(key, value) };
    }
    Ok(binaries)
}

/// `cargo xtask vm`: the kernel first (a missing one fails before the build), then the binaries,
/// then the boot.
fn run_in_vm(name: vm::KernelName, include: &[PathBuf], command: &[String]) -> anyhow::Result<()> {
    let kernel = vm::ensure_kernel(name)?;
    let binaries = build::build_binaries()?;
    vm::run_command(&kernel, binaries.files(), binaries.env(&name.tier()), include, command)
}
