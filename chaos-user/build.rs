//! Builds the eBPF object (chaos-ebpf) with the nightly toolchain and bpf-linker, via aya-build,
//! into OUT_DIR/chaos and OUT_DIR/chaos-dispatch, which `src/engine/load.rs` and
//! `src/engine/dispatch.rs` embed.
//!
//! `AYA_BUILD_SKIP=1` skips that build (for clippy, docs, or a machine without the BPF
//! toolchain): an empty object is written instead, and loading it fails at run time with a
//! message that says so.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

const EBPF_PACKAGE: &str = "chaos-ebpf";
/// The objects chaos-user embeds: the programs, and the shared raw sys_enter program.
const OBJECT_NAMES: [&str; 2] = ["chaos", "chaos-dispatch"];

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if skip {
        // aya-build writes nothing when skipping; `include_bytes!` still needs a file.
        for name in OBJECT_NAMES {
            fs::write(out_dir.join(name), [])?;
        }
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
    )
}
