//! Network fault parameters: which packets (`--protocol`, `--remote`, `--remote-port`,
//! `--local-port`) and how losses cluster (`--burst-len`).
use std::{fmt, net::IpAddr};

use chaos_common::threshold_from_ppm;
use serde::Serialize;

use super::{DirectionChoice, Ppm};

// The options of each network fault, as clap parses them. They are the single definition of a
// fault's options: the command line flattens them into its subcommands, and experiment files
// parse a `[[fault]]` table through the same definitions (same names, parsers and messages).

/// Which packets a network fault applies to; every given filter must match.
#[derive(Clone, Debug, clap::Args)]
pub struct FilterOptions {
    /// Which packets: those the target sends, receives, or both.
    #[arg(long, value_enum, default_value = "both")]
    pub direction: DirectionChoice,
    #[command(flatten)]
    pub packets: PacketFilterOptions,
}

impl FilterOptions {
    #[must_use]
    pub fn filters(&self) -> NetFilters {
        self.packets.filters()
    }
}

/// The filters on a packet's contents (every network fault has them; faults that only shape
/// what the target sends have no `--direction`).
#[derive(Clone, Debug, clap::Args)]
pub struct PacketFilterOptions {
    /// Only this protocol (icmp covers ICMPv6 too).
    #[arg(long, value_enum, default_value = "any")]
    pub protocol: Protocol,
    /// Only packets to or from this peer prefix (repeatable).
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub remote: Vec<Cidr>,
    /// Only packets to or from these peer ports.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub remote_port: Vec<PortSet>,
    /// Only packets on these local ports.
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub local_port: Vec<PortSet>,
}

impl PacketFilterOptions {
    #[must_use]
    pub fn filters(&self) -> NetFilters {
        let merge = |sets: &[PortSet]| {
            let mut all = PortSet::default();
            sets.iter().for_each(|s| all.extend(s));
            all
        };
        NetFilters {
            protocol: self.protocol,
            remote: self.remote.clone(),
            remote_ports: merge(&self.remote_port),
            local_ports: merge(&self.local_port),
        }
    }
}

/// `net delay`: hold the target's outgoing packets (earliest departure time, enforced by fq).
#[derive(Clone, Debug, clap::Args)]
pub struct DelayOptions {
    /// How long each matching packet is held, e.g. 100ms (up to 10s).
    #[arg(long, value_name = "DELAY", value_parser = super::parse_delay)]
    pub by: std::time::Duration,
    /// Spread of the delay: the standard deviation (normal) or half-width (uniform).
    #[arg(long, value_name = "DELAY", value_parser = super::parse_delay)]
    pub jitter: Option<std::time::Duration>,
    /// How the jitter is distributed.
    #[arg(long, value_enum, default_value = "normal")]
    pub distribution: Distribution,
    /// Share of matching packets to delay, in percent.
    #[arg(long, value_parser = super::parse_percent, default_value = "100")]
    pub percent: Ppm,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    #[command(flatten)]
    pub packets: PacketFilterOptions,
}

/// `net rate`: limit the target's outgoing rate (earliest departure time, enforced by fq).
#[derive(Clone, Debug, clap::Args)]
pub struct RateOptions {
    /// The rate, in tc's units: 1mbit, 500kbit, 2gbit (bits per second), or 125kbps (bytes).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit: u64,
    /// How long a packet may wait for its turn; packets that would wait longer are dropped.
    #[arg(long, value_name = "DELAY", value_parser = super::parse_delay, default_value = "100ms")]
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

/// `net drop`.
#[derive(Clone, Debug, clap::Args)]
pub struct DropOptions {
    /// Share of matching packets to drop, in percent (0 to 100, steps of 0.0001).
    #[arg(long, value_parser = super::parse_percent)]
    pub percent: Ppm,
    /// Lose packets in bursts of this many on average (Gilbert model), at the same overall rate.
    #[arg(long, value_name = "PACKETS", value_parser = parse_burst_len)]
    pub burst_len: Option<f64>,
    #[command(flatten)]
    pub filters: FilterOptions,
}

/// `net corrupt`.
#[derive(Clone, Debug, clap::Args)]
pub struct CorruptOptions {
    /// Share of matching packets to corrupt, in percent.
    #[arg(long, value_parser = super::parse_percent)]
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
pub struct DuplicateOptions {
    /// Share of matching packets to send twice, in percent.
    #[arg(long, value_parser = super::parse_percent)]
    pub percent: Ppm,
    /// Attach to this interface of the target's namespace only.
    #[arg(long, value_name = "NAME")]
    pub iface: Option<String>,
    #[command(flatten)]
    pub filters: FilterOptions,
}

/// `net partition`.
#[derive(Clone, Debug, clap::Args)]
pub struct PartitionOptions {
    /// The peers to cut off (repeatable): addresses or prefixes, IPv4 or IPv6.
    #[arg(long, value_name = "CIDR", required = true, num_args = 1.., value_parser = parse_cidr)]
    pub to: Vec<Cidr>,
    /// Only this protocol.
    #[arg(long, value_enum, default_value = "any")]
    pub protocol: Protocol,
}

/// An address prefix, IPv4 or IPv6, with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses `10.0.0.0/8`, `fd00::/64`, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let trimmed = text.trim();
    let (address, prefix) = trimmed.split_once('/').map_or((trimmed, None), |(a, p)| (a, Some(p)));
    let address: IpAddr = address.parse().map_err(|_| {
        format!("'{text}' is not an address or prefix: expected e.g. 10.1.0.0/16, 192.0.2.7 or fd00::/64")
    })?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("'{text}': the prefix length must be a number from 0 to {max}"))?,
    };
    Ok(Cidr { address: mask(address, prefix_len), prefix_len })
}

