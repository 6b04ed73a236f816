//! containerd through its gRPC API: every namespace (`k8s.io` is kubelet's, `moby` Docker's),
//! each namespace's containers with their labels, and the pids of their running tasks.
use std::{collections::BTreeMap, path::Path};

use super::{
    Container,
    grpc::{self, Field},
};

/// Every container in every namespace, with the init pid of its task when it has a running one.
pub(super) fn list(socket: &Path) -> Result<Vec<Container>, String> {
    let mut out = Vec::new();
    for namespace in namespaces(socket)? {
        let pids = task_pids(socket, &namespace)?;
        let answer = grpc::call_empty(socket, Some(&namespace), "containerd.services.containers.v1.Containers/List")?;
        // ListContainersResponse { repeated Container containers = 1 }
        // Container { string id = 1; map<string, string> labels = 2; ... }
        for container in grpc::messages(&grpc::fields(&answer)?, 1) {
            let fields = grpc::fields(container)?;
            let id = grpc::string(&fields, 1);
            out.push(Container {
                runtime: format!("containerd (namespace {namespace})"),
                pid: pids.get(&id).copied(),
                labels: grpc::string_map(&fields, 2)?,
                names: Vec::new(),
                id,
            });
        }
    }
    Ok(out)
}

fn namespaces(socket: &Path) -> Result<Vec<String>, String> {
    let answer = grpc::call_empty(socket, None, "containerd.services.namespaces.v1.Namespaces/List")?;
    // ListNamespacesResponse { repeated Namespace namespaces = 1 }, Namespace { string name = 1 }
    grpc::messages(&grpc::fields(&answer)?, 1)
        .into_iter()
        .map(|namespace| Ok(grpc::string(&grpc::fields(namespace)?, 1)))
        .collect()
}

/// Container id -> the pid of its task's init process, for the tasks that have one.
fn task_pids(socket: &Path, namespace: &str) -> Result<BTreeMap<String, u32>, String> {
    let answer = grpc::call_empty(socket, Some(namespace), "containerd.services.tasks.v1.Tasks/List")?;
    // ListTasksResponse { repeated Process tasks = 1 }
    // Process { string container_id = 1; string id = 2; uint32 pid = 3; ... }: a task's init
    // process has the container's id as its `id` (containerd 1.6 leaves container_id empty).
    let mut pids = BTreeMap::new();
    for task in grpc::messages(&grpc::fields(&answer)?, 1) {
        let fields = grpc::fields(task)?;
        let pid = fields.iter().find_map(|f| match f {
            Field::Varint(3, pid) => u32::try_from(*pid).ok(),
            _ => None,
        });
        if let Some(pid) = pid.filter(|&p| p > 0) {
            let container_id = grpc::string(&fields, 1);
            let id = if container_id.is_empty() { grpc::string(&fields, 2) } else { container_id };
            pids.insert(id, pid);
        }
    }
    Ok(pids)
}
