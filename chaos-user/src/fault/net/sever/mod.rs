//! `chaos net sever`: end the target's TCP connections the way a crashed peer, a restarted load
//! balancer or a conntrack flush ends them, without touching the client (Toxiproxy's
//! `reset_peer` and `limit_data`, Steadybit's TCP reset, for one cgroup).
//!
//! Two ways, one options struct:
//! - **Reset** (default): the target's established connections that match the filters are
//!   destroyed at once, and with `--every` again each period (the connections made since, each
//!   drawn once against `--percent`): chaos's own process asks the kernel through sock_diag's
//!   `SOCK_DESTROY` ([`sweep`]); the application's next call fails with ECONNABORTED and the
//!   peer gets an RST. Nothing is attached, so nothing can be left behind.
//! - **After N bytes** (`--after-bytes N`): a cgroup_skb program on the target counts each
//!   connection's payload by sequence number and silences it past N bytes in either direction
//!   (chaos-ebpf net_sever.rs; the connection stays open, as behind a hung middlebox); it
//!   reports each such connection, which chaos records or, with `--mode reset`, destroys
//!   ([`runner`]). The kernel deadline ends the silence even if chaos dies.
//!
//! Why sock_diag and not `bpf_sock_destroy` from a socket iterator: docs/sever.md.
pub mod runner;
pub mod sweep;

use std::time::Duration;

use chaos_common::{Direction, FaultConfig, threshold_from_ppm};
use serde_json::json;
pub use sweep::ConnectionFilter;

use super::filters::{Cidr, NetFilters, PortSet, Protocol, describe_filters, filter_maps, parse_cidr, parse_ports};
use crate::{
    fault::{AttachPoint, FaultContext, FaultPlan, MapContents, PlanError, PlanFault, PlannedProgram},
    features,
    plan::options::{Ppm, parse_duration, parse_percent},
};

/// The largest `--after-bytes`: TCP's 32-bit sequence numbers make a longer count ambiguous.
pub const MAX_AFTER_BYTES: u64 = 1 << 30;

/// The shortest `--every`: a sweep of thousands of connections takes tens of milliseconds.
pub const MIN_EVERY: Duration = Duration::from_millis(100);

/// What happens to a connection that has carried `--after-bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeverMode {
    /// Nothing more passes, both ways; the connection stays open (a hung middlebox).
    #[default]
    Silent,
    /// It is reset at that point (the application sees ECONNABORTED, the peer an RST).
    Reset,
}

/// `net sever`.
#[derive(Clone, Debug, clap::Args)]
pub struct NetSeverOptions {
    /// Only connections to or from this peer prefix (repeatable).
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub remote: Vec<Cidr>,
    /// Only connections with these peer ports (80, 8000-8100, 80,443).
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub remote_port: Vec<PortSet>,
    /// Only connections on these local ports.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub local_port: Vec<PortSet>,
    /// Every TCP connection of the target, with no filter (a deliberate choice: say so).
    #[arg(long, conflicts_with_all = ["remote", "remote_port", "local_port"])]
    pub all_connections: bool,
    /// Reset again every PERIOD, for the connections made since (at least 100ms).
    #[arg(long, value_name = "PERIOD", value_parser = parse_duration, conflicts_with = "after_bytes")]
    pub every: Option<Duration>,
    /// Share of matching connections to sever, in percent (each connection is drawn once).
    #[arg(long, value_parser = parse_percent)]
    pub percent: Option<Ppm>,
    /// Instead of now: each matching connection goes silent once it has carried BYTES of payload
    /// in either direction (1 to 1073741824).
    #[arg(long, value_name = "BYTES", value_parser = parse_after_bytes)]
    pub after_bytes: Option<u64>,
    /// With --after-bytes: silent (the data stops, the connection stays open) or reset.
    #[arg(long, value_enum, value_name = "MODE", requires = "after_bytes")]
    pub mode: Option<SeverMode>,
}

/// `--after-bytes`: a byte count from 1 to [`MAX_AFTER_BYTES`].
pub fn parse_after_bytes(text: &str) -> Result<u64, String> {
    let bytes: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of bytes: expected a whole number, e.g. 1000"))?;
    if bytes == 0 {
        return Err(format!(
            "'{text}': a connection that may carry no byte at all is a partition; give at least 1 \
             (or use `chaos net partition`)"
        ));
    }
    if bytes > MAX_AFTER_BYTES {
        return Err(format!(
            "'{text}' is more than {MAX_AFTER_BYTES} (1 GiB): TCP's 32-bit sequence numbers cannot count further"
        ));
    }
    Ok(bytes)
}

