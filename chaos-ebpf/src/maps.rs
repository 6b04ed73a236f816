//! The maps userspace fills and reads (names and layouts in chaos-common).
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use chaos_common::{Direction, FaultConfig, FaultCounters};

/// One entry: this object's fault.
#[map(name = "FAULT_CONFIG")]
pub(crate) static FAULT_CONFIG: Array<FaultConfig> = Array::with_max_entries(1, 0);

/// One entry per direction, per CPU: increments need no atomics and never contend.
#[map(name = "FAULT_COUNTERS")]
pub(crate) static FAULT_COUNTERS: PerCpuArray<FaultCounters> =
    PerCpuArray::with_max_entries(Direction::COUNT, 0);