fn mask(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V4(bits.into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(prefix_len)).unwrap_or(0);
            IpAddr::V6(bits.into())
        }
    }
}

/// A set of ports from `80`, `8000-8100`, `80,443,8000-8100`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn extend(&mut self, other: &Self) {
        self.ranges.extend_from_slice(&other.ranges);
    }

    /// The set as 1024 little bitmaps words: bit `p % 64` of word `p / 64` is port `p`.
    #[must_use]
    pub fn bitmap(&self) -> Vec<u64> {
        let mut words = vec![0u64; chaos_common::WORDS_PER_PORT_SET as usize];
        for &(low, high) in &self.ranges {
            for port in low..=high {
                words[usize::from(port / 64)] |= 1 << (port % 64);
            }
        }
        words
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> =
            self.ranges.iter().map(|&(l, h)| if l == h { l.to_string() } else { format!("{l}-{h}") }).collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for PortSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub fn parse_ports(text: &str) -> Result<PortSet, String> {
    let port = |p: &str| -> Result<u16, String> {
        let n: u64 = p.trim().parse().map_err(|_| format!("'{p}' in '{text}' is not a port number"))?;
        u16::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("port {n} in '{text}' is out of range: ports go from 1 to 65535"))
    };
    let mut ranges = Vec::new();
    for part in text.split(',') {
        let range = match part.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (port(low)?, port(high)?);
                if low > high {
                    return Err(format!("'{part}' in '{text}' is an empty range: write it low-high"));
                }
                (low, high)
            }
            None => {
                let p = port(part)?;
                (p, p)
            }
        };
        ranges.push(range);
    }
    Ok(PortSet { ranges })
}

/// `--protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    #[default]
    Any,
}

impl Protocol {
    /// The IP protocol number the kernel compares with, `None` for any.
    #[must_use]
    pub const fn number(self) -> Option<u32> {
        match self {
            Self::Tcp => Some(6),
            Self::Udp => Some(17),
            Self::Icmp => Some(1),
            Self::Any => None,
        }
    }
}

/// Which packets a network fault applies to; every given filter must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetFilters {
    pub protocol: Protocol,
    pub remote: Vec<Cidr>,
    #[serde(skip_serializing_if = "PortSet::is_empty")]
    pub remote_ports: PortSet,
    #[serde(skip_serializing_if = "PortSet::is_empty")]
    pub local_ports: PortSet,
}

impl NetFilters {
    /// Port filters only make sense for protocols with ports.
    pub fn validate(&self) -> Result<(), String> {
        let has_ports = !self.remote_ports.is_empty() || !self.local_ports.is_empty();
        if has_ports && self.protocol == Protocol::Icmp {
            return Err("--remote-port and --local-port need --protocol tcp, udp or any: ICMP has no ports".into());
        }
        Ok(())
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
    use crate::spec::parse_percent;

    #[test]
    fn cidrs_parse_and_lose_their_host_bits() {
        assert_eq!(parse_cidr("10.1.2.3/16").unwrap().to_string(), "10.1.0.0/16");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse_cidr("fd00::1/64").unwrap().to_string(), "fd00::/64");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    }

    #[test]
    fn bad_cidrs_say_why() {
        for (input, expected) in [
            ("10.0.0.0/33", "from 0 to 32"),
            ("fd00::/129", "from 0 to 128"),
            ("10.0.0/8", "is not an address or prefix"),
            ("example.com", "is not an address or prefix"),
            ("10.0.0.0/x", "from 0 to 32"),
        ] {
            let err = parse_cidr(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn port_sets_parse_singles_ranges_and_lists() {
        let set = parse_ports("80,443,8000-8002").unwrap();
        assert_eq!(set.to_string(), "80,443,8000-8002");
        let bitmap = set.bitmap();
        let has = |p: u16| bitmap[usize::from(p / 64)] >> (p % 64) & 1 == 1;
        assert!(has(80) && has(443) && has(8000) && has(8001) && has(8002));
        assert!(!has(81) && !has(7999) && !has(8003));
        assert!(parse_ports("65535").unwrap().bitmap()[1023] >> 63 == 1);
    }

    #[test]
    fn bad_ports_say_why() {
        for (input, expected) in [
            ("70000", "port 70000 in '70000' is out of range"),
            ("0", "out of range"),
            ("http", "is not a port number"),
            ("90-80", "is an empty range"),
            ("80,", "is not a port number"),
        ] {
            let err = parse_ports(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

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

    #[test]
    fn icmp_has_no_ports() {
        let filters =
            NetFilters { protocol: Protocol::Icmp, remote_ports: parse_ports("53").unwrap(), ..Default::default() };
        assert!(filters.validate().unwrap_err().contains("ICMP has no ports"));
    }

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
