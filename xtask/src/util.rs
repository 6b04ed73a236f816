//! Running commands with errors that say which step failed.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Where xtask keeps downloads and generated files: under target/, so `cargo clean` resets it.
pub(crate) fn cache_dir() -> PathBuf {
    root().join("target").join("xtask")
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `command` with inherited output; fails naming `step` and the command.
pub(crate) fn run(command: &mut Command, step: &str) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("{step}: cannot start `{}`", describe(command)))?;
    if !status.success() {
        bail!("{step}: `{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns its stdout; on failure the error carries its stderr.
pub(crate) fn output(command: &mut Command, step: &str) -> anyhow::Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{step}: cannot start `{}`", describe(command)))?;
    if !out.status.success() {
        bail!(
            "{step}: `{}` failed ({}): {}",
            describe(command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo` as invoked by the user (keeps the toolchain of the outer cargo).
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root());
    command
}
