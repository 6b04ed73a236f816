//! The container runtimes the tests start must leave the machine's network alone. dockerd with
//! `--bridge=none` deletes any link named docker0 when it starts (moby's
//! `removeDefaultBridgeInterface`), so a test suite that ran it in the machine's own network
//! namespace broke the Docker of whoever ran the suite. Here bridges named as the runtimes'
//! defaults (docker0, podman0, cni0) exist in the machine's namespace while a private dockerd,
//! Podman service and containerd start, run a container each and stop; afterwards each bridge
//! must still be there, the same link (index) with the same flags and addresses. A bridge the
//! machine already had is only looked at; one the test made is removed on Drop.
use std::process::Command;

use chaos_tests::{
    require_root,
    runtimes::{Containerd, DockerApi, Engine, Rootfs},
    unique_name,
};

/// The names runtimes give their default bridges.
const BRIDGES: [&str; 3] = ["docker0", "podman0", "cni0"];

/// A bridge in the machine's namespace: made by the test (removed on Drop), or the machine's own.
struct Bridge {
    name: &'static str,
    made_here: bool,
}

impl Bridge {
    fn ensure(name: &'static str) -> Self {
        if state(name).is_some() {
            return Self { name, made_here: false };
        }
        let output = Command::new("ip").args(["link", "add", name, "type", "bridge"]).output().expect("run ip");
        assert!(output.status.success(), "ip link add {name}: {}", String::from_utf8_lossy(&output.stderr));
        Self { name, made_here: true }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if self.made_here {
            let _ = Command::new("ip").args(["link", "del", self.name, "type", "bridge"]).status();
        }
    }
}

/// The link's line (index, flags, state, address) and its addresses, as `ip` shows them in the
/// machine's namespace; None if there is no such link.
fn state(name: &str) -> Option<String> {
    let link = Command::new("ip").args(["-o", "link", "show", "dev", name]).output().expect("run ip");
    if !link.status.success() {
        return None;
    }
    let addresses = Command::new("ip").args(["-o", "address", "show", "dev", name]).output().expect("run ip");
    Some(format!("{}{}", String::from_utf8_lossy(&link.stdout), String::from_utf8_lossy(&addresses.stdout)))
}

#[test]
fn private_runtimes_leave_the_machines_default_bridges_as_they_were() {
    let test = "private_runtimes_leave_the_machines_default_bridges_as_they_were";
    require_root!(test);
    chaos_tests::skip_if!(
        chaos_tests::skip::tier().is_some_and(|tier| tier.starts_with("vm-")),
        test,
        "the VM guests have no container runtime (busybox userland); the host tier starts them"
    );
    let bridges: Vec<Bridge> = BRIDGES.into_iter().map(Bridge::ensure).collect();
    let before: Vec<Option<String>> = BRIDGES.iter().map(|name| state(name)).collect();

    let rootfs = Rootfs::build().expect("the test rootfs (busybox-static, which `cargo xtask setup` installs)");
    for engine in [Engine::Docker, Engine::Podman] {
        let api = DockerApi::start(engine, &rootfs).unwrap_or_else(|why| panic!("{engine:?} could not start: {why}"));
        api.run_sleeper(&unique_name("bridges")).unwrap_or_else(|why| panic!("{engine:?} container: {why}"));
        drop(api);
    }
    let mut containerd = Containerd::start().unwrap_or_else(|why| panic!("containerd could not start: {why}"));
    let id = unique_name("bridges");
    containerd.run(&rootfs, &id, "c", &[]).unwrap_or_else(|why| panic!("containerd container: {why}"));
    drop(containerd);

    for (name, before) in BRIDGES.iter().zip(&before) {
        let after = state(name);
        eprintln!("measured: {name} before: {before:?}; after: {after:?}");
        assert!(after.is_some(), "{name} was deleted while the private runtimes ran");
        assert_eq!(&after, before, "{name} was changed while the private runtimes ran");
    }
    drop(bridges);
}
