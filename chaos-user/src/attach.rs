//! Loads the eBPF object, writes a fault's configuration and maps, attaches its programs.
//!
//! Everything attached here is owned by this process: cgroup programs and tcx programs through
//! bpf_link file descriptors, which the kernel drops with the process, SIGKILL included. Legacy
//! TC filters (kernels before 6.6) are netlink objects that outlive it: they are written to the
//! [`ledger`](crate::ledger) so `chaos cleanup` or the next run removes them after a crash, and
//! until then the kernel-enforced deadline keeps them inert.
use std::{fs::File, path::Path};

use aya::{
    Btf, Ebpf, EbpfError, EbpfLoader,
    maps::{Array, LpmTrie, Map, MapData, MapError, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{
        CgroupAttachMode, CgroupSkbAttachType, LinkOrder, Lsm, Program, ProgramError, RawTracePoint, SchedClassifier,
        TcAttachType,
        links::{FdLink, LinkError},
        tc::{self, SchedClassifierLink, TcAttachOptions, TcError},
    },
};
use chaos_common::{Direction, FaultConfig, FaultCounters, KERNEL_OFFSETS_GLOBAL, KernelOffsets, maps};

use crate::{
    errno,
    features::{TcApi, describe_program_error},
    guard::Guard,
    ledger::{self, Entry, Item},
    netlink,
    netns::Netns,
    plan::{AttachPoint, MapContents, PlannedProgram},
    resumer::Resumer,
};

/// The object built from chaos-ebpf by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos"));

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "this chaos binary was built without its eBPF object (AYA_BUILD_SKIP was set); rebuild it \
         without AYA_BUILD_SKIP"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] EbpfError),
    #[error("program {program}: {reason}")]
    Program { program: &'static str, reason: String },
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("cannot open cgroup directory {path}: {source}")]
    Cgroup { path: String, source: std::io::Error },
    #[error("{0}")]
    Tc(String),
    #[error("{0}")]
    Pin(String),
}

/// A fault pinned by a detached experiment, reached through its pinned maps by a process that
/// did not load it (the reaper, `chaos status`).
pub struct PinnedFault {
    config: Array<MapData, FaultConfig>,
    counters: PerCpuArray<MapData, FaultCounters>,
}

impl PinnedFault {
    pub fn open(dir: &Path) -> Result<Self, AttachError> {
        let open = |name: &'static str| {
            MapData::from_pin(dir.join(name)).map_err(|source| AttachError::Map { map: name, source })
        };
        let config = Array::try_from(Map::Array(open(maps::FAULT_CONFIG)?))
            .map_err(|source| AttachError::Map { map: maps::FAULT_CONFIG, source })?;
        let counters = PerCpuArray::try_from(Map::PerCpuArray(open(maps::FAULT_COUNTERS)?))
            .map_err(|source| AttachError::Map { map: maps::FAULT_COUNTERS, source })?;
        Ok(Self { config, counters })
    }

    pub fn config(&self) -> Result<FaultConfig, AttachError> {
        self.config.get(&0, 0).map_err(|source| AttachError::Map { map: maps::FAULT_CONFIG, source })
    }

    pub fn configure(&mut self, config: FaultConfig) -> Result<(), AttachError> {
        self.config.set(0, config, 0).map_err(|source| AttachError::Map { map: maps::FAULT_CONFIG, source })
    }

    /// Counters of every direction, summed over CPUs and directions.
    pub fn total(&self) -> Result<FaultCounters, AttachError> {
        let mut sum = FaultCounters::default();
        for direction in Direction::ALL {
            let per_cpu = self
                .counters
                .get(&direction.index(), 0)
                .map_err(|source| AttachError::Map { map: maps::FAULT_COUNTERS, source })?;
            sum = per_cpu.iter().fold(sum, |s, c| s.add(*c));
        }
        Ok(sum)
    }
}

/// A TC program attached in some namespace, detached from inside that namespace.
struct TcAttachment {
    link: Option<SchedClassifierLink>,
    netns: Netns,
    iface: String,
    filter_record: Option<Entry>,
    qdisc_record: Option<Entry>,
    /// The root qdisc chaos replaced with fq, to put back, and its record.
    replaced_root: Option<(netlink::Qdisc, Entry)>,
}

