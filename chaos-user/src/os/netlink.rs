//! Netlink written once: a socket that sends numbered requests and reads their replies, and on
//! it just enough rtnetlink to manage qdiscs (sock_diag.rs uses the same socket).
//!
//! aya manages the clsact qdisc for TC programs itself; this exists for what aya does not do:
//! probing which qdisc kinds the kernel has (fq, netem), and installing fq for
//! earliest-departure-time delay.
use std::{
    io, mem,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const NLM_F_REPLACE: u16 = 0x100;
const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
pub const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
/// `TC_H_ROOT`: the device's root qdisc.
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// `TC_H_CLSACT` (== `TC_H_INGRESS`): the clsact pseudo-qdisc's parent.
pub const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
/// The handle clsact always has (`ffff:`).
pub const CLSACT_HANDLE: u32 = 0xFFFF_0000;
/// Parents of clsact's two hooks (`ffff:fff2` ingress, `ffff:fff3` egress).
pub const CLSACT_INGRESS: u32 = 0xFFFF_FFF2;
pub const CLSACT_EGRESS: u32 = 0xFFFF_FFF3;

/// A netlink socket of one protocol (`NETLINK_ROUTE`, `NETLINK_SOCK_DIAG`) in the network
/// namespace of the calling thread.
pub struct NetlinkSocket {
    fd: OwnedFd,
    seq: u32,
}

/// A NETLINK_ROUTE socket in the network namespace of the calling thread.
pub struct RouteSocket {
    socket: NetlinkSocket,
}

impl RouteSocket {
    pub fn open() -> io::Result<Self> {
        Ok(Self { socket: NetlinkSocket::open(libc::NETLINK_ROUTE)? })
    }

    /// Creates qdisc `kind` at `parent` of interface `ifindex` (fails with EEXIST if one is
    /// there), with `options` as its TCA_OPTIONS payload when given. ENOENT means the kernel has
    /// no qdisc of that kind (not built, module missing).
    pub fn add_qdisc(
        &mut self,
        ifindex: i32,
        parent: u32,
        handle: u32,
        kind: &str,
        options: Option<&[u8]>,
    ) -> io::Result<()> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, TCA_KIND, kind.as_bytes(), true);
        if let Some(options) = options {
            push_attr(&mut attrs, TCA_OPTIONS, options, false);
        }
        let tcmsg = TcMsg { family: libc::AF_UNSPEC as u8, pad1: 0, pad2: 0, ifindex, handle, parent, info: 0 };
        self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, as_bytes(&tcmsg), &attrs)
    }

    /// Replaces the root qdisc of `ifindex` with `kind` (created if there is none), with
    /// `options` as its TCA_OPTIONS payload.
    pub fn replace_root_qdisc(&mut self, ifindex: i32, kind: &str, options: Option<&[u8]>) -> io::Result<()> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, TCA_KIND, kind.as_bytes(), true);
        if let Some(options) = options {
            push_attr(&mut attrs, TCA_OPTIONS, options, false);
        }
        let tcmsg =
            TcMsg { family: libc::AF_UNSPEC as u8, pad1: 0, pad2: 0, ifindex, handle: 0, parent: TC_H_ROOT, info: 0 };
        self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, as_bytes(&tcmsg), &attrs)
    }

    /// The root qdisc of `ifindex`: its kind, handle and raw options, enough to put it back.
    pub fn root_qdisc(&mut self, ifindex: i32) -> io::Result<Option<Qdisc>> {
        let tcmsg = TcMsg { family: libc::AF_UNSPEC as u8, pad1: 0, pad2: 0, ifindex, handle: 0, parent: 0, info: 0 };
        self.socket.send(RTM_GETQDISC, NLM_F_DUMP, as_bytes(&tcmsg), &[])?;
        let mut found = None;
        self.socket.read_messages(|msg_type, body| {
            if msg_type != RTM_NEWQDISC || body.len() < mem::size_of::<TcMsg>() || found.is_some() {
                return;
            }
            let field = |at: usize| u32::from_ne_bytes(body[at..at + 4].try_into().expect("4 bytes"));
            let (index, handle, parent) = (field(4) as i32, field(8), field(12));
            if index != ifindex || parent != TC_H_ROOT {
                return;
            }
            let mut qdisc = Qdisc { kind: String::new(), handle, options: None };
            let mut attrs = &body[mem::size_of::<TcMsg>()..];
            while attrs.len() >= 4 {
                let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
                let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
                if len < 4 || len > attrs.len() {
                    break;
                }
                let payload = &attrs[4..len];
                match kind {
                    TCA_KIND => qdisc.kind = String::from_utf8_lossy(payload).trim_end_matches('\0').to_owned(),
                    TCA_OPTIONS => qdisc.options = Some(payload.to_vec()),
                    _ => {}
                }
                attrs = &attrs[align4(len).min(attrs.len())..];
            }
            found = Some(qdisc);
        })?;
        Ok(found)
    }

    /// Puts a root qdisc back as [`RouteSocket::root_qdisc`] read it.
    pub fn restore_root_qdisc(&mut self, ifindex: i32, qdisc: &Qdisc) -> io::Result<()> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, TCA_KIND, qdisc.kind.as_bytes(), true);
        if let Some(options) = &qdisc.options {
            push_attr(&mut attrs, TCA_OPTIONS, options, false);
        }
        let tcmsg = TcMsg {
            family: libc::AF_UNSPEC as u8,
            pad1: 0,
            pad2: 0,
            ifindex,
            handle: qdisc.handle,
            parent: TC_H_ROOT,
            info: 0,
        };
        self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, as_bytes(&tcmsg), &attrs)
    }

    /// Deletes the root qdisc of `ifindex`: the kernel puts the device's default back.
    pub fn delete_root_qdisc(&mut self, ifindex: i32) -> io::Result<()> {
        self.delete_qdisc(ifindex, TC_H_ROOT, 0)
    }

    /// Deletes the qdisc at `parent` with `handle` on interface `ifindex`.
    pub fn delete_qdisc(&mut self, ifindex: i32, parent: u32, handle: u32) -> io::Result<()> {
        let tcmsg = TcMsg { family: libc::AF_UNSPEC as u8, pad1: 0, pad2: 0, ifindex, handle, parent, info: 0 };
        self.request(RTM_DELQDISC, 0, as_bytes(&tcmsg), &[])
    }

    /// The filter entries that hang under `parent` of interface `ifindex` (none: empty).
    pub fn filters(&mut self, ifindex: i32, parent: u32) -> io::Result<Vec<Filter>> {
        let tcmsg = TcMsg { family: libc::AF_UNSPEC as u8, pad1: 0, pad2: 0, ifindex, handle: 0, parent, info: 0 };
        self.socket.send(RTM_GETTFILTER, NLM_F_DUMP, as_bytes(&tcmsg), &[])?;
        let mut filters = Vec::new();
        self.socket.read_messages(|msg_type, body| {
            if msg_type == RTM_NEWTFILTER && body.len() >= mem::size_of::<TcMsg>() {
                let field = |at: usize| u32::from_ne_bytes(body[at..at + 4].try_into().expect("4 bytes"));
                // tcm_info holds the priority in its upper half and the protocol in the lower.
                filters.push(Filter { handle: field(8), priority: (field(16) >> 16) as u16 });
            }
        })?;
        Ok(filters)
    }

    /// Whether interface `ifindex` has a clsact qdisc.
    pub fn has_clsact(&mut self, ifindex: i32) -> io::Result<bool> {
        let tcmsg = TcMsg { family: libc::AF_UNSPEC as u8, pad1: 0, pad2: 0, ifindex, handle: 0, parent: 0, info: 0 };
        self.socket.send(RTM_GETQDISC, NLM_F_DUMP, as_bytes(&tcmsg), &[])?;
        let mut found = false;
        self.socket.read_messages(|msg_type, body| {
            if msg_type == RTM_NEWQDISC && body.len() >= mem::size_of::<TcMsg>() {
                let field = |at: usize| u32::from_ne_bytes(body[at..at + 4].try_into().expect("4 bytes"));
                found |= field(4) as i32 == ifindex && field(12) == TC_H_CLSACT;
            }
        })?;
        Ok(found)
    }

    fn request(&mut self, msg_type: u16, flags: u16, header: &[u8], attrs: &[u8]) -> io::Result<()> {
        self.socket.send(msg_type, NLM_F_ACK | flags, header, attrs)?;
        self.socket.read_messages(|_, _| {})
    }
}

