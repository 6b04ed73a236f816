//! `syscall fail` options: one definition for the command line and experiment files.
use std::path::PathBuf;

use super::{
    Ppm,
    net::{Cidr, NetFilters, PortSet, parse_cidr, parse_ports},
};
use crate::{
    errno,
    plan::syscall::{Backend, Schedule},
    syscalls::{self, Syscall},
};

/// Schedules over a fault's matching calls (`--after`, `--first`, `--every`, `--max`), shared
/// by every syscall fault.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct ScheduleOptions {
    /// Leave the first N matching calls alone.
    #[arg(long, value_name = "N")]
    pub after: Option<u64>,
    /// Only the first N matching calls (after --after) are eligible.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub first: Option<u64>,
    /// Only every Nth eligible call.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
    /// Apply the fault to at most K calls in all.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
}

impl ScheduleOptions {
    #[must_use]
    pub const fn schedule(&self) -> Schedule {
        Schedule { after: self.after, first: self.first, every: self.every, max: self.max }
    }
}

/// `syscall fail`.
#[derive(Clone, Debug, clap::Args)]
pub struct SyscallFailOptions {
    /// Comma-separated syscall names (see `chaos syscall list`); repeatable.
    #[arg(long = "syscall", value_name = "NAMES", required = true, value_parser = syscalls::parse_list)]
    pub syscalls: Vec<Vec<&'static Syscall>>,
    /// The error, by name or number: EIO, ENOSPC, ECONNREFUSED, EACCES, ETIMEDOUT, ...
    #[arg(long, value_parser = errno::parse)]
    pub errno: i32,
    /// Share of matching calls to fail, in percent.
    #[arg(long, value_parser = super::parse_percent, default_value = "100")]
    pub percent: Ppm,
    /// Only files under this directory (or this file): file syscalls only.
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<PathBuf>,
    /// Only calls whose peer address is in this prefix (repeatable): connect, sendto.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub remote: Vec<Cidr>,
    /// Only calls whose peer port is in this set.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub remote_port: Vec<PortSet>,
    #[command(flatten)]
    pub schedule: ScheduleOptions,
    /// The mechanism: BPF LSM hooks, error injection (override), cgroup socket hooks, or the
    /// best this kernel has (auto: LSM, then override, then cgroup hooks).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: Backend,
}

impl SyscallFailOptions {
    /// The syscalls asked for, each once, in order.
    #[must_use]
    pub fn chosen(&self) -> Vec<&'static Syscall> {
        let mut chosen: Vec<&'static Syscall> = Vec::new();
        for syscall in self.syscalls.iter().flatten() {
            if !chosen.iter().any(|s| s.name == syscall.name) {
                chosen.push(syscall);
            }
        }
        chosen
    }

    #[must_use]
    pub fn filters(&self) -> NetFilters {
        let mut remote_ports = PortSet::default();
        self.remote_port.iter().for_each(|p| remote_ports.extend(p));
        NetFilters { remote: self.remote.clone(), remote_ports, ..NetFilters::default() }
    }
}

/// `syscall delay`.
#[derive(Clone, Debug, clap::Args)]
pub struct SyscallDelayOptions {
    /// Comma-separated syscall names; repeatable (any of the common x86_64 syscalls).
    #[arg(long = "syscall", value_name = "NAMES", required = true, value_parser = crate::syscall_numbers::parse_list)]
    pub syscalls: Vec<Vec<crate::syscall_numbers::Numbered>>,
    /// How long each matching call is held, e.g. 50ms (up to 10s).
    #[arg(long, value_name = "DELAY", value_parser = super::parse_delay)]
    pub by: std::time::Duration,
    /// Spread each delay uniformly by up to this much either way.
    #[arg(long, value_name = "DELAY", value_parser = super::parse_delay)]
    pub jitter: Option<std::time::Duration>,
    /// Share of matching calls to delay, in percent.
    #[arg(long, value_parser = super::parse_percent, default_value = "100")]
    pub percent: Ppm,
    #[command(flatten)]
    pub schedule: ScheduleOptions,
}

impl SyscallDelayOptions {
    #[must_use]
    pub fn chosen(&self) -> Vec<crate::syscall_numbers::Numbered> {
        let mut chosen: Vec<crate::syscall_numbers::Numbered> = Vec::new();
        for syscall in self.syscalls.iter().flatten() {
            if !chosen.iter().any(|s| s.number == syscall.number) {
                chosen.push(*syscall);
            }
        }
        chosen
    }
}
