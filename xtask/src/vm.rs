//! The VM tier: Debian kernels under QEMU (TCG: KVM hangs on the machines this project runs on),
//! booted into a busybox initramfs that carries the binaries to run and what they need.
//!
//! Kernels come from Debian's archive through a private apt configuration (its own sources file
//! and lists under target/), so the system's apt configuration is never touched.
use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use crate::{errinj, util};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelName {
    /// Debian 12's own kernel: legacy TC only, BPF LSM, fq and netem as modules.
    #[value(name = "6.1")]
    V6_1,
    /// Debian 12 backports: tcx, BPF LSM, fq and netem as modules.
    #[value(name = "6.12")]
    V6_12,
    /// Debian's 6.1 source built with error injection and BPF kprobe override, everything built
    /// in (no modules). Not in Debian's archive: prebuilt beside the clone, or `cargo xtask kernel`.
    #[value(name = "6.1-errinj")]
    V6_1ErrInj,
}

impl KernelName {
    pub const ALL: [Self; 3] = [Self::V6_1, Self::V6_12, Self::V6_1ErrInj];

    pub const fn label(self) -> &'static str {
        match self {
            Self::V6_1 => "6.1",
            Self::V6_12 => "6.12",
            Self::V6_1ErrInj => "6.1-errinj",
        }
    }

    /// Whether the kernel is a package of Debian's archive (so `cargo xtask setup` downloads it).
    pub const fn is_debian_package(self) -> bool {
        !matches!(self, Self::V6_1ErrInj)
    }

    pub fn tier(self) -> String {
        format!("vm-{}", self.label())
    }

    const fn suite(self) -> &'static str {
        match self {
            Self::V6_1 | Self::V6_1ErrInj => "bookworm",
            Self::V6_12 => "bookworm-backports",
        }
    }
}

/// A kernel unpacked in the cache, ready to boot.
pub struct Kernel {
    pub name: KernelName,
    pub vmlinuz: PathBuf,
    /// lib/modules/<release>
    pub modules: PathBuf,
    pub package: String,
}

fn kernel_dir(name: KernelName) -> PathBuf {
    util::cache_dir().join("vm").join("kernels").join(name.label())
}

/// The kernel, downloaded and unpacked once for Debian's; an error when the 6.1-errinj one is
/// nowhere to be found (it says how to get it).
pub fn ensure_kernel(name: KernelName) -> anyhow::Result<Kernel> {
    available_kernel(name)?.ok_or_else(|| anyhow!("no {} kernel here: {}", name.label(), errinj::HOW_TO_GET))
}

/// The kernel if this machine has it or can download it; `None` only for the 6.1-errinj kernel
/// when no bzImage of it is found (`cargo xtask test` then skips its tier, saying so).
pub fn available_kernel(name: KernelName) -> anyhow::Result<Option<Kernel>> {
    if name.is_debian_package() {
        return ensure_debian_kernel(name).map(Some);
    }
    let Some((bzimage, origin)) = errinj::find()? else { return Ok(None) };
    let release = errinj::release(&bzimage)?;
    // Everything is built in: the module loader finds nothing to load in an empty modules.dep.
    let modules = kernel_dir(name).join("lib/modules").join(&release);
    fs::create_dir_all(&modules).with_context(|| format!("create {}", modules.display()))?;
    fs::write(modules.join("modules.dep"), "")?;
    let package = format!("{release} ({origin})");
    Ok(Some(Kernel { name, vmlinuz: bzimage, modules, package }))
}

