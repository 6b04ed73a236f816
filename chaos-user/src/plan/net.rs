//! Planning network faults: loss (and partitions) on the target cgroup's sockets with
//! cgroup_skb; corruption, duplication, delay and rate limits with TC programs in the target's
//! network namespace (delay and rate set departure times that fq enforces).
use std::{net::IpAddr, time::Duration};

use chaos_common::{Direction, FaultConfig, flags, net_filters, threshold_from_ppm};
use serde_json::json;

use super::{AttachPoint, FaultContext, FaultPlan, MapContents, PlanError, PlanFault, PlannedProgram, cgroup_level};
use crate::{
    features::{self, Prober},
    netns::{self, Netns},
    spec::{
        DirectionChoice, Ppm,
        net::{
            BurstModel, CorruptOptions, DelayOptions, Distribution, DropOptions, DuplicateOptions, FilterOptions,
            NetFilters, PacketFilterOptions, PartitionOptions, RateOptions,
        },
    },
    target::Target,
};

impl PlanFault for DropOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let burst =
            self.burst_len.map(|len| BurstModel::new(self.percent, len)).transpose().map_err(PlanError::Refused)?;
        plan(
            &net_spec(NetFaultKind::Drop { burst }, self.percent, &self.filters, None, context),
            context.target.clone(),
            context.kernel,
        )
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }
}

impl PlanFault for CorruptOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let kind = NetFaultKind::Corrupt { fix_checksum: self.fix_checksum };
        plan(
            &net_spec(kind, self.percent, &self.filters, self.iface.clone(), context),
            context.target.clone(),
            context.kernel,
        )
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}

impl PlanFault for DuplicateOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        plan(
            &net_spec(NetFaultKind::Duplicate, self.percent, &self.filters, self.iface.clone(), context),
            context.target.clone(),
            context.kernel,
        )
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}

impl PlanFault for DelayOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let kind = NetFaultKind::Delay {
            by: self.by,
            jitter: self.jitter.unwrap_or_default(),
            normal: self.distribution == Distribution::Normal,
        };
        plan(
            &egress_spec(kind, self.percent, &self.packets, self.iface.clone(), context),
            context.target.clone(),
            context.kernel,
        )
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}

impl PlanFault for RateOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let kind = NetFaultKind::Rate { bytes_per_sec: self.limit, queue: self.queue };
        plan(
            &egress_spec(kind, Ppm::ALL, &self.packets, self.iface.clone(), context),
            context.target.clone(),
            context.kernel,
        )
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}

/// Delay and rate shape what the target sends: egress only (fq holds packets on their way out).
fn egress_spec(
    kind: NetFaultKind,
    percent: Ppm,
    packets: &PacketFilterOptions,
    iface: Option<String>,
    context: &FaultContext<'_>,
) -> NetFaultSpec {
    NetFaultSpec {
        kind,
        percent,
        filters: packets.filters(),
        direction: DirectionChoice::Egress,
        duration: context.duration,
        iface,
        i_know: context.i_know,
    }
}

impl PlanFault for PartitionOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        partition(self.to.clone(), self.protocol, context.duration, context.target.clone(), context.kernel)
    }
}

fn net_spec(
    kind: NetFaultKind,
    percent: Ppm,
    filters: &FilterOptions,
    iface: Option<String>,
    context: &FaultContext<'_>,
) -> NetFaultSpec {
    NetFaultSpec {
        kind,
        percent,
        filters: filters.filters(),
        direction: filters.direction,
        duration: context.duration,
        iface,
        i_know: context.i_know,
    }
}

