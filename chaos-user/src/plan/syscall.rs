//! Planning syscall errno faults: for each syscall, the hook that serves it on this kernel (a
//! BPF LSM hook where `bpf` is an active LSM, else error injection on the syscall's entry
//! function where the kernel allows it, else a cgroup socket hook), the filters it can take,
//! and the configuration shared by all of the fault's programs.
use std::{os::unix::fs::MetadataExt as _, path::PathBuf, time::Duration};

use chaos_common::{Direction, FaultConfig, flags, threshold_from_ppm};
use serde_json::json;

use super::{
    AttachPoint, FaultContext, FaultPlan, PlanError, PlanFault, PlannedProgram, cgroup_level, net::filter_maps,
};
use crate::{
    btf, errno, error_injection,
    features::{self, FamilySupport, Prober},
    spec::{Ppm, net::NetFilters, syscall::SyscallFailOptions},
    syscalls::{Filter, Syscall},
    target::Target,
};

impl PlanFault for SyscallFailOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let spec = SyscallFaultSpec {
            syscalls: self.chosen(),
            errno: self.errno,
            percent: self.percent,
            path: self.path.clone(),
            filters: self.filters(),
            schedule: self.schedule.schedule(),
            backend: self.backend,
            duration: context.duration,
        };
        plan(&spec, context.target.clone(), context.kernel)
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }
}

/// Which mechanism serves the syscalls (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// BPF LSM where a hook serves the call, else error injection, else cgroup socket hooks.
    #[default]
    Auto,
    Lsm,
    Cgroup,
    /// Error injection: a kprobe on the syscall's entry function calling bpf_override_return
    /// (kernels with CONFIG_FUNCTION_ERROR_INJECTION and CONFIG_BPF_KPROBE_OVERRIDE).
    Override,
}

/// `--after`, `--first`, `--every`, `--max`: exact counts over the fault's matching calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Schedule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl Schedule {
    #[must_use]
    pub const fn is_set(&self) -> bool {
        self.after.is_some() || self.first.is_some() || self.every.is_some() || self.max.is_some()
    }

    /// Writes the schedule into the fault's configuration (exact, machine-wide counts).
    pub fn apply(&self, config: &mut FaultConfig) {
        if !self.is_set() {
            return;
        }
        config.flags |= flags::SCHEDULE;
        config.skip_first = self.after.unwrap_or(0);
        config.only_first = self.first.unwrap_or(0);
        config.every = self.every.unwrap_or(0);
        config.max_injections = self.max.unwrap_or(0);
    }

    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.after {
            parts.push(format!("after the first {n}"));
        }
        if let Some(n) = self.first {
            parts.push(format!("only the first {n}"));
        }
        if let Some(n) = self.every {
            parts.push(format!("every {n}th"));
        }
        if let Some(n) = self.max {
            parts.push(format!("at most {n} times"));
        }
        parts.join(", ")
    }
}

/// A syscall fault as the user asked for it.
#[derive(Clone, Debug)]
pub struct SyscallFaultSpec {
    pub syscalls: Vec<&'static Syscall>,
    pub errno: i32,
    pub percent: Ppm,
    pub path: Option<PathBuf>,
    /// Only `remote` and `remote_ports` apply to syscalls.
    pub filters: NetFilters,
    pub schedule: Schedule,
    pub backend: Backend,
    pub duration: Duration,
}

/// The mechanism chosen for one syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Lsm,
    Cgroup,
    Override,
}

impl Mechanism {
    /// The `--backend` value that asks for it.
    #[must_use]
    pub const fn backend(self) -> &'static str {
        match self {
            Self::Lsm => "lsm",
            Self::Cgroup => "cgroup",
            Self::Override => "override",
        }
    }
}

/// What each mechanism looks like on this kernel, probed once per plan or listing.
pub struct Mechanisms<'a> {
    lsm: FamilySupport,
    cgroup: FamilySupport,
    over: FamilySupport,
    kernel: &'a Prober,
}

