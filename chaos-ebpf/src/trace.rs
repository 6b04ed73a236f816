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
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, generated},
    programs::sk_buff::SkBuff,
};
use chaos_common::{Direction, FaultConfig, InjectionRecord, NO_SYSCALL, address_kind, flags, skb_task};

use crate::{
    gate::fetch_increment,
    maps::{INJECTIONS, TRACE_WINDOW},
    packet::{self, Packet},
};

/// Written by the loader ([`skb_task`] bits): the task helpers cgroup_skb programs may call on
/// this kernel. A read-only global is a constant to the verifier, which then never explores
/// (nor refuses) the calls this kernel does not allow there.
#[unsafe(no_mangle)]
static SKB_TASK_HELPERS: u32 = 0;

/// Which task helpers to call: all for hooks that always have them, the probed ones for
/// cgroup_skb (`skb`), none for TC.
#[derive(Clone, Copy)]
pub(crate) enum Task {
    Always,
    Skb,
    Never,
}

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
#[inline(always)]
pub(crate) fn packet(config: &FaultConfig, skb: &SkBuff, l3: usize, direction: Direction, site: u32, task: Task) {
    if config.flags & flags::TRACE == 0 {
        return;
    }
    let parsed = packet::parse(skb, l3, direction);
    let call = Call { site, syscall: NO_SYSCALL, errno: 0, signal: 0 };
    record(config, &call, parsed.as_ref(), direction, task);
}

/// A call the program failed, delayed or signalled; `peer` when the hook knows the address.
#[inline(always)]
pub(crate) fn call(config: &FaultConfig, call: &Call, peer: Option<&Packet>) {
    if config.flags & flags::TRACE == 0 {
        return;
    }
    record(config, call, peer, Direction::Egress, Task::Always);
}

#[inline(always)]
fn record(config: &FaultConfig, call: &Call, peer: Option<&Packet>, direction: Direction, task: Task) {
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !admit(config, now) {
        return;
    }
    let Some(mut entry) = INJECTIONS.reserve::<InjectionRecord>(0) else { return };
    let helpers = match task {
        Task::Always => skb_task::PID_TGID | skb_task::COMM,
        // SAFETY: reading our own global; volatile so the compiler does not fold the zero in.
        Task::Skb => unsafe { core::ptr::read_volatile(&raw const SKB_TASK_HELPERS) },
        Task::Never => 0,
    };
    // Written field by field into the reserved record, not built on the stack first: the
    // packet programs are near the 512-byte stack limit. Every field is written, so no stale
    // ring-buffer bytes reach userspace.
    let out = entry.as_mut_ptr();
    // SAFETY: `out` points to the record just reserved, valid for writes until submitted.
    unsafe {
        (*out).at_ns = now;
        (*out).site = call.site;
        (*out).direction = direction.index();
        (*out).syscall = call.syscall;
        (*out).signal = call.signal;
        (*out).errno = call.errno;
        (*out)._pad = [0; 3];
        (*out).tgid = 0;
        (*out).tid = 0;
        (*out).comm = [0; 16];
        if helpers & skb_task::PID_TGID != 0 {
            let pid_tgid = bpf_get_current_pid_tgid();
            (*out).tgid = (pid_tgid >> 32) as u32;
            (*out).tid = pid_tgid as u32;
        }
        if helpers & skb_task::COMM != 0 {
            // The helper writes straight into the record (the safe wrapper copies through
            // the stack); on failure it zeroes the buffer.
            generated::bpf_get_current_comm((&raw mut (*out).comm).cast(), 16);
        }
        match peer {
            Some(peer) => {
                (*out).address_kind = if peer.ipv6 { address_kind::IPV6 } else { address_kind::IPV4 };
                (*out).protocol = u32::from(peer.protocol);
                (*out).remote = peer.remote;
                (*out).remote_port = peer.remote_port;
                (*out).local_port = peer.local_port;
            }
            None => {
                (*out).address_kind = address_kind::NONE;
                (*out).protocol = 0;
                (*out).remote = [0; 16];
                (*out).remote_port = 0;
                (*out).local_port = 0;
            }
        }
    }
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
