//! The container runtimes chaos asks about `--container`, `--pod` and `--selector`: Docker
//! (Engine API), Podman (its Docker-compatible socket), containerd (gRPC, every namespace) and
//! CRI-O (the CRI, gRPC), each only when its socket is there. They answer with containers, their labels and init pids;
//! turning a pid into a cgroup is the parent module's job.
//!
//! Sockets: `$DOCKER_HOST`, `$CONTAINER_HOST` (Podman), `$CONTAINERD_ADDRESS` and
//! `$CONTAINER_RUNTIME_ENDPOINT` (CRI-O, as crictl reads it) when set (the variables the
//! runtimes' own clients read), else the runtimes' default paths.
mod containerd;
mod cri;
mod docker;
mod grpc;
mod http;
pub(crate) mod pod;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// A container as a runtime describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Container {
    /// `docker`, `podman`, `containerd (namespace k8s.io)`.
    pub runtime: String,
    /// The full id.
    pub id: String,
    /// Names users know it by (Docker and Podman; containerd has none).
    pub names: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The init pid when the runtime listed it (containerd); Docker's comes from an inspect.
    pub pid: Option<u32>,
}

impl Container {
    /// `docker 3f2a9c0d1e2f (web)`, for lists of matches.
    #[must_use]
    pub(crate) fn describe(&self) -> String {
        let short = self.id.get(..12).unwrap_or(&self.id);
        if self.names.is_empty() {
            format!("{} {short}", self.runtime)
        } else {
            format!("{} {short} ({})", self.runtime, self.names.join(", "))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Docker,
    Podman,
    Containerd,
    /// CRI-O, through the CRI (`runtime.v1.RuntimeService`).
    Crio,
}

impl Kind {
    const ALL: [Self; 4] = [Self::Docker, Self::Podman, Self::Containerd, Self::Crio];

    #[must_use]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Podman => "podman",
            Self::Containerd => "containerd",
            Self::Crio => "cri-o",
        }
    }

    /// The socket the runtime's own client would use: its environment variable, else the default.
    fn socket(self) -> PathBuf {
        let (var, default) = match self {
            Self::Docker => ("DOCKER_HOST", "/run/docker.sock"),
            Self::Podman => ("CONTAINER_HOST", "/run/podman/podman.sock"),
            Self::Containerd => ("CONTAINERD_ADDRESS", "/run/containerd/containerd.sock"),
            // /var/run is /run on the host, but not always in an agent's image (the DaemonSet
            // mounts the host's /run/crio at /run/crio).
            Self::Crio if !Path::new("/var/run/crio/crio.sock").exists() => {
                ("CONTAINER_RUNTIME_ENDPOINT", "/run/crio/crio.sock")
            }
            Self::Crio => ("CONTAINER_RUNTIME_ENDPOINT", "/var/run/crio/crio.sock"),
        };
        let given = std::env::var(var).ok().filter(|v| !v.is_empty());
        PathBuf::from(given.as_deref().map_or(default, |v| v.strip_prefix("unix://").unwrap_or(v)))
    }
}

/// One runtime's socket.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub kind: Kind,
    pub socket: PathBuf,
}

impl Endpoint {
    /// `docker at /run/docker.sock`.
    #[must_use]
    pub(crate) fn describe(&self) -> String {
        format!("{} at {}", self.kind.name(), self.socket.display())
    }

    fn list(&self) -> Result<Vec<Container>, String> {
        match self.kind {
            Kind::Docker | Kind::Podman => docker::list(self.kind.name(), &self.socket),
            Kind::Containerd => containerd::list(&self.socket),
            Kind::Crio => cri::list(self.kind.name(), &self.socket),
        }
    }
}

/// The runtimes whose sockets exist on this machine.
#[must_use]
pub(crate) fn endpoints() -> Vec<Endpoint> {
    Kind::ALL.into_iter().map(|kind| Endpoint { kind, socket: kind.socket() }).filter(|e| e.socket.exists()).collect()
}

/// What every runtime present said.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Each container with the index of its endpoint in `endpoints`.
    pub containers: Vec<(usize, Container)>,
    pub endpoints: Vec<Endpoint>,
    /// The endpoints that answered (their descriptions).
    pub answered: Vec<String>,
    /// The endpoints that did not, and why.
    pub failed: Vec<String>,
}

