//! The `chaos` command line: one file per subcommand group; every fault's flags go through
//! the one pipeline in `fault.rs` (options, target, plan, run).
mod cleanup;
mod daemon;
mod dns;
mod doctor;
mod experiment;
mod fault;
mod generate;
mod limit;
mod net;
mod proc;
mod status;
mod syscall;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

pub use self::daemon::LogFormat;
use crate::{
    report::OutputFormat,
    targets::{
        TargetName,
        registry::{Narrowing, TARGET_KINDS, TargetKind},
    },
};

const EXAMPLES: &str = "\
Examples:
  chaos doctor                                  what this kernel supports, and why not
  chaos net drop --cgroup /my.slice/app --percent 20 --for 30s
  chaos net drop --pid 4242 --percent 5 --for 2m --direction egress --output json
  chaos run experiment.toml                     an experiment: faults, steady-state checks, verdict
  chaos status                                  running experiments

Exit status: 0 the fault ran to its deadline; 2 it could not run (bad input, missing target,
kernel or privileges lacking; nothing was changed); 130/143 stopped early by SIGINT/SIGTERM
(everything was detached).";

/// `chaos --version`: the release, the commit of the source it was built from, and when its
/// embedded eBPF object was built (both recorded by build.rs; "unknown" without git).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("CHAOS_GIT_COMMIT"),
    "\neBPF object built: ",
    env!("CHAOS_EBPF_BUILT")
);

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    version,
    long_version = LONG_VERSION,
    about = "Kernel-level fault injection for one cgroup, time-boxed by the kernel itself",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Output format of the final result (live progress always goes to stderr).
    #[arg(long, short, global = true, value_enum, default_value_t)]
    output: OutputFormat,
    /// More logging (-v, -vv); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Probe this kernel: which fault families work here, by which mechanism, and if not, why.
    #[command(after_help = "Example:\n  chaos doctor --output json | jq '.families[] | select(.supported)'")]
    Doctor,
    /// Network faults for a target cgroup.
    #[command(subcommand)]
    Net(Box<net::NetCommand>),
    /// Syscall faults for a target cgroup.
    #[command(subcommand)]
    Syscall(Box<syscall::SyscallCommand>),
    /// Process faults for a target cgroup: kill its processes, freeze it.
    #[command(subcommand)]
    Proc(Box<proc::ProcCommand>),
    /// Resource pressure through the target's own cgroup controls: CPU, memory, disk I/O, pids.
    #[command(subcommand)]
    Limit(Box<limit::LimitCommand>),
    /// DNS faults for a target cgroup: its lookups of chosen names fail, time out, come late or lie.
    #[command(subcommand)]
    Dns(Box<dns::DnsCommand>),
    /// Run an experiment file: several faults, a steady-state hypothesis, a timeline and a
    /// verdict. Exit status: 0 the hypothesis held, 1 it was violated, 2 it could not run.
    #[command(after_help = "\
Examples:
  chaos validate examples/dependency-latency.toml
  chaos run experiment.toml --dry-run           which programs attach where, with which maps
  chaos run experiment.toml --timeline run.jsonl
  chaos run experiment.toml --detach            pinned; `chaos status`, `chaos stop ID`")]
    Run(experiment::ExperimentArgs),
    /// Check an experiment file without running it (syntax, keys, types, values, fault
    /// options); errors point at file:line:column.
    Validate {
        file: PathBuf,
        /// Allow durations over the 1h cap.
        #[arg(long)]
        i_know: bool,
    },
    /// Print the summary of a saved timeline (JSON Lines); exits with its verdict's code.
    Report {
        file: PathBuf,
        /// Also write a self-contained HTML report (charts as inline SVG, no network).
        #[arg(long, value_name = "OUT.html")]
        html: Option<PathBuf>,
        /// Also write a learning-review document in Markdown.
        #[arg(long, value_name = "OUT.md")]
        markdown: Option<PathBuf>,
    },
    /// List the running experiments (foreground and detached): target, faults, time left, counts.
    Status,
    /// Stop an experiment by id (from `chaos status`), or all of them.
    Stop {
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// The node agent: runs the experiments of a catalogue on a schedule, within budgets,
    /// pausing on a violated steady state; or, with a subcommand, talks to the running one.
    #[command(after_help = "\
Examples:
  chaos daemon --config /etc/chaos/daemon.toml   run the service (systemd: deploy/systemd/chaos.service)
  chaos daemon --check /etc/chaos/daemon.toml    validate it and print the next runs
  chaos daemon status
  chaos daemon pause --now                       the kill switch: every fault detached at once
  chaos daemon resume")]
    Daemon(Box<daemon::DaemonArgs>),
    /// Remove what crashed runs left (legacy TC filters and their qdiscs, pins of ended detached
    /// experiments, records of dead runs) and say what was removed. Live runs are left alone.
    Cleanup,
    /// The guard of a syscall delay or a pause (started by chaos): resumes stopped tasks and
    /// thaws a frozen target if chaos dies.
    #[command(name = "__guard", hide = true)]
    Guard { cgroup_dir: PathBuf, resume_all_at_ns: u64 },
    /// A detached experiment's reaper (started by `chaos run --detach`).
    #[command(name = "__reap", hide = true)]
    Reap { id: String },
    /// Writes the man pages and shell completions generated from these definitions into
    /// DIR/man and DIR/completions (`cargo xtask package` runs it).
    #[command(name = "__generate", hide = true)]
    Generate { out_dir: PathBuf },
}

