//! The Kubernetes manifests in deploy/kubernetes/, read as the API server would: every document
//! deserialised into the typed API structs (`k8s-openapi`, unknown fields refused), and the
//! DaemonSet's security context, volumes and annotations checked; the ConfigMap's files are a
//! configuration the daemon accepts (`chaos daemon --check`, on the host tier).
use std::{collections::BTreeMap, fs};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{ConfigMap, Namespace, ServiceAccount},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::Deserialize as _;

/// The manifests, compiled in: the VM tiers run this binary where the source tree is not.
fn manifest(name: &str) -> &'static str {
    match name {
        "namespace.yaml" => include_str!("../../deploy/kubernetes/namespace.yaml"),
        "serviceaccount.yaml" => include_str!("../../deploy/kubernetes/serviceaccount.yaml"),
        "configmap.yaml" => include_str!("../../deploy/kubernetes/configmap.yaml"),
        "daemonset.yaml" => include_str!("../../deploy/kubernetes/daemonset.yaml"),
        "kustomization.yaml" => include_str!("../../deploy/kubernetes/kustomization.yaml"),
        other => panic!("no manifest {other}"),
    }
}

/// Every YAML document of one file, as JSON values with their `kind`.
fn documents(name: &str) -> Vec<serde_json::Value> {
    serde_norway::Deserializer::from_str(manifest(name))
        .map(|document| serde_json::Value::deserialize(document).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

/// The one document of `name`, typed; unknown fields (a typo) are an error.
fn typed<T: serde::de::DeserializeOwned>(name: &str, kind: &str) -> T {
    let docs = documents(name);
    assert_eq!(docs.len(), 1, "{name} holds one document");
    assert_eq!(docs[0]["kind"], kind, "{name}");
    let (value, unknown) = typed_value(&docs[0]).unwrap_or_else(|e| panic!("{name} is not a valid {kind}: {e}"));
    assert!(unknown.is_empty(), "{name}: fields the {kind} API does not have: {unknown:?}");
    value
}

/// A JSON value as `T`, with the paths of the fields `T` does not have.
fn typed_value<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> serde_json::Result<(T, Vec<String>)> {
    let text = serde_json::to_string(value).unwrap();
    let mut de = serde_json::Deserializer::from_str(&text);
    let mut unknown = Vec::new();
    let value = serde_ignored::deserialize(&mut de, |path| unknown.push(path.to_string()))?;
    Ok((value, unknown))
}

#[test]
fn a_misspelt_field_is_caught() {
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}, "automountToken": false});
    let (_, unknown) = typed_value::<ServiceAccount>(&doc).expect("still a ServiceAccount");
    assert_eq!(unknown, ["automountToken"]);
}

fn in_chaos_namespace(meta: &ObjectMeta) {
    assert_eq!(meta.namespace.as_deref(), Some("chaos-system"), "{:?}", meta.name);
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object() {
    let namespace: Namespace = typed("namespace.yaml", "Namespace");
    assert_eq!(namespace.metadata.name.as_deref(), Some("chaos-system"));
    let account: ServiceAccount = typed("serviceaccount.yaml", "ServiceAccount");
    in_chaos_namespace(&account.metadata);
    assert_eq!(account.automount_service_account_token, Some(false), "the daemon needs no API token");
    let config: ConfigMap = typed("configmap.yaml", "ConfigMap");
    in_chaos_namespace(&config.metadata);
    let daemonset: DaemonSet = typed("daemonset.yaml", "DaemonSet");
    in_chaos_namespace(&daemonset.metadata);
    let kustomization = documents("kustomization.yaml");
    let listed: Vec<&str> =
        kustomization[0]["resources"].as_array().unwrap().iter().filter_map(|r| r.as_str()).collect();
    for file in ["namespace.yaml", "serviceaccount.yaml", "configmap.yaml", "daemonset.yaml"] {
        assert!(listed.contains(&file), "kustomization.yaml does not list {file}");
    }
}

#[test]
fn the_daemonset_runs_with_the_least_capabilities_and_the_host_mounts() {
    let daemonset: DaemonSet = typed("daemonset.yaml", "DaemonSet");
    let spec = daemonset.spec.expect("spec");
    let template = spec.template;
    let annotations = template.metadata.as_ref().and_then(|m| m.annotations.clone()).unwrap_or_default();
    assert_eq!(annotations.get("prometheus.io/scrape").map(String::as_str), Some("true"));
    assert_eq!(annotations.get("prometheus.io/port").map(String::as_str), Some("9464"));
    let pod = template.spec.expect("pod spec");
    assert_eq!(pod.host_pid, Some(true), "the daemon acts on the node's processes");
    assert_eq!(pod.service_account_name.as_deref(), Some("chaos-daemon"));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(args[..3], ["daemon", "--config", "/etc/chaos/daemon.toml"]);
    let security = container.security_context.clone().expect("a security context");
    assert_eq!(security.privileged, Some(false), "privileged is the documented fallback, not the default");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let capabilities = security.capabilities.expect("capabilities");
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
    let mut added = capabilities.add.unwrap_or_default();
    added.sort();
    assert_eq!(added, ["BPF", "KILL", "NET_ADMIN", "PERFMON", "SYS_ADMIN"]);

    let volumes: BTreeMap<String, _> =
        pod.volumes.unwrap_or_default().into_iter().map(|v| (v.name.clone(), v)).collect();
    let mounts: BTreeMap<String, String> =
        container.volume_mounts.clone().unwrap_or_default().into_iter().map(|m| (m.name, m.mount_path)).collect();
    let host_path =
        |name: &str| volumes.get(name).and_then(|v| v.host_path.as_ref()).map(|h| h.path.clone()).unwrap_or_default();
    for (volume, host, inside) in [
        ("cgroup", "/sys/fs/cgroup", "/sys/fs/cgroup"),
        ("bpffs", "/sys/fs/bpf", "/sys/fs/bpf"),
        ("run-chaos", "/run/chaos", "/run/chaos"),
        ("containerd", "/run/containerd", "/run/containerd"),
        ("crio", "/run/crio", "/run/crio"),
        ("docker", "/run/docker.sock", "/run/docker.sock"),
    ] {
        assert_eq!(host_path(volume), host, "volume {volume}");
        assert_eq!(mounts.get(volume).map(String::as_str), Some(inside), "mount of {volume}");
    }
    let config = volumes.get("config").and_then(|v| v.config_map.as_ref()).expect("the config volume");
    assert_eq!(config.name, "chaos-config");
    assert_eq!(mounts.get("config").map(String::as_str), Some("/etc/chaos"));
}

/// A node-wide agent: it runs on every node, tainted ones included (a fleet's background chaos
/// must not skip the control plane or a tainted pool by accident), an update replaces one node's
/// daemon at a time, and SIGTERM gets time to end every run and detach its faults before the
/// kubelet's SIGKILL (which the kernel's deadlines would also survive, but with leftovers for
/// the next start to clean).
#[test]
fn the_daemonset_runs_on_every_node_updates_one_at_a_time_and_gives_sigterm_time_to_detach() {
    let daemonset: DaemonSet = typed("daemonset.yaml", "DaemonSet");
    let spec = daemonset.spec.expect("spec");
    let strategy = spec.update_strategy.expect("an update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.expect("rollingUpdate");
    assert_eq!(
        rolling.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)),
        "one node at a time without its daemon"
    );
    let pod = spec.template.spec.expect("pod spec");
    let tolerations = pod.tolerations.unwrap_or_default();
    assert_eq!(tolerations.len(), 1, "{tolerations:?}");
    assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"), "tolerates every taint");
    assert!(tolerations[0].key.is_none() && tolerations[0].effect.is_none(), "{tolerations:?}");
    let grace = pod.termination_grace_period_seconds.expect("terminationGracePeriodSeconds");
    assert!((10..=60).contains(&grace), "SIGTERM gets {grace} s to end every run before SIGKILL");
}

