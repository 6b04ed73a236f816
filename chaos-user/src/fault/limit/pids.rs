//! `chaos limit pids --max N`: the target may hold at most N tasks (`pids.max`): fork and
//! clone fail with EAGAIN once it does, as on a node or in a pod that ran out of pids. The tasks
//! it already has keep running.
use super::{LimitPlan, Resource, Setting, amounts};
use crate::fault::{FaultContext, FaultPlan, PlanError, PlanFault};

/// `limit pids`.
#[derive(Clone, Debug, clap::Args)]
pub struct LimitPidsOptions {
    /// The most tasks (processes and threads) the target may hold; fork and clone fail with
    /// EAGAIN beyond it. At least 1.
    #[arg(long, value_name = "N", value_parser = amounts::parse_pids_max)]
    pub max: u64,
}

impl LimitPidsOptions {
    fn limit(&self) -> LimitPlan {
        LimitPlan {
            resource: Resource::Pids,
            settings: vec![Setting::PidsMax { max: self.max }],
            oom: false,
            device: None,
            start_ppm: None,
        }
    }
}

impl PlanFault for LimitPidsOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let now = crate::os::cgroup_files::stats::number(&context.target.dir, "pids.current");
        let summary = format!(
            "at most {} tasks (pids.max): fork and clone fail with EAGAIN beyond{}",
            self.max,
            now.map_or_else(String::new, |n| format!("; it holds {n} now"))
        );
        super::plan(&self.limit(), context, summary)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}
