//! `net corrupt` and `net duplicate`: TC programs that rewrite or copy a share of the target's
//! packets on the interfaces of its network namespace (cgroup_skb programs cannot change a
//! packet).
use chaos_common::flags;
use serde_json::json;

use super::{
    NetStart, PACKET_REWRITE, TcPrograms,
    filters::{FilterOptions, describe_direction},
    finish, start, tc_programs,
};
use crate::{
    fault::{FaultContext, FaultPlan, PlanError, PlanFault},
    plan::options::{Ppm, parse_percent},
};

/// `net corrupt`.
#[derive(Clone, Debug, clap::Args)]
pub struct NetCorruptOptions {
    /// Share of matching packets to corrupt, in percent.
    #[arg(long, value_parser = parse_percent)]
    pub percent: Ppm,
    /// Recompute the L4 checksum so the corruption reaches the application.
    #[arg(long)]
    pub fix_checksum: bool,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    #[command(flatten)]
    pub filters: FilterOptions,
}

/// `net duplicate`.
#[derive(Clone, Debug, clap::Args)]
pub struct NetDuplicateOptions {
    /// Share of matching packets to send twice, in percent.
    #[arg(long, value_parser = parse_percent)]
    pub percent: Ppm,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    #[command(flatten)]
    pub filters: FilterOptions,
}

/// What corruption and duplication share: everything but the programs' names and the
/// checksum option.
fn plan_rewrite(
    names: (&'static str, &'static str),
    programs: (&'static str, &'static str),
    percent: Ppm,
    filter_options: &FilterOptions,
    iface: Option<&String>,
    fix_checksum: bool,
    context: &FaultContext<'_>,
) -> Result<FaultPlan, PlanError> {
    let filters = filter_options.filters();
    let NetStart { mut config, maps } = start(PACKET_REWRITE, percent, &filters, context.kernel)?;
    let direction = filter_options.direction;
    let mut parameters = json!({ "percent": percent, "direction": direction, "filters": filters });
    let mut summary = format!("{percent} of {}", describe_direction(direction));
    if fix_checksum {
        config.flags |= flags::FIX_CHECKSUM;
        parameters["fix_checksum"] = json!(true);
        summary.push_str(", checksums fixed");
    }
    let tc = TcPrograms { names: programs, departure_times: false, iface: iface.cloned() };
    let (programs, ifaces) = tc_programs(&tc, direction.directions(), &mut config, context)?;
    parameters["interfaces"] = json!(ifaces);
    Ok(finish(names, NetStart { config, maps }, summary, &filters, parameters, programs, context))
}

impl PlanFault for NetCorruptOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        plan_rewrite(
            ("net corrupt", "corrupted"),
            ("net_corrupt_egress", "net_corrupt_ingress"),
            self.percent,
            &self.filters,
            self.iface.as_ref(),
            self.fix_checksum,
            context,
        )
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}

impl PlanFault for NetDuplicateOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        plan_rewrite(
            ("net duplicate", "duplicated"),
            ("net_duplicate_egress", "net_duplicate_ingress"),
            self.percent,
            &self.filters,
            self.iface.as_ref(),
            false,
            context,
        )
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}