/// Downloads and unpacks the kernel once; afterwards returns the cached one silently.
fn ensure_debian_kernel(name: KernelName) -> anyhow::Result<Kernel> {
    let dir = kernel_dir(name);
    let ready = dir.join("ready");
    if let Ok(package) = fs::read_to_string(&ready) {
        return locate(name, &dir, package.trim());
    }
    let step = format!("setup: Debian {} kernel", name.label());
    eprintln!("{step}: downloading from the {} suite", name.suite());
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("apt/sources")).with_context(|| format!("{step}: create {}", dir.display()))?;
    fs::create_dir_all(dir.join("apt/lists/partial"))?;
    fs::create_dir_all(dir.join("deb"))?;
    fs::write(dir.join("apt/sources/chaos-vm.sources"), private_sources(name.suite())?)?;
    let apt_options = |command: &mut Command| {
        command.args([
            "-q",
            "-o",
            "Dir::Etc::SourceList=/dev/null",
            &format!("-o=Dir::Etc::SourceParts={}", dir.join("apt/sources").display()),
            &format!("-o=Dir::State::Lists={}", dir.join("apt/lists").display()),
            "-o",
            "APT::Sandbox::User=root",
        ]);
    };
    let mut update = Command::new("apt-get");
    apt_options(&mut update);
    util::output(update.arg("update"), &step).context("is Debian's archive reachable?")?;
    let mut depends = Command::new("apt-cache");
    apt_options(&mut depends);
    let depends = util::output(depends.args(["depends", "linux-image-amd64"]), &step)?;
    let wanted = format!("linux-image-{}.", name.label());
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with(&wanted))
        .ok_or_else(|| {
            anyhow!("{step}: linux-image-amd64 in {} depends on no {wanted}* package:\n{depends}", name.suite())
        })?
        .to_owned();
    let mut download = Command::new("apt-get");
    apt_options(&mut download);
    util::output(download.args(["download", &package]).current_dir(dir.join("deb")), &step)?;
    let deb = fs::read_dir(dir.join("deb"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| anyhow!("{step}: apt-get download left no .deb"))?;
    util::output(Command::new("dpkg").arg("-x").arg(&deb).arg(dir.join("root")), &step)?;
    fs::remove_file(&deb)?;
    let kernel = locate(name, &dir, &package)?;
    // The package ships no modules.dep (depmod makes it at install time): make it here.
    let release = kernel.modules.file_name().expect("lib/modules/<release>").to_string_lossy().into_owned();
    util::output(Command::new("depmod").arg("-b").arg(dir.join("root")).arg(&release), &step)
        .context("depmod (`cargo xtask setup` installs kmod)")?;
    fs::write(&ready, &package)?;
    eprintln!("{step}: {package} ready");
    Ok(kernel)
}

fn locate(name: KernelName, dir: &Path, package: &str) -> anyhow::Result<Kernel> {
    let root = dir.join("root");
    let find = |sub: &str, prefix: &str| -> anyhow::Result<PathBuf> {
        fs::read_dir(root.join(sub))
            .with_context(|| {
                format!("kernel cache {} is incomplete; delete it and rerun `cargo xtask setup`", dir.display())
            })?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(prefix)))
            .ok_or_else(|| anyhow!("no {sub}/{prefix}* in {}", root.display()))
    };
    Ok(Kernel {
        name,
        vmlinuz: find("boot", "vmlinuz-")?,
        modules: find("lib/modules", "")?,
        package: package.to_owned(),
    })
}

/// A deb822 sources file for `suite`, using the archive URI and keyring this machine is already
/// configured with (the system's files are read, never changed).
fn private_sources(suite: &str) -> anyhow::Result<String> {
    let (uri, keyring) = system_debian_archive()?;
    Ok(format!("Types: deb\nURIs: {uri}\nSuites: {suite}\nComponents: main\nSigned-By: {keyring}\n"))
}

fn system_debian_archive() -> anyhow::Result<(String, String)> {
    const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        for stanza in text.split("\n\n") {
            let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned());
            if let Some(uri) = field("URIs:").filter(|u| !u.contains("security")) {
                let uri = uri.split_whitespace().next().unwrap_or_default().to_owned();
                return Ok((uri, field("Signed-By:").unwrap_or_else(|| KEYRING.into())));
            }
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        let uri = text.lines().find_map(|l| {
            let mut words = l.split_whitespace().skip_while(|w| w.starts_with('['));
            (words.next()? == "deb").then(|| words.find(|w| !w.starts_with('[')).map(str::to_owned))?
        });
        if let Some(uri) = uri.filter(|u| !u.contains("security")) {
            return Ok((uri, KEYRING.into()));
        }
    }
    bail!("no Debian archive configured in /etc/apt (looked at sources.list.d/debian.sources and sources.list)")
}

/// Kernel modules the tests and benchmarks use, loaded (with their dependencies) at boot.
/// (inet_diag, tcp_diag and udp_diag: sock_diag for TCP and UDP, which `net sever` resets
/// connections through, the foreign-socket hints read, and DNS faults ask which process sent a
/// query; a real system loads them on first use, the guest cannot.) The
/// last four bring up the guest's disk (io.max needs a real block device): virtio_pci is built
/// into 6.12 and the error-injection kernel (then absent from modules.dep, and skipped), and
/// crc32c_generic comes before ext4, whose checksums ask the crypto API for it (no modprobe in
/// the guest to load it on demand).
const MODULES: &[&str] = &[
    "veth",
    "sch_fq",
    "sch_netem",
    "sch_ingress",
    "cls_bpf",
    "act_bpf",
    "ifb",
    "sch_htb",
    "sch_tbf",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
];

