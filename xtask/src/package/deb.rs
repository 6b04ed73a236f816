//! The Debian package, `chaos_<version>_amd64.deb`. cargo-deb writes it from
//! `[package.metadata.deb]` in chaos-user/Cargo.toml (the files and where they go, Depends
//! computed by dpkg-shlibdeps, the unit's maintainer scripts, conffiles under /etc); this file
//! prepares what that table names (the man pages and completions chaos generates from its own
//! clap definitions) and has lintian check the result.
use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use flate2::{Compression, GzBuilder};

use super::{VERSION, is_fresh};
use crate::util;

/// Where the generated man pages and completions go: beside the release binary, where
/// `[package.metadata.deb]` names them (`target/release/` is cargo-deb's name for the real
/// release directory).
const GENERATED: &str = "chaos-package";

/// The package's changelog; its newest entry must be this version's.
const CHANGELOG: &str = "deploy/debian/changelog";

/// `profile`: cargo's name of the build `chaos` is from (cargo-deb reads its assets'
/// `target/release/` paths from that profile's directory).
pub fn build(chaos: &Path, dist: &Path, profile: &str) -> anyhow::Result<PathBuf> {
    let root = util::root();
    let deb = dist.join(format!("chaos_{VERSION}_amd64.deb"));
    let inputs = [
        chaos.to_path_buf(),
        root.join("deploy"),
        root.join("examples"),
        root.join("chaos-user/Cargo.toml"),
        root.join("README.md"),
    ];
    if is_fresh(&deb, &inputs) {
        println!("package: {} is up to date", deb.display());
        return Ok(deb);
    }
    check_changelog(&root.join(CHANGELOG))?;
    generate(chaos)?;
    util::run(
        util::cargo()
            .args(["deb", "--package", "chaos-user", "--no-build", "--strip", "--profile", profile, "--output"])
            .arg(&deb)
            .env("SOURCE_DATE_EPOCH", super::source_date().to_string()),
        "package: cargo deb",
    )?;
    lintian(&deb)?;
    Ok(deb)
}

/// The changelog's newest entry names this version: a release whose package says it is an
/// older one would confuse every tool that reads it.
fn check_changelog(path: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("package: reading {}", path.display()))?;
    let newest = text
        .lines()
        .next()
        .and_then(|line| line.split_once('(')?.1.split_once(')'))
        .map(|(version, _)| version.to_owned())
        .with_context(|| format!("package: {} does not start with `chaos (VERSION) ...`", path.display()))?;
    if newest != VERSION {
        bail!(
            "package: the newest entry of {} is for {newest}, but the workspace is at {VERSION}: add an entry for it",
            path.display()
        );
    }
    Ok(())
}

/// `chaos __generate` into the release directory, and the man pages gzipped as Debian wants
/// them (cargo-deb compresses only the files it does not see as build products).
fn generate(chaos: &Path) -> anyhow::Result<()> {
    let out = chaos.parent().context("the release binary's directory")?.join(GENERATED);
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("package: removing {}", out.display()))?;
    }
    util::output(Command::new(chaos).arg("__generate").arg(&out), "package: chaos __generate")?;
    let man = out.join("man");
    for entry in fs::read_dir(&man).with_context(|| format!("package: reading {}", man.display()))? {
        let page = entry?.path();
        if page.extension().is_none_or(|e| e != "1") {
            continue;
        }
        let text = fs::read(&page)?;
        let name = page.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        // No file name and a zero date in the gzip header (`gzip -n`): the same page, the same
        // bytes.
        let mut gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::best());
        gz.write_all(&text)?;
        fs::write(man.join(format!("{name}.gz")), gz.finish()?)?;
        fs::remove_file(&page)?;
    }
    Ok(())
}

/// lintian on the package: an error fails the build; warnings are printed (the package's
/// overrides, deploy/debian/lintian-overrides, say why each one left is as it is).
fn lintian(deb: &Path) -> anyhow::Result<()> {
    println!("package: lintian {}", deb.display());
    let output = Command::new("lintian")
        .args(["--fail-on", "error", "--display-info", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .context("package: cannot run lintian (`cargo xtask setup` installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        // Not left behind as if it were fresh: the next run builds and checks it again.
        let _ = fs::remove_file(deb);
        bail!("package: lintian found errors in {} (above)", deb.display());
    }
    Ok(())
}
