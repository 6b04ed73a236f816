//! The interface files of cgroup v2 resource controllers (`cpu.max`, `memory.high`, `io.max`,
//! `pids.max`...), knowing nothing of faults: read a value, write one, and put a previous value
//! back only if the file still holds what was written ([`restore`]), so that a limit someone
//! else changed in the meantime (an operator, kubelet, systemd) is left as they set it.
//!
//! A value is compared as the kernel prints it back, not as it was typed: whitespace is
//! ignored, and an `io.max` line compares key by key (a device without a line reads as every
//! key `max`). The guard process, the ledger's cleanup and the fault itself share these, so
//! all three decide "ours or not" the same way.
//!
//! Beside them: which controllers a cgroup can use and why not ([`controllers`]), and the
//! pressure and statistics files a limit's evidence is read from ([`stats`]).
pub mod controllers;
pub mod stats;

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The keys of an `io.max` line, in the order the kernel prints them.
pub const IO_MAX_KEYS: [&str; 4] = ["rbps", "wbps", "riops", "wiops"];

/// One value of one interface file: the whole file, or one device's line of `io.max`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Knob {
    /// The file, e.g. `/sys/fs/cgroup/app/cpu.max`.
    pub file: PathBuf,
    /// For `io.max`: the device (`MAJ:MIN`) whose line this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

impl Knob {
    /// The whole file `name` of the cgroup directory `dir`.
    #[must_use]
    pub fn file(dir: &Path, name: &str) -> Self {
        Self { file: dir.join(name), device: None }
    }

    /// The `io.max` line of `device` (`MAJ:MIN`) in the cgroup directory `dir`.
    #[must_use]
    pub fn io_max(dir: &Path, device: &str) -> Self {
        Self { file: dir.join("io.max"), device: Some(device.to_owned()) }
    }

    /// The file's name: `cpu.max`.
    #[must_use]
    pub fn name(&self) -> String {
        self.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// `cpu.max`, or `io.max (254:0)`, for messages.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.device {
            Some(device) => format!("{} ({device})", self.name()),
            None => self.name(),
        }
    }

    /// The value as the kernel shows it now: the file's content, trimmed, or for an `io.max`
    /// device its four keys (`rbps=max wbps=max riops=max wiops=20`; all `max` without a line).
    pub fn read(&self) -> io::Result<String> {
        let text = fs::read_to_string(&self.file)?;
        Ok(match &self.device {
            None => text.trim().to_owned(),
            Some(device) => io_max_line(&text, device),
        })
    }

    /// Writes `value` (for an `io.max` device: `rbps=.. wbps=..`, the device is prefixed).
    pub fn write(&self, value: &str) -> io::Result<()> {
        let line = match &self.device {
            None => value.to_owned(),
            Some(device) => format!("{device} {value}"),
        };
        fs::write(&self.file, line)
    }

    /// Whether two values of this knob are the same as the kernel sees them.
    #[must_use]
    pub fn same(&self, a: &str, b: &str) -> bool {
        match &self.device {
            None => a.split_whitespace().eq(b.split_whitespace()),
            Some(_) => io_max_keys(a) == io_max_keys(b),
        }
    }
}

/// What [`restore`] found and did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Restore {
    /// The file held what was written: the previous value is back.
    Restored,
    /// The file already held the previous value (restored earlier, e.g. by the guard).
    AlreadyBack,
    /// Someone changed the value after it was written: it is left as they set it.
    ChangedByOthers { found: String },
    /// The cgroup is gone, and its limits with it.
    Gone,
}

/// Puts `previous` back into `knob` if it still holds a value of `written` (what chaos wrote:
/// the value in force, and during a change the one it replaces); leaves a value someone else
/// set alone.
pub fn restore(knob: &Knob, written: &[String], previous: &str) -> io::Result<Restore> {
    let now = match knob.read() {
        Ok(now) => now,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Restore::Gone),
        Err(err) => return Err(err),
    };
    if knob.same(&now, previous) {
        return Ok(Restore::AlreadyBack);
    }
    if !written.iter().any(|w| knob.same(&now, w)) {
        return Ok(Restore::ChangedByOthers { found: now });
    }
    match knob.write(previous) {
        Ok(()) => Ok(Restore::Restored),
        Err(err) if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(libc::ENODEV) => {
            Ok(Restore::Gone)
        }
        Err(err) => Err(err),
    }
}

/// The value of `device`'s line in an `io.max` text, its four keys in the kernel's order.
#[must_use]
pub fn io_max_line(text: &str, device: &str) -> String {
    let line = text.lines().find_map(|l| l.trim().strip_prefix(device).and_then(|rest| rest.strip_prefix(' ')));
    let keys = io_max_keys(line.unwrap_or(""));
    keys.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// The four `io.max` keys of a value (`wiops=20` alone means the others are `max`).
fn io_max_keys(value: &str) -> [(&'static str, String); 4] {
    IO_MAX_KEYS.map(|key| {
        let found = value.split_whitespace().find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='));
        (key, found.unwrap_or("max").to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_max_lines_read_key_by_key_and_absent_devices_read_as_max() {
        let text = "8:0 rbps=max wbps=max riops=max wiops=20\n254:0 rbps=1048576 wbps=max riops=max wiops=max\n";
        assert_eq!(io_max_line(text, "8:0"), "rbps=max wbps=max riops=max wiops=20");
        assert_eq!(io_max_line(text, "254:0"), "rbps=1048576 wbps=max riops=max wiops=max");
        assert_eq!(io_max_line(text, "8:1"), "rbps=max wbps=max riops=max wiops=max");
        assert_eq!(io_max_line("", "8:0"), "rbps=max wbps=max riops=max wiops=max");
        let knob = Knob::io_max(Path::new("/x"), "8:0");
        assert!(knob.same("wiops=20", "rbps=max wbps=max riops=max wiops=20"));
        assert!(!knob.same("wiops=20", "wiops=21"));
    }

    #[test]
    fn whole_files_compare_without_regard_to_whitespace() {
        let knob = Knob::file(Path::new("/x"), "cpu.max");
        assert!(knob.same("25000 100000\n", "25000  100000"));
        assert!(!knob.same("25000 100000", "max 100000"));
        assert_eq!(knob.label(), "cpu.max");
        assert_eq!(Knob::io_max(Path::new("/x"), "8:0").label(), "io.max (8:0)");
    }

    #[test]
    fn restore_puts_back_only_what_still_holds_our_value() {
        let dir = std::env::temp_dir().join(format!("chaos-knob-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let knob = Knob::file(&dir, "pids.max");
        fs::write(&knob.file, "5\n").unwrap();
        let ours = ["4".to_owned(), "5".to_owned()];
        assert_eq!(restore(&knob, &ours, "max").unwrap(), Restore::Restored);
        assert_eq!(knob.read().unwrap(), "max");
        assert_eq!(restore(&knob, &ours, "max").unwrap(), Restore::AlreadyBack);
        fs::write(&knob.file, "4").unwrap();
        assert_eq!(restore(&knob, &ours, "max").unwrap(), Restore::Restored, "the value a change replaces is ours too");
        fs::write(&knob.file, "7").unwrap();
        assert_eq!(restore(&knob, &ours, "max").unwrap(), Restore::ChangedByOthers { found: "7".into() });
        assert_eq!(knob.read().unwrap(), "7", "a value someone else set stays");
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(restore(&knob, &ours, "max").unwrap(), Restore::Gone);
    }
}
