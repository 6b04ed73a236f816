//! The floor's empty programs (the test-only object `chaos-floor`): found beside the real
//! object, loaded with aya and attached where chaos puts its own program for each hook.
use std::{
    fs,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, KProbe, RawTracePoint, SchedClassifier,
        TcAttachType,
    },
};
use chaos_tests::net::Netns;

use super::{Hook, Setup};

/// The floor object aya-build wrote beside the real one: the newest chaos-user build output
/// next to the `chaos` binary (in a VM too: the object is copied to the same path).
pub(crate) fn floor_object(chaos: &Path) -> anyhow::Result<PathBuf> {
    let build_dir = chaos.parent().context("chaos binary has no directory")?.join("build");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(&build_dir).with_context(|| format!("read {}", build_dir.display()))? {
        let path = entry?.path().join("out").join("chaos-floor");
        if let Ok(modified) = fs::metadata(&path).and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            newest = Some((modified, path));
        }
    }
    match newest {
        Some((_, path)) => Ok(path),
        None => bail!(
            "no chaos-floor object under {}/chaos-user-*/out: build chaos-user without AYA_BUILD_SKIP",
            build_dir.display()
        ),
    }
}

/// The empty program for one hook, loaded and attached; detached when dropped (aya's links are
/// owned by the object's file descriptors).
pub(crate) struct Empty {
    _ebpf: Ebpf,
}

impl Empty {
    pub(crate) fn attach(hook: Hook, setup: &Setup) -> anyhow::Result<Self> {
        let object = fs::read(&setup.floor)?;
        // No kernel BTF: nothing here needs CO-RE, and the LSM programs are not loaded here.
        let mut ebpf = EbpfLoader::new().btf(None).load(&object).context("load the chaos-floor object")?;
        let cgroup = || fs::File::open(setup.target.dir()).context("open the target cgroup");
        let name = hook.programs().0;
        match hook {
            Hook::SkbEgress | Hook::SkbIngress => {
                let kind =
                    if hook == Hook::SkbEgress { CgroupSkbAttachType::Egress } else { CgroupSkbAttachType::Ingress };
                let program: &mut CgroupSkb = program(&mut ebpf, name)?;
                program.load()?;
                program.attach(cgroup()?.as_fd(), kind, CgroupAttachMode::Single)?;
            }
            Hook::Connect4 => {
                let program: &mut CgroupSockAddr = program(&mut ebpf, name)?;
                program.load()?;
                program.attach(cgroup()?.as_fd(), CgroupAttachMode::Single)?;
            }
            Hook::SysEnter | Hook::SysEnterCgroupTest => {
                let program: &mut RawTracePoint = program(&mut ebpf, name)?;
                program.load()?;
                program.attach("sys_enter")?;
            }
            Hook::TcEgress => {
                let program: &mut SchedClassifier = program(&mut ebpf, name)?;
                program.load()?;
                in_netns(&setup.hosts.a, || Ok(program.attach("veth-a", TcAttachType::Egress).map(drop)?))?;
            }
            Hook::KprobeFsync => {
                let program: &mut KProbe = program(&mut ebpf, name)?;
                program.load()?;
                program.attach(super::FSYNC_ENTRY, 0)?;
            }
        }
        Ok(Self { _ebpf: ebpf })
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf.program_mut(name).with_context(|| format!("no program {name} in chaos-floor"))?;
    Ok(program.try_into()?)
}

/// Runs `f` on a thread that has entered `netns` (aya attaches TC programs by interface name in
/// the calling thread's namespace); the process itself stays where it is.
fn in_netns(netns: &Netns, f: impl FnOnce() -> anyhow::Result<()> + Send) -> anyhow::Result<()> {
    let file = fs::File::open(netns.path()).with_context(|| format!("open {}", netns.path()))?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                use std::os::fd::AsRawFd as _;
                // SAFETY: a valid namespace descriptor; only this short-lived thread changes.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns into {}: {}", netns.name(), std::io::Error::last_os_error());
                }
                f()
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
    })
}
