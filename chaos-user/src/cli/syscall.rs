//! `chaos syscall ...`: make chosen syscalls of a target cgroup fail or wait, and list them.
use std::{fmt::Write as _, process::ExitCode};

use clap::Subcommand;
use serde::Serialize;

use super::fault::FaultArgs;
use crate::{
    fault::syscall::{
        delay::SyscallDelayOptions,
        fail::SyscallFailOptions,
        hooks::{Filter, SYSCALLS},
    },
    features::{self, Prober},
    report::OutputFormat,
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
    Fail(Box<FaultArgs<SyscallFailOptions>>),
    /// Hold chosen syscalls of the target for a while before they return.
    #[command(after_help = "\
Examples:
  chaos syscall delay --cgroup /app --syscall read,write,fsync --by 50ms --for 60s
  chaos syscall delay --unit db.service --syscall fsync --by 200ms --jitter 50ms --percent 10 --for 5m

eBPF cannot sleep, so the whole process is stopped (SIGSTOP) as the delayed call returns and
resumed (SIGCONT) when the delay is over: its other threads pause too, and concurrent delayed
calls of one process overlap. The caller sees the call take its own time plus the delay. A
guard process resumes every stopped task if chaos dies, even by SIGKILL; at the end of the run
(deadline or signal) every stopped task is resumed at once. --jitter spreads each delay
uniformly by up to that much either way.")]
    Delay(Box<FaultArgs<SyscallDelayOptions>>),
    /// Every syscall chaos can fail, the mechanism used on this kernel, and its filters.
    List,
}

impl SyscallCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            Self::Fail(args) => args.run(output),
            Self::Delay(args) => args.run(output),
            Self::List => {
                list(output);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
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
            let lsm_hook = syscall.lsm.map(|h| h.name());
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
                    mechanism: Some(hook.hook.to_owned()),
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
                Row {
                    syscall: syscall.name,
                    mechanism: None,
                    lsm_hook,
                    cgroup_hooks,
                    filters: vec![],
                    errnos: "-",
                    note: why,
                }
            }
        })
        .collect();
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize")),
        OutputFormat::Text => {
            let mut out =
                format!("{:<11} {:<34} {:<19} {:<21} notes\n", "syscall", "mechanism here", "filters", "errnos");
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
