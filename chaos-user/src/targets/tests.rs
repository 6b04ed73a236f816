//! Unit tests of the parent module.
use super::*;
use crate::os::{cgroup::CgroupError, mountinfo::cgroup2_mount};

const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn finds_cgroup2_on_hybrid_hosts() {
    assert_eq!(cgroup2_mount(HYBRID_MOUNTINFO), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    assert_eq!(cgroup2_mount("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"), None);
    assert_eq!(
        cgroup2_mount("41 31 0:38 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n"),
        Some(PathBuf::from("/mnt/my cg"))
    );
}

#[test]
fn in_a_container_the_hosts_cgroup2_mount_is_the_one_rooted_at_the_top() {
    // A pod's own cgroup2 mount (rooted at its cgroup, as seen from the host's cgroup
    // namespace) comes first; the host's, mounted in by the DaemonSet, is the one to use.
    let pod = "\
900 880 0:30 /kubepods.slice/kubepods-pod1.slice/cri-containerd-3f2a.scope /sys/fs/cgroup ro - cgroup2 cgroup rw
910 880 0:30 / /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
    assert_eq!(cgroup2_mount(pod), Some(PathBuf::from("/host/sys/fs/cgroup")));
}

#[test]
fn containment_is_by_path_component() {
    assert!(is_same_or_below("/a/b", "/a"));
    assert!(is_same_or_below("/a", "/a"));
    assert!(!is_same_or_below("/ab", "/a"));
    assert!(is_same_or_below("/anything", "/"));
}

#[test]
fn recognises_container_cgroup_names() {
    let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for name in [
        format!("docker-{id}.scope"),
        format!("cri-containerd-{id}.scope"),
        format!("crio-{id}.scope"),
        format!("libpod-{id}.scope"),
        id.to_owned(),
    ] {
        assert_eq!(container_id(&name), Some(id), "{name}");
    }
    assert_eq!(container_id("crio-conmon-0123.scope"), None);
    assert_eq!(container_id("system.slice"), None);
}

/// A fake cgroup tree in a temporary directory, removed on drop.
struct FakeTree(PathBuf);

impl FakeTree {
    fn new(dirs: &[&str]) -> Self {
        let root = std::env::temp_dir().join(format!("chaos-target-test-{}-{}", std::process::id(), rand_suffix()));
        for dir in dirs {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::create_dir_all(&root).unwrap();
        Self(root)
    }
    fn fs(&self) -> CgroupFs {
        CgroupFs::at(&self.0)
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const ID_A: &str = "aaaa456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ID_B: &str = "aaaa556789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn tree() -> FakeTree {
    FakeTree::new(&[
        "system.slice/nginx.service",
        "user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service",
        "system.slice/redis.service",
        &format!("system.slice/docker-{ID_A}.scope"),
        &format!("kubepods/burstable/pod1/cri-containerd-{ID_B}.scope"),
        "chaos-test/inner",
    ])
}

#[test]
fn resolves_cgroup_paths_in_every_spelling() {
    let tree = tree();
    let fs = tree.fs();
    let expected = "/system.slice/redis.service";
    for spelling in [
        "/system.slice/redis.service".to_owned(),
        "system.slice/redis.service".to_owned(),
        format!("{}/system.slice/redis.service", tree.0.display()),
        "/system.slice/../system.slice/redis.service/".to_owned(),
    ] {
        let target = fs.resolve(&TargetName::Cgroup(spelling.clone()), None).unwrap();
        assert_eq!(target.cgroup, expected, "{spelling}");
        assert!(target.id > 0);
    }
}

#[test]
fn refuses_missing_root_and_own_cgroups() {
    let tree = tree();
    let fs = tree.fs();
    let err = fs.resolve(&TargetName::Cgroup("/nope".into()), None).unwrap_err();
    assert!(err.to_string().contains("--cgroup /nope: cgroup") && err.to_string().contains("does not exist"), "{err}");
    let err = fs.resolve(&TargetName::Cgroup("/".into()), None).unwrap_err();
    assert!(matches!(err, TargetError::RootCgroup { .. }), "{err}");
    assert!(err.to_string().contains("every process on the machine"), "{err}");
    let err = fs.resolve(&TargetName::Cgroup("/chaos-test".into()), Some("/chaos-test/inner")).unwrap_err();
    assert!(err.to_string().contains("contains chaos itself"), "{err}");
    // A sibling whose name shares a prefix is fine.
    assert!(fs.resolve(&TargetName::Cgroup("/chaos-test/inner".into()), Some("/chaos-test")).is_ok());
}

#[test]
fn i_know_lifts_the_safety_refusals_but_not_missing_targets() {
    let tree = tree();
    let fs = tree.fs();
    let root = fs.resolve_allowing(&TargetName::Cgroup("/".into()), None, true).unwrap();
    assert_eq!(root.cgroup, "/");
    assert!(fs.resolve_allowing(&TargetName::Cgroup("/chaos-test".into()), Some("/chaos-test/inner"), true).is_ok());
    let err = fs.resolve_allowing(&TargetName::Cgroup("/nope".into()), None, true).unwrap_err();
    assert!(!err.is_safety_refusal(), "{err}");
    assert!(
        TargetError::InitScope { flag: "--cgroup", arg: "/init.scope".into(), path: "/init.scope".into() }
            .is_safety_refusal()
    );
}

#[test]
fn a_cgroup_v1_path_is_refused_with_the_v2_mount() {
    let fs = CgroupFs::at("/sys/fs/cgroup/unified");
    let err = fs.resolve(&TargetName::Cgroup("/sys/fs/cgroup/cpu/x".into()), None).unwrap_err();
    assert!(err.to_string().contains("not inside the cgroup v2 mount /sys/fs/cgroup/unified"), "{err}");
}

#[test]
fn resolves_units_and_reports_ambiguity() {
    let tree = tree();
    let fs = tree.fs();
    let target = fs.resolve(&TargetName::Unit("redis.service".into()), None).unwrap();
    assert_eq!(target.cgroup, "/system.slice/redis.service");
    let err = fs.resolve(&TargetName::Unit("nginx.service".into()), None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("is ambiguous")
            && text.contains("/system.slice/nginx.service")
            && text.contains("app.slice/nginx.service"),
        "{text}"
    );
    let err = fs.resolve(&TargetName::Unit("gone.service".into()), None).unwrap_err();
    assert!(err.to_string().contains("no cgroup named gone.service"), "{err}");
}

#[test]
fn resolves_containers_by_unique_prefix() {
    let tree = tree();
    let fs = tree.fs();
    let docker = fs.resolve(&TargetName::Container("aaaa45".into()), None).unwrap();
    assert_eq!(docker.cgroup, format!("/system.slice/docker-{ID_A}.scope"));
    let k8s = fs.resolve(&TargetName::Container(ID_B.to_uppercase()), None).unwrap();
    assert!(k8s.cgroup.ends_with(&format!("cri-containerd-{ID_B}.scope")));
    let err = fs.resolve(&TargetName::Container("aaaa".into()), None).unwrap_err();
    assert!(err.to_string().contains("is ambiguous"), "{err}");
    // Not an id prefix: a name, which needs a runtime's API. This machine's own runtimes, if
    // any runs, are asked too: they know neither name nor id.
    let runtime_answers = !runtime::endpoints().is_empty();
    let err = fs.resolve(&TargetName::Container("abc".into()), None).unwrap_err().to_string();
    let expected = if runtime_answers { "no running container has that id" } else { "no container runtime answered" };
    assert!(err.contains(expected), "{err}");
    let err = fs.resolve(&TargetName::Container("ffff".into()), None).unwrap_err().to_string();
    let expected = if runtime_answers { "no running container has that id" } else { "no container cgroup matches" };
    assert!(err.contains(expected), "{err}");
}

#[test]
fn reads_the_v2_line_of_proc_pid_cgroup() {
    let tree = FakeTree::new(&["42"]);
    fs::write(tree.0.join("42/cgroup"), "12:cpu:/x\n0::/system.slice/redis.service\n").unwrap();
    assert_eq!(pid_cgroup(&tree.0, 42).unwrap(), "/system.slice/redis.service");
    assert_eq!(pid_cgroup(&tree.0, 43), Err(CgroupError::NoSuchPid { pid: 43 }));
    fs::write(tree.0.join("42/cgroup"), "12:cpu:/x\n").unwrap();
    assert_eq!(pid_cgroup(&tree.0, 42), Err(CgroupError::PidWithoutCgroup2 { pid: 42 }));
}

#[test]
fn a_pid_is_found_by_the_cgroup_that_lists_it_when_proc_paths_are_relative() {
    // What an agent in a cgroup namespace needs: /proc shows `/../../kubepods/...`, so the
    // directory is found by its cgroup.procs.
    let tree = FakeTree::new(&["kubepods/pod-a/c1", "kubepods/pod-b/c2"]);
    fs::write(tree.0.join("kubepods/pod-a/c1/cgroup.procs"), "41\n").unwrap();
    fs::write(tree.0.join("kubepods/pod-b/c2/cgroup.procs"), "42\n4242\n").unwrap();
    assert_eq!(tree.fs().dir_holding(4242), Some(tree.0.join("kubepods/pod-b/c2")));
    assert_eq!(tree.fs().dir_holding(424), None);
}
