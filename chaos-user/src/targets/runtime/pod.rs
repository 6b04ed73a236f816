//! Kubernetes pods as a node sees them, without the API server: kubelet labels every container
//! it asks the runtime for with its pod (`io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`)
//! and its name in the pod (`io.kubernetes.container.name`), and the pod's own labels sit on
//! the pod's sandbox, the one member without a container name.
use std::fmt;

use super::{Container, Inventory};

pub(crate) const POD_NAME: &str = "io.kubernetes.pod.name";
pub(crate) const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub(crate) const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PodName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl PodName {
    /// `NAMESPACE/NAME`, both non-empty.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self { namespace: namespace.to_owned(), name: name.to_owned() })
            }
            _ => Err(format!("{text:?} is not NAMESPACE/NAME (e.g. default/web-7d4b9c-x2x9q)")),
        }
    }

    fn of(container: &Container) -> Option<Self> {
        Some(Self {
            namespace: container.labels.get(POD_NAMESPACE)?.clone(),
            name: container.labels.get(POD_NAME)?.clone(),
        })
    }
}

/// `app=web,tier=db`: every pair must be there (as `kubectl get -l` with equality only).
pub(crate) fn parse_selector(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() && !key.contains('!') && !value.contains(['=', '!']) => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(format!("{pair:?} in {text:?} is not KEY=VALUE (e.g. app=web,tier=db)")),
        })
        .collect()
}

/// Whether `container` is its pod's sandbox (the pause container that holds the pod's
/// namespaces and labels) rather than one of its containers.
#[cfg(test)]
#[must_use]
pub(crate) fn is_sandbox(container: &Container) -> bool {
    !container.labels.contains_key(CONTAINER_NAME)
}

/// Every container and the sandbox of `pod`, with their endpoints.
#[must_use]
pub(crate) fn members<'a>(inventory: &'a Inventory, pod: &PodName) -> Vec<&'a (usize, Container)> {
    inventory.containers.iter().filter(|(_, c)| PodName::of(c).as_ref() == Some(pod)).collect()
}

/// The pods (sorted) with every label of `selector` on one of their members, in `namespace`
/// if given.
#[must_use]
pub(crate) fn select(inventory: &Inventory, selector: &[(String, String)], namespace: Option<&str>) -> Vec<PodName> {
    let mut pods: Vec<PodName> = inventory
        .containers
        .iter()
        .filter(|(_, c)| selector.iter().all(|(key, value)| c.labels.get(key) == Some(value)))
        .filter_map(|(_, c)| PodName::of(c))
        .filter(|pod| namespace.is_none_or(|n| pod.namespace == n))
        .collect();
    pods.sort();
    pods.dedup();
    pods
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn member(pod: &str, container: Option<&str>, labels: &[(&str, &str)]) -> (usize, Container) {
        let mut all: BTreeMap<String, String> = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        all.insert(POD_NAMESPACE.into(), "shop".into());
        all.insert(POD_NAME.into(), pod.into());
        if let Some(name) = container {
            all.insert(CONTAINER_NAME.into(), name.into());
        }
        (
            0,
            Container {
                runtime: "containerd".into(),
                id: format!("{pod}-{container:?}"),
                names: vec![],
                labels: all,
                pid: None,
            },
        )
    }

    #[test]
    fn selects_pods_by_their_sandbox_labels() {
        let inventory = Inventory {
            containers: vec![
                member("web-1", None, &[("app", "web"), ("tier", "front")]),
                member("web-1", Some("nginx"), &[]),
                member("db-1", None, &[("app", "db")]),
                member("web-2", None, &[("app", "web")]),
            ],
            ..Inventory::default()
        };
        let names = |s: &str, ns: Option<&str>| {
            select(&inventory, &parse_selector(s).unwrap(), ns).iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(names("app=web", None), ["shop/web-1", "shop/web-2"]);
        assert_eq!(names("app=web,tier=front", None), ["shop/web-1"]);
        assert_eq!(names("app=web", Some("other")), Vec::<String>::new());
        let web1 = PodName::parse("shop/web-1").unwrap();
        assert_eq!(members(&inventory, &web1).len(), 2);
        assert!(is_sandbox(&members(&inventory, &web1)[0].1));
        assert!(parse_selector("app").is_err());
        assert!(parse_selector("app!=web").is_err());
        assert!(PodName::parse("web").is_err());
    }
}
