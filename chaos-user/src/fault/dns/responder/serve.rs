//! The responder's sockets and tasks: one thread that enters the target's network namespace
//! and runs a single-threaded tokio runtime there, so every socket it opens (the slots', and
//! those that forward to the resolvers) is in that namespace. Per slot: a UDP socket and a TCP
//! listener on loopback (ephemeral ports); each query goes through [`Shared::decide`], then is
//! answered, dropped, or forwarded (at once or after the delay) to the slot's resolver over the
//! same transport, and the resolver's answer is passed back.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, atomic::Ordering, mpsc},
    time::Duration,
};

use chaos_common::dns::{SLOTS, family};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
};

use super::{Decision, Shared, Slot, SlotPorts, clients::Transport, lock};
use crate::{fault::dns::answer::message_id, os::netns::Netns};

/// The largest DNS message over UDP (and what a TCP length prefix allows).
const MAX_MESSAGE: usize = 65_535;
/// How long a forwarded query waits for its resolver (clients give up sooner: glibc after 5 s).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle sockets to one resolver kept for the next forwarded query (a socket per query in flight).
const POOLED_PER_SLOT: usize = 32;

/// A socket connected to a slot's resolver, with the buffer its answers are read into: both
/// are reused from query to query (a 64 KiB buffer zeroed per query was 3 % of the responder's
/// time under load).
struct Upstream {
    socket: UdpSocket,
    buf: Vec<u8>,
}

type Pool = Arc<Mutex<Vec<Upstream>>>;

/// The thread's body: enter the namespace, bind every slot, say which ports (or why not) on
/// `ready`, serve until stopped.
pub(super) fn run(shared: &Arc<Shared>, netns: &Netns, ready: &mpsc::Sender<Result<Vec<SlotPorts>, String>>) {
    if let Err(err) = netns.enter() {
        let _ = ready.send(Err(err.to_string()));
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(format!("its runtime: {err}")));
            return;
        }
    };
    runtime.block_on(async {
        let slots = match bind().await {
            Ok(slots) => slots,
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let _ = ready.send(Ok(slots.iter().map(|s| s.ports).collect()));
        for BoundSlot { ports, udp, tcp } in slots {
            tokio::spawn(serve_udp(Arc::clone(shared), ports.slot, Arc::new(udp)));
            tokio::spawn(serve_tcp(Arc::clone(shared), ports.slot, tcp));
        }
        shared.stop.notified().await;
    });
    // Dropping the runtime ends every task and closes every socket.
}

struct BoundSlot {
    ports: SlotPorts,
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds every slot of both families on loopback. A namespace without ::1 (IPv6 disabled) gets
/// IPv4 slots only: its IPv6 queries are left alone, as they could not be answered there anyway.
async fn bind() -> Result<Vec<BoundSlot>, String> {
    let mut slots = Vec::new();
    for (slot_family, loopback) in
        [(family::IPV4, IpAddr::V4(Ipv4Addr::LOCALHOST)), (family::IPV6, Ipv6Addr::LOCALHOST.into())]
    {
        for index in 0..SLOTS {
            let slot = Slot { family: slot_family, index };
            match bind_slot(slot, loopback).await {
                Ok(bound) => slots.push(bound),
                Err(err) if slot_family == family::IPV6 && err.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    tracing::info!("no ::1 in the target's network namespace: its IPv6 DNS queries are left alone");
                    break;
                }
                Err(err) => return Err(format!("binding a socket on {loopback} in the target's namespace: {err}")),
            }
        }
    }
    Ok(slots)
}

async fn bind_slot(slot: Slot, loopback: IpAddr) -> io::Result<BoundSlot> {
    let udp = UdpSocket::bind((loopback, 0)).await?;
    let tcp = TcpListener::bind((loopback, 0)).await?;
    let ports = SlotPorts { slot, udp: udp.local_addr()?.port(), tcp: tcp.local_addr()?.port() };
    Ok(BoundSlot { ports, udp, tcp })
}

async fn serve_udp(shared: Arc<Shared>, slot: Slot, socket: Arc<UdpSocket>) {
    let pool: Pool = Arc::default();
    let local = socket.local_addr().unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        // An error here is about one datagram (an ICMP error for an earlier reply): go on.
        let Ok((len, client)) = socket.recv_from(&mut buf).await else { continue };
        let query = buf[..len].to_vec();
        let (decision, hit) = shared.decide(&query);
        if let Some(hit) = hit {
            shared.record(hit, Transport::Udp, client, local, slot);
        }
        let forward = |delay| {
            let forwarding = Forwarding::new(&shared, slot, delay);
            tokio::spawn(forwarding.udp(Arc::clone(&socket), Arc::clone(&pool), query.clone(), client));
        };
        match decision {
            Decision::Answer(answer) => {
                let _ = socket.send_to(&answer, client).await;
            }
            Decision::Drop => {}
            Decision::Forward => forward(Duration::ZERO),
            Decision::Delay(delay) => forward(delay),
        }
    }
}

