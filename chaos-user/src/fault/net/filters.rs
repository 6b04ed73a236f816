//! Which packets a network fault applies to: `--direction`, `--protocol`, `--remote`,
//! `--remote-port`, `--local-port`; their parsers, how they are described, and how they become
//! config bits and map contents (LPM tries for prefixes, 65 536-bit sets for ports).
use std::{fmt, net::IpAddr};

use chaos_common::{Direction, FaultConfig, net_filters};
use serde::Serialize;

use crate::fault::MapContents;

/// Which packets a network fault applies to; every given filter must match.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct FilterOptions {
    /// Which packets: those the target sends, receives, or both.
    #[arg(long, value_enum, default_value = "both")]
    pub direction: DirectionChoice,
    #[command(flatten)]
    pub packets: PacketFilterOptions,
}

impl FilterOptions {
    #[must_use]
    pub(crate) fn filters(&self) -> NetFilters {
        self.packets.filters()
    }
}

/// The filters on a packet's contents (every network fault has them; faults that only shape
/// what the target sends have no `--direction`).
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct PacketFilterOptions {
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
    pub(crate) fn filters(&self) -> NetFilters {
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

/// Which way packets are affected, seen from the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DirectionChoice {
    Egress,
    Ingress,
    Both,
}

impl DirectionChoice {
    #[must_use]
    pub(crate) fn directions(self) -> &'static [chaos_common::Direction] {
        use chaos_common::Direction::{Egress, Ingress};
        match self {
            Self::Egress => &[Egress],
            Self::Ingress => &[Ingress],
            Self::Both => &[Egress, Ingress],
        }
    }
}

/// An address prefix, IPv4 or IPv6, with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
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
pub(crate) fn parse_cidr(text: &str) -> Result<Cidr, String> {
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
pub(crate) struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub(crate) fn extend(&mut self, other: &Self) {
        self.ranges.extend_from_slice(&other.ranges);
    }

    /// The set as 1024 little bitmaps words: bit `p % 64` of word `p / 64` is port `p`.
    #[must_use]
    pub(crate) fn bitmap(&self) -> Vec<u64> {
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

pub(crate) fn parse_ports(text: &str) -> Result<PortSet, String> {
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
pub(crate) enum Protocol {
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
    pub(crate) const fn number(self) -> Option<u32> {
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
pub(crate) struct NetFilters {
    pub protocol: Protocol,
    pub remote: Vec<Cidr>,
    #[serde(skip_serializing_if = "PortSet::is_empty")]
    pub remote_ports: PortSet,
    #[serde(skip_serializing_if = "PortSet::is_empty")]
    pub local_ports: PortSet,
}

impl NetFilters {
    /// Port filters only make sense for protocols with ports.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let has_ports = !self.remote_ports.is_empty() || !self.local_ports.is_empty();
        if has_ports && self.protocol == Protocol::Icmp {
            return Err("--remote-port and --local-port need --protocol tcp, udp or any: ICMP has no ports".into());
        }
        Ok(())
    }
}

pub(crate) const fn by_direction(direction: Direction, egress: &'static str, ingress: &'static str) -> &'static str {
    match direction {
        Direction::Egress => egress,
        Direction::Ingress => ingress,
    }
}

pub(crate) fn describe_direction(direction: DirectionChoice) -> &'static str {
    match direction {
        DirectionChoice::Both => "all packets",
        DirectionChoice::Egress => "outgoing packets",
        DirectionChoice::Ingress => "incoming packets",
    }
}

pub(crate) fn describe_filters(filters: &NetFilters) -> String {
    let mut text = String::new();
    if filters.protocol.number().is_some() {
        text.push_str(&format!(", {:?} only", filters.protocol).to_lowercase());
    }
    if !filters.remote.is_empty() {
        let list: Vec<String> = filters.remote.iter().map(ToString::to_string).collect();
        text.push_str(&format!(", to/from {}", list.join(" ")));
    }
    if !filters.remote_ports.is_empty() {
        text.push_str(&format!(", remote port {}", filters.remote_ports));
    }
    if !filters.local_ports.is_empty() {
        text.push_str(&format!(", local port {}", filters.local_ports));
    }
    text
}

/// Turns the filters into config bits and map contents.
pub(crate) fn filter_maps(filters: &NetFilters, config: &mut FaultConfig) -> MapContents {
    let mut maps = MapContents::default();
    if let Some(number) = filters.protocol.number() {
        config.net_filters |= net_filters::PROTOCOL;
        config.protocol = number;
    }
    if !filters.remote.is_empty() {
        config.net_filters |= net_filters::REMOTE_ADDRESS;
        for cidr in &filters.remote {
            match cidr.address {
                IpAddr::V4(v4) => maps.remote_v4.push((u32::from(cidr.prefix_len), v4.octets())),
                IpAddr::V6(v6) => maps.remote_v6.push((u32::from(cidr.prefix_len), v6.octets())),
            }
        }
    }
    if !filters.remote_ports.is_empty() || !filters.local_ports.is_empty() {
        let mut words = filters.remote_ports.bitmap();
        words.extend(filters.local_ports.bitmap());
        maps.port_sets = Some(words);
        if !filters.remote_ports.is_empty() {
            config.net_filters |= net_filters::REMOTE_PORT;
        }
        if !filters.local_ports.is_empty() {
            config.net_filters |= net_filters::LOCAL_PORT;
        }
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn icmp_has_no_ports() {
        let filters =
            NetFilters { protocol: Protocol::Icmp, remote_ports: parse_ports("53").unwrap(), ..Default::default() };
        assert!(filters.validate().unwrap_err().contains("ICMP has no ports"));
    }
}
