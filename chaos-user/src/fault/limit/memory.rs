//! `chaos limit memory`: `--high` sets `memory.high`, above which the kernel reclaims the
//! target's memory and throttles its allocations (the slow death of a node short of memory, not
//! a kill); `--max` sets `memory.max`, the hard limit past which the kernel's OOM killer acts
//! inside the target; `--oom` makes it act now, once: memory.max goes for a moment just below
//! what the target holds besides its page cache, so the kernel kills the process it chooses
//! (its largest, oom_score_adj respected), then memory.max goes back.
//!
//! Percentages are of the target's own memory.max, or of its current usage when it has none:
//! never of the node's memory.
use super::{
    LimitPlan, Resource, Setting,
    amounts::{self, MemoryAmount},
};
use crate::{
    fault::{FaultContext, FaultPlan, PlanError, PlanFault},
    plan::options::Ppm,
};

/// `limit memory`.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "memory-limit", required = true, multiple = true)]
pub struct LimitMemoryOptions {
    /// memory.high: above it the kernel reclaims the target's memory and slows its allocations
    /// (nothing is killed). A size (200M, 1G: powers of 1024) or a percentage of the target's
    /// memory.max (of its current usage when it has no memory.max).
    #[arg(long, value_name = "SIZE|PERCENT", value_parser = amounts::parse_memory)]
    pub high: Option<MemoryAmount>,
    /// memory.max: the hard limit; an allocation past it that reclaim cannot satisfy gets the
    /// kernel's OOM killer, inside the target. Same notation as --high.
    #[arg(long, value_name = "SIZE|PERCENT", value_parser = amounts::parse_memory)]
    pub max: Option<MemoryAmount>,
    /// Make the kernel's OOM killer act inside the target now, once: it kills the process it
    /// chooses (the largest, oom_score_adj respected); memory.events oom_kill counts it.
    #[arg(long)]
    pub oom: bool,
}

impl LimitMemoryOptions {
    fn limit(&self) -> LimitPlan {
        let mut settings = Vec::new();
        if let Some(amount) = self.high {
            settings.push(Setting::MemoryHigh { amount });
        }
        if let Some(amount) = self.max {
            settings.push(Setting::MemoryMax { amount });
        }
        LimitPlan { resource: Resource::Memory, settings, oom: self.oom, device: None, start_ppm: None }
    }
}

impl PlanFault for LimitMemoryOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let mut parts = Vec::new();
        if let Some(high) = self.high {
            parts.push(format!("memory.high {high}: reclaimed and throttled above it"));
        }
        if let Some(max) = self.max {
            parts.push(format!("memory.max {max}: OOM-killed inside the target past it"));
        }
        if self.oom {
            parts.push("one OOM kill now, the kernel's choice of process".to_owned());
        }
        super::plan(&self.limit(), context, parts.join("; "))
    }

    fn percent(&self) -> Option<Ppm> {
        self.limit().settings.first().and_then(Setting::ppm)
    }

    fn ramp_tightens(&self) -> bool {
        true
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}
