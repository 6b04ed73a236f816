//! Which cgroup v2 controllers a cgroup can use, and if not, why and what fixes it.
//!
//! A cgroup has a controller's files (`cpu.max`, `memory.high`...) when its parent lists the
//! controller in `cgroup.subtree_control`; its own `cgroup.controllers` says which it has. A
//! controller can be missing for two reasons, with two different fixes:
//! - it is bound to a cgroup v1 hierarchy (a hybrid host: `/proc/cgroups` gives it a non-zero
//!   hierarchy, the cgroup2 root does not list it): cgroup v2 cannot use it until the host
//!   boots with every controller in cgroup v2;
//! - the parent does not delegate it (not in its `cgroup.subtree_control`): whoever owns the
//!   parent (systemd, kubelet, the container runtime) enables it there.
//!
//! Enabling a controller is a change to the parent, which every sibling of the target feels,
//! so nothing here ever writes `cgroup.subtree_control`.
use std::{fs, path::Path};

use serde::Serialize;

/// The controllers resource limits use, in the order `chaos doctor` lists them.
pub const LIMIT_CONTROLLERS: [&str; 4] = ["cpu", "memory", "io", "pids"];

/// The controllers `dir` has (its `cgroup.controllers`).
#[must_use]
pub fn of(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Why `dir` (a cgroup below `mount`, the cgroup2 mount) cannot use `controller`, with the fix;
/// None when it can.
#[must_use]
pub fn why_not(mount: &Path, dir: &Path, controller: &str) -> Option<String> {
    if of(dir).iter().any(|c| c == controller) {
        return None;
    }
    if !of(mount).iter().any(|c| c == controller) {
        return Some(match v1_binding(controller) {
            V1::Bound { mounted_at } => format!(
                "the {controller} controller is bound to cgroup v1{} on this host, so cgroup v2 (where the target is) \
                 cannot use it. Fix: boot the host with every controller in cgroup v2 (systemd: \
                 systemd.unified_cgroup_hierarchy=1; or the kernel's cgroup_no_v1=all)",
                mounted_at.map_or_else(String::new, |at| format!(" (mounted at {at})"))
            ),
            V1::Disabled => format!(
                "the {controller} controller is disabled on this kernel (cgroup_disable= on its command line, or not \
                 built in); boot without it disabled"
            ),
            V1::NotBound => format!(
                "the cgroup v2 root ({}) does not list the {controller} controller in cgroup.controllers: this kernel \
                 does not offer it",
                mount.display()
            ),
        });
    }
    let parent = dir.parent().unwrap_or(mount);
    let parent_name = cgroup_name(mount, parent);
    Some(format!(
        "the {controller} controller is not enabled for {}: its parent {parent_name} does not list it in \
         cgroup.subtree_control. chaos never enables a controller itself (that changes every cgroup beside the \
         target); whoever owns {parent_name} does: `echo +{controller} > {}` (systemd: Delegate=yes or \
         {}Accounting=yes on the unit; Kubernetes and container runtimes enable cpu, memory, io and pids themselves)",
        cgroup_name(mount, dir),
        parent.join("cgroup.subtree_control").display(),
        accounting_word(controller)
    ))
}

fn accounting_word(controller: &str) -> &'static str {
    match controller {
        "cpu" => "CPU",
        "memory" => "Memory",
        "io" => "IO",
        "pids" => "Tasks",
        _ => "",
    }
}

/// `/a/b` for `<mount>/a/b`.
fn cgroup_name(mount: &Path, dir: &Path) -> String {
    dir.strip_prefix(mount).map_or_else(|_| dir.display().to_string(), |rel| format!("/{}", rel.display()))
}

enum V1 {
    Bound { mounted_at: Option<String> },
    Disabled,
    NotBound,
}

