//! What a limit did and saw, one event at a time: a file set (with what it held before), a
//! sample of the target's pressure and counters (about once a second), an OOM kill, a file put
//! back (or left to whoever changed it). The command line's JSON summary lists them; an
//! experiment's timeline has them as `limit` events, from which its reports draw pressure over
//! time.
use serde::{Deserialize, Serialize};

use super::{Resource, evidence::Window};
use crate::os::cgroup_files::{Knob, Restore};

/// One thing a limit did or saw.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum LimitEvent {
    /// A file was set: it held `previous`, chaos wrote `value`.
    Set {
        #[serde(flatten)]
        knob: Knob,
        previous: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        at_ns: u64,
    },
    /// The target's pressure and counters over the last window (about a second).
    Sample {
        resource: Resource,
        #[serde(flatten)]
        window: Window,
        at_ns: u64,
    },
    /// `limit memory --oom`: memory.max went to `floor` bytes for a moment and the kernel's OOM
    /// killer acted `kills` times; `gone` are the processes missing afterwards.
    OomKill { floor: u64, kills: u64, gone: Vec<Gone>, at_ns: u64 },
    /// A file chaos set, at the end: put back, already back, or left to whoever changed it.
    Restore {
        #[serde(flatten)]
        knob: Knob,
        previous: String,
        #[serde(flatten)]
        outcome: Restore,
        at_ns: u64,
    },
    /// A file could not be put back; its ledger record stays for `chaos cleanup`.
    RestoreFailed {
        #[serde(flatten)]
        knob: Knob,
        previous: String,
        error: String,
        at_ns: u64,
    },
}

/// A process that was in the target before an OOM kill and is not after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gone {
    pub pid: u32,
    pub comm: String,
}

impl LimitEvent {
    /// When it happened (CLOCK_MONOTONIC ns).
    #[must_use]
    pub const fn at_ns(&self) -> u64 {
        match self {
            Self::Set { at_ns, .. }
            | Self::Sample { at_ns, .. }
            | Self::OomKill { at_ns, .. }
            | Self::Restore { at_ns, .. }
            | Self::RestoreFailed { at_ns, .. } => *at_ns,
        }
    }

    /// A line for people, except for samples (the summaries show those as tables and charts).
    #[must_use]
    pub fn describe(&self) -> Option<String> {
        Some(match self {
            Self::Set { knob, previous, value, note, .. } => format!(
                "set {} to {value} (it was {previous}){}",
                knob.label(),
                note.as_ref().map_or_else(String::new, |n| format!(": {n}"))
            ),
            Self::Sample { .. } => return None,
            Self::OomKill { floor, kills, gone, .. } => {
                let names: Vec<String> = gone.iter().map(|g| format!("{} ({})", g.pid, g.comm)).collect();
                format!(
                    "OOM kill: memory.max {floor} for a moment; the kernel killed {kills} time(s){}",
                    if names.is_empty() { String::new() } else { format!("; gone: {}", names.join(", ")) }
                )
            }
            Self::Restore { knob, previous, outcome, .. } => match outcome {
                Restore::Restored => format!("put {} back to {previous}", knob.label()),
                Restore::AlreadyBack => format!("{} was already back to {previous}", knob.label()),
                Restore::ChangedByOthers { found } => format!(
                    "left {} as someone else set it during the fault ({found}; chaos had written another value, and \
                     it was {previous} before)",
                    knob.label()
                ),
                Restore::Gone => format!("{}: the cgroup is gone, and the limit with it", knob.label()),
            },
            Self::RestoreFailed { knob, previous, error, .. } => format!(
                "could not put {} back to {previous}: {error}; the guard and `chaos cleanup` retry",
                knob.label()
            ),
        })
    }
}
