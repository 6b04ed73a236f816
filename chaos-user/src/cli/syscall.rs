//! `chaos syscall ...`: make chosen syscalls of a target cgroup fail or wait, and list them.
use std::{fmt::Write as _, process::ExitCode};

use clap::Subcommand;
use serde::Serialize;

use super::fault::FaultArgs;
use crate::{
    fault::syscall::{
        delay::SyscallDelayOptions,
        error_injection,
        fail::{Backend, Mechanism, Mechanisms, SyscallFailOptions},
        hooks::{Filter, SYSCALLS, entry_only},
    },
    features::Prober,
    os::syscall_table,
    report::OutputFormat,
};

#[derive(Debug, Subcommand)]
pub(super) enum SyscallCommand {
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
filters that apply. --backend auto takes BPF LSM where a hook serves the call, else error
injection (kernels with CONFIG_FUNCTION_ERROR_INJECTION and CONFIG_BPF_KPROBE_OVERRIDE: any
syscall, fsync included, fails at its entry before doing any work), else cgroup hooks:
  chaos syscall fail --cgroup /db --syscall fsync,fdatasync --errno EIO --path /var/lib/db --for 1m
On BPF LSM, --hook auto attaches the programs to the target cgroup (lsm_cgroup, Linux 6.0+) where
the kernel can, so other cgroups run nothing; --hook lsm attaches global ones, which every task
runs. Per cgroup, socket calls (connect, bind, listen, accept, send, recv) follow the cgroup the
socket was created in, as cgroup socket hooks do.")]
    Fail(Box<FaultArgs<SyscallFailOptions>>),
    /// Hold chosen syscalls of the target for a while before they return.
    #[command(after_help = "\
Examples:
  chaos syscall delay --cgroup /app --syscall read,write,fsync --by 50ms --for 60s
  chaos syscall delay --unit db.service --syscall fsync --by 200ms --jitter 50ms --percent 10 --for 5m
  chaos syscall delay --pid 4242 --syscall connect --by 1s --scope process --for 30s

A delayed call holds only its own thread (--scope thread, the default). The kernel decides which
call is delayed and signals that thread alone; chaos's holder process, which traces the target's
threads (PTRACE_SEIZE: nothing stops, no syscall is traced), keeps it stopped for the delay, then
resumes it. The caller sees its call's own time plus the delay; the other threads run on. Signals
the target gets pass through the holder unchanged (one round trip each). A process that joins
the target during the fault is stopped whole for its first delayed call, then held per thread.
A target another tracer holds (gdb, strace) is refused, naming the tracer.
--scope process stops the whole process instead (SIGSTOP, then SIGCONT from chaos; no tracing):
its other threads pause too, the delay counts from the call's entry, and delayed calls of one
process overlap.
Nothing stays stopped or traced: if chaos dies, even by SIGKILL, its holder (per process, its
guard) lets every task go at once; after the kernel deadline nothing new is held. --syscall takes
any x86_64 syscall by name (`chaos syscall list`). More in docs/syscall-delay.md.")]
    Delay(Box<FaultArgs<SyscallDelayOptions>>),
    /// Every x86_64 syscall: how chaos fails it here (mechanism, filters) and where a delay
    /// or a crash point of it catches the call.
    List,
}

impl SyscallCommand {
    pub(super) fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
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
    /// The `--backend` that `auto` picks here (`lsm`, `override`, `cgroup`), or none.
    backend: Option<&'static str>,
    /// What it attaches: the hook(s), or the kprobe on the entry function.
    mechanism: Option<String>,
    /// Every mechanism chaos has for it (whether or not this kernel offers it).
    lsm_hook: Option<&'static str>,
    cgroup_hooks: Vec<&'static str>,
    override_function: String,
    /// Why `--backend override` cannot serve it here (none: it can).
    override_refused: Option<String>,
    /// Where a delay or crash point of this one syscall catches it here with `--hook auto`:
    /// `fentry` on its entry function, else the raw `sys-enter` tracepoint.
    delay_hook: &'static str,
    filters: Vec<&'static str>,
    errnos: &'static str,
    /// Why this mechanism (what the better ones lack), or why none.
    note: String,
}

