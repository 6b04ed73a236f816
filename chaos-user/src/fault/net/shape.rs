//! `net delay` and `net rate`: TC egress programs write each matching packet's earliest
//! departure time and the fq qdisc holds it until then (chaos installs fq where it is not the
//! root qdisc, and puts the previous one back).
use chaos_common::{Direction, flags};
use serde::Serialize;
use serde_json::json;

use super::{NETWORK_DELAY, NetStart, TcPrograms, filters::PacketFilterOptions, finish, start, tc_programs};
use crate::{
    fault::{FaultContext, FaultPlan, PlanError, PlanFault},
    plan::options::{Ppm, parse_delay, parse_percent},
};

/// `net delay`: hold the target's outgoing packets (earliest departure time, enforced by fq).
#[derive(Clone, Debug, clap::Args)]
pub struct NetDelayOptions {
    /// How long each matching packet is held, e.g. 100ms (up to 10s).
    #[arg(long, value_name = "DELAY", value_parser = parse_delay)]
    pub by: std::time::Duration,
    /// Spread of the delay: the standard deviation (normal) or half-width (uniform).
    #[arg(long, value_name = "DELAY", value_parser = parse_delay)]
    pub jitter: Option<std::time::Duration>,
    /// How the jitter is distributed.
    #[arg(long, value_enum, default_value = "normal")]
    pub distribution: Distribution,
    /// Share of matching packets to delay, in percent.
    #[arg(long, value_parser = parse_percent, default_value = "100")]
    pub percent: Ppm,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    #[command(flatten)]
    pub packets: PacketFilterOptions,
}

/// `net rate`: limit the target's outgoing rate (earliest departure time, enforced by fq).
#[derive(Clone, Debug, clap::Args)]
pub struct NetRateOptions {
    /// The rate, in tc's units: 1mbit, 500kbit, 2gbit (bits per second), or 125kbps (bytes).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit: u64,
    /// How long a packet may wait for its turn; packets that would wait longer are dropped.
    #[arg(long, value_name = "DELAY", value_parser = parse_delay, default_value = "100ms")]
    pub queue: std::time::Duration,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    #[command(flatten)]
    pub packets: PacketFilterOptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    #[default]
    Normal,
    Uniform,
}

/// Parses a rate in tc's units into bytes per second: `bit`, `kbit`, `mbit`, `gbit` are bits
/// per second (powers of 1000); `bps`, `kbps`, `mbps`, `gbps` are bytes per second, as in tc.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim().to_ascii_lowercase();
    let split = trimmed.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("'{text}' is not a rate: expected e.g. 1mbit, 500kbit or 125kbps"))?;
    let bits_per_second = match unit {
        "bit" => value,
        "kbit" => value * 1e3,
        "mbit" => value * 1e6,
        "gbit" => value * 1e9,
        "bps" => value * 8.0,
        "kbps" => value * 8e3,
        "mbps" => value * 8e6,
        "gbps" => value * 8e9,
        _ => {
            return Err(format!(
                "'{text}': unknown rate unit '{unit}' (use bit, kbit, mbit, gbit, or bps, kbps, mbps, gbps for bytes)"
            ));
        }
    };
    let bytes = (bits_per_second / 8.0).round();
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("'{text}' is too small a rate: at least 8bit"));
    }
    Ok(bytes as u64)
}

/// Delay and rate shape what the target sends: egress only (fq holds packets on their way out).
const EGRESS: &[Direction] = &[Direction::Egress];

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl PlanFault for NetDelayOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let filters = self.packets.filters();
        let NetStart { mut config, maps } = start(NETWORK_DELAY, self.percent, &filters, context.kernel)?;
        let (by, jitter) = (self.by, self.jitter.unwrap_or_default());
        let normal = self.distribution == Distribution::Normal;
        config.delay_ns = nanos(by);
        config.jitter_ns = u64::try_from(jitter.as_nanos()).unwrap_or(0);
        if normal {
            config.flags |= flags::JITTER_NORMAL;
        }
        let distribution = if normal { "normal" } else { "uniform" };
        let mut parameters = json!({
            "percent": self.percent,
            "direction": "egress",
            "filters": filters,
            "by": humantime::format_duration(by).to_string(),
            "jitter": humantime::format_duration(jitter).to_string(),
            "distribution": distribution,
        });
        let mut summary = format!("{} of outgoing packets held {}", self.percent, humantime::format_duration(by));
        if !jitter.is_zero() {
            summary.push_str(&format!(" +- {} ({distribution})", humantime::format_duration(jitter)));
        }
        let tc = TcPrograms {
            names: ("net_delay_egress", "net_delay_egress"),
            departure_times: true,
            iface: self.iface.clone(),
        };
        let (programs, ifaces) = tc_programs(&tc, EGRESS, &mut config, context)?;
        parameters["interfaces"] = json!(ifaces);
        Ok(finish(
            ("net delay", "delayed"),
            NetStart { config, maps },
            summary,
            &filters,
            parameters,
            programs,
            context,
        ))
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}

impl PlanFault for NetRateOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let filters = self.packets.filters();
        let NetStart { mut config, maps } = start(NETWORK_DELAY, Ppm::ALL, &filters, context.kernel)?;
        config.rate_bytes_per_sec = self.limit;
        config.rate_queue_ns = nanos(self.queue);
        let mut parameters = json!({
            "limit_bytes_per_sec": self.limit,
            "queue": humantime::format_duration(self.queue).to_string(),
            "filters": filters,
        });
        let summary = format!(
            "outgoing packets paced to {} bit/s, at most {} queued",
            self.limit * 8,
            humantime::format_duration(self.queue)
        );
        let tc = TcPrograms {
            names: ("net_rate_egress", "net_rate_egress"),
            departure_times: true,
            iface: self.iface.clone(),
        };
        let (programs, ifaces) = tc_programs(&tc, EGRESS, &mut config, context)?;
        parameters["interfaces"] = json!(ifaces);
        Ok(finish(("net rate", "paced"), NetStart { config, maps }, summary, &filters, parameters, programs, context))
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_tc_units() {
        assert_eq!(parse_rate("1mbit"), Ok(125_000));
        assert_eq!(parse_rate("500kbit"), Ok(62_500));
        assert_eq!(parse_rate("125kbps"), Ok(125_000));
        assert_eq!(parse_rate("1.5Mbit"), Ok(187_500));
        assert!(parse_rate("1mbits").unwrap_err().contains("unknown rate unit"));
        assert!(parse_rate("fast").unwrap_err().contains("is not a rate"));
        assert!(parse_rate("1bit").unwrap_err().contains("too small"));
    }
}
