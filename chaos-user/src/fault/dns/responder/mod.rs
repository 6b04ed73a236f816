//! The DNS fault's responder: the part of the fault in chaos's own process (a
//! [`Companion`]). One thread of chaos lives in the target's network namespace (a container's
//! 127.0.0.11 or its own resolver is only reachable there; for a host-network target that is
//! the host's) and holds, per resolver slot, a UDP socket and a TCP listener on 127.0.0.1 and
//! ::1, ephemeral ports, which the programs send the target's queries to (`serve.rs`). Here:
//! starting it, publishing its ports to the programs' maps, and the one decision per query
//! (live? which names and types? the schedule and the draw? what answer?), with its counters.
//!
//! chaos's own sockets are not in the target's cgroup, so what the responder forwards is not
//! sent back to it. Everything here ends with the process: sockets and a thread, no kernel
//! state (the links are the engine's, fd-owned).
mod clients;
mod serve;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData},
};
use chaos_common::{
    FaultConfig, FaultCounters,
    dns::{Client, PortKey, Resolver, ResponderPorts, SLOTS, family, maps},
    flags,
};

use super::answer::{Action, Rules, question};
use crate::{
    injections::{DnsHit, Injection},
    os::{netns::Netns, sys},
    plan::companion::{Companion, RunningCompanion},
};

/// The responder a DNS plan starts.
#[derive(Debug)]
pub struct DnsResponder {
    netns: Netns,
    rules: Arc<Rules>,
}

impl DnsResponder {
    #[must_use]
    pub fn new(netns: Netns, rules: Rules) -> Self {
        Self { netns, rules: Arc::new(rules) }
    }
}

/// Why a DNS fault may see no query, for the "seen nothing for 10 s" hint.
const QUIET_REASONS: &str = "the target sent no DNS query to port 53 from its own sockets: it has nothing to \
    look up right now, or its lookups never leave it that way. What hides DNS faults: a cache inside the process \
    (a JVM's InetAddress cache, a resolver library's own), nscd or systemd-resolved asked through glibc's nss \
    modules (they query from their own cgroup; resolv.conf's 127.0.0.53 is fine), DNS over HTTPS or TLS (not \
    port 53), names in /etc/hosts, and sockets created in another cgroup";

impl Companion for DnsResponder {
    fn describe(&self) -> String {
        format!(
            "start a DNS responder in net:[{}] on 127.0.0.1 and ::1 (a UDP and a TCP port for each of the first {SLOTS} \
             resolvers per family the target asks): it answers the queries the fault takes and forwards the others \
             to the resolver asked",
            self.netns.inode
        )
    }

    fn start(&self, object: &mut Ebpf) -> Result<Arc<dyn RunningCompanion>, String> {
        let maps = KernelMaps::take(object)?;
        let shared = Arc::new(Shared::new(Arc::clone(&self.rules), maps));
        let (ready, ports) = mpsc::channel();
        let (netns, serving) = (self.netns.clone(), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("chaos-dns".into())
            .spawn(move || serve::run(&serving, &netns, &ready))
            .map_err(|e| format!("starting the DNS responder's thread: {e}"))?;
        let running = Running { shared, thread: Mutex::new(Some(thread)) };
        let ports = match ports.recv() {
            Ok(Ok(ports)) => ports,
            Ok(Err(reason)) => return Err(format!("the DNS responder could not start: {reason}")),
            Err(_) => return Err("the DNS responder's thread ended before it was ready".into()),
        };
        publish(object, &ports)?;
        Ok(Arc::new(running))
    }

    fn quiet_reasons(&self) -> &'static str {
        QUIET_REASONS
    }
}

/// The ports of one slot's sockets (host byte order).
#[derive(Clone, Copy, Debug)]
pub(super) struct SlotPorts {
    pub(super) slot: Slot,
    pub(super) udp: u16,
    pub(super) tcp: u16,
}

/// A slot: its family ([`family`]) and index within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) family: u16,
    pub(super) index: u32,
}

impl Slot {
    /// Its entry in the per-slot arrays.
    const fn entry(self) -> u32 {
        self.family as u32 * SLOTS + self.index
    }
}

