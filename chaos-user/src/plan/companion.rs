//! A fault's part that works in chaos's own process beside its programs: the DNS responder
//! answers the queries the DNS programs send it. The plan carries it ([`FaultPlan::companion`]);
//! the engine starts it after the object is loaded and before any program attaches (it writes
//! what the programs need into the object's maps), tells it every configuration written (armed,
//! ramped, disarmed), adds its counters and injection records to the fault's, and stops it once
//! the programs are detached. Nothing of it outlives the process: a companion holds sockets and
//! threads, never kernel state.
//!
//! Why not a [`UserspaceAction`](super::action::UserspaceAction): an action starts when the
//! fault is armed and only acts on the target from outside (kills, freezes, resets), then says
//! what it did once, at its end. A companion is part of the programs' own path: it must run
//! before they attach (they send it the target's queries, and read the maps it fills), follow
//! every configuration the engine writes (a ramp, a disarm between experiment steps), count
//! into the fault's counters while it runs, and outlive the links (it answers what it holds
//! before they go). The engine, not the run, owns it, so every run and experiment gets it with
//! the loaded object, as it gets the programs.
//!
//! [`FaultPlan::companion`]: super::FaultPlan::companion
use std::sync::Arc;

use chaos_common::{FaultConfig, FaultCounters};

use crate::injections::Injection;

/// What a plan says about its companion: how to start it.
pub trait Companion: Send + Sync + std::fmt::Debug {
    /// One line for `--dry-run`: what will run where.
    fn describe(&self) -> String;

    /// Starts it, before the programs attach; `object` is the fault's loaded eBPF object (its
    /// maps exist, its programs are not loaded yet).
    fn start(&self, object: &mut aya::Ebpf) -> Result<Arc<dyn RunningCompanion>, String>;

    /// The likely reasons, for the "seen nothing for 10 s" hint, why the companion sees nothing;
    /// its counters are the fault's.
    fn quiet_reasons(&self) -> &'static str;
}

/// A started companion.
pub trait RunningCompanion: Send + Sync {
    /// The fault's configuration as just written to its map (deadline, probability).
    fn configure(&self, config: &FaultConfig);

    /// What it counted: seen, matched, injected.
    fn counters(&self) -> FaultCounters;

    /// The injection records it made since the last call (traced faults).
    fn take_injections(&self) -> Vec<Injection>;

    /// Waits, briefly, until what it holds is done (the DNS responder's queries in flight);
    /// called once the fault is disarmed, before the programs are detached.
    fn quiesce(&self);

    /// Stops it (its threads end and its sockets close); called once the programs are detached.
    fn stop(&self);
}
