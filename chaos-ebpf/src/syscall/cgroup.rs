//! Syscall errors through cgroup socket hooks: these need no LSM and work on every kernel chaos
//! supports, for the socket calls they cover. Attached to the target cgroup, so other cgroups
//! never run them. A hook fails the call by returning 0 after `bpf_set_retval(-errno)` (5.18+;
//! without it the kernel reports EPERM), and allows it by returning 1.
use aya_ebpf::{
    helpers::bpf_set_retval,
    macros::{cgroup_sock, cgroup_sock_addr, cgroup_sockopt},
    programs::{SockAddrContext, SockContext, SockoptContext},
};
use chaos_common::{Direction, site};

use crate::{gate, net, packet::Packet, trace};

const ALLOW: i32 = 1;
const REJECT: i32 = 0;

/// The decision for one call of the target at `site`; `peer` is given when the hook knows the
/// address.
#[inline(always)]
fn verdict(site: u32, peer: Option<&Packet>) -> i32 {
    let Some(fault) = gate::live(Direction::Egress) else { return ALLOW };
    if fault.config.net_filters != 0 {
        match peer {
            Some(peer) if net::filter::matches(fault.config, peer) => {}
            _ => return ALLOW,
        }
    }
    fault.matched();
    if !fault.fires() {
        return ALLOW;
    }
    // SAFETY: helper taking a plain integer.
    unsafe { bpf_set_retval(-(fault.config.errno as i32)) };
    trace::call(fault.config, &trace::Call::failed(site, fault.config.errno), peer);
    REJECT
}

/// The address a sock_addr hook is about (network byte order in the context).
#[inline(always)]
fn peer_v4(ctx: &SockAddrContext) -> Packet {
    // SAFETY: reading fields of the context the kernel passed.
    let (address, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    let mut peer = Packet { ipv6: false, protocol: 0, remote: [0; 16], l4: Some(0), remote_port: 0, local_port: 0 };
    peer.remote[..4].copy_from_slice(&address.to_ne_bytes());
    peer.remote_port = u16::from_be(port as u16);
    peer
}

#[inline(always)]
fn peer_v6(ctx: &SockAddrContext) -> Packet {
    // SAFETY: as above.
    let (words, port) = unsafe { ((*ctx.sock_addr).user_ip6, (*ctx.sock_addr).user_port) };
    let mut peer = Packet { ipv6: true, protocol: 0, remote: [0; 16], l4: Some(0), remote_port: 0, local_port: 0 };
    for (i, word) in words.iter().enumerate() {
        peer.remote[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    peer.remote_port = u16::from_be(port as u16);
    peer
}

#[cgroup_sock_addr(connect4)]
pub fn sys_connect4(ctx: SockAddrContext) -> i32 {
    verdict(site::CONNECT, Some(&peer_v4(&ctx)))
}

#[cgroup_sock_addr(connect6)]
pub fn sys_connect6(ctx: SockAddrContext) -> i32 {
    verdict(site::CONNECT, Some(&peer_v6(&ctx)))
}

/// sendto/sendmsg with an address on an unconnected UDP socket.
#[cgroup_sock_addr(sendmsg4)]
pub fn sys_sendmsg4(ctx: SockAddrContext) -> i32 {
    verdict(site::SENDMSG, Some(&peer_v4(&ctx)))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sys_sendmsg6(ctx: SockAddrContext) -> i32 {
    verdict(site::SENDMSG, Some(&peer_v6(&ctx)))
}

#[cgroup_sock_addr(bind4)]
pub fn sys_bind4(_ctx: SockAddrContext) -> i32 {
    verdict(site::BIND, None)
}

#[cgroup_sock_addr(bind6)]
pub fn sys_bind6(_ctx: SockAddrContext) -> i32 {
    verdict(site::BIND, None)
}

/// socket() of IPv4/IPv6 sockets.
#[cgroup_sock(sock_create)]
pub fn sys_sock_create(_ctx: SockContext) -> i32 {
    verdict(site::SOCKET, None)
}

#[cgroup_sockopt(setsockopt)]
pub fn sys_setsockopt(_ctx: SockoptContext) -> i32 {
    verdict(site::SETSOCKOPT, None)
}

#[cgroup_sockopt(getsockopt)]
pub fn sys_getsockopt(_ctx: SockoptContext) -> i32 {
    verdict(site::GETSOCKOPT, None)
}