/// What `net sever` does once armed, for its runner: sweeps (now, and every period) or the
/// kernel's reports of connections past `--after-bytes`.
#[derive(Clone, Debug)]
pub struct SeverAction {
    pub filter: ConnectionFilter,
    pub percent: Ppm,
    pub every: Option<Duration>,
    pub after_bytes: Option<u64>,
    pub mode: SeverMode,
    /// `--trace-injections`: name each connection's process, in at most this many lines a sweep.
    pub trace_per_sec: Option<u64>,
    /// With --after-bytes: the program's reports, once the fault's object is loaded.
    pub reports: Option<runner::Reports>,
}

impl NetSeverOptions {
    /// The connection filters; refused when there are none and `--all-connections` was not
    /// given: severing every connection of a service is a choice to make out loud.
    pub fn filters(&self) -> Result<NetFilters, PlanError> {
        let merge = |sets: &[PortSet]| {
            let mut all = PortSet::default();
            sets.iter().for_each(|s| all.extend(s));
            all
        };
        let filters = NetFilters {
            protocol: Protocol::Tcp,
            remote: self.remote.clone(),
            remote_ports: merge(&self.remote_port),
            local_ports: merge(&self.local_port),
        };
        let unfiltered = filters.remote.is_empty() && filters.remote_ports.is_empty() && filters.local_ports.is_empty();
        if unfiltered && !self.all_connections {
            return Err(PlanError::Refused(
                "net sever needs a filter: --remote CIDR, --remote-port PORTS or --local-port PORTS; or \
                 --all-connections to sever every TCP connection of the target"
                    .into(),
            ));
        }
        Ok(filters)
    }

    fn action(&self) -> Result<SeverAction, PlanError> {
        if let Some(every) = self.every
            && every < MIN_EVERY
        {
            return Err(PlanError::Refused(format!(
                "--every {}: sever at most every {} (a sweep of many connections takes tens of milliseconds)",
                humantime::format_duration(every),
                humantime::format_duration(MIN_EVERY)
            )));
        }
        Ok(SeverAction {
            filter: ConnectionFilter::new(&self.filters()?),
            percent: self.percent.unwrap_or(Ppm::ALL),
            every: self.every,
            after_bytes: self.after_bytes,
            mode: self.mode.unwrap_or_default(),
            trace_per_sec: None,
            reports: None,
        })
    }
}

impl PlanFault for NetSeverOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let filters = self.filters()?;
        let action = self.action()?;
        let resets = action.after_bytes.is_none() || action.mode == SeverMode::Reset;
        let needed = [(resets, features::CONNECTION_SEVER), (action.after_bytes.is_some(), features::PACKET_DROP)];
        for family in needed.into_iter().filter_map(|(needed, family)| needed.then_some(family)) {
            let support = context.kernel.family(family);
            if !support.supported {
                return Err(PlanError::Unsupported {
                    family: support.name,
                    reason: support.reason.unwrap_or_default(),
                });
            }
        }
        let mut config = FaultConfig { threshold: threshold_from_ppm(action.percent.get()), ..FaultConfig::default() };
        let (programs, maps) = match action.after_bytes {
            None => (Vec::new(), MapContents::default()),
            Some(bytes) => {
                config.after_bytes = bytes;
                let maps = filter_maps(&filters, &mut config);
                let programs = [Direction::Egress, Direction::Ingress]
                    .into_iter()
                    .map(|direction| PlannedProgram {
                        program: super::filters::by_direction(direction, "net_sever_egress", "net_sever_ingress"),
                        hook: super::filters::by_direction(direction, "cgroup_skb/egress", "cgroup_skb/ingress"),
                        attach: AttachPoint::Cgroup { cgroup_dir: context.target.dir.clone() },
                        direction,
                    })
                    .collect();
                (programs, maps)
            }
        };
        let mut parameters = json!({ "filters": filters, "percent": action.percent, "mode": action.mode });
        if let Some(every) = action.every {
            parameters["every"] = json!(every.as_secs_f64());
        }
        if let Some(bytes) = action.after_bytes {
            parameters["after_bytes"] = json!(bytes);
        }
        if self.all_connections {
            parameters["all_connections"] = json!(true);
        }
        let silent = action.after_bytes.is_some() && action.mode == SeverMode::Silent;
        Ok(FaultPlan {
            fault: "net sever",
            injected_word: if silent { "silenced" } else { "severed" },
            counter_label: Some("connections"),
            target: context.target.clone(),
            summary: summary(&action, &filters),
            parameters,
            duration: context.duration,
            programs,
            config,
            maps,
            kernel_offsets: None,
            userspace: Some(std::sync::Arc::new(action)),
            companion: None,
        })
    }

    /// Only the programs' draw (`--after-bytes`) is the kernel's, which a ramp can move; the
    /// sweeps draw in chaos's own process.
    fn percent(&self) -> Option<Ppm> {
        self.after_bytes.map(|_| self.percent.unwrap_or(Ppm::ALL))
    }
}

