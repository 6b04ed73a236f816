//! The shared programs (the object `chaos-dispatch`): one per chaos process and hook, for all of
//! that process's faults there (syscall delays and crash points): on the raw `sys_enter`
//! tracepoint, and on fentry of one syscall's entry function.
//!
//! Both hooks run every attached program for every call (every syscall of every task, or every
//! call of the one syscall), so one program per fault made each call on the machine pay N runs
//! for N faults. This program is the only one attached: on `sys_enter` it turns away a syscall no
//! fault watches with one bitmap lookup (the union of the faults' bitmaps, inlined by the
//! verifier; on fentry the function is the syscall), then asks for the task's ancestor cgroup at each
//! level a fault targets (one helper call per distinct level, at most `MAX_LEVELS`, and a
//! compare where one fault alone targets that level, else one hash lookup) and tail-calls the
//! fault found there. The fault's own program runs as if it had
//! been attached itself: its own maps, gate, counters and kernel deadline. An untargeted task
//! pays the same whatever the number of faults.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_ancestor_cgroup_id,
    macros::{fentry, map, raw_tracepoint},
    maps::{Array, HashMap, ProgramArray},
    programs::{FEntryContext, RawTracePointContext},
};
use chaos_common::{
    SYSCALL_SET_BITS,
    dispatch::{LevelRoute, MAX_LEVELS, MAX_SLOTS},
};

#[map(name = "DISPATCH_SYSCALLS")]
static SYSCALLS: Array<u64> = Array::with_max_entries(SYSCALL_SET_BITS / 64, 0);

#[map(name = "DISPATCH_LEVELS")]
static LEVELS: Array<LevelRoute> = Array::with_max_entries(MAX_LEVELS, 0);

#[map(name = "DISPATCH_TARGETS")]
static TARGETS: HashMap<u64, u32> = HashMap::with_max_entries(MAX_SLOTS, 0);

#[map(name = "DISPATCH_FAULTS")]
static FAULTS: ProgramArray = ProgramArray::with_max_entries(MAX_SLOTS, 0);

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn chaos_dispatch(ctx: RawTracePointContext) -> i32 {
    // Arg 1 of sys_enter is the syscall number.
    let number: u64 = ctx.arg(1);
    if number >= u64::from(SYSCALL_SET_BITS)
        || SYSCALLS.get((number / 64) as u32).is_none_or(|word| word >> (number % 64) & 1 == 0)
    {
        return 0;
    }
    route_to_fault(&ctx)
}

/// On the entry function of one syscall (attached there by userspace, which loads one of these
/// per function): only that syscall's callers run it, so it starts at the cgroup levels. The
/// faults it calls are fentry programs on the same function (the kernel refuses a tail call
/// between programs on different functions).
#[fentry]
pub fn chaos_dispatch_entry(ctx: FEntryContext) -> i32 {
    route_to_fault(&ctx)
}

/// Finds the fault whose target holds the current task and tail-calls it; 0 where none does.
#[inline(always)]
fn route_to_fault<C: EbpfContext>(ctx: &C) -> i32 {
    for index in 0..MAX_LEVELS {
        let route = match LEVELS.get(index) {
            Some(route) if route.level != 0 => *route,
            _ => return 0,
        };
        // SAFETY: helper taking a plain integer.
        let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(route.level as i32) };
        // One fault at this level: a compare. Several: the hash. (A value read while chaos
        // rewrites it may be stale; the fault's own program checks its target again.)
        let slot = if route.sole_target != 0 {
            if ancestor != route.sole_target {
                continue;
            }
            route.slot
        } else {
            // SAFETY: the value is a plain integer, copied out at once.
            match unsafe { TARGETS.get(ancestor) } {
                Some(&slot) => slot,
                None => continue,
            }
        };
        // SAFETY: the context is this program's own. On success the call does not return; an
        // empty slot (a fault just removed) falls through and the syscall goes on untouched.
        unsafe { FAULTS.tail_call(ctx, slot) };
        return 0;
    }
    0
}

/// The kernel reads this section to decide which helpers the program may call.
#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier proves every path terminates without panicking; this is never reached.
    loop {}
}
