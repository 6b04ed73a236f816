//! DNS faults: the target's lookups of chosen names fail (`dns fail`), time out (`dns drop`),
//! come late (`dns delay`) or lie (`dns spoof`), and nobody else's.
//!
//! How: cgroup sock_addr programs on the target cgroup (chaos-ebpf `dns.rs`) send the target's
//! port-53 traffic, UDP and TCP, IPv4 and IPv6, whichever resolver it was meant for, to a
//! responder that chaos runs in the target's own network namespace (`responder/`). It answers
//! the queries the fault takes and forwards the others to the resolver the client asked; the
//! programs make the replies look like that resolver's. The fault sits at the target's own
//! sockets, in front of any cache outside the process. Why this and not a TC program rewriting
//! packets: docs/dns.md.
//!
//! This file: the options of the four faults (one clap struct each, for the command line and
//! experiment files) and their one planner.
pub mod answer;
pub mod names;
pub mod responder;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use answer::{Action, Rcode, Rules, parse_rcode};
use chaos_common::{Direction, FaultConfig, threshold_from_ppm};
use hickory_proto::rr::RecordType;
use names::{NamePattern, QueryType, QueryTypes, parse_name_pattern, parse_query_type};
use responder::DnsResponder;
use serde_json::json;

use crate::{
    fault::{
        AttachPoint, FaultContext, FaultPlan, MapContents, PlanError, PlanFault, PlannedProgram,
        syscall::ScheduleOptions,
    },
    features,
    os::netns::Netns,
    plan::options::{Ppm, parse_delay, parse_duration, parse_percent},
};

/// What every DNS fault takes: which names and types, and how often.
#[derive(Clone, Debug, clap::Args)]
pub struct DnsMatchOptions {
    /// A name or glob the fault applies to (repeatable): api.example.com, '*.example.com' (any
    /// depth below, not the name itself). Case and a trailing dot do not matter.
    #[arg(long = "name", value_name = "GLOB", required = true, value_parser = parse_name_pattern)]
    pub names: Vec<NamePattern>,
    /// Query types it applies to (repeatable): A, AAAA, SRV, TXT, MX, CNAME, PTR, NS, SOA, CAA,
    /// HTTPS, SVCB, or any (the default).
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_query_type)]
    pub types: Vec<QueryType>,
    /// Share of matching queries the fault takes, in percent (default 100).
    #[arg(long, value_parser = parse_percent, default_value = "100")]
    pub percent: Ppm,
    #[command(flatten)]
    pub schedule: ScheduleOptions,
}

/// `dns fail`.
#[derive(Clone, Debug, clap::Args)]
pub struct DnsFailOptions {
    #[command(flatten)]
    pub matching: DnsMatchOptions,
    /// The answer: nxdomain (no such name), servfail (the resolver failed) or refused.
    #[arg(long, value_name = "RCODE", value_parser = parse_rcode)]
    pub rcode: Rcode,
}

/// `dns drop`.
#[derive(Clone, Debug, clap::Args)]
pub struct DnsDropOptions {
    #[command(flatten)]
    pub matching: DnsMatchOptions,
}

/// `dns delay`.
#[derive(Clone, Debug, clap::Args)]
pub struct DnsDelayOptions {
    #[command(flatten)]
    pub matching: DnsMatchOptions,
    /// How late the real answer comes, e.g. 500ms (at most 10s).
    #[arg(long, value_name = "DELAY", value_parser = parse_delay)]
    pub by: Duration,
    /// Each delay varies uniformly by up to this much either way, e.g. 100ms (at most --by).
    #[arg(long, value_name = "DELAY", value_parser = parse_delay)]
    pub jitter: Option<Duration>,
}

/// `dns spoof`.
#[derive(Clone, Debug, clap::Args)]
pub struct DnsSpoofOptions {
    #[command(flatten)]
    pub matching: DnsMatchOptions,
    /// The addresses to answer with (repeatable, or comma-separated): IPv4 ones answer A
    /// queries, IPv6 ones AAAA queries.
    #[arg(long = "address", value_name = "IP", value_delimiter = ',', required = true, value_parser = parse_address)]
    pub addresses: Vec<IpAddr>,
    /// The TTL of the spoofed records (default 1s), so that caches forget them soon after.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, default_value = "1s")]
    pub ttl: Duration,
}

