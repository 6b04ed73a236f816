//! The daemon's target selectors (`targets = { ... }` of an `[[experiment]]`) and the
//! Kubernetes namespace opt-in (`[kubernetes] namespaces = [...]`) that gates pod selectors;
//! both read from the positioned TOML, so every error is at `file:line:column`.
use super::keys;
use crate::{
    experiment::source::{FileError, Item},
    targets::runtime::pod,
};

/// Which cgroups an experiment may run on; one matching target is picked per run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A glob over cgroup paths, e.g. `/system.slice/*.service`.
    Cgroup(String),
    /// A glob over systemd unit names, e.g. `web-*.service`: the cgroups named so.
    Unit(String),
    /// A glob over container ids, e.g. `3f2a*`: the cgroups the runtimes name after them
    /// (`docker-<id>.scope`, `cri-containerd-<id>.scope`, `/docker/<id>`, ...), as `--container`
    /// finds them.
    Container(String),
    /// A glob over the names Docker and Podman give their containers, e.g. `web-*`, asked of
    /// the runtimes' APIs. Containers kubelet made are left to [`Selector::Pods`] (and so to
    /// the namespace opt-in).
    ContainerName(String),
    /// Kubernetes pods on this node by their labels, as kubelet labels their sandboxes.
    Pods(PodSelector),
}

/// `pods = "app=web,tier=db", namespace = "shop", container_name = "nginx"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSelector {
    /// As written, for logs.
    pub text: String,
    /// Every pair must be on the pod.
    pub labels: Vec<(String, String)>,
    pub namespace: Option<String>,
    /// One container of each pod (by kubelet's container name) instead of the pod's cgroup.
    pub container_name: Option<String>,
}

/// `[kubernetes]`: which namespaces' pods the daemon may touch. kubelet does not copy a
/// Namespace object's labels onto the containers, and the daemon has no API server client, so
/// the opt-in is this node-local list in the daemon's own configuration (the ConfigMap that
/// only chaos's operators edit), not a label an application team could set on its own pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kubernetes {
    /// Exact namespace names; empty: no pod is eligible.
    pub namespaces: Vec<String>,
}

impl Kubernetes {
    #[must_use]
    pub fn opted_in(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
    }
}

pub(super) fn parse_kubernetes(item: &Item<'_>) -> Result<Kubernetes, FileError> {
    let table = item.table("[kubernetes]")?;
    let namespaces = match keys::get(&table, keys::KUBERNETES, "namespaces") {
        Some(list) => {
            let names = list.strings()?;
            if let Some(bad) = names.iter().find(|n| !is_namespace_name(n)) {
                return Err(list.error(format!(
                    "\"{bad}\" is not a namespace name (lower-case letters, digits and '-'), e.g. [\"shop\"]"
                )));
            }
            names
        }
        None => Vec::new(),
    };
    keys::finish(&table, keys::KUBERNETES)?;
    Ok(Kubernetes { namespaces })
}

/// A Kubernetes namespace name: an RFC 1123 label.
fn is_namespace_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `targets = { ... }`; `kubernetes` is the opt-in already read, so that a selector naming a
/// namespace that has not opted in (it could never match) is refused where it is written.
pub(super) fn parse_selector(item: &Item<'_>, kubernetes: &Kubernetes) -> Result<Selector, FileError> {
    let table = item.table("`targets`")?;
    // A misspelt key first: it would otherwise read as a missing selector.
    for key in keys::TARGETS {
        let _ = table.get(key.name);
    }
    keys::finish(&table, keys::TARGETS)?;
    let get = |key| keys::get(&table, keys::TARGETS, key);
    let glob_of = |item: &Item<'_>, slash: &str| -> Result<String, FileError> {
        let pattern = item.str()?;
        if !slash.is_empty() && pattern.contains('/') {
            return Err(item.error(slash.to_owned()));
        }
        glob::Pattern::new(pattern).map_err(|e| item.error(format!("not a valid glob: {e}")))?;
        Ok(pattern.to_owned())
    };
    let container_name = get("container_name")
        .map(|i| glob_of(&i, "a container name glob is a name, without a slash, e.g. \"web-*\""))
        .transpose()?;
    if let Some(pods) = get("pods") {
        for key in ["cgroup", "unit", "container"] {
            if let Some(other) = get(key) {
                return Err(other.error_at_key(format!(
                    "`{key}` and `pods` are two selectors: keep one (`container_name` and `namespace` narrow `pods`)"
                )));
            }
        }
        let text = pods.str()?;
        let labels = pod::parse_selector(text).map_err(|why| pods.error(why))?;
        let namespace = match get("namespace") {
            Some(ns) => {
                let name = ns.str()?;
                if !is_namespace_name(name) {
                    return Err(ns.error(format!("\"{name}\" is not a namespace name, e.g. \"shop\"")));
                }
                if !kubernetes.opted_in(name) {
                    return Err(ns.error(format!(
                        "namespace \"{name}\" has not opted in, so no pod of it is ever eligible: add it to \
                         `[kubernetes] namespaces`"
                    )));
                }
                Some(name.to_owned())
            }
            None => None,
        };
        return Ok(Selector::Pods(PodSelector { text: text.to_owned(), labels, namespace, container_name }));
    }
    if let Some(ns) = get("namespace") {
        return Err(ns.error_at_key("`namespace` narrows a pod selector: add `pods = \"app=web\"`"));
    }
    let selector = match (get("cgroup"), get("unit"), get("container"), container_name) {
        (Some(glob), None, None, None) => {
            if !glob.str()?.starts_with('/') {
                return Err(glob.error("a cgroup glob is an absolute cgroup path, e.g. \"/system.slice/*.service\""));
            }
            Selector::Cgroup(glob_of(&glob, "")?)
        }
        (None, Some(glob), None, None) => {
            Selector::Unit(glob_of(&glob, "a unit glob is a unit name, without a slash, e.g. \"web-*.service\"")?)
        }
        (None, None, Some(glob), None) => {
            Selector::Container(glob_of(&glob, "a container glob is an id pattern, without a slash, e.g. \"3f2a*\"")?)
        }
        (None, None, None, Some(name)) => Selector::ContainerName(name),
        _ => {
            return Err(table.error(
                "`targets` takes exactly one of `cgroup` (a path glob), `unit` (a unit glob), `container` (an id \
                 glob), `container_name` (a name glob) or `pods` (labels, narrowed by `namespace` and \
                 `container_name`)",
            ));
        }
    };
    Ok(selector)
}
