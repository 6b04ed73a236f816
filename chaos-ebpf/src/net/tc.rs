//! Packet faults that rewrite or copy packets, which cgroup_skb programs cannot do: TC programs
//! on the interfaces of the target's network namespace (tcx links on 6.6+, clsact + bpf filter
//! before). They return TC_ACT_UNSPEC ("no verdict") so other TC programs still run.
use aya_ebpf::{
    bindings::{BPF_F_INGRESS, BPF_F_MARK_MANGLED_0, TC_ACT_UNSPEC},
    macros::classifier,
    programs::TcContext,
};
use chaos_common::{Direction, flags, site};

use crate::{
    gate,
    net::filter,
    packet::{self, ETH_HLEN, IPPROTO_TCP, IPPROTO_UDP},
    trace,
};

/// Set on our own copy of a packet while it is redirected, so that when the copy comes back
/// through this program it is recognised, the bit cleared, and the copy not copied again.
const DUPLICATE_MARK: u32 = 1 << 30;

#[classifier]
pub fn net_corrupt_egress(ctx: TcContext) -> i32 {
    corrupt(&ctx, Direction::Egress)
}

#[classifier]
pub fn net_corrupt_ingress(ctx: TcContext) -> i32 {
    corrupt(&ctx, Direction::Ingress)
}

#[classifier]
pub fn net_duplicate_egress(ctx: TcContext) -> i32 {
    duplicate(&ctx, Direction::Egress)
}

#[classifier]
pub fn net_duplicate_ingress(ctx: TcContext) -> i32 {
    duplicate(&ctx, Direction::Ingress)
}

/// Flips one random bit in the TCP or UDP payload. The L4 checksum is left alone unless the
/// fault says `FIX_CHECKSUM`: where it was already computed, the receiver's stack then drops the
/// packet as a bit error on the wire would be dropped.
#[inline(always)]
fn corrupt(ctx: &TcContext, direction: Direction) -> i32 {
    let Some(fault) = gate::live_for_packet(ctx.skb.skb, direction) else { return TC_ACT_UNSPEC };
    let Some(packet) = packet::parse(&ctx.skb, ETH_HLEN, direction) else { return TC_ACT_UNSPEC };
    let Some(l4) = packet.l4 else { return TC_ACT_UNSPEC };
    let (header_len, checksum_at, checksum_flags) = match packet.protocol {
        IPPROTO_UDP => (8, 6, u64::from(BPF_F_MARK_MANGLED_0)),
        IPPROTO_TCP => {
            let Ok(data_offset) = ctx.load::<u8>(l4 + 12) else { return TC_ACT_UNSPEC };
            (usize::from(data_offset >> 4) * 4, 16, 0)
        }
        _ => return TC_ACT_UNSPEC,
    };
    if fault.config.net_filters != 0 && !filter::matches(fault.config, &packet) {
        return TC_ACT_UNSPEC;
    }
    // Whole 16-bit words of payload, counted from the L4 header as the checksum counts them.
    let first_word = l4 + header_len.next_multiple_of(2);
    let len = ctx.len() as usize;
    if first_word + 2 > len {
        return TC_ACT_UNSPEC; // no payload to corrupt: not a match
    }
    fault.matched();
    if !fault.fires() {
        return TC_ACT_UNSPEC;
    }
    // checked_rem: a plain `%` keeps a division-by-zero panic path the verifier rejects.
    let Some(word) = (gate::random() as usize).checked_rem((len - first_word) / 2) else { return TC_ACT_UNSPEC };
    let at = first_word + word * 2;
    let Ok(old) = ctx.load::<u16>(at) else { return TC_ACT_UNSPEC };
    let new = old ^ (1 << (gate::random() % 16));
    if ctx.store(at, &new, 0).is_err() {
        return TC_ACT_UNSPEC;
    }
    if fault.config.flags & flags::FIX_CHECKSUM != 0 {
        let _ = ctx.l4_csum_replace(l4 + checksum_at, u64::from(old), u64::from(new), checksum_flags | 2);
    }
    trace::packet(fault.config, &ctx.skb, ETH_HLEN, direction, site::TC, trace::Task::Never);
    TC_ACT_UNSPEC
}

/// Sends the packet twice: the copy goes out (or up) the same interface.
#[inline(always)]
fn duplicate(ctx: &TcContext, direction: Direction) -> i32 {
    // SAFETY: reading the context's mark field.
    let mark = unsafe { (*ctx.skb.skb).mark };
    if mark & DUPLICATE_MARK != 0 {
        ctx.set_mark(mark & !DUPLICATE_MARK);
        return TC_ACT_UNSPEC; // our copy, back again
    }
    let Some(fault) = gate::live_for_packet(ctx.skb.skb, direction) else { return TC_ACT_UNSPEC };
    if fault.config.net_filters != 0 {
        let Some(packet) = packet::parse(&ctx.skb, ETH_HLEN, direction) else { return TC_ACT_UNSPEC };
        if !filter::matches(fault.config, &packet) {
            return TC_ACT_UNSPEC;
        }
    }
    fault.matched();
    if fault.fires() {
        // SAFETY: reading the context's ifindex field.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        let redirect_flags = if direction == Direction::Ingress { u64::from(BPF_F_INGRESS) } else { 0 };
        ctx.set_mark(mark | DUPLICATE_MARK);
        let _ = ctx.clone_redirect(ifindex, redirect_flags);
        ctx.set_mark(mark);
        trace::packet(fault.config, &ctx.skb, ETH_HLEN, direction, site::TC, trace::Task::Never);
    }
    TC_ACT_UNSPEC
}
