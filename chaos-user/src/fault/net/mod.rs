//! Network faults: loss and partitions on the target cgroup's sockets (cgroup_skb), and
//! corruption, duplication, delays and rate limits by TC programs in the target's network
//! namespace (delays and rates set departure times that fq enforces). Each fault's options and
//! planner live in its own file; what they share (the family's support check, the filters in
//! the config and maps, where the programs attach) is here.
pub mod drop;
pub mod filters;
pub mod partition;
pub mod rewrite;
pub mod sever;
pub mod shape;

use chaos_common::{Direction, FaultConfig, threshold_from_ppm};
use filters::{NetFilters, by_direction, describe_filters, filter_maps};

use crate::{
    fault::{AttachPoint, FaultContext, FaultPlan, MapContents, PlanError, PlannedProgram, cgroup_level},
    features::{self, Prober},
    os::netns::{self, Netns},
    plan::options::Ppm,
    targets::Target,
};

/// What every network plan starts from: the config (probability and filter bits) and the
/// filter maps, once the filters are valid and the kernel has the family.
struct NetStart {
    config: FaultConfig,
    maps: MapContents,
}

fn start(family: &'static str, percent: Ppm, filters: &NetFilters, kernel: &Prober) -> Result<NetStart, PlanError> {
    filters.validate().map_err(PlanError::Refused)?;
    let support = kernel.family(family);
    if !support.supported {
        return Err(PlanError::Unsupported { family: support.name, reason: support.reason.unwrap_or_default() });
    }
    let mut config = FaultConfig { threshold: threshold_from_ppm(percent.get()), ..FaultConfig::default() };
    let maps = filter_maps(filters, &mut config);
    Ok(NetStart { config, maps })
}

/// The plan of a network fault; the summary ends with the filters.
#[allow(clippy::too_many_arguments)]
fn finish(
    (fault, injected_word): (&'static str, &'static str),
    start: NetStart,
    mut summary: String,
    filters: &NetFilters,
    parameters: serde_json::Value,
    programs: Vec<PlannedProgram>,
    context: &FaultContext<'_>,
) -> FaultPlan {
    summary.push_str(&describe_filters(filters));
    FaultPlan {
        fault,
        injected_word,
        counter_label: None,
        kernel_offsets: None,
        companion: None,
        userspace: None,
        target: context.target.clone(),
        summary,
        parameters,
        duration: context.duration,
        programs,
        config: start.config,
        maps: start.maps,
    }
}

/// cgroup_skb programs on the target cgroup, one per direction (drop and partition).
fn cgroup_skb_programs(directions: &[Direction], target: &Target) -> Vec<PlannedProgram> {
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

/// Where TC programs go and what they are called.
struct TcPrograms {
    /// (egress, ingress) program names.
    names: (&'static str, &'static str),
    /// The programs set departure times (delay, rate): fq must be the root qdisc, and they have
    /// a hook name of their own because departure times do not compose (the last program to
    /// write one wins).
    departure_times: bool,
    iface: Option<String>,
}

/// TC programs on the Ethernet interfaces of the target's namespace, one per interface and
/// direction; returns them with the interfaces' names. Egress packets carry their socket, so
/// only the target's are touched even in a shared namespace (ingress packets have no socket
/// yet: all of the namespace's are candidates).
fn tc_programs(
    programs: &TcPrograms,
    directions: &[Direction],
    config: &mut FaultConfig,
    context: &FaultContext<'_>,
) -> Result<(Vec<PlannedProgram>, Vec<String>), PlanError> {
    let target = context.target;
    config.target_cgroup = target.id;
    config.target_level = cgroup_level(&target.cgroup);
    let (netns, ifaces) = tc_interfaces(target, programs.iface.as_ref(), context.i_know)?;
    let api = context.kernel.tc_api();
    let needs_fq = programs.departure_times;
    let planned = ifaces
        .iter()
        .flat_map(|iface| {
            directions.iter().map(|&direction| PlannedProgram {
                program: by_direction(direction, programs.names.0, programs.names.1),
                hook: if needs_fq { "tc-edt/egress" } else { by_direction(direction, "tc/egress", "tc/ingress") },
                attach: AttachPoint::Tc { netns: netns.clone(), iface: iface.clone(), api, needs_fq },
                direction,
            })
        })
        .collect();
    Ok((planned, ifaces))
}

/// The kernel families of this module, for `start`.
const PACKET_DROP: &str = features::PACKET_DROP;
const PACKET_REWRITE: &str = features::PACKET_CORRUPT_DUPLICATE;
const NETWORK_DELAY: &str = features::NETWORK_DELAY;

/// The namespace and interfaces the TC programs attach to: the target's own namespace, every
/// Ethernet interface in it (or `--iface`). The controller's namespace (the host's, for a
/// target without one of its own) needs `--iface` and `--i-know`.
fn tc_interfaces(target: &Target, iface: Option<&String>, i_know: bool) -> Result<(Netns, Vec<String>), PlanError> {
    let netns = Netns::of_cgroup(&target.dir, &target.named_as)?;
    if netns.is_controllers && !(iface.is_some() && i_know) {
        return Err(PlanError::Refused(format!(
            "{} shares chaos's own network namespace (the host's, usually), so these TC programs would \
             attach to host interfaces and touch every process using them; name the interface with --iface \
             and pass --i-know if that is what you want",
            target.named_as
        )));
    }
    let interfaces = netns
        .run(netns::interfaces)?
        .map_err(|source| PlanError::Interfaces { target: target.named_as.clone(), source })?;
    let chosen: Vec<String> = match iface {
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