/// Writes the responder's ports where the programs read them: per slot, and by port for the
/// hooks that mend a reply's source.
fn publish(object: &mut Ebpf, ports: &[SlotPorts]) -> Result<(), String> {
    let map_error = |name: &str, e: aya::maps::MapError| format!("map {name}: {e}");
    let mut responders: Array<_, ResponderPorts> =
        Array::try_from(object.map_mut(maps::RESPONDERS).ok_or("no DNS_RESPONDERS map in the object")?)
            .map_err(|e| map_error(maps::RESPONDERS, e))?;
    for port in ports {
        let value = ResponderPorts { udp_be: port.udp.to_be(), tcp_be: port.tcp.to_be() };
        responders.set(port.slot.entry(), value, 0).map_err(|e| map_error(maps::RESPONDERS, e))?;
    }
    let mut by_port: HashMap<_, PortKey, u32> =
        HashMap::try_from(object.map_mut(maps::RESPONDER_PORTS).ok_or("no DNS_RESPONDER_PORTS map in the object")?)
            .map_err(|e| map_error(maps::RESPONDER_PORTS, e))?;
    for port in ports {
        for (number, protocol) in [(port.udp, libc::IPPROTO_UDP), (port.tcp, libc::IPPROTO_TCP)] {
            let key = PortKey { port_be: number.to_be(), family: port.slot.family as u8, protocol: protocol as u8 };
            by_port.insert(key, port.slot.index, 0).map_err(|e| map_error(maps::RESPONDER_PORTS, e))?;
        }
    }
    Ok(())
}

/// The maps the responder reads while it runs, taken out of the fault's object (their file
/// descriptors stay open with the responder, so the programs loaded later still find them).
pub(super) struct KernelMaps {
    resolvers: Array<MapData, Resolver>,
    next_slot: Array<MapData, u64>,
    pub(super) clients: HashMap<MapData, u64, Client>,
}

impl KernelMaps {
    fn take(object: &mut Ebpf) -> Result<Self, String> {
        let mut take = |name: &str| -> Result<Map, String> {
            object.take_map(name).ok_or_else(|| format!("no {name} map in the eBPF object"))
        };
        let error = |name: &str, e: aya::maps::MapError| format!("map {name}: {e}");
        Ok(Self {
            resolvers: Array::try_from(take(maps::RESOLVERS)?).map_err(|e| error(maps::RESOLVERS, e))?,
            next_slot: Array::try_from(take(maps::NEXT_SLOT)?).map_err(|e| error(maps::NEXT_SLOT, e))?,
            clients: HashMap::try_from(take(maps::CLIENTS)?).map_err(|e| error(maps::CLIENTS, e))?,
        })
    }
}

/// What the responder does with one query.
pub(super) enum Decision {
    /// Send it to the resolver and the answer back: the fault leaves it alone.
    Forward,
    /// Answer it with this message now.
    Answer(Vec<u8>),
    /// Answer nothing.
    Drop,
    /// Forward it after this delay.
    Delay(Duration),
}

/// State shared by the responder's thread and the rest of chaos.
pub(super) struct Shared {
    rules: Arc<Rules>,
    /// As last written to the programs' map: deadline, probability, schedule, delay, tracing.
    config: Mutex<FaultConfig>,
    seen: AtomicU64,
    matched: AtomicU64,
    injected: AtomicU64,
    /// Schedules: matching queries so far, and injections taken under `--max`.
    scheduled: AtomicU64,
    scheduled_injections: AtomicU64,
    /// Queries being forwarded (or delayed) now, for [`RunningCompanion::quiesce`].
    pub(super) in_flight: AtomicU64,
    pub(super) maps: Mutex<KernelMaps>,
    /// The resolver of each slot, once read from the programs' map.
    resolvers: Mutex<[Option<SocketAddr>; 2 * SLOTS as usize]>,
    pub(super) trace: Mutex<clients::Trace>,
    pub(super) stop: tokio::sync::Notify,
}

