//! The one reader of injection records (`--trace-injections`): a thread that waits on the
//! fault's `INJECTIONS` ring buffer, decodes each record, logs it as a `tracing` event (target
//! `chaos::injection`, level info: `-v` shows them) and keeps it for whoever runs the fault
//! (the one-shot report, the experiment's timeline). The kernel already limits the rate, so
//! this never has more than the trace rate a second to do.
use std::{
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use aya::{
    maps::{MapData, MapError, RingBuf},
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported},
};
use chaos_common::{InjectionRecord, flags, maps, skb_task};

use super::{AttachError, LoadedFault};
use crate::{injections::Injection, plan::companion::RunningCompanion};

/// The task helpers cgroup_skb programs may call on this kernel (`skb_task` bits), probed
/// once: Linux 6.18 allows both, Debian's 6.12 refuses `bpf_get_current_comm` there, and a
/// program calling a refused helper does not load at all.
pub(super) fn skb_task_helpers() -> &'static u32 {
    static PROBED: OnceLock<u32> = OnceLock::new();
    PROBED.get_or_init(|| {
        let allowed = |helper| is_helper_supported(ProgramType::CgroupSkb, helper).unwrap_or(false);
        let mut bits = 0;
        if allowed(BpfHelper::BPF_FUNC_get_current_pid_tgid) {
            bits |= skb_task::PID_TGID;
        }
        if allowed(BpfHelper::BPF_FUNC_get_current_comm) {
            bits |= skb_task::COMM;
        }
        bits
    })
}

/// How long the thread waits for records before it looks at its stop flag (ms).
const POLL_MS: i32 = 100;

impl LoadedFault {
    /// Starts reading the fault's injection records, if it is traced (None otherwise). Call it
    /// once, after the programs are attached: the ring buffer moves to the reader.
    pub fn read_injections(&mut self) -> Result<Option<InjectionReader>, AttachError> {
        if self.config.flags & flags::TRACE == 0 {
            return Ok(None);
        }
        let map = self.ebpf.take_map(maps::INJECTIONS).ok_or(AttachError::Map {
            map: maps::INJECTIONS,
            source: MapError::InvalidName { name: maps::INJECTIONS.into() },
        })?;
        let ring = RingBuf::try_from(map).map_err(|source| AttachError::Map { map: maps::INJECTIONS, source })?;
        InjectionReader::start(ring, self.companion.clone())
            .map(Some)
            .map_err(|e| AttachError::Program { program: "(trace)", reason: format!("starting its reader: {e}") })
    }
}

/// Reads a traced fault's records until finished.
pub struct InjectionReader {
    stop: Arc<AtomicBool>,
    read: Arc<Mutex<Vec<Injection>>>,
    thread: Option<JoinHandle<()>>,
    /// The fault's part in this process (DNS's responder), which makes records of its own.
    companion: Option<Arc<dyn RunningCompanion>>,
}

impl InjectionReader {
    fn start(mut ring: RingBuf<MapData>, companion: Option<Arc<dyn RunningCompanion>>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let read: Arc<Mutex<Vec<Injection>>> = Arc::default();
        let (thread_stop, thread_read) = (Arc::clone(&stop), Arc::clone(&read));
        let thread = std::thread::Builder::new().name("chaos-trace".into()).spawn(move || {
            loop {
                // The stop flag is read before the last drain, so records written before
                // `finish` are never left behind.
                let stopping = thread_stop.load(Ordering::Acquire);
                let mut batch = Vec::new();
                while let Some(item) = ring.next() {
                    if item.len() < std::mem::size_of::<InjectionRecord>() {
                        continue;
                    }
                    // SAFETY: the item holds at least one InjectionRecord (checked above),
                    // written by the program; read_unaligned makes no alignment assumption.
                    let record: InjectionRecord = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                    let injection = Injection::decode(&record);
                    tracing::info!(target: "chaos::injection", "injected: {}", injection.describe());
                    batch.push(injection);
                }
                if !batch.is_empty() {
                    thread_read.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(batch);
                }
                if stopping {
                    return;
                }
                let mut poll = libc::pollfd { fd: ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd; a failed or interrupted poll only means another round.
                unsafe { libc::poll(&raw mut poll, 1, POLL_MS) };
            }
        })?;
        Ok(Self { stop, read, thread: Some(thread), companion })
    }

    /// The records read since the last call (the companion's too, in time order).
    pub fn take(&self) -> Vec<Injection> {
        let mut records = std::mem::take(&mut *self.read.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if let Some(companion) = &self.companion {
            records.extend(companion.take_injections());
            records.sort_by_key(|record| record.at_ns);
        }
        records
    }

    /// Stops the thread after one last read, and returns what it read since the last `take`.
    pub fn finish(mut self) -> Vec<Injection> {
        self.join();
        self.take()
    }

    fn join(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for InjectionReader {
    fn drop(&mut self) {
        self.join();
    }
}
