//! The one list of target kinds: how a target is named on the command line (`--unit NAME`), in
//! an experiment file (`target = { unit = "NAME" }`) and by the daemon's runtime selectors, and
//! how a kind's value becomes a [`TargetName`]. The command line builds its target flags from
//! this list (`cli::TargetArgs`), experiment files take their keys from it, and the daemon names
//! what a runtime answered through it, so a kind is spelt, parsed and explained in one place.
//!
//! Adding a target kind: a [`TargetName`] variant (with its `flag` and `arg`), its resolver in a
//! file of its own under `targets/` (a `CgroupFs` method returning the cgroup's directory, one
//! arm in `CgroupFs::resolve_allowing`), and one line in [`TARGET_KINDS`].
use super::{SelectorSpec, TargetName};

/// What narrows a pod target (the command line's `--container-name`, `--namespace`,
/// `--pick-pod`; experiment files and selectors take whole pods unless they say otherwise).
#[derive(Clone, Debug, Default)]
pub struct Narrowing {
    /// Only this container of the pod (its name in the pod spec).
    pub container_name: Option<String>,
    /// Only pods in this Kubernetes namespace (`--selector`).
    pub namespace: Option<String>,
    /// The Nth pod a selector matches, numbered from 1.
    pub pick: Option<usize>,
}

/// One way of naming a target.
pub struct TargetKind {
    /// The flag without its dashes, and the experiment file's key: `unit`.
    pub key: &'static str,
    /// The value's name in `--help`: `NAME`.
    pub value_name: &'static str,
    /// The flag's help (one sentence, no final period, as clap shows doc comments).
    pub help: &'static str,
    /// The value is a number (a pid): parsed as one on the command line and in files.
    pub numeric: bool,
    /// A container runtime names it, so `follow = true` can resolve it again after a restart.
    pub followable: bool,
    name: fn(String, &Narrowing) -> Result<TargetName, String>,
}

impl TargetKind {
    /// The target `value` names, narrowed as `narrowing` says.
    pub fn name(&self, value: String, narrowing: &Narrowing) -> Result<TargetName, String> {
        (self.name)(value, narrowing)
    }

    /// `--unit`.
    #[must_use]
    pub fn flag(&self) -> String {
        format!("--{}", self.key)
    }
}

impl std::fmt::Debug for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key)
    }
}

/// Every target kind, in the order `--help` lists them.
pub(crate) const TARGET_KINDS: &[TargetKind] = &[
    TargetKind {
        key: "cgroup",
        value_name: "PATH",
        help: "A cgroup v2 path: absolute, as /proc/PID/cgroup shows it, or relative to the cgroup2 mount",
        numeric: false,
        followable: false,
        name: |path, _| Ok(TargetName::Cgroup(path)),
    },
    TargetKind {
        key: "pid",
        value_name: "PID",
        help: "The cgroup of this process. Sockets it opened before joining that cgroup are not affected",
        numeric: true,
        followable: false,
        name: |pid, _| pid.parse().map(TargetName::Pid).map_err(|e| format!("{pid:?} is not a process id: {e}")),
    },
    TargetKind {
        key: "unit",
        value_name: "NAME",
        help: "A systemd unit's cgroup, e.g. nginx.service",
        numeric: false,
        followable: false,
        name: |unit, _| Ok(TargetName::Unit(unit)),
    },
    TargetKind {
        key: "container",
        value_name: "ID|NAME",
        help: "A container's cgroup, by full id, unique id prefix or name, asked of the runtimes whose sockets are \
               present (Docker, Podman, containerd); else by cgroup directory names (ids only)",
        numeric: false,
        followable: true,
        name: |id, _| Ok(TargetName::Container(id)),
    },
    TargetKind {
        key: "pod",
        value_name: "NAMESPACE/NAME",
        help: "A Kubernetes pod on this node (its pod-level cgroup: all its containers), found through the labels \
               kubelet puts on containers in containerd; no API server needed",
        numeric: false,
        followable: true,
        name: |pod, narrowing| Ok(TargetName::Pod { pod, container: narrowing.container_name.clone() }),
    },
    TargetKind {
        key: "selector",
        value_name: "KEY=VALUE,..",
        help: "The pod on this node whose labels match all of KEY=VALUE,..; several need --pick-pod",
        numeric: false,
        followable: true,
        name: |selector, narrowing| {
            Ok(TargetName::Selector(SelectorSpec {
                selector,
                namespace: narrowing.namespace.clone(),
                container: narrowing.container_name.clone(),
                pick: narrowing.pick,
            }))
        },
    },
];

/// The kind spelt `key` (`unit`).
#[must_use]
pub(crate) fn kind_named(key: &str) -> Option<&'static TargetKind> {
    TARGET_KINDS.iter().find(|kind| kind.key == key)
}

/// Every kind's key, for "name exactly one of: ..." messages.
#[must_use]
pub(crate) fn keys() -> Vec<&'static str> {
    TARGET_KINDS.iter().map(|kind| kind.key).collect()
}

/// The target a runtime answered with (the daemon's selectors): a container by its name, a pod
/// by `namespace/name` and, optionally, one of its containers.
#[must_use]
pub(crate) fn named(key: &str, value: String, narrowing: &Narrowing) -> TargetName {
    let kind = kind_named(key).unwrap_or_else(|| panic!("no target kind {key}"));
    kind.name(value, narrowing).unwrap_or_else(|err| panic!("a runtime's {key} name: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_once_and_names_its_own_variant() {
        for kind in TARGET_KINDS {
            assert_eq!(TARGET_KINDS.iter().filter(|k| k.key == kind.key).count(), 1, "{}", kind.key);
            let value = if kind.numeric { "42".to_owned() } else { "x".to_owned() };
            let name = kind.name(value, &Narrowing::default()).expect("a value of the kind");
            assert_eq!(name.flag(), kind.flag(), "{} names {name:?}", kind.key);
        }
        assert!(kind_named("pid").expect("pid").name("nope".into(), &Narrowing::default()).is_err());
        assert!(kind_named("host").is_none());
    }
}
