//! `net drop`: lose a share of the target's packets silently, as a lossy network would, at
//! random or in bursts (the simple Gilbert model).
use chaos_common::{flags, threshold_from_ppm};
use serde::Serialize;
use serde_json::json;

use super::{
    NetStart, PACKET_DROP, cgroup_skb_programs,
    filters::{FilterOptions, describe_direction},
    finish, start,
};
use crate::{
    fault::{FaultContext, FaultPlan, PlanError, PlanFault},
    plan::options::{Ppm, parse_percent},
};

/// `net drop`.
#[derive(Clone, Debug, clap::Args)]
pub struct NetDropOptions {
    /// Share of matching packets to drop, in percent (0 to 100, steps of 0.0001).
    #[arg(long, value_parser = parse_percent)]
    pub percent: Ppm,
    /// Lose packets in bursts of this many on average (Gilbert model), at the same overall rate.
    #[arg(long, value_name = "PACKETS", value_parser = parse_burst_len)]
    pub burst_len: Option<f64>,
    #[command(flatten)]
    pub filters: FilterOptions,
}

impl PlanFault for NetDropOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let burst =
            self.burst_len.map(|len| BurstModel::new(self.percent, len)).transpose().map_err(PlanError::Refused)?;
        let filters = self.filters.filters();
        let NetStart { mut config, maps } = start(PACKET_DROP, self.percent, &filters, context.kernel)?;
        let direction = self.filters.direction;
        let mut parameters = json!({ "percent": self.percent, "direction": direction, "filters": filters });
        let mut summary = format!("{} of {}", self.percent, describe_direction(direction));
        if let Some(model) = burst {
            let (enter, leave) = model.thresholds();
            config.flags |= flags::BURST;
            (config.burst_enter, config.burst_leave) = (enter, leave);
            parameters["burst_len"] = json!(model.mean_len);
            summary.push_str(&format!(", in bursts of {} packets on average", model.mean_len));
        }
        let programs = cgroup_skb_programs(direction.directions(), context.target);
        let net = NetStart { config, maps };
        Ok(finish(("net drop", "dropped"), net, summary, &filters, parameters, programs, context))
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }
}

/// The burst-loss model: losses come in bursts of `mean_len` packets on average, at `loss`
/// overall (simple Gilbert model, see [`BurstModel::thresholds`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BurstModel {
    pub loss: Ppm,
    pub mean_len: f64,
}

impl BurstModel {
    /// Checks the model can exist: in the simple Gilbert model a burst ends with probability
    /// r = 1 / mean_len per packet and starts with p = loss * r / (1 - loss); p must be <= 1.
    pub fn new(loss: Ppm, mean_len: f64) -> Result<Self, String> {
        if !(mean_len >= 1.0 && mean_len.is_finite()) {
            return Err(format!("--burst-len {mean_len}: bursts average at least 1 packet"));
        }
        if loss == Ppm::ZERO || loss == Ppm::ALL {
            return Err(format!("--burst-len needs a loss between 0 and 100 % exclusive, not {loss}"));
        }
        let l = loss.as_percent() / 100.0;
        let enter = l / (mean_len * (1.0 - l));
        if enter > 1.0 {
            return Err(format!(
                "a {loss} loss cannot come in bursts averaging {mean_len} packets: bursts must average at \
                 least {:.2} packets at that loss (loss / (1 - loss))",
                l / (1.0 - l)
            ));
        }
        Ok(Self { loss, mean_len })
    }

    /// (enter-bad, leave-bad) thresholds on the 32-bit scale of `threshold_from_ppm`.
    #[must_use]
    pub fn thresholds(&self) -> (u64, u64) {
        let l = self.loss.as_percent() / 100.0;
        let leave = 1.0 / self.mean_len;
        let enter = l * leave / (1.0 - l);
        let to_ppm = |p: f64| (p * 1e6).round().clamp(0.0, 1e6) as u32;
        (threshold_from_ppm(to_ppm(enter)), threshold_from_ppm(to_ppm(leave)))
    }
}

pub fn parse_burst_len(text: &str) -> Result<f64, String> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 1.0).ok_or_else(|| {
        format!("'{text}' is not a burst length: expected a number of packets, at least 1 (e.g. 4 or 2.5)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_model_has_the_requested_mean_loss_and_burst_length() {
        let model = BurstModel::new(parse_percent("20").unwrap(), 4.0).unwrap();
        let (enter, leave) = model.thresholds();
        let (p, r) = (enter as f64 / 2f64.powi(32), leave as f64 / 2f64.powi(32));
        assert!((r - 0.25).abs() < 1e-6, "{r}");
        assert!((p / (p + r) - 0.2).abs() < 1e-5, "mean loss {}", p / (p + r));
    }

    #[test]
    fn impossible_burst_models_are_refused() {
        let err = BurstModel::new(parse_percent("80").unwrap(), 2.0).unwrap_err();
        assert!(err.contains("at least 4.00 packets"), "{err}");
        assert!(BurstModel::new(parse_percent("100").unwrap(), 2.0).is_err());
        assert!(parse_burst_len("0.5").is_err());
    }
}
