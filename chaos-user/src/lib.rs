//! chaos: kernel-level fault injection for one cgroup at a time.
//!
//! The path of one fault: flags or a `[[fault]]` table -> a family's options in [`fault`]
//! (validated) -> [`target`] (resolved cgroup) + [`features`] (what this kernel can do) -> the
//! family's planner ([`fault::FaultPlan`]: programs, hooks, map contents) -> [`engine`] (links
//! owned by this process, or pinned) -> [`run`] (deadline, signals, counters) -> [`report`].
//! Experiments ([`experiment`]) drive the same path for several faults with steady-state
//! checks ([`steady`]).
pub mod cli;
mod daemon;
mod engine;
mod experiment;
mod fault;
mod features;
mod hints;
mod injections;
mod ledger;
mod live;
mod os;
mod plan;
mod report;
mod run;
mod run_all;
mod run_records;
mod steady;
mod targets;

/// The binary takes the host's view of cgroups first, while it has one thread.
pub use os::host_view;
