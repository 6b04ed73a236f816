//! The maps userspace fills and reads (names and layouts in chaos-common).
use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray, RingBuf},
};
use chaos_common::{
    Direction, FaultConfig, FaultCounters, SYSCALL_SET_BITS, ScheduleState, TraceWindow, WORDS_PER_PORT_SET,
};

/// One entry: this object's fault.
#[map(name = "FAULT_CONFIG")]
pub(crate) static FAULT_CONFIG: Array<FaultConfig> = Array::with_max_entries(1, 0);

/// One entry per direction, per CPU: increments need no atomics and never contend.
#[map(name = "FAULT_COUNTERS")]
pub(crate) static FAULT_COUNTERS: PerCpuArray<FaultCounters> = PerCpuArray::with_max_entries(Direction::COUNT, 0);

/// Exact machine-wide counts for schedules; only touched when the fault has one.
#[map(name = "FAULT_SCHEDULE")]
pub(crate) static FAULT_SCHEDULE: Array<ScheduleState> = Array::with_max_entries(1, 0);

/// The burst-loss model's state: 0 good, 1 bad. Shared by all CPUs: bursts span the whole
/// target, not one CPU's share of it.
#[map(name = "BURST_STATE")]
pub(crate) static BURST_STATE: Array<u32> = Array::with_max_entries(1, 0);

/// Remote address prefixes (`--remote`, `partition --to`), one trie per family.
#[map(name = "REMOTE_V4")]
pub(crate) static REMOTE_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(1024, 0);
#[map(name = "REMOTE_V6")]
pub(crate) static REMOTE_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(1024, 0);

/// Syscall numbers `syscall delay` watches, as a bitmap: one lookup per call.
#[map(name = "SYSCALL_SET")]
pub(crate) static SYSCALL_SET: Array<u64> = Array::with_max_entries(SYSCALL_SET_BITS / 64, 0);

/// Tasks stopped by `syscall delay`, for the controller to resume. 64 KiB holds thousands of
/// events; a full buffer means the task is not stopped at all (see syscall/delay.rs).
#[map(name = "STOP_EVENTS")]
pub(crate) static STOP_EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// `net rate`: the next free departure time, shared by all CPUs.
#[map(name = "RATE_STATE")]
pub(crate) static RATE_STATE: Array<u64> = Array::with_max_entries(1, 0);

/// Two port sets as bitmaps (remote, then local): any list or range is one lookup.
#[map(name = "PORT_SETS")]
pub(crate) static PORT_SETS: Array<u64> = Array::with_max_entries(2 * WORDS_PER_PORT_SET, 0);

/// Processes a crash point signalled, for the controller's timeline. A full buffer loses the
/// event, never the kill.
#[map(name = "KILL_EVENTS")]
pub(crate) static KILL_EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024, 0);

/// `--trace-injections`: a sample of what the fault did, for the controller's log and
/// timeline. 64 KiB holds about 800 records, several seconds at the default 100 a second; a
/// full buffer loses the record, never the injection.
#[map(name = "INJECTIONS")]
pub(crate) static INJECTIONS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// `net sever --after-bytes`: the connections it silenced, once each, for the controller (which
/// destroys them with `--mode reset`). 64 KiB holds about 900 reports between two reads; a full
/// buffer loses the report, never the silence.
#[map(name = "SEVER_EVENTS")]
pub(crate) static SEVER_EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// The trace rate limit (trace.rs): records taken this second, shared by all CPUs.
#[map(name = "TRACE_WINDOW")]
pub(crate) static TRACE_WINDOW: Array<TraceWindow> = Array::with_max_entries(1, 0);
