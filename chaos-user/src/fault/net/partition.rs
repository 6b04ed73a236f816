//! `net partition`: cut the target off from some peers, both ways, every packet.
use chaos_common::Direction;
use serde_json::json;

use super::{
    PACKET_DROP, cgroup_skb_programs,
    filters::{Cidr, NetFilters, Protocol, parse_cidr},
    finish, start,
};
use crate::{
    fault::{FaultContext, FaultPlan, PlanError, PlanFault},
    plan::options::Ppm,
};

/// `net partition`.
#[derive(Clone, Debug, clap::Args)]
pub struct NetPartitionOptions {
    /// The peers to cut off (repeatable): addresses or prefixes, IPv4 or IPv6.
    #[arg(long, value_name = "CIDR", required = true, num_args = 1.., value_parser = parse_cidr)]
    pub to: Vec<Cidr>,
    /// Only this protocol.
    #[arg(long, value_enum, default_value = "any")]
    pub protocol: Protocol,
}

impl PlanFault for NetPartitionOptions {
    /// A 100 % drop of the packets to and from the peers, in both directions.
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let filters = NetFilters { protocol: self.protocol, remote: self.to.clone(), ..NetFilters::default() };
        let start = start(PACKET_DROP, Ppm::ALL, &filters, context.kernel)?;
        let programs = cgroup_skb_programs(&[Direction::Egress, Direction::Ingress], context.target);
        let parameters = json!({ "to": filters.remote, "protocol": self.protocol });
        Ok(finish(("net partition", "dropped"), start, "all packets".into(), &filters, parameters, programs, context))
    }
}
