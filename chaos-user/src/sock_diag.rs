//! Just enough sock_diag (NETLINK_SOCK_DIAG) to learn which cgroup each TCP and UDP socket of a
//! network namespace was created in: the kernel reports it as `INET_DIAG_CGROUP_ID` (5.7+).
//! A socket keeps that cgroup for life, and chaos's cgroup hooks see a socket's packets only
//! when it belongs to the target: this is how chaos tells users about sockets that escape it.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const INET_DIAG_CGROUP_ID: u16 = 21;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte socket id, then expires,
/// rqueue, wqueue, uid and inode (u32 each).
const INET_DIAG_MSG_LEN: usize = 72;
const INODE_OFFSET: usize = 68;
const NLMSG_HDR_LEN: usize = 16;

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
    let fd = open()?;
    let mut sockets = Vec::new();
    let mut unlisted = Vec::new();
    for (protocol, number) in [("tcp", libc::IPPROTO_TCP), ("udp", libc::IPPROTO_UDP)] {
        for family in [libc::AF_INET, libc::AF_INET6] {
            match dump(&fd, family as u8, number as u8, protocol, &mut sockets) {
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

fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends one `inet_diag_req_v2` dump request (every state) and collects its answers.
fn dump(fd: &OwnedFd, family: u8, protocol: u8, name: &'static str, out: &mut Vec<SocketCgroup>) -> io::Result<()> {
    // nlmsghdr (16) + inet_diag_req_v2 (family, protocol, ext, pad, states u32, 48-byte id).
    let mut request = [0u8; NLMSG_HDR_LEN + 56];
    let len = request.len() as u32;
    request[0..4].copy_from_slice(&len.to_ne_bytes());
    request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request[16] = family;
    request[17] = protocol;
    request[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // SAFETY: valid buffer and length; the kernel is the default destination of a netlink send.
    if unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: valid buffer and length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buf[..n as usize];
        while rest.len() >= NLMSG_HDR_LEN {
            let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            let msg_type = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
            if len < NLMSG_HDR_LEN || len > rest.len() {
                return Err(io::Error::other("malformed sock_diag reply"));
            }
            match msg_type {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(rest[16..20].try_into().expect("4 bytes"));
                    return if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-errno)) };
                }
                SOCK_DIAG_BY_FAMILY => out.extend(parse(&rest[NLMSG_HDR_LEN..len], name)),
                _ => {}
            }
            rest = &rest[align4(len).min(rest.len())..];
        }
    }
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

const fn align4(n: usize) -> usize {
    (n + 3) & !3
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
