//! `chaos daemon`: run the service, check its configuration, or talk to a running one.
use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand, ValueEnum};

use crate::{
    daemon::{self, config::DEFAULT_CONFIG, control::Request},
    report::OutputFormat,
};

#[derive(Debug, Args)]
pub(super) struct DaemonArgs {
    #[command(subcommand)]
    command: Option<DaemonCommand>,
    /// The configuration file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Validate FILE and print the schedule of the next runs; attaches nothing.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// How the daemon logs (to stderr): text, or JSON lines for journald and log shippers.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// The control socket of the daemon to talk to (default: the configuration's).
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum DaemonCommand {
    /// Whether injection runs or is paused (and why), the runs under way, the next run.
    Status,
    /// Stop starting runs; with --now (the kill switch), end every running one at once.
    Pause {
        #[arg(long)]
        now: bool,
    },
    /// Start injecting again (after pause, a violated steady state, or the kill-switch file).
    Resume,
    /// Run one experiment of the catalogue now, by name (budgets and pause still apply).
    Run { name: String },
    /// End every running experiment; the schedule goes on.
    StopAll,
}

impl DaemonArgs {
    /// Whether this runs the service (which logs at info by default).
    #[must_use]
    pub(super) const fn serves(&self) -> bool {
        self.command.is_none() && self.check.is_none()
    }

    pub(super) fn run(&self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        if let Some(file) = &self.check {
            return daemon::check(file);
        }
        let Some(command) = &self.command else { return daemon::serve(&self.config) };
        let request = match command {
            DaemonCommand::Status => Request::Status,
            DaemonCommand::Pause { now } => Request::Pause { now: *now },
            DaemonCommand::Resume => Request::Resume,
            DaemonCommand::Run { name } => Request::Run { name: name.clone() },
            DaemonCommand::StopAll => Request::StopAll,
        };
        let socket = self.socket.clone().unwrap_or_else(|| daemon::control::socket_of(&self.config));
        daemon::control::run_client(&socket, &request, output == OutputFormat::Json)
    }
}
