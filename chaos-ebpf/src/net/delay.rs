//! Network delay and rate limit by earliest departure time: a TC egress program writes the
//! time a packet may leave into `skb->tstamp`, and the fq qdisc holds it until then. Nothing
//! waits in BPF; fq does the holding, which is why these faults need fq on the interface.
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_ns,
    macros::classifier,
    programs::TcContext,
};
use chaos_common::{Direction, FaultConfig, flags, site};

use crate::{
    gate,
    maps::RATE_STATE,
    net::filter,
    packet::{self, ETH_HLEN},
    trace,
};

#[classifier]
pub fn net_delay_egress(ctx: TcContext) -> i32 {
    let Some(fault) = matching(&ctx) else { return TC_ACT_UNSPEC };
    if fault.fires() {
        // SAFETY: helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        let depart = now.saturating_add_signed(delay_ns(fault.config));
        set_departure(&ctx, depart);
        trace::packet(fault.config, &ctx.skb, ETH_HLEN, Direction::Egress, site::TC, trace::Task::Never);
    }
    TC_ACT_UNSPEC
}

#[classifier]
pub fn net_rate_egress(ctx: TcContext) -> i32 {
    let Some(fault) = matching(&ctx) else { return TC_ACT_UNSPEC };
    let rate = fault.config.rate_bytes_per_sec;
    if rate == 0 || !fault.fires() {
        return TC_ACT_UNSPEC;
    }
    let Some(next_free) = RATE_STATE.get_ptr_mut(0) else { return TC_ACT_UNSPEC };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: valid map value; CPUs racing here can at worst send a packet early by one slot.
    let depart = unsafe { (*next_free).max(now) };
    // Past the queue's length in time, the packet is dropped here, taking no slot: otherwise
    // the schedule would run ahead of what fq can hold and the link would carry far less than
    // the limit (this is how EDT shapers bound their queue).
    if depart - now > fault.config.rate_queue_ns {
        trace::packet(fault.config, &ctx.skb, ETH_HLEN, Direction::Egress, site::TC, trace::Task::Never);
        return TC_ACT_SHOT;
    }
    let bytes = u64::from(ctx.len());
    // SAFETY: as above.
    unsafe { *next_free = depart + bytes * 1_000_000_000 / rate };
    set_departure(&ctx, depart);
    TC_ACT_UNSPEC
}

/// The fault if the packet is the target's and matches its filters (counted as matched).
#[inline(always)]
fn matching(ctx: &TcContext) -> Option<gate::Live> {
    let fault = gate::live_for_packet(ctx.skb.skb, Direction::Egress)?;
    if fault.config.net_filters != 0 {
        let packet = packet::parse(&ctx.skb, ETH_HLEN, Direction::Egress)?;
        if !filter::matches(fault.config, &packet) {
            return None;
        }
    }
    fault.matched();
    Some(fault)
}

/// `--by` plus jitter: uniform in [-jitter, +jitter], or normal with standard deviation
/// `jitter` (Irwin-Hall: the sum of 12 uniform draws is close to normal), never below zero.
#[inline(always)]
fn delay_ns(config: &FaultConfig) -> i64 {
    let base = config.delay_ns as i64;
    let jitter = config.jitter_ns as i64;
    if jitter == 0 {
        return base;
    }
    let offset = if config.flags & flags::JITTER_NORMAL != 0 {
        // Six draws give twelve 16-bit uniforms: their sum has mean 6 * 2^16 and standard
        // deviation 2^16, so (sum - 6 * 2^16) / 2^16 is about N(0, 1).
        let mut sum: i64 = 0;
        for _ in 0..6 {
            let draw = gate::random();
            sum += i64::from(draw & 0xffff) + i64::from(draw >> 16);
        }
        (sum - 6 * 65_536) * jitter / 65_536
    } else {
        // [0, 2^32) -> [-jitter, +jitter]
        ((i64::from(gate::random()) * 2 * jitter) >> 32) - jitter
    };
    (base + offset).max(0)
}

/// Writing `tstamp` in TC egress also marks it as a monotonic delivery time, which fq obeys.
#[inline(always)]
fn set_departure(ctx: &TcContext, depart_ns: u64) {
    // SAFETY: writing the context's tstamp field, which TC programs may write.
    unsafe { (*ctx.skb.skb).tstamp = depart_ns };
}
