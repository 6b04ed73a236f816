//! `net sever` while it is armed, on the actor thread of chaos's userspace faults
//! (fault/actor.rs): sweeps now and every `--every` period, or, with `--after-bytes`,
//! the program's reports of connections it silenced, recorded as they come (`--mode reset`:
//! destroyed at once). What it did goes to stderr as it happens and into the run's events (the
//! JSON summary, an experiment's timeline), one `sever` event per connection with its 4-tuple.
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd as _,
    sync::{Arc, Mutex, PoisonError},
};

use aya::maps::{MapData, RingBuf};
use chaos_common::SeverEvent;

use super::{
    SeverAction, SeverMode,
    sweep::{Severed, SweepOutcome, Sweeper},
};
use crate::{
    fault::{actor::Actor, proc::ticker::Ticker},
    hints,
    os::sys,
    plan::action::{ActionEvent, ActionOutcome, RunningAction, UserspaceAction},
    targets::Target,
};

/// How many severed connections a sweep names on stderr without `--trace-injections`.
const NAMED_PER_SWEEP: usize = 10;

/// The longest the report reader sleeps before it looks at the clock and its stop flag again.
const REPORT_POLL_MS: i32 = 50;

/// The ring buffer the `--after-bytes` programs report silenced connections in, handed over by
/// the fault's loaded object once it is armed.
#[derive(Clone)]
pub struct Reports(Arc<Mutex<RingBuf<MapData>>>);

impl Reports {
    #[must_use]
    pub fn new(ring: RingBuf<MapData>) -> Self {
        Self(Arc::new(Mutex::new(ring)))
    }
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reports(SEVER_EVENTS)")
    }
}

impl UserspaceAction for SeverAction {
    /// Sweeps on its own thread; with `--after-bytes`, first takes the ring buffer the armed
    /// object's programs report silenced connections in.
    fn start(
        &self,
        target: &Target,
        deadline_ns: u64,
        object: Option<&mut aya::Ebpf>,
    ) -> anyhow::Result<Box<dyn RunningAction>> {
        let mut action = self.clone();
        if action.after_bytes.is_some() {
            let object = object.ok_or_else(|| {
                anyhow::anyhow!("net sever --after-bytes reads its programs' reports: its object must be armed first")
            })?;
            let map = object
                .take_map(chaos_common::maps::SEVER_EVENTS)
                .ok_or_else(|| anyhow::anyhow!("the eBPF object has no {} map", chaos_common::maps::SEVER_EVENTS))?;
            action.reports = Some(Reports::new(RingBuf::try_from(map)?));
        }
        let (target, start_ns) = (target.clone(), sys::monotonic_now_ns());
        let actor = Actor::spawn_counting(move |wait, acted| {
            let mut outcome = ActionOutcome::default();
            action.run(&target, start_ns, deadline_ns, &Pace { wait, acted }, &mut outcome);
            outcome.notes = severed_lines(&outcome.events);
            outcome
        })?;
        Ok(Box::new(actor))
    }

    fn traced(&self, rate: u64) -> Option<Arc<dyn UserspaceAction>> {
        Some(Arc::new(Self { trace_per_sec: Some(rate), ..self.clone() }))
    }

    /// A restarted target's connections are all new: started again on its new cgroup, the
    /// sweeps (or the new object's reports) pick them, as the first start did the old ones.
    fn restarts_on_follow(&self) -> bool {
        true
    }
}

/// The connections severed, one line each (the first 50), for the end of the text summary.
fn severed_lines(events: &[ActionEvent]) -> Vec<String> {
    const LISTED: usize = 50;
    let mut lines = Vec::new();
    let mut severed = 0;
    for event in events {
        if let ActionEvent::Sever { how, local, remote, state, pid, comm, .. } = event {
            severed += 1;
            if severed <= LISTED {
                let owner = pid.map(|p| format!(", pid {p} {}", comm.as_deref().unwrap_or(""))).unwrap_or_default();
                lines.push(format!("  {how} {local} -> {remote} ({state}{owner})"));
            }
        }
    }
    if severed > LISTED {
        lines.push(format!("  ... and {} more (--output json lists every one)", severed - LISTED));
    }
    lines
}

/// The actor's side of a running sever: `wait(t)` sleeps until CLOCK_MONOTONIC `t` (false: told
/// to stop, end now); `acted(n)` tells the run that `n` more connections were severed (its record
/// shows the count while it runs).
pub struct Pace<'a> {
    pub wait: &'a dyn Fn(u64) -> bool,
    pub acted: &'a dyn Fn(u64),
}

impl SeverAction {
    /// Runs the fault on `target` from `start_ns` until `deadline_ns` (CLOCK_MONOTONIC) or until
    /// `pace` says it was told to stop.
    pub fn run(&self, target: &Target, start_ns: u64, deadline_ns: u64, pace: &Pace<'_>, outcome: &mut ActionOutcome) {
        let mut sweeper = Sweeper::new(target, self.filter.clone(), self.percent, self.trace_per_sec.is_some());
        match self.after_bytes {
            None => self.sweeps(target, &mut sweeper, start_ns, deadline_ns, pace, outcome),
            Some(_) => {
                foreign_sockets_note(target);
                self.reports(&mut sweeper, deadline_ns, pace, outcome);
            }
        }
    }

