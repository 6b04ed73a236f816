//! `syscall fail`: chosen syscalls of the target fail with an errno. For each syscall, the hook
//! that serves it on this kernel (a BPF LSM hook where `bpf` is an active LSM, else error
//! injection on the syscall's entry function where the kernel allows it, else a cgroup socket
//! hook), the filters it can take, and the configuration shared by all of the fault's programs.
use std::{os::unix::fs::MetadataExt as _, path::PathBuf};

use chaos_common::{Direction, FaultConfig, flags, threshold_from_ppm};
use serde_json::json;

use super::{
    ScheduleOptions,
    entry_hook::HookChoice,
    hooks::{self, Filter, Syscall},
    lsm_attach::LsmAttach,
};
use crate::{
    fault::{
        AttachPoint, FaultContext, FaultPlan, PlanError, PlanFault, PlannedProgram, cgroup_level,
        net::filters::{Cidr, NetFilters, PortSet, filter_maps, parse_cidr, parse_ports},
        syscall::error_injection,
    },
    features::{
        FamilySupport, Prober, {self},
    },
    os::{btf, errno},
    plan::options::{Ppm, parse_percent},
};

/// `syscall fail`.
#[derive(Clone, Debug, clap::Args)]
pub struct SyscallFailOptions {
    /// Comma-separated syscall names (see `chaos syscall list`); repeatable.
    #[arg(long = "syscall", value_name = "NAMES", required = true, value_parser = hooks::parse_list)]
    pub syscalls: Vec<Vec<&'static Syscall>>,
    /// The error, by name or number: EIO, ENOSPC, ECONNREFUSED, EACCES, ETIMEDOUT, ...
    #[arg(long, value_parser = errno::parse)]
    pub errno: i32,
    /// Share of matching calls to fail, in percent.
    #[arg(long, value_parser = parse_percent, default_value = "100")]
    pub percent: Ppm,
    /// Only files under this directory (or this file): file syscalls only.
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<PathBuf>,
    /// Only calls whose peer address is in this prefix (repeatable): connect, sendto.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub remote: Vec<Cidr>,
    /// Only calls whose peer port is in this set.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub remote_port: Vec<PortSet>,
    #[command(flatten)]
    pub schedule: ScheduleOptions,
    /// The mechanism: BPF LSM hooks, error injection (override), cgroup socket hooks, or the
    /// best this kernel has (auto: LSM, then override, then cgroup hooks).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Backend,
    /// How the BPF LSM programs attach: to the target cgroup (lsm-cgroup, Linux 6.0+: other
    /// cgroups run nothing), globally (lsm: every task runs them), or auto (per cgroup where
    /// the kernel can). Only for syscalls the LSM backend serves.
    #[arg(long, value_enum, value_name = "HOOK")]
    pub hook: Option<HookChoice>,
}

impl SyscallFailOptions {
    /// The syscalls asked for, each once, in order.
    #[must_use]
    pub fn chosen(&self) -> Vec<&'static Syscall> {
        let mut chosen: Vec<&'static Syscall> = Vec::new();
        for syscall in self.syscalls.iter().flatten() {
            if !chosen.iter().any(|s| s.name == syscall.name) {
                chosen.push(syscall);
            }
        }
        chosen
    }

    #[must_use]
    pub fn filters(&self) -> NetFilters {
        let mut remote_ports = PortSet::default();
        self.remote_port.iter().for_each(|p| remote_ports.extend(p));
        NetFilters { remote: self.remote.clone(), remote_ports, ..NetFilters::default() }
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

impl PlanFault for SyscallFailOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        plan(self, context)
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }
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
pub struct Mechanisms {
    lsm: FamilySupport,
    cgroup: FamilySupport,
    over: FamilySupport,
}

impl Mechanisms {
    #[must_use]
    pub fn probe(kernel: &Prober) -> Self {
        Self {
            lsm: kernel.family(features::SYSCALL_ERRNO_LSM),
            cgroup: kernel.family(features::SYSCALL_ERRNO_CGROUP_HOOKS),
            over: kernel.family(features::SYSCALL_ERRNO_OVERRIDE),
        }
    }

    /// The mechanism `backend` gives `syscall` here and the filter it can take, or why none.
    pub fn choose(&self, syscall: &Syscall, backend: Backend) -> Result<(Mechanism, Filter), String> {
        choose(syscall, backend, self)
    }
}

