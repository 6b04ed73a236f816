//! What the DNS family's programs and chaos's responder agree on (`chaos dns ...`).
//!
//! The programs (chaos-ebpf `dns.rs`, cgroup sock_addr hooks on the target cgroup) send the
//! target's port-53 traffic to a responder that chaos runs in the target's network namespace,
//! one pair of sockets (UDP, TCP) per resolver the target talks to: a resolver gets a *slot* the
//! first time the target addresses it, and the slot's responder sockets forward to it what the
//! fault leaves alone. Replies come back from the slot's port; the programs turn that source back
//! into the resolver's address, so the client sees its own resolver answer.
//!
//! Addresses and ports are kept in network byte order, as the hooks read them.

/// Map names.
pub mod maps {
    /// Array of [`super::Resolver`], [`super::SLOTS`] per family (IPv4 first): the resolver each
    /// slot stands for, written by the program that claimed the slot.
    pub const RESOLVERS: &str = "DNS_RESOLVERS";
    /// Hash map [`super::Resolver`] -> slot (u32 within its family): the slot of a resolver the
    /// target addressed before.
    pub const RESOLVER_SLOTS: &str = "DNS_RESOLVER_SLOTS";
    /// Array of u64, one per family: slots claimed so far. Past [`super::SLOTS`] it keeps
    /// counting the sockets to further resolvers, which were left alone.
    pub const NEXT_SLOT: &str = "DNS_NEXT_SLOT";
    /// Array of [`super::ResponderPorts`], like `RESOLVERS`: the responder's ports for each slot,
    /// written by userspace before the programs attach (0: no responder, leave the query alone).
    pub const RESPONDERS: &str = "DNS_RESPONDERS";
    /// Hash map [`super::PortKey`] -> slot: which slot a responder port serves, for the hooks
    /// that turn a reply's source back into the resolver's address.
    pub const RESPONDER_PORTS: &str = "DNS_RESPONDER_PORTS";
    /// Hash map socket cookie -> [`super::Client`]: the process that opened each redirected
    /// socket, for `--trace-injections` (only written when the fault is traced).
    pub const CLIENTS: &str = "DNS_CLIENTS";
}

/// Resolvers per address family that one fault redirects (the first ones the target uses).
pub const SLOTS: u32 = 8;

/// Entries of [`maps::CLIENTS`]: the responder removes each it reads and those older than a
/// few seconds, so this bounds the sockets opened between two of its sweeps.
pub const CLIENTS: u32 = 8192;

/// The DNS port, in network byte order as `bpf_sock_addr.user_port` holds it (a u32 there).
pub const PORT_BE: u32 = 53u16.to_be() as u32;

/// [`Resolver::family`] and the index of its slot table (`family * SLOTS + slot`).
pub mod family {
    pub const IPV4: u16 = 0;
    pub const IPV6: u16 = 1;
}

/// A resolver the target addressed: its address (IPv4 in the first four bytes) and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resolver {
    pub address: [u8; 16],
    pub port_be: u16,
    pub family: u16,
    /// 1 once the slot is claimed (an all-zero entry is a free slot).
    pub claimed: u32,
}

/// The responder's sockets for one slot (ports in network byte order; 0: none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponderPorts {
    pub udp_be: u16,
    pub tcp_be: u16,
}

/// A responder port as the hooks see a reply's source: the port, its family and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortKey {
    pub port_be: u16,
    pub family: u8,
    /// `IPPROTO_UDP` or `IPPROTO_TCP`.
    pub protocol: u8,
}

/// The task that opened a redirected socket, as the hook saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// CLOCK_MONOTONIC ns of the redirect (old entries are swept).
    pub at_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub comm: [u8; 16],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data with explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::Resolver {}
    unsafe impl aya::Pod for super::ResponderPorts {}
    unsafe impl aya::Pod for super::PortKey {}
    unsafe impl aya::Pod for super::Client {}
}
