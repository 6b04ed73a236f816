//! One program per process and hook for all of its faults there: the raw `sys_enter` tracepoint
//! (syscall delays and crash points where the kernel has no BPF trampolines, or `--hook
//! sys-enter`) and fentry on one syscall's entry function (where it has them).
//!
//! Each hook runs every attached program for every call it sees, so a program per fault made
//! each call on the machine pay one run per armed fault (BENCHMARKS.md, "Many faults at once":
//! 22 ns per fault per syscall on the host's sys_enter). Instead the process attaches one small
//! program per hook (the object `chaos-dispatch`, chaos-ebpf/src/dispatch.rs) and hands it each
//! fault's program by map writes: the program tests the syscall against the union of the
//! faults' bitmaps (sys_enter only: on fentry the function is the syscall), looks the task's
//! ancestor cgroup up at each level a fault targets, and tail-calls the fault found there. Each
//! fault is still its own loaded object (its maps, gate, counters and kernel deadline), so
//! nothing about what a fault does changes; only who runs it.
//!
//! A hook's dispatcher is attached when its first fault comes and detached when its last one
//! goes, by a link this process owns: nothing of it outlives the process, SIGKILL included. A
//! fault that cannot be told apart by one lookup attaches its own program, as before
//! ([`register`] says `None`): another fault here on the same cgroup, or on a cgroup above or
//! below it (a task would reach only one of them), more distinct levels than the program looks
//! at, or a full table. Detached experiments pin their own links, so they never come here.
use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    Btf, Ebpf,
    maps::{Array, HashMap, MapError, ProgramArray},
    programs::{FEntry, ProgramFd, RawTracePoint, links::FdLink},
};
use chaos_common::{
    SYSCALL_SET_BITS,
    dispatch::{FAULTS, LEVELS, LevelRoute, MAX_LEVELS, MAX_SLOTS, PROGRAM, PROGRAM_ENTRY, SYSCALLS, TARGETS},
};

use super::{
    AttachError,
    object::{load_object, map_error, typed_map, typed_program},
    program_error,
};

/// The shared program's object, built from chaos-ebpf by build.rs.
static DISPATCH_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/chaos-dispatch"));

const WORDS: usize = (SYSCALL_SET_BITS / 64) as usize;

/// The process's dispatchers, one per hook that holds at least one fault.
static DISPATCHERS: Mutex<Vec<Dispatcher>> = Mutex::new(Vec::new());

/// Where a dispatcher sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    /// The raw `sys_enter` tracepoint: every syscall.
    SysEnter,
    /// fentry on this syscall entry function (`__x64_sys_read`): that syscall only.
    Entry(String),
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SysEnter => write!(f, "the shared sys_enter program"),
            Self::Entry(function) => write!(f, "the shared fentry program on {function}"),
        }
    }
}

/// One fault's place in a dispatcher; dropping it takes the fault out (and the dispatcher off
/// its hook with the last one).
#[derive(Debug)]
pub(crate) struct Slot {
    hook: Hook,
    index: u32,
}

/// What the dispatcher needs to route a task to a fault.
pub(crate) struct Route<'a> {
    /// The fault's program on the dispatcher's hook, loaded (for fentry: on the same function).
    pub program: &'a ProgramFd,
    /// The target cgroup's id and level (the fault's config).
    pub cgroup_id: u64,
    pub level: u32,
    /// The target cgroup's directory: faults on nested cgroups cannot share one lookup.
    pub cgroup_dir: &'a Path,
    /// The fault's syscall bitmap.
    pub syscalls: [u64; WORDS],
}

struct Held {
    cgroup_id: u64,
    level: u32,
    cgroup_dir: PathBuf,
    syscalls: [u64; WORDS],
}

struct Dispatcher {
    hook: Hook,
    ebpf: Ebpf,
    /// Keeps the program on its hook; dropped with the dispatcher.
    _link: FdLink,
    slots: Vec<Option<Held>>,
    /// The distinct levels held, in their `LEVELS` order.
    levels: Vec<u32>,
    /// The `LEVELS` array as written.
    written: [LevelRoute; MAX_LEVELS as usize],
    /// The `SYSCALLS` union as written.
    union: [u64; WORDS],
}