/// One fault's instance of the eBPF object: its own maps, its own attached programs.
pub struct LoadedFault {
    ebpf: Ebpf,
    /// Every bpf_link taken out of its program as soon as it is made: dropping one detaches
    /// it, and a detached experiment pins them all the same way.
    links: Vec<(&'static str, FdLink)>,
    /// Programs whose links aya cannot hand over as an `FdLink` (cgroup sockopt): they stay
    /// in the object (detached with it) and cannot be pinned.
    unpinnable: Vec<&'static str>,
    tc: Vec<TcAttachment>,
    /// The kernel's BTF, parsed once if an LSM program needs it.
    btf: Option<Btf>,
    /// The configuration last written, which the resumer takes its delay from.
    config: FaultConfig,
    /// Resumes the tasks a syscall delay stops (with its guard and its ledger record).
    resumer: Option<(Resumer, Entry)>,
}

impl LoadedFault {
    /// Loads a fresh copy of the object (maps are created; no program is loaded yet), with the
    /// kernel struct offsets some syscall programs need written into its read-only data.
    pub fn load(kernel_offsets: Option<KernelOffsets>) -> Result<Self, AttachError> {
        if EBPF_OBJECT.is_empty() {
            return Err(AttachError::NoObject);
        }
        let offsets = kernel_offsets.unwrap_or_default();
        // No kernel BTF: the object has no CO-RE relocations, and parsing all of vmlinux's BTF
        // for nothing costs more than everything else chaos does at start.
        let ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(KERNEL_OFFSETS_GLOBAL, &offsets, true)
            .load(EBPF_OBJECT)
            .map_err(|err| match err {
                EbpfError::MapError(MapError::CreateError { name, io_error }) => AttachError::Program {
                    program: "(maps)",
                    reason: format!(
                        "creating map {name} returned {}{}",
                        errno::name_of(&io_error),
                        privilege_hint(&io_error)
                    ),
                },
                other => AttachError::Load(other),
            })?;
        Ok(Self {
            ebpf,
            links: Vec::new(),
            unpinnable: Vec::new(),
            tc: Vec::new(),
            btf: None,
            config: FaultConfig::default(),
            resumer: None,
        })
    }

    /// Writes the fault's configuration. Safe while the programs run: the next event sees it.
    pub fn configure(&mut self, config: FaultConfig) -> Result<(), AttachError> {
        let mut array: Array<_, FaultConfig> = self.map(maps::FAULT_CONFIG)?;
        array.set(0, config, 0).map_err(|source| AttachError::Map { map: maps::FAULT_CONFIG, source })?;
        self.config = config;
        if let Some((resumer, _)) = &self.resumer {
            // A disarmed fault (deadline 0) stops nobody new: its time box ends with the
            // longest delay from now.
            let deadline = if config.deadline_ns == 0 { crate::sys::monotonic_now_ns() } else { config.deadline_ns };
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
        let map_error = |map| move |source| AttachError::Map { map, source };
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
        }
        if let Some(words) = &contents.port_sets {
            let mut array: Array<_, u64> = self.map(maps::PORT_SETS)?;
            for (index, &word) in words.iter().enumerate().filter(|(_, w)| **w != 0) {
                array.set(index as u32, word, 0).map_err(map_error(maps::PORT_SETS))?;
            }
        }
        Ok(())
    }

    fn map<'a, T: TryFrom<&'a mut aya::maps::Map, Error = MapError>>(
        &'a mut self,
        name: &'static str,
    ) -> Result<T, AttachError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(AttachError::Map { map: name, source: MapError::InvalidName { name: name.into() } })?;
        T::try_from(map).map_err(|source| AttachError::Map { map: name, source })
    }

    /// Loads and attaches one planned program.
    pub fn attach(&mut self, planned: &PlannedProgram) -> Result<(), AttachError> {
        match &planned.attach {
            AttachPoint::Cgroup { cgroup_dir } => self.attach_cgroup(planned, cgroup_dir),
            AttachPoint::Lsm { hook } => self.attach_lsm(planned.program, hook),
            AttachPoint::RawTracepoint { tracepoint, cgroup_dir } => {
                self.attach_stopping_tracepoint(planned.program, tracepoint, cgroup_dir)
            }
            AttachPoint::SignallingTracepoint { tracepoint } => self.attach_tracepoint(planned.program, tracepoint),
            AttachPoint::Tc { netns, iface, api, needs_fq } => {
                self.attach_tc(planned.program, planned.direction, netns, iface, *api == TcApi::Legacy, *needs_fq)
            }
        }
    }

