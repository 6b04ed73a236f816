//! The one decision every program makes, written once.
//!
//! 1. Is this my target? Cgroup-attached programs only run for their cgroup, so yes by
//!    construction; global hooks will check the cgroup id here before anything else.
//! 2. Is the fault live? `now < deadline`, read from the config map: the time box is enforced by
//!    the kernel, whatever happens to the controller.
//! 3. Does the event match the fault's filters? (Hook-family specific, done by the caller
//!    between [`live`] and [`Live::fires`].)
//! 4. Does it fire? One random draw against the threshold.
//!
//! Counting happens on the way: `seen` when live, `matched` when the caller says so, `injected`
//! when the draw fires.
use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use chaos_common::{Direction, FaultConfig, FaultCounters};

use crate::maps::{FAULT_CONFIG, FAULT_COUNTERS};

/// A fault that is live for this event, with this CPU's counters for its direction.
pub(crate) struct Live {
    config: &'static FaultConfig,
    counters: *mut FaultCounters,
}

/// Returns the fault if it is armed and before its deadline; `None` means "pass untouched".
#[inline(always)]
pub(crate) fn live(direction: Direction) -> Option<Live> {
    let config = FAULT_CONFIG.get(0)?;
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
        // SAFETY: see `live`.
        unsafe { (*self.counters).matched += 1 };
    }

    /// Draws once: true means apply the fault (and it is counted as injected).
    #[inline(always)]
    pub(crate) fn fires(&self) -> bool {
        // SAFETY: helper without arguments.
        let draw = u64::from(unsafe { bpf_get_prandom_u32() });
        if draw >= self.config.threshold {
            return false;
        }
        // SAFETY: see `live`.
        unsafe { (*self.counters).injected += 1 };
        true
    }
}
