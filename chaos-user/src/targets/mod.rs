//! Who the fault is aimed at: `--cgroup`, `--pid`, `--unit`, `--container`, `--pod` or
//! `--selector` (every kind is in [`registry::TARGET_KINDS`]), resolved to one cgroup v2
//! directory and its id, or refused with a message that says what to do. Reading the hierarchy
//! itself (the mount, a process's cgroup) is `os::cgroup`.
//!
//! Never assume `/sys/fs/cgroup`: hybrid hosts mount cgroup v2 elsewhere (e.g.
//! `/sys/fs/cgroup/unified`), so the mount point comes from `/proc/self/mountinfo`.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Component, Path, PathBuf},
};

use serde::Serialize;

pub(crate) use self::{container::SelectorSpec, error::TargetError};
pub(crate) use crate::os::cgroup::{CgroupFs, is_same_or_below, own_cgroup, pid_cgroup};

/// What the user named on the command line or in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetName {
    /// Absolute path inside the cgroup2 mount, a cgroup path as /proc/PID/cgroup shows it
    /// (`/system.slice/x.service`), or a path relative to the mount.
    Cgroup(String),
    Pid(u32),
    /// A systemd unit, e.g. `nginx.service`.
    Unit(String),
    /// A container id (full or unique prefix) or name.
    Container(String),
    /// A Kubernetes pod on this node, `NAMESPACE/NAME`, or one of its containers.
    Pod {
        pod: String,
        container: Option<String>,
    },
    /// The pods whose labels match, in a namespace if given.
    Selector(SelectorSpec),
}

impl TargetName {
    #[must_use]
    pub const fn flag(&self) -> &'static str {
        match self {
            Self::Cgroup(_) => "--cgroup",
            Self::Pid(_) => "--pid",
            Self::Unit(_) => "--unit",
            Self::Container(_) => "--container",
            Self::Pod { .. } => "--pod",
            Self::Selector(_) => "--selector",
        }
    }

    /// Its kind in the registry.
    #[must_use]
    pub fn kind(&self) -> &'static registry::TargetKind {
        registry::kind_named(self.flag().trim_start_matches("--")).expect("every TargetName has a registry kind")
    }

    #[must_use]
    pub fn arg(&self) -> String {
        match self {
            Self::Cgroup(s) | Self::Unit(s) | Self::Container(s) => s.clone(),
            Self::Pid(pid) => pid.to_string(),
            Self::Pod { pod, container } => container::pod_arg(pod, container.as_deref()),
            Self::Selector(spec) => {
                let mut arg = spec.selector.clone();
                for (flag, value) in [("--namespace", &spec.namespace), ("--container-name", &spec.container)] {
                    if let Some(value) = value {
                        arg.push_str(&format!(" {flag} {value}"));
                    }
                }
                if let Some(pick) = spec.pick {
                    arg.push_str(&format!(" --pick {pick}"));
                }
                arg
            }
        }
    }
}

/// A resolved target: one cgroup v2 directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Target {
    /// How the user named it, e.g. `--pid 1234`.
    pub named_as: String,
    /// The cgroup path as the kernel shows it in /proc/PID/cgroup, e.g. `/system.slice/x.service`.
    pub cgroup: String,
    /// The directory in the cgroup2 filesystem.
    pub dir: PathBuf,
    /// The cgroup id (the directory's inode number), what `bpf_get_current_cgroup_id()` returns.
    pub id: u64,
}

impl Target {
    /// `cgroup /a/b (id 42)`, plus how it was named when that was not by path.
    #[must_use]
    pub(crate) fn describe(&self) -> String {
        let cgroup = format!("cgroup {} (id {})", self.cgroup, self.id);
        if self.named_as.starts_with("--cgroup") { cgroup } else { format!("{} = {cgroup}", self.named_as) }
    }
}

impl CgroupFs {
    /// Resolves `spec`, refusing the root cgroup, any cgroup that contains `own_cgroup` (the
    /// controller's own cgroup path, from /proc/self/cgroup) and init's (`init.scope`).
    pub(crate) fn resolve(&self, spec: &TargetName, own_cgroup: Option<&str>) -> Result<Target, TargetError> {
        self.resolve_allowing(spec, own_cgroup, false)
    }

    /// [`Self::resolve`]; with `i_know`, the safety refusals are lifted (the target must still
    /// exist).
    pub(crate) fn resolve_allowing(
        &self,
        spec: &TargetName,
        own_cgroup: Option<&str>,
        i_know: bool,
    ) -> Result<Target, TargetError> {
        let (flag, arg) = (spec.flag(), spec.arg());
        let dir = match spec {
            TargetName::Cgroup(path) => self.cgroup_dir(path)?,
            TargetName::Pid(pid) => {
                let cgroup = pid_cgroup(Path::new("/proc"), *pid)?;
                self.existing(flag, &arg, self.dir_of(&cgroup))?
            }
            TargetName::Unit(unit) => self.unit_dir(unit)?,
            TargetName::Container(id) => self.container_dir(id)?,
            TargetName::Pod { pod, container } => self.pod_dir(pod, container.as_deref())?,
            TargetName::Selector(spec) => self.selector_dir(spec)?,
        };
        let cgroup = self.cgroup_of(&dir).ok_or_else(|| TargetError::OutsideMount {
            arg: arg.clone(),
            path: dir.display().to_string(),
            mount: self.mount().display().to_string(),
        })?;
        if !i_know {
            refuse_unsafe(flag, &arg, &cgroup, own_cgroup)?;
        }
        let id = fs::metadata(&dir)
            .map_err(|e| TargetError::Unreadable { what: dir.display().to_string(), reason: e.to_string() })?
            .ino();
        Ok(Target { named_as: format!("{flag} {arg}"), cgroup, dir, id })
    }

