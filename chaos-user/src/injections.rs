//! Who was hit: the injection records a traced fault's programs send (`--trace-injections`,
//! chaos-ebpf trace.rs), decoded for people and programs, and their summary (top processes,
//! peers and calls). The engine reads them (`engine::trace`); runs log them, experiments write
//! them to the timeline as `injection` events, reports list the summary.
use std::{collections::BTreeMap, fmt::Write as _, time::SystemTime};

use chaos_common::{Direction, InjectionRecord, NO_SYSCALL, TRACE_SITES, address_kind};
use serde::{Deserialize, Serialize};

use crate::os::{errno, syscall_table};

/// One injection, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    /// When, CLOCK_MONOTONIC ns (to place it on a timeline).
    #[serde(skip)]
    pub at_ns: u64,
    /// The process and thread the program ran for (0: the hook has no task, TC programs).
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The hook, as the call(s) it serves: `connect`, `packet (cgroup_skb)`...
    pub hook: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The syscall, when the hook knows its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The remote address, `10.0.0.2` or `fd00::2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// What a DNS fault did to a query (its responder makes these records, not a program).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsHit>,
}

/// A query a DNS fault answered, dropped or delayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsHit {
    /// The name asked, without the trailing dot.
    pub name: String,
    /// Its type: `A`, `AAAA`, `SRV`...
    #[serde(rename = "type")]
    pub query_type: String,
    /// What the fault did: `NXDOMAIN`, `dropped`, `delayed 500ms`, `spoofed 10.0.0.9`.
    pub answer: String,
}

impl Injection {
    #[must_use]
    pub fn decode(record: &InjectionRecord) -> Self {
        let is_packet = matches!(record.site, chaos_common::site::CGROUP_SKB | chaos_common::site::TC);
        let address = match record.address_kind {
            address_kind::IPV4 => {
                let [a, b, c, d, ..] = record.remote;
                Some(std::net::Ipv4Addr::new(a, b, c, d).to_string())
            }
            address_kind::IPV6 => Some(std::net::Ipv6Addr::from(record.remote).to_string()),
            _ => None,
        };
        let has_ports = address.is_some() && (record.remote_port != 0 || record.local_port != 0);
        let comm = record.comm.iter().take_while(|&&b| b != 0).map(|&b| char::from(b)).collect();
        Self {
            at_ns: record.at_ns,
            pid: record.tgid,
            tid: record.tid,
            comm,
            hook: TRACE_SITES.get(record.site as usize).copied().unwrap_or("?").to_owned(),
            // `report` names directions too, but it imports this module.
            direction: is_packet
                .then(|| if record.direction == Direction::Ingress.index() { "ingress" } else { "egress" }.to_owned()),
            syscall: (record.syscall != NO_SYSCALL).then(|| syscall_name(record.syscall)),
            errno: (record.errno != 0).then(|| errno::name(record.errno as i32)),
            signal: (record.signal != 0).then(|| signal_name(record.signal)),
            protocol: (is_packet && address.is_some()).then(|| protocol_name(record.protocol)),
            remote: address,
            remote_port: (has_ports && record.remote_port != 0).then_some(record.remote_port),
            local_port: (has_ports && record.local_port != 0).then_some(record.local_port),
            dns: None,
        }
    }

    /// `comm[pid]`, or `-` where the hook has no task.
    #[must_use]
    pub fn process(&self) -> String {
        if self.pid == 0 { "-".to_owned() } else { format!("{}[{}]", self.comm, self.pid) }
    }

    /// `10.0.0.2:5000`, `[fd00::2]:5000`, or the address alone.
    #[must_use]
    pub fn peer(&self) -> Option<String> {
        let address = self.remote.as_ref()?;
        Some(match (self.remote_port, address.contains(':')) {
            (Some(port), true) => format!("[{address}]:{port}"),
            (Some(port), false) => format!("{address}:{port}"),
            (None, _) => address.clone(),
        })
    }

    /// What was done to what: `connect ECONNREFUSED`, `write SIGSTOP`, `packet (tc) egress`.
    #[must_use]
    pub fn call(&self) -> String {
        let mut call = self.syscall.clone().unwrap_or_else(|| self.hook.clone());
        let answer = self.dns.as_ref().map(|dns| dns.answer.clone());
        for part in [&self.direction, &self.errno, &self.signal, &answer].into_iter().flatten() {
            call.push(' ');
            call.push_str(part);
        }
        call
    }

    /// One line for the log.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut line = format!("{} {}", self.process(), self.call());
        if let Some(dns) = &self.dns {
            let _ = write!(line, " for {} {}", dns.name, dns.query_type);
        }
        if let Some(peer) = self.peer() {
            let _ = write!(line, " peer {peer}");
        }
        if let Some(port) = self.local_port {
            let _ = write!(line, " local port {port}");
        }
        line
    }
}

fn syscall_name(number: u32) -> String {
    syscall_table::X86_64
        .iter()
        .find(|(_, n)| *n == number)
        .map_or_else(|| format!("syscall {number}"), |(name, _)| (*name).to_owned())
}

fn signal_name(number: u32) -> String {
    crate::os::signal::parse(&number.to_string()).map_or_else(|_| format!("signal {number}"), |s| s.name())
}

fn protocol_name(protocol: u32) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        other => format!("ip proto {other}"),
    }
}

/// Wall-clock time of a CLOCK_MONOTONIC instant (for log lines and reports).
#[must_use]
pub fn wall_time(at_ns: u64) -> SystemTime {
    let ago = crate::os::sys::monotonic_now_ns().saturating_sub(at_ns);
    SystemTime::now() - std::time::Duration::from_nanos(ago)
}

/// How many entries each "top" list keeps.
pub const TOP: usize = 5;

/// Who was hit, from the records: how many, and the top processes, peers and calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitSummary {
    /// Records read (a sample: the kernel sends at most the trace rate a second).
    pub records: u64,
    pub processes: Vec<(String, u64)>,
    pub peers: Vec<(String, u64)>,
    pub calls: Vec<(String, u64)>,
}

/// Counts records as they come, for a [`HitSummary`].
#[derive(Clone, Debug, Default)]
pub struct HitTally {
    records: u64,
    processes: BTreeMap<String, u64>,
    peers: BTreeMap<String, u64>,
    calls: BTreeMap<String, u64>,
}

impl HitTally {
    pub fn add(&mut self, injection: &Injection) {
        self.records += 1;
        *self.processes.entry(injection.process()).or_default() += 1;
        if let Some(peer) = injection.peer() {
            *self.peers.entry(peer).or_default() += 1;
        }
        *self.calls.entry(injection.call()).or_default() += 1;
    }

    #[must_use]
    pub fn summary(&self) -> HitSummary {
        HitSummary {
            records: self.records,
            processes: top(&self.processes),
            peers: top(&self.peers),
            calls: top(&self.calls),
        }
    }
}

/// The largest counts first (ties by name), at most [`TOP`].
fn top(counts: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut sorted: Vec<(String, u64)> = counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(TOP);
    sorted
}

impl HitSummary {
    /// The "who was hit" lines of a text report (nothing when there were no records).
    #[must_use]
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.records == 0 {
            return out;
        }
        let _ = writeln!(
            out,
            "who was hit ({} injection records, a sample of at most the trace rate a second):",
            self.records
        );
        for (title, list) in [("processes", &self.processes), ("peers", &self.peers), ("calls", &self.calls)] {
            if list.is_empty() {
                continue;
            }
            let items: Vec<String> = list.iter().map(|(name, n)| format!("{name} ({n})")).collect();
            let _ = writeln!(out, "  {title}: {}", items.join(", "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chaos_common::site;

    use super::*;

    fn udp_drop(pid: u32, port: u16) -> InjectionRecord {
        let mut comm = [0; 16];
        comm[..4].copy_from_slice(b"send");
        let mut remote = [0; 16];
        remote[..4].copy_from_slice(&[127, 0, 0, 1]);
        InjectionRecord {
            tgid: pid,
            tid: pid,
            site: site::CGROUP_SKB,
            syscall: NO_SYSCALL,
            protocol: 17,
            remote,
            remote_port: port,
            local_port: 40000,
            comm,
            ..InjectionRecord::default()
        }
    }

    #[test]
    fn a_dropped_datagram_reads_like_one() {
        let hit = Injection::decode(&udp_drop(42, 9000));
        assert_eq!(hit.describe(), "send[42] packet (cgroup_skb) egress peer 127.0.0.1:9000 local port 40000");
        assert_eq!(hit.protocol.as_deref(), Some("udp"));
    }

    #[test]
    fn a_failed_connect_names_its_errno() {
        let record = InjectionRecord {
            tgid: 7,
            site: site::CONNECT,
            syscall: NO_SYSCALL,
            errno: 111,
            address_kind: address_kind::NONE,
            ..InjectionRecord::default()
        };
        let hit = Injection::decode(&record);
        assert_eq!(hit.call(), "connect ECONNREFUSED");
        assert_eq!(hit.peer(), None);
        let delayed = InjectionRecord { syscall: 1, signal: 19, site: site::SYS_ENTER, address_kind: 2, ..record };
        assert_eq!(Injection::decode(&delayed).call(), "write ECONNREFUSED SIGSTOP");
    }

    #[test]
    fn the_summary_keeps_the_top_ones() {
        let mut tally = HitTally::default();
        for (pid, n) in [(1, 3), (2, 1), (3, 2), (4, 1), (5, 1), (6, 5)] {
            for _ in 0..n {
                tally.add(&Injection::decode(&udp_drop(pid, 9000)));
            }
        }
        let summary = tally.summary();
        assert_eq!(summary.records, 13);
        assert_eq!(summary.processes.len(), TOP);
        assert_eq!(summary.processes[0], ("send[6]".to_owned(), 5));
        assert_eq!(summary.peers, vec![("127.0.0.1:9000".to_owned(), 13)]);
        assert!(summary.text().contains("processes: send[6] (5), send[1] (3)"), "{}", summary.text());
    }
}