/// The guest's disk: a sparse raw image with an ext4 filesystem, made afresh for each boot,
/// attached as a virtio block device (an NVMe one for the error-injection kernel, whose cloud
/// config has no virtio_blk but NVMe built in) and mounted at /mnt/disk (CHAOS_TEST_DISK; the
/// limit tests throttle it with io.max). `cache=unsafe`: the host never flushes it, so what the
/// guest measures is its own block layer, not the host's disk.
const DISK_SIZE: u64 = 256 << 20;

/// Host tools copied into every VM (with their shared libraries). dnsmasq: the real resolver of
/// the DNS tests (about 10 MB with its libraries; dig's are 59 MB, so the guests' DNS clients
/// are glibc's, through chaos-workload).
const HOST_TOOLS: &[&str] =
    &["/usr/sbin/ip", "/usr/sbin/tc", "/usr/sbin/ethtool", "/usr/bin/strace", "/usr/sbin/dnsmasq"];

/// What to run in a VM.
pub struct VmJob<'a> {
    pub kernel: &'a Kernel,
    /// The guest's name in its output prefix and work directory: the kernel's label, and the
    /// shard when a tier's tests are split over several guests.
    pub guest: String,
    /// Host files copied to the same path inside the VM (ELF files bring their libraries).
    pub files: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Shell script (busybox sh) run as root once the VM is up; its exit status is the job's.
    pub script: String,
    pub timeout: Duration,
    /// Each vCPU on a host thread of its own (multi-threaded TCG), for jobs that need two CPUs
    /// that really run side by side and attach no BPF program (see below why the others don't).
    pub parallel_vcpus: bool,
}

pub struct VmOutcome {
    pub exit_code: i32,
    pub lines: Vec<String>,
}

/// Builds the initramfs, boots, streams the guest's output (prefixed), returns its exit status.
pub fn boot(job: &VmJob<'_>) -> anyhow::Result<VmOutcome> {
    let label = job.guest.as_str();
    let work = util::cache_dir().join("vm").join("run").join(label.replace(' ', "-"));
    let initramfs = work.join("initramfs.cpio");
    build_initramfs(job, &work.join("root"), &initramfs)
        .with_context(|| format!("building the initramfs for {label}"))?;
    let disk = work.join("disk.img");
    make_disk(&disk).with_context(|| format!("making the disk image for {label}"))?;
    let append = "console=ttyS0 quiet loglevel=3 panic=-1 lsm=lockdown,capability,landlock,yama,apparmor,bpf";
    // Two vCPUs on one host thread: with multi-threaded TCG a 6.12 guest once died of an
    // "Oops: int3" in __dev_queue_xmit, the breakpoint of a static key patched while another
    // vCPU ran a stale copy of that code (attaching tcx flips such keys). One thread runs the
    // vCPUs in turn, so a patch is seen by both before either runs on.
    let accel = if job.parallel_vcpus { "tcg,thread=multi" } else { "tcg,thread=single" };
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", accel, "-cpu", "max", "-m", "2048", "-smp", "2"])
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(&job.kernel.vmlinuz)
        .arg("-initrd")
        .arg(&initramfs)
        .args(["-append", append])
        .args(disk_args(job.kernel.name, &disk))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (`cargo xtask setup` installs it)")?;
    let stdout = qemu.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + job.timeout;
    let (mut exit_code, mut lines, mut module_failed) = (None, Vec::new(), None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(code) = line.strip_prefix("CHAOS_VM_EXIT=") {
                    exit_code = code.trim().parse().ok();
                } else if let Some(module) = line.strip_prefix("CHAOS_VM_MODULE_FAILED=") {
                    module_failed = Some(module.trim().to_owned());
                } else {
                    println!("[vm {label}] {line}");
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = qemu.kill();
                let _ = qemu.wait();
                bail!("the {label} VM did not finish within {:?}; killed it", job.timeout);
            }
        }
    }
    let status = qemu.wait()?;
    if let Some(module) = module_failed {
        bail!(
            "the {label} VM could not load kernel module {module} (insmod's message is above): the tests that \
             need it would only skip; check the kernel cache (`cargo xtask setup`)"
        );
    }
    let exit_code = exit_code.ok_or_else(|| {
        anyhow!("the {label} VM stopped ({status}) before its job reported an exit status; see the output above")
    })?;
    Ok(VmOutcome { exit_code, lines })
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# No tmpfs on /tmp: the initramfs root is already writable, and files copied in keep their host
# paths, which may be under /tmp.
mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# For /sys/kernel/debug/error_injection/list (the 6.1-errinj kernel's injectable functions).
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# A module that does not load fails the boot: the tests that need it would only skip.
while read -r module; do
    if ! insmod "/modules/$module"; then
        echo "CHAOS_VM_MODULE_FAILED=$module"
        echo "CHAOS_VM_EXIT=3"
        poweroff -f
    fi