/// Locks a mutex, whatever a panicking holder left (the state stays usable).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(rules: Arc<Rules>, maps: KernelMaps) -> Self {
        Self {
            rules,
            config: Mutex::new(FaultConfig::default()),
            seen: AtomicU64::new(0),
            matched: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            scheduled: AtomicU64::new(0),
            scheduled_injections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            maps: Mutex::new(maps),
            resolvers: Mutex::new([None; 2 * SLOTS as usize]),
            trace: Mutex::new(clients::Trace::default()),
            stop: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn config(&self) -> FaultConfig {
        *lock(&self.config)
    }

    /// The one decision per query, counted: outside the fault's time (disarmed, or past its
    /// deadline, for sockets sent here before) every query is forwarded and not counted; a
    /// query is `seen` while the fault is live, `matched` when it takes its name and type, and
    /// `injected` when the schedule and the draw say so. With tracing on (and under its rate),
    /// what was done, for the injection record.
    pub(super) fn decide(&self, query: &[u8]) -> (Decision, Option<DnsHit>) {
        let config = self.config();
        let now = sys::monotonic_now_ns();
        if now >= config.deadline_ns {
            return (Decision::Forward, None);
        }
        self.seen.fetch_add(1, Ordering::Relaxed);
        let Some(question) = question(query) else { return (Decision::Forward, None) };
        if !self.rules.takes(&question) {
            return (Decision::Forward, None);
        }
        self.matched.fetch_add(1, Ordering::Relaxed);
        if !self.fires(&config) {
            return (Decision::Forward, None);
        }
        let (decision, delayed) = match self.rules.action {
            Action::Drop => (Decision::Drop, Duration::ZERO),
            Action::Delay => {
                let delay = delay(&config);
                (Decision::Delay(delay), delay)
            }
            Action::Fail(_) | Action::Spoof { .. } => match self.rules.answer(&question) {
                Some(answer) => (Decision::Answer(answer), Duration::ZERO),
                None => return (Decision::Forward, None),
            },
        };
        self.injected.fetch_add(1, Ordering::Relaxed);
        let traced = config.flags & flags::TRACE != 0 && lock(&self.trace).admit(&config, now);
        let hit = traced.then(|| DnsHit {
            name: question.name.clone(),
            query_type: question.query_type.to_string(),
            answer: self.rules.did(&question, delayed),
        });
        (decision, hit)
    }

    /// The schedule if any (exact counts over matching queries), then the draw: as the
    /// programs' gate decides (chaos-ebpf gate.rs), so the options mean the same in every family.
    fn fires(&self, config: &FaultConfig) -> bool {
        let scheduled = config.flags & flags::SCHEDULE != 0;
        if scheduled {
            let nth = self.scheduled.fetch_add(1, Ordering::Relaxed) + 1;
            if nth <= config.skip_first {
                return false;
            }
            let eligible = nth - config.skip_first;
            if (config.only_first != 0 && eligible > config.only_first)
                || (config.every > 1 && !eligible.is_multiple_of(config.every))
            {
                return false;
            }
        }
        if u64::from(rand::random::<u32>()) >= config.threshold {
            return false;
        }
        !(scheduled
            && config.max_injections != 0
            && self.scheduled_injections.fetch_add(1, Ordering::Relaxed) >= config.max_injections)
    }

    /// The resolver a slot stands for, as the program that claimed it wrote it.
    pub(super) fn resolver(&self, slot: Slot) -> Option<SocketAddr> {
        let mut known = lock(&self.resolvers);
        if let Some(address) = known[slot.entry() as usize] {
            return Some(address);
        }
        let resolver = lock(&self.maps).resolvers.get(&slot.entry(), 0).ok().filter(|r| r.claimed != 0)?;
        let ip = if resolver.family == family::IPV4 {
            let [a, b, c, d, ..] = resolver.address;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        } else {
            IpAddr::V6(Ipv6Addr::from(resolver.address))
        };
        let address = SocketAddr::new(ip, u16::from_be(resolver.port_be));
        known[slot.entry() as usize] = Some(address);
        Some(address)
    }
}

/// `--by` plus a uniform draw within `--jitter` either way.
fn delay(config: &FaultConfig) -> Duration {
    let jitter = config.jitter_ns;
    let offset = if jitter == 0 { 0 } else { rand::random_range(0..=2 * jitter) };
    Duration::from_nanos((config.delay_ns + offset).saturating_sub(jitter))
}

/// How long the end of a fault waits for the queries the responder is forwarding or delaying:
/// a forward takes a resolver's round trip; a delay longer than this is cut short (its client
/// gets no answer, and asks again).
const QUIESCE_AT_MOST: Duration = Duration::from_secs(1);

/// A started responder.
struct Running {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RunningCompanion for Running {
    fn configure(&self, config: &FaultConfig) {
        *lock(&self.shared.config) = *config;
    }

    fn counters(&self) -> FaultCounters {
        FaultCounters {
            seen: self.shared.seen.load(Ordering::Relaxed),
            matched: self.shared.matched.load(Ordering::Relaxed),
            injected: self.shared.injected.load(Ordering::Relaxed),
        }
    }

    fn take_injections(&self) -> Vec<Injection> {
        std::mem::take(&mut lock(&self.shared.trace).records)
    }

    fn quiesce(&self) {
        let until = std::time::Instant::now() + QUIESCE_AT_MOST;
        while self.shared.in_flight.load(Ordering::Acquire) > 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn stop(&self) {
        let Some(thread) = lock(&self.thread).take() else { return };
        self.shared.stop.notify_one();
        let _ = thread.join();
        let maps = lock(&self.shared.maps);
        for (family, name) in [(family::IPV4, "IPv4"), (family::IPV6, "IPv6")] {
            let claimed = maps.next_slot.get(&u32::from(family), 0).unwrap_or(0);
            if claimed > u64::from(SLOTS) {
                eprintln!(
                    "chaos: warning: the target used more than {SLOTS} {name} resolvers: {} of its sockets to the \
                     others were left alone by the fault",
                    claimed - u64::from(SLOTS)
                );
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_jitter_around_by() {
        let config = FaultConfig { delay_ns: 500_000_000, jitter_ns: 100_000_000, ..FaultConfig::default() };
        for _ in 0..1000 {
            let d = delay(&config).as_nanos();
            assert!((400_000_000..=600_000_000).contains(&d), "{d}");
        }
        let fixed = FaultConfig { delay_ns: 7, ..FaultConfig::default() };
        assert_eq!(delay(&fixed), Duration::from_nanos(7));
    }
}
