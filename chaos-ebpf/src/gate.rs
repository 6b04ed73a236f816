//! The one decision every program makes, written once.
//!
//! 1. Is this my target? Cgroup-attached programs only run for their cgroup, so yes by
//!    construction ([`live`]); programs on hooks every task runs through check the current task's
//!    ancestor cgroup first ([`live_for_current_task`]).
//! 2. Is the fault live? `now < deadline`, read from the config map: the time box is enforced by
//!    the kernel, whatever happens to the controller.
//! 3. Does the event match the fault's filters? (Hook-family specific, done by the caller
//!    between [`live`] and [`Live::fires`].)
//! 4. Does it fire? The schedule if any (exact, machine-wide), then one random draw against the
//!    threshold, or the burst model.
//!
//! Counting happens on the way: `seen` when live, `matched` when the caller says so, `injected`
//! when it fires.
use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_skb_ancestor_cgroup_id},
};
use chaos_common::{Direction, FaultConfig, FaultCounters, flags};

use crate::maps::{BURST_STATE, FAULT_CONFIG, FAULT_COUNTERS, FAULT_SCHEDULE};

/// A fault that is live for this event, with this CPU's counters for its direction.
pub(crate) struct Live {
    pub(crate) config: &'static FaultConfig,
    counters: *mut FaultCounters,
}

/// The fault, if it is armed and before its deadline; `None` means "pass untouched".
#[inline(always)]
pub(crate) fn live(direction: Direction) -> Option<Live> {
    let config = FAULT_CONFIG.get(0)?;
    before_deadline(config, direction)
}

/// Whether the fault is armed and before its deadline, without counting: for programs whose
/// events userspace counts (DNS: the hooks see sockets, the responder counts queries).
#[inline(always)]
pub(crate) fn armed() -> Option<&'static FaultConfig> {
    let config = FAULT_CONFIG.get(0)?;
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    (now < config.deadline_ns).then_some(config)
}

/// [`live`] for hooks that every task runs through: only tasks in the target cgroup or below it.
#[inline(always)]
pub(crate) fn live_for_current_task(direction: Direction) -> Option<Live> {
    let config = FAULT_CONFIG.get(0)?;
    // SAFETY: helper taking a plain integer.
    let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(config.target_level as i32) };
    if ancestor != config.target_cgroup {
        return None;
    }
    before_deadline(config, direction)
}

/// [`live`] for packets in a network namespace the target may share with other cgroups (TC
/// programs): egress packets carry the socket that sent them, so only the target's pass; ingress
/// packets have no socket yet and all belong to the namespace.
#[inline(always)]
pub(crate) fn live_for_packet(skb: *mut __sk_buff, direction: Direction) -> Option<Live> {
    let config = FAULT_CONFIG.get(0)?;
    if direction == Direction::Egress && config.target_cgroup != 0 {
        // SAFETY: skb is the program's context pointer.
        let ancestor = unsafe { bpf_skb_ancestor_cgroup_id(skb.cast(), config.target_level as i32) };
        if ancestor != config.target_cgroup {
            return None;
        }
    }
    before_deadline(config, direction)
}

#[inline(always)]
fn before_deadline(config: &'static FaultConfig, direction: Direction) -> Option<Live> {
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // A disarmed fault has deadline 0, so this one comparison covers both.
    if now >= config.deadline_ns {
        return None;
    }
    let counters = FAULT_COUNTERS.get_ptr_mut(direction.index())?;
    // SAFETY: per-CPU slot, nothing else writes it while this program runs on this CPU.
    unsafe { (*counters).seen += 1 };
    Some(Live { config, counters })
}

impl Live {
    /// The event passed the fault's filters.
    #[inline(always)]
    pub(crate) fn matched(&self) {
        // SAFETY: see `before_deadline`.
        unsafe { (*self.counters).matched += 1 };
    }

    /// The program applied the fault by a rule of its own rather than a draw (`net sever
    /// --after-bytes` drops what passes its byte limit): counted as injected.
    #[inline(always)]
    pub(crate) fn injected(&self) {
        // SAFETY: see `before_deadline`.
        unsafe { (*self.counters).injected += 1 };
    }

    /// Decides for one matching event: true means apply the fault (counted as injected).
    #[inline(always)]
    pub(crate) fn fires(&self) -> bool {
        let config = self.config;
        let scheduled = config.flags & flags::SCHEDULE != 0;
        if scheduled && !schedule_allows(config) {
            return false;
        }
        let fire =
            if config.flags & flags::BURST != 0 { burst_loses(config) } else { u64::from(random()) < config.threshold };
        if !fire || (scheduled && config.max_injections != 0 && !take_injection(config)) {
            return false;
        }
        // SAFETY: see `before_deadline`.
        unsafe { (*self.counters).injected += 1 };
        true
    }
}

#[inline(always)]
pub(crate) fn random() -> u32 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_prandom_u32() }
}

/// Adds one to a shared counter and returns its previous value: one BPF atomic instruction
/// (`BPF_ATOMIC | BPF_FETCH`, kernel 5.12+). `core`'s atomics have no read-modify-write on the
/// BPF target, hence the assembly.
#[inline(always)]
pub(crate) fn fetch_increment(counter: *mut u64) -> u64 {
    let mut value: u64 = 1;
    // SAFETY: the pointer comes from a map lookup and stays valid for this program run; all
    // concurrent writers use this same atomic instruction.
    unsafe {
        core::arch::asm!(
            "{value} = atomic_fetch_add((u64 *)({counter} + 0), {value})",
            counter = in(reg) counter,
            value = inout(reg) value,
        );
    }
    value
}

/// `--after`, `--first`, `--every` on the machine-wide count of matching events.
#[inline(always)]
fn schedule_allows(config: &FaultConfig) -> bool {
    let Some(state) = FAULT_SCHEDULE.get_ptr_mut(0) else { return false };
    // SAFETY: valid map value pointer.
    let nth = fetch_increment(unsafe { &raw mut (*state).matched }) + 1;
    if nth <= config.skip_first {
        return false;
    }
    let eligible = nth - config.skip_first;
    if config.only_first != 0 && eligible > config.only_first {
        return false;
    }
    config.every <= 1 || eligible.is_multiple_of(config.every)
}

/// `--max`: true while fewer than `max_injections` have been taken.
#[inline(always)]
fn take_injection(config: &FaultConfig) -> bool {
    let Some(state) = FAULT_SCHEDULE.get_ptr_mut(0) else { return false };
    // SAFETY: valid map value pointer.
    fetch_increment(unsafe { &raw mut (*state).injected }) < config.max_injections
}

/// Gilbert-Elliott in its simple form: each event first moves the model between its good and
/// bad states, and is lost when the model is bad. Mean loss = enter / (enter + leave), mean burst
/// length = 1 / leave (as probabilities).
#[inline(always)]
fn burst_loses(config: &FaultConfig) -> bool {
    let Some(state) = BURST_STATE.get_ptr_mut(0) else { return false };
    let draw = u64::from(random());
    // SAFETY: valid map value pointer; a racing CPU can at worst repeat one transition.
    let bad = unsafe { *state } != 0;
    let now_bad = if bad { draw >= config.burst_leave } else { draw < config.burst_enter };
    if now_bad != bad {
        // SAFETY: as above.
        unsafe { *state = u32::from(now_bad) };
    }
    now_bad
}