impl NetlinkSocket {
    pub fn open(protocol: libc::c_int) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        Ok(Self { fd: unsafe { OwnedFd::from_raw_fd(fd) }, seq: 0 })
    }

    /// Sends one request: a netlink header numbered after the last, `header` (the family's
    /// fixed part) and `attrs`.
    pub fn send(&mut self, msg_type: u16, flags: u16, header: &[u8], attrs: &[u8]) -> io::Result<()> {
        self.seq += 1;
        let len = mem::size_of::<NlMsgHdr>() + header.len() + attrs.len();
        let nlh = NlMsgHdr { len: len as u32, msg_type, flags: NLM_F_REQUEST | flags, seq: self.seq, pid: 0 };
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(as_bytes(&nlh));
        message.extend_from_slice(header);
        message.extend_from_slice(attrs);
        // SAFETY: valid buffer and length; the kernel is the default destination of a netlink send.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one request of `msg_type` per body, acknowledged each, a few hundred to a send(2)
    /// (the kernel handles every message of a send in turn), and returns each one's result in
    /// order: what takes one round trip per request (tcp_connections.rs destroys thousands of
    /// sockets at once) takes one per batch.
    pub fn request_each(&mut self, msg_type: u16, bodies: &[Vec<u8>]) -> io::Result<Vec<io::Result<()>>> {
        // An error ack carries the request back (~100 bytes): 256 of them fit the receive buffer.
        const PER_SEND: usize = 256;
        let mut results = Vec::with_capacity(bodies.len());
        for batch in bodies.chunks(PER_SEND) {
            let first = self.seq.wrapping_add(1);
            let mut message = Vec::new();
            for body in batch {
                self.seq = self.seq.wrapping_add(1);
                let len = mem::size_of::<NlMsgHdr>() + body.len();
                let nlh =
                    NlMsgHdr { len: len as u32, msg_type, flags: NLM_F_REQUEST | NLM_F_ACK, seq: self.seq, pid: 0 };
                message.extend_from_slice(as_bytes(&nlh));
                message.extend_from_slice(body);
                message.resize(align4(message.len()), 0);
            }
            // SAFETY: valid buffer and length; the kernel is the default destination of a netlink send.
            let sent = unsafe { libc::send(self.fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut acks: Vec<Option<io::Result<()>>> = (0..batch.len()).map(|_| None).collect();
            let mut missing = batch.len();
            let mut buf = vec![0u8; 32 * 1024];
            while missing > 0 {
                // SAFETY: valid buffer and length.
                let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                let mut rest = &buf[..n as usize];
                while rest.len() >= mem::size_of::<NlMsgHdr>() {
                    let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                    let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
                    let seq = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
                    if len < mem::size_of::<NlMsgHdr>() || len > rest.len() {
                        return Err(io::Error::other("malformed netlink reply"));
                    }
                    let index = seq.wrapping_sub(first) as usize;
                    if kind == NLMSG_ERROR && rest.len() >= 20 && index < batch.len() && acks[index].is_none() {
                        acks[index] = Some(status_of(rest));
                        missing -= 1;
                    }
                    rest = &rest[align4(len).min(rest.len())..];
                }
            }
            results.extend(acks.into_iter().map(|ack| ack.expect("every request was acknowledged")));
        }
        Ok(results)
    }

    /// Reads replies to the last request until its ack, error or end of dump, passing the type
    /// and body (after the netlink header) of every other message to `each`.
    pub fn read_messages(&self, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        // Dumps come in messages the kernel sizes to the reader's buffer, up to 32 KiB.
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: valid buffer and length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= mem::size_of::<NlMsgHdr>() {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let msg_type = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
                if len < mem::size_of::<NlMsgHdr>() || len > rest.len() {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                if seq == self.seq {
                    match msg_type {
                        NLMSG_ERROR => return status_of(rest),
                        // A dump that failed part way (sock_diag: no handler for the protocol,
                        // ENOENT) says so in its DONE message's payload, not in an ERROR message.
                        // A dump that failed part way (sock_diag without a handler for the
                        // protocol: ENOENT) says so in its DONE message, not in an ERROR one.
                        NLMSG_DONE => return status_of(rest),
                        other => each(other, &rest[mem::size_of::<NlMsgHdr>()..len]),
                    }
                }
                rest = &rest[align4(len).min(rest.len())..];
            }
        }
    }
}

/// What an ERROR (an ack when 0) or DONE message says: the i32 after its header, 0 or a
/// negated errno. A DONE without one is a dump that ended well.
fn status_of(message: &[u8]) -> io::Result<()> {
    let errno = message.get(16..20).map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
    if errno >= 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-errno)) }
}

