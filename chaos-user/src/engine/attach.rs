//! Attaching a fault's programs where its plan says: the target cgroup (cgroup_skb, socket
//! hooks), a BPF LSM hook, a raw tracepoint or a syscall's entry function (fentry) whose
//! program stops tasks (a thread, with the holder; a process, with its guard and resumer) or
//! signals them, a kprobe, or a TC hook in the target's namespace (`tc`).
use std::{
    fs::File,
    path::Path,
    sync::{Arc, Mutex, PoisonError, Weak},
};

use aya::{
    Btf,
    maps::{MapError, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkbAttachType, FEntry, KProbe, Lsm, LsmCgroup, Program, ProgramError, RawTracePoint,
        SchedClassifier,
        links::{FdLink, LinkError},
    },
};
use chaos_common::{Direction, flags, maps};

use super::{
    AttachError, LoadedFault, dispatch, program_error,
    tc::{self, TcPlace},
};
use crate::{
    features::TcApi,
    ledger::{self, Item},
    os::{guard::Guard, holder::HeldFault, resumer::Resumer},
    plan::{AttachPoint, PlannedProgram},
};

/// What resumes the tasks a program stops, started before it attaches.
enum Stopper {
    /// Per thread: the holder took the fault (of this target cgroup).
    Holding(HeldFault, ledger::Entry, std::path::PathBuf),
    /// Per process: the guard runs; the resumer starts once the program is attached.
    Guarded(Guard, ledger::Entry),
}

