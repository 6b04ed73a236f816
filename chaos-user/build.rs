//! Builds the eBPF object (chaos-ebpf) with the nightly toolchain and bpf-linker, via aya-build,
//! into OUT_DIR/chaos and OUT_DIR/chaos-dispatch, which `src/engine/load.rs` and
//! `src/engine/dispatch.rs` embed.
//!
//! `AYA_BUILD_SKIP=1` skips that build (for clippy, docs, or a machine without the BPF
//! toolchain): an empty object is written instead, and loading it fails at run time with a
//! message that says so.
//!
//! It also records what `chaos --version` says of the build: the git commit of the source tree
//! (`CHAOS_GIT_COMMIT`) and when the embedded object was built (`CHAOS_EBPF_BUILT`); and the
//! source's date for the man pages (`CHAOS_SOURCE_DATE`). A build from a tree without git says
//! "unknown", and `SOURCE_DATE_EPOCH` (reproducible builds) sets the dates.
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow};

const EBPF_PACKAGE: &str = "chaos-ebpf";
/// The objects chaos-user embeds: the programs, and the shared raw sys_enter program.
const OBJECT_NAMES: [&str; 2] = ["chaos", "chaos-dispatch"];

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    record_commit();
    if skip {
        // aya-build writes nothing when skipping; `include_bytes!` still needs a file.
        for name in OBJECT_NAMES {
            fs::write(out_dir.join(name), [])?;
        }
        println!("cargo:rustc-env=CHAOS_EBPF_BUILT=none (built with AYA_BUILD_SKIP=1)");
        return Ok(());
    }

    let metadata = cargo_metadata::MetadataCommand::new().no_deps().exec()?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("package {EBPF_PACKAGE} not found in the workspace"))?;
    let root_dir =
        ebpf.manifest_path.parent().ok_or_else(|| anyhow!("{EBPF_PACKAGE} manifest has no parent directory"))?;
    // The shared types change the object too; aya-build only watches the eBPF crate itself.
    let common_dir = root_dir.join("../chaos-common");
    println!("cargo:rerun-if-changed={common_dir}");

    // aya-build forwards every line the nested cargo prints as a build warning; keep it to
    // real diagnostics (compiler warnings and errors still come through).
    // SAFETY: build scripts are single-threaded; the variable is read by the child cargo only.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package { name: EBPF_PACKAGE, root_dir: root_dir.as_str(), ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF object failed; `cargo xtask setup` installs what it needs \
         (nightly rust-src, bpf-linker 0.10.0)",
    )?;
    println!("cargo:rustc-env=CHAOS_EBPF_BUILT={}", object_built(&out_dir));
    Ok(())
}

/// `CHAOS_GIT_COMMIT`: the commit the source tree is at, or "unknown" (a tarball, no git);
/// the script runs again when HEAD moves, so the binary never names an older commit.
fn record_commit() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CHAOS_GIT_COMMIT={commit}");
    // The man pages' date: the source's (SOURCE_DATE_EPOCH, else the commit's), not the
    // build's, so that one commit gives the same pages.
    let date = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|seconds| utc(seconds)[..10].to_owned())
        .or_else(|| git(&["log", "-1", "--format=%cs"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CHAOS_SOURCE_DATE={date}");
    // HEAD, the branch it names (a loose ref) and the packed refs; only files that exist, since
    // cargo runs a script whose watched file is missing on every build.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"]), git(&["rev-parse", "--git-path", "packed-refs"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    for path in watched.into_iter().flatten() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The output of `git ARGS` in this crate's directory, or None (no git, not a repository).
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// When the object was linked: `SOURCE_DATE_EPOCH` if set, else the modification time of the
/// linked object in aya-build's own target directory (the copy in OUT_DIR is made anew each
/// time the script runs, even when nothing was rebuilt), else now.
fn object_built(out_dir: &Path) -> String {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let linked =
        out_dir.join("aya-build/target").join(EBPF_PACKAGE).join("bpfel-unknown-none/release").join(OBJECT_NAMES[0]);
    let seconds = env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        fs::metadata(&linked)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now())
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    utc(seconds)
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM:SS UTC" (humantime's RFC 3339, respelled).
fn utc(seconds: u64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    humantime::format_rfc3339_seconds(at).to_string().replace('T', " ").replace('Z', " UTC")
}
