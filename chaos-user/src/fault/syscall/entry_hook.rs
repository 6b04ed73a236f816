//! Where a program that acts at a syscall's entry runs (`syscall delay`, crash points): an
//! fentry program on the one syscall's entry function (`__x64_sys_<name>`) where the kernel has
//! BPF trampolines, so that no other syscall pays anything; else the raw `sys_enter`
//! tracepoint, which every syscall of every task passes (its program turns the others away
//! with a bitmap lookup). `--hook` picks one by hand; `auto` takes fentry where it can.
use std::path::PathBuf;

use crate::{
    fault::{AttachPoint, PlanError, syscall::error_injection},
    features::Prober,
    os::syscall_table::Numbered,
};

/// `--hook`: which hook catches the syscall. One vocabulary for every fault that has a choice:
/// `fentry` and `sys-enter` for programs at the syscall's entry (syscall delay, crash points),
/// `lsm-cgroup` and `lsm` for BPF LSM programs (syscall fail's LSM backend, crash points with
/// `--before-effect` or `--path`; see `lsm_attach`). A value that does not apply is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum HookChoice {
    /// The cheapest the kernel has: at the entry, fentry where the kernel can (one syscall,
    /// BPF trampolines, the function in the kernel's BTF), else raw sys_enter; on BPF LSM,
    /// per-cgroup programs (lsm_cgroup, 6.0+) where the kernel has them, else global ones.
    #[default]
    Auto,
    /// fentry on the entry function, or a refusal saying why not.
    Fentry,
    /// The raw sys_enter tracepoint (every kernel with raw tracepoints).
    SysEnter,
    /// BPF LSM programs attached to the target cgroup (lsm_cgroup), or a refusal saying why not.
    LsmCgroup,
    /// Global BPF LSM programs that every task runs, each testing the task's cgroup first.
    Lsm,
}

impl HookChoice {
    /// The flag as the user wrote it.
    #[must_use]
    pub(crate) fn flag(self) -> String {
        let value = serde_json::to_value(self).expect("serializes");
        format!("--hook {}", value.as_str().unwrap_or_default())
    }
}

/// The hook chosen, with the words `--dry-run` and the summary use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EntryHook {
    /// fentry on this entry function.
    Fentry { function: String },
    /// The raw sys_enter tracepoint, and why not fentry.
    SysEnter { why: String },
}

impl EntryHook {
    /// `fentry` or `sys-enter`, as the tests name what ran.
    #[cfg(test)]
    #[must_use]
    pub(crate) const fn name(&self) -> &'static str {
        match self {
            Self::Fentry { .. } => "fentry",
            Self::SysEnter { .. } => "sys-enter",
        }
    }

    /// Chooses for these syscalls on this kernel.
    pub(crate) fn choose(kernel: &Prober, syscalls: &[Numbered], choice: HookChoice) -> Result<Self, PlanError> {
        let fentry = || -> Result<String, String> {
            let [syscall] = syscalls else {
                return Err(format!("fentry serves one syscall per fault, and {} are named", syscalls.len()));
            };
            let function = error_injection::entry_function(syscall.name)?;
            let check = kernel.syscall_entry_fentry(&function);
            if check.ok { Ok(function) } else { Err(check.detail) }
        };
        match choice {
            HookChoice::Lsm | HookChoice::LsmCgroup => Err(PlanError::Refused(format!(
                "{}: this fault catches the call at the syscall's entry (--hook fentry or sys-enter); lsm and \
                 lsm-cgroup choose how BPF LSM programs attach (syscall fail, proc kill --before-effect or --path)",
                choice.flag()
            ))),
            HookChoice::SysEnter => Ok(Self::SysEnter { why: "--hook sys-enter".into() }),
            HookChoice::Fentry => fentry().map(|function| Self::Fentry { function }).map_err(|why| {
                PlanError::Refused(format!("--hook fentry: {why}; --hook sys-enter (or auto) works on every kernel"))
            }),
            HookChoice::Auto => {
                Ok(fentry().map_or_else(|why| Self::SysEnter { why }, |function| Self::Fentry { function }))
            }
        }
    }

    /// The program of the pair (`raw`, `entry`) this hook runs, its hook words, and where it
    /// attaches; `stops_tasks_of` is the cgroup whose tasks the program may stop.
    #[must_use]
    pub(crate) fn program(
        &self,
        raw: &'static str,
        entry: &'static str,
        stops_tasks_of: Option<PathBuf>,
    ) -> (&'static str, &'static str, AttachPoint) {
        match self {
            Self::Fentry { function } => {
                (entry, "fentry", AttachPoint::Fentry { function: function.clone(), cgroup_dir: stops_tasks_of })
            }
            Self::SysEnter { .. } => {
                let attach = match stops_tasks_of {
                    Some(cgroup_dir) => AttachPoint::RawTracepoint { tracepoint: "sys_enter", cgroup_dir },
                    None => AttachPoint::SignallingTracepoint { tracepoint: "sys_enter" },
                };
                (raw, "raw_tracepoint/sys_enter", attach)
            }
        }
    }

    /// For summaries: `fentry on __x64_sys_read`, or `raw sys_enter tracepoint (why)`.
    #[must_use]
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Fentry { function } => format!("fentry on {function}"),
            Self::SysEnter { why } => format!("raw sys_enter tracepoint ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hook_names_its_program_and_attach_point() {
        let fentry = EntryHook::Fentry { function: "__x64_sys_read".into() };
        let (program, hook, attach) = fentry.program("raw", "entry", Some(PathBuf::from("/cg")));
        assert_eq!((program, hook), ("entry", "fentry"));
        assert!(
            matches!(attach, AttachPoint::Fentry { ref function, cgroup_dir: Some(_) } if function == "__x64_sys_read")
        );
        let raw = EntryHook::SysEnter { why: "two syscalls".into() };
        let (program, hook, attach) = raw.program("raw", "entry", Some(PathBuf::from("/cg")));
        assert_eq!((program, hook), ("raw", "raw_tracepoint/sys_enter"));
        assert!(matches!(attach, AttachPoint::RawTracepoint { tracepoint: "sys_enter", .. }));
        let (_, _, attach) = raw.program("raw", "entry", None);
        assert!(matches!(attach, AttachPoint::SignallingTracepoint { tracepoint: "sys_enter" }));
        assert_eq!(raw.describe(), "raw sys_enter tracepoint (two syscalls)");
        assert_eq!((fentry.name(), raw.name()), ("fentry", "sys-enter"));
    }
}