/// A network fault as the user asked for it.
#[derive(Clone, Debug)]
pub struct NetFaultSpec {
    pub kind: NetFaultKind,
    pub percent: Ppm,
    pub filters: NetFilters,
    pub direction: DirectionChoice,
    pub duration: Duration,
    /// TC faults: the interface to use instead of every Ethernet interface of the namespace.
    pub iface: Option<String>,
    /// Allows TC faults on the controller's own (the host's) namespace.
    pub i_know: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NetFaultKind {
    Drop { burst: Option<BurstModel> },
    Corrupt { fix_checksum: bool },
    Duplicate,
    Delay { by: Duration, jitter: Duration, normal: bool },
    Rate { bytes_per_sec: u64, queue: Duration },
}

impl NetFaultKind {
    const fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::Drop { .. } => ("net drop", "dropped"),
            Self::Corrupt { .. } => ("net corrupt", "corrupted"),
            Self::Duplicate => ("net duplicate", "duplicated"),
            Self::Delay { .. } => ("net delay", "delayed"),
            Self::Rate { .. } => ("net rate", "paced"),
        }
    }
}

pub fn plan(spec: &NetFaultSpec, target: Target, kernel: &Prober) -> Result<FaultPlan, PlanError> {
    spec.filters.validate().map_err(PlanError::Refused)?;
    let (fault, injected_word) = spec.kind.names();
    let family = match spec.kind {
        NetFaultKind::Drop { .. } => features::PACKET_DROP,
        NetFaultKind::Delay { .. } | NetFaultKind::Rate { .. } => features::NETWORK_DELAY,
        _ => features::PACKET_CORRUPT_DUPLICATE,
    };
    let support = kernel.family(family);
    if !support.supported {
        return Err(PlanError::Unsupported { family: support.name, reason: support.reason.unwrap_or_default() });
    }

    let mut config = FaultConfig { threshold: threshold_from_ppm(spec.percent.get()), ..FaultConfig::default() };
    let maps = filter_maps(&spec.filters, &mut config);
    let mut parameters = json!({ "percent": spec.percent, "direction": spec.direction, "filters": spec.filters });
    let mut summary = format!("{} of {}", spec.percent, describe_direction(spec.direction));
    let directions = spec.direction.directions();

    let programs = match spec.kind {
        NetFaultKind::Drop { burst } => {
            if let Some(model) = burst {
                let (enter, leave) = model.thresholds();
                config.flags |= flags::BURST;
                (config.burst_enter, config.burst_leave) = (enter, leave);
                parameters["burst_len"] = json!(model.mean_len);
                summary.push_str(&format!(", in bursts of {} packets on average", model.mean_len));
            }
            directions
                .iter()
                .map(|&direction| PlannedProgram {
                    program: by_direction(direction, "net_drop_egress", "net_drop_ingress"),
                    hook: by_direction(direction, "cgroup_skb/egress", "cgroup_skb/ingress"),
                    attach: AttachPoint::Cgroup { cgroup_dir: target.dir.clone() },
                    direction,
                })
                .collect()
        }
        NetFaultKind::Corrupt { .. }
        | NetFaultKind::Duplicate
        | NetFaultKind::Delay { .. }
        | NetFaultKind::Rate { .. } => {
            match spec.kind {
                NetFaultKind::Corrupt { fix_checksum: true } => {
                    config.flags |= flags::FIX_CHECKSUM;
                    parameters["fix_checksum"] = json!(true);
                    summary.push_str(", checksums fixed");
                }
                NetFaultKind::Delay { by, jitter, normal } => {
                    config.delay_ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
                    config.jitter_ns = u64::try_from(jitter.as_nanos()).unwrap_or(0);
                    if normal {
                        config.flags |= flags::JITTER_NORMAL;
                    }
                    let distribution = if normal { "normal" } else { "uniform" };
                    parameters["by"] = json!(humantime::format_duration(by).to_string());
                    parameters["jitter"] = json!(humantime::format_duration(jitter).to_string());
                    parameters["distribution"] = json!(distribution);
                    summary = format!("{} of outgoing packets held {}", spec.percent, humantime::format_duration(by));
                    if !jitter.is_zero() {
                        summary.push_str(&format!(" +- {} ({distribution})", humantime::format_duration(jitter)));
                    }
                }
                NetFaultKind::Rate { bytes_per_sec, queue } => {
                    config.rate_bytes_per_sec = bytes_per_sec;
                    config.rate_queue_ns = u64::try_from(queue.as_nanos()).unwrap_or(u64::MAX);
                    parameters = json!({
                        "limit_bytes_per_sec": bytes_per_sec,
                        "queue": humantime::format_duration(queue).to_string(),
                        "filters": spec.filters,
                    });
                    summary = format!(
                        "outgoing packets paced to {} bit/s, at most {} queued",
                        bytes_per_sec * 8,
                        humantime::format_duration(queue)
                    );
                }
                _ => {}
            }
            let needs_fq = matches!(spec.kind, NetFaultKind::Delay { .. } | NetFaultKind::Rate { .. });
            // Egress packets carry their socket: only the target's are touched even in a shared
            // namespace. (Ingress packets have no socket yet: all of the namespace's are.)
            config.target_cgroup = target.id;
            config.target_level = cgroup_level(&target.cgroup);
            let (netns, ifaces) = tc_interfaces(spec, &target)?;
            let api = kernel.tc_api();
            parameters["interfaces"] = json!(ifaces);
            let (egress, ingress) = match spec.kind {
                NetFaultKind::Duplicate => ("net_duplicate_egress", "net_duplicate_ingress"),
                NetFaultKind::Delay { .. } => ("net_delay_egress", "net_delay_egress"),
                NetFaultKind::Rate { .. } => ("net_rate_egress", "net_rate_egress"),
                _ => ("net_corrupt_egress", "net_corrupt_ingress"),
            };
            ifaces
                .iter()
                .flat_map(|iface| {
                    directions.iter().map(|&direction| PlannedProgram {
                        program: by_direction(direction, egress, ingress),
                        // Departure times do not compose (the last program to write one wins),
                        // so delay and rate have a hook name of their own.
                        hook: if needs_fq {
                            "tc-edt/egress"
                        } else {
                            by_direction(direction, "tc/egress", "tc/ingress")
                        },
                        attach: AttachPoint::Tc { netns: netns.clone(), iface: iface.clone(), api, needs_fq },
                        direction,
                    })
                })
                .collect()
        }
    };
    summary.push_str(&describe_filters(&spec.filters));
    Ok(FaultPlan {
        fault,
        injected_word,
        counter_label: None,
        kernel_offsets: None,
        target,
        summary,
        parameters,
        duration: spec.duration,
        programs,
        config,
        maps,
    })
}

