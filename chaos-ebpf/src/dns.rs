//! DNS faults (`chaos dns ...`): cgroup sock_addr hooks on the target cgroup only. They parse no
//! packet: the target's connects and sends to port 53 (UDP and TCP, IPv4, IPv6 and IPv4-mapped)
//! go instead to chaos's responder on the loopback of the target's own network namespace, one
//! pair of responder sockets per resolver (a *slot*, claimed the first time the target addresses
//! that resolver); the responder answers what the fault matches and forwards the rest to that
//! resolver. Replies come from the slot's port, and the receive and getpeername hooks turn that
//! source back into the resolver's address, so the client sees its own resolver answer
//! (chaos-common `dns.rs` has the maps).
//!
//! Only sends and connects check the deadline: past it the target's new sockets go straight to
//! their resolver, while the reply rewrite keeps serving sockets redirected before (the responder
//! forwards everything once the fault has ended). When chaos dies its fd-owned links go with it.
use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_get_socket_cookie, bpf_ktime_get_ns, generated},
    macros::{cgroup_sock_addr, map},
    maps::{Array, HashMap},
    programs::SockAddrContext,
};
use chaos_common::{
    FaultConfig,
    dns::{CLIENTS as CLIENT_ENTRIES, Client, PORT_BE, PortKey, Resolver, ResponderPorts, SLOTS, family},
    flags,
};

use crate::gate::{self, fetch_increment};

#[map(name = "DNS_RESOLVERS")]
static RESOLVERS: Array<Resolver> = Array::with_max_entries(2 * SLOTS, 0);
#[map(name = "DNS_RESOLVER_SLOTS")]
static RESOLVER_SLOTS: HashMap<Resolver, u32> = HashMap::with_max_entries(2 * SLOTS, 0);
#[map(name = "DNS_NEXT_SLOT")]
static NEXT_SLOT: Array<u64> = Array::with_max_entries(2, 0);
#[map(name = "DNS_RESPONDERS")]
static RESPONDERS: Array<ResponderPorts> = Array::with_max_entries(2 * SLOTS, 0);
#[map(name = "DNS_RESPONDER_PORTS")]
static RESPONDER_PORTS: HashMap<PortKey, u32> = HashMap::with_max_entries(4 * SLOTS, 0);
/// Not preallocated: every fault loads this object, and only traced DNS faults write here.
#[map(name = "DNS_CLIENTS")]
static CLIENTS: HashMap<u64, Client> = HashMap::with_max_entries(CLIENT_ENTRIES, BPF_F_NO_PREALLOC);

/// A sock_addr program lets the call go on (with the address it may have rewritten).
const ALLOW: i32 = 1;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
/// 127.0.0.1 as `user_ip4` holds it (network byte order in memory).
const LOOPBACK_V4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// ::1, and the third word of an IPv4-mapped address (::ffff:a.b.c.d), as `user_ip6` holds them.
const LOOPBACK_V6: [u32; 4] = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
const MAPPED_PREFIX: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

#[cgroup_sock_addr(connect4)]
pub fn dns_connect4(ctx: SockAddrContext) -> i32 {
    redirect_v4(&ctx)
}

/// sendto/sendmsg with an address on an unconnected UDP socket.
#[cgroup_sock_addr(sendmsg4)]
pub fn dns_sendmsg4(ctx: SockAddrContext) -> i32 {
    redirect_v4(&ctx)
}