fn plan(options: &SyscallFailOptions, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
    let (target, kernel) = (context.target.clone(), context.kernel);
    let syscalls = options.chosen();
    let filters = options.filters();
    let schedule = options.schedule.schedule();
    let mechanisms = Mechanisms::probe(kernel);
    let wants_path = options.path.is_some();
    let wants_remote = !filters.remote.is_empty() || !filters.remote_ports.is_empty();

    let mut config = FaultConfig {
        threshold: threshold_from_ppm(options.percent.get()),
        errno: options.errno as u32,
        target_cgroup: target.id,
        target_level: cgroup_level(&target.cgroup),
        ..FaultConfig::default()
    };
    let mut programs: Vec<PlannedProgram> = Vec::new();
    // Chosen at the first syscall the LSM backend serves: the kernel is asked only then.
    let mut lsm_attach: Option<LsmAttach> = None;
    let mut add = |program: &'static str, hook: &'static str, attach: AttachPoint| {
        // One program per hook, except the override program, which attaches once per function.
        if !programs.iter().any(|p| p.program == program && p.attach.describe() == attach.describe()) {
            programs.push(PlannedProgram { program, hook, attach, direction: Direction::Egress });
        }
    };
    for syscall in &syscalls {
        let (mechanism, filter) = mechanisms
            .choose(syscall, options.backend)
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
        if mechanism != Mechanism::Lsm
            && let Some(choice) = options.hook
        {
            return Err(PlanError::Refused(format!(
                "{}: --hook chooses how BPF LSM programs attach, and {} is served by {} here (--backend {})",
                choice.flag(),
                syscall.name,
                match mechanism {
                    Mechanism::Cgroup => "cgroup socket hooks, which are per cgroup already",
                    _ => "error injection, a kprobe on its entry function",
                },
                mechanism.backend()
            )));
        }
        match mechanism {
            Mechanism::Lsm => {
                let hook = syscall.lsm.expect("chosen because it exists");
                config.syscall_mask |= hook.mask;
                if lsm_attach.is_none() {
                    lsm_attach = Some(LsmAttach::choose(kernel, options.hook.unwrap_or_default())?);
                }
                let (program, words, attach) = lsm_attach.as_ref().expect("just chosen").program(&hook, &target.dir);
                add(program, words, attach);
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
        syscalls.iter().map(|s| s.name).collect::<Vec<_>>().join(","),
        errno::name(options.errno),
        options.percent
    );
    let mut kernel_offsets = None;
    if let Some(path) = &options.path {
        let (dev, ino) = directory_identity(path)?;
        config.flags |= flags::PATH_FILTER;
        (config.path_dev, config.path_ino) = (dev, ino);
        let offsets = btf::Btf::from_sys_fs()
            .map_err(PlanError::NoBtf)?
            .kernel_offsets()
            .map_err(|e| PlanError::Refused(format!("--path: {e}")))?;
        kernel_offsets = Some(offsets);
        summary.push_str(&format!(", under {}", path.display()));
    }
    if schedule.is_set() {
        schedule.apply(&mut config);
        summary.push_str(&format!(", {}", schedule.describe()));
    }
    if let Some(attach) = &lsm_attach {
        summary.push_str(&format!("; {}", attach.describe()));
    }
    let maps = filter_maps(&filters, &mut config);
    let mut parameters = json!({
        "syscalls": syscalls.iter().map(|s| s.name).collect::<Vec<_>>(),
        "errno": errno::name(options.errno),
        "percent": options.percent,
        "path": options.path,
        "remote": filters.remote,
        "remote_port": filters.remote_ports,
        "schedule": schedule,
        "backend": options.backend,
    });
    if let Some(attach) = &lsm_attach {
        parameters["lsm_attach"] = json!(attach.name());
    }
    Ok(FaultPlan {
        fault: "syscall fail",
        injected_word: "failed",
        counter_label: Some("calls"),
        target,
        summary,
        parameters,
        duration: context.duration,
        programs,
        config,
        maps,
        kernel_offsets,
        companion: None,
        userspace: None,
    })
}

fn choose(syscall: &Syscall, backend: Backend, kernel: &Mechanisms) -> Result<(Mechanism, Filter), String> {
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
        error_injection::InjectionList::cached()
            .allows(&function)
            .map_err(|reason| format!("error injection: {reason}"))?;
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
    let meta =
        std::fs::metadata(path).map_err(|source| PlanError::NoSuchPath { path: path.display().to_string(), source })?;
    let dev = meta.dev();
    let kernel_dev = (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev));
    Ok((kernel_dev, meta.ino()))
}
