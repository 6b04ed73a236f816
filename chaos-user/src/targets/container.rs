//! `--container`, `--pod` and `--selector`: asks the runtimes (the `runtime` module) for the
//! container or pod, takes an init pid and finds its cgroup; falls back to container ids in
//! cgroup directory names when no runtime answers.
use std::path::{Path, PathBuf};

use super::{
    CgroupFs, TargetError, container_id, is_same_or_below, pid_cgroup,
    runtime::{
        self, Container, Inventory,
        pod::{self, PodName},
    },
};

/// How `--selector` picks among several pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorSpec {
    /// `app=web,tier=db` as given.
    pub selector: String,
    pub namespace: Option<String>,
    pub container: Option<String>,
    /// 1-based, in the order the refusal lists them.
    pub pick: Option<usize>,
}

impl CgroupFs {
    /// `--container ID|NAME`: through the runtimes, else by cgroup directory name.
    pub(super) fn container_dir(&self, query: &str) -> Result<PathBuf, TargetError> {
        let inventory = Inventory::take(runtime::endpoints());
        let found = runtime::matching(&inventory, query);
        let hex_id = query.len() >= 4 && query.bytes().all(|b| b.is_ascii_hexdigit());
        match found.as_slice() {
            [(endpoint, container)] => {
                let pid = inventory.pid(*endpoint, container).map_err(|reason| TargetError::Unreadable {
                    what: format!(
                        "the pid of {} from {}",
                        container.describe(),
                        inventory.endpoints[*endpoint].describe()
                    ),
                    reason,
                })?;
                let pid = pid.ok_or_else(|| TargetError::ContainerNotRunning {
                    id: query.to_owned(),
                    container: container.describe(),
                })?;
                self.pid_dir("--container", query, pid)
            }
            [] if hex_id => self.container_dir_by_name(query).map_err(|err| match err {
                TargetError::NoSuchContainer { .. } if !inventory.answered.is_empty() => {
                    TargetError::ContainerNotFound { id: query.to_owned(), asked: inventory.asked() }
                }
                other => other,
            }),
            [] if inventory.answered.is_empty() => {
                Err(TargetError::NoContainerRuntime { id: query.to_owned(), asked: inventory.asked() })
            }
            [] => Err(TargetError::ContainerNotFound { id: query.to_owned(), asked: inventory.asked() }),
            many => Err(TargetError::AmbiguousContainer {
                arg: query.to_owned(),
                matches: many.iter().map(|(_, c)| c.describe()).collect(),
            }),
        }
    }

