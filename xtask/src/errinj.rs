//! The 6.1-errinj VM kernel: Debian's linux-source-6.1 with error injection and BPF kprobe
//! override (what `bpf_override_return` and fmod_ret need), every needed driver built in.
//! Where its bzImage is found, and `cargo xtask kernel 6.1-errinj`, which builds it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::util;

/// Points at a bzImage to use instead of the built or shared one.
pub(crate) const ENV_OVERRIDE: &str = "CHAOS_ERRINJ_KERNEL";

/// How to get the kernel when it is missing (printed in the test summary and in errors).
pub(crate) const HOW_TO_GET: &str = "build it with `cargo xtask kernel 6.1-errinj` (about 20 minutes on two cores), \
                              or point CHAOS_ERRINJ_KERNEL at a bzImage";

/// The prebuilt copy beside the clone (CI keeps `shared/` next to the repository), relative to
/// the workspace root.
const SHARED_COPY: &str = "../shared/kernels/6.1-errinj/bzImage";

/// Where `cargo xtask kernel 6.1-errinj` puts its result.
pub(crate) fn built_bzimage() -> PathBuf {
    output_dir().join("bzImage")
}

fn output_dir() -> PathBuf {
    util::cache_dir().join("kernels").join("6.1-errinj")
}

/// The bzImage to boot and where it came from: $CHAOS_ERRINJ_KERNEL, else the one built here,
/// else the shared prebuilt copy; `None` when there is none (the tier is then skipped).
pub(crate) fn find() -> anyhow::Result<Option<(PathBuf, String)>> {
    if let Some(path) = std::env::var_os(ENV_OVERRIDE).filter(|v| !v.is_empty()).map(PathBuf::from) {
        if !path.is_file() {
            bail!("{ENV_OVERRIDE}={} is not a file; point it at a bzImage or unset it", path.display());
        }
        return Ok(Some((path, format!("from {ENV_OVERRIDE}"))));
    }
    let built = built_bzimage();
    if built.is_file() {
        return Ok(Some((built, "built by `cargo xtask kernel 6.1-errinj`".into())));
    }
    let shared = util::root().join(SHARED_COPY);
    if shared.is_file() {
        return Ok(Some((shared, format!("prebuilt, {SHARED_COPY}"))));
    }
    Ok(None)
}

/// The kernel release a bzImage carries in its setup header (and a check that it is one).
pub(crate) fn release(bzimage: &Path) -> anyhow::Result<String> {
    let data = fs::read(bzimage).with_context(|| format!("read {}", bzimage.display()))?;
    release_in(&data).with_context(|| format!("{} is not an x86 bzImage", bzimage.display()))
}

/// The release in a bzImage's bytes. x86 boot protocol: "HdrS" at 0x202; at 0x20e the offset
/// (from 0x200) of the version string, "6.1.192-chaos-errinj (builder@host) #1 ...".
fn release_in(data: &[u8]) -> anyhow::Result<String> {
    if data.get(0x202..0x206) != Some(b"HdrS") {
        bail!("no HdrS boot header");
    }
    let offset = usize::from(u16::from_le_bytes([data[0x20e], data[0x20f]])) + 0x200;
    let version = data.get(offset..).unwrap_or_default();
    let end = version.iter().position(|&b| b == 0 || b == b' ').unwrap_or(version.len());
    if end == 0 {
        bail!("an empty kernel version string");
    }
    Ok(String::from_utf8_lossy(&version[..end]).into_owned())
}

/// Debian packages the build needs: the source and its configurations, and the tools of a
/// kernel build (dwarves for BTF).
const BUILD_PACKAGES: &[&str] = &[
    "linux-source-6.1",
    "linux-config-6.1",
    "build-essential",
    "dwarves",
    "flex",
    "bison",
    "libelf-dev",
    "libssl-dev",
    "bc",
    "xz-utils",
];

/// Options switched on over Debian's cloud-amd64 configuration, after `mod2noconfig` turned
/// every module off: what the tests use, built in, plus error injection and kprobe override.
const OPTIONS: &[&str] = &[
    "VETH",
    "NET_SCH_FQ",
    "NET_SCH_NETEM",
    "NET_SCH_INGRESS",
    "NET_CLS_BPF",
    "NET_ACT_BPF",
    "NET_ACT_MIRRED",
    "IFB",
    "NET_SCH_HTB",
    "NET_SCH_TBF",
    "NET_CLS_ACT",
    "BPF_LSM",
    "KPROBES",
    "KPROBE_EVENTS",
    "BPF_EVENTS",
    "FTRACE",
    "FUNCTION_TRACER",
    "DYNAMIC_FTRACE",
    "FUNCTION_ERROR_INJECTION",
    "BPF_KPROBE_OVERRIDE",
    "DEBUG_INFO_BTF",
    "NET_NS",
    "CGROUP_BPF",
    "CGROUP_FREEZER",
    "DEVTMPFS",
    "BLK_DEV_INITRD",
    "RD_GZIP",
    "SERIAL_8250_CONSOLE",
    "VIRTIO_PCI",
    "SECURITYFS",
    // Not in the prebuilt copy's written recipe but in its `config`: with these (and the two
    // options of DISABLED off), `make olddefconfig` gives that config byte for byte.
    "BPF_JIT_ALWAYS_ON",
    "DEVTMPFS_MOUNT",
    "NET_CLS_FLOWER",
    "DEBUG_INFO_DWARF5",
];

/// Switched off, for the same reason: DWARF 5 instead of the toolchain's default, and no module
/// signing step (there are no modules to sign).
const DISABLED: &[&str] = &["DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT", "MODULE_SIG_ALL"];

