//! From what the user asked (a spec) to what will be done (a plan): which programs attach where,
//! with which map contents and deadline. `--dry-run` prints the plan and stops.
use std::time::Duration;

use aya::programs::CgroupSkbAttachType;
use chaos_common::{Direction, threshold_from_ppm};
use serde::Serialize;

use crate::{
    features::{self, KernelFeatures},
    spec::{DirectionChoice, Ppm},
    target::Target,
};

/// A packet drop for one cgroup.
#[derive(Clone, Debug, Serialize)]
pub struct NetDropPlan {
    pub fault: &'static str,
    pub target: Target,
    pub percent: Ppm,
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    pub direction: DirectionChoice,
    pub programs: Vec<PlannedProgram>,
    /// `FAULT_CONFIG[0].threshold`: fires when a 32-bit random number is below it.
    pub threshold: u64,
}

/// One program and where it attaches.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedProgram {
    pub program: &'static str,
    pub hook: &'static str,
    pub attach_to: String,
    #[serde(skip)]
    pub direction: Direction,
}

impl PlannedProgram {
    #[must_use]
    pub const fn attach_type(&self) -> CgroupSkbAttachType {
        match self.direction {
            Direction::Egress => CgroupSkbAttachType::Egress,
            Direction::Ingress => CgroupSkbAttachType::Ingress,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{family} is not supported by this kernel: {reason}")]
pub struct Unsupported {
    pub family: &'static str,
    pub reason: String,
}

pub fn net_drop(
    target: Target,
    percent: Ppm,
    duration: Duration,
    direction: DirectionChoice,
    kernel: &KernelFeatures,
) -> Result<NetDropPlan, Unsupported> {
    let support = kernel.family(features::PACKET_DROP).expect("packet drop is always probed");
    if !support.supported {
        return Err(Unsupported {
            family: "packet drop",
            reason: support.reason.clone().unwrap_or_default(),
        });
    }
    let programs = direction
        .directions()
        .iter()
        .map(|&direction| PlannedProgram {
            program: match direction {
                Direction::Egress => "net_drop_egress",
                Direction::Ingress => "net_drop_ingress",
            },
            hook: match direction {
                Direction::Egress => "cgroup_skb/egress",
                Direction::Ingress => "cgroup_skb/ingress",
            },
            attach_to: target.dir.display().to_string(),
            direction,
        })
        .collect();
    Ok(NetDropPlan {
        fault: "net drop",
        threshold: threshold_from_ppm(percent.get()),
        target,
        percent,
        duration,
        direction,
        programs,
    })
}

pub fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
