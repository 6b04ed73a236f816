//! chaos: kernel-level fault injection for one cgroup at a time.
//!
//! The path of one fault: flags or a `[[fault]]` table -> a family's options in [`fault`]
//! (validated) -> [`target`] (resolved cgroup) + [`features`] (what this kernel can do) -> the
//! family's planner ([`fault::FaultPlan`]: programs, hooks, map contents) -> [`engine`] (links
//! owned by this process, or pinned) -> [`run`] (deadline, signals, counters) -> [`report`].
//! Experiments ([`experiment`]) drive the same path for several faults with steady-state
//! checks ([`steady`]).
pub mod cli;
pub mod daemon;
pub mod engine;
pub mod experiment;
pub mod fault;
pub mod features;
pub mod hints;
pub mod injections;
pub mod ledger;
pub mod live;
pub mod os;
pub mod plan;
pub mod report;
pub mod run;
pub mod run_all;
pub mod run_records;
pub mod steady;
pub mod targets;
