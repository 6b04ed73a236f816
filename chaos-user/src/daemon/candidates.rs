//! The targets of the selectors that need the container runtimes' APIs: Docker and Podman
//! containers by name, and Kubernetes pods by labels (kubelet's, through containerd), only
//! those of namespaces that opted in. Each selector's matches are cgroups, one per container
//! or pod, and notes saying why others were left out, for the log line of a skipped run.
use std::collections::BTreeMap;

use super::config::{Kubernetes, PodSelector};
use crate::targets::{
    CgroupFs, TargetName,
    registry::{self, Narrowing},
    runtime::{
        Inventory,
        pod::{self, PodName},
    },
};

/// What a selector matches now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Matches {
    /// Cgroup paths (as /proc/PID/cgroup shows them), sorted, each once.
    pub cgroups: Vec<String>,
    /// The name each cgroup was found by, where it has one the runtimes can resolve again (a
    /// pod, a container name): what a run that follows its target asks for after a restart.
    pub names: BTreeMap<String, TargetName>,
    /// Why matching containers or pods are not among `cgroups` (not opted in, not running...).
    pub notes: Vec<String>,
}

impl Matches {
    #[must_use]
    pub(crate) fn of(mut cgroups: Vec<String>) -> Self {
        cgroups.sort();
        cgroups.dedup();
        Self { cgroups, ..Self::default() }
    }

    /// Why a run found nothing to run on.
    #[must_use]
    pub(crate) fn why_none(&self) -> String {
        if self.notes.is_empty() {
            "the selector matches no cgroup now".to_owned()
        } else {
            format!("the selector matches no cgroup now: {}", self.notes.join("; "))
        }
    }
}

/// The cgroups of the running Docker and Podman containers whose name matches `glob`.
/// Containers kubelet made (they carry its pod labels, e.g. through cri-dockerd) are left out:
/// pods are chosen by pod selectors, behind the namespace opt-in.
#[must_use]
pub(super) fn by_container_name(glob: &str, cgroups: &CgroupFs, inventory: &Inventory) -> Matches {
    let Ok(pattern) = glob::Pattern::new(glob) else { return Matches::default() };
    let mut found = Vec::new();
    let mut notes = Vec::new();
    let mut seen = Vec::new();
    let mut names = BTreeMap::new();
    for (endpoint, container) in &inventory.containers {
        if !container.names.iter().any(|n| pattern.matches(n)) || seen.contains(&container.id) {
            continue;
        }
        seen.push(container.id.clone());
        if container.labels.contains_key(pod::POD_NAMESPACE) {
            notes.push(format!("{} belongs to a Kubernetes pod: use `pods`", container.describe()));
            continue;
        }
        match cgroups.container_cgroup(inventory, *endpoint, container) {
            Ok(cgroup) => {
                let name = container.names.iter().find(|n| pattern.matches(n)).cloned().unwrap_or_default();
                names.insert(cgroup.clone(), registry::named("container", name, &Narrowing::default()));
                found.push(cgroup);
            }
            Err(why) => notes.push(why.to_string()),
        }
    }
    no_runtime_note(inventory, &mut notes);
    Matches { notes, names, ..Matches::of(found) }
}