done < /modules/load-order
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp
# The disk (virtio, or NVMe): the tests find its mount point in CHAOS_TEST_DISK.
mkdir -p /mnt/disk
disk=/dev/vda
[ -b /dev/nvme0n1 ] && disk=/dev/nvme0n1
if mount -t ext4 "$disk" /mnt/disk; then
    export CHAOS_TEST_DISK=/mnt/disk
else
    echo "CHAOS_VM_MODULE_FAILED=virtio_blk, nvme or ext4 (mounting the disk $disk failed)"
    echo "CHAOS_VM_EXIT=3"
    poweroff -f
fi
ip link set lo up
. /job-env
cd /tmp
sh /job.sh
echo "CHAOS_VM_EXIT=$?"
poweroff -f
"#;

fn build_initramfs(job: &VmJob<'_>, root: &Path, out: &Path) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("bin"))?;
    fs::create_dir_all(root.join("modules"))?;
    fs::copy("/bin/busybox", root.join("bin/busybox"))
        .context("copy /bin/busybox (`cargo xtask setup` installs busybox-static)")?;
    write_executable(&root.join("init"), INIT)?;
    write_executable(&root.join("job.sh"), &job.script)?;
    let env: String = job.env.iter().map(|(k, v)| format!("export {k}={}\n", shell_quote(v))).collect();
    fs::write(root.join("job-env"), env)?;

    let modules = module_load_order(&job.kernel.modules, MODULES)?;
    let mut order = String::new();
    for relative in &modules {
        let source = job.kernel.modules.join(relative);
        let name = Path::new(relative).file_name().expect("file").to_string_lossy().trim_end_matches(".xz").to_owned();
        let target = root.join("modules").join(&name);
        if relative.ends_with(".xz") {
            let data = Command::new("xz")
                .arg("-dc")
                .arg(&source)
                .output()
                .context("xz (`cargo xtask setup` installs xz-utils)")?;
            if !data.status.success() {
                bail!("xz -dc {} failed", source.display());
            }
            fs::write(&target, data.stdout)?;
        } else {
            fs::copy(&source, &target)?;
        }
        order.push_str(&name);
        order.push('\n');
    }
    fs::write(root.join("modules/load-order"), order)?;

    let mut copied = BTreeSet::new();
    for file in HOST_TOOLS.iter().map(PathBuf::from).chain(job.files.iter().cloned()) {
        copy_with_libraries(&file, root, &mut copied)?;
    }
    let cpio = fs::File::create(out)?;
    let status = Command::new("sh")
        .args(["-c", "find . -print0 | cpio --null -o -H newc --quiet"])
        .current_dir(root)
        .stdout(cpio)
        .status()
        .context("cpio (`cargo xtask setup` installs it)")?;
    if !status.success() {
        bail!("cpio failed ({status})");
    }
    Ok(())
}

/// QEMU's arguments for the disk image: virtio, or NVMe for the error-injection kernel.
fn disk_args(kernel: KernelName, image: &Path) -> Vec<String> {
    let drive = format!("file={},format=raw,cache=unsafe", image.display());
    match kernel {
        KernelName::V6_1ErrInj => {
            vec![
                "-drive".into(),
                format!("{drive},if=none,id=disk"),
                "-device".into(),
                "nvme,drive=disk,serial=chaos".into(),
            ]
        }
        KernelName::V6_1 | KernelName::V6_12 => vec!["-drive".into(), format!("{drive},if=virtio")],
    }
}