    /// Today's naming fallback: a cgroup directory whose name carries the container id.
    fn container_dir_by_name(&self, id: &str) -> Result<PathBuf, TargetError> {
        let id = id.to_ascii_lowercase();
        if id.len() < 4 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TargetError::BadContainerId { id });
        }
        let mut matches = self.find_dirs(|name| container_id(name).is_some_and(|full| full.starts_with(&id)));
        // Some runtimes nest the container's processes one level down (e.g. `.../<id>/init.scope`
        // or a `container` child): those are below a match and already covered by it.
        matches.dedup_by(|below, above| below.starts_with(above));
        match matches.as_slice() {
            [] => Err(TargetError::NoSuchContainer { id, mount: self.mount().display().to_string() }),
            [one] => Ok(one.clone()),
            _ => Err(self.ambiguous("--container", &id, &matches)),
        }
    }

    /// `--pod NAMESPACE/NAME [--container-name C]`.
    pub(super) fn pod_dir(&self, pod: &str, container: Option<&str>) -> Result<PathBuf, TargetError> {
        let arg = pod_arg(pod, container);
        let pod =
            PodName::parse(pod).map_err(|reason| TargetError::BadTarget { flag: "--pod", arg: arg.clone(), reason })?;
        let inventory = self.pod_inventory("--pod", &arg)?;
        self.dir_of_pod(&inventory, &pod, container, "--pod", &arg)
    }

    /// `--selector KEY=VALUE[,..] [--namespace N] [--container-name C] [--pick N]`.
    pub(super) fn selector_dir(&self, spec: &SelectorSpec) -> Result<PathBuf, TargetError> {
        let arg = spec.selector.clone();
        let selector = pod::parse_selector(&spec.selector).map_err(|reason| TargetError::BadTarget {
            flag: "--selector",
            arg: arg.clone(),
            reason,
        })?;
        let inventory = self.pod_inventory("--selector", &arg)?;
        let pods = pod::select(&inventory, &selector, spec.namespace.as_deref());
        let chosen = match (pods.as_slice(), spec.pick) {
            ([], _) => {
                return Err(TargetError::NoSuchPod {
                    flag: "--selector",
                    arg: format!(
                        "{arg}{}",
                        spec.namespace.as_ref().map(|n| format!(" --namespace {n}")).unwrap_or_default()
                    ),
                    asked: inventory.asked(),
                });
            }
            ([one], None | Some(1)) => one,
            (_, Some(n)) if (1..=pods.len()).contains(&n) => &pods[n - 1],
            (_, Some(n)) => return Err(TargetError::PickOutOfRange { arg, pick: n, count: pods.len() }),
            (_, None) => {
                return Err(TargetError::SelectorMatchesMany {
                    arg,
                    pods: pods.iter().enumerate().map(|(i, p)| format!("{}. {p}", i + 1)).collect(),
                });
            }
        };
        self.dir_of_pod(&inventory, chosen, spec.container.as_deref(), "--selector", &arg)
    }

    /// The cgroup (as /proc/PID/cgroup shows it) of a container of `inventory`, for the
    /// daemon's selectors; the container must be running.
    pub(crate) fn container_cgroup(
        &self,
        inventory: &Inventory,
        endpoint: usize,
        container: &Container,
    ) -> Result<String, TargetError> {
        let arg = container.describe();
        let pid = inventory
            .pid(endpoint, container)
            .map_err(|reason| TargetError::Unreadable { what: format!("the pid of {arg}"), reason })?
            .ok_or_else(|| TargetError::ContainerNotRunning { id: container.id.clone(), container: arg.clone() })?;
        let dir = self.pid_dir("`targets`", &arg, pid)?;
        Ok(self.cgroup_of(&dir).unwrap_or_default())
    }

    /// The cgroup of `pod` (or of its container named `container`), for the daemon's
    /// selectors, with the refusals of `--pod` (members' cgroups that differ, a shared parent).
    pub(crate) fn pod_cgroup(
        &self,
        inventory: &Inventory,
        pod: &PodName,
        container: Option<&str>,
    ) -> Result<String, TargetError> {
        let arg = pod_arg(&pod.to_string(), container);
        let dir = self.dir_of_pod(inventory, pod, container, "`targets`", &arg)?;
        Ok(self.cgroup_of(&dir).unwrap_or_default())
    }

    fn pod_inventory(&self, flag: &'static str, arg: &str) -> Result<Inventory, TargetError> {
        let inventory = Inventory::take(runtime::endpoints());
        if inventory.answered.is_empty() {
            return Err(TargetError::NoPodRuntime { flag, arg: arg.to_owned(), asked: inventory.asked() });
        }
        Ok(inventory)
    }

    /// The pod's cgroup (the parent of its members' cgroups), or one container's.
    fn dir_of_pod(
        &self,
        inventory: &Inventory,
        pod: &PodName,
        container: Option<&str>,
        flag: &'static str,
        arg: &str,
    ) -> Result<PathBuf, TargetError> {
        let members = pod::members(inventory, pod);
        if members.is_empty() {
            return Err(TargetError::NoSuchPod { flag, arg: arg.to_owned(), asked: inventory.asked() });
        }
        if let Some(name) = container {
            let named = members.iter().find(|(_, c)| c.labels.get(pod::CONTAINER_NAME).is_some_and(|n| n == name));
            let Some((endpoint, named)) = named else {
                let mut known: Vec<String> =
                    members.iter().filter_map(|(_, c)| c.labels.get(pod::CONTAINER_NAME).cloned()).collect();
                known.sort();
                return Err(TargetError::NoSuchPodContainer {
                    pod: pod.to_string(),
                    container: name.to_owned(),
                    known,
                });
            };
            let pid = inventory
                .pid(*endpoint, named)
                .ok()
                .flatten()
                .ok_or_else(|| TargetError::PodNotRunning { pod: format!("{pod} container {name}") })?;
            return self.pid_dir(flag, arg, pid);
        }
        let mut parents = Vec::new();
        for (endpoint, member) in &members {
            if let Some(pid) = inventory.pid(*endpoint, member).ok().flatten() {
                let dir = self.pid_dir(flag, arg, pid)?;
                parents.push(dir.parent().map(Path::to_path_buf).unwrap_or(dir));
            }
        }
        parents.sort();
        parents.dedup();
        let pod_dir = match parents.as_slice() {
            [] => return Err(TargetError::PodNotRunning { pod: pod.to_string() }),
            [one] => one.clone(),
            many => {
                return Err(TargetError::PodCgroupsDiffer {
                    pod: pod.to_string(),
                    cgroups: many.iter().filter_map(|d| self.cgroup_of(d)).collect(),
                });
            }
        };
        // The parent must be the pod's own: a container of another pod below it would be hit too.
        let pod_cgroup = self.cgroup_of(&pod_dir).unwrap_or_default();
        for (_, other) in &inventory.containers {
            let outsider = pod::members(inventory, pod).iter().all(|(_, m)| m.id != other.id);
            if let Some(pid) = other.pid.filter(|_| outsider)
                && let Ok(cgroup) = pid_cgroup(Path::new("/proc"), pid)
                && is_same_or_below(&cgroup, &pod_cgroup)
            {
                return Err(TargetError::PodCgroupShared {
                    pod: pod.to_string(),
                    cgroup: pod_cgroup,
                    other: other.describe(),
                });
            }
        }
        Ok(pod_dir)
    }

    /// The cgroup directory of process `pid`. chaos in a cgroup namespace (an agent in a
    /// container with the host's cgroup2 fs mounted) sees /proc paths relative to its own
    /// namespace (`/../../kubepods/...`): then the directory is the one whose cgroup.procs lists
    /// the pid.
    fn pid_dir(&self, flag: &'static str, arg: &str, pid: u32) -> Result<PathBuf, TargetError> {
        let cgroup = pid_cgroup(Path::new("/proc"), pid)?;
        let dir = self.dir_of(&cgroup);
        if !cgroup.contains("..") && dir.is_dir() {
            return Ok(dir);
        }
        self.dir_holding(pid).ok_or_else(|| TargetError::NoSuchCgroup {
            flag,
            arg: arg.to_owned(),
            path: format!("{cgroup} (of pid {pid})"),
            mount: self.mount().display().to_string(),
        })
    }
}

/// `ns/name` or `ns/name --container-name c`, as the user wrote it.
#[must_use]
pub(super) fn pod_arg(pod: &str, container: Option<&str>) -> String {
    container.map_or_else(|| pod.to_owned(), |c| format!("{pod} --container-name {c}"))
}
