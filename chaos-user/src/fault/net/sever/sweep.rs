//! One sweep of `net sever`: in each network namespace the target's processes live in, list the
//! TCP connections (sock_diag), keep those created in the target cgroup or below it that match
//! the filters and have not been drawn before, draw each against `--percent`, and destroy the
//! chosen ones in one batch (`SOCK_DESTROY`). Listening sockets are never listed.
//!
//! A connection belongs to the target when its socket was created in the target's cgroup (the
//! kernel keeps that for the socket's life), as for every other fault of chaos: a socket a
//! process opened before it moved into the target is not the target's.
use std::{
    collections::{HashMap, HashSet},
    fs,
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use chaos_common::threshold_from_ppm;
use serde::Serialize;

use super::super::filters::{Cidr, NetFilters};
use crate::{
    fault::proc::ticker::random_u64,
    hints,
    os::{
        netns::Netns,
        sys,
        tcp_connections::{
            TcpConnection, state, {self},
        },
    },
    plan::options::Ppm,
    targets::Target,
};

/// The filters of `net sever` in the form a listed connection is checked against.
#[derive(Clone, Debug, Default)]
pub struct ConnectionFilter {
    remote: Vec<Cidr>,
    /// Port sets as 65 536-bit maps; None: any port.
    remote_ports: Option<Vec<u64>>,
    local_ports: Option<Vec<u64>>,
}

impl ConnectionFilter {
    #[must_use]
    pub fn new(filters: &NetFilters) -> Self {
        let bitmap = |set: &super::super::filters::PortSet| (!set.is_empty()).then(|| set.bitmap());
        Self {
            remote: filters.remote.clone(),
            remote_ports: bitmap(&filters.remote_ports),
            local_ports: bitmap(&filters.local_ports),
        }
    }

    /// Whether every given filter holds for `connection`.
    #[must_use]
    pub fn matches(&self, connection: &TcpConnection) -> bool {
        let in_set = |set: &Option<Vec<u64>>, port: u16| {
            set.as_ref().is_none_or(|words| words[usize::from(port / 64)] >> (port % 64) & 1 == 1)
        };
        (self.remote.is_empty() || self.remote.iter().any(|cidr| contains(cidr, connection.remote_ip())))
            && in_set(&self.remote_ports, connection.remote.port())
            && in_set(&self.local_ports, connection.local.port())
    }
}

/// Whether `ip` is in `cidr` (same family only).
fn contains(cidr: &Cidr, ip: IpAddr) -> bool {
    match (cidr.address, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(cidr.prefix_len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net)
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(cidr.prefix_len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net)
        }
        _ => false,
    }
}

/// One connection chaos severed (reset, or silenced with `--after-bytes`).
#[derive(Clone, Debug, Serialize)]
pub struct Severed {
    pub local: String,
    pub remote: String,
    /// Its TCP state when it was severed (`ESTAB`, `CLOSE-WAIT`...).
    pub state: &'static str,
    /// The process holding it and its command name (with `--trace-injections`).
    pub owner: Option<(u32, String)>,
    /// `CLOCK_MONOTONIC` ns when chaos asked the kernel to destroy it (with its batch), or when
    /// the program silenced it.
    pub at_ns: u64,
}

impl Severed {
    /// `10.0.0.1:40000 -> 10.0.0.2:80 (ESTAB, pid 42 curl)`.
    #[must_use]
    pub fn describe(&self) -> String {
        let owner = self.owner.as_ref().map(|(pid, comm)| format!(", pid {pid} {comm}")).unwrap_or_default();
        format!("{} -> {} ({}{owner})", self.local, self.remote, self.state)
    }
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// Connections of the target that matched the filters and were drawn (now) against --percent.
    pub drawn: u64,
    pub severed: Vec<Severed>,
    /// What went wrong on the way, for people (the sweep goes on with the rest).
    pub problems: Vec<String>,
}

/// Sweeps a target's connections; remembers which it has drawn, so that each connection is
/// drawn once in the fault's life.
pub struct Sweeper {
    target: Target,
    filter: ConnectionFilter,
    threshold: u64,
    drawn: HashSet<u64>,
    /// Name each connection's process (`--trace-injections`).
    owners: bool,
}

impl Sweeper {
    #[must_use]
    pub fn new(target: &Target, filter: ConnectionFilter, percent: Ppm, owners: bool) -> Self {
        Self {
            target: target.clone(),
            filter,
            threshold: threshold_from_ppm(percent.get()),
            drawn: HashSet::new(),
            owners,
        }
    }

    /// Severs the target's matching connections not drawn before (each drawn against --percent).
    pub fn sweep(&mut self) -> SweepOutcome {
        let (filter, threshold) = (self.filter.clone(), self.threshold);
        let drawn = &mut self.drawn;
        let mut fresh = 0;
        let mut outcome = each_namespace(&self.target, self.owners, |connection| {
            if !filter.matches(connection) || !drawn.insert(connection.cookie) {
                return false;
            }
            fresh += 1;
            threshold >= 1 << 32 || (random_u64() >> 32) < threshold
        });
        outcome.drawn = fresh;
        outcome
    }

