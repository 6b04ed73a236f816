//! What the kernel says about error injection: whether it has kprobes, which function a
//! syscall enters through, and which functions it lets BPF override (its error-injection list,
//! read only where debugfs is mounted).
use std::{collections::BTreeSet, fs, io, path::Path};

/// Where the kernel lists the functions BPF may override (debugfs).
pub(crate) const ERROR_INJECTION_LIST: &str = "/sys/kernel/debug/error_injection/list";

/// The kprobe PMU: present when the kernel has kprobes (and perf-based attachment, 4.17+).
pub(crate) const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

/// Whether the kernel has kprobes (the PMU aya attaches them through): what was found, or why not.
pub(crate) fn kprobes() -> Result<String, String> {
    if Path::new(KPROBE_PMU).exists() {
        Ok(format!("kprobe PMU at {KPROBE_PMU}"))
    } else {
        Err(format!("no kprobes: {KPROBE_PMU} is missing (the kernel has no CONFIG_KPROBES)"))
    }
}

/// The function a syscall enters the kernel through on this architecture (`__x64_sys_newstat`
/// for `stat`: the kernel's table names it), or why there is none.
pub(crate) use super::syscall_table::entry_function;

/// The kernel's error-injection list, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InjectionList {
    /// Function names (the list's first column).
    Read(BTreeSet<String>),
    /// Why chaos cannot tell which functions are on it.
    Unreadable(String),
}

impl InjectionList {
    /// The list, read once per process (it changes only when modules load).
    pub(crate) fn cached() -> &'static Self {
        static LIST: std::sync::OnceLock<InjectionList> = std::sync::OnceLock::new();
        LIST.get_or_init(Self::read)
    }

    /// Reads the list only where debugfs is already mounted: chaos does not mount filesystems
    /// behind the user's back, it says how instead.
    #[must_use]
    pub(crate) fn read() -> Self {
        Self::read_from(Path::new(ERROR_INJECTION_LIST), debugfs_mounted())
    }

    fn read_from(path: &Path, debugfs_mounted: bool) -> Self {
        if !debugfs_mounted {
            return Self::Unreadable(
                "debugfs is not mounted, so the error-injection list cannot be read (mount -t debugfs debugfs \
                 /sys/kernel/debug)"
                    .into(),
            );
        }
        match fs::read_to_string(path) {
            Ok(text) => Self::Read(parse(&text)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Self::Unreadable(format!(
                "{} does not exist: this kernel has no CONFIG_FUNCTION_ERROR_INJECTION",
                path.display()
            )),
            Err(err) => Self::Unreadable(format!("cannot read {}: {err}", path.display())),
        }
    }

    /// Whether the kernel lets BPF override `function`: `Err(reason)` when the list says no.
    /// A list chaos cannot read is no reason to refuse: the kernel checks the function itself
    /// when the kprobe attaches (EINVAL, which chaos explains), and with error injection built
    /// in, every syscall entry is on it (`SYSCALL_DEFINE` marks each one ALLOW_ERROR_INJECTION).
    pub(crate) fn allows(&self, function: &str) -> Result<(), String> {
        match self {
            Self::Read(functions) if !functions.contains(function) => {
                Err(format!("{function} is not on the kernel's error-injection list"))
            }
            Self::Read(_) | Self::Unreadable(_) => Ok(()),
        }
    }

    /// For `doctor`: how many functions, how many of them syscall entries.
    #[must_use]
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Read(functions) => {
                let syscalls = functions.iter().filter(|f| f.starts_with("__x64_sys_")).count();
                format!("error-injection list: {} functions, {syscalls} syscall entries", functions.len())
            }
            Self::Unreadable(reason) => format!("{reason}; the kernel checks each function when chaos attaches"),
        }
    }
}

/// `__x64_sys_fsync\tERRNO` lines (older kernels print only the name).
fn parse(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|line| line.split_whitespace().next()).map(str::to_owned).collect()
}

fn debugfs_mounted() -> bool {
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|mounts| {
        mounts.lines().any(|line| {
            let Some((mount, fs_fields)) = line.split_once(" - ") else { return false };
            fs_fields.split_whitespace().next() == Some("debugfs")
                && mount.split_whitespace().nth(4) == Some("/sys/kernel/debug")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_with_and_without_a_type_column() {
        let functions = parse("__x64_sys_fsync\tERRNO\n__x64_sys_fdatasync\tERRNO\nshould_failslab\n");
        let list = InjectionList::Read(functions);
        assert_eq!(list.allows("__x64_sys_fsync"), Ok(()));
        assert_eq!(list.allows("should_failslab"), Ok(()));
        assert!(list.allows("__x64_sys_nope").unwrap_err().contains("not on the kernel's error-injection list"));
        assert_eq!(list.describe(), "error-injection list: 3 functions, 2 syscall entries");
    }

    #[test]
    fn an_unmounted_debugfs_is_said_not_guessed() {
        let list = InjectionList::read_from(Path::new("/nonexistent"), false);
        assert!(list.describe().contains("mount -t debugfs"), "{list:?}");
        assert_eq!(list.allows("__x64_sys_fsync"), Ok(()), "the kernel decides when the list is unreadable");
        let list = InjectionList::read_from(Path::new("/nonexistent/list"), true);
        assert!(list.describe().contains("CONFIG_FUNCTION_ERROR_INJECTION"));
    }
}
