//! `chaos limit cpu --to 25%`: the target gets at most that share of CPU time (`cpu.max`, the
//! CFS bandwidth controller): its threads run until the quota of each period is spent and are
//! then throttled until the next period. Nothing else is touched and nothing burns.
use super::{LimitPlan, Resource, Setting, amounts};
use crate::{
    fault::{FaultContext, FaultPlan, PlanError, PlanFault},
    plan::options::Ppm,
};

/// `limit cpu`.
#[derive(Clone, Debug, clap::Args)]
pub struct LimitCpuOptions {
    /// The most CPU the target gets: a share of one CPU (25%), a number of CPUs (1.5) or
    /// millicores (250m). Written to cpu.max with the target's own period (100 ms by default).
    #[arg(long = "to", value_name = "SHARE", value_parser = amounts::parse_cpu_share)]
    pub to: amounts::CpuShare,
}

impl LimitCpuOptions {
    fn limit(&self) -> LimitPlan {
        LimitPlan {
            resource: Resource::Cpu,
            settings: vec![Setting::CpuMax { share: self.to }],
            oom: false,
            device: None,
            start_ppm: None,
        }
    }
}

impl PlanFault for LimitCpuOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let summary = format!("at most {} (cpu.max), throttled beyond it", self.to);
        super::plan(&self.limit(), context, summary)
    }

    fn percent(&self) -> Option<Ppm> {
        self.limit().settings[0].ppm()
    }

    fn ramp_tightens(&self) -> bool {
        true
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}
