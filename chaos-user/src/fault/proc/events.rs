//! What a userspace action did, one event per kill, freeze or thaw (`proc`) or severed
//! connection (`net sever`): for the command line's JSON summary and an experiment's timeline
//! (`proc` events).
use serde::{Deserialize, Serialize};

/// One thing a `proc` action did, for the timeline and the JSON summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum ProcEvent {
    /// A signal sent to one process.
    Kill {
        pid: u32,
        comm: String,
        signal: String,
        at_ns: u64,
    },
    /// `cgroup.kill` took the whole cgroup down at once.
    KillAll {
        processes: usize,
        at_ns: u64,
    },
    /// A tick killed nothing: the target was empty (between a crash and its restart), or
    /// held more processes than `--max-procs` allows for `--pick all`.
    NoKill {
        reason: String,
        at_ns: u64,
    },
    /// The target was frozen (`frozen_after_ns`: until `cgroup.events` said so).
    Freeze {
        at_ns: u64,
        frozen_after_ns: Option<u64>,
    },
    Thaw {
        at_ns: u64,
    },
    /// `net sever`: one connection reset, or silenced (`--after-bytes`); `pid` and `comm` name
    /// the process holding it, with `--trace-injections`.
    Sever {
        how: String,
        local: String,
        remote: String,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comm: Option<String>,
        at_ns: u64,
    },
    /// `net sever` could not do all it meant to (the kernel refused a step); the run goes on.
    NoSever {
        reason: String,
        at_ns: u64,
    },
}
