//! `net sever --after-bytes N`: each matching TCP connection of the target carries N bytes of
//! payload in each direction, then goes silent (Toxiproxy's `limit_data`, without the close): a
//! cgroup_skb program on the target cgroup, so other cgroups never run it.
//!
//! Bytes are counted by TCP sequence number, not by packets seen: each direction's count is
//! "how far past the first sequence number seen has this packet reached", so a retransmission
//! counts nothing twice and a packet that would carry the count past N is dropped. From the
//! first such packet on, the connection is silenced: every packet of it is dropped, both ways,
//! except data that lies wholly within its direction's first N bytes (a retransmission of what
//! already got through) and resets, so the receiver gets the first N bytes up to the segment
//! boundary before N and nothing after; the connection stays open on both ends until one of
//! them (or chaos, with `--mode reset`) aborts it. The first time a
//! connection is silenced the program reports it (`SEVER_EVENTS`): the controller records it
//! and, with `--mode reset`, destroys it.
//!
//! Per-connection state lives in socket storage (`bpf_sk_storage_get`), allocated on a
//! connection's first packet and freed with its socket: no table to size, nothing to evict.
use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    btf_maps::SkStorage,
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_get_socket_cookie, bpf_sk_fullsock, bpf_sk_storage_get},
    },
    macros::{btf_map, cgroup_skb},
    programs::SkBuffContext,
};
use chaos_common::{Direction, SeverEvent, site, threshold_from_ppm};

use crate::{
    gate,
    maps::SEVER_EVENTS,
    net::filter as net_filter,
    packet::{self, IPPROTO_TCP},
    trace,
};

/// cgroup_skb verdicts, as in net/cgroup.rs: pass; drop on ingress; drop on egress with
/// "congestion" (NET_XMIT_CN), which TCP takes as a lost segment to send again, not an error.
const PASS: i32 = 1;
const DROP_INGRESS: i32 = 0;
const DROP_EGRESS_SILENTLY: i32 = 2;

/// The RST bit of the TCP header's flags byte.
const TCP_RST: u8 = 0x04;

/// One connection's count, per direction (indexed by [`Direction::index`]).
#[repr(C)]
struct Count {
    /// The first sequence number of payload seen in each direction: byte 0 of the count.
    base: [u32; 2],
    /// Whether `base` holds for that direction yet.
    started: [u8; 2],
    /// Set once a direction went past N: the connection is silent from then on.
    silenced: u8,
    /// Drawn once, on the connection's first packet: 1 when `--percent` leaves it alone.
    spared: u8,
}

#[btf_map(name = "SEVER_COUNTS")]
static SEVER_COUNTS: SkStorage<Count> = SkStorage::new();

#[cgroup_skb(egress)]
pub fn net_sever_egress(ctx: SkBuffContext) -> i32 {
    if silences(&ctx, Direction::Egress) { DROP_EGRESS_SILENTLY } else { PASS }
}

#[cgroup_skb(ingress)]
pub fn net_sever_ingress(ctx: SkBuffContext) -> i32 {
    if silences(&ctx, Direction::Ingress) { DROP_INGRESS } else { PASS }
}