/// A fresh, sparse ext4 image (made on the host: the guest has no mkfs).
fn make_disk(path: &Path) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    fs::File::create(path)?.set_len(DISK_SIZE)?;
    util::output(Command::new("mkfs.ext4").args(["-q", "-F", "-L", "chaos-vm"]).arg(path), "mkfs.ext4 of the VM disk")
        .context("`cargo xtask setup` installs e2fsprogs")?;
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Single-quotes `value` for sh.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Copies `file` to the same path under `root`; ELF executables bring the shared libraries
/// `ldd` lists, and binaries of this workspace lose their debug info (they are big).
fn copy_with_libraries(file: &Path, root: &Path, copied: &mut BTreeSet<PathBuf>) -> anyhow::Result<()> {
    if !copied.insert(file.to_path_buf()) {
        return Ok(());
    }
    let target =
        root.join(file.strip_prefix("/").with_context(|| format!("{} is not an absolute path", file.display()))?);
    fs::create_dir_all(target.parent().expect("absolute path has a parent"))?;
    let from_workspace = file.starts_with(util::root());
    // Only ELF files are stripped and have libraries; data files (golden outputs) are copied.
    let mut magic = [0u8; 4];
    let elf = fs::File::open(file).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && magic == *b"\x7fELF";
    let stripped = from_workspace
        && elf
        && Command::new("objcopy").arg("--strip-debug").arg(file).arg(&target).status().is_ok_and(|s| s.success());
    if !stripped {
        fs::copy(file, &target).with_context(|| format!("copy {} into the VM", file.display()))?;
    }
    if !elf {
        return Ok(());
    }
    let Ok(ldd) = Command::new("ldd").arg(file).output() else { return Ok(()) };
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let library = line
            .split("=>")
            .nth(1)
            .unwrap_or(line)
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
            .map(PathBuf::from);
        if let Some(library) = library {
            copy_with_libraries(&library, root, copied)?;
        }
    }
    Ok(())
}

/// The module files (relative to lib/modules/<release>) for `wanted`, dependencies first,
/// from modules.dep.
fn module_load_order(modules_dir: &Path, wanted: &[&str]) -> anyhow::Result<Vec<String>> {
    let deps_text = fs::read_to_string(modules_dir.join("modules.dep")).context("read modules.dep")?;
    let deps: Vec<(String, Vec<String>)> = deps_text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(module, deps)| (module.to_owned(), deps.split_whitespace().map(str::to_owned).collect()))
        .collect();
    let module_name = |path: &str| {
        Path::new(path)
            .file_name()
            .map(|f| f.to_string_lossy().split('.').next().unwrap_or_default().replace('-', "_"))
            .unwrap_or_default()
    };
    let mut order = Vec::new();
    fn visit(path: &str, deps: &[(String, Vec<String>)], order: &mut Vec<String>) {
        if order.iter().any(|p| p == path) {
            return;
        }
        if let Some((_, its_deps)) = deps.iter().find(|(m, _)| m == path) {
            for dep in its_deps {
                visit(dep, deps, order);
            }
        }
        order.push(path.to_owned());
    }
    for name in wanted {
        // A module missing from modules.dep is built into this kernel: nothing to load.
        if let Some((path, _)) = deps.iter().find(|(path, _)| module_name(path) == *name) {
            visit(path, &deps, &mut order);
        }
    }
    Ok(order)
}

/// `cargo xtask vm --kernel K -- command...`: `command` in `kernel`, with `files` (the built
/// binaries, their environment in `env`) and the user's `include`s copied in.
pub fn run_command(
    kernel: &Kernel,
    mut files: Vec<PathBuf>,
    env: Vec<(String, String)>,
    include: &[PathBuf],
    command: &[String],
) -> anyhow::Result<()> {
    files.extend(include.iter().map(|p| fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    let mut command = command.to_vec();
    if let Some(program) = command.first().map(PathBuf::from).filter(|p| p.is_file()) {
        let program = fs::canonicalize(program)?;
        command[0] = program.display().to_string();
        files.push(program);
    }
    let script: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
    let name = kernel.name;
    let job = VmJob {
        kernel,
        guest: name.label().to_owned(),
        files,
        env,
        script: format!("exec {}\n", script.join(" ")),
        timeout: Duration::from_secs(30 * 60),
        parallel_vcpus: false,
    };
    let outcome = boot(&job)?;
    if outcome.exit_code != 0 {
        bail!("the command exited with status {} in the {} VM", outcome.exit_code, name.label());
    }
    Ok(())
}
