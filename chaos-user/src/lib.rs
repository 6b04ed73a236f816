//! chaos: kernel-level fault injection for one cgroup at a time.
//!
//! The path of one experiment: flags -> [`spec`] (validated request) -> [`target`] (resolved
//! cgroup) + [`features`] (what this kernel can do) -> [`plan`] (programs, hooks, map contents)
//! -> [`attach`] (links owned by this process) -> [`run`] (deadline, signals, counters) ->
//! [`report`].
pub mod attach;
pub mod btf;
pub mod cli;
pub mod errno;
pub mod experiment;
pub mod features;
// Temporary home until the restructure adds fault/mod.rs (then: `pub mod proc;` there).
pub mod guard;
pub mod ledger;
pub mod netlink;
pub mod netns;
pub mod plan;
#[path = "fault/proc/mod.rs"]
pub mod proc_fault;
pub mod report;
pub mod resumer;
pub mod run;
pub mod runs;
pub mod spec;
pub mod steady;
pub mod sys;
pub mod syscall_numbers;
pub mod syscalls;
pub mod target;
