//! When each fault is armed, ramped and ended, relative to the start of the faults phase. The
//! foreground runner and a detached experiment's reaper follow the same steps.
use std::time::Duration;

use chaos_common::{FaultConfig, threshold_from_ppm};
use serde::{Deserialize, Serialize};

use super::plan::PlannedFault;
use crate::plan::options::{Ppm, deserialize_secs, serialize_secs};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// Arm with a kernel deadline `duration` from now (at `ppm`, the ramp's first step, if set).
    Arm {
        #[serde(serialize_with = "serialize_secs", deserialize_with = "deserialize_secs")]
        duration: Duration,
        ppm: Option<u32>,
    },
    /// Rewrite the probability.
    Ramp { ppm: u32 },
    /// Disarm and detach.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Offset from the start of the faults phase.
    #[serde(serialize_with = "serialize_secs", deserialize_with = "deserialize_secs")]
    pub at: Duration,
    /// Index into the plan's faults.
    pub fault: usize,
    #[serde(flatten)]
    pub action: Action,
}

/// Every step of every fault, in time order (at equal times: ends first, then arms, then ramps).
#[must_use]
pub fn steps(faults: &[PlannedFault]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (index, fault) in faults.iter().enumerate() {
        let first = fault.ramp.map(|(ramp, _)| ramp.from.get());
        steps.push(Step {
            at: fault.start,
            fault: index,
            action: Action::Arm { duration: fault.duration, ppm: first },
        });
        if let Some((ramp, to)) = fault.ramp {
            for k in 1..ramp.steps {
                let at = fault.start + fault.duration * k / ramp.steps;
                steps.push(Step {
                    at,
                    fault: index,
                    action: Action::Ramp { ppm: ramp_ppm(ramp.from, to, k, ramp.steps) },
                });
            }
        }
        steps.push(Step { at: fault.start + fault.duration, fault: index, action: Action::End });
    }
    let order = |a: &Action| match a {
        Action::End => 0,
        Action::Arm { .. } => 1,
        Action::Ramp { .. } => 2,
    };
    steps.sort_by_key(|s| (s.at, order(&s.action), s.fault));
    steps
}

/// Step `k` of `steps` (0-based) goes from `from` (k = 0) to `to` (k = steps - 1), up (a
/// probability rising) or down (a limit tightening).
#[must_use]
pub fn ramp_ppm(from: Ppm, to: Ppm, k: u32, steps: u32) -> u32 {
    let (from, to) = (i64::from(from.get()), i64::from(to.get()));
    let span = i64::from(steps.saturating_sub(1).max(1));
    (from + (to - from) * i64::from(k) / span) as u32
}

/// `config` with a deadline and, when given, a new probability.
#[must_use]
pub fn armed(config: FaultConfig, deadline_ns: u64, ppm: Option<u32>) -> FaultConfig {
    let threshold = ppm.map_or(config.threshold, threshold_from_ppm);
    FaultConfig { deadline_ns, threshold, ..config }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_rise_in_even_steps_to_the_fault_percentage() {
        let (from, to) = (Ppm::from_ppm(50_000), Ppm::from_ppm(200_000));
        let ppms: Vec<u32> = (0..4).map(|k| ramp_ppm(from, to, k, 4)).collect();
        assert_eq!(ppms, [50_000, 100_000, 150_000, 200_000]);
    }

    #[test]
    fn a_tightening_ramp_falls_in_even_steps_to_the_faults_value() {
        let (from, to) = (Ppm::from_ppm(800_000), Ppm::from_ppm(100_000));
        let ppms: Vec<u32> = (0..8).map(|k| ramp_ppm(from, to, k, 8)).collect();
        assert_eq!(ppms, [800_000, 700_000, 600_000, 500_000, 400_000, 300_000, 200_000, 100_000]);
    }

    #[test]
    fn arming_keeps_everything_but_deadline_and_threshold() {
        let config = FaultConfig { threshold: 7, flags: 3, protocol: 17, ..FaultConfig::default() };
        let armed_config = armed(config, 99, None);
        assert_eq!(
            (armed_config.deadline_ns, armed_config.threshold, armed_config.flags, armed_config.protocol),
            (99, 7, 3, 17)
        );
        assert_eq!(armed(config, 99, Some(1_000_000)).threshold, 1 << 32);
    }
}