/// Hands the fault `route` describes to the process's dispatcher on `hook` (attaching it first
/// if this is the hook's first fault; fentry needs the kernel's `btf`); `None` when the fault
/// must attach its own program (see the module).
pub(crate) fn register(hook: &Hook, route: &Route<'_>, btf: Option<&Btf>) -> Result<Option<Slot>, AttachError> {
    let mut dispatchers = DISPATCHERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let at = match dispatchers.iter().position(|d| d.hook == *hook) {
        Some(at) => at,
        None => {
            dispatchers.push(Dispatcher::attach(hook, btf)?);
            dispatchers.len() - 1
        }
    };
    let placed = dispatchers[at].place(route);
    if dispatchers[at].is_empty() {
        // Nothing took it (or it failed): the hook goes back to how it was.
        dispatchers.swap_remove(at);
    }
    placed
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut dispatchers = DISPATCHERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(at) = dispatchers.iter().position(|d| d.hook == self.hook) else { return };
        if let Err(err) = dispatchers[at].remove(self.index) {
            // The fault's own deadline still holds in the kernel; the dispatcher goes below
            // with the last fault, or with the process.
            tracing::warn!("taking a fault out of {}: {err}", self.hook);
        }
        if dispatchers[at].is_empty() {
            dispatchers.swap_remove(at);
        }
    }
}

impl Dispatcher {
    fn attach(hook: &Hook, btf: Option<&Btf>) -> Result<Self, AttachError> {
        let mut ebpf = load_object(DISPATCH_OBJECT, None)?;
        let link = match hook {
            Hook::SysEnter => {
                let prog: &mut RawTracePoint = typed_program(&mut ebpf, PROGRAM)?;
                prog.load().map_err(|err| program_error(PROGRAM, "loading", &err))?;
                let id = prog.attach("sys_enter").map_err(|err| program_error(PROGRAM, "attaching", &err))?;
                FdLink::from(prog.take_link(id).map_err(|err| program_error(PROGRAM, "taking its link", &err))?)
            }
            Hook::Entry(function) => {
                let btf = btf.ok_or_else(|| AttachError::Program {
                    program: PROGRAM_ENTRY,
                    reason: "fentry programs need the kernel's BTF".into(),
                })?;
                let prog: &mut FEntry = typed_program(&mut ebpf, PROGRAM_ENTRY)?;
                prog.load(function, btf)
                    .map_err(|err| program_error(PROGRAM_ENTRY, &format!("loading for {function}"), &err))?;
                let id = prog
                    .attach()
                    .map_err(|err| program_error(PROGRAM_ENTRY, &format!("attaching to {function}"), &err))?;
                FdLink::from(prog.take_link(id).map_err(|err| program_error(PROGRAM_ENTRY, "taking its link", &err))?)
            }
        };
        Ok(Self {
            hook: hook.clone(),
            ebpf,
            _link: link,
            slots: (0..MAX_SLOTS).map(|_| None).collect(),
            levels: Vec::new(),
            written: [LevelRoute::default(); MAX_LEVELS as usize],
            union: [0; WORDS],
        })
    }

    fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }

    fn held(&self) -> impl Iterator<Item = &Held> {
        self.slots.iter().flatten()
    }

    fn map<'a, T: TryFrom<&'a mut aya::maps::Map, Error = MapError>>(
        &'a mut self,
        name: &'static str,
    ) -> Result<T, AttachError> {
        typed_map(&mut self.ebpf, name)
    }

    /// Takes the fault if one lookup tells its tasks apart. The order of writes keeps every
    /// state the program can see in between correct: the fault's program first, its syscalls
    /// and target next, and its level's route last, which is what makes it reachable.
    fn place(&mut self, route: &Route<'_>) -> Result<Option<Slot>, AttachError> {
        let nested = |held: &Held| {
            held.cgroup_id == route.cgroup_id
                || held.cgroup_dir.starts_with(route.cgroup_dir)
                || route.cgroup_dir.starts_with(&held.cgroup_dir)
        };
        let new_level = !self.levels.contains(&route.level);
        let levels_full = new_level && self.levels.len() >= MAX_LEVELS as usize;
        let Some(index) = self.slots.iter().position(Option::is_none) else { return Ok(None) };
        if levels_full || route.level == 0 || self.held().any(nested) {
            return Ok(None);
        }
        let index = index as u32;
        let placed = self.write_route(index, new_level, route);
        if placed.is_err() {
            // Unreachable unless the failure came while its level's route was being written
            // (the last step): take it out as `remove` does, and leave nothing of it behind.
            self.slots[index as usize] = None;
            if new_level {
                self.levels.retain(|&level| level != route.level);
            }
            let _ = self.write_levels();
            let mut targets: HashMap<_, u64, u32> = self.map(TARGETS)?;
            let _ = targets.remove(&route.cgroup_id);
            let mut faults: ProgramArray<_> = self.map(FAULTS)?;
            let _ = faults.clear_index(&index);
        }
        placed?;
        Ok(Some(Slot { hook: self.hook.clone(), index }))
    }

    fn write_route(&mut self, index: u32, new_level: bool, route: &Route<'_>) -> Result<(), AttachError> {
        let mut faults: ProgramArray<_> = self.map(FAULTS)?;
        faults.set(index, route.program, 0).map_err(map_error(FAULTS))?;
        let mut union = self.union;
        for (word, fault) in union.iter_mut().zip(route.syscalls) {
            *word |= fault;
        }
        self.write_union(union)?;
        // Every target is in the hash, so a level that turns from one fault to several is
        // right from the moment its route says "ask the hash".
        let mut targets: HashMap<_, u64, u32> = self.map(TARGETS)?;
        targets.insert(route.cgroup_id, index, 0).map_err(map_error(TARGETS))?;
        self.slots[index as usize] = Some(Held {
            cgroup_id: route.cgroup_id,
            level: route.level,
            cgroup_dir: route.cgroup_dir.to_path_buf(),
            syscalls: route.syscalls,
        });
        if new_level {
            self.levels.push(route.level);
        }
        self.write_levels()
    }

    /// Takes a fault out, in the reverse order: unreachable first (its level's route, then the
    /// hash), then its program and syscalls.
    fn remove(&mut self, index: u32) -> Result<(), AttachError> {
        let Some(held) = self.slots.get_mut(index as usize).and_then(Option::take) else { return Ok(()) };
        if !self.held().any(|other| other.level == held.level) {
            self.levels.retain(|&level| level != held.level);
        }
        self.write_levels()?;
        let mut targets: HashMap<_, u64, u32> = self.map(TARGETS)?;
        targets.remove(&held.cgroup_id).map_err(map_error(TARGETS))?;
        let mut faults: ProgramArray<_> = self.map(FAULTS)?;
        faults.clear_index(&index).map_err(map_error(FAULTS))?;
        let mut union = [0; WORDS];
        for other in self.held() {
            for (word, fault) in union.iter_mut().zip(other.syscalls) {
                *word |= fault;
            }
        }
        self.write_union(union)
    }

    /// The route of each level held, packed from index 0: the sole fault's target and slot
    /// where one fault alone targets the level.
    fn routes(&self) -> [LevelRoute; MAX_LEVELS as usize] {
        let mut routes = [LevelRoute::default(); MAX_LEVELS as usize];
        for (route, &level) in routes.iter_mut().zip(&self.levels) {
            let mut at_level =
                self.slots.iter().enumerate().filter(|(_, s)| s.as_ref().is_some_and(|h| h.level == level));
            *route = match (at_level.next(), at_level.next()) {
                (Some((slot, Some(held))), None) => {
                    LevelRoute { level, slot: slot as u32, sole_target: held.cgroup_id }
                }
                _ => LevelRoute { level, slot: 0, sole_target: 0 },
            };
        }
        routes
    }

    /// Writes the entries of `LEVELS` that changed, from index 0 up. A level removed from the
    /// middle has the ones after it moved down, one entry at a time, before the last entry is
    /// cleared, so the program never misses a level still in use (it may see one twice, which
    /// costs nothing).
    fn write_levels(&mut self) -> Result<(), AttachError> {
        let routes = self.routes();
        for (index, route) in routes.iter().enumerate() {
            if *route != self.written[index] {
                let mut levels: Array<_, LevelRoute> = self.map(LEVELS)?;
                levels.set(index as u32, *route, 0).map_err(map_error(LEVELS))?;
                // Kept entry by entry: after a failed write the next one still knows the map.
                self.written[index] = *route;
            }
        }
        Ok(())
    }

    /// Writes the words of the syscall union that changed.
    fn write_union(&mut self, union: [u64; WORDS]) -> Result<(), AttachError> {
        let old = self.union;
        let mut words: Array<_, u64> = self.map(SYSCALLS)?;
        for (index, (&new, &was)) in union.iter().zip(&old).enumerate() {
            if new != was {
                words.set(index as u32, new, 0).map_err(map_error(SYSCALLS))?;
            }
        }
        self.union = union;
        Ok(())
    }
}
