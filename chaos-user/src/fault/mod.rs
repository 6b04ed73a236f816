//! Fault families: each family's options (one clap definition, for the command line and
//! experiment files alike) and its planner, which turns them into what will be done: which
//! programs attach where, with which configuration and map contents. `--dry-run` prints the
//! plan and stops. Every family produces the same [`FaultPlan`], so the engine, runs, reports
//! and experiments need no per-family code. Adding a family: its module here, one line in
//! [`registry::FAULT_KINDS`], an [`AttachPoint`] arm if it needs a new kind of hook.
pub mod actor;
pub mod dns;
pub mod limit;
pub mod net;
pub mod proc;
pub mod registry;
pub mod syscall;
pub mod traced;

use std::time::Duration;

pub use crate::plan::{AttachPoint, FaultPlan, MapContents, PlannedProgram, options};
use crate::{features::Prober, plan::options::Ppm, targets::Target};

/// What a fault needs besides its own options to become a plan.
pub struct FaultContext<'a> {
    pub target: &'a Target,
    pub duration: Duration,
    /// The user passed `--i-know` (host interfaces for TC faults, durations over the cap).
    pub i_know: bool,
    pub kernel: &'a Prober,
}

/// A fault family's options, as the command line and experiment files parse them (one clap
/// definition per family), turned into a plan. This is what makes a family usable from both.
pub trait PlanFault: std::fmt::Debug {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError>;

    /// The probability the user asked for, when the fault has one: a ramp rewrites the
    /// config's threshold between 0 and this.
    fn percent(&self) -> Option<Ppm> {
        None
    }

    /// Whether a ramp tightens this fault rather than raising it: a limit's ramp goes from a
    /// looser value (`from`) down to the fault's own (cpu from 80 % of a CPU down to 10 %).
    fn ramp_tightens(&self) -> bool {
        false
    }

    /// Whether the fault may leave kernel state behind a crash (legacy TC filters), so that
    /// the ledger's stale records should be cleaned up before it attaches.
    fn uses_ledger(&self) -> bool {
        false
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{family} is not supported by this kernel: {reason}")]
    Unsupported { family: &'static str, reason: String },
    #[error(transparent)]
    Netns(#[from] crate::os::netns::NetnsError),
    /// Refused: the options cannot work on this target or kernel; the message says why.
    #[error("{0}")]
    Refused(String),
    #[error("listing the interfaces of {target}: {source}")]
    Interfaces { target: String, source: std::io::Error },
    #[error("--path needs this kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    NoBtf(#[source] std::io::Error),
    #[error("--path {path}: {source} (the filter needs an existing directory or file)")]
    NoSuchPath { path: String, source: std::io::Error },
}

/// The depth of a cgroup below the root: `/a/b` is 2 (the root is level 0).
#[must_use]
pub fn cgroup_level(cgroup: &str) -> u32 {
    cgroup.split('/').filter(|c| !c.is_empty()).count() as u32
}

#[cfg(test)]
mod tests {
    use super::cgroup_level;

    #[test]
    fn cgroup_levels_count_components() {
        assert_eq!(cgroup_level("/"), 0);
        assert_eq!(cgroup_level("/a"), 1);
        assert_eq!(cgroup_level("/system.slice/x.service"), 2);
    }
}
