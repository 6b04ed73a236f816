//! `cargo xtask setup`: installs what a fresh machine lacks, and nothing it already has.
//! Every step checks first and stays silent when satisfied; a failing step says what to do.
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{errinj, util, vm};

/// The bpf-linker that loads the nightly's own LLVM (22); 0.11+ wants a system LLVM 23 that this
/// machine's Debian does not have. Installed exactly, never upgraded.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// Debian packages and why the project needs each.
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "boots the Debian kernels of the VM tier"),
    ("busybox-static", "the VM tier's userland"),
    ("cpio", "packs the VM tier's initramfs"),
    ("xz-utils", "unpacks the 6.12 kernel's compressed modules"),
    ("kmod", "depmod: module dependencies of the VM kernels"),
    ("iproute2", "test hosts: network namespaces and veth pairs"),
    ("ethtool", "tests that need checksums computed in software"),
    ("binutils", "strips debug info from binaries copied into the VM"),
    ("bpftool", "inspecting what is attached, when debugging"),
    ("iptables", "the anchor tool of the packet-drop benchmark"),
    ("strace", "the anchor tool of the syscall benchmarks"),
    ("openssl", "the verdict tests: a self-signed certificate and an HTTPS test server (s_server)"),
    (
        "prometheus",
        "the verdict and daemon tests: a real Prometheus (the Prometheus check queries it; it scrapes the daemon's /metrics)",
    ),
    ("chromium", "the verdict tests: renders `chaos report --html` headless, to a PNG"),
    ("nginx-light", "the real service of `cargo xtask bench service`, and the HTTP/2 server of the verdict tests"),
    ("curl", "the real client of the net sever test: its download from nginx is reset"),
    ("wrk", "the load generator of `cargo xtask bench service`"),
    // The container tests start each runtime themselves (private sockets and data directories);
    // the packages' own services are never started by chaos's tests.
    ("docker.io", "the container tests: a private dockerd that `--container` resolves through"),
    ("containerd", "the container tests: a private containerd holding kubelet-labelled \"pods\""),
    ("runc", "the OCI runtime dockerd and containerd start containers with"),
    ("podman", "the container tests: `podman system service`, the Docker-compatible socket"),
    ("crun", "the OCI runtime podman prefers"),
];

/// Whether setup installs Debian package `name` (the host tier's manifest has what it installs).
pub fn installs(name: &str) -> bool {
    PACKAGES.iter().any(|(package, _)| *package == name)
}

pub fn run() -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    for kernel in vm::KernelName::ALL.into_iter().filter(|k| k.is_debian_package()) {
        vm::ensure_kernel(kernel)?;
    }
    // Not in Debian's archive, and 20 minutes to build: say so, but do not build it unasked.
    if errinj::find()?.is_none() {
        eprintln!("setup: no 6.1-errinj kernel, so its VM tier will be skipped; {}", errinj::HOW_TO_GET);
    }
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let step = "setup: nightly toolchain";
    let installed = util::output(
        Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]),
        step,
    )
    .context("the eBPF crate builds with the nightly toolchain (-Z build-std); install it with `rustup toolchain install nightly`")?;
    // rust-src for -Z build-std=core; rustfmt because rustfmt.toml uses nightly-only options.
    for (component, why) in [("rust-src", "-Z build-std=core"), ("rustfmt", "the lint step of `cargo xtask test`")] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            eprintln!("setup: adding {component} to the nightly toolchain (needed for {why})");
            util::run(
                Command::new("rustup").args(["component", "add", component, "--toolchain", "nightly"]),
                &format!("setup: rustup component add {component}"),
            )?;
        }
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let current = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match current.as_deref() {
        Some(version) if version.ends_with(BPF_LINKER_VERSION) => return Ok(()),
        Some(other) => {
            eprintln!("setup: replacing {other} with bpf-linker {BPF_LINKER_VERSION} (newer ones need LLVM 23)")
        }
        None => eprintln!("setup: installing bpf-linker {BPF_LINKER_VERSION} (about 4 minutes, once)"),
    }
    util::run(
        util::cargo().args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}"), "--locked", "--force"]),
        "setup: cargo install bpf-linker",
    )
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().map(|(name, _)| *name).filter(|name| !is_installed(name)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "setup: Debian packages missing: {}; run `cargo xtask setup` as root (it uses apt-get)",
            missing.join(" ")
        );
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    util::run(Command::new("apt-get").args(["update", "-q", "-q"]), "setup: apt-get update")?;
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "setup: apt-get install",
    )
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"ii"))
}
