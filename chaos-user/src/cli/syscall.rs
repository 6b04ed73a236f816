//! `chaos syscall ...`: make chosen syscalls of a target cgroup fail.
use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{TargetArgs, net::RunArgs};
use crate::{
    errno,
    features::{self, Prober},
    plan::syscall::{self as plan_syscall, Backend, Schedule, SyscallFaultSpec},
    report::OutputFormat,
    run,
    spec::{
        self, Ppm,
        net::{self as netspec, Cidr, NetFilters, PortSet},
    },
    syscalls::{self, Filter, SYSCALLS, Syscall},
    target::{self, CgroupFs},
};

#[derive(Debug, Subcommand)]
pub enum SyscallCommand {
    /// Make chosen syscalls of the target fail with an errno.
    #[command(after_help = "\
Examples:
  chaos syscall fail --cgroup /app --syscall openat,read --errno EIO --percent 10 --for 60s
  chaos syscall fail --unit db.service --syscall write --errno ENOSPC --path /var/lib/db --for 2m
  chaos syscall fail --cgroup /app --syscall connect --errno ECONNREFUSED --remote 10.0.3.0/24 --for 1m
  chaos syscall fail --pid 4242 --syscall openat --errno EACCES --first 3 --for 30s

Schedules count the fault's matching calls exactly, machine-wide: --after N leaves the first N
alone, --first N makes only the next N eligible, --every N only every Nth of those, --max K
fails at most K; --percent then draws among the eligible ones (default 100).
`chaos syscall list` shows every syscall, the mechanism this kernel offers for it, and the
filters that apply.")]
    Fail(Box<SyscallFailArgs>),
    /// Every syscall chaos can fail, the mechanism used on this kernel, and its filters.
    List,
}

#[derive(Debug, Args)]
pub struct SyscallFailArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Comma-separated syscall names (see `chaos syscall list`).
    #[arg(long = "syscall", value_name = "NAMES", value_parser = syscalls::parse_list)]
    syscalls: Vec<Vec<&'static Syscall>>,
    /// The error, by name or number: EIO, ENOSPC, ECONNREFUSED, EACCES, ETIMEDOUT, ...
    #[arg(long, value_parser = errno::parse)]
    errno: i32,
    /// Share of matching calls to fail, in percent.
    #[arg(long, value_parser = spec::parse_percent, default_value = "100")]
    percent: Ppm,
    /// Only files under this directory (or this file): file syscalls only.
    #[arg(long, value_name = "PREFIX")]
    path: Option<PathBuf>,
    /// Only calls whose peer address is in this prefix (repeatable): connect, sendto.
    #[arg(long, value_name = "CIDR", value_parser = netspec::parse_cidr)]
    remote: Vec<Cidr>,
    /// Only calls whose peer port is in this set.
    #[arg(long, value_name = "PORTS", value_parser = netspec::parse_ports)]
    remote_port: Vec<PortSet>,
    /// Leave the first N matching calls alone.
    #[arg(long, value_name = "N")]
    after: Option<u64>,
    /// Only the first N matching calls (after --after) are eligible.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    first: Option<u64>,
    /// Only every Nth eligible call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    every: Option<u64>,
    /// Fail at most K calls in all.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// The mechanism: BPF LSM hooks, cgroup socket hooks, or the best this kernel has.
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    #[command(flatten)]
    run: RunArgs,
}