impl PlanFault for DnsFailOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let summary = format!("{} for {}", self.rcode.name(), describe_match(&self.matching));
        let plan = Planned { fault: ("dns fail", "failed"), action: Action::Fail(self.rcode), summary };
        plan.finish(&self.matching, json!({ "rcode": self.rcode }), FaultConfig::default(), context)
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.matching.percent)
    }
}

impl PlanFault for DnsDropOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let summary = format!("no answer for {}", describe_match(&self.matching));
        let plan = Planned { fault: ("dns drop", "dropped"), action: Action::Drop, summary };
        plan.finish(&self.matching, json!({}), FaultConfig::default(), context)
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.matching.percent)
    }
}

impl PlanFault for DnsDelayOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let jitter = self.jitter.unwrap_or_default();
        if jitter > self.by {
            return Err(PlanError::Refused(format!(
                "--jitter {} is more than --by {}: a delay cannot go below zero; give a jitter of at most --by",
                humantime::format_duration(jitter),
                humantime::format_duration(self.by)
            )));
        }
        let mut late = humantime::format_duration(self.by).to_string();
        if !jitter.is_zero() {
            late.push_str(&format!(" +- {} (uniform)", humantime::format_duration(jitter)));
        }
        let summary = format!("answers {late} late for {}", describe_match(&self.matching));
        let config = FaultConfig { delay_ns: nanos(self.by), jitter_ns: nanos(jitter), ..FaultConfig::default() };
        let parameters = json!({
            "by": humantime::format_duration(self.by).to_string(),
            "jitter": self.jitter.map(|j| humantime::format_duration(j).to_string()),
        });
        let plan = Planned { fault: ("dns delay", "delayed"), action: Action::Delay, summary };
        plan.finish(&self.matching, parameters, config, context)
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.matching.percent)
    }
}

impl PlanFault for DnsSpoofOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let v4: Vec<Ipv4Addr> =
            self.addresses.iter().filter_map(|a| if let IpAddr::V4(v4) = a { Some(*v4) } else { None }).collect();
        let v6: Vec<Ipv6Addr> =
            self.addresses.iter().filter_map(|a| if let IpAddr::V6(v6) = a { Some(*v6) } else { None }).collect();
        check_spoof_types(&QueryTypes::of(&self.matching.types), !v4.is_empty(), !v6.is_empty())?;
        let ttl = u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX);
        let addresses: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        let summary = format!("{} (TTL {ttl}s) for {}", addresses.join(", "), describe_match(&self.matching));
        let plan = Planned { fault: ("dns spoof", "spoofed"), action: Action::Spoof { v4, v6, ttl }, summary };
        plan.finish(&self.matching, json!({ "addresses": addresses, "ttl": ttl }), FaultConfig::default(), context)
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.matching.percent)
    }
}

/// `spoof` answers with addresses: each type asked for must have some of its family.
fn check_spoof_types(types: &QueryTypes, has_v4: bool, has_v6: bool) -> Result<(), PlanError> {
    if !types.has_addresses() {
        return Err(PlanError::Refused(format!(
            "--type {}: spoof answers with addresses, which only A and AAAA queries have; use --type A, --type \
             AAAA or leave --type out (any: A and AAAA queries of the names are spoofed, the others resolve)",
            types.describe()
        )));
    }
    for (family, wanted, has) in [(RecordType::A, "IPv4", has_v4), (RecordType::AAAA, "IPv6", has_v6)] {
        if !types.is_any() && types.matches(family) && !has {
            return Err(PlanError::Refused(format!(
                "--type {family}: no --address is an {wanted} address, so {family} queries would get empty \
                 answers; add an {wanted} --address or leave {family} out of --type"
            )));
        }
    }
    Ok(())
}

/// One DNS fault on its way to a plan.
struct Planned {
    /// (fault, what its counters call an injection)
    fault: (&'static str, &'static str),
    action: Action,
    summary: String,
}