/// The image `cargo xtask package` writes: its repository (read from xtask's source, where it
/// is named once) and the workspace's version as the tag.
fn packaged_image() -> String {
    let source = include_str!("../../xtask/src/package/mod.rs");
    let repository = source
        .lines()
        .find_map(|l| l.split_once("const IMAGE_REPOSITORY: &str = \"").map(|(_, rest)| rest))
        .and_then(|rest| rest.strip_suffix("\";"))
        .expect("xtask/src/package/mod.rs names IMAGE_REPOSITORY");
    format!("{repository}:{}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn the_daemonset_and_the_kustomization_name_the_image_xtask_package_writes() {
    let daemonset: DaemonSet = typed("daemonset.yaml", "DaemonSet");
    let pod = daemonset.spec.expect("spec").template.spec.expect("pod spec");
    let image = pod.containers[0].image.clone().expect("an image");
    assert_eq!(image, packaged_image(), "the DaemonSet runs another image than `cargo xtask package` writes");
    let kustomization = &documents("kustomization.yaml")[0];
    let entry = &kustomization["images"][0];
    let (name, tag) = image.split_once(':').expect("name:tag");
    assert_eq!(entry["name"], name, "{kustomization}");
    assert_eq!(
        format!("{}:{}", entry["newName"].as_str().unwrap_or(name), entry["newTag"].as_str().unwrap_or("")),
        image
    );
    assert_eq!(entry["newTag"], tag);
}

#[test]
fn the_configmap_opts_no_namespace_in_and_keeps_the_share_cap_on() {
    let config: ConfigMap = typed("configmap.yaml", "ConfigMap");
    let data = config.data.expect("data");
    assert!(!data.contains_key("kill"), "the kill key pauses every node: it is for emergencies, not shipped");
    let daemon = data.get("daemon.toml").expect("daemon.toml");
    assert!(daemon.contains("[kubernetes]\nnamespaces = []\n"), "no namespace is opted in until someone names one");
    assert!(daemon.contains("targets = { pods = "), "the catalogue picks pods by their labels");
    assert!(daemon.contains("kill_switch = \"kill\""), "the kill switch is the ConfigMap key `kill`");
    assert!(daemon.contains("max_share = 25"), "the share cap is on");
    for key in data.keys() {
        assert!(!key.contains('/'), "ConfigMap keys are file names: {key}");
    }
}

#[test]
fn the_configmap_files_are_a_configuration_the_daemon_accepts() {
    let config: ConfigMap = typed("configmap.yaml", "ConfigMap");
    let mount = chaos_tests::TempDir::new();
    for (name, text) in config.data.expect("data") {
        fs::write(mount.path().join(&name), text).expect("write a ConfigMap file");
    }
    let daemon_toml = mount.path().join("daemon.toml");
    let (status, stdout, stderr) = chaos_tests::chaos::run(&["daemon", "--check", daemon_toml.to_str().unwrap()]);
    assert!(status.success(), "chaos daemon --check refuses the ConfigMap's configuration: {stdout}{stderr}");
    assert!(stdout.contains("25 % of a selector's matches"), "{stdout}");
    assert!(stdout.contains("kubernetes namespaces opted in: none (no pod is eligible)"), "{stdout}");
}