impl<'a> Mechanisms<'a> {
    #[must_use]
    pub fn probe(kernel: &'a Prober) -> Self {
        Self {
            lsm: kernel.family(features::SYSCALL_ERRNO_LSM),
            cgroup: kernel.family(features::SYSCALL_ERRNO_CGROUP_HOOKS),
            over: kernel.family(features::SYSCALL_ERRNO_OVERRIDE),
            kernel,
        }
    }

    /// The mechanism `backend` gives `syscall` here and the filter it can take, or why none.
    pub fn choose(&self, syscall: &Syscall, backend: Backend) -> Result<(Mechanism, Filter), String> {
        choose(syscall, backend, self)
    }
}

pub fn plan(spec: &SyscallFaultSpec, target: Target, kernel: &Prober) -> Result<FaultPlan, PlanError> {
    let mechanisms = Mechanisms::probe(kernel);
    let wants_path = spec.path.is_some();
    let wants_remote = !spec.filters.remote.is_empty() || !spec.filters.remote_ports.is_empty();

    let mut config = FaultConfig {
        threshold: threshold_from_ppm(spec.percent.get()),
        errno: spec.errno as u32,
        target_cgroup: target.id,
        target_level: cgroup_level(&target.cgroup),
        ..FaultConfig::default()
    };
    let mut programs: Vec<PlannedProgram> = Vec::new();
    let mut add = |program: &'static str, hook: &'static str, attach: AttachPoint| {
        // One program per hook, except the override program, which attaches once per function.
        if !programs.iter().any(|p| p.program == program && p.attach.describe() == attach.describe()) {
            programs.push(PlannedProgram { program, hook, attach, direction: Direction::Egress });
        }
    };
    for syscall in &spec.syscalls {
        let (mechanism, filter) = mechanisms
            .choose(syscall, spec.backend)
            .map_err(|reason| PlanError::Refused(format!("cannot fail {}: {reason}", syscall.name)))?;
        if wants_path && filter != Filter::Path {
            return Err(PlanError::Refused(format!(
                "--path applies to file syscalls; {} has no file to filter on{}",
                syscall.name,
                match mechanism {
                    Mechanism::Cgroup => " (through cgroup socket hooks)",
                    Mechanism::Override => " (error injection filters calls whose first argument is a file descriptor)",
                    Mechanism::Lsm => "",
                }
            )));
        }
        if wants_remote && filter != Filter::Remote {
            return Err(PlanError::Refused(format!(
                "--remote and --remote-port apply to calls with a peer address (connect{}); {} has none here",
                if matches!(mechanism, Mechanism::Cgroup) { ", sendto and sendmsg" } else { "" },
                syscall.name
            )));
        }
        match mechanism {
            Mechanism::Lsm => {
                let hook = syscall.lsm.expect("chosen because it exists");
                config.syscall_mask |= hook.mask;
                add(hook.program, hook.hook, AttachPoint::Lsm { hook: hook.name() });
            }
            Mechanism::Cgroup => {
                for hook in syscall.cgroup {
                    add(hook.program, hook.hook, AttachPoint::Cgroup { cgroup_dir: target.dir.clone() });
                }
            }
            Mechanism::Override => {
                let function = error_injection::entry_function(syscall.name);
                add(error_injection::PROGRAM, "kprobe", AttachPoint::Kprobe { function });
            }
        }
    }

    let mut summary = format!(
        "{} fail with {}, {} of calls",
        spec.syscalls.iter().map(|s| s.name).collect::<Vec<_>>().join(","),
        errno::name(spec.errno),
        spec.percent
    );
    let mut kernel_offsets = None;
    if let Some(path) = &spec.path {
        let (dev, ino) = directory_identity(path)?;
        config.flags |= flags::PATH_FILTER;
        (config.path_dev, config.path_ino) = (dev, ino);
        let offsets = btf::Btf::from_sys_fs()
            .map_err(|e| PlanError::Refused(format!("--path needs this kernel's BTF (/sys/kernel/btf/vmlinux): {e}")))?
            .kernel_offsets()
            .map_err(|e| PlanError::Refused(format!("--path: {e}")))?;
        kernel_offsets = Some(offsets);
        summary.push_str(&format!(", under {}", path.display()));
    }
    if spec.schedule.is_set() {
        spec.schedule.apply(&mut config);
        summary.push_str(&format!(", {}", spec.schedule.describe()));
    }
    let maps = filter_maps(&spec.filters, &mut config);
    let parameters = json!({
        "syscalls": spec.syscalls.iter().map(|s| s.name).collect::<Vec<_>>(),
        "errno": errno::name(spec.errno),
        "percent": spec.percent,
        "path": spec.path,
        "remote": spec.filters.remote,
        "remote_port": spec.filters.remote_ports,
        "schedule": spec.schedule,
        "backend": spec.backend,
    });
    Ok(FaultPlan {
        fault: "syscall fail",
        injected_word: "failed",
        counter_label: Some("calls"),
        target,
        summary,
        parameters,
        duration: spec.duration,
        programs,
        config,
        maps,
        kernel_offsets,
    })
}

