//! `cargo xtask setup`: installs what a fresh machine lacks, and nothing it already has.
//! Every step checks first and stays silent when satisfied; a failing step says what to do.
//! Each task asks only for what it needs ([`Purpose`]): the demo does not install QEMU, kernels,
//! a browser or container runtimes; `cargo xtask test` installs everything.
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{errinj, util, vm};

/// What the machine is set up for; each purpose includes what the ones before it need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    /// `cargo xtask demo`: the eBPF toolchain, and test namespaces.
    Demo,
    /// `cargo xtask package`: a release build, cargo-deb and lintian.
    Package,
    /// `cargo xtask test`, `bench`, `setup`: everything, the VM tier's kernels included.
    Tests,
}

/// The bpf-linker that loads the nightly's own LLVM (22); 0.11+ wants a system LLVM 23 that this
/// machine's Debian does not have. Installed exactly, never upgraded.
const BPF_LINKER_VERSION: &str = "0.10.0";

/// cargo-deb, which writes the Debian package (`cargo xtask package`); pinned so that a package
/// built tomorrow is laid out as today's.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Debian packages, the first purpose that needs each, and why.
const PACKAGES: &[(&str, Purpose, &str)] = &[
    ("iproute2", Purpose::Demo, "test hosts: network namespaces and veth pairs"),
    ("dpkg-dev", Purpose::Package, "dpkg-shlibdeps: the package's Depends, from the libraries chaos links"),
    ("binutils", Purpose::Package, "strip (cargo-deb), and debug info stripped from binaries copied into the VM"),
    ("lintian", Purpose::Package, "checks the Debian package against Debian's policy"),
    ("man-db", Purpose::Tests, "the package test renders the man pages with `man --warnings`"),
    ("qemu-system-x86", Purpose::Tests, "boots the Debian kernels of the VM tier"),
    ("busybox-static", Purpose::Tests, "the VM tier's userland"),
    ("cpio", Purpose::Tests, "packs the VM tier's initramfs"),
    ("xz-utils", Purpose::Tests, "unpacks the 6.12 kernel's compressed modules"),
    ("kmod", Purpose::Tests, "depmod: module dependencies of the VM kernels"),
    ("ethtool", Purpose::Tests, "tests that need checksums computed in software"),
    ("bpftool", Purpose::Tests, "inspecting what is attached, when debugging"),
    ("iptables", Purpose::Tests, "the anchor tool of the packet-drop benchmark"),
    ("strace", Purpose::Tests, "the anchor tool of the syscall benchmarks"),
    (
        "dnsmasq-base",
        Purpose::Tests,
        "the DNS tests and benchmark: a real resolver on a test namespace's loopback (copied into the VMs)",
    ),
    ("bind9-dnsutils", Purpose::Tests, "the DNS tests: dig, a real client over UDP and TCP"),
    ("openssl", Purpose::Tests, "the verdict tests: a self-signed certificate and an HTTPS test server (s_server)"),
    (
        "prometheus",
        Purpose::Tests,
        "the verdict and daemon tests: a real Prometheus (the Prometheus check queries it; it scrapes the daemon's /metrics)",
    ),
    ("chromium", Purpose::Tests, "the verdict tests: renders `chaos report --html` headless, to a PNG"),
    (
        "nginx-light",
        Purpose::Tests,
        "the real service of `cargo xtask bench service`, and the HTTP/2 server of the verdict tests",
    ),
    ("curl", Purpose::Tests, "the real client of the net sever test: its download from nginx is reset"),
    ("wrk", Purpose::Tests, "the load generator of `cargo xtask bench service`"),
    // The container tests start each runtime themselves (private sockets and data directories);
    // the packages' own services are never started by chaos's tests.
    (
        "docker.io",
        Purpose::Tests,
        "the container tests: a private dockerd that `--container` resolves through, and that runs the image",
    ),
    ("containerd", Purpose::Tests, "the container tests: a private containerd holding kubelet-labelled \"pods\""),
    ("runc", Purpose::Tests, "the OCI runtime dockerd and containerd start containers with"),
    ("podman", Purpose::Tests, "the container tests: `podman system service`, the Docker-compatible socket"),
    ("crun", Purpose::Tests, "the OCI runtime podman prefers"),
    ("e2fsprogs", Purpose::Tests, "mkfs.ext4: the VM tier's disk image, which the limit io tests throttle with io.max"),
    (
        "stress-ng",
        Purpose::Tests,
        "the anchor tool of `cargo xtask bench limit` (stressors in the target, as Chaos Mesh runs them)",
    ),
];

/// Whether setup installs Debian package `name` (the host tier's manifest has what it installs).
pub fn installs(name: &str) -> bool {
    PACKAGES.iter().any(|(package, _, _)| *package == name)
}

/// `cargo xtask setup`: everything.
pub fn run() -> anyhow::Result<()> {
    run_for(Purpose::Tests)
}

/// What `purpose` needs, and nothing more.
pub fn run_for(purpose: Purpose) -> anyhow::Result<()> {
    nightly_rust_src(purpose)?;
    bpf_linker()?;
    debian_packages(purpose)?;
    if purpose >= Purpose::Package {
        cargo_deb()?;
    }
    if purpose < Purpose::Tests {
        return Ok(());
    }
    for kernel in vm::KernelName::ALL.into_iter().filter(|k| k.is_debian_package()) {
        vm::ensure_kernel(kernel)?;
    }
    // Not in Debian's archive, and 20 minutes to build: say so, but do not build it unasked.
    if errinj::find()?.is_none() {
        eprintln!("setup: no 6.1-errinj kernel, so its VM tier will be skipped; {}", errinj::HOW_TO_GET);
    }
    Ok(())
}
fn nightly_rust_src(purpose: Purpose) -> anyhow::Result<()> {
    let step = "setup: nightly toolchain";
    let installed = util::output(
        Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]),
        step,
    )
    .context("the eBPF crate builds with the nightly toolchain (-Z build-std); install it with `rustup toolchain install nightly`")?;
    // rust-src for -Z build-std=core; rustfmt because rustfmt.toml uses nightly-only options.
    let components = [
        ("rust-src", "-Z build-std=core", Purpose::Demo),
        ("rustfmt", "the lint step of `cargo xtask test`", Purpose::Tests),
    ];
    for (component, why, _) in components.into_iter().filter(|(_, _, needed_by)| *needed_by <= purpose) {
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

/// cargo-deb at exactly [`CARGO_DEB_VERSION`].
fn cargo_deb() -> anyhow::Result<()> {
    let current = Command::new("cargo-deb")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match current.as_deref() {
        Some(version) if version.split_whitespace().any(|word| word == CARGO_DEB_VERSION) => return Ok(()),
        Some(other) => eprintln!("setup: replacing {other} with cargo-deb {CARGO_DEB_VERSION}"),
        None => eprintln!("setup: installing cargo-deb {CARGO_DEB_VERSION} (about 2 minutes, once)"),
    }
    util::run(
        util::cargo().args(["install", &format!("cargo-deb@{CARGO_DEB_VERSION}"), "--locked", "--force"]),
        "setup: cargo install cargo-deb",
    )
}

fn debian_packages(purpose: Purpose) -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, needed_by, _)| *needed_by <= purpose)
        .map(|(name, _, _)| *name)
        .filter(|name| !is_installed(name))
        .collect();
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
