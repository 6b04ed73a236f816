//! The lint step that opens `cargo xtask test`: the Markdown links, formatting and clippy, in
//! well under a minute, before anything boots, so a style slip or a broken link between the
//! guide's pages fails in seconds instead of after the VM tiers.
use std::process::Command;

use anyhow::bail;

use crate::{links, structure, util};

/// One check: what it runs, and what to do when it fails.
struct Check {
    name: &'static str,
    command: Command,
    fix: &'static str,
}

/// Runs every check (all of them, so one run lists every problem) and fails naming each failed
/// check with the command to run.
pub(crate) fn run() -> anyhow::Result<()> {
    println!("== lint: Markdown links, the workspace's structure, rustfmt and clippy");
    let mut failed = Vec::new();
    let broken = links::check(&util::root())?;
    for link in &broken {
        eprintln!("{link}");
    }
    if !broken.is_empty() {
        failed.push(format!(
            "Markdown links failed: {} broken; fix each link, or the heading it names (GitHub's anchors)",
            broken.len()
        ));
    }
    let shape = structure::check(&util::root(), structure::EXCEPTIONS)?;
    for problem in &shape {
        eprintln!("{problem}");
    }
    if !shape.is_empty() {
        failed.push(format!(
            "the structure check failed: {} problem(s); move the code so data flows down, or name the exception \
             and its reason in xtask/src/structure.rs",
            shape.len()
        ));
    }
    for mut check in checks() {
        let passed = check.command.status().is_ok_and(|s| s.success());
        if !passed {
            failed.push(format!("{} failed: {}", check.name, check.fix));
        }
    }
    if !failed.is_empty() {
        bail!("lint: {} (the messages are above; CI runs the same checks)", failed.join("; "));
    }
    Ok(())
}

fn checks() -> Vec<Check> {
    // rustfmt.toml uses nightly-only import options; the nightly toolchain is there anyway for
    // the eBPF build. `rustup run` works whether or not `cargo` on PATH is rustup's proxy.
    let mut fmt = Command::new("rustup");
    fmt.args(["run", "nightly", "cargo", "fmt", "--all", "--check"]).current_dir(util::root());

    // AYA_BUILD_SKIP=1: clippy needs no eBPF object (chaos-user's build.rs writes an empty one).
    // Its own target directory: the build script reruns when AYA_BUILD_SKIP changes, so sharing
    // target/ would swap the real object for the empty one and rebuild chaos after every lint.
    let mut clippy = util::cargo();
    clippy
        .args(["clippy", "--all-targets", "--quiet", "--", "-D", "warnings"])
        .env("AYA_BUILD_SKIP", "1")
        .env("CARGO_TARGET_DIR", util::cache_dir().join("lint"));

    vec![
        Check { name: "formatting", command: fmt, fix: "run `cargo +nightly fmt --all`" },
        Check {
            name: "clippy",
            command: clippy,
            fix: "fix each warning that `AYA_BUILD_SKIP=1 cargo clippy --all-targets -- -D warnings` shows",
        },
        Check {
            name: "clippy on the eBPF crate",
            command: ebpf_clippy(),
            fix: "fix each warning that `cargo +nightly clippy -p chaos-ebpf --target bpfel-unknown-none \
                  -Z build-std=core --bins -- -D warnings` shows",
        },
    ]
}

/// chaos-ebpf is not a default member (it only builds for the BPF target), so the clippy above
/// never sees it: it is linted here for its own target, as aya lints its eBPF crates (its
/// xtask's `clippy`). The nightly toolchain and `-Z build-std=core` are what aya-build uses to
/// build it; `bpfel` is the target aya-build picks on a little-endian host. aya-ebpf's build
/// script sets `bpf_target_arch` to the host's architecture, as aya-build's flag does. Only the
/// binaries: the BPF target has no `test` crate, so `--all-targets` cannot build there.
fn ebpf_clippy() -> Command {
    let mut clippy = Command::new("rustup");
    clippy
        .args(["run", "nightly", "cargo", "clippy", "--quiet", "--package", "chaos-ebpf", "--bins"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--", "-D", "warnings"])
        .current_dir(util::root())
        // Its own directory: core built for the BPF target, kept between runs.
        .env("CARGO_TARGET_DIR", util::cache_dir().join("lint-ebpf"));
    clippy
}
