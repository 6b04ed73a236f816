use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
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
    match cli.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chaos: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
