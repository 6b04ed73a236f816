//! `--trace-injections`: after the gate said "fires" and the program injected, a sample of
//! what it did (time, task, hook, and the packet's addresses or the call's number, errno or
//! signal) goes to the `INJECTIONS` ring buffer for the controller. Written once, called at
//! each family's inject point.
//!
//! Off (the default) it costs one flag test, and only on the fire path: nothing runs before
//! the target test or for events that do not fire. On, the rate is limited here in the kernel
//! (at most `trace_per_sec` records per second of CLOCK_MONOTONIC, counted machine-wide with
//! one atomic add), so a fault injecting a million times a second sends userspace 100 records,
//! not a million.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    programs::sk_buff::SkBuff,
};
use chaos_common::{Direction, FaultConfig, InjectionRecord, NO_SYSCALL, address_kind, flags};

use crate::{
    gate::fetch_increment,
    maps::{INJECTIONS, TRACE_WINDOW},
    packet::{self, Packet},
};

/// What the program did to a call: the syscall number if the hook knows it, the errno it
/// returned, the signal it sent.
pub(crate) struct Call {
    pub(crate) site: u32,
    pub(crate) syscall: u32,
    pub(crate) errno: u32,
    pub(crate) signal: u32,
}

impl Call {
    /// A call failed with the fault's errno at `site` (no syscall number known).
    #[inline(always)]
    pub(crate) const fn failed(site: u32, errno: u32) -> Self {
        Self { site, syscall: NO_SYSCALL, errno, signal: 0 }
    }
}

/// A packet the program dropped, rewrote or delayed; `l3` is where its IP header starts.
/// `with_task`: the hook may ask for the current task (cgroup_skb may, TC may not).
#[inline(always)]
pub(crate) fn packet(config: &FaultConfig, skb: &SkBuff, l3: usize, direction: Direction, site: u32, with_task: bool) {
    if config.flags & flags::TRACE == 0 {
        return;
    }
    let parsed = packet::parse(skb, l3, direction);
    let call = Call { site, syscall: NO_SYSCALL, errno: 0, signal: 0 };
    record(config, &call, parsed.as_ref(), direction, with_task);
}

/// A call the program failed, delayed or signalled; `peer` when the hook knows the address.
#[inline(always)]
pub(crate) fn call(config: &FaultConfig, call: &Call, peer: Option<&Packet>) {
    if config.flags & flags::TRACE == 0 {
        return;
    }
    record(config, call, peer, Direction::Egress, true);
}

#[inline(always)]
fn record(config: &FaultConfig, call: &Call, peer: Option<&Packet>, direction: Direction, with_task: bool) {
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !admit(config, now) {
        return;
    }
    let Some(mut entry) = INJECTIONS.reserve::<InjectionRecord>(0) else { return };
    let mut record = InjectionRecord {
        at_ns: now,
        site: call.site,
        direction: direction.index(),
        syscall: call.syscall,
        signal: call.signal,
        errno: call.errno,
        address_kind: address_kind::NONE,
        ..InjectionRecord::default()
    };
    if with_task {
        let pid_tgid = bpf_get_current_pid_tgid();
        record.tgid = (pid_tgid >> 32) as u32;
        record.tid = pid_tgid as u32;
        record.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
    if let Some(peer) = peer {
        record.address_kind = if peer.ipv6 { address_kind::IPV6 } else { address_kind::IPV4 };
        record.protocol = u32::from(peer.protocol);
        record.remote = peer.remote;
        record.remote_port = peer.remote_port;
        record.local_port = peer.local_port;
    }
    entry.write(record);
    entry.submit(0);
}

/// The rate limit: true for the first `trace_per_sec` records of each second. CPUs racing at
/// a second's turn can each reset the window once, so a turn may admit a few more.
#[inline(always)]
fn admit(config: &FaultConfig, now: u64) -> bool {
    let Some(window) = TRACE_WINDOW.get_ptr_mut(0) else { return false };
    let second = now / 1_000_000_000;
    // SAFETY: valid map value pointer for this program run.
    unsafe {
        if (*window).second != second {
            (*window).second = second;
            (*window).taken = 0;
        }
    }
    // SAFETY: as above.
    fetch_increment(unsafe { &raw mut (*window).taken }) < config.trace_per_sec
}