/// A partition: every packet between the target and `peers`, both ways.
pub fn partition(
    peers: Vec<crate::spec::net::Cidr>,
    protocol: crate::spec::net::Protocol,
    duration: Duration,
    target: Target,
    kernel: &Prober,
) -> Result<FaultPlan, PlanError> {
    let spec = NetFaultSpec {
        kind: NetFaultKind::Drop { burst: None },
        percent: Ppm::ALL,
        filters: NetFilters { protocol, remote: peers, ..NetFilters::default() },
        direction: DirectionChoice::Both,
        duration,
        iface: None,
        i_know: false,
    };
    let mut plan = plan(&spec, target, kernel)?;
    plan.fault = "net partition";
    plan.summary = format!("all packets{}", describe_filters(&spec.filters));
    plan.parameters = json!({ "to": spec.filters.remote, "protocol": protocol });
    Ok(plan)
}

const fn by_direction(direction: Direction, egress: &'static str, ingress: &'static str) -> &'static str {
    match direction {
        Direction::Egress => egress,
        Direction::Ingress => ingress,
    }
}

fn describe_direction(direction: DirectionChoice) -> &'static str {
    match direction {
        DirectionChoice::Both => "all packets",
        DirectionChoice::Egress => "outgoing packets",
        DirectionChoice::Ingress => "incoming packets",
    }
}