    /// The process (pid, command name) holding each of these connections, by socket cookie, as
    /// far as the target's processes hold them: `--trace-injections` names the owners of the
    /// connections `--after-bytes` silenced.
    #[must_use]
    pub fn owners(&self, cookies: &HashSet<u64>) -> HashMap<u64, (u32, String)> {
        let (namespaces, pids) = namespaces_of(&self.target);
        let owner_of = hints::socket_owners(&pids);
        let mut found = HashMap::new();
        for namespace in namespaces {
            let Ok(Ok(connections)) = namespace.run(|| tcp_connections::list(state::CONNECTED)) else { continue };
            for connection in connections.iter().filter(|c| cookies.contains(&c.cookie)) {
                if let Some(&pid) = owner_of.get(&connection.inode) {
                    found.insert(connection.cookie, (pid as u32, command_name(pid)));
                }
            }
        }
        found
    }

    /// Severs the target's connections with these socket cookies (those `--after-bytes --mode
    /// reset` reported), whatever the filters (the kernel applied them).
    pub fn destroy_cookies(&mut self, cookies: &HashSet<u64>) -> SweepOutcome {
        let mut outcome = each_namespace(&self.target, self.owners, |connection| cookies.contains(&connection.cookie));
        outcome.drawn = outcome.severed.len() as u64;
        outcome
    }
}

/// In each network namespace of the target's processes: lists the connections created in the
/// target's cgroup tree, destroys those `choose` picks, and says what happened.
fn each_namespace(target: &Target, owners: bool, mut choose: impl FnMut(&TcpConnection) -> bool) -> SweepOutcome {
    let mut outcome = SweepOutcome::default();
    let inside = hints::subtree_ids(&target.dir);
    let (namespaces, pids) = namespaces_of(target);
    let owner_of = if owners { hints::socket_owners(&pids) } else { HashMap::new() };
    for namespace in namespaces {
        let listed = namespace.run(|| tcp_connections::list(state::CONNECTED));
        let connections = match listed {
            Ok(Ok(connections)) => connections,
            Ok(Err(err)) => {
                outcome.problems.push(err.to_string());
                continue;
            }
            Err(err) => {
                outcome.problems.push(err.to_string());
                continue;
            }
        };
        let chosen: Vec<TcpConnection> = connections
            .into_iter()
            .filter(|c| c.cgroup_id.is_some_and(|id| inside.contains(&id)))
            .filter(|c| choose(c))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        // When chaos asked the kernel: every connection of the batch is destroyed after this.
        let at_ns = sys::monotonic_now_ns();
        let results = match namespace.run(|| tcp_connections::destroy(&chosen)) {
            Ok(Ok(results)) => results,
            Ok(Err(err)) => {
                outcome.problems.push(err.to_string());
                continue;
            }
            Err(err) => {
                outcome.problems.push(err.to_string());
                continue;
            }
        };
        for (connection, result) in chosen.iter().zip(results) {
            match result {
                Ok(()) => outcome.severed.push(Severed {
                    local: connection.local.to_string(),
                    remote: connection.remote.to_string(),
                    state: state::name(connection.state),
                    owner: owner_of.get(&connection.inode).map(|&pid| (pid as u32, command_name(pid))),
                    at_ns,
                }),
                // Gone since the listing (closed by its owner): nothing left to sever.
                Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ESTALE)) => {}
                Err(err) => outcome.problems.push(format!(
                    "{} -> {}: SOCK_DESTROY failed: {}",
                    connection.local,
                    connection.remote,
                    crate::os::errno::name_of(&err)
                )),
            }
        }
    }
    outcome
}

/// The network namespaces the target's processes live in (one handle each), and those processes.
fn namespaces_of(target: &Target) -> (Vec<Netns>, Vec<i32>) {
    let pids = crate::os::cgroup::pids_below(&target.dir);
    let mut seen: HashMap<u64, i32> = HashMap::new();
    for &pid in &pids {
        if let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/net")) {
            seen.entry(meta.ino()).or_insert(pid);
        }
    }
    let namespaces =
        seen.into_values().filter_map(|pid| Netns::open(Path::new(&format!("/proc/{pid}/ns/net"))).ok()).collect();
    (namespaces, pids)
}

fn command_name(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{super::super::filters::parse_ports, *};
    use crate::fault::net::filters::{Protocol, parse_cidr};

    fn connection(local: &str, remote: &str) -> TcpConnection {
        TcpConnection {
            family: libc::AF_INET6 as u8,
            state: state::ESTABLISHED,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            interface: 0,
            cookie: 1,
            cgroup_id: Some(1),
            inode: 1,
        }
    }

    #[test]
    fn filters_match_prefixes_and_port_sets_and_v4_mapped_peers() {
        let filters = NetFilters {
            protocol: Protocol::Tcp,
            remote: vec![parse_cidr("10.200.0.0/24").unwrap(), parse_cidr("fd00::/64").unwrap()],
            remote_ports: parse_ports("7000-7010").unwrap(),
            local_ports: Default::default(),
        };
        let filter = ConnectionFilter::new(&filters);
        assert!(filter.matches(&connection("[::ffff:10.200.0.1]:40000", "[::ffff:10.200.0.2]:7005")));
        assert!(filter.matches(&connection("[fd00::1]:40000", "[fd00::2]:7000")));
        assert!(!filter.matches(&connection("[fd00::1]:40000", "[fd00::2]:7011")), "port outside the set");
        assert!(!filter.matches(&connection("[::ffff:10.201.0.1]:1", "[::ffff:10.201.0.2]:7000")), "other prefix");
        assert!(ConnectionFilter::default().matches(&connection("[fd00::1]:1", "[fd01::2]:2")), "no filter: all");
    }
}
