//! Just enough sock_diag (NETLINK_SOCK_DIAG) to learn which cgroup each TCP and UDP socket of a
//! network namespace was created in: the kernel reports it as `INET_DIAG_CGROUP_ID` (5.7+).
//! A socket keeps that cgroup for life, and chaos's cgroup hooks see a socket's packets only
//! when it belongs to the target: this is how chaos tells users about sockets that escape it.
use std::io;

use crate::os::netlink::{NLM_F_DUMP, NetlinkSocket, align4};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_ACK: u16 = 0x4;
const INET_DIAG_CGROUP_ID: u16 = 21;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte socket id, then expires,
/// rqueue, wqueue, uid and inode (u32 each).
const INET_DIAG_MSG_LEN: usize = 72;
const INODE_OFFSET: usize = 68;

/// One socket: its inode number (`socket:[N]` in /proc/PID/fd) and the cgroup it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketCgroup {
    pub inode: u64,
    pub cgroup_id: u64,
    pub protocol: &'static str,
}

/// Every TCP and UDP socket (IPv4 and IPv6) of the calling thread's network namespace, with its
/// cgroup id, and the protocols the kernel cannot list (ENOENT: inet_diag, tcp_diag or udp_diag
/// not built or not loaded). Sockets the kernel reports without a cgroup id (before 5.7) are
/// left out.
pub fn inet_sockets() -> io::Result<(Vec<SocketCgroup>, Vec<&'static str>)> {
    let mut socket = NetlinkSocket::open(libc::NETLINK_SOCK_DIAG)?;
    let mut sockets = Vec::new();
    let mut unlisted = Vec::new();
    for (protocol, number) in [("tcp", libc::IPPROTO_TCP), ("udp", libc::IPPROTO_UDP)] {
        for family in [libc::AF_INET, libc::AF_INET6] {
            match dump(&mut socket, family as u8, number as u8, protocol, &mut sockets) {
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    if !unlisted.contains(&protocol) {
                        unlisted.push(protocol);
                    }
                }
                other => other?,
            }
        }
    }
    Ok((sockets, unlisted))
}

/// The cookie of the TCP or UDP socket whose own address is `local` and whose peer is `remote`
/// (both of one family), in the calling thread's network namespace: the number
/// `bpf_get_socket_cookie` gives programs for that socket. `None` when no such socket exists.
/// A UDP socket need not be connected: the kernel finds the one a datagram from `remote` to
/// `local` would reach.
pub fn socket_cookie(
    socket: &mut NetlinkSocket,
    protocol: u8,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> io::Result<Option<u64>> {
    let family = if local.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // udp_diag looks a socket up as a datagram's receiver: its `src` is the peer (the kernel's
    // own comment: "src and dst are swapped for historical reasons"); tcp_diag's is the socket.
    let (src, dst) = if i32::from(protocol) == libc::IPPROTO_UDP { (remote, local) } else { (local, remote) };
    // inet_diag_req_v2: family, protocol, ext, pad, states; the socket id: sport, dport (big
    // endian), src and dst (16 bytes each), interface, cookie (none: INET_DIAG_NOCOOKIE).
    let mut request = [0u8; 56];
    request[0] = family as u8;
    request[1] = protocol;
    request[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    request[8..10].copy_from_slice(&src.port().to_be_bytes());
    request[10..12].copy_from_slice(&dst.port().to_be_bytes());
    request[12..28].copy_from_slice(&address_bytes(src.ip()));
    request[28..44].copy_from_slice(&address_bytes(dst.ip()));
    request[48..56].copy_from_slice(&[0xff; 8]);
    // One reply, not a dump: the ack ends it (an error, ENOENT, says there is no such socket).
    socket.send(SOCK_DIAG_BY_FAMILY, NLM_F_ACK, &request, &[])?;
    let mut cookie = None;
    let answer = socket.read_messages(|msg_type, body| {
        // inet_diag_msg: the socket id from byte 4, its own port first, the cookie at 44..52.
        if msg_type == SOCK_DIAG_BY_FAMILY && body.len() >= 52 && body[4..6] == local.port().to_be_bytes() {
            let low = u32::from_ne_bytes(body[44..48].try_into().expect("4 bytes"));
            let high = u32::from_ne_bytes(body[48..52].try_into().expect("4 bytes"));
            cookie = Some(u64::from(high) << 32 | u64::from(low));
        }
    });
    match answer {
        Ok(()) => Ok(cookie),
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(err) => Err(err),
    }
}

/// An address as sock_diag carries it: IPv4 in the first four bytes.
fn address_bytes(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut bytes = [0; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            bytes
        }
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// Sends one `inet_diag_req_v2` dump request (every state) and collects its answers.
fn dump(
    socket: &mut NetlinkSocket,
    family: u8,
    protocol: u8,
    name: &'static str,
    out: &mut Vec<SocketCgroup>,
) -> io::Result<()> {
    // inet_diag_req_v2: family, protocol, ext, pad, states (u32), the 48-byte socket id.
    let mut request = [0u8; 56];
    request[0] = family;
    request[1] = protocol;
    request[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    socket.send(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &request, &[])?;
    socket.read_messages(|msg_type, body| {
        if msg_type == SOCK_DIAG_BY_FAMILY {
            out.extend(parse(body, name));
        }
    })
}

/// One `inet_diag_msg` and its attributes: the socket's inode and `INET_DIAG_CGROUP_ID`.
fn parse(body: &[u8], protocol: &'static str) -> Option<SocketCgroup> {
    let inode = u64::from(u32::from_ne_bytes(body.get(INODE_OFFSET..INODE_OFFSET + 4)?.try_into().ok()?));
    let mut attrs = body.get(INET_DIAG_MSG_LEN..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes(attrs[0..2].try_into().ok()?));
        let kind = u16::from_ne_bytes(attrs[2..4].try_into().ok()?) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == INET_DIAG_CGROUP_ID && len >= 12 {
            let cgroup_id = u64::from_ne_bytes(attrs[4..12].try_into().ok()?);
            return Some(SocketCgroup { inode, cgroup_id, protocol });
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_gives_its_inode_and_cgroup_id() {
        let mut body = vec![0u8; INET_DIAG_MSG_LEN];
        body[INODE_OFFSET..INODE_OFFSET + 4].copy_from_slice(&4242u32.to_ne_bytes());
        // An attribute chaos does not read, then the cgroup id.
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&5u16.to_ne_bytes());
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&12u16.to_ne_bytes());
        body.extend_from_slice(&INET_DIAG_CGROUP_ID.to_ne_bytes());
        body.extend_from_slice(&77u64.to_ne_bytes());
        assert_eq!(parse(&body, "udp"), Some(SocketCgroup { inode: 4242, cgroup_id: 77, protocol: "udp" }));
        assert_eq!(parse(&body[..INET_DIAG_MSG_LEN], "udp"), None, "no cgroup id: nothing to compare");
    }
}
