//! The `chaos proc` family: crash a target's processes (`proc kill`, on a schedule from
//! userspace or at an exact syscall from the kernel) and freeze the whole target
//! (`proc pause`, the cgroup v2 freezer).
//!
//! The building blocks, each in its own file: which processes a cgroup holds and which one to
//! hit ([`pick`]), the periodic ticker with jitter and a cap ([`ticker`]), and the thread that
//! kills and pauses on that schedule (`fault::actor`); signal names and the cgroup's freezer and
//! `cgroup.kill` are the kernel's, in `os/`. A frozen target is thawed by the guard process if
//! chaos dies (os/guard.rs) and by `chaos cleanup` if the guard died too (ledger.rs).
pub mod kill;
pub mod pause;
pub mod pick;
pub mod ticker;
