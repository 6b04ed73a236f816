//! `chaos __generate DIR`: the man pages (chaos(1) and one per subcommand, e.g.
//! chaos-net-drop(1)) and the bash, zsh and fish completions, generated from the clap
//! definitions `--help` prints. The binary generates its own, so what a package installs
//! describes exactly the binary beside it and cannot drift from `--help`; a build script or
//! xtask would need the whole library (and the eBPF toolchain) to see the same definitions.
use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

/// The man pages' manual (the centre of their header line): section 1's usual name.
const MANUAL: &str = "User Commands";

/// Writes `DIR/man/*.1` and `DIR/completions/{chaos.bash,_chaos,chaos.fish}`.
pub fn run(out_dir: &Path) -> anyhow::Result<ExitCode> {
    let man_dir = out_dir.join("man");
    let completions_dir = out_dir.join("completions");
    for dir in [&man_dir, &completions_dir] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    man_pages(&command, &man_dir, &mut pages)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut command = Cli::command();
        let path = clap_complete::generate_to(shell, &mut command, "chaos", &completions_dir)
            .with_context(|| format!("writing the {shell} completion into {}", completions_dir.display()))?;
        pages.push(path);
    }
    for path in pages {
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for `command` and, depth first, one for each visible subcommand (hidden ones such
/// as `__guard` are chaos's own helpers, not for people).
fn man_pages(command: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    // The date is needed: clap_mangen leaves an empty field in `.TH` without one, which shifts
    // the source and manual into the wrong fields of the page's header.
    let page = clap_mangen::Man::new(command.clone()).date(env!("CHAOS_SOURCE_DATE")).manual(MANUAL);
    let path = page.generate_to(dir).with_context(|| format!("writing a man page into {}", dir.display()))?;
    written.push(path);
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(subcommand, dir, written)?;
    }
    Ok(())
}
