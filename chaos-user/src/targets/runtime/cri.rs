//! The Kubernetes Container Runtime Interface (`runtime.v1.RuntimeService`), the API kubelet
//! itself speaks, asked on CRI-O's socket: the pod sandboxes and containers with kubelet's
//! labels, and each running one's init pid from its verbose status (the `info` JSON CRI-O and
//! containerd both fill in). Read-only: four calls, decoded with grpc.rs's protobuf reader.
use std::path::Path;

use super::{Container, grpc, pod};

const SERVICE: &str = "runtime.v1.RuntimeService";

/// Every pod sandbox (as its pod's labelled member without a container name) and container.
/// Two connections: the two lists, then the status of each running one.
pub(super) fn list(runtime: &str, socket: &Path) -> Result<Vec<Container>, String> {
    let lists = [format!("{SERVICE}/ListPodSandbox"), format!("{SERVICE}/ListContainers")];
    let mut answers = grpc::call_many(socket, None, lists.into_iter().map(|m| (m, Vec::new())).collect())?.into_iter();
    let (sandboxes, containers) = match (answers.next(), answers.next()) {
        (Some(sandboxes), Some(containers)) => (sandboxes?, containers?),
        _ => return Err("the CRI answered fewer calls than asked".to_owned()),
    };
    let mut out = Vec::new();
    // (index in `out`, status method) of each running member, whose pid its status gives.
    let mut running = Vec::new();
    // ListPodSandboxResponse { repeated PodSandbox items = 1 }; PodSandbox { string id = 1;
    // PodSandboxMetadata metadata = 2 { name = 1; uid = 2; namespace = 3 }; PodSandboxState
    // state = 3 (SANDBOX_READY = 0); map<string, string> labels = 5 }
    for sandbox in grpc::messages(&grpc::fields(&sandboxes)?, 1) {
        let fields = grpc::fields(sandbox)?;
        let mut labels = grpc::string_map(&fields, 5)?;
        // kubelet puts the pod's name and namespace in the labels too; the metadata is the
        // CRI's own record of them, for a sandbox that lacks the labels.
        if let Some(metadata) = grpc::messages(&fields, 2).first() {
            let metadata = grpc::fields(metadata)?;
            labels.entry(pod::POD_NAME.to_owned()).or_insert_with(|| grpc::string(&metadata, 1));
            labels.entry(pod::POD_NAMESPACE.to_owned()).or_insert_with(|| grpc::string(&metadata, 3));
        }
        labels.remove(pod::CONTAINER_NAME);
        if grpc::varint_field(&fields, 3) == 0 {
            running.push((out.len(), "PodSandboxStatus"));
        }
        out.push(member(runtime, &fields, labels));
    }
    // ListContainersResponse { repeated Container containers = 1 }; Container { string id = 1;
    // string pod_sandbox_id = 2; ContainerMetadata metadata = 3 { name = 1 };
    // ContainerState state = 6 (CONTAINER_RUNNING = 1); map<string, string> labels = 8 }
    for container in grpc::messages(&grpc::fields(&containers)?, 1) {
        let fields = grpc::fields(container)?;
        let mut labels = grpc::string_map(&fields, 8)?;
        if let Some(metadata) = grpc::messages(&fields, 3).first() {
            let name = grpc::string(&grpc::fields(metadata)?, 1);
            labels.entry(pod::CONTAINER_NAME.to_owned()).or_insert(name);
        }
        if grpc::varint_field(&fields, 6) == 1 {
            running.push((out.len(), "ContainerStatus"));
        }
        out.push(member(runtime, &fields, labels));
    }
    // {Container,PodSandbox}StatusRequest { string id = 1; bool verbose = 2 } answers
    // { status = 1; map<string, string> info = 2 }, whose `info` entry is JSON with a `pid`.
    let calls: Vec<_> = running
        .iter()
        .map(|&(index, method)| {
            let mut request = Vec::new();
            grpc::put_bytes(&mut request, 1, out[index].id.as_bytes());
            grpc::put_varint_field(&mut request, 2, 1);
            (format!("{SERVICE}/{method}"), request)
        })
        .collect();
    let answers = if calls.is_empty() { Vec::new() } else { grpc::call_many(socket, None, calls)? };
    for ((index, _), answer) in running.iter().zip(answers) {
        // One that ended since the list is not found: it is left without a pid (not running).
        let Ok(answer) = answer else { continue };
        let info = grpc::string_map(&grpc::fields(&answer)?, 2)?;
        out[*index].pid = info.get("info").and_then(|json| pid_of_info(json));
    }
    Ok(out)
}

/// `"pid": 4242` of a verbose status's JSON (containerd and CRI-O both write it at the top).
fn pid_of_info(json: &str) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0)
}

/// A sandbox or container of the CRI (its id is field 1 of both), its pid asked later.
fn member(runtime: &str, fields: &[grpc::Field<'_>], labels: std::collections::BTreeMap<String, String>) -> Container {
    Container { runtime: runtime.to_owned(), id: grpc::string(fields, 1), names: Vec::new(), labels, pid: None }
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