/// `reset 30% of the TCP connections to/from 10.0.0.0/8 now and every 10s`, for people.
fn summary(action: &SeverAction, filters: &NetFilters) -> String {
    let share = if action.percent == Ppm::ALL { "every".to_owned() } else { format!("{} of the", action.percent) };
    let which = format!("{share} TCP connection{}", if action.percent == Ppm::ALL { "" } else { "s" });
    let filters = describe_filters(&NetFilters { protocol: Protocol::Any, ..filters.clone() });
    match (action.after_bytes, action.every) {
        (Some(bytes), _) => {
            let then = match action.mode {
                SeverMode::Silent => "goes silent (nothing more passes; it stays open)",
                SeverMode::Reset => "is reset",
            };
            format!("{which}{filters} {then} after {bytes} bytes in either direction")
        }
        (None, Some(every)) => {
            format!("reset {which}{filters} now and every {} (those made since)", humantime::format_duration(every))
        }
        (None, None) => format!("reset {which}{filters} now (sock_diag SOCK_DESTROY)"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: NetSeverOptions,
    }

    fn parse(args: &[&str]) -> Result<NetSeverOptions, clap::Error> {
        Cli::try_parse_from(std::iter::once("sever").chain(args.iter().copied())).map(|c| c.options)
    }

    #[test]
    fn a_sever_without_any_filter_needs_all_connections() {
        let err = parse(&[]).unwrap().filters().unwrap_err().to_string();
        assert!(err.contains("--all-connections") && err.contains("--remote"), "{err}");
        assert!(parse(&["--all-connections"]).unwrap().filters().is_ok());
        assert!(parse(&["--remote-port", "80"]).unwrap().filters().is_ok());
        assert!(parse(&["--all-connections", "--remote", "10.0.0.0/8"]).is_err(), "a filter contradicts it");
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (args, flag, expected) in [
            (&["--after-bytes", "0", "--all-connections"][..], "--after-bytes", "at least 1"),
            (&["--after-bytes", "2000000000", "--all-connections"], "--after-bytes", "1 GiB"),
            (&["--remote-port", "70000"], "--remote-port", "out of range"),
            (&["--local-port", "0"], "--local-port", "out of range"),
            (&["--mode", "reset", "--all-connections"], "--after-bytes", "required"),
            (&["--every", "10s", "--after-bytes", "5", "--all-connections"], "--every", "cannot be used"),
        ] {
            let err = parse(args).expect_err(&format!("{args:?}")).to_string();
            assert!(err.contains(flag) && err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn every_has_a_floor() {
        let options = parse(&["--all-connections", "--every", "10ms"]).unwrap();
        assert!(options.action().unwrap_err().to_string().contains("at most every 100ms"));
        assert!(parse(&["--all-connections", "--every", "100ms"]).unwrap().action().is_ok());
    }

    #[test]
    fn summaries_say_what_happens_to_which_connections() {
        let action = |args: &[&str]| {
            let options = parse(args).unwrap();
            summary(&options.action().unwrap(), &options.filters().unwrap())
        };
        assert_eq!(
            action(&["--remote", "10.0.0.0/8", "--remote-port", "6379"]),
            "reset every TCP connection, to/from 10.0.0.0/8, remote port 6379 now (sock_diag SOCK_DESTROY)"
        );
        assert_eq!(
            action(&["--all-connections", "--every", "10s", "--percent", "30"]),
            "reset 30% of the TCP connections now and every 10s (those made since)"
        );
        assert!(
            action(&["--all-connections", "--after-bytes", "1000"])
                .ends_with("goes silent (nothing more passes; it stays open) after 1000 bytes in either direction")
        );
    }
}
