//! The one list of fault kinds: each kind's name as the command line spells it (`net drop`) and
//! its options struct, which implements [`PlanFault`]. The command line flattens those structs
//! into its subcommands, and experiment files parse a `[[fault]]` table through the same
//! definitions (`experiment::faults`), so names, defaults, parsers and messages are the same.
//!
//! Adding a family is one entry in [`FAULT_KINDS`] (and its subcommand in `cli`).
use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::{
    PlanFault,
    dns::{DnsDelayOptions, DnsDropOptions, DnsFailOptions, DnsSpoofOptions},
    limit::{cpu::LimitCpuOptions, io::LimitIoOptions, memory::LimitMemoryOptions, pids::LimitPidsOptions},
    net::{
        drop::NetDropOptions,
        partition::NetPartitionOptions,
        rewrite::{NetCorruptOptions, NetDuplicateOptions},
        sever::NetSeverOptions,
        shape::{NetDelayOptions, NetRateOptions},
    },
    proc::{kill::ProcKillOptions, pause::ProcPauseOptions},
    syscall::{delay::SyscallDelayOptions, fail::SyscallFailOptions},
    traced::Traced,
};

/// One fault kind: its name and its options.
pub struct FaultKind {
    /// As the command line spells it: `net drop`.
    pub name: &'static str,
    options: fn() -> Command,
    build: fn(&ArgMatches) -> Result<Box<dyn PlanFault>, clap::Error>,
}

impl FaultKind {
    /// A kind whose options are `T` and the shared trace options (`Traced`).
    const fn of<T: Args + FromArgMatches + PlanFault + 'static>(name: &'static str) -> Self {
        Self { name, options: options_of::<Traced<T>>, build: build_of::<Traced<T>> }
    }

    /// The options as clap knows them.
    #[must_use]
    pub fn command(&self) -> Command {
        (self.options)()
    }

    /// The options from what clap matched.
    pub fn build(&self, matches: &ArgMatches) -> Result<Box<dyn PlanFault>, clap::Error> {
        (self.build)(matches)
    }

    /// The option names as a file spells them (`burst_len`).
    #[must_use]
    pub fn option_names(&self) -> Vec<String> {
        self.command().get_arguments().filter_map(|a| a.get_long()).map(|l| l.replace('-', "_")).collect()
    }
}

impl std::fmt::Debug for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

fn options_of<T: Args>() -> Command {
    T::augment_args(Command::new("fault").no_binary_name(true).disable_help_flag(true))
}

fn build_of<T: FromArgMatches + PlanFault + 'static>(matches: &ArgMatches) -> Result<Box<dyn PlanFault>, clap::Error> {
    Ok(Box::new(T::from_arg_matches(matches)?))
}

/// Every fault kind, for the command line and experiment files.
pub const FAULT_KINDS: &[FaultKind] = &[
    FaultKind::of::<NetDropOptions>("net drop"),
    FaultKind::of::<NetPartitionOptions>("net partition"),
    FaultKind::of::<NetCorruptOptions>("net corrupt"),
    FaultKind::of::<NetDuplicateOptions>("net duplicate"),
    FaultKind::of::<NetDelayOptions>("net delay"),
    FaultKind::of::<NetRateOptions>("net rate"),
    FaultKind::of::<NetSeverOptions>("net sever"),
    FaultKind::of::<SyscallFailOptions>("syscall fail"),
    FaultKind::of::<SyscallDelayOptions>("syscall delay"),
    FaultKind::of::<ProcKillOptions>("proc kill"),
    FaultKind::of::<ProcPauseOptions>("proc pause"),
    FaultKind::of::<LimitCpuOptions>("limit cpu"),
    FaultKind::of::<LimitMemoryOptions>("limit memory"),
    FaultKind::of::<LimitIoOptions>("limit io"),
    FaultKind::of::<LimitPidsOptions>("limit pids"),
    FaultKind::of::<DnsFailOptions>("dns fail"),
    FaultKind::of::<DnsDropOptions>("dns drop"),
    FaultKind::of::<DnsDelayOptions>("dns delay"),
    FaultKind::of::<DnsSpoofOptions>("dns spoof"),
];

/// Looks a kind up by name (`net drop`; extra spaces are forgiven).
#[must_use]
pub fn kind_named(name: &str) -> Option<&'static FaultKind> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    FAULT_KINDS.iter().find(|k| k.name == name)
}

#[must_use]
pub fn kind_names() -> Vec<&'static str> {
    FAULT_KINDS.iter().map(|k| k.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_unique_name_and_a_consistent_definition() {
        for kind in FAULT_KINDS {
            kind.command().debug_assert();
            assert_eq!(FAULT_KINDS.iter().filter(|k| k.name == kind.name).count(), 1, "{}", kind.name);
            assert!(kind_named(kind.name).is_some());
        }
        assert!(kind_named("net  drop").is_some());
        assert!(kind_named("net fly").is_none());
    }
}
