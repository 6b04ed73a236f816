//! `cargo xtask package`: chaos as people install it. A release build (`--profile dev`: the
//! tests' debug build, into target/dist/dev/), then into target/dist/:
//! the Debian package (`deb`: the binary, man pages and completions it generates itself, the
//! systemd unit, a default daemon.toml, the examples) and the container image the DaemonSet
//! runs (`image`, written as an OCI archive by `oci`, without a network or a container
//! runtime; loaded into the local Docker when one answers).
//!
//! Each output is rebuilt only when something it is made of changed, so running it again (the
//! package test does) costs seconds.
mod deb;
mod image;
mod oci;

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::{Context as _, bail};

use crate::util;

/// The image's repository name; its tag is the version. deploy/kubernetes names exactly
/// `chaos:<version>` (tests/tests/manifests.rs checks it against this).
pub const IMAGE_REPOSITORY: &str = "chaos";

/// The workspace's version: the package's, the image's tag.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which build of chaos goes into the package and the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The optimised build people install.
    Release,
    /// The debug build the tests use (stripped like the release one).
    Dev,
}

impl Profile {
    /// cargo's (and cargo-deb's) name for it.
    fn cargo_name(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Dev => "dev",
        }
    }
}

pub fn run(profile: Profile) -> anyhow::Result<()> {
    let chaos = build(profile)?;
    let mut dist = util::root().join("target").join("dist");
    if profile == Profile::Dev {
        dist.push("dev");
    }
    fs::create_dir_all(&dist).with_context(|| format!("creating {}", dist.display()))?;
    let deb = deb::build(&chaos, &dist, profile.cargo_name())?;
    let image = image::build(&chaos, &dist)?;
    // A debug build is for the package test, which loads it into its own dockerd: the local
    // Docker's chaos:<version> stays the release one.
    if profile == Profile::Release {
        image::load_into_local_docker(&image)?;
    }
    println!("package: {}", deb.display());
    println!("package: {} (image {IMAGE_REPOSITORY}:{VERSION})", image.display());
    Ok(())
}

/// `cargo build --profile PROFILE` of the chaos binary; its path.
fn build(profile: Profile) -> anyhow::Result<PathBuf> {
    let profile = profile.cargo_name();
    println!("package: cargo build --profile {profile} --package chaos-user --bin chaos");
    let output = util::cargo()
        .args(["build", "--profile", profile, "--package", "chaos-user", "--bin", "chaos"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("package: cannot run cargo")?;
    if !output.status.success() {
        bail!("package: the {profile} build failed ({}); the compiler's messages are above", output.status);
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == "chaos")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("package: cargo built no chaos executable")
}

/// Whether `output` exists and is newer than every file of `inputs` (directories: their files).
fn is_fresh(output: &Path, inputs: &[PathBuf]) -> bool {
    let Ok(built) = fs::metadata(output).and_then(|m| m.modified()) else { return false };
    inputs.iter().all(|input| newest(input).is_some_and(|changed| changed <= built))
}

/// The newest modification time of a file, or of the files below a directory.
fn newest(path: &Path) -> Option<SystemTime> {
    let metadata = fs::metadata(path).ok()?;
    if !metadata.is_dir() {
        return metadata.modified().ok();
    }
    fs::read_dir(path)
        .ok()?
        .flatten()
        .map(|entry| newest(&entry.path()))
        .try_fold(metadata.modified().ok()?, |a, b| Some(a.max(b?)))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half
/// an archive and an interrupted run leaves the previous one.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("partial");
    let mut file = fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

/// Seconds since the epoch that the outputs are dated with: `SOURCE_DATE_EPOCH` (reproducible
/// builds), else the time of the commit, else 0: never the time of the build, so building the
/// same commit twice writes the same bytes.
fn source_date() -> u64 {
    if let Some(seconds) = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok()) {
        return seconds;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(util::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(0)
}
