//! Packet loss for the target cgroup's own sockets (cgroup_skb). Attached to the target cgroup
//! only, so other cgroups never run this code: their cost is zero.
use aya_ebpf::{macros::cgroup_skb, programs::SkBuffContext};
use chaos_common::{Direction, site};

use crate::{gate, net::filter, packet, trace};

/// cgroup_skb verdict: let the packet through.
const PASS: i32 = 1;
/// Ingress verdict: drop. The receiver simply never sees the packet.
const DROP_INGRESS: i32 = 0;
/// Egress verdict: drop and report congestion (NET_XMIT_DROP). The UDP and raw send paths turn
/// that into -ENOBUFS and swallow it unless the socket asked for IP_RECVERR, so the sender sees
/// silent loss, as on a real network. Returning 0 instead would fail the sender's syscall with
/// EPERM: an errno fault, not packet loss.
const DROP_EGRESS_SILENTLY: i32 = 2;

#[cgroup_skb(egress)]
pub fn net_drop_egress(ctx: SkBuffContext) -> i32 {
    if drops(&ctx, Direction::Egress) { DROP_EGRESS_SILENTLY } else { PASS }
}

#[cgroup_skb(ingress)]
pub fn net_drop_ingress(ctx: SkBuffContext) -> i32 {
    if drops(&ctx, Direction::Ingress) { DROP_INGRESS } else { PASS }
}

#[inline(always)]
fn drops(ctx: &SkBuffContext, direction: Direction) -> bool {
    let Some(fault) = gate::live(direction) else {
        return false;
    };
    // Unfiltered faults never parse the packet.
    if fault.config.net_filters != 0 {
        // cgroup_skb data starts at the IP header.
        let Some(packet) = packet::parse(&ctx.skb, 0, direction) else { return false };
        if !filter::matches(fault.config, &packet) {
            return false;
        }
    }
    fault.matched();
    if !fault.fires() {
        return false;
    }
    trace::packet(fault.config, &ctx.skb, 0, direction, site::CGROUP_SKB, trace::Task::Skb);
    true
}
