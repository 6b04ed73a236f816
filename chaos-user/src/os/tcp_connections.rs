//! The TCP connections of a network namespace as sock_diag reports them (addresses, state,
//! socket cookie, the cgroup each socket was created in), and their destruction with
//! `SOCK_DESTROY`: the kernel aborts the socket as `ss -K` does (`tcp_abort`): its owner's next
//! call fails with ECONNABORTED and the peer gets an RST. Everything here works in the network
//! namespace of the calling thread (run it inside `Netns::run`).
//!
//! This is chaos's way of resetting connections on every kernel that has
//! CONFIG_INET_DIAG_DESTROY (Debian's 6.1 and 6.12 kernels do). The newer `bpf_sock_destroy`
//! kfunc (6.5+) does the same from a socket iterator program; aya 0.14 cannot load a program
//! that calls a kfunc (docs/sever.md says why), and this path costs a few microseconds a socket.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::os::netlink::{NLM_F_DUMP, NetlinkSocket, align4};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const INET_DIAG_CGROUP_ID: u16 = 21;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte socket id, then expires,
/// rqueue, wqueue, uid and inode (u32 each).
const INET_DIAG_MSG_LEN: usize = 72;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states (u32), the 48-byte socket id.
const INET_DIAG_REQ_LEN: usize = 56;

/// TCP states (include/net/tcp_states.h), as bits of a state mask.
pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;

    /// Connections past their handshake and not yet closed: established, or closing with
    /// their sockets still there. Never a listening socket, a handshake in progress or a
    /// TIME_WAIT remnant.
    pub const CONNECTED: u32 =
        1 << ESTABLISHED | 1 << FIN_WAIT1 | 1 << FIN_WAIT2 | 1 << CLOSE_WAIT | 1 << LAST_ACK | 1 << CLOSING;

    /// The kernel's name of a state, as `ss` prints it.
    #[must_use]
    pub const fn name(state: u8) -> &'static str {
        match state {
            ESTABLISHED => "ESTAB",
            SYN_SENT => "SYN-SENT",
            SYN_RECV => "SYN-RECV",
            FIN_WAIT1 => "FIN-WAIT-1",
            FIN_WAIT2 => "FIN-WAIT-2",
            TIME_WAIT => "TIME-WAIT",
            CLOSE => "CLOSE",
            CLOSE_WAIT => "CLOSE-WAIT",
            LAST_ACK => "LAST-ACK",
            LISTEN => "LISTEN",
            CLOSING => "CLOSING",
            _ => "UNKNOWN",
        }
    }
}

/// One TCP socket as sock_diag reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConnection {
    /// AF_INET or AF_INET6 (an IPv6 socket talking to an IPv4 peer has v4-mapped addresses).
    pub family: u8,
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The interface the socket is bound to (0: none), part of its identity for SOCK_DESTROY.
    pub interface: u32,
    /// The socket's cookie: SOCK_DESTROY refuses another socket that took over the addresses.
    pub cookie: u64,
    /// The cgroup (v2 id) the socket was created in; None before Linux 5.7.
    pub cgroup_id: Option<u64>,
    /// The socket's inode (`socket:[N]` in /proc/PID/fd); 0 for a socket no file holds.
    pub inode: u64,
}

impl TcpConnection {
    /// The peer's address, with a v4-mapped IPv6 address shown (and filtered) as IPv4.
    #[must_use]
    pub fn remote_ip(&self) -> IpAddr {
        unmapped(self.remote.ip())
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; any other address unchanged.
#[must_use]
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Why connections could not be listed or destroyed here.
#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    #[error(
        "this kernel cannot list TCP sockets through sock_diag (tcp_diag: CONFIG_INET_DIAG and CONFIG_INET_TCP_DIAG, \
         or the tcp_diag module is not loaded: `modprobe tcp_diag`)"
    )]
    NoTcpDiag,
    #[error(
        "this kernel cannot destroy sockets through sock_diag (SOCK_DESTROY returned EOPNOTSUPP: built without \
         CONFIG_INET_DIAG_DESTROY)"
    )]
    NoDestroy,
    #[error("sock_diag: {0}")]
    Io(#[from] io::Error),
}