#[cgroup_sock_addr(connect6)]
pub fn dns_connect6(ctx: SockAddrContext) -> i32 {
    redirect_v6(&ctx)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn dns_sendmsg6(ctx: SockAddrContext) -> i32 {
    redirect_v6(&ctx)
}

/// The source address recvfrom/recvmsg report for a UDP datagram.
#[cgroup_sock_addr(recvmsg4)]
pub fn dns_recvmsg4(ctx: SockAddrContext) -> i32 {
    restore_v4(&ctx)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn dns_recvmsg6(ctx: SockAddrContext) -> i32 {
    restore_v6(&ctx)
}

/// The peer getpeername reports for a connected socket.
#[cgroup_sock_addr(getpeername4)]
pub fn dns_getpeername4(ctx: SockAddrContext) -> i32 {
    restore_v4(&ctx)
}

#[cgroup_sock_addr(getpeername6)]
pub fn dns_getpeername6(ctx: SockAddrContext) -> i32 {
    restore_v6(&ctx)
}

#[inline(always)]
fn redirect_v4(ctx: &SockAddrContext) -> i32 {
    let addr = ctx.sock_addr;
    // SAFETY: reading fields of the context the kernel passed.
    let (port, ip, protocol) = unsafe { ((*addr).user_port, (*addr).user_ip4, (*addr).protocol) };
    // The cheapest test first: the hook runs for every connect and send of the target.
    if port != PORT_BE {
        return ALLOW;
    }
    let Some(config) = gate::armed() else { return ALLOW };
    let mut address = [0u8; 16];
    address[..4].copy_from_slice(&ip.to_ne_bytes());
    let Some(responder) = responder_for(family::IPV4, address, protocol) else { return ALLOW };
    // SAFETY: connect4 and sendmsg4 may rewrite the destination (4-byte stores).
    unsafe {
        (*addr).user_ip4 = LOOPBACK_V4;
        (*addr).user_port = u32::from(responder);
    }
    remember_client(ctx, config);
    ALLOW
}

#[inline(always)]
fn redirect_v6(ctx: &SockAddrContext) -> i32 {
    let addr = ctx.sock_addr;
    // SAFETY: as above.
    let (port, words, protocol) = unsafe { ((*addr).user_port, (*addr).user_ip6, (*addr).protocol) };
    if port != PORT_BE {
        return ALLOW;
    }
    let Some(config) = gate::armed() else { return ALLOW };
    // An IPv4 resolver reached through an IPv6 socket (::ffff:a.b.c.d) takes an IPv4 slot, and
    // the mapped form of the IPv4 responder.
    let mapped = words[0] == 0 && words[1] == 0 && words[2] == MAPPED_PREFIX;
    let mut address = [0u8; 16];
    let (slot_family, new_words) = if mapped {
        address[..4].copy_from_slice(&words[3].to_ne_bytes());
        (family::IPV4, [0, 0, MAPPED_PREFIX, LOOPBACK_V4])
    } else {
        for (i, word) in words.iter().enumerate() {
            address[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        (family::IPV6, LOOPBACK_V6)
    };
    let Some(responder) = responder_for(slot_family, address, protocol) else { return ALLOW };
    // SAFETY: connect6 and sendmsg6 may rewrite the destination, word by word.
    unsafe {
        for (i, word) in new_words.iter().enumerate() {
            core::ptr::write_volatile(&raw mut (*addr).user_ip6[i], *word);
        }
        (*addr).user_port = u32::from(responder);
    }
    remember_client(ctx, config);
    ALLOW
}

/// The responder port (network byte order) for a resolver, claiming a slot for one not seen
/// before; `None` leaves the query alone (another protocol, every slot taken, no responder).
#[inline(always)]
fn responder_for(slot_family: u16, address: [u8; 16], protocol: u32) -> Option<u16> {
    if protocol != IPPROTO_UDP && protocol != IPPROTO_TCP {
        return None;
    }
    let key = Resolver { address, port_be: PORT_BE as u16, family: slot_family, claimed: 1 };
    // SAFETY: the value is copied out at once.
    let slot = match unsafe { RESOLVER_SLOTS.get(key) } {
        Some(&slot) => slot,
        None => claim(&key)?,
    };
    if slot >= SLOTS {
        return None;
    }
    let ports = RESPONDERS.get(u32::from(slot_family) * SLOTS + slot)?;
    let port = if protocol == IPPROTO_UDP { ports.udp_be } else { ports.tcp_be };
    (port != 0).then_some(port)
}

/// Takes the next free slot of the family for `key` (one atomic add), or the slot another CPU
/// gave the same resolver a moment before (its insert won; the slot taken here stays unused).
#[inline(always)]
fn claim(key: &Resolver) -> Option<u32> {
    let counter = NEXT_SLOT.get_ptr_mut(u32::from(key.family))?;
    let taken = fetch_increment(counter);
    if taken >= u64::from(SLOTS) {
        return None;
    }
    let slot = taken as u32;
    let entry = RESOLVERS.get_ptr_mut(u32::from(key.family) * SLOTS + slot)?;
    // SAFETY: a slot is written once, by the program that took it, before anyone is sent there.
    unsafe { *entry = *key };
    if RESOLVER_SLOTS.insert(key, slot, u64::from(BPF_NOEXIST)).is_err() {
        // SAFETY: copied out at once.
        return unsafe { RESOLVER_SLOTS.get(key) }.copied();
    }
    Some(slot)
}

/// For `--trace-injections`: the task that opened this socket, by the socket's cookie (the
/// responder finds the cookie of a query's socket with sock_diag).
#[inline(always)]
fn remember_client(ctx: &SockAddrContext, config: &FaultConfig) {
    if config.flags & flags::TRACE == 0 {
        return;
    }
    // SAFETY: helpers on the program's own context; plain calls otherwise.
    unsafe {
        let cookie = bpf_get_socket_cookie(ctx.sock_addr.cast());
        let pid_tgid = bpf_get_current_pid_tgid();
        let mut client =
            Client { at_ns: bpf_ktime_get_ns(), tgid: (pid_tgid >> 32) as u32, tid: pid_tgid as u32, comm: [0; 16] };
        generated::bpf_get_current_comm((&raw mut client.comm).cast(), 16);
        let _ = CLIENTS.insert(cookie, client, 0);
    }
}

#[inline(always)]
fn restore_v4(ctx: &SockAddrContext) -> i32 {
    let addr = ctx.sock_addr;
    // SAFETY: reading fields of the context the kernel passed.
    let (ip, port, protocol) = unsafe { ((*addr).user_ip4, (*addr).user_port, (*addr).protocol) };
    if ip != LOOPBACK_V4 {
        return ALLOW;
    }
    let Some(resolver) = resolver_behind(port, family::IPV4, protocol) else { return ALLOW };
    let [a, b, c, d, ..] = resolver.address;
    // SAFETY: recvmsg4 and getpeername4 may rewrite the address they report.
    unsafe {
        (*addr).user_ip4 = u32::from_ne_bytes([a, b, c, d]);
        (*addr).user_port = u32::from(resolver.port_be);
    }
    ALLOW
}

#[inline(always)]
fn restore_v6(ctx: &SockAddrContext) -> i32 {
    let addr = ctx.sock_addr;
    // SAFETY: as above.
    let (words, port, protocol) = unsafe { ((*addr).user_ip6, (*addr).user_port, (*addr).protocol) };
    let mapped = words[0] == 0 && words[1] == 0 && words[2] == MAPPED_PREFIX && words[3] == LOOPBACK_V4;
    if words != LOOPBACK_V6 && !mapped {
        return ALLOW;
    }
    let slot_family = if mapped { family::IPV4 } else { family::IPV6 };
    let Some(resolver) = resolver_behind(port, slot_family, protocol) else { return ALLOW };
    let a = &resolver.address;
    let word = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    let new_words = if mapped { [0, 0, MAPPED_PREFIX, word(0)] } else { [word(0), word(4), word(8), word(12)] };
    // SAFETY: recvmsg6 and getpeername6 may rewrite the address they report, word by word.
    unsafe {
        for (i, word) in new_words.iter().enumerate() {
            core::ptr::write_volatile(&raw mut (*addr).user_ip6[i], *word);
        }
        (*addr).user_port = u32::from(resolver.port_be);
    }
    ALLOW
}

/// The resolver a responder port stands for, if `port` is one of this fault's.
#[inline(always)]
fn resolver_behind(port: u32, slot_family: u16, protocol: u32) -> Option<&'static Resolver> {
    let key = PortKey { port_be: port as u16, family: slot_family as u8, protocol: protocol as u8 };
    // SAFETY: copied out at once.
    let slot = *unsafe { RESPONDER_PORTS.get(key) }?;
    let resolver = RESOLVERS.get(u32::from(slot_family) * SLOTS + slot)?;
    (resolver.claimed != 0).then_some(resolver)
}
