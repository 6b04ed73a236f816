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
/// Temporary home until the restructure's `fault/mod.rs` lands (then: `fault::syscall`).
#[path = "fault/syscall/error_injection.rs"]
pub mod error_injection;
pub mod experiment;
pub mod features;
pub mod guard;
pub mod ledger;
pub mod netlink;
pub mod netns;
pub mod plan;
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
