//! Test hosts: network namespaces joined by a veth pair, removed on Drop.
//!
//! Everything is created with iproute2 (`ip`), in namespaces this test made; the root
//! namespace's interfaces are never touched.
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
};

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip (iproute2)");
    assert!(output.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
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

    /// The network namespace of process `pid` (a container's), named for `ip netns` and
    /// setns(2); Drop only removes the name, the namespace lives as long as its processes.
    #[must_use]
    pub fn of_process(pid: u32) -> Self {
        let name = crate::unique_name("chaos-t");
        ip(&["netns", "attach", &name, &pid.to_string()]);
        Self { name }
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

/// Two test hosts on one link: `a` (10.200.0.1, fd00:200::1) and `b`, which answers on two
/// addresses per family (10.200.0.2 and .3, fd00:200::2 and ::3) so tests can tell a filtered
/// peer from an unfiltered one. Subnets may repeat across tests because every pair lives in its
/// own namespaces.
pub struct TwoHosts {
    pub a: Netns,
    pub b: Netns,
}

impl TwoHosts {
    pub const A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    pub const B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    pub const B2: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 3);
    pub const A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    pub const B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2);
    pub const B6_2: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 3);

    #[must_use]
    pub fn new() -> Self {
        let (a, b) = (Netns::new(), Netns::new());
        ip(&["link", "add", "veth-a", "netns", a.name(), "type", "veth", "peer", "name", "veth-b", "netns", b.name()]);
        let addresses: [(&Netns, &str, &[String]); 2] = [
            (&a, "veth-a", &[format!("{}/24", Self::A), format!("{}/64", Self::A6)]),
            (
                &b,
                "veth-b",
                &[
                    format!("{}/24", Self::B),
                    format!("{}/24", Self::B2),
                    format!("{}/64", Self::B6),
                    format!("{}/64", Self::B6_2),
                ],
            ),
        ];
        for (ns, dev, list) in addresses {
            for address in list {
                // nodad: IPv6 addresses are usable at once instead of after duplicate detection.
                let mut args = vec!["-n", ns.name(), "addr", "add", address.as_str(), "dev", dev];
                if address.contains(':') {
                    args.push("nodad");
                }
                ip(&args);
            }
            ip(&["-n", ns.name(), "link", "set", dev, "up"]);
        }
        Self { a, b }
    }

    /// Turns off checksum offload on a's interface, so its stack computes UDP/TCP checksums in
    /// software before TC egress, and b verifies them (veth otherwise trusts partial checksums).
    pub fn checksum_in_software(&self) {
        let output = Command::new("ip")
            .args(["netns", "exec", self.a.name(), "ethtool", "-K", "veth-a", "tx", "off"])
            .output()
            .expect("run ethtool");
        assert!(output.status.success(), "ethtool -K veth-a tx off: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Default for TwoHosts {
    fn default() -> Self {
        Self::new()
    }
}
