//! chaos's CRI client (`runtime.v1.RuntimeService`, the API CRI-O serves) against a CRI server
//! stub on a private Unix socket (host tier): Debian 12 has no cri-o package, and containerd's
//! own CRI plugin lists only the sandboxes it ran itself (running one here, from an image
//! imported by hand on the node's network, failed in runc). The stub answers ListPodSandbox, ListContainers and the verbose
//! PodSandboxStatus / ContainerStatus with kubelet's labels and the pids of real processes the
//! test put in cgroups of its own; chaos must find the pods' and containers' cgroups from them,
//! for `--pod`, `--selector` and the daemon's pod selectors. containerd's CRI endpoint, empty,
//! checks the same client against a real server's framing.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use bytes::Bytes;
use chaos_tests::{TempDir, cgroup::cgroup2_mount, chaos, require_root, runtimes::remove_cgroup, unique_name};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

macro_rules! host_tier_only {
    ($test:expr) => {
        chaos_tests::skip_if!(
            chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
            $test,
            "the runtimes' clients are tested on the host tier (containers.rs); their answers do not depend on the kernel"
        );
    };
}

const NOWHERE: &str = "/nonexistent/chaos-test.sock";

/// One member of a pod as the stub serves it: a sandbox (no container name) or a container.
#[derive(Clone)]
struct Member {
    id: String,
    namespace: &'static str,
    pod: &'static str,
    container: Option<&'static str>,
    pod_labels: &'static [(&'static str, &'static str)],
    pid: u32,
}

/// The test's two pods: name, labels.
const PODS: [(&str, &[(&str, &str)]); 2] = [("web-1", &[("app", "web")]), ("db-1", &[("app", "db")])];

// ---- protobuf, as much as the stub writes -----------------------------------------------

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bytes_field(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    varint(out, number << 3 | 2);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn varint_field(out: &mut Vec<u8>, number: u64, value: u64) {
    varint(out, number << 3);
    varint(out, value);
}

fn map_field(out: &mut Vec<u8>, number: u64, map: &BTreeMap<String, String>) {
    for (key, value) in map {
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, key.as_bytes());
        bytes_field(&mut entry, 2, value.as_bytes());
        bytes_field(out, number, &entry);
    }
}

/// Field 1 (a string) of a request: the id of a status call.
fn first_string(message: &[u8]) -> String {
    match message {
        [0x0a, len, rest @ ..] if rest.len() >= usize::from(*len) => {
            String::from_utf8_lossy(&rest[..usize::from(*len)]).into_owned()
        }
        _ => String::new(),
    }
}

// ---- the CRI answers --------------------------------------------------------------------

/// kubelet's labels: the pod's on its sandbox, the container's name on its containers.
fn labels(member: &Member) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("io.kubernetes.pod.name".to_owned(), member.pod.to_owned()),
        ("io.kubernetes.pod.namespace".to_owned(), member.namespace.to_owned()),
        ("io.kubernetes.pod.uid".to_owned(), format!("uid-{}", member.pod)),
    ]);
    match member.container {
        Some(name) => drop(labels.insert("io.kubernetes.container.name".to_owned(), name.to_owned())),
        None => labels.extend(member.pod_labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))),
    }
    labels
}