impl SyscallCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            Self::Fail(args) => fail(*args, output),
            Self::List => {
                list(output);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn fail(args: SyscallFailArgs, output: OutputFormat) -> anyhow::Result<ExitCode> {
    spec::check_duration_cap(args.run.duration, args.run.i_know).map_err(anyhow::Error::msg)?;
    let mut chosen: Vec<&'static Syscall> = Vec::new();
    for syscall in args.syscalls.into_iter().flatten() {
        if !chosen.iter().any(|s| s.name == syscall.name) {
            chosen.push(syscall);
        }
    }
    if chosen.is_empty() {
        anyhow::bail!("--syscall is required: name the calls to fail, e.g. --syscall openat,read");
    }
    let mut remote_ports = PortSet::default();
    args.remote_port.iter().for_each(|p| remote_ports.extend(p));
    let target = CgroupFs::discover()?.resolve(&args.target.spec(), target::own_cgroup().as_deref())?;
    let kernel = Prober::new();
    let spec = SyscallFaultSpec {
        syscalls: chosen,
        errno: args.errno,
        percent: args.percent,
        path: args.path,
        filters: NetFilters { remote: args.remote, remote_ports, ..NetFilters::default() },
        schedule: Schedule { after: args.after, first: args.first, every: args.every, max: args.max },
        backend: args.backend,
        duration: args.run.duration,
    };
    let plan = plan_syscall::plan(&spec, target, &kernel)?;
    if args.run.dry_run {
        super::print_plan(&plan, output);
        return Ok(ExitCode::SUCCESS);
    }
    run::run_plan(&plan, output)
}

#[derive(Serialize)]
struct Row {
    syscall: &'static str,
    /// The mechanism `--backend auto` picks here, or none.
    mechanism: Option<String>,
    /// Every mechanism chaos has for it (whether or not this kernel offers it).
    lsm_hook: Option<&'static str>,
    cgroup_hooks: Vec<&'static str>,
    filters: Vec<&'static str>,
    errnos: &'static str,
    note: String,
}

fn list(output: OutputFormat) {
    let kernel = Prober::new();
    let lsm = kernel.family(features::SYSCALL_ERRNO_LSM);
    let cgroup = kernel.family(features::SYSCALL_ERRNO_CGROUP_HOOKS);
    let rows: Vec<Row> = SYSCALLS
        .iter()
        .map(|syscall| {
            let lsm_hook = syscall.lsm.map(|h| h.hook);
            let cgroup_hooks: Vec<&'static str> = syscall.cgroup.iter().map(|h| h.hook).collect();
            let filter_names = |filter: Filter| match filter {
                Filter::Path => vec!["path"],
                Filter::Remote => vec!["remote", "remote-port"],
                Filter::None => vec![],
            };
            if let (Some(hook), true) = (syscall.lsm, lsm.supported) {
                Row {
                    syscall: syscall.name,
                    lsm_hook,
                    cgroup_hooks,
                    mechanism: Some(format!("lsm/{}", hook.hook)),
                    filters: filter_names(syscall.lsm_filter),
                    errnos: "any",
                    note: String::new(),
                }
            } else if !syscall.cgroup.is_empty() && cgroup.supported {
                Row {
                    syscall: syscall.name,
                    mechanism: Some(cgroup_hooks.join(" + ")),
                    lsm_hook,
                    cgroup_hooks,
                    filters: filter_names(syscall.cgroup_filter),
                    errnos: "any (bpf_set_retval)",
                    note: syscall.cgroup_note.to_owned(),
                }
            } else {
                let why = if syscall.lsm.is_some() {
                    format!("needs BPF LSM: {}", lsm.reason.clone().unwrap_or_default())
                } else {
                    format!("needs cgroup hooks: {}", cgroup.reason.clone().unwrap_or_default())
                };
                Row { syscall: syscall.name, mechanism: None, lsm_hook, cgroup_hooks, filters: vec![], errnos: "-", note: why }
            }
        })
        .collect();
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize")),
        OutputFormat::Text => {
            let mut out = format!("{:<11} {:<34} {:<19} {:<21} notes\n", "syscall", "mechanism here", "filters", "errnos");
            for row in &rows {
                let _ = writeln!(
                    out,
                    "{:<11} {:<34} {:<19} {:<21} {}",
                    row.syscall,
                    row.mechanism.as_deref().unwrap_or("unavailable"),
                    if row.filters.is_empty() { "-".to_owned() } else { row.filters.join(", ") },
                    row.errnos,
                    row.note
                );
            }
            print!("{out}");
        }
    }
}
