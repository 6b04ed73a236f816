//! Every way naming a target can fail, each saying what was wrong and what to do.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TargetError {
    #[error(
        "no cgroup v2 filesystem is mounted (looked in /proc/self/mountinfo); chaos targets cgroup \
         v2 cgroups: mount one with `mount -t cgroup2 none /sys/fs/cgroup` or boot with \
         systemd.unified_cgroup_hierarchy=1"
    )]
    NoCgroup2,
    #[error("cannot read {what}: {reason}")]
    Unreadable { what: String, reason: String },
    #[error("{flag} {arg}: cgroup {path} does not exist (cgroup v2 is mounted at {mount})")]
    NoSuchCgroup { flag: &'static str, arg: String, path: String, mount: String },
    #[error("--cgroup {arg}: {path} is not inside the cgroup v2 mount {mount}")]
    OutsideMount { arg: String, path: String, mount: String },
    #[error("--pid {pid}: no such process")]
    NoSuchPid { pid: u32 },
    #[error("--pid {pid}: the process has no cgroup v2 membership in /proc/{pid}/cgroup")]
    PidWithoutCgroup2 { pid: u32 },
    #[error("--unit {unit}: no cgroup named {unit} under {mount}; is the unit running? (`systemctl status {unit}`)")]
    NoSuchUnit { unit: String, mount: String },
    #[error(
        "--container {id}: no container cgroup matches (looked for docker, containerd, cri-o and podman naming under {mount}); `docker ps --no-trunc` or `crictl ps` show running ids"
    )]
    NoSuchContainer { id: String, mount: String },
    #[error(
        "--container {id}: a container id prefix needs at least 4 hexadecimal characters (names \
         need a runtime's API, and none answered)"
    )]
    BadContainerId { id: String },
    #[error(
        "--container {id}: no container runtime answered ({asked}), and cgroup directory names \
         carry ids, not names. Give the container's id (`docker ps --no-trunc`), or let chaos \
         reach the runtime's socket ($DOCKER_HOST, $CONTAINER_HOST, $CONTAINERD_ADDRESS)"
    )]
    NoContainerRuntime { id: String, asked: String },
    #[error(
        "--container {id}: no running container has that id, id prefix or name (asked {asked}); \
         `docker ps`, `podman ps` or `ctr -n k8s.io containers ls` list them"
    )]
    ContainerNotFound { id: String, asked: String },
    #[error("--container {id}: {container} is not running (it has no init process); start it first")]
    ContainerNotRunning { id: String, container: String },
    #[error("--container {arg} matches more than one container:\n  {}\nname one by its full id", .matches.join("\n  "))]
    AmbiguousContainer { arg: String, matches: Vec<String> },
    #[error("{flag} {arg}: {reason}")]
    BadTarget { flag: &'static str, arg: String, reason: String },
    #[error(
        "{flag} {arg}: pods are found through the labels kubelet puts on containers, and no \
         container runtime answered ({asked}); chaos asks containerd at $CONTAINERD_ADDRESS or \
         /run/containerd/containerd.sock, and CRI-O at $CONTAINER_RUNTIME_ENDPOINT or \
         /var/run/crio/crio.sock"
    )]
    NoPodRuntime { flag: &'static str, arg: String, asked: String },
    #[error("{flag} {arg}: no pod on this node matches (asked {asked}); `crictl pods` lists them")]
    NoSuchPod { flag: &'static str, arg: String, asked: String },
    #[error("pod {pod} has no container named {container}; it has: {}", .known.join(", "))]
    NoSuchPodContainer { pod: String, container: String, known: Vec<String> },
    #[error("pod {pod} has no running process on this node; nothing to aim at")]
    PodNotRunning { pod: String },
    #[error("pod {pod}: its containers are in different parent cgroups ({}); aim at one with --container-name", .cgroups.join(", "))]
    PodCgroupsDiffer { pod: String, cgroups: Vec<String> },
    #[error(
        "pod {pod}: its containers' parent cgroup {cgroup} also holds {other}, which is not in the \
         pod; aim at one container with --container-name"
    )]
    PodCgroupShared { pod: String, cgroup: String, other: String },
    #[error(
        "--selector {arg} matches {} pods:\n  {}\naim at one with --pick-pod N (its number above), or, for a \
         one-shot fault, at every one of them with --all",
        .pods.len(), .pods.join("\n  ")
    )]
    SelectorMatchesMany { arg: String, pods: Vec<String> },
    #[error("--selector {arg} --pick {pick}: it matches {count} pods, numbered from 1")]
    PickOutOfRange { arg: String, pick: usize, count: usize },
    #[error("{flag} {arg} is ambiguous, it matches:\n  {}\nname one of them with --cgroup", .matches.join("\n  "))]
    Ambiguous { flag: &'static str, arg: String, matches: Vec<String> },
    #[error(
        "{flag} {arg} resolves to the root cgroup: every process on the machine would be \
         affected. Aim at a child cgroup (a container, a unit, a process tree)"
    )]
    RootCgroup { flag: &'static str, arg: String },
    #[error(
        "{flag} {arg} resolves to cgroup {path}, which contains chaos itself (it runs in {own}). \
         Run chaos from outside the target, or the controller would be hit by its own fault"
    )]
    ContainsController { flag: &'static str, arg: String, path: String, own: String },
    #[error(
        "{flag} {arg} resolves to cgroup {path}, which holds the init process (pid 1): a fault there \
         can take the whole machine down. Aim at the service's own cgroup"
    )]
    InitScope { flag: &'static str, arg: String, path: String },
}

impl TargetError {
    /// A refusal made for safety (root cgroup, chaos's own, init's), which `chaos run --i-know`
    /// may override, as opposed to a target that does not exist.
    #[must_use]
    pub(crate) const fn is_safety_refusal(&self) -> bool {
        matches!(self, Self::RootCgroup { .. } | Self::ContainsController { .. } | Self::InitScope { .. })
    }
}

/// Reading the hierarchy failed: the same words, as a target error.
impl From<crate::os::cgroup::CgroupError> for TargetError {
    fn from(err: crate::os::cgroup::CgroupError) -> Self {
        use crate::os::cgroup::CgroupError;
        match err {
            CgroupError::NoCgroup2 => Self::NoCgroup2,
            CgroupError::Unreadable { what, reason } => Self::Unreadable { what, reason },
            CgroupError::NoSuchPid { pid } => Self::NoSuchPid { pid },
            CgroupError::PidWithoutCgroup2 { pid } => Self::PidWithoutCgroup2 { pid },
        }
    }
}