fn answer(members: &[Member], method: &str, request: &[u8]) -> Option<Vec<u8>> {
    let sandbox_of = |pod: &str| members.iter().find(|m| m.pod == pod && m.container.is_none()).map(|m| m.id.clone());
    let mut out = Vec::new();
    match method {
        "/runtime.v1.RuntimeService/ListPodSandbox" => {
            for member in members.iter().filter(|m| m.container.is_none()) {
                let mut metadata = Vec::new();
                bytes_field(&mut metadata, 1, member.pod.as_bytes());
                bytes_field(&mut metadata, 2, format!("uid-{}", member.pod).as_bytes());
                bytes_field(&mut metadata, 3, member.namespace.as_bytes());
                let mut sandbox = Vec::new();
                bytes_field(&mut sandbox, 1, member.id.as_bytes());
                bytes_field(&mut sandbox, 2, &metadata);
                // state SANDBOX_READY is 0, protobuf's default: not written, as real servers do.
                varint_field(&mut sandbox, 4, 1_700_000_000_000_000_000);
                map_field(&mut sandbox, 5, &labels(member));
                bytes_field(&mut out, 1, &sandbox);
            }
        }
        "/runtime.v1.RuntimeService/ListContainers" => {
            for member in members.iter().filter(|m| m.container.is_some()) {
                let mut metadata = Vec::new();
                bytes_field(&mut metadata, 1, member.container.unwrap_or_default().as_bytes());
                let mut container = Vec::new();
                bytes_field(&mut container, 1, member.id.as_bytes());
                bytes_field(&mut container, 2, sandbox_of(member.pod).unwrap_or_default().as_bytes());
                bytes_field(&mut container, 3, &metadata);
                varint_field(&mut container, 6, 1); // CONTAINER_RUNNING
                map_field(&mut container, 8, &labels(member));
                bytes_field(&mut out, 1, &container);
            }
        }
        "/runtime.v1.RuntimeService/PodSandboxStatus" | "/runtime.v1.RuntimeService/ContainerStatus" => {
            let id = first_string(request);
            let member = members.iter().find(|m| m.id == id)?;
            let mut status = Vec::new();
            bytes_field(&mut status, 1, id.as_bytes());
            bytes_field(&mut out, 1, &status);
            let info = format!("{{\"sandboxID\":\"{}\",\"pid\":{},\"runtimeSpec\":{{}}}}", id, member.pid);
            map_field(&mut out, 2, &BTreeMap::from([("info".to_owned(), info)]));
        }
        _ => return None,
    }
    Some(out)
}

/// Serves the CRI answers on `socket` from a thread of its own, for the rest of the process.
fn serve(socket: PathBuf, members: Vec<Member>) {
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind the stub's socket");
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(listener).expect("a tokio listener");
            let members = std::sync::Arc::new(members);
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let members = std::sync::Arc::clone(&members);
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let members = std::sync::Arc::clone(&members);
                    async move {
                        let method = request.uri().path().to_owned();
                        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let response = hyper::Response::builder().header("content-type", "application/grpc");
                        let response = match answer(&members, &method, body.get(5..).unwrap_or_default()) {
                            Some(message) => {
                                let mut framed = vec![0];
                                framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                                framed.extend_from_slice(&message);
                                response.header("grpc-status", "0").body(Full::new(Bytes::from(framed)))
                            }
                            None => response
                                .header("grpc-status", "12")
                                .header("grpc-message", "unimplemented")
                                .body(Full::new(Bytes::new())),
                        };
                        Ok::<_, std::convert::Infallible>(response.expect("a response"))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
}

/// Sleepers in cgroups `<top>/pod-<pod>/<member>`, killed and removed on Drop.
struct Pods {
    top: String,
    children: Vec<Child>,
}

impl Pods {
    fn new() -> Self {
        Self { top: format!("/{}", unique_name("chaos-test-cri")), children: Vec::new() }
    }

    /// A sleeping process in `<top>/pod-<pod>/<member>`: its pid.
    fn sleeper(&mut self, pod: &str, member: &str) -> u32 {
        let dir = cgroup2_mount().join(self.top.trim_start_matches('/')).join(format!("pod-{pod}")).join(member);
        fs::create_dir_all(&dir).expect("create a member's cgroup");
        let child = Command::new("sleep").arg("600").stdin(Stdio::null()).spawn().expect("start a sleeper");
        let pid = child.id();
        self.children.push(child);
        fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("move the sleeper into its cgroup");
        pid
    }

    fn cgroup(&self, pod: &str, member: Option<&str>) -> String {
        let pod = format!("{}/pod-{pod}", self.top);
        member.map_or(pod.clone(), |m| format!("{pod}/{m}"))
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_cgroup(&self.top);
    }
}

/// `chaos net drop <target> --dry-run --output json` with only the stub to ask: its cgroup.
fn resolved(target: &[&str], socket: &Path) -> Result<String, String> {
    let mut args = vec!["net", "drop"];
    args.extend_from_slice(target);
    args.extend_from_slice(&["--percent", "10", "--for", "30s", "--dry-run", "--output", "json"]);
    let (status, stdout, stderr) = chaos::run_with_env(&args, &env(socket));
    if !status.success() {
        return Err(stderr);
    }
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    Ok(json["target"]["cgroup"].as_str().expect("target.cgroup").to_owned())
}

fn env(socket: &Path) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> =
        ["DOCKER_HOST", "CONTAINER_HOST", "CONTAINERD_ADDRESS"].into_iter().map(|v| (v, NOWHERE.to_owned())).collect();
    env.push(("CONTAINER_RUNTIME_ENDPOINT", format!("unix://{}", socket.display())));
    env
}

