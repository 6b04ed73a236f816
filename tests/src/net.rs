//! Test hosts: network namespaces joined by a veth pair, removed on Drop.
//!
//! Everything is created with iproute2 (`ip`), in namespaces this test made; the root
//! namespace's interfaces are never touched.
use std::{net::Ipv4Addr, process::Command};

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// A named network namespace (`ip netns add`), deleted on Drop with its interfaces.
pub struct Netns {
    name: String,
}

impl Netns {
    #[must_use]
    pub fn new() -> Self {
        let name = crate::unique_name("chaos-t");
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file, for setns(2).
    #[must_use]
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Two test hosts on one link: `a` (10.200.0.1/24) and `b` (10.200.0.2/24). Subnets may repeat
/// across tests because every pair lives in its own namespaces.
pub struct TwoHosts {
    pub a: Netns,
    pub b: Netns,
}

impl TwoHosts {
    pub const A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    pub const B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

    #[must_use]
    pub fn new() -> Self {
        let (a, b) = (Netns::new(), Netns::new());
        ip(&["link", "add", "veth-a", "netns", a.name(), "type", "veth", "peer", "name", "veth-b", "netns", b.name()]);
        for (ns, dev, addr) in [(&a, "veth-a", Self::A), (&b, "veth-b", Self::B)] {
            ip(&["-n", ns.name(), "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns.name(), "link", "set", dev, "up"]);
        }
        Self { a, b }
    }
}

impl Default for TwoHosts {
    fn default() -> Self {
        Self::new()
    }
}