/// The programs, in the order they attach: the hooks that make replies look like the
/// resolver's first, so that no socket is sent to the responder before its reply can be mended.
const PROGRAMS: &[(&str, &str)] = &[
    ("dns_recvmsg4", "dns/recvmsg4"),
    ("dns_recvmsg6", "dns/recvmsg6"),
    ("dns_getpeername4", "dns/getpeername4"),
    ("dns_getpeername6", "dns/getpeername6"),
    ("dns_connect4", "dns/connect4"),
    ("dns_connect6", "dns/connect6"),
    ("dns_sendmsg4", "dns/sendmsg4"),
    ("dns_sendmsg6", "dns/sendmsg6"),
];

impl Planned {
    fn finish(
        self,
        matching: &DnsMatchOptions,
        mut parameters: serde_json::Value,
        mut config: FaultConfig,
        context: &FaultContext<'_>,
    ) -> Result<FaultPlan, PlanError> {
        let support = context.kernel.family(features::DNS);
        if !support.supported {
            return Err(PlanError::Unsupported { family: support.name, reason: support.reason.unwrap_or_default() });
        }
        let target = context.target;
        // The responder must live where the target's resolvers are reachable: its namespace.
        let netns = Netns::of_cgroup(&target.dir, &target.named_as)?;
        config.threshold = threshold_from_ppm(matching.percent.get());
        let schedule = matching.schedule.schedule();
        schedule.apply(&mut config);
        let types = QueryTypes::of(&matching.types);
        if let Some(object) = parameters.as_object_mut() {
            object.insert("names".into(), json!(matching.names));
            object.insert("types".into(), json!(types.names()));
            object.insert("percent".into(), json!(matching.percent));
            if schedule.is_set() {
                object.insert("schedule".into(), json!(schedule));
            }
        }
        let mut summary = self.summary;
        if schedule.is_set() {
            summary.push_str(&format!(", {}", schedule.describe()));
        }
        let rules = Rules { names: matching.names.clone(), types, action: self.action };
        let programs = PROGRAMS
            .iter()
            .map(|&(program, hook)| PlannedProgram {
                program,
                hook,
                attach: AttachPoint::Cgroup { cgroup_dir: target.dir.clone() },
                direction: Direction::Egress,
            })
            .collect();
        Ok(FaultPlan {
            fault: self.fault.0,
            injected_word: self.fault.1,
            counter_label: Some("queries"),
            target: target.clone(),
            summary,
            parameters,
            duration: context.duration,
            programs,
            config,
            maps: MapContents::default(),
            kernel_offsets: None,
            userspace: None,
            companion: Some(Arc::new(DnsResponder::new(netns, rules))),
        })
    }
}

/// `*.example.com (A, AAAA), 30% of matching queries`.
fn describe_match(matching: &DnsMatchOptions) -> String {
    let names: Vec<&str> = matching.names.iter().map(NamePattern::as_str).collect();
    format!(
        "{} ({}), {} of matching queries",
        names.join(", "),
        QueryTypes::of(&matching.types).describe(),
        matching.percent
    )
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Parses one `--address`: an IPv4 or IPv6 address.
fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("'{text}' is not an IP address: give IPv4 or IPv6 addresses, e.g. 10.0.0.9 or fd00::9"))
}

/// Parses `--ttl`: a duration of whole seconds, at most a day.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    if ttl.subsec_nanos() != 0 || ttl > Duration::from_secs(86_400) {
        return Err(format!("'{text}': a TTL is whole seconds, from 1s to 1d"));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoof_refuses_types_without_addresses_naming_the_flag() {
        let only = |t| QueryTypes::of(&[QueryType::Only(t)]);
        let txt = check_spoof_types(&only(RecordType::TXT), true, true).unwrap_err().to_string();
        assert!(txt.contains("--type TXT") && txt.contains("only A and AAAA"), "{txt}");
        let a = check_spoof_types(&only(RecordType::A), false, true).unwrap_err().to_string();
        assert!(a.contains("--type A") && a.contains("IPv4"), "{a}");
        assert!(check_spoof_types(&QueryTypes::default(), true, false).is_ok(), "any: AAAA get empty answers");
        assert!(check_spoof_types(&only(RecordType::AAAA), false, true).is_ok());
    }

    #[test]
    fn addresses_and_ttls_are_checked() {
        assert!(parse_address("10.0.0.300").unwrap_err().contains("not an IP address"));
        assert_eq!(parse_address(" fd00::9 "), Ok("fd00::9".parse().unwrap()));
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_ttl("1500ms").unwrap_err().contains("whole seconds"));
    }
}