/// Whether `controller` is bound to a cgroup v1 hierarchy (`/proc/cgroups`: a non-zero
/// hierarchy id), and where that hierarchy is mounted.
fn v1_binding(controller: &str) -> V1 {
    // cgroup v1 calls the io controller blkio.
    let v1_name = if controller == "io" { "blkio" } else { controller };
    let row = fs::read_to_string("/proc/cgroups").ok().and_then(|text| {
        text.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == v1_name).then(|| {
                let hierarchy: u32 = fields.next()?.parse().ok()?;
                let enabled: u32 = fields.nth(1)?.parse().ok()?;
                Some((hierarchy, enabled))
            })?
        })
    });
    match row {
        Some((_, 0)) => V1::Disabled,
        Some((hierarchy, _)) if hierarchy != 0 => V1::Bound { mounted_at: v1_mount(v1_name) },
        _ => V1::NotBound,
    }
}

/// Where the cgroup v1 hierarchy of `v1_name` is mounted, if it is.
fn v1_mount(v1_name: &str) -> Option<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (mount, fs_fields) = line.split_once(" - ")?;
        let mut fs_fields = fs_fields.split_whitespace();
        if fs_fields.next()? != "cgroup" {
            return None;
        }
        let options = fs_fields.nth(1)?;
        options.split(',').any(|o| o == v1_name).then(|| mount.split_whitespace().nth(4).map(str::to_owned))?
    })
}

/// One controller as `chaos doctor` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControllerStatus {
    pub name: &'static str,
    /// In the cgroup v2 root's `cgroup.controllers`: a cgroup whose parent delegates it can use it.
    pub in_cgroup2: bool,
    pub detail: String,
}

/// The limit controllers of the cgroup2 hierarchy at `mount`, for `chaos doctor`.
#[must_use]
pub fn status(mount: &Path) -> Vec<ControllerStatus> {
    let root = of(mount);
    let delegated = fs::read_to_string(mount.join("cgroup.subtree_control")).unwrap_or_default();
    LIMIT_CONTROLLERS
        .iter()
        .map(|&name| {
            let in_cgroup2 = root.iter().any(|c| c == name);
            let detail = if in_cgroup2 {
                let enabled = delegated.split_whitespace().any(|c| c == name);
                format!(
                    "in cgroup v2{}; a target has it where its parent's cgroup.subtree_control lists it",
                    if enabled { ", enabled below the root" } else { ", not enabled below the root yet" }
                )
            } else {
                why_not(mount, mount, name).unwrap_or_default()
            };
            ControllerStatus { name, in_cgroup2, detail }
        })
        .collect()
}

/// Whether cgroup v2 has the controllers limits write through (`chaos doctor`): yes when at
/// least one is there (each limit then checks its own for its target), else why not.
pub fn probe() -> Result<String, String> {
    let mount = crate::os::cgroup::CgroupFs::discover().map_err(|e| e.to_string())?.mount().to_path_buf();
    let status = status(&mount);
    let present: Vec<&str> = status.iter().filter(|c| c.in_cgroup2).map(|c| c.name).collect();
    if present.is_empty() {
        Err(status.first().map_or_else(String::new, |c| c.detail.clone()))
    } else {
        Ok(format!("cgroup v2 has {}", present.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_controller_the_parent_does_not_delegate_is_refused_with_the_fix() {
        let mount = std::env::temp_dir().join(format!("chaos-controllers-{}", std::process::id()));
        let dir = mount.join("app");
        fs::create_dir_all(&dir).unwrap();
        fs::write(mount.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        fs::write(dir.join("cgroup.controllers"), "memory pids\n").unwrap();
        assert_eq!(why_not(&mount, &dir, "memory"), None);
        let why = why_not(&mount, &dir, "cpu").unwrap();
        assert!(why.contains("parent / does not list it in cgroup.subtree_control"), "{why}");
        assert!(why.contains("echo +cpu >"), "{why}");
        assert!(why.contains("never enables"), "{why}");
        fs::remove_dir_all(&mount).unwrap();
    }
}
