//! Loads the eBPF object, writes a fault's configuration, attaches its programs.
//!
//! Everything attached here is a bpf_link owned by a file descriptor of this process: dropping a
//! [`LoadedFault`] detaches it, and so does the process dying for any reason, SIGKILL included.
//! Nothing is pinned, so nothing can be left behind.
use std::{fs::File, path::Path};

use aya::{
    Ebpf, EbpfError,
    maps::{Array, MapError, PerCpuArray},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError},
};
use chaos_common::{Direction, FAULT_CONFIG_MAP, FAULT_COUNTERS_MAP, FaultConfig, FaultCounters};

use crate::{errno, features::describe_program_error};

/// The object built from chaos-ebpf by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos"));

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "this chaos binary was built without its eBPF object (AYA_BUILD_SKIP was set); rebuild it \
         without AYA_BUILD_SKIP"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] EbpfError),
    #[error("program {program}: {reason}")]
    Program { program: &'static str, reason: String },
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("cannot open cgroup directory {path}: {source}")]
    Cgroup { path: String, source: std::io::Error },
}

/// One fault's instance of the eBPF object: its own maps, its own attached programs.
pub struct LoadedFault {
    ebpf: Ebpf,
}

impl LoadedFault {
    /// Loads a fresh copy of the object (maps are created; no program is loaded yet).
    pub fn load() -> Result<Self, AttachError> {
        if EBPF_OBJECT.is_empty() {
            return Err(AttachError::NoObject);
        }
        let ebpf = Ebpf::load(EBPF_OBJECT).map_err(|err| match err {
            EbpfError::MapError(MapError::CreateError { name, io_error }) => AttachError::Program {
                program: "(maps)",
                reason: format!("creating map {name} returned {}{}", errno::name_of(&io_error), privilege_hint(&io_error)),
            },
            other => AttachError::Load(other),
        })?;
        Ok(Self { ebpf })
    }

    /// Writes the fault's configuration. Safe while the programs run: the next event sees it.
    pub fn configure(&mut self, config: FaultConfig) -> Result<(), AttachError> {
        let map = self.ebpf.map_mut(FAULT_CONFIG_MAP).ok_or(AttachError::Map {
            map: FAULT_CONFIG_MAP,
            source: MapError::InvalidName { name: FAULT_CONFIG_MAP.into() },
        })?;
        let mut array: Array<_, FaultConfig> =
            Array::try_from(map).map_err(|source| AttachError::Map { map: FAULT_CONFIG_MAP, source })?;
        array.set(0, config, 0).map_err(|source| AttachError::Map { map: FAULT_CONFIG_MAP, source })
    }

    /// Switches the fault off now (deadline 0), without detaching anything.
    pub fn disarm(&mut self) -> Result<(), AttachError> {
        self.configure(FaultConfig::default())
    }

    /// Loads `program` (a cgroup_skb program of the object) and attaches it to the cgroup
    /// directory, alongside whatever else is attached there.
    pub fn attach_cgroup_skb(
        &mut self,
        program: &'static str,
        attach_type: CgroupSkbAttachType,
        cgroup_dir: &Path,
    ) -> Result<(), AttachError> {
        let cgroup = File::open(cgroup_dir)
            .map_err(|source| AttachError::Cgroup { path: cgroup_dir.display().to_string(), source })?;
        let prog: &mut CgroupSkb = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| AttachError::Program { program, reason: "not in the eBPF object".into() })?
            .try_into()
            .map_err(|err: ProgramError| AttachError::Program { program, reason: err.to_string() })?;
        prog.load().map_err(|err| program_error(program, "loading", &err))?;
        // On 5.7+ aya attaches through BPF_LINK_CREATE, which takes no flags (any flag is
        // EINVAL) and always attaches in multi mode: other programs on the cgroup (systemd's IP
        // accounting, a CNI's policies) keep running, and several chaos faults can share it.
        // `Single` is how aya spells "no flags".
        prog.attach(cgroup, attach_type, CgroupAttachMode::Single)
            .map_err(|err| program_error(program, "attaching", &err))?;
        Ok(())
    }

    /// The counters of `direction`, summed over CPUs.
    pub fn counters(&self, direction: Direction) -> Result<FaultCounters, AttachError> {
        let map = self.ebpf.map(FAULT_COUNTERS_MAP).ok_or(AttachError::Map {
            map: FAULT_COUNTERS_MAP,
            source: MapError::InvalidName { name: FAULT_COUNTERS_MAP.into() },
        })?;
        let array: PerCpuArray<_, FaultCounters> =
            PerCpuArray::try_from(map).map_err(|source| AttachError::Map { map: FAULT_COUNTERS_MAP, source })?;
        let per_cpu = array
            .get(&direction.index(), 0)
            .map_err(|source| AttachError::Map { map: FAULT_COUNTERS_MAP, source })?;
        Ok(per_cpu.iter().fold(FaultCounters::default(), |sum, c| sum.add(*c)))
    }
}

fn program_error(program: &'static str, doing: &str, err: &ProgramError) -> AttachError {
    let reason = match err {
        ProgramError::LoadError { io_error, verifier_log } => format!(
            "{doing} failed: the kernel returned {}{}\nverifier log:\n{verifier_log}",
            errno::name_of(io_error),
            privilege_hint(io_error)
        ),
        ProgramError::SyscallError(syscall) => {
            format!("{doing} failed: {}{}", describe_program_error(err), privilege_hint(&syscall.io_error))
        }
        other => format!("{doing} failed: {other}"),
    };
    AttachError::Program { program, reason }
}

fn privilege_hint(err: &std::io::Error) -> &'static str {
    if err.raw_os_error() == Some(libc::EPERM) {
        " (run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; `chaos doctor` checks)"
    } else {
        ""
    }
}