fn describe_filters(filters: &NetFilters) -> String {
    let mut text = String::new();
    if filters.protocol.number().is_some() {
        text.push_str(&format!(", {:?} only", filters.protocol).to_lowercase());
    }
    if !filters.remote.is_empty() {
        let list: Vec<String> = filters.remote.iter().map(ToString::to_string).collect();
        text.push_str(&format!(", to/from {}", list.join(" ")));
    }
    if !filters.remote_ports.is_empty() {
        text.push_str(&format!(", remote port {}", filters.remote_ports));
    }
    if !filters.local_ports.is_empty() {
        text.push_str(&format!(", local port {}", filters.local_ports));
    }
    text
}

/// Turns the filters into config bits and map contents.
pub(crate) fn filter_maps(filters: &NetFilters, config: &mut FaultConfig) -> MapContents {
    let mut maps = MapContents::default();
    if let Some(number) = filters.protocol.number() {
        config.net_filters |= net_filters::PROTOCOL;
        config.protocol = number;
    }
    if !filters.remote.is_empty() {
        config.net_filters |= net_filters::REMOTE_ADDRESS;
        for cidr in &filters.remote {
            match cidr.address {
                IpAddr::V4(v4) => maps.remote_v4.push((u32::from(cidr.prefix_len), v4.octets())),
                IpAddr::V6(v6) => maps.remote_v6.push((u32::from(cidr.prefix_len), v6.octets())),
            }
        }
    }
    if !filters.remote_ports.is_empty() || !filters.local_ports.is_empty() {
        let mut words = filters.remote_ports.bitmap();
        words.extend(filters.local_ports.bitmap());
        maps.port_sets = Some(words);
        if !filters.remote_ports.is_empty() {
            config.net_filters |= net_filters::REMOTE_PORT;
        }
        if !filters.local_ports.is_empty() {
            config.net_filters |= net_filters::LOCAL_PORT;
        }
    }
    maps
}

/// The namespace and interfaces the TC programs attach to: the target's own namespace, every
/// Ethernet interface in it (or `--iface`). The controller's namespace (the host's, for a
/// target without one of its own) needs `--iface` and `--i-know`.
fn tc_interfaces(spec: &NetFaultSpec, target: &Target) -> Result<(Netns, Vec<String>), PlanError> {
    let netns = Netns::of_target(target)?;
    if netns.is_controllers && !(spec.iface.is_some() && spec.i_know) {
        return Err(PlanError::Refused(format!(
            "{} shares chaos's own network namespace (the host's, usually), so these TC programs would \
             attach to host interfaces and touch every process using them; name the interface with --iface \
             and pass --i-know if that is what you want",
            target.named_as
        )));
    }
    let interfaces = netns
        .run(netns::interfaces)?
        .map_err(|err| PlanError::Refused(format!("listing the interfaces of {}: {err}", target.named_as)))?;
    let chosen: Vec<String> = match &spec.iface {
        Some(name) => {
            let Some(iface) = interfaces.iter().find(|i| &i.name == name) else {
                let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
                return Err(PlanError::Refused(format!(
                    "--iface {name}: no such interface in the target's network namespace (it has: {})",
                    names.join(", ")
                )));
            };
            if !iface.ethernet {
                return Err(PlanError::Refused(format!(
                    "--iface {name}: not an Ethernet interface; chaos's TC programs expect Ethernet framing"
                )));
            }
            vec![name.clone()]
        }
        None => interfaces.iter().filter(|i| i.ethernet && i.name != "lo").map(|i| i.name.clone()).collect(),
    };
    if chosen.is_empty() {
        return Err(PlanError::Refused(format!(
            "the network namespace of {} has no Ethernet interface besides lo; name one with --iface",
            target.named_as
        )));
    }
    Ok((netns, chosen))
}
