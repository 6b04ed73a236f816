//! `--trace-injections` for DNS faults: who asked. The programs run in the client's context
//! when they redirect its socket, and record its process by the socket's cookie (map
//! `DNS_CLIENTS`, only when the fault is traced); the responder, which sees a query's source
//! address and port, asks sock_diag for that socket's cookie and reads the process there. The
//! kernel's rate limit of other families is applied here, per second of CLOCK_MONOTONIC.
use std::{net::SocketAddr, time::Duration};

use chaos_common::{FaultConfig, dns::Client};

use super::{Shared, Slot, lock};
use crate::{
    injections::{DnsHit, Injection},
    os::{netlink::NetlinkSocket, sock_diag, sys},
};

/// How long a client record may wait for its query before the sweep removes it.
const CLIENT_RECORD_TTL: Duration = Duration::from_secs(30);
/// How often the sweep runs (at most; it runs as records are made, so an untraced fault's
/// responder keeps no timer: its event loop then sleeps without a timeout).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// The records made so far and the rate limit's window.
#[derive(Default)]
pub(crate) struct Trace {
    second: u64,
    taken: u64,
    /// CLOCK_MONOTONIC ns of the last sweep of the client records.
    swept_ns: u64,
    pub(super) records: Vec<Injection>,
    /// A sock_diag socket in the target's namespace, opened on the responder's thread.
    diag: Option<NetlinkSocket>,
}

impl Trace {
    /// The rate limit: true for the first `trace_per_sec` records of each second.
    pub(super) fn admit(&mut self, config: &FaultConfig, now_ns: u64) -> bool {
        let second = now_ns / 1_000_000_000;
        if second != self.second {
            (self.second, self.taken) = (second, 0);
        }
        self.taken += 1;
        self.taken <= config.trace_per_sec
    }
}

/// The transport a query came over.
#[derive(Clone, Copy, Debug)]
pub(super) enum Transport {
    Udp,
    Tcp,
}

impl Shared {
    /// Makes the injection record of `hit`: the query came from `client` to the responder's
    /// `local` address of `slot`. Call it on the responder's thread (sock_diag asks the
    /// namespace of the calling thread).
    pub(super) fn record(&self, hit: DnsHit, transport: Transport, client: SocketAddr, local: SocketAddr, slot: Slot) {
        let resolver = self.resolver(slot);
        let task = self.client_task(transport, client, local).unwrap_or_default();
        let comm = task.comm.iter().take_while(|&&b| b != 0).map(|&b| char::from(b)).collect();
        let injection = Injection {
            at_ns: sys::monotonic_now_ns(),
            pid: task.tgid,
            tid: task.tid,
            comm,
            hook: "dns query".to_owned(),
            direction: None,
            syscall: None,
            errno: None,
            signal: None,
            protocol: Some(
                match transport {
                    Transport::Udp => "udp",
                    Transport::Tcp => "tcp",
                }
                .to_owned(),
            ),
            remote: resolver.map(|r| r.ip().to_string()),
            remote_port: resolver.map(|r| r.port()),
            local_port: Some(client.port()),
            dns: Some(hit),
        };
        tracing::info!(target: "chaos::injection", "injected: {}", injection.describe());
        let now = injection.at_ns;
        let sweep = {
            let mut trace = lock(&self.trace);
            trace.records.push(injection);
            let due = now.saturating_sub(trace.swept_ns) >= SWEEP_EVERY.as_nanos() as u64;
            if due {
                trace.swept_ns = now;
            }
            due
        };
        if sweep {
            self.sweep_clients(now);
        }
    }

    /// The process that opened the client's socket, if the programs recorded it.
    fn client_task(&self, transport: Transport, client: SocketAddr, local: SocketAddr) -> Option<Client> {
        let protocol = match transport {
            Transport::Udp => libc::IPPROTO_UDP,
            Transport::Tcp => libc::IPPROTO_TCP,
        } as u8;
        let cookie = {
            let mut trace = lock(&self.trace);
            if trace.diag.is_none() {
                trace.diag = NetlinkSocket::open(libc::NETLINK_SOCK_DIAG).ok();
            }
            let diag = trace.diag.as_mut()?;
            match sock_diag::socket_cookie(diag, protocol, client, local) {
                Ok(cookie) => cookie?,
                Err(err) => {
                    tracing::debug!("sock_diag could not find the socket of a DNS query from {client}: {err}");
                    return None;
                }
            }
        };
        // Left in the map: the socket may carry more queries (glibc sends A and AAAA on one);
        // the sweep removes it.
        lock(&self.maps).clients.get(&cookie, 0).ok()
    }

    /// Removes client records older than [`CLIENT_RECORD_TTL`] (their queries were not traced,
    /// or were long ago), so the map keeps room while the fault is traced.
    fn sweep_clients(&self, now_ns: u64) {
        let oldest = now_ns.saturating_sub(CLIENT_RECORD_TTL.as_nanos() as u64);
        let mut maps = lock(&self.maps);
        let stale: Vec<u64> =
            maps.clients.iter().filter_map(Result::ok).filter(|(_, c)| c.at_ns < oldest).map(|(k, _)| k).collect();
        for cookie in stale {
            let _ = maps.clients.remove(&cookie);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_rate_is_per_second() {
        let config = FaultConfig { trace_per_sec: 2, ..FaultConfig::default() };
        let mut trace = Trace::default();
        let admitted: Vec<bool> = [1, 2, 3].iter().map(|_| trace.admit(&config, 5_000_000_000)).collect();
        assert_eq!(admitted, [true, true, false]);
        assert!(trace.admit(&config, 6_000_000_000), "a new second");
    }
}
