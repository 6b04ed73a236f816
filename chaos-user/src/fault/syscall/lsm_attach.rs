//! How a fault's BPF LSM programs attach (`syscall fail` through LSM, crash points with
//! `--before-effect` or `--path`). Per cgroup (lsm_cgroup, Linux 6.0+): the program is attached
//! to the target cgroup and the kernel runs it only for events of that cgroup and below, so an
//! untargeted task runs none of chaos's programs however many faults are armed. Globally (lsm):
//! every task runs every armed fault's program, which tests the task's cgroup first.
//! `--hook auto` takes per-cgroup programs where the kernel loads them; `--hook lsm-cgroup` and
//! `--hook lsm` force one.
//!
//! The kernel lets at most 10 distinct LSM hooks carry per-cgroup programs machine-wide
//! (CGROUP_LSM_NUM; faults on one hook share its slot). When they are taken, attaching to an
//! eleventh hook fails with EINVAL (kernel/bpf/cgroup.c: `bpf_cgroup_atype_find` finds no slot,
//! `__cgroup_bpf_attach` turns that into -EINVAL); under `auto` the engine then attaches that
//! hook's global program instead, with a note (engine/attach.rs).
use std::path::Path;

use super::{entry_hook::HookChoice, hooks::LsmHook};
use crate::{
    fault::{AttachPoint, PlanError},
    features::Prober,
};

/// The attachment chosen for a fault's LSM programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LsmAttach {
    /// lsm_cgroup programs on the target cgroup. `fallback`: chosen by `auto`, so a hook the
    /// kernel has no per-cgroup slot left for takes its global program instead.
    PerCgroup { fallback: bool },
    /// Global lsm programs, and why not per cgroup.
    Global { why: String },
}

impl LsmAttach {
    /// Chooses by `--hook` on this kernel (which the caller knows has BPF LSM).
    pub(crate) fn choose(kernel: &Prober, choice: HookChoice) -> Result<Self, PlanError> {
        match choice {
            HookChoice::Fentry | HookChoice::SysEnter => Err(PlanError::Refused(format!(
                "{}: BPF LSM programs attach per cgroup or globally (--hook lsm-cgroup or lsm, or auto); fentry and \
                 sys-enter are where syscall delay and crash points without --before-effect/--path catch the call",
                choice.flag()
            ))),
            HookChoice::Lsm => Ok(Self::Global { why: "--hook lsm".into() }),
            HookChoice::LsmCgroup => {
                let check = kernel.lsm_cgroup();
                if check.ok {
                    Ok(Self::PerCgroup { fallback: false })
                } else {
                    Err(PlanError::Refused(format!(
                        "--hook lsm-cgroup: {}; --hook lsm (or auto) attaches global programs instead",
                        check.detail
                    )))
                }
            }
            HookChoice::Auto => {
                let check = kernel.lsm_cgroup();
                Ok(if check.ok { Self::PerCgroup { fallback: true } } else { Self::Global { why: check.detail } })
            }
        }
    }

    /// The program of `hook` this attachment runs, its hook words, and where it attaches.
    #[must_use]
    pub(crate) fn program(&self, hook: &LsmHook, cgroup_dir: &Path) -> (&'static str, &'static str, AttachPoint) {
        match self {
            Self::PerCgroup { fallback } => (
                hook.cgroup_program,
                hook.cgroup_hook,
                AttachPoint::LsmCgroup {
                    hook: hook.name(),
                    cgroup_dir: cgroup_dir.to_path_buf(),
                    per_socket: hook.per_socket(),
                    global_fallback: fallback.then_some(hook.program),
                },
            ),
            Self::Global { .. } => (hook.program, hook.hook, AttachPoint::Lsm { hook: hook.name() }),
        }
    }

    /// For summaries: which attachment and why.
    #[must_use]
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::PerCgroup { fallback: true } => {
                "BPF LSM per cgroup (lsm_cgroup: other cgroups run nothing; a hook with no per-cgroup slot left \
                 takes the global program)"
                    .into()
            }
            Self::PerCgroup { fallback: false } => "BPF LSM per cgroup (lsm_cgroup: other cgroups run nothing)".into(),
            Self::Global { why } => format!("global BPF LSM programs, every task tests its cgroup ({why})"),
        }
    }

    /// `lsm-cgroup` or `lsm`, for the plan's parameters.
    #[must_use]
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            Self::PerCgroup { .. } => "lsm-cgroup",
            Self::Global { .. } => "lsm",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::syscall::hooks;

    #[test]
    fn each_attachment_names_its_program_and_attach_point() {
        let open = hooks::find("openat").and_then(|s| s.lsm).expect("openat has an LSM hook");
        let connect = hooks::find("connect").and_then(|s| s.lsm).expect("connect has an LSM hook");
        let dir = Path::new("/cg");
        let (program, words, attach) = LsmAttach::PerCgroup { fallback: true }.program(&open, dir);
        assert_eq!((program, words), ("cg_file_open", "lsm_cgroup/file_open"));
        assert!(matches!(
            attach,
            AttachPoint::LsmCgroup { hook: "file_open", per_socket: false, global_fallback: Some("sys_file_open"), .. }
        ));
        let (_, _, attach) = LsmAttach::PerCgroup { fallback: false }.program(&connect, dir);
        assert!(matches!(attach, AttachPoint::LsmCgroup { per_socket: true, global_fallback: None, .. }));
        let global = LsmAttach::Global { why: "--hook lsm".into() };
        let (program, words, attach) = global.program(&open, dir);
        assert_eq!((program, words), ("sys_file_open", "lsm/file_open"));
        assert!(matches!(attach, AttachPoint::Lsm { hook: "file_open" }));
        assert_eq!((global.name(), LsmAttach::PerCgroup { fallback: true }.name()), ("lsm", "lsm-cgroup"));
    }

    #[test]
    fn entry_hooks_are_refused_for_lsm_programs() {
        let kernel = Prober::new();
        for choice in [HookChoice::Fentry, HookChoice::SysEnter] {
            let err = LsmAttach::choose(&kernel, choice).unwrap_err().to_string();
            assert!(err.contains(&choice.flag()) && err.contains("--hook lsm-cgroup or lsm"), "{err}");
        }
        assert_eq!(
            LsmAttach::choose(&kernel, HookChoice::Lsm).unwrap(),
            LsmAttach::Global { why: "--hook lsm".into() }
        );
    }
}