async fn serve_tcp(shared: Arc<Shared>, slot: Slot, listener: TcpListener) {
    loop {
        let Ok((stream, client)) = listener.accept().await else { continue };
        tokio::spawn(serve_tcp_client(Arc::clone(&shared), slot, stream, client));
    }
}

/// One client connection: its queries in order (DNS over TCP may carry several), each answered
/// here or through one connection to the resolver opened when first needed.
async fn serve_tcp_client(shared: Arc<Shared>, slot: Slot, mut stream: TcpStream, client: SocketAddr) {
    let Ok(local) = stream.local_addr() else { return };
    let mut upstream: Option<TcpStream> = None;
    while let Ok(query) = read_message(&mut stream).await {
        let (decision, hit) = shared.decide(&query);
        if let Some(hit) = hit {
            shared.record(hit, Transport::Tcp, client, local, slot);
        }
        let delay = match decision {
            Decision::Answer(answer) => {
                if write_message(&mut stream, &answer).await.is_err() {
                    return;
                }
                continue;
            }
            // No answer: the client waits until it gives up.
            Decision::Drop => continue,
            Decision::Forward => Duration::ZERO,
            Decision::Delay(delay) => delay,
        };
        let forwarding = Forwarding::new(&shared, slot, delay);
        let Some(answer) = forwarding.tcp(&mut upstream, &query).await else { return };
        if write_message(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}

/// A query on its way to the slot's resolver, after `delay`; counted in flight until dropped.
struct Forwarding {
    shared: Arc<Shared>,
    slot: Slot,
    delay: Duration,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl Forwarding {
    fn new(shared: &Arc<Shared>, slot: Slot, delay: Duration) -> Self {
        shared.in_flight.fetch_add(1, Ordering::Release);
        Self { shared: Arc::clone(shared), slot, delay }
    }

    /// Over UDP, from a socket of the slot's pool (or a new one), and the answer back to the
    /// client from the slot's socket. A socket whose resolver did not answer is not reused: its
    /// late answer must not reach the next query.
    async fn udp(self, socket: Arc<UdpSocket>, pool: Pool, query: Vec<u8>, client: SocketAddr) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let Some(resolver) = self.shared.resolver(self.slot) else { return };
        let pooled = lock(&pool).pop();
        let mut upstream = match pooled {
            Some(upstream) => upstream,
            None => match connect_udp(resolver).await {
                Ok(socket) => Upstream { socket, buf: vec![0u8; MAX_MESSAGE] },
                Err(err) => {
                    tracing::debug!("forwarding a DNS query to {resolver}: {err}");
                    return;
                }
            },
        };
        if upstream.socket.send(&query).await.is_err() {
            return;
        }
        let id = message_id(&query);
        let Upstream { socket: from, buf } = &mut upstream;
        let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                let len = from.recv(buf).await?;
                if message_id(&buf[..len]) == id {
                    return Ok::<usize, io::Error>(len);
                }
            }
        })
        .await;
        if let Ok(Ok(len)) = answer {
            let _ = socket.send_to(&upstream.buf[..len], client).await;
            let mut idle = lock(&pool);
            if idle.len() < POOLED_PER_SLOT {
                idle.push(upstream);
            }
        }
    }

    /// Over TCP, on the client connection's own connection to the resolver; None ends the
    /// client's connection (the resolver closed or failed), as a resolver's failure would.
    async fn tcp(self, upstream: &mut Option<TcpStream>, query: &[u8]) -> Option<Vec<u8>> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let resolver = self.shared.resolver(self.slot)?;
        if upstream.is_none() {
            let connected = tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(resolver)).await;
            *upstream = Some(connected.ok()?.ok()?);
        }
        let stream = upstream.as_mut()?;
        let exchange = async {
            write_message(stream, query).await?;
            read_message(stream).await
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Some(answer),
            _ => {
                *upstream = None;
                None
            }
        }
    }
}

/// A UDP socket connected to `resolver` (from an ephemeral port of this namespace).
async fn connect_udp(resolver: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr =
        if resolver.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(resolver).await?;
    Ok(socket)
}

/// One DNS message over TCP: a two-byte length, then the message (RFC 1035 4.2.2).
async fn read_message(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = usize::from(stream.read_u16().await?);
    let mut message = vec![0u8; len];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_message(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| io::Error::other("a DNS message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}
