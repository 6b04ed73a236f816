//! One fault's instance of the eBPF object: loaded with the kernel offsets its programs need,
//! its configuration and filter maps written, its counters read, and everything it attached
//! detached when it is dropped (tasks a syscall delay stopped are resumed first).
use aya::{
    Btf, Ebpf,
    maps::{Array, LpmTrie, MapError, PerCpuArray, lpm_trie::Key},
    programs::{ProgramError, links::FdLink},
};
use chaos_common::{Direction, FaultConfig, FaultCounters, KernelOffsets, maps};

use super::{
    AttachError,
    object::{load_object, map_error, typed_map, typed_program},
    sum_counters,
    tc::{self, TcAttachment},
};
use crate::{
    ledger::Entry,
    os::resumer::Resumer,
    plan::{
        MapContents,
        companion::{Companion, RunningCompanion},
    },
};

/// The object built from chaos-ebpf by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos"));

/// One fault's instance of the eBPF object: its own maps, its own attached programs.
pub struct LoadedFault {
    pub(super) ebpf: Ebpf,
    /// Every bpf_link taken out of its program as soon as it is made: dropping one detaches
    /// it, and a detached experiment pins them all the same way.
    pub(super) links: Vec<(&'static str, FdLink)>,
    /// Programs whose links aya cannot hand over as an `FdLink` (cgroup sockopt): they stay
    /// in the object (detached with it) and cannot be pinned.
    pub(super) unpinnable: Vec<&'static str>,
    pub(super) tc: Vec<TcAttachment>,
    /// The kernel's BTF, once a program of this fault needed it (LSM, fentry); shared by the
    /// process's faults (attach.rs).
    pub(super) btf: Option<std::sync::Arc<Btf>>,
    /// The configuration last written, which the resumer takes its delay from.
    pub(super) config: FaultConfig,
    /// Resumes the tasks a syscall delay stops (with its guard and its ledger record).
    pub(super) resumer: Option<(Resumer, Entry)>,
    /// The target's cgroup directory, when this fault's raw `sys_enter` and fentry programs may
    /// go to the process's shared programs ([`share_hooks`](Self::share_hooks)); `None`: they
    /// attach links of their own (a detached experiment pins them).
    pub(super) shared_hooks_target: Option<std::path::PathBuf>,
    /// Its places in the shared programs: dropping them takes the fault out.
    pub(super) dispatched: Vec<super::dispatch::Slot>,
    /// The syscall bitmap written to `SYSCALL_SET`, which the shared program needs too.
    pub(super) syscall_words: Vec<u64>,
    /// The fault's part in this process (DNS's responder), once started: told every
    /// configuration, its counters and records are the fault's, stopped after the links go.
    pub(super) companion: Option<std::sync::Arc<dyn RunningCompanion>>,
}

impl LoadedFault {
    /// Loads a fresh copy of the object (maps are created; no program is loaded yet), with the
    /// kernel struct offsets some syscall programs need written into its read-only data.
    pub fn load(kernel_offsets: Option<KernelOffsets>) -> Result<Self, AttachError> {
        let ebpf = load_object(EBPF_OBJECT, Some(kernel_offsets.unwrap_or_default()))?;
        Ok(Self {
            ebpf,
            links: Vec::new(),
            unpinnable: Vec::new(),
            tc: Vec::new(),
            btf: None,
            config: FaultConfig::default(),
            resumer: None,
            shared_hooks_target: None,
            dispatched: Vec::new(),
            syscall_words: Vec::new(),
            companion: None,
        })
    }

    /// Starts the fault's companion (before its programs attach: it fills maps they read).
    pub fn start_companion(&mut self, companion: &dyn Companion) -> Result<(), AttachError> {
        let running = companion
            .start(&mut self.ebpf)
            .map_err(|reason| AttachError::Program { program: "(companion)", reason })?;
        running.configure(&self.config);
        self.companion = Some(running);
        Ok(())
    }

    /// Lets this fault's raw `sys_enter` and fentry programs run through the process's one
    /// program per hook (engine/dispatch.rs) rather than each on its own link; `target_dir` is
    /// the target cgroup's directory. Not for a fault that will be pinned.
    pub fn share_hooks(&mut self, target_dir: &std::path::Path) {
        self.shared_hooks_target = Some(target_dir.to_path_buf());
    }

    /// Writes the fault's configuration. Safe while the programs run: the next event sees it.
    pub fn configure(&mut self, config: FaultConfig) -> Result<(), AttachError> {
        let mut array: Array<_, FaultConfig> = self.map(maps::FAULT_CONFIG)?;
        array.set(0, config, 0).map_err(|source| AttachError::Map { map: maps::FAULT_CONFIG, source })?;
        self.config = config;
        if let Some(companion) = &self.companion {
            companion.configure(&config);
        }
        if let Some((resumer, _)) = &self.resumer {
            // A disarmed fault (deadline 0) stops nobody new: its time box ends with the
            // longest delay from now.
            let deadline =
                if config.deadline_ns == 0 { crate::os::sys::monotonic_now_ns() } else { config.deadline_ns };
            resumer.set_time_box(deadline.saturating_add(config.delay_ns).saturating_add(config.jitter_ns));
        }
        Ok(())
    }

