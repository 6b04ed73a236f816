//! Syscall faults: make chosen calls of the target fail with an errno (`fail`), or hold them
//! for a while (`delay`). What they share is here: exact schedules over a fault's matching
//! calls, counted by BPF atomics machine-wide. The syscalls' hooks and numbers, and syscall
//! delay's holder (per thread), resumer and guard (per process), have files of their own.
pub(crate) mod delay;
pub(crate) mod entry_hook;
pub(crate) mod error_injection;
pub(crate) mod fail;
pub(crate) mod hooks;
pub(crate) mod lsm_attach;

use chaos_common::{FaultConfig, flags};

/// Schedules over a fault's matching calls (`--after`, `--first`, `--every`, `--max`), shared
/// by every syscall fault.
#[derive(Clone, Copy, Debug, clap::Args)]
pub(crate) struct ScheduleOptions {
    /// Leave the first N matching calls alone.
    #[arg(long, value_name = "N")]
    pub after: Option<u64>,
    /// Only the first N matching calls (after --after) are eligible.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub first: Option<u64>,
    /// Only every Nth eligible call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
    /// Apply the fault to at most K calls in all.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
}

impl ScheduleOptions {
    #[must_use]
    pub(crate) const fn schedule(&self) -> Schedule {
        Schedule { after: self.after, first: self.first, every: self.every, max: self.max }
    }
}

/// `--after`, `--first`, `--every`, `--max`: exact counts over the fault's matching calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Schedule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

impl Schedule {
    #[must_use]
    pub(crate) const fn is_set(&self) -> bool {
        self.after.is_some() || self.first.is_some() || self.every.is_some() || self.max.is_some()
    }

    /// Writes the schedule into the fault's configuration (exact, machine-wide counts).
    pub(crate) fn apply(&self, config: &mut FaultConfig) {
        if !self.is_set() {
            return;
        }
        config.flags |= flags::SCHEDULE;
        config.skip_first = self.after.unwrap_or(0);
        config.only_first = self.first.unwrap_or(0);
        config.every = self.every.unwrap_or(0);
        config.max_injections = self.max.unwrap_or(0);
    }

    #[must_use]
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.after {
            parts.push(format!("after the first {n}"));
        }
        if let Some(n) = self.first {
            parts.push(format!("only the first {n}"));
        }
        if let Some(n) = self.every {
            parts.push(format!("every {n}th"));
        }
        if let Some(n) = self.max {
            parts.push(format!("at most {n} times"));
        }
        parts.join(", ")
    }
}