#[test]
fn pods_and_containers_are_found_through_the_cri_of_a_stub_server() {
    let test = "pods_and_containers_are_found_through_the_cri_of_a_stub_server";
    require_root!(test);
    host_tier_only!(test);
    let mut pods = Pods::new();
    let mut members = Vec::new();
    for (pod, pod_labels) in PODS {
        for container in [None, Some("main"), Some("sidecar")] {
            let member = container.unwrap_or("sandbox");
            let pid = pods.sleeper(pod, member);
            let id = format!("{pod}-{member}-{:0>40}", pid);
            members.push(Member { id, namespace: "shop", pod, container, pod_labels, pid });
        }
    }
    let dir = TempDir::new();
    let socket = dir.join("crio.sock");
    serve(socket.clone(), members);

    assert_eq!(resolved(&["--pod", "shop/web-1"], &socket), Ok(pods.cgroup("web-1", None)));
    assert_eq!(
        resolved(&["--selector", "app=db", "--container-name", "sidecar"], &socket),
        Ok(pods.cgroup("db-1", Some("sidecar")))
    );
    let unknown = resolved(&["--pod", "shop/web-1", "--container-name", "redis"], &socket).unwrap_err();
    assert!(unknown.contains("has no container named redis; it has: main, sidecar"), "{unknown}");

    // The daemon's pod selector through the same client: one eligible pod.
    let experiment = "name = \"x\"\ntarget = { cgroup = \"/placeholder\" }\nduration = \"2s\"\n\n\
                      [[fault]]\nkind = \"net drop\"\npercent = 10\n";
    fs::write(dir.join("e.toml"), experiment).expect("write the experiment");
    let config = "metrics = false\n[schedule]\nevery = \"1m\"\n[kubernetes]\nnamespaces = [\"shop\"]\n\n\
                  [[experiment]]\nfile = \"e.toml\"\ntargets = { pods = \"app=web\" }\n";
    fs::write(dir.join("daemon.toml"), config).expect("write the configuration");
    let path = dir.join("daemon.toml");
    let (status, stdout, stderr) =
        chaos::run_with_env(&["daemon", "--check", path.to_str().expect("utf-8")], &env(&socket));
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("pods app=web (1 match now)"), "{stdout}");
}

#[test]
fn the_cri_client_is_answered_by_containerds_own_cri_endpoint() {
    let test = "the_cri_client_is_answered_by_containerds_own_cri_endpoint";
    require_root!(test);
    host_tier_only!(test);
    let containerd = match chaos_tests::runtimes::Containerd::start_with_cri() {
        Ok(c) => c,
        Err(why) => return chaos_tests::skip::record(test, &format!("containerd cannot run here: {why}")),
    };
    // A real CRI server (its answers' status in HTTP/2 trailers): both lists answer, empty,
    // since it lists only the sandboxes it ran itself.
    let socket = PathBuf::from(containerd.address());
    let none = resolved(&["--pod", "shop/web-1"], &socket).unwrap_err();
    assert!(
        none.contains("no pod on this node matches") && none.contains(&format!("cri-o at {}", socket.display())),
        "{none}"
    );
    let (status, stdout, stderr) = chaos::run_with_env(&["doctor"], &env(&socket));
    assert!(
        stdout.contains(&format!("yes cri-o at {}", socket.display())) && stdout.contains("0 containers"),
        "{status:?} {stdout}{stderr}"
    );
}