impl LoadedFault {
    /// Loads and attaches one planned program.
    pub(crate) fn attach(&mut self, planned: &PlannedProgram) -> Result<(), AttachError> {
        match &planned.attach {
            AttachPoint::Cgroup { cgroup_dir } => self.attach_cgroup(planned, cgroup_dir),
            AttachPoint::Lsm { hook } => self.attach_lsm(planned.program, hook),
            AttachPoint::LsmCgroup { hook, cgroup_dir, global_fallback, .. } => {
                self.attach_lsm_cgroup(planned.program, hook, cgroup_dir, *global_fallback)
            }
            AttachPoint::RawTracepoint { tracepoint, cgroup_dir } => {
                self.attach_stopping_tracepoint(planned.program, tracepoint, cgroup_dir)
            }
            AttachPoint::SignallingTracepoint { tracepoint } => self.attach_tracepoint(planned.program, tracepoint),
            AttachPoint::Kprobe { function } => self.attach_kprobe(planned.program, function),
            AttachPoint::Fentry { function, cgroup_dir } => {
                self.attach_fentry(planned.program, function, cgroup_dir.as_deref())
            }
            AttachPoint::Tc { netns, iface, api, needs_fq } => {
                let place = TcPlace {
                    netns,
                    iface,
                    direction: planned.direction,
                    legacy: *api == TcApi::Legacy,
                    needs_fq: *needs_fq,
                };
                self.attach_tc(planned.program, &place)
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

    /// A raw tracepoint program that stops tasks of `cgroup_dir` (syscall delay): what resumes
    /// them is started before anything attaches ([`Self::start_stopper`]), and completed
    /// right after ([`Self::keep_stopper`]).
    fn attach_stopping_tracepoint(
        &mut self,
        program: &'static str,
        tracepoint: &str,
        cgroup_dir: &Path,
    ) -> Result<(), AttachError> {
        let stopper = self.start_stopper(program, cgroup_dir)?;
        self.attach_tracepoint(program, tracepoint)?;
        self.keep_stopper(program, stopper)
    }

    /// Before a program that stops tasks attaches: per thread (`flags::HOLD_THREAD`), the
    /// process's holder seizes the target's threads; per process, the guard starts. Either way
    /// the ledger records the cgroup first (a program may stop a whole process in both).
    fn start_stopper(&mut self, program: &'static str, cgroup_dir: &Path) -> Result<Stopper, AttachError> {
        if self.config.flags & flags::HOLD_THREAD == 0 {
            let (guard, record) = self.start_guard(program, cgroup_dir)?;
            return Ok(Stopper::Guarded(guard, record));
        }
        let record = ledger::write(None, Item::StoppedTasks { cgroup_dir: cgroup_dir.to_path_buf() })
            .map_err(|e| AttachError::Program { program, reason: format!("recording the tasks it may stop: {e}") })?;
        let fd_of = |ebpf: &aya::Ebpf, name: &'static str| -> Result<std::os::fd::RawFd, AttachError> {
            use std::os::fd::{AsFd as _, AsRawFd as _};
            match ebpf.map(name) {
                Some(aya::maps::Map::HashMap(data) | aya::maps::Map::RingBuf(data)) => {
                    Ok(data.fd().as_fd().as_raw_fd())
                }
                _ => Err(AttachError::Map { map: name, source: MapError::InvalidName { name: name.into() } }),
            }
        };
        let (held, events) = (fd_of(&self.ebpf, maps::HELD_THREADS)?, fd_of(&self.ebpf, maps::STOP_EVENTS)?);
        let delay = std::time::Duration::from_nanos(self.config.delay_ns);
        let jitter = std::time::Duration::from_nanos(self.config.jitter_ns);
        // SAFETY: both descriptors are this fault's maps, open while `self.ebpf` is, which
        // outlives the holder's use of them (finish_stops ends it first).
        let (held, events) =
            unsafe { (std::os::fd::BorrowedFd::borrow_raw(held), std::os::fd::BorrowedFd::borrow_raw(events)) };
        let (holding, seized) = HeldFault::start(cgroup_dir, delay, jitter, held, events).map_err(|err| match err {
            crate::os::holder::HolderError::Refused(reason) => AttachError::Refused(reason),
            other => AttachError::Program { program, reason: other.to_string() },
        })?;
        tracing::info!(
            "holding delayed calls per thread: seized {} threads of {} processes of {} in {:.1} ms",
            seized.threads,
            seized.processes,
            cgroup_dir.display(),
            seized.seize_ns as f64 / 1e6
        );
        for skipped in &seized.skipped {
            tracing::warn!("not seized: {skipped}");
        }
        Ok(Stopper::Holding(holding, record, cgroup_dir.to_path_buf()))
    }

    /// After a program that stops tasks attached: per thread, the holder is kept; per process,
    /// the resumer starts.
    fn keep_stopper(&mut self, program: &'static str, stopper: Stopper) -> Result<(), AttachError> {
        match stopper {
            Stopper::Holding(holding, record, cgroup_dir) => {
                self.holding = Some((holding, record, cgroup_dir));
                Ok(())
            }
            Stopper::Guarded(guard, record) => self.start_resumer(program, guard, record),
        }
    }

    /// Records the tasks a program may stop and starts the guard that resumes them if chaos
    /// dies: before the program attaches.
    fn start_guard(&mut self, program: &'static str, cgroup_dir: &Path) -> Result<(Guard, ledger::Entry), AttachError> {
        let record = ledger::write(None, Item::StoppedTasks { cgroup_dir: cgroup_dir.to_path_buf() })
            .map_err(|e| AttachError::Program { program, reason: format!("recording the tasks it may stop: {e}") })?;
        let longest_delay = self.config.delay_ns.saturating_add(self.config.jitter_ns);
        let time_box = (self.config.deadline_ns != 0).then(|| self.config.deadline_ns.saturating_add(longest_delay));
        let guard = Guard::spawn(cgroup_dir, time_box).map_err(|e| AttachError::Program {
            program,
            reason: format!("starting the guard that resumes stopped tasks: {e}"),
        })?;
        Ok((guard, record))
    }

    /// The resumer of the tasks the just attached program stops.
    fn start_resumer(&mut self, program: &'static str, guard: Guard, record: ledger::Entry) -> Result<(), AttachError> {
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

    /// An fentry program on a syscall's entry function: through the process's shared program on
    /// that function where the fault may share it and one lookup tells its tasks apart
    /// (engine/dispatch.rs), else on a link of its own; with `stops_tasks_of`, with the guard
    /// and resumer of the tasks it stops.
    fn attach_fentry(
        &mut self,
        program: &'static str,
        function: &str,
        stops_tasks_of: Option<&Path>,
    ) -> Result<(), AttachError> {
        let stopping = stops_tasks_of.map(|dir| self.start_stopper(program, dir)).transpose()?;
        let btf = self.take_btf(program, "fentry")?;
        let result = (|| -> Result<Option<FdLink>, AttachError> {
            let prog: &mut FEntry = self.program(program)?;
            prog.load(function, &btf)
                .map_err(|err| program_error(program, &format!("loading for {function}"), &err))?;
            if let Some(slot) = self.dispatch(program, &dispatch::Hook::Entry(function.to_owned()), Some(&btf))? {
                self.dispatched.push(slot);
                return Ok(None);
            }
            let prog: &mut FEntry = self.program(program)?;
            let id = prog.attach().map_err(|err| program_error(program, &format!("attaching to {function}"), &err))?;
            let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
            Ok(Some(FdLink::from(link)))
        })()
        .map_err(|mut error| {
            if let AttachError::Program { reason, .. } = &mut error
                && reason.contains("attaching to")
            {
                reason.push_str(" (--hook sys-enter uses the raw tracepoint instead, on every kernel)");
            }
            error
        });
        if let Some(link) = result? {
            self.links.push((program, link));
        }
        match stopping {
            Some(stopper) => self.keep_stopper(program, stopper),
            None => Ok(()),
        }
    }

    /// A raw tracepoint program: on `sys_enter`, through the process's shared program there where the
    /// fault may share it and one lookup tells its tasks apart (engine/dispatch.rs), else on a
    /// link of its own.
    fn attach_tracepoint(&mut self, program: &'static str, tracepoint: &str) -> Result<(), AttachError> {
        let prog: &mut RawTracePoint = self.program(program)?;
        prog.load().map_err(|err| program_error(program, "loading", &err))?;
        if tracepoint == "sys_enter"
            && let Some(slot) = self.dispatch(program, &dispatch::Hook::SysEnter, None)?
        {
            self.dispatched.push(slot);
            return Ok(());
        }
        let prog: &mut RawTracePoint = self.program(program)?;
        let id = prog.attach(tracepoint).map_err(|err| program_error(program, "attaching", &err))?;
        let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
        self.links.push((program, FdLink::from(link)));
        Ok(())
    }

    /// The kernel's BTF for a program of `kind` (fentry, LSM): parsed once for all of this
    /// process's faults that hold it ([`shared_kernel_btf`]), and held by this fault from its
    /// first such program on.
    fn take_btf(&mut self, program: &'static str, kind: &str) -> Result<Arc<Btf>, AttachError> {
        if let Some(btf) = &self.btf {
            return Ok(Arc::clone(btf));
        }
        let btf = shared_kernel_btf().map_err(|e| AttachError::Program {
            program,
            reason: format!("{kind} programs need the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"),
        })?;
        self.btf = Some(Arc::clone(&btf));
        Ok(btf)
    }

    /// Hands the loaded `program` to the process's shared program on `hook`, if this fault may
    /// share it; `None`: attach it on its own.
    fn dispatch(
        &mut self,
        program: &'static str,
        hook: &dispatch::Hook,
        btf: Option<&Btf>,
    ) -> Result<Option<dispatch::Slot>, AttachError> {
        let Some(cgroup_dir) = self.shared_hooks_target.clone() else { return Ok(None) };
        let mut syscalls = [0; chaos_common::SYSCALL_SET_BITS as usize / 64];
        for (word, &fault) in syscalls.iter_mut().zip(&self.syscall_words) {
            *word = fault;
        }
        let (cgroup_id, level) = (self.config.target_cgroup, self.config.target_level);
        let prog = self
            .ebpf
            .program(program)
            .ok_or_else(|| AttachError::Program { program, reason: "not in the eBPF object".into() })?;
        let fd = prog.fd().map_err(|err| program_error(program, "reading its fd", &err))?;
        dispatch::register(
            hook,
            &dispatch::Route { program: fd, cgroup_id, level, cgroup_dir: &cgroup_dir, syscalls },
            btf,
        )
    }

    /// A BPF LSM program: global, attached through a link owned by this process.
    fn attach_lsm(&mut self, program: &'static str, hook: &str) -> Result<(), AttachError> {
        let btf = self.take_btf(program, "LSM")?;
        let result = (|| -> Result<FdLink, AttachError> {
            let prog: &mut Lsm = self.program(program)?;
            prog.load(hook, &btf).map_err(|err| program_error(program, "loading", &err))?;
            let id = prog.attach().map_err(|err| program_error(program, "attaching", &err))?;
            let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
            Ok(FdLink::from(link))
        })();
        self.links.push((program, result?));
        Ok(())
    }

    /// A BPF LSM program attached to a cgroup (lsm_cgroup), through a link owned by this process.
    /// The kernel has 10 per-cgroup LSM hook slots machine-wide; when they are taken the attach
    /// fails with EINVAL, and with `global_fallback` (`--hook auto`) that global program
    /// attaches instead, with a note.
    fn attach_lsm_cgroup(
        &mut self,
        program: &'static str,
        hook: &str,
        cgroup_dir: &Path,
        global_fallback: Option<&'static str>,
    ) -> Result<(), AttachError> {
        let cgroup = File::open(cgroup_dir)
            .map_err(|source| AttachError::Cgroup { path: cgroup_dir.display().to_string(), source })?;
        let btf = self.take_btf(program, "LSM")?;
        // The link, or None when the kernel refused it for want of a per-cgroup slot and the
        // global program may stand in.
        let attached = (|| -> Result<Option<FdLink>, AttachError> {
            let prog: &mut LsmCgroup = self.program(program)?;
            prog.load(hook, &btf).map_err(|err| program_error(program, "loading", &err))?;
            match prog.attach(&cgroup) {
                Ok(id) => {
                    let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
                    Ok(Some(FdLink::from(link)))
                }
                Err(ProgramError::SyscallError(err))
                    if err.io_error.raw_os_error() == Some(libc::EINVAL) && global_fallback.is_some() =>
                {
                    let _ = prog.unload();
                    Ok(None)
                }
                Err(err) => {
                    let mut error = program_error(program, &format!("attaching to {}", cgroup_dir.display()), &err);
                    if let AttachError::Program { reason, .. } = &mut error {
                        reason.push_str(
                            " (EINVAL here may mean the kernel's 10 per-cgroup LSM hooks are taken; --hook lsm \
                             attaches global programs instead)",
                        );
                    }
                    Err(error)
                }
            }
        })();
        let Some(link) = attached? else {
            let global = global_fallback.expect("only with a fallback");
            eprintln!(
                "chaos: note: LSM hook {hook}: the kernel refused a per-cgroup program (EINVAL: its 10 per-cgroup LSM \
                 hooks are likely taken); attaching the global program {global} instead, which every task runs"
            );
            return self.attach_lsm(global, hook);
        };
        self.links.push((program, link));
        Ok(())
    }

    /// A kprobe program (error injection), loaded once and attached once per function, each
    /// through a perf-event bpf_link owned by this process (kernel 5.15+), which goes with the
    /// process, SIGKILL included, and can be pinned for a detached experiment.
    fn attach_kprobe(&mut self, program: &'static str, function: &str) -> Result<(), AttachError> {
        let prog: &mut KProbe = self.program(program)?;
        if prog.fd().is_err() {
            prog.load().map_err(|err| program_error(program, "loading", &err))?;
        }
        let id = prog.attach(function, 0).map_err(|err| {
            let mut error = program_error(program, &format!("attaching to {function}"), &err);
            if let AttachError::Program { reason, .. } = &mut error
                && reason.contains("EINVAL")
            {
                reason.push_str(" (the kernel refuses overrides of functions not on its error-injection list)");
            }
            error
        })?;
        let link = prog.take_link(id).map_err(|err| program_error(program, "taking its link", &err))?;
        let link = FdLink::try_from(link).map_err(|_| AttachError::Program {
            program,
            reason: "this kernel has no perf-event bpf_links (5.15+), which chaos's kprobes need".into(),
        })?;
        self.links.push((program, link));
        Ok(())
    }

    fn attach_tc(&mut self, program: &'static str, place: &TcPlace<'_>) -> Result<(), AttachError> {
        let prog: &mut SchedClassifier = self.program(program)?;
        if prog.fd().is_err() {
            prog.load().map_err(|err| program_error(program, "loading", &err))?;
        }
        let attachment = place.netns.run(|| tc::attach(prog, program, place))??;
        self.tc.push(attachment);
        Ok(())
    }
}

/// The kernel's BTF, parsed once and shared by every fault of the process that holds it, and
/// freed with the last of them. Each parse is about 5 MB of /sys/kernel/btf/vmlinux turned into
/// several times that in memory: a daemon holding 50 fentry or LSM faults held 50 copies.
fn shared_kernel_btf() -> Result<Arc<Btf>, aya::BtfError> {
    static SHARED: Mutex<Weak<Btf>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(btf) = shared.upgrade() {
        return Ok(btf);
    }
    let btf = Arc::new(Btf::from_sys_fs()?);
    *shared = Arc::downgrade(&btf);
    Ok(btf)
}