/// A TC filter entry: a chain's priority and the filter's handle in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub priority: u16,
    pub handle: u32,
}

/// A qdisc as the kernel describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Qdisc {
    pub kind: String,
    /// 0 for the device's default qdisc (which the kernel re-creates on its own).
    pub handle: u32,
    /// The raw TCA_OPTIONS attribute.
    pub options: Option<Vec<u8>>,
}

#[repr(C)]
struct NlMsgHdr {
    len: u32,
    msg_type: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
struct TcMsg {
    family: u8,
    pad1: u8,
    pad2: u16,
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

/// Netlink messages and attributes start on 4-byte boundaries.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, attr_type: u16, payload: &[u8], nul_terminate: bool) {
    let payload_len = payload.len() + usize::from(nul_terminate);
    let len = 4 + payload_len;
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&attr_type.to_ne_bytes());
    buf.extend_from_slice(payload);
    if nul_terminate {
        buf.push(0);
    }
    buf.resize(buf.len() + align4(len) - len, 0);
}

fn as_bytes<T>(value: &T) -> &[u8] {
    // SAFETY: only used on the #[repr(C)] headers above, which have no padding.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(value).cast(), mem::size_of::<T>()) }
}

/// fq's options for chaos's delays and rate limits: room for 100 000 packets in all and 10 000
/// per flow. fq's defaults (10 000 and 100) drop a flow's packets as soon as more than 100 of
/// them wait, which a 100 ms delay reaches at 1000 packets per second.
#[must_use]
pub fn fq_options_for_delays() -> Vec<u8> {
    const TCA_FQ_PLIMIT: u16 = 1;
    const TCA_FQ_FLOW_PLIMIT: u16 = 2;
    let mut options = Vec::new();
    push_attr(&mut options, TCA_FQ_PLIMIT, &100_000u32.to_ne_bytes(), false);
    push_attr(&mut options, TCA_FQ_FLOW_PLIMIT, &10_000u32.to_ne_bytes(), false);
    options
}

/// `struct tc_netem_qopt` with only a queue limit: netem refuses to be created without options.
#[must_use]
pub fn netem_default_options() -> Vec<u8> {
    // latency, limit, loss, gap, duplicate, jitter
    [0u32, 1000, 0, 0, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Runs `f` on a fresh thread inside a brand-new, empty network namespace, which disappears
/// with the thread. Probes that need to create things (a qdisc on `lo`) do it there, so they
/// change nothing the machine can see.
pub fn in_throwaway_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    std::thread::spawn(move || {
        // SAFETY: unshare(CLONE_NEWNET) only affects the calling thread, which ends after `f`.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("probe thread panicked"))?
}