fn list(output: OutputFormat) {
    let kernel = Prober::new();
    let mechanisms = Mechanisms::probe(&kernel);
    let filter_names = |filter: Filter| match filter {
        Filter::Path => vec!["path"],
        Filter::Remote => vec!["remote", "remote-port"],
        Filter::None => vec![],
    };
    let fentry = fentry_entries(&kernel);
    let rows: Vec<Row> = SYSCALLS
        .iter()
        .chain(entry_only())
        .map(|syscall| {
            let lsm_hook = syscall.lsm.map(|h| h.name());
            let cgroup_hooks: Vec<&'static str> = syscall.cgroup.iter().map(|h| h.hook).collect();
            let override_function = error_injection::entry_function(syscall.name).unwrap_or_default();
            let chosen = mechanisms.choose(syscall, Backend::Auto);
            let (mechanism, errnos, note) = match &chosen {
                Ok((Mechanism::Lsm, _)) => (syscall.lsm.map(|h| h.hook.to_owned()), "any", String::new()),
                Ok((Mechanism::Override, _)) => (
                    Some(format!("kprobe/{override_function}")),
                    "any",
                    if syscall.lsm.is_some() {
                        "no BPF LSM here".to_owned()
                    } else {
                        "no LSM hook serves it".to_owned()
                    },
                ),
                Ok((Mechanism::Cgroup, _)) => {
                    let why = mechanisms.choose(syscall, Backend::Override).err().unwrap_or_default();
                    let note =
                        [syscall.cgroup_note, &why].iter().filter(|n| !n.is_empty()).copied().collect::<Vec<_>>();
                    (Some(cgroup_hooks.join(" + ")), "any (bpf_set_retval)", note.join("; "))
                }
                Err(why) => (None, "-", why.clone()),
            };
            Row {
                syscall: syscall.name,
                backend: chosen.as_ref().ok().map(|(m, _)| m.backend()),
                mechanism,
                lsm_hook,
                cgroup_hooks,
                override_function,
                override_refused: mechanisms.choose(syscall, Backend::Override).err(),
                delay_hook: if fentry.contains(syscall.name) { "fentry" } else { "sys-enter" },
                filters: chosen.map(|(_, f)| filter_names(f)).unwrap_or_default(),
                errnos,
                note,
            }
        })
        .collect();
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize")),
        OutputFormat::Text => {
            let mut out = format!(
                "{:<24} {:<9} {:<9} {:<34} {:<10} {:<21} notes\n",
                "syscall", "delay", "backend", "mechanism here", "filters", "errnos"
            );
            for row in &rows {
                let _ = writeln!(
                    out,
                    "{:<24} {:<9} {:<9} {:<34} {:<10} {:<21} {}",
                    row.syscall,
                    row.delay_hook,
                    row.backend.unwrap_or("-"),
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

/// The syscalls a delay (or crash point) of one syscall puts on fentry here: the kernel has BPF
/// trampolines and its BTF has the entry function. The BTF is read once for all of them.
fn fentry_entries(kernel: &Prober) -> std::collections::BTreeSet<&'static str> {
    if !kernel.syscall_entry_fentry("__x64_sys_read").ok {
        return std::collections::BTreeSet::new();
    }
    let with_entry: Vec<(&'static str, String)> =
        syscall_table::X86_64.iter().filter_map(|s| Some((s.name, s.entry_function()?))).collect();
    let functions: Vec<&str> = with_entry.iter().map(|(_, f)| f.as_str()).collect();
    let found = crate::os::btf::kernel_has_names(&functions).unwrap_or_default();
    with_entry.iter().zip(found).filter(|(_, found)| *found).map(|((name, _), _)| *name).collect()
}
