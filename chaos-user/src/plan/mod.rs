//! The one plan format every fault family produces: which programs attach where, with which
//! configuration and map contents, for how long, on which target. `--dry-run` prints it; the
//! engine loads and attaches it, runs and experiments arm, watch and end it, and reports read
//! it, with no code per family. The values it carries (percentages as exact ppm, durations)
//! are parsed and checked in [`options`].
pub mod action;
pub mod companion;
pub mod options;

use std::{path::PathBuf, time::Duration};

use chaos_common::{Direction, FaultConfig, KernelOffsets};
use serde::Serialize;

use crate::{os::netns::Netns, targets::Target};

/// One fault, ready to load and attach.
#[derive(Clone, Debug, Serialize)]
pub struct FaultPlan {
    /// What it is, e.g. `net drop`.
    pub fault: &'static str,
    /// What its counters call an injection, e.g. `dropped`.
    #[serde(skip)]
    pub injected_word: &'static str,
    /// What its counter slots count when not packet directions, e.g. `calls`.
    #[serde(skip)]
    pub counter_label: Option<&'static str>,
    pub target: Target,
    /// The user's parameters, for people (`summary`) and programs (`parameters`).
    #[serde(skip)]
    pub summary: String,
    pub parameters: serde_json::Value,
    #[serde(serialize_with = "options::serialize_secs")]
    pub duration: Duration,
    pub programs: Vec<PlannedProgram>,
    /// `FAULT_CONFIG[0]`, without its deadline (set when armed).
    #[serde(skip)]
    pub config: FaultConfig,
    pub maps: MapContents,
    /// Kernel struct offsets for programs that read kernel memory (from BTF), when needed.
    #[serde(skip)]
    pub kernel_offsets: Option<KernelOffsets>,
    /// What chaos's own process does while the fault is armed (periodic kills, pauses), when
    /// the fault is done from userspace.
    #[serde(skip)]
    pub userspace: Option<std::sync::Arc<dyn action::UserspaceAction>>,
    /// The part of the fault that works in chaos's own process beside its programs (DNS's
    /// responder): started before they attach, stopped after they are detached.
    #[serde(serialize_with = "serialize_companion", skip_serializing_if = "Option::is_none")]
    pub companion: Option<std::sync::Arc<dyn companion::Companion>>,
}

impl FaultPlan {
    /// The directions the plan has programs for (its counters).
    #[must_use]
    pub fn directions(&self) -> Vec<Direction> {
        let mut directions: Vec<Direction> = Vec::new();
        for program in &self.programs {
            if !directions.contains(&program.direction) {
                directions.push(program.direction);
            }
        }
        directions
    }

    /// Whether its programs find the target by a socket's cgroup (cgroup_skb, cgroup socket
    /// hooks, TC egress), so that sockets opened elsewhere escape it.
    #[must_use]
    pub fn keys_on_sockets(&self) -> bool {
        self.programs.iter().any(|p| {
            matches!(
                p.attach,
                AttachPoint::Cgroup { .. } | AttachPoint::Tc { .. } | AttachPoint::LsmCgroup { per_socket: true, .. }
            )
        })
    }
}

/// One program and where it attaches.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedProgram {
    pub program: &'static str,
    pub hook: &'static str,
    pub attach: AttachPoint,
    #[serde(skip)]
    pub direction: Direction,
}

