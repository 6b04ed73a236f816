//! The engine: loads the eBPF object, writes a fault's configuration and maps, attaches its
//! programs (`attach`: cgroup, LSM, tracepoints; `tc`: TC programs, fq and their ledger
//! records), pins them for detached experiments (`pin`), reads a traced fault's injection
//! records (`trace`), and detaches them. Faults on the raw `sys_enter` tracepoint share one
//! program per process (`dispatch`).
//!
//! Everything attached here is owned by this process: cgroup programs and tcx programs through
//! bpf_link file descriptors, which the kernel drops with the process, SIGKILL included. Legacy
//! TC filters (kernels before 6.6) are netlink objects that outlive it: they are written to the
//! [`ledger`](crate::ledger) so `chaos cleanup` or the next run removes them after a crash, and
//! until then the kernel-enforced deadline keeps them inert.
pub(crate) mod attach;
pub(crate) mod dispatch;
pub(crate) mod load;
mod object;
pub(crate) mod pin;
pub(crate) mod tc;
pub(crate) mod trace;

use aya::{
    EbpfError,
    maps::{MapData, MapError, PerCpuArray},
    programs::ProgramError,
};
use chaos_common::{Direction, FaultCounters, maps};
pub(crate) use load::LoadedFault;
pub(crate) use pin::PinnedFault;

use crate::{features::describe_program_error, os::errno};

#[derive(Debug, thiserror::Error)]
pub(crate) enum AttachError {
    #[error(
        "this chaos binary was built without its eBPF object (AYA_BUILD_SKIP was set); rebuild it \
         without AYA_BUILD_SKIP"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] EbpfError),
    #[error("program {program}: {reason}")]
    Program { program: &'static str, reason: String },
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("cannot open cgroup directory {path}: {source}")]
    Cgroup { path: String, source: std::io::Error },
    /// A TC step (qdisc, filter, its ledger record) that failed, and where.
    #[error("{what}: {source}")]
    Tc { what: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// Entering the target's network namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::os::netns::NetnsError),
    /// Pinning a link or a map failed.
    #[error("pinning {what} in {dir}: {source}")]
    Pin { what: String, dir: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// Another run holds what this fault needs (one departure-time writer per interface).
    #[error("{0}")]
    Refused(String),
    /// The fault holds something that cannot outlive chaos, so it cannot be detached.
    #[error("{0}")]
    NotPinnable(String),
}

impl AttachError {
    fn tc(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Tc { what: what.into(), source: source.into() }
    }
}

/// The counters of `directions` in a fault's counter map, summed over CPUs and directions:
/// the one place that adds them up, for loaded and pinned faults alike.
fn sum_counters(
    counters: &PerCpuArray<impl std::borrow::Borrow<MapData>, FaultCounters>,
    directions: &[Direction],
) -> Result<FaultCounters, AttachError> {
    let mut sum = FaultCounters::default();
    for direction in directions {
        let per_cpu = counters
            .get(&direction.index(), 0)
            .map_err(|source| AttachError::Map { map: maps::FAULT_COUNTERS, source })?;
        sum = per_cpu.iter().fold(sum, |s, c| s.add(*c));
    }
    Ok(sum)
}

fn program_error(program: &'static str, doing: &str, err: &ProgramError) -> AttachError {
    let reason = match err {
        ProgramError::LoadError { io_error, verifier_log } => format!(
            "{doing} failed: the kernel returned {}{}\nverifier log:\n{verifier_log}",
            errno::name_of(io_error),
            privilege_hint(io_error)
        ),
        ProgramError::SyscallError(syscall) => {
            format!("{doing} failed: {}{}", describe_program_error(err), privilege_hint(&syscall.io_error))
        }
        other => format!("{doing} failed: {other}"),
    };
    AttachError::Program { program, reason }
}

fn privilege_hint(err: &std::io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EPERM) => " (run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; `chaos doctor` checks)",
        Some(libc::EMFILE) => {
            " (this process has as many open files as RLIMIT_NOFILE's hard limit allows; each fault holds about 30: \
             raise it, e.g. `ulimit -Hn` or LimitNOFILE= in the unit)"
        }
        _ => "",
    }
}