impl Inventory {
    /// Asks every endpoint for its containers.
    #[must_use]
    pub(crate) fn take(endpoints: Vec<Endpoint>) -> Self {
        let mut inventory = Self::default();
        for (index, endpoint) in endpoints.iter().enumerate() {
            match endpoint.list() {
                Ok(list) => {
                    inventory.answered.push(endpoint.describe());
                    inventory.containers.extend(list.into_iter().map(|c| (index, c)));
                }
                Err(why) => inventory.failed.push(format!("{}: {why}", endpoint.describe())),
            }
        }
        inventory.endpoints = endpoints;
        inventory
    }

    /// Every runtime asked, and what went wrong with those that did not answer.
    #[must_use]
    pub(crate) fn asked(&self) -> String {
        let mut asked = self.answered.clone();
        asked.extend(self.failed.iter().cloned());
        if asked.is_empty() { "no runtime socket is present".to_owned() } else { asked.join("; ") }
    }

    /// The init pid of `container` (listed with it, or asked of its runtime); `None` when it is
    /// not running.
    pub(crate) fn pid(&self, endpoint: usize, container: &Container) -> Result<Option<u32>, String> {
        if let Some(pid) = container.pid {
            return Ok(Some(pid));
        }
        let endpoint = &self.endpoints[endpoint];
        match endpoint.kind {
            Kind::Containerd | Kind::Crio => Ok(None),
            Kind::Docker | Kind::Podman => {
                docker::pid(&endpoint.socket, &container.id).map(|pid| Some(pid).filter(|&p| p > 0))
            }
        }
    }
}

/// What the runtimes know about `query`: an exact id or name wins; otherwise ids it is a
/// prefix of (at least 4 characters). The same id seen twice (Docker's containers are also in
/// containerd's `moby` namespace) counts once, under the first runtime that listed it.
#[must_use]
pub(crate) fn matching<'a>(inventory: &'a Inventory, query: &str) -> Vec<&'a (usize, Container)> {
    let exact: Vec<_> = inventory
        .containers
        .iter()
        .filter(|(_, c)| c.id.eq_ignore_ascii_case(query) || c.names.iter().any(|n| n == query.trim_start_matches('/')))
        .collect();
    let mut found = if exact.is_empty() && query.len() >= 4 {
        let lower = query.to_ascii_lowercase();
        inventory.containers.iter().filter(|(_, c)| c.id.starts_with(&lower)).collect()
    } else {
        exact
    };
    let mut seen = Vec::new();
    found.retain(|(_, c)| {
        let first = !seen.contains(&c.id);
        seen.push(c.id.clone());
        first
    });
    found
}

/// A socket path the user may want to see in `doctor`: present and answering, or why not.
#[must_use]
pub(crate) fn status() -> Vec<(String, Result<usize, String>)> {
    Kind::ALL
        .into_iter()
        .map(|kind| {
            let endpoint = Endpoint { kind, socket: kind.socket() };
            let answer = if Path::new(&endpoint.socket).exists() {
                endpoint.list().map(|list| list.len())
            } else {
                Err("no socket".to_owned())
            };
            (endpoint.describe(), answer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(runtime: &str, id: &str, names: &[&str]) -> Container {
        Container {
            runtime: runtime.into(),
            id: id.into(),
            names: names.iter().map(|&n| n.into()).collect(),
            labels: BTreeMap::new(),
            pid: None,
        }
    }

    #[test]
    fn exact_names_beat_prefixes_and_one_id_counts_once() {
        let inventory = Inventory {
            containers: vec![
                (0, container("docker", "abcd1111", &["web"])),
                (0, container("docker", "abcd2222", &["abcd"])),
                (1, container("containerd (namespace moby)", "abcd1111", &[])),
                (2, container("podman", "ffff0000", &["web"])),
            ],
            ..Inventory::default()
        };
        let ids =
            |q: &str| matching(&inventory, q).iter().map(|(_, c)| c.runtime.clone() + " " + &c.id).collect::<Vec<_>>();
        assert_eq!(ids("abcd"), ["docker abcd2222"], "an exact name wins over a prefix");
        assert_eq!(ids("abcd1"), ["docker abcd1111"], "moby's copy of a Docker container counts once");
        assert_eq!(ids("web"), ["docker abcd1111", "podman ffff0000"], "two runtimes know the name");
        assert_eq!(ids("abc"), Vec::<String>::new(), "a prefix needs 4 characters");
    }
}