/// The pods `selector` matches whose namespace opted in, and why the others are left out.
#[must_use]
pub(super) fn eligible_pods(
    selector: &PodSelector,
    kubernetes: &Kubernetes,
    inventory: &Inventory,
) -> (Vec<PodName>, Vec<String>) {
    let all = pod::select(inventory, &selector.labels, selector.namespace.as_deref());
    let (eligible, refused): (Vec<PodName>, Vec<PodName>) =
        all.into_iter().partition(|p| kubernetes.opted_in(&p.namespace));
    let mut notes = Vec::new();
    if !refused.is_empty() {
        let mut namespaces: Vec<&str> = refused.iter().map(|p| p.namespace.as_str()).collect();
        namespaces.dedup();
        let opted = if kubernetes.namespaces.is_empty() {
            "none has: `[kubernetes] namespaces` is empty".to_owned()
        } else {
            format!("`[kubernetes] namespaces` = [{}]", kubernetes.namespaces.join(", "))
        };
        notes.push(format!(
            "{} pod(s) match but their namespace ({}) has not opted in ({opted}): {}",
            refused.len(),
            namespaces.join(", "),
            refused.iter().take(5).map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    (eligible, notes)
}

/// The cgroups of the eligible pods `selector` matches (the pods' own, or their container
/// named `container_name`): one per pod, so the share cap is a share of the pods.
#[must_use]
pub(super) fn pods(
    selector: &PodSelector,
    kubernetes: &Kubernetes,
    cgroups: &CgroupFs,
    inventory: &Inventory,
) -> Matches {
    let (eligible, mut notes) = eligible_pods(selector, kubernetes, inventory);
    let mut found = Vec::new();
    let mut names = BTreeMap::new();
    for pod in &eligible {
        match cgroups.pod_cgroup(inventory, pod, selector.container_name.as_deref()) {
            Ok(cgroup) => {
                let narrowing = Narrowing { container_name: selector.container_name.clone(), ..Narrowing::default() };
                let name = registry::named("pod", pod.to_string(), &narrowing);
                names.insert(cgroup.clone(), name);
                found.push(cgroup);
            }
            Err(why) => notes.push(why.to_string()),
        }
    }
    no_runtime_note(inventory, &mut notes);
    Matches { notes, names, ..Matches::of(found) }
}

fn no_runtime_note(inventory: &Inventory, notes: &mut Vec<String>) {
    if inventory.answered.is_empty() {
        notes.push(format!("no container runtime answered ({})", inventory.asked()));
    } else if !inventory.failed.is_empty() {
        notes.push(format!("not every runtime answered: {}", inventory.failed.join("; ")));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::targets::runtime::Container;

    fn member(namespace: &str, pod_name: &str, labels: &[(&str, &str)]) -> (usize, Container) {
        let mut all: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        all.insert(pod::POD_NAMESPACE.into(), namespace.into());
        all.insert(pod::POD_NAME.into(), pod_name.into());
        let id = format!("{namespace}-{pod_name}");
        (0, Container { runtime: "containerd".into(), id, names: vec![], labels: all, pid: None })
    }

    fn selector(labels: &str, namespace: Option<&str>) -> PodSelector {
        PodSelector {
            text: labels.into(),
            labels: pod::parse_selector(labels).unwrap(),
            namespace: namespace.map(Into::into),
            container_name: None,
        }
    }

    #[test]
    fn only_pods_of_namespaces_that_opted_in_are_eligible_and_the_others_are_named() {
        let inventory = Inventory {
            containers: vec![
                member("shop", "web-1", &[("app", "web")]),
                member("kube-system", "web-x", &[("app", "web")]),
                member("shop", "db-1", &[("app", "db")]),
            ],
            ..Inventory::default()
        };
        let shop = Kubernetes { namespaces: vec!["shop".into()] };
        let (eligible, notes) = eligible_pods(&selector("app=web", None), &shop, &inventory);
        assert_eq!(eligible.iter().map(ToString::to_string).collect::<Vec<_>>(), ["shop/web-1"]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("kube-system/web-x") && notes[0].contains("[shop]"), "{notes:?}");
        let (eligible, notes) = eligible_pods(&selector("app=web", None), &Kubernetes::default(), &inventory);
        assert!(eligible.is_empty());
        assert!(notes[0].contains("2 pod(s) match") && notes[0].contains("is empty"), "{notes:?}");
        let (eligible, notes) = eligible_pods(&selector("app=web", Some("shop")), &shop, &inventory);
        assert_eq!(eligible.len(), 1);
        assert!(notes.is_empty(), "{notes:?}");
    }
}