    /// A sweep now, then one every `--every` until the deadline.
    fn sweeps(
        &self,
        target: &Target,
        sweeper: &mut Sweeper,
        start_ns: u64,
        deadline_ns: u64,
        pace: &Pace<'_>,
        outcome: &mut ActionOutcome,
    ) {
        self.record(sweeper.sweep(), "reset", pace, outcome);
        // After the first sweep, which is what the user is waiting for.
        foreign_sockets_note(target);
        let Some(every) = self.every else { return };
        let mut ticker = Ticker::new(every, None, None, start_ns);
        while let Some(due_ns) = ticker.next_due_ns().filter(|&due| due < deadline_ns) {
            if !(pace.wait)(due_ns) {
                return;
            }
            ticker.take(sys::monotonic_now_ns());
            self.record(sweeper.sweep(), "reset", pace, outcome);
        }
    }

    /// Reads the program's reports until the deadline: each silenced connection recorded, or
    /// destroyed with `--mode reset`.
    fn reports(&self, sweeper: &mut Sweeper, deadline_ns: u64, pace: &Pace<'_>, outcome: &mut ActionOutcome) {
        let Some(Reports(ring)) = &self.reports else {
            let reason = "the program's reports are not readable (no ring buffer was handed over)".to_owned();
            eprintln!("chaos: net sever: {reason}");
            outcome.events.push(ActionEvent::NoSever { reason, at_ns: sys::monotonic_now_ns() });
            return;
        };
        let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let mut silenced = Vec::new();
            while let Some(item) = ring.next() {
                if item.len() >= std::mem::size_of::<SeverEvent>() {
                    // SAFETY: the program writes whole SeverEvents; read_unaligned copies one out.
                    silenced.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SeverEvent>()) });
                }
            }
            if !silenced.is_empty() {
                match self.mode {
                    SeverMode::Silent => {
                        let owners = match self.trace_per_sec {
                            Some(_) => sweeper.owners(&silenced.iter().map(|e| e.cookie).collect()),
                            None => std::collections::HashMap::new(),
                        };
                        let severed = silenced
                            .iter()
                            .map(|event| Severed { owner: owners.get(&event.cookie).cloned(), ..described(event) })
                            .collect::<Vec<_>>();
                        let drawn = severed.len() as u64;
                        self.record(SweepOutcome { drawn, severed, problems: Vec::new() }, "silenced", pace, outcome);
                    }
                    SeverMode::Reset => {
                        let cookies: HashSet<u64> = silenced.iter().map(|e| e.cookie).collect();
                        self.record(sweeper.destroy_cookies(&cookies), "reset", pace, outcome);
                    }
                }
            }
            let now = sys::monotonic_now_ns();
            if now >= deadline_ns || !(pace.wait)(now) {
                return;
            }
            let timeout_ms = ((deadline_ns - now) / 1_000_000).min(REPORT_POLL_MS as u64) as i32;
            let mut poll = libc::pollfd { fd: ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd; the ring buffer's fd stays open while we hold it.
            unsafe { libc::poll(&raw mut poll, 1, timeout_ms.max(1)) };
        }
    }

    /// Says what a sweep did (stderr) and keeps it (events, counts).
    fn record(&self, sweep: SweepOutcome, how: &'static str, pace: &Pace<'_>, outcome: &mut ActionOutcome) {
        outcome.ticks += sweep.drawn;
        outcome.acted += sweep.severed.len() as u64;
        (pace.acted)(sweep.severed.len() as u64);
        let at_ns = sys::monotonic_now_ns();
        for problem in sweep.problems {
            eprintln!("chaos: net sever: {problem}");
            outcome.events.push(ActionEvent::NoSever { reason: problem, at_ns });
        }
        if !sweep.severed.is_empty() {
            let named = self.trace_per_sec.map_or(NAMED_PER_SWEEP, |rate| rate as usize);
            eprintln!("chaos: net sever: {how} {} connection(s)", sweep.severed.len());
            for connection in sweep.severed.iter().take(named) {
                eprintln!("chaos: net sever:   {}", connection.describe());
            }
            if sweep.severed.len() > named {
                eprintln!("chaos: net sever:   ... and {} more", sweep.severed.len() - named);
            }
        }
        outcome.events.extend(sweep.severed.into_iter().map(|s| ActionEvent::Sever {
            how: how.to_owned(),
            local: s.local,
            remote: s.remote,
            state: s.state.to_owned(),
            pid: s.owner.as_ref().map(|(pid, _)| *pid),
            comm: s.owner.map(|(_, comm)| comm),
            at_ns: s.at_ns,
        }));
    }
}

/// Tells the user about the target's TCP sockets created in another cgroup, which no sweep and
/// no program counts as the target's.
fn foreign_sockets_note(target: &Target) {
    let foreign: Vec<_> = hints::foreign_sockets(target).into_iter().filter(|s| s.protocol == "tcp").collect();
    if let Some(note) = hints::foreign_sockets_note(target, &foreign) {
        eprintln!("chaos: note: {note}");
    }
}

/// A silenced connection as the program reported it.
fn described(event: &SeverEvent) -> Severed {
    let address = |bytes: [u8; 16], port: u16| {
        let ip = if event.ipv6 != 0 {
            IpAddr::V6(Ipv6Addr::from(bytes))
        } else {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        };
        SocketAddr::new(ip, port).to_string()
    };
    Severed {
        local: address(event.local, event.local_port),
        remote: address(event.remote, event.remote_port),
        state: "ESTAB",
        owner: None,
        at_ns: event.at_ns,
    }
}