    /// Switches the fault off now (deadline 0), without detaching anything.
    pub fn disarm(&mut self) -> Result<(), AttachError> {
        self.configure(FaultConfig::default())
    }

    /// Fills the filter maps.
    pub fn fill_maps(&mut self, contents: &MapContents) -> Result<(), AttachError> {
        if !contents.remote_v4.is_empty() {
            let mut trie: LpmTrie<_, [u8; 4], u8> = self.map(maps::REMOTE_V4)?;
            for &(len, address) in &contents.remote_v4 {
                trie.insert(&Key::new(len, address), 1, 0).map_err(map_error(maps::REMOTE_V4))?;
            }
        }
        if !contents.remote_v6.is_empty() {
            let mut trie: LpmTrie<_, [u8; 16], u8> = self.map(maps::REMOTE_V6)?;
            for &(len, address) in &contents.remote_v6 {
                trie.insert(&Key::new(len, address), 1, 0).map_err(map_error(maps::REMOTE_V6))?;
            }
        }
        if let Some(words) = &contents.syscall_set {
            let mut array: Array<_, u64> = self.map(maps::SYSCALL_SET)?;
            for (index, &word) in words.iter().enumerate().filter(|(_, w)| **w != 0) {
                array.set(index as u32, word, 0).map_err(map_error(maps::SYSCALL_SET))?;
            }
            self.syscall_words.clone_from(words);
        }
        if let Some(words) = &contents.port_sets {
            let mut array: Array<_, u64> = self.map(maps::PORT_SETS)?;
            for (index, &word) in words.iter().enumerate().filter(|(_, w)| **w != 0) {
                array.set(index as u32, word, 0).map_err(map_error(maps::PORT_SETS))?;
            }
        }
        Ok(())
    }

    pub(super) fn map<'a, T: TryFrom<&'a mut aya::maps::Map, Error = MapError>>(
        &'a mut self,
        name: &'static str,
    ) -> Result<T, AttachError> {
        typed_map(&mut self.ebpf, name)
    }

    pub(super) fn program<'a, T>(&'a mut self, program: &'static str) -> Result<&'a mut T, AttachError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        typed_program(&mut self.ebpf, program)
    }

    /// The loaded object itself, for a userspace action that reads what its programs report
    /// (it takes its maps out: a ring buffer the programs write to).
    pub fn object_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The counters of `direction`, summed over CPUs.
    pub fn counters(&self, direction: Direction) -> Result<FaultCounters, AttachError> {
        self.total(&[direction])
    }

    /// The counters of `directions`, summed over CPUs and directions.
    pub fn total(&self, directions: &[Direction]) -> Result<FaultCounters, AttachError> {
        let map = self.ebpf.map(maps::FAULT_COUNTERS).ok_or(AttachError::Map {
            map: maps::FAULT_COUNTERS,
            source: MapError::InvalidName { name: maps::FAULT_COUNTERS.into() },
        })?;
        let array: PerCpuArray<_, FaultCounters> =
            PerCpuArray::try_from(map).map_err(|source| AttachError::Map { map: maps::FAULT_COUNTERS, source })?;
        let kernel = sum_counters(&array, directions)?;
        Ok(self.companion.as_ref().map_or(kernel, |companion| kernel.add(companion.counters())))
    }

    /// Detaches the TC programs from inside their namespaces, removes a clsact qdisc chaos
    /// added once it is empty, and forgets the records of what is gone; returns what could not
    /// be undone, for people. (Cgroup links go when the object is dropped.)
    pub fn detach_tc(&mut self) -> Vec<String> {
        self.tc.drain(..).filter_map(tc::detach).collect()
    }

    /// Ends a syscall delay: no new stops (disarm), then every stopped task resumed now.
    /// Returns how many were resumed and how late against their due time (ns).
    pub fn finish_stops(&mut self) -> Option<crate::os::resumer::ResumeStats> {
        let (mut resumer, record) = self.resumer.take()?;
        let _ = self.disarm();
        let stats = resumer.finish();
        drop(resumer);
        record.settle();
        Some(stats)
    }
}

impl Drop for LoadedFault {
    fn drop(&mut self) {
        // Tasks first: nothing may stay stopped, whatever else goes wrong below.
        let _ = self.finish_stops();
        self.dispatched.clear();
        if let Some(companion) = self.companion.clone() {
            // Disarmed, so nothing new is sent to it: what it holds is answered while the
            // programs that route its answers are still there.
            let _ = self.disarm();
            companion.quiesce();
        }
        // Last attached, first detached (a fault attaches what others rely on first), and the
        // links before the companion: nothing is sent to a responder that has gone.
        while self.links.pop().is_some() {}
        if let Some(companion) = self.companion.take() {
            companion.stop();
        }
        for problem in self.detach_tc() {
            tracing::warn!("{problem}; `chaos cleanup` will retry");
        }
    }
}