#[inline(always)]
fn silences(ctx: &SkBuffContext, direction: Direction) -> bool {
    let Some(fault) = gate::live(direction) else { return false };
    // cgroup_skb data starts at the IP header.
    let Some(packet) = packet::parse(&ctx.skb, 0, direction) else { return false };
    if packet.protocol != IPPROTO_TCP || !net_filter::matches(fault.config, &packet) {
        return false;
    }
    let Some(l4) = packet.l4 else { return false };
    // SAFETY: the context pointer the kernel gave this program; `sk` may be null.
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return false;
    }
    // SAFETY: helper on the packet's own socket (null for request and TIME_WAIT sockets).
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return false;
    }
    let Some(count) = count_of(full.cast(), fault.config.threshold) else { return false };
    // SAFETY: socket storage of this socket, valid for this program run.
    let count = unsafe { &mut *count };
    if count.spared != 0 {
        return false;
    }
    fault.matched();
    let Ok(header) = ctx.skb.load::<[u8; 14]>(l4) else { return false };
    let seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let header_len = u32::from(header[12] >> 4) * 4;
    let payload = ctx.skb.len().saturating_sub(l4 as u32 + header_len);
    let index = direction.index() as usize & 1;
    if payload != 0 && count.started[index] == 0 {
        count.base[index] = seq;
        count.started[index] = 1;
    }
    // How far this packet reaches past the first byte counted: a signed 32-bit offset, so data
    // from before the count began (retransmitted) is negative and always within N.
    let reach = i64::from(seq.wrapping_sub(count.base[index]) as i32) + i64::from(payload);
    let within = payload != 0 && count.started[index] != 0 && reach <= fault.config.after_bytes as i64;
    // A reset always passes: the connection's end (by its application, or by chaos with --mode
    // reset) is never held back.
    let reset = header[13] & TCP_RST != 0;
    if payload == 0 && count.silenced == 0 || within || reset {
        return false;
    }
    if count.silenced == 0 {
        count.silenced = 1;
        report(ctx, &packet, direction);
    }
    // Counted as injected: one packet dropped (the threshold draw was made per connection).
    fault.injected();
    trace::packet(fault.config, &ctx.skb, 0, direction, site::CGROUP_SKB, trace::Task::Skb);
    true
}

/// The connection's count, created on its first packet, when `--percent` draws whether it is
/// severed at all (`threshold` on the 32-bit scale of [`threshold_from_ppm`]).
#[inline(always)]
fn count_of(sk: *mut core::ffi::c_void, threshold: u64) -> Option<*mut Count> {
    let map = core::ptr::from_ref(&SEVER_COUNTS).cast_mut().cast();
    // SAFETY: helper on a full socket and this program's socket storage map.
    let found = unsafe { bpf_sk_storage_get(map, sk, core::ptr::null_mut(), 0) }.cast::<Count>();
    if !found.is_null() {
        return Some(found);
    }
    let spared = u8::from(threshold < threshold_from_ppm(1_000_000) && u64::from(gate::random()) >= threshold);
    let mut fresh = Count { base: [0; 2], started: [0; 2], silenced: 0, spared };
    // SAFETY: as above; the kernel copies `fresh` into the new storage.
    let created =
        unsafe { bpf_sk_storage_get(map, sk, (&raw mut fresh).cast(), u64::from(BPF_SK_STORAGE_GET_F_CREATE)) }
            .cast::<Count>();
    (!created.is_null()).then_some(created)
}

/// Tells the controller about a connection the program just silenced. A full ring buffer loses
/// the report, never the silence.
#[inline(always)]
fn report(ctx: &SkBuffContext, packet: &packet::Packet, direction: Direction) {
    let Some(mut entry) = SEVER_EVENTS.reserve::<SeverEvent>(0) else { return };
    // SAFETY: helpers on this program's own context.
    let (at_ns, cookie) = unsafe { (bpf_ktime_get_ns(), bpf_get_socket_cookie(ctx.skb.skb.cast())) };
    entry.write(SeverEvent {
        at_ns,
        cookie,
        direction: direction.index(),
        ipv6: u32::from(packet.ipv6),
        local: local_address(ctx, packet, direction),
        remote: packet.remote,
        local_port: packet.local_port,
        remote_port: packet.remote_port,
        _pad: 0,
    });
    entry.submit(0);
}

/// The target's own address: the source of an egress packet, the destination of an ingress one.
#[inline(always)]
fn local_address(ctx: &SkBuffContext, packet: &packet::Packet, direction: Direction) -> [u8; 16] {
    let mut local = [0u8; 16];
    let egress = direction == Direction::Egress;
    if packet.ipv6 {
        if let Ok(address) = ctx.skb.load::<[u8; 16]>(if egress { 8 } else { 24 }) {
            local = address;
        }
    } else if let Ok(address) = ctx.skb.load::<[u8; 4]>(if egress { 12 } else { 16 }) {
        local[..4].copy_from_slice(&address);
    }
    local
}
