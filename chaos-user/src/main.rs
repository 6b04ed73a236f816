use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // First, while the process has one thread: in a container, take the host's cgroup paths.
    let host_view = chaos::host_view::enter();
    let cli = chaos::cli::Cli::parse();
    let daemon = cli.daemon_log_format();
    let default_level = match (cli.verbosity(), daemon) {
        (0, Some(_)) | (1, _) => "info",
        (0, None) => "warn",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // The daemon's JSON lines are for journald and log shippers: one object per event.
    if daemon == Some(chaos::cli::LogFormat::Json) {
        logs.json().init();
    } else {
        logs.init();
    }
    match host_view {
        chaos::host_view::HostView::Own(reason) => {
            tracing::warn!("{reason}: cgroup paths are this container's, not the host's");
        }
        chaos::host_view::HostView::Joined => tracing::debug!("joined init's cgroup namespace"),
        chaos::host_view::HostView::Already => {}
    }
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chaos: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