    /// Every pod a selector matches (`--all`), each resolved as `--pick-pod N` would be, in the
    /// order the refusal of several lists them; one pod gives one target. Other forms: refused.
    pub(crate) fn resolve_every_pod(
        &self,
        spec: &TargetName,
        own_cgroup: Option<&str>,
    ) -> Result<Vec<Target>, TargetError> {
        let TargetName::Selector(selector) = spec else {
            return Err(TargetError::BadTarget {
                flag: spec.flag(),
                arg: spec.arg(),
                reason: "--all takes the pods of a --selector".into(),
            });
        };
        let count = match self.resolve(spec, own_cgroup) {
            Ok(one) => return Ok(vec![one]),
            Err(TargetError::SelectorMatchesMany { pods, .. }) => pods.len(),
            Err(err) => return Err(err),
        };
        (1..=count)
            .map(|n| {
                self.resolve(&TargetName::Selector(SelectorSpec { pick: Some(n), ..selector.clone() }), own_cgroup)
            })
            .collect()
    }

    fn existing(&self, flag: &'static str, arg: &str, dir: PathBuf) -> Result<PathBuf, TargetError> {
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(TargetError::NoSuchCgroup {
                flag,
                arg: arg.to_owned(),
                path: dir.display().to_string(),
                mount: self.mount().display().to_string(),
            })
        }
    }

    fn cgroup_dir(&self, path: &str) -> Result<PathBuf, TargetError> {
        let normalized = normalize(Path::new(path));
        let dir = if normalized.starts_with(self.mount()) {
            normalized
        } else if normalized.is_absolute() && normalized.starts_with("/sys/fs/cgroup") {
            // A cgroup v1 or wrong-mount path: say where v2 lives rather than guessing.
            return Err(TargetError::OutsideMount {
                arg: path.to_owned(),
                path: normalized.display().to_string(),
                mount: self.mount().display().to_string(),
            });
        } else {
            // `/system.slice/x.service` as /proc/PID/cgroup shows it, or `a/b` relative.
            self.dir_of(&normalized.to_string_lossy())
        };
        self.existing("--cgroup", path, dir)
    }

    fn unit_dir(&self, unit: &str) -> Result<PathBuf, TargetError> {
        let matches = self.find_dirs(|name| name == unit);
        match matches.as_slice() {
            [] => Err(TargetError::NoSuchUnit { unit: unit.to_owned(), mount: self.mount().display().to_string() }),
            [one] => Ok(one.clone()),
            _ => Err(self.ambiguous("--unit", unit, &matches)),
        }
    }

    fn ambiguous(&self, flag: &'static str, arg: &str, matches: &[PathBuf]) -> TargetError {
        TargetError::Ambiguous {
            flag,
            arg: arg.to_owned(),
            matches: matches.iter().filter_map(|m| self.cgroup_of(m)).collect(),
        }
    }

    /// Every cgroup directory whose name satisfies `wanted`, in sorted order, parents first.
    fn find_dirs(&self, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        // Real hierarchies are shallow (user@1000.service/app.slice/x.scope is depth 6).
        const MAX_DEPTH: usize = 12;
        let mut found = Vec::new();
        let mut stack = vec![(self.mount().to_path_buf(), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if entry.file_name().to_str().is_some_and(&wanted) {
                    found.push(path.clone());
                }
                if depth < MAX_DEPTH {
                    stack.push((path, depth + 1));
                }
            }
        }
        found.sort();
        found
    }
}

/// The refusals that protect the machine and chaos itself.
fn refuse_unsafe(flag: &'static str, arg: &str, cgroup: &str, own_cgroup: Option<&str>) -> Result<(), TargetError> {
    if cgroup == "/" {
        return Err(TargetError::RootCgroup { flag, arg: arg.to_owned() });
    }
    if let Some(own) = own_cgroup
        && is_same_or_below(own, cgroup)
    {
        return Err(TargetError::ContainsController {
            flag,
            arg: arg.to_owned(),
            path: cgroup.to_owned(),
            own: own.to_owned(),
        });
    }
    // systemd puts init in /init.scope; elsewhere, wherever pid 1 lives (unless that is the
    // root, refused above).
    let init = pid_cgroup(Path::new("/proc"), 1).ok().filter(|c| c != "/");
    if cgroup == "/init.scope" || init.is_some_and(|init| is_same_or_below(&init, cgroup)) {
        return Err(TargetError::InitScope { flag, arg: arg.to_owned(), path: cgroup.to_owned() });
    }
    Ok(())
}

/// The full container id a runtime's cgroup directory name carries, if it is one:
/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`
/// (systemd driver) or a bare 64-hex `<id>` (cgroupfs driver, e.g. `/docker/<id>`).
#[must_use]
pub(crate) fn container_id(dir_name: &str) -> Option<&str> {
    let name = dir_name.strip_suffix(".scope").unwrap_or(dir_name);
    let id = ["docker-", "cri-containerd-", "crio-", "libpod-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// Lexically removes `.` and `..` so `/a/../b` cannot escape the mount by accident.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

mod container;
mod error;
pub(crate) mod registry;
pub(crate) mod runtime;
#[cfg(test)]
mod tests;
pub(crate) mod watch;
