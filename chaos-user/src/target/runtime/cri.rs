//! The Kubernetes Container Runtime Interface (`runtime.v1.RuntimeService`), the API kubelet
//! itself speaks, asked on CRI-O's socket: the pod sandboxes and containers with kubelet's
//! labels, and each running one's init pid from its verbose status (the `info` JSON CRI-O and
//! containerd both fill in). Read-only: four calls, decoded with grpc.rs's protobuf reader.
use std::path::Path;

use super::{Container, grpc, pod};

const SERVICE: &str = "runtime.v1.RuntimeService";

/// Every pod sandbox (as its pod's labelled member without a container name) and container.
pub fn list(runtime: &str, socket: &Path) -> Result<Vec<Container>, String> {
    let mut out = Vec::new();
    // ListPodSandboxResponse { repeated PodSandbox items = 1 }; PodSandbox { string id = 1;
    // PodSandboxMetadata metadata = 2 { name = 1; uid = 2; namespace = 3 }; PodSandboxState
    // state = 3 (SANDBOX_READY = 0); map<string, string> labels = 5 }
    let answer = grpc::call_empty(socket, None, &format!("{SERVICE}/ListPodSandbox"))?;
    for sandbox in grpc::messages(&grpc::fields(&answer)?, 1) {
        let fields = grpc::fields(sandbox)?;
        let id = grpc::string(&fields, 1);
        let mut labels = grpc::string_map(&fields, 5)?;
        // kubelet puts the pod's name and namespace in the labels too; the metadata is the
        // CRI's own record of them, for a sandbox that lacks the labels.
        if let Some(metadata) = grpc::messages(&fields, 2).first() {
            let metadata = grpc::fields(metadata)?;
            labels.entry(pod::POD_NAME.to_owned()).or_insert_with(|| grpc::string(&metadata, 1));
            labels.entry(pod::POD_NAMESPACE.to_owned()).or_insert_with(|| grpc::string(&metadata, 3));
        }
        let ready = grpc::varint_field(&fields, 3) == 0;
        let pid = if ready { status_pid(socket, "PodSandboxStatus", &id)? } else { None };
        labels.remove(pod::CONTAINER_NAME);
        out.push(Container { runtime: runtime.to_owned(), id, names: Vec::new(), labels, pid });
    }
    // ListContainersResponse { repeated Container containers = 1 }; Container { string id = 1;
    // string pod_sandbox_id = 2; ContainerMetadata metadata = 3 { name = 1 };
    // ContainerState state = 6 (CONTAINER_RUNNING = 1); map<string, string> labels = 8 }
    let answer = grpc::call_empty(socket, None, &format!("{SERVICE}/ListContainers"))?;
    for container in grpc::messages(&grpc::fields(&answer)?, 1) {
        let fields = grpc::fields(container)?;
        let id = grpc::string(&fields, 1);
        let mut labels = grpc::string_map(&fields, 8)?;
        if let Some(metadata) = grpc::messages(&fields, 3).first() {
            let name = grpc::string(&grpc::fields(metadata)?, 1);
            labels.entry(pod::CONTAINER_NAME.to_owned()).or_insert(name);
        }
        let running = grpc::varint_field(&fields, 6) == 1;
        let pid = if running { status_pid(socket, "ContainerStatus", &id)? } else { None };
        out.push(Container { runtime: runtime.to_owned(), id, names: Vec::new(), labels, pid });
    }
    Ok(out)
}

/// The init pid in the verbose status of sandbox or container `id`: `{Container,PodSandbox}
/// StatusRequest { string id = 1; bool verbose = 2 }` answers `{ status = 1; map<string,
/// string> info = 2 }`, whose `info` entry is JSON with a `pid`.
fn status_pid(socket: &Path, method: &str, id: &str) -> Result<Option<u32>, String> {
    let mut request = Vec::new();
    grpc::put_bytes(&mut request, 1, id.as_bytes());
    grpc::put_varint_field(&mut request, 2, 1);
    let answer = grpc::call(socket, None, &format!("{SERVICE}/{method}"), request)?;
    let info = grpc::string_map(&grpc::fields(&answer)?, 2)?;
    Ok(info.get("info").and_then(|json| pid_of_info(json)))
}

/// `"pid": 4242` of a verbose status's JSON (containerd and CRI-O both write it at the top).
fn pid_of_info(json: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_comes_from_the_verbose_info_json() {
        assert_eq!(pid_of_info(r#"{"sandboxID":"ab","pid":4242,"runtimeSpec":{}}"#), Some(4242));
        assert_eq!(pid_of_info(r#"{"pid":0}"#), None);
        assert_eq!(pid_of_info("not json"), None);
    }
}
