//! What the kernel side and the userspace side of chaos agree on: the layout of the maps that
//! configure a fault and count what it did.
//!
//! One loaded eBPF object serves one fault: its `FAULT_CONFIG` map holds one [`FaultConfig`], and
//! its `FAULT_COUNTERS` per-CPU map holds one [`FaultCounters`] per [`Direction`]. Running two
//! faults means loading the object twice; nothing is generated per fault.
//!
//! All structs are `#[repr(C)]` with explicit padding fields so both compilers agree on the layout
//! and no uninitialised bytes reach the kernel.
#![no_std]

/// Name of the array map (one entry) holding the fault's [`FaultConfig`].
pub const FAULT_CONFIG_MAP: &str = "FAULT_CONFIG";
/// Name of the per-CPU array map holding one [`FaultCounters`] per [`Direction`].
pub const FAULT_COUNTERS_MAP: &str = "FAULT_COUNTERS";

/// Probabilities are given in parts per million: 1 ppm is the finest step a user can ask for.
pub const PPM_SCALE: u32 = 1_000_000;

/// How a fault's probability reaches the kernel: the program fires when a fresh
/// `bpf_get_prandom_u32()` is below `threshold`. Working on the full 32-bit range (rather than
/// `rand % 1_000_000`) avoids modulo bias, and a `u64` lets 100 % (2^32) always fire.
#[must_use]
pub const fn threshold_from_ppm(ppm: u32) -> u64 {
    let ppm = if ppm > PPM_SCALE { PPM_SCALE } else { ppm };
    ((ppm as u64) << 32) / PPM_SCALE as u64
}

/// Which way a packet travels, seen from the target.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Egress = 0,
    Ingress = 1,
}

impl Direction {
    pub const ALL: [Self; 2] = [Self::Egress, Self::Ingress];
    pub const COUNT: u32 = 2;

    #[must_use]
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// One fault, as the kernel sees it. Written by userspace before the programs attach; may be
/// rewritten while they run (a new rate is a map write, not a reload).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// `CLOCK_MONOTONIC` time in ns (`bpf_ktime_get_ns`) at which the fault switches itself off.
    /// 0 means disarmed. This is the kernel-enforced time box: it holds even when the controller
    /// is stopped or dead.
    pub deadline_ns: u64,
    /// See [`threshold_from_ppm`].
    pub threshold: u64,
}

/// What a fault did, counted per CPU and per direction while it was live.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Events (packets, calls) the program saw while the fault was live.
    pub seen: u64,
    /// Of those, the ones that passed the fault's filters.
    pub matched: u64,
    /// Of those, the ones the fault was applied to.
    pub injected: u64,
}

impl FaultCounters {
    #[must_use]
    pub const fn add(self, other: Self) -> Self {
        Self {
            seen: self.seen + other.seen,
            matched: self.matched + other.matched,
            injected: self.injected + other.injected,
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, every field an integer, padding spelled out.
    unsafe impl aya::Pod for super::FaultConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FaultCounters {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_covers_the_edges() {
        assert_eq!(threshold_from_ppm(0), 0);
        assert_eq!(threshold_from_ppm(PPM_SCALE), 1 << 32);
        assert_eq!(threshold_from_ppm(PPM_SCALE + 5), 1 << 32);
        // 20 %: exactly a fifth of the 32-bit range, rounded down.
        assert_eq!(threshold_from_ppm(200_000), (1u64 << 32) / 5);
    }

    #[test]
    fn one_ppm_is_a_distinct_step() {
        // Every ppm step moves the threshold (about 4295 per ppm), so 1 ppm is representable.
        for ppm in [1, 2, 999_999] {
            assert!(threshold_from_ppm(ppm) > threshold_from_ppm(ppm - 1));
        }
    }
}