/// Exactly one way of naming the target: the flags of every kind in the target registry
/// (`targets::registry::TARGET_KINDS`, which experiment files and the daemon use too), and what
/// narrows a pod.
#[derive(Debug, Clone)]
pub struct TargetArgs {
    /// The kind given and its value, as typed.
    given: (&'static TargetKind, String),
    pod_options: PodOptions,
}

impl clap::Args for TargetArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let mut command = command.group(clap::ArgGroup::new("target").required(true).multiple(false));
        for kind in TARGET_KINDS {
            let mut arg =
                clap::Arg::new(kind.key).long(kind.key).value_name(kind.value_name).help(kind.help).group("target");
            if kind.numeric {
                arg = arg.value_parser(clap::value_parser!(u32));
            }
            command = command.arg(arg);
        }
        PodOptions::augment_args(command)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for TargetArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let given = TARGET_KINDS
            .iter()
            .find_map(|kind| {
                let value = if kind.numeric {
                    matches.get_one::<u32>(kind.key).map(u32::to_string)
                } else {
                    matches.get_one::<String>(kind.key).cloned()
                };
                value.map(|value| (kind, value))
            })
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::MissingRequiredArgument))?;
        Ok(Self { given, pod_options: PodOptions::from_arg_matches(matches)? })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// What narrows `--pod` and `--selector`; no group of its own, so the target group stays
/// "exactly one of" its direct flags.
#[derive(Debug, Args, Clone)]
#[group(skip)]
pub struct PodOptions {
    /// With --pod or --selector: only this container of the pod (its name in the pod spec).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["cgroup", "pid", "unit", "container"])]
    container_name: Option<String>,
    /// With --selector: only pods in this Kubernetes namespace.
    #[arg(long, value_name = "NAMESPACE", requires = "selector")]
    namespace: Option<String>,
    /// With --selector: the Nth pod it matches, numbered from 1 as the refusal lists them
    /// (`--pick-pod`, since proc kill's `--pick` chooses a process).
    #[arg(long, value_name = "N", requires = "selector")]
    pick_pod: Option<usize>,
    /// With --selector: every pod it matches at once (one-shot faults; each pod's cgroup gets
    /// its own copy of the fault, and the report one entry per pod).
    #[arg(long, requires = "selector", conflicts_with = "pick_pod")]
    all: bool,
}

impl TargetArgs {
    /// `--selector ... --all`: the fault goes on every matching pod.
    #[must_use]
    pub const fn every_pod(&self) -> bool {
        self.pod_options.all
    }

    #[must_use]
    pub fn spec(&self) -> TargetName {
        let (kind, value) = &self.given;
        let narrowing = Narrowing {
            container_name: self.pod_options.container_name.clone(),
            namespace: self.pod_options.namespace.clone(),
            pick: self.pod_options.pick_pod,
        };
        // clap parsed a numeric kind's value as a number already: naming cannot fail.
        kind.name(value.clone(), &narrowing).expect("clap checked the value")
    }
}

impl Cli {
    #[must_use]
    pub const fn verbosity(&self) -> u8 {
        self.verbose
    }

    /// Whether this runs the daemon, which logs at info level by default, and in which format.
    #[must_use]
    pub fn daemon_log_format(&self) -> Option<LogFormat> {
        match &self.command {
            Command::Daemon(args) if args.serves() => Some(args.log_format),
            _ => None,
        }
    }

    /// Runs the command. Errors are printed by the caller and mean "could not run" (exit 2).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Doctor => Ok(doctor::run(self.output)),
            Command::Net(command) => (*command).run(self.output),
            Command::Syscall(command) => (*command).run(self.output),
            Command::Proc(command) => (*command).run(self.output),
            Command::Limit(command) => (*command).run(self.output),
            Command::Dns(command) => (*command).run(self.output),
            Command::Run(args) => experiment::run(&args, self.output),
            Command::Validate { file, i_know } => experiment::validate(&file, i_know),
            Command::Report { file, html, markdown } => {
                experiment::report(&file, self.output, html.as_deref(), markdown.as_deref())
            }
            Command::Status => Ok(status::status(self.output)),
            Command::Stop { id, all } => status::stop(id.as_deref(), all),
            Command::Daemon(args) => args.run(self.output),
            Command::Cleanup => Ok(cleanup::run()),
            Command::Guard { cgroup_dir, resume_all_at_ns } => Ok(crate::os::guard::run(&cgroup_dir, resume_all_at_ns)),
            Command::Reap { id } => Ok(crate::experiment::detached::reap(&id)),
            Command::Generate { out_dir } => generate::run(&out_dir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("chaos").chain(args.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn net_drop_parses() {
        let cli = parse(&["net", "drop", "--cgroup", "/x", "--percent", "20", "--for", "30s"]).unwrap();
        assert!(matches!(cli.command, Command::Net(_)));
    }

    #[test]
    fn bad_flags_are_explained() {
        let cases: &[(&[&str], &str)] = &[
            (&["net", "drop", "--cgroup", "/x", "--percent", "101", "--for", "30s"], "is over 100 %"),
            (&["net", "drop", "--cgroup", "/x", "--percent", "20", "--for", "30"], "did you mean 30s?"),
            (&["net", "drop", "--cgroup", "/x", "--percent", "20", "--for", "0s"], "is zero"),
            (&["net", "drop", "--percent", "20", "--for", "30s"], "--cgroup <PATH>|--pid <PID>"),
            (
                &["net", "drop", "--cgroup", "/x", "--pid", "1", "--percent", "20", "--for", "30s"],
                "cannot be used with",
            ),
            (
                &["net", "drop", "--cgroup", "/x", "--percent", "20", "--for", "30s", "--direction", "up"],
                "invalid value 'up'",
            ),
            (
                &["net", "drop", "--pid", "abc", "--percent", "20", "--for", "30s"],
                "invalid value 'abc' for '--pid <PID>'",
            ),
        ];
        for (args, expected) in cases {
            let err = parse(args).expect_err(&format!("{args:?}"));
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }
}