/// Every TCP socket (IPv4 and IPv6) of the calling thread's network namespace whose state is in
/// `states` (a mask of `1 << state`).
pub fn list(states: u32) -> Result<Vec<TcpConnection>, SockDiagError> {
    let mut socket = NetlinkSocket::open(libc::NETLINK_SOCK_DIAG)?;
    let mut found = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let mut request = [0u8; INET_DIAG_REQ_LEN];
        request[0] = family;
        request[1] = libc::IPPROTO_TCP as u8;
        request[4..8].copy_from_slice(&states.to_ne_bytes());
        socket.send(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &request, &[])?;
        let answer = socket.read_messages(|msg_type, body| {
            if msg_type == SOCK_DIAG_BY_FAMILY {
                found.extend(parse(body));
            }
        });
        match answer {
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Err(SockDiagError::NoTcpDiag),
            other => other?,
        }
    }
    Ok(found)
}

/// Destroys `connections` (SOCK_DESTROY, by address and cookie), returning each one's result in
/// order: ENOENT for a connection gone since it was listed, ESTALE for one whose addresses
/// another socket has taken since. Errors that stop everything (no SOCK_DESTROY in this
/// kernel) come as the outer error.
pub fn destroy(connections: &[TcpConnection]) -> Result<Vec<io::Result<()>>, SockDiagError> {
    if connections.is_empty() {
        return Ok(Vec::new());
    }
    let mut socket = NetlinkSocket::open(libc::NETLINK_SOCK_DIAG)?;
    let requests: Vec<Vec<u8>> = connections.iter().map(destroy_request).collect();
    let results = socket.request_each(SOCK_DESTROY, &requests)?;
    if results.iter().any(|r| r.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EOPNOTSUPP))) {
        return Err(SockDiagError::NoDestroy);
    }
    Ok(results)
}

/// The `inet_diag_req_v2` that names exactly this socket.
fn destroy_request(connection: &TcpConnection) -> Vec<u8> {
    let mut request = vec![0u8; INET_DIAG_REQ_LEN];
    request[0] = connection.family;
    request[1] = libc::IPPROTO_TCP as u8;
    request[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let id = &mut request[8..];
    id[0..2].copy_from_slice(&connection.local.port().to_be_bytes());
    id[2..4].copy_from_slice(&connection.remote.port().to_be_bytes());
    put_address(&mut id[4..20], connection.local.ip());
    put_address(&mut id[20..36], connection.remote.ip());
    id[36..40].copy_from_slice(&connection.interface.to_ne_bytes());
    id[40..44].copy_from_slice(&(connection.cookie as u32).to_ne_bytes());
    id[44..48].copy_from_slice(&((connection.cookie >> 32) as u32).to_ne_bytes());
    request
}

fn put_address(out: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.copy_from_slice(&v6.octets()),
    }
}

/// One `inet_diag_msg` and its `INET_DIAG_CGROUP_ID` attribute.
fn parse(body: &[u8]) -> Option<TcpConnection> {
    let header = body.get(..INET_DIAG_MSG_LEN)?;
    let (family, state) = (header[0], header[1]);
    let id = &header[4..52];
    let address = |bytes: &[u8]| -> Option<IpAddr> {
        Some(if i32::from(family) == libc::AF_INET {
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?))
        } else {
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?))
        })
    };
    let port = |at: usize| u16::from_be_bytes([id[at], id[at + 1]]);
    let word = |bytes: &[u8], at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let mut connection = TcpConnection {
        family,
        state,
        local: SocketAddr::new(address(&id[4..20])?, port(0)),
        remote: SocketAddr::new(address(&id[20..36])?, port(2)),
        interface: word(id, 36),
        cookie: u64::from(word(id, 40)) | u64::from(word(id, 44)) << 32,
        cgroup_id: None,
        inode: u64::from(word(header, 68)),
    };
    let mut attrs = &body[INET_DIAG_MSG_LEN..];
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == INET_DIAG_CGROUP_ID && len >= 12 {
            connection.cgroup_id = Some(u64::from_ne_bytes(attrs[4..12].try_into().ok()?));
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Some(connection)
}