    /// A program attached to the target cgroup itself; its type says how.
    fn attach_cgroup(&mut self, planned: &PlannedProgram, cgroup_dir: &Path) -> Result<(), AttachError> {
        let program = planned.program;
        let cgroup = File::open(cgroup_dir)
            .map_err(|source| AttachError::Cgroup { path: cgroup_dir.display().to_string(), source })?;
        let prog = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| AttachError::Program { program, reason: "not in the eBPF object".into() })?;
        let loading = |err| program_error(program, "loading", &err);
        let attaching = |err| program_error(program, "attaching", &err);
        let owning = |err: LinkError| AttachError::Program { program, reason: format!("taking its link: {err}") };
        // On 5.7+ aya attaches through BPF_LINK_CREATE, which takes no flags (any flag is
        // EINVAL) and always attaches in multi mode: other programs on the cgroup (systemd's IP
        // accounting, a CNI's policies) keep running, and several chaos faults can share it.
        // `Single` is how aya spells "no flags".
        let mode = CgroupAttachMode::Single;
        let link: FdLink = match prog {
            Program::CgroupSkb(prog) => {
                let attach_type = match planned.direction {
                    Direction::Egress => CgroupSkbAttachType::Egress,
                    Direction::Ingress => CgroupSkbAttachType::Ingress,
                };
                prog.load().map_err(loading)?;
                let id = prog.attach(cgroup, attach_type, mode).map_err(attaching)?;
                prog.take_link(id).map_err(attaching)?.try_into().map_err(owning)?
            }
            Program::CgroupSockAddr(prog) => {
                prog.load().map_err(loading)?;
                let id = prog.attach(cgroup, mode).map_err(attaching)?;
                prog.take_link(id).map_err(attaching)?.try_into().map_err(owning)?
            }
            Program::CgroupSock(prog) => {
                prog.load().map_err(loading)?;
                let id = prog.attach(cgroup, mode).map_err(attaching)?;
                prog.take_link(id).map_err(attaching)?.try_into().map_err(owning)?
            }
            Program::CgroupSockopt(prog) => {
                prog.load().map_err(loading)?;
                prog.attach(cgroup, mode).map_err(attaching)?;
                self.unpinnable.push(program);
                return Ok(());
            }
            other => {
                return Err(AttachError::Program {
                    program,
                    reason: format!("{:?} programs do not attach to cgroups", other.prog_type()),
                });
            }
        };
        self.links.push((program, link));
        Ok(())
    }

    /// A raw tracepoint program that stops tasks of `cgroup_dir` (syscall delay): the guard is
    /// started before anything attaches, the resumer right after.
    fn attach_stopping_tracepoint(
        &mut self,
        program: &'static str,
        tracepoint: &str,
        cgroup_dir: &Path,
    ) -> Result<(), AttachError> {
        let record = ledger::write(None, Item::StoppedTasks { cgroup_dir: cgroup_dir.to_path_buf() })
            .map_err(|e| AttachError::Program { program, reason: format!("recording the tasks it may stop: {e}") })?;
        let longest_delay = self.config.delay_ns.saturating_add(self.config.jitter_ns);
        let time_box = (self.config.deadline_ns != 0).then(|| self.config.deadline_ns.saturating_add(longest_delay));
        let guard = Guard::spawn(cgroup_dir, time_box).map_err(|e| AttachError::Program {
            program,
            reason: format!("starting the guard that resumes stopped tasks: {e}"),
        })?;
        let prog: &mut RawTracePoint = self.program(program)?;
        prog.load().map_err(|err| program_error(program, "loading", &err))?;
        let id = prog.attach(tracepoint).map_err(|err| program_error(program, "attaching", &err))?;
        let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
        self.links.push((program, FdLink::from(link)));
        let events = self.ebpf.take_map(maps::STOP_EVENTS).ok_or(AttachError::Map {
            map: maps::STOP_EVENTS,
            source: MapError::InvalidName { name: maps::STOP_EVENTS.into() },
        })?;
        let events = RingBuf::try_from(events).map_err(|source| AttachError::Map { map: maps::STOP_EVENTS, source })?;
        let delay = std::time::Duration::from_nanos(self.config.delay_ns);
        let jitter = std::time::Duration::from_nanos(self.config.jitter_ns);
        let resumer = Resumer::start(events, guard, delay, jitter)
            .map_err(|e| AttachError::Program { program, reason: format!("starting the resumer: {e}") })?;
        self.resumer = Some((resumer, record));
        Ok(())
    }

    /// A raw tracepoint program that only signals the current task (crash points).
    fn attach_tracepoint(&mut self, program: &'static str, tracepoint: &str) -> Result<(), AttachError> {
        let prog: &mut RawTracePoint = self.program(program)?;
        prog.load().map_err(|err| program_error(program, "loading", &err))?;
        let id = prog.attach(tracepoint).map_err(|err| program_error(program, "attaching", &err))?;
        let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
        self.links.push((program, FdLink::from(link)));
        Ok(())
    }

    /// A BPF LSM program: global, attached through a link owned by this process.
    fn attach_lsm(&mut self, program: &'static str, hook: &str) -> Result<(), AttachError> {
        if self.btf.is_none() {
            self.btf = Some(Btf::from_sys_fs().map_err(|e| AttachError::Program {
                program,
                reason: format!("LSM programs need the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"),
            })?);
        }
        let btf = self.btf.take().expect("just set");
        let result = (|| {
            let prog: &mut Lsm = self.program(program)?;
            prog.load(hook, &btf).map_err(|err| program_error(program, "loading", &err))?;
            let id = prog.attach().map_err(|err| program_error(program, "attaching", &err))?;
            let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
            Ok(FdLink::from(link))
        })();
        self.btf = Some(btf);
        self.links.push((program, result?));
        Ok(())
    }

    fn attach_tc(
        &mut self,
        program: &'static str,
        direction: Direction,
        netns: &Netns,
        iface: &str,
        legacy: bool,
        needs_fq: bool,
    ) -> Result<(), AttachError> {
        let prog: &mut SchedClassifier = self.program(program)?;
        if prog.fd().is_err() {
            prog.load().map_err(|err| program_error(program, "loading", &err))?;
        }
        let attach_type = match direction {
            Direction::Egress => TcAttachType::Egress,
            Direction::Ingress => TcAttachType::Ingress,
        };
        let attachment = netns
            .run(|| -> Result<TcAttachment, AttachError> {
                let replaced_root = if needs_fq { ensure_fq(netns, iface)? } else { None };
                let mut qdisc_record = None;
                let options = if legacy {
                    match tc::qdisc_add_clsact(iface) {
                        Ok(()) => {
                            qdisc_record = Some(
                                ledger::write(Some(netns), Item::ClsactQdisc { iface: iface.to_owned() }).map_err(
                                    |e| AttachError::Tc(format!("recording the clsact qdisc on {iface}: {e}")),
                                )?,
                            );
                        }
                        Err(TcError::NetlinkError(err)) if err.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(err) => return Err(AttachError::Tc(format!("adding the clsact qdisc to {iface}: {err}"))),
                    }
                    TcAttachOptions::Netlink(tc::NlOptions::default())
                } else {
                    TcAttachOptions::TcxOrder(LinkOrder::default())
                };
                let id = prog
                    .attach_with_options(iface, attach_type, options)
                    .map_err(|err| program_error(program, &format!("attaching to {iface}"), &err))?;
                let link = prog.take_link(id).map_err(|err| program_error(program, "taking the link", &err))?;
                let filter_record = if legacy {
                    let priority = link.priority().map_err(|e| AttachError::Tc(e.to_string()))?;
                    let handle = u32::from(link.handle().map_err(|e| AttachError::Tc(e.to_string()))?);
                    let item = Item::LegacyTcFilter {
                        iface: iface.to_owned(),
                        ingress: direction == Direction::Ingress,
                        priority,
                        handle,
                    };
                    Some(
                        ledger::write(Some(netns), item)
                            .map_err(|e| AttachError::Tc(format!("recording the TC filter on {iface}: {e}")))?,
                    )
                } else {
                    None
                };
                Ok(TcAttachment {
                    link: Some(link),
                    netns: netns.clone(),
                    iface: iface.to_owned(),
                    filter_record,
                    qdisc_record,
                    replaced_root,
                })
            })
            .map_err(|err| AttachError::Tc(err.to_string()))??;
        self.tc.push(attachment);
        Ok(())
    }

    fn program<'a, T>(&'a mut self, program: &'static str) -> Result<&'a mut T, AttachError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        self.ebpf
            .program_mut(program)
            .ok_or_else(|| AttachError::Program { program, reason: "not in the eBPF object".into() })?
            .try_into()
            .map_err(|err: ProgramError| AttachError::Program { program, reason: err.to_string() })
    }

    /// Pins every link and the config and counter maps under `dir` (in bpffs), so that the
    /// fault outlives this process: a detached experiment. Legacy TC filters (netlink objects)
    /// and cgroup sockopt links (aya cannot hand them over) cannot be pinned: such faults are
    /// refused.
    pub fn pin(&mut self, dir: &Path) -> Result<(), AttachError> {
        let pin_error = |what: &str, err: &dyn std::fmt::Display| {
            AttachError::Pin(format!("pinning {what} in {}: {err}", dir.display()))
        };
        if self.resumer.is_some() {
            return Err(AttachError::Pin(
                "a syscall delay stops tasks that only a running chaos resumes: --detach does not support it; run it \
                 in the foreground"
                    .into(),
            ));
        }
        if let Some(program) = self.unpinnable.first() {
            return Err(AttachError::Pin(format!(
                "{program} (a cgroup sockopt hook) cannot be pinned: --detach does not support setsockopt/getsockopt \
                 faults; run it in the foreground"
            )));
        }
        if let Some(attachment) = self.tc.iter().find(|a| a.filter_record.is_some()) {
            return Err(AttachError::Pin(format!(
                "TC programs on {} use a legacy TC filter on this kernel (before 6.6), which cannot be pinned: \
                 --detach needs tcx for this fault; run it in the foreground",
                attachment.iface
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| pin_error("the directory", &e))?;
        for name in [maps::FAULT_CONFIG, maps::FAULT_COUNTERS] {
            let map = self.ebpf.map(name).ok_or_else(|| pin_error(name, &"not in the object"))?;
            map.pin(dir.join(name)).map_err(|e| pin_error(name, &e))?;
        }
        for (index, (program, link)) in std::mem::take(&mut self.links).into_iter().enumerate() {
            link.pin(dir.join(format!("link-{index}-{program}"))).map_err(|e| pin_error(program, &e))?;
        }
        for (index, attachment) in self.tc.iter_mut().enumerate() {
            if let Some(link) = attachment.link.take() {
                let link: FdLink = link.try_into().map_err(|e: LinkError| pin_error(&attachment.iface, &e))?;
                link.pin(dir.join(format!("link-tc-{index}-{}", attachment.iface)))
                    .map_err(|e| pin_error(&attachment.iface, &e))?;
            }
        }
        Ok(())
    }

    /// The counters of `direction`, summed over CPUs.
    pub fn counters(&self, direction: Direction) -> Result<FaultCounters, AttachError> {
        let map = self.ebpf.map(maps::FAULT_COUNTERS).ok_or(AttachError::Map {
            map: maps::FAULT_COUNTERS,
            source: MapError::InvalidName { name: maps::FAULT_COUNTERS.into() },
        })?;
        let array: PerCpuArray<_, FaultCounters> =
            PerCpuArray::try_from(map).map_err(|source| AttachError::Map { map: maps::FAULT_COUNTERS, source })?;
        let per_cpu = array
            .get(&direction.index(), 0)
            .map_err(|source| AttachError::Map { map: maps::FAULT_COUNTERS, source })?;
        Ok(per_cpu.iter().fold(FaultCounters::default(), |sum, c| sum.add(*c)))
    }

    /// Detaches the TC programs from inside their namespaces, removes a clsact qdisc chaos
    /// added once it is empty, and forgets the records of what is gone. (Cgroup links go when
    /// the object is dropped.)
    pub fn detach_tc(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for mut attachment in self.tc.drain(..) {
            let iface = attachment.iface.clone();
            let result = attachment.netns.clone().run(move || {
                drop(attachment.link.take());
                if let Some(record) = attachment.filter_record.take() {
                    record.settle();
                }
                if let Some((previous, record)) = attachment.replaced_root.take() {
                    let index = interface_index(&attachment.iface)?;
                    let mut socket = netlink::RouteSocket::open()?;
                    ledger::restore_root_qdisc(&mut socket, index, &previous)?;
                    record.settle();
                }
                if let Some(record) = attachment.qdisc_record.take() {
                    match ledger::remove(&Item::ClsactQdisc { iface: attachment.iface.clone() }) {
                        // Still used by someone else's filters: keep the record, so a later
                        // `chaos cleanup` removes the qdisc once they are gone.
                        Ok(what) if what.starts_with("kept") => std::mem::forget(record),
                        Ok(_) => record.settle(),
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            });
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => problems.push(format!("removing the clsact qdisc on {iface}: {err}")),
                Err(err) => problems.push(format!("detaching from {iface}: {err}")),
            }
        }
        problems
    }
}

impl LoadedFault {
    /// Ends a syscall delay: no new stops (disarm), then every stopped task resumed now.
    /// Returns how many were resumed and how late against their due time (ns).
    pub fn finish_stops(&mut self) -> Option<crate::resumer::ResumeStats> {
        let (mut resumer, record) = self.resumer.take()?;
        let _ = self.disarm();
        let stats = resumer.finish();
        drop(resumer);
        record.settle();
        Some(stats)
    }
}

/// Makes fq the root qdisc of `iface` (in the calling thread's namespace) unless it already is,
/// returning what it replaced (with its ledger record) so it can be put back.
fn ensure_fq(netns: &Netns, iface: &str) -> Result<Option<(netlink::Qdisc, Entry)>, AttachError> {
    let fail = |what: &str, err: std::io::Error| AttachError::Tc(format!("{what} on {iface}: {err}"));
    let index = interface_index(iface).map_err(|e| fail("finding the interface", e))?;
    let mut socket = netlink::RouteSocket::open().map_err(|e| fail("opening rtnetlink", e))?;
    let previous = socket.root_qdisc(index).map_err(|e| fail("reading the root qdisc", e))?;
    if previous.as_ref().is_some_and(|q| q.kind == "fq") {
        return Ok(None);
    }
    let previous = previous.unwrap_or(netlink::Qdisc { kind: "none".into(), handle: 0, options: None });
    let record =
        ledger::write(Some(netns), Item::ReplacedRootQdisc { iface: iface.to_owned(), previous: previous.clone() })
            .map_err(|e| fail("recording the root qdisc", e))?;
    socket
        .replace_root_qdisc(index, "fq", Some(&netlink::fq_options_for_delays()))
        .map_err(|e| fail("installing fq as the root qdisc", e))?;
    Ok(Some((previous, record)))
}

fn interface_index(iface: &str) -> std::io::Result<i32> {
    let name = std::ffi::CString::new(iface).map_err(std::io::Error::other)?;
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        index => Ok(index as i32),
    }
}

impl Drop for LoadedFault {
    fn drop(&mut self) {
        // Tasks first: nothing may stay stopped, whatever else goes wrong below.
        let _ = self.finish_stops();
        for problem in self.detach_tc() {
            tracing::warn!("{problem}; `chaos cleanup` will retry");
        }
    }
}

fn program_error(program: &'static str, doing: &str, err: &ProgramError) -> AttachError {
    let reason = match err {
        ProgramError::LoadError { io_error, verifier_log } => format!(
            "{doing} failed: the kernel returned {}{}\nverifier log:\n{verifier_log}",
            errno::name_of(io_error),
            privilege_hint(io_error)
        ),
        ProgramError::SyscallError(syscall) => {
            format!("{doing} failed: {}{}", describe_program_error(err), privilege_hint(&syscall.io_error))
        }
        other => format!("{doing} failed: {other}"),
    };
    AttachError::Program { program, reason }
}

fn privilege_hint(err: &std::io::Error) -> &'static str {
    if err.raw_os_error() == Some(libc::EPERM) {
        " (run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; `chaos doctor` checks)"
    } else {
        ""
    }
}