fn choose(syscall: &Syscall, backend: Backend, kernel: &Mechanisms<'_>) -> Result<(Mechanism, Filter), String> {
    let by_lsm = || -> Result<(Mechanism, Filter), String> {
        if syscall.lsm.is_none() {
            return Err(format!("{} has no BPF LSM hook in chaos", syscall.name));
        }
        if !kernel.lsm.supported {
            return Err(format!("BPF LSM is not available: {}", kernel.lsm.reason.clone().unwrap_or_default()));
        }
        Ok((Mechanism::Lsm, syscall.lsm_filter))
    };
    let by_cgroup = || -> Result<(Mechanism, Filter), String> {
        if syscall.cgroup.is_empty() {
            return Err(format!("{} has no cgroup hook", syscall.name));
        }
        if !kernel.cgroup.supported {
            return Err(format!(
                "cgroup socket hooks are not available: {}",
                kernel.cgroup.reason.clone().unwrap_or_default()
            ));
        }
        Ok((Mechanism::Cgroup, syscall.cgroup_filter))
    };
    let by_override = || -> Result<(Mechanism, Filter), String> {
        if !kernel.over.supported {
            return Err(format!(
                "error injection is not available: {}",
                kernel.over.reason.clone().unwrap_or_default()
            ));
        }
        let function = error_injection::entry_function(syscall.name);
        kernel.kernel.injection_list().allows(&function).map_err(|reason| format!("error injection: {reason}"))?;
        Ok((Mechanism::Override, syscall.override_filter()))
    };
    match backend {
        Backend::Lsm => by_lsm(),
        Backend::Cgroup => by_cgroup(),
        Backend::Override => by_override(),
        Backend::Auto => by_lsm().or_else(|lsm_reason| {
            by_override().or_else(|override_reason| {
                by_cgroup().map_err(|cgroup_reason| format!("{lsm_reason}; {override_reason}; and {cgroup_reason}"))
            })
        }),
    }
}

/// The (device, inode) the kernel's path filter compares with, device in the kernel's own
/// `dev_t` encoding (major << 20 | minor), which is what `super_block.s_dev` holds.
fn directory_identity(path: &std::path::Path) -> Result<(u64, u64), PlanError> {
    if !path.is_absolute() {
        return Err(PlanError::Refused(format!("--path {}: not an absolute path", path.display())));
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        PlanError::Refused(format!("--path {}: {e} (the filter needs an existing directory or file)", path.display()))
    })?;
    let dev = meta.dev();
    let kernel_dev = (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev));
    Ok((kernel_dev, meta.ino()))
}