/// Asks the kernel whether it can destroy a TCP connection through sock_diag: in a private,
/// empty network namespace, a loopback connection is made, found in a dump and destroyed, and
/// its client end must then report ECONNABORTED. Changes nothing the machine can see.
pub fn probe_destroy() -> Result<String, String> {
    let outcome = crate::os::netlink::in_throwaway_netns(|| -> Result<(), String> {
        loopback_up().map_err(|e| format!("bringing lo up in a private network namespace: {e}"))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let client = std::net::TcpStream::connect(listener.local_addr().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let local = client.local_addr().map_err(|e| e.to_string())?;
        let connections = list(1 << state::ESTABLISHED).map_err(|e| e.to_string())?;
        let mine: Vec<TcpConnection> = connections.into_iter().filter(|c| c.local == local).collect();
        if mine.is_empty() {
            return Err("the sock_diag dump did not list a fresh loopback connection".into());
        }
        destroy(&mine).map_err(|e| e.to_string())?.into_iter().try_for_each(|r| r.map_err(|e| e.to_string()))?;
        match client.take_error() {
            Ok(Some(err)) if err.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
            other => Err(format!("SOCK_DESTROY was accepted but the connection was not aborted ({other:?})")),
        }
    });
    match outcome {
        Ok(Ok(())) => Ok("sock_diag SOCK_DESTROY aborts TCP connections (tried in a private network namespace)".into()),
        Ok(Err(reason)) => Err(reason),
        Err(err) => Err(format!("cannot probe SOCK_DESTROY in a private network namespace: {err}")),
    }
}

/// `ip link set lo up` in the calling thread's namespace (a new namespace's lo is down).
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; "lo" and its terminator fit the name.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS on a valid ifreq; writing the union member the kernel reads.
    let result = unsafe {
        if libc::ioctl(socket, libc::SIOCGIFFLAGS, &raw mut request) == 0 {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(socket, libc::SIOCSIFFLAGS, &raw mut request)
        } else {
            -1
        }
    };
    let error = io::Error::last_os_error();
    // SAFETY: closing our own socket.
    unsafe { libc::close(socket) };
    if result == 0 { Ok(()) } else { Err(error) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(family: u8) -> Vec<u8> {
        let mut body = vec![0u8; INET_DIAG_MSG_LEN];
        body[0] = family;
        body[1] = state::ESTABLISHED;
        body[4..6].copy_from_slice(&40_000u16.to_be_bytes());
        body[6..8].copy_from_slice(&80u16.to_be_bytes());
        if i32::from(family) == libc::AF_INET {
            body[8..12].copy_from_slice(&[10, 0, 0, 1]);
            body[24..28].copy_from_slice(&[10, 0, 0, 2]);
        } else {
            body[8..24].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
            body[24..40].copy_from_slice(&"::ffff:10.0.0.2".parse::<Ipv6Addr>().unwrap().octets());
        }
        body[44..48].copy_from_slice(&0xdead_beefu32.to_ne_bytes());
        body[48..52].copy_from_slice(&7u32.to_ne_bytes());
        body[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        body.extend_from_slice(&12u16.to_ne_bytes());
        body.extend_from_slice(&INET_DIAG_CGROUP_ID.to_ne_bytes());
        body.extend_from_slice(&77u64.to_ne_bytes());
        body
    }

    #[test]
    fn a_dump_message_gives_addresses_cookie_cgroup_and_inode() {
        let v4 = parse(&message(libc::AF_INET as u8)).expect("parses");
        assert_eq!(v4.local, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(v4.remote, "10.0.0.2:80".parse().unwrap());
        assert_eq!(v4.cookie, 7 << 32 | 0xdead_beef);
        assert_eq!((v4.cgroup_id, v4.inode, v4.state), (Some(77), 4242, state::ESTABLISHED));
        let v6 = parse(&message(libc::AF_INET6 as u8)).expect("parses");
        assert_eq!(v6.local.ip(), "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6.remote_ip(), "10.0.0.2".parse::<IpAddr>().unwrap(), "a v4-mapped peer reads as IPv4");
    }

    #[test]
    fn a_destroy_request_names_the_socket_the_dump_described() {
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let body = message(family);
            let connection = parse(&body).unwrap();
            let request = destroy_request(&connection);
            assert_eq!(request[0], family);
            assert_eq!(request[1], libc::IPPROTO_TCP as u8);
            // The socket id (ports, addresses, interface, cookie) is the dump's, byte for byte.
            assert_eq!(&request[8..56], &body[4..52]);
        }
    }

    #[test]
    fn the_connected_states_leave_listeners_and_handshakes_out() {
        for out in [state::LISTEN, state::SYN_SENT, state::SYN_RECV, state::TIME_WAIT, state::CLOSE] {
            assert_eq!(state::CONNECTED & 1 << out, 0, "{}", state::name(out));
        }
        assert_ne!(state::CONNECTED & 1 << state::ESTABLISHED, 0);
    }
}