/// Where a program attaches.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "to", rename_all = "kebab-case")]
pub enum AttachPoint {
    /// The target cgroup's directory (cgroup_skb, cgroup sock_addr, ...).
    Cgroup { cgroup_dir: PathBuf },
    /// A BPF LSM hook (global: the program checks the current task's cgroup).
    Lsm { hook: &'static str },
    /// A BPF LSM hook, per cgroup (lsm_cgroup): the kernel runs the program only for events of
    /// `cgroup_dir` and below, which are the calling task's, or with `per_socket`, the socket's
    /// (the cgroup it was created in). With `global_fallback`, that global program attaches
    /// instead if the kernel has no per-cgroup LSM slot left (10 hooks machine-wide).
    LsmCgroup {
        hook: &'static str,
        cgroup_dir: PathBuf,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        per_socket: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        global_fallback: Option<&'static str>,
    },
    /// A TC hook of an interface in a network namespace.
    Tc {
        #[serde(serialize_with = "serialize_netns")]
        netns: Netns,
        iface: String,
        /// How: a tcx link (6.6+), or a clsact qdisc + cls_bpf filter.
        api: crate::features::TcApi,
        /// The program sets departure times: the interface's root qdisc must be fq (chaos puts
        /// one there and the previous qdisc back afterwards).
        needs_fq: bool,
    },
    /// A raw tracepoint (global: the program checks the current task's cgroup). Programs here
    /// may stop tasks of `cgroup_dir`, which chaos resumes (and a guard process, if chaos dies).
    RawTracepoint { tracepoint: &'static str, cgroup_dir: PathBuf },
    /// A raw tracepoint whose program only signals the task it runs in (crash points): a link
    /// owned by this process, nothing to resume.
    SignallingTracepoint { tracepoint: &'static str },
    /// An fentry program on a syscall's entry function (only that syscall's callers run it; the
    /// program checks the current task's cgroup). With `cgroup_dir`, it may stop tasks of that
    /// cgroup, as on [`Self::RawTracepoint`]; without, it only signals the task it runs in.
    Fentry {
        function: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cgroup_dir: Option<PathBuf>,
    },
    /// A kprobe on a kernel function (global: the program checks the current task's cgroup),
    /// through a perf-event bpf_link owned by this process.
    Kprobe { function: String },
}

impl PlannedProgram {
    /// `attach PROGRAM (HOOK) to PLACE`, as both dry runs print it.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("attach {} ({}) to {}", self.program, self.hook, self.attach.describe())
    }
}

impl AttachPoint {
    /// Where, for people: a cgroup directory, `iface in net:[inode]`, or the LSM hook.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Cgroup { cgroup_dir } => cgroup_dir.display().to_string(),
            Self::Lsm { hook } => format!("LSM hook {hook} (every task; the program keeps the target's)"),
            Self::LsmCgroup { hook, cgroup_dir, per_socket, global_fallback } => format!(
                "LSM hook {hook} of {} and below (lsm_cgroup: only {}{})",
                cgroup_dir.display(),
                if *per_socket { "calls on sockets created there run it" } else { "its tasks run it" },
                if global_fallback.is_some() { "; global if no per-cgroup LSM slot is left" } else { "" }
            ),
            Self::RawTracepoint { tracepoint, .. } | Self::SignallingTracepoint { tracepoint } => {
                format!("raw tracepoint {tracepoint} (every task; the program keeps the target's)")
            }
            Self::Tc { netns, iface, .. } => format!("{iface} in net:[{}]", netns.inode),
            Self::Kprobe { function } => format!("kprobe on {function} (every task; the program keeps the target's)"),
            Self::Fentry { function, .. } => {
                format!("fentry on {function} (only this syscall's callers; the program keeps the target's)")
            }
        }
    }
}

fn serialize_companion<S: serde::Serializer>(
    companion: &Option<std::sync::Arc<dyn companion::Companion>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&companion.as_ref().map(|c| c.describe()).unwrap_or_default())
}

fn serialize_netns<S: serde::Serializer>(netns: &Netns, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("net:[{}]", netns.inode))
}

/// What goes into the filter maps before anything attaches.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MapContents {
    /// `REMOTE_V4` / `REMOTE_V6` entries: (prefix length, address bytes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_v4: Vec<(u32, [u8; 4])>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_v6: Vec<(u32, [u8; 16])>,
    /// `PORT_SETS` words (remote set, then local set), when a port filter is active.
    #[serde(skip)]
    pub port_sets: Option<Vec<u64>>,
    /// `SYSCALL_SET` words (a bitmap of syscall numbers), for `syscall delay`.
    #[serde(skip)]
    pub syscall_set: Option<Vec<u64>>,
}