/// Options the result must have: without them the tier would test nothing new.
const REQUIRED: &[&str] = &["FUNCTION_ERROR_INJECTION", "BPF_KPROBE_OVERRIDE", "BPF_LSM", "DEBUG_INFO_BTF", "KPROBES"];

/// `cargo xtask kernel 6.1-errinj`: builds the kernel from Debian's source package, as
/// the recipe of the prebuilt copy says, into target/xtask/kernels/6.1-errinj/.
pub(crate) fn build() -> anyhow::Result<()> {
    let step = "kernel 6.1-errinj";
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{step}: installs Debian's linux-source-6.1 and build tools with apt-get: run it as root");
    }
    let started = Instant::now();
    eprintln!("{step}: installing {}", BUILD_PACKAGES.join(" "));
    util::run(
        Command::new("apt-get")
            // Waits for another apt-get to finish rather than failing on its lock.
            .args(["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "-q", "--no-install-recommends"])
            .args(BUILD_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &format!("{step}: apt-get install (run `apt-get update` first if a package is not found)"),
    )?;
    let tarball = Path::new("/usr/src/linux-source-6.1.tar.xz");
    let config = Path::new("/usr/src/linux-config-6.1/config.amd64_none_cloud-amd64.xz");
    for file in [tarball, config] {
        if !file.is_file() {
            bail!("{step}: {} is missing although its package is installed", file.display());
        }
    }

    // The unpacked tree is kept: the configuration below is made afresh each time and kbuild
    // rebuilds what it changes, so an interrupted build resumes. A tree whose unpacking did not
    // finish, or of another linux-source-6.1 (the marker holds the tarball's size and mtime), is
    // replaced; deleting a tree takes minutes on a busy disk, so only then.
    let work = util::cache_dir().join("kernel-build").join("6.1-errinj");
    let tree = work.join("linux-source-6.1");
    let unpacked = work.join("unpacked");
    let source = fs::metadata(tarball)?;
    let stamp = format!("{} {:?}\n", source.len(), source.modified()?);
    if fs::read_to_string(&unpacked).ok().as_deref() != Some(stamp.as_str()) {
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).with_context(|| format!("{step}: create {}", work.display()))?;
        eprintln!("{step}: unpacking {} into {}", tarball.display(), work.display());
        util::run(Command::new("tar").arg("-xf").arg(tarball).arg("-C").arg(&work), &format!("{step}: tar"))?;
        fs::write(&unpacked, &stamp)?;
    }

    let dot_config = util::output(Command::new("xzcat").arg(config), step)?;
    fs::write(tree.join(".config"), dot_config)?;
    let make = |args: &[&str]| -> anyhow::Result<()> {
        util::run(Command::new("make").args(args).current_dir(&tree), &format!("{step}: make {}", args.join(" ")))
    };
    let scripts_config = |args: &[&str]| -> anyhow::Result<()> {
        util::run(Command::new("scripts/config").args(args).current_dir(&tree), &format!("{step}: scripts/config"))
    };
    make(&["olddefconfig"])?;
    make(&["mod2noconfig"])?;
    let enable = OPTIONS.iter().flat_map(|option| ["--enable", option]);
    let disable = DISABLED.iter().flat_map(|option| ["--disable", option]);
    scripts_config(&enable.chain(disable).collect::<Vec<_>>())?;
    scripts_config(&[
        "--set-str",
        "LSM",
        "landlock,lockdown,yama,integrity,apparmor,bpf",
        "--set-str",
        "LOCALVERSION",
        "-chaos-errinj",
    ])?;
    make(&["olddefconfig"])?;
    let final_config = fs::read_to_string(tree.join(".config"))?;
    let missing: Vec<&str> =
        REQUIRED.iter().copied().filter(|o| !final_config.lines().any(|l| l == format!("CONFIG_{o}=y"))).collect();
    if !missing.is_empty() {
        bail!("{step}: the configuration lacks {} after olddefconfig (a dependency is off)", missing.join(", "));
    }
    // Beside the prebuilt copy is its exact config: a difference means another kernel.
    let shared_config = util::root().join(SHARED_COPY).with_file_name("config");
    if fs::read_to_string(&shared_config).is_ok_and(|shared| shared != final_config) {
        eprintln!("{step}: warning: the configuration differs from {} (diff it with .config)", shared_config.display());
    }

    let jobs = std::thread::available_parallelism().map_or(2, usize::from);
    eprintln!("{step}: make -j{jobs} bzImage (about 17 minutes on two cores)");
    make(&[&format!("-j{jobs}"), "bzImage"])?;

    let output = output_dir();
    fs::create_dir_all(&output)?;
    fs::copy(tree.join("arch/x86/boot/bzImage"), built_bzimage())?;
    fs::copy(tree.join(".config"), output.join("config"))?;
    let release = release(&built_bzimage())?;
    eprintln!(
        "{step}: {release} ready in {} min: {} (`cargo xtask test` boots it; the build tree {} can go)",
        started.elapsed().as_secs() / 60,
        built_bzimage().display(),
        work.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::release_in;

    #[test]
    fn the_release_is_read_from_the_boot_header_and_anything_else_is_refused() {
        let mut image = vec![0u8; 0x600];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let version = b"6.1.192-chaos-errinj (root@build) #1 SMP\0";
        image[0x500..0x500 + version.len()].copy_from_slice(version);
        assert_eq!(release_in(&image).unwrap(), "6.1.192-chaos-errinj");
        image[0x500] = 0;
        assert!(release_in(&image).is_err());
        assert!(release_in(b"#!/bin/sh\n").is_err());
    }
}
