//! What the kernel side and the userspace side of chaos agree on: the layout of the maps that
//! configure a fault and count what it did.
//!
//! One loaded eBPF object serves one fault: its `FAULT_CONFIG` map holds one [`FaultConfig`], and
//! its `FAULT_COUNTERS` per-CPU map holds one [`FaultCounters`] per [`Direction`]. Running two
//! faults means loading the object twice; nothing is generated per fault. Filters (address
//! prefixes, port sets, syscall sets) live in maps too, so one object serves every fault.
//!
//! All structs are `#[repr(C)]` with explicit padding fields so both compilers agree on the layout
//! and no uninitialised bytes reach the kernel.
#![no_std]

pub mod dns;

/// Map names, shared so neither side can misspell them.
pub mod maps {
    /// Array, one entry: the fault's [`super::FaultConfig`].
    pub const FAULT_CONFIG: &str = "FAULT_CONFIG";
    /// Per-CPU array, one entry per [`super::Direction`]: [`super::FaultCounters`].
    pub const FAULT_COUNTERS: &str = "FAULT_COUNTERS";
    /// Array, one entry: [`super::ScheduleState`], updated atomically (exact across CPUs).
    pub const FAULT_SCHEDULE: &str = "FAULT_SCHEDULE";
    /// Array, one entry: the burst-loss model's state (0 good, 1 bad).
    pub const BURST_STATE: &str = "BURST_STATE";
    /// Array of u64 words: a bitmap of syscall numbers (`syscall delay`).
    pub const SYSCALL_SET: &str = "SYSCALL_SET";
    /// Ring buffer of [`super::StopEvent`]s: tasks stopped by `syscall delay`, for the controller
    /// to resume.
    pub const STOP_EVENTS: &str = "STOP_EVENTS";
    /// Ring buffer of [`super::KillEvent`]s: processes a crash point (`proc kill --on-syscall`)
    /// signalled, for the timeline.
    pub const KILL_EVENTS: &str = "KILL_EVENTS";
    /// Array, one entry: the next free departure time of `net rate` (ns, CLOCK_MONOTONIC).
    pub const RATE_STATE: &str = "RATE_STATE";
    /// LPM tries of remote prefixes: key `(prefix_len, address bytes)`, value unused (1).
    pub const REMOTE_V4: &str = "REMOTE_V4";
    pub const REMOTE_V6: &str = "REMOTE_V6";
    /// Array of u64 words: two 65 536-bit port sets, remote ports then local ports.
    pub const PORT_SETS: &str = "PORT_SETS";
    /// Ring buffer of [`super::InjectionRecord`]s: a rate-limited sample of what the fault did
    /// (`--trace-injections`).
    pub const INJECTIONS: &str = "INJECTIONS";
    /// Array, one entry: [`super::TraceWindow`], the kernel-side rate limit of `INJECTIONS`.
    pub const TRACE_WINDOW: &str = "TRACE_WINDOW";
    /// Ring buffer of [`super::SeverEvent`]s: connections `net sever --after-bytes` silenced,
    /// for the controller to record (and, with `--mode reset`, to destroy).
    pub const SEVER_EVENTS: &str = "SEVER_EVENTS";
}

/// Probabilities are given in parts per million: 1 ppm is the finest step a user can ask for.
pub const PPM_SCALE: u32 = 1_000_000;

/// How a probability reaches the kernel: the program fires when a fresh `bpf_get_prandom_u32()`
/// is below `threshold`. Working on the full 32-bit range (rather than `rand % 1_000_000`) avoids
/// modulo bias, and a `u64` lets 100 % (2^32) always fire.
#[must_use]
pub const fn threshold_from_ppm(ppm: u32) -> u64 {
    let ppm = if ppm > PPM_SCALE { PPM_SCALE } else { ppm };
    ((ppm as u64) << 32) / PPM_SCALE as u64
}

/// Which way a packet travels, seen from the target.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Egress = 0,
    Ingress = 1,
}

impl Direction {
    pub const ALL: [Self; 2] = [Self::Egress, Self::Ingress];
    pub const COUNT: u32 = 2;

    #[must_use]
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// [`FaultConfig::flags`] bits.
pub mod flags {
    /// Apply the schedule (`skip_first`, `only_first`, `every`, `max_injections`) before the draw.
    pub const SCHEDULE: u32 = 1 << 0;
    /// Decide with the Gilbert-Elliott burst model (`burst_enter`, `burst_leave`) instead of an
    /// independent draw per event.
    pub const BURST: u32 = 1 << 1;
    /// Packet corruption: fix the L4 checksum after flipping the bit.
    pub const FIX_CHECKSUM: u32 = 1 << 2;
    /// Syscall faults: only files under the directory (`path_dev`, `path_ino`).
    pub const PATH_FILTER: u32 = 1 << 3;
    /// Network delay: jitter follows a normal distribution (else uniform).
    pub const JITTER_NORMAL: u32 = 1 << 4;
    /// `--trace-injections`: report a sample of the injections (at most `trace_per_sec` a
    /// second) in the `INJECTIONS` ring buffer.
    pub const TRACE: u32 = 1 << 5;
}

/// Syscall numbers `syscall delay` can watch: the bitmap `SYSCALL_SET` has this many bits.
pub const SYSCALL_SET_BITS: u32 = 512;

/// The shared raw `sys_enter` program of a process (the `chaos-dispatch` object): one program
/// on the tracepoint for all of the process's faults there, which finds the current task's fault
/// by its cgroup and tail-calls that fault's own program.
pub mod dispatch {
    /// Array of u64 words: the union of the dispatched faults' syscall bitmaps.
    pub const SYSCALLS: &str = "DISPATCH_SYSCALLS";
    /// Array of [`LevelRoute`]: the distinct cgroup levels the faults target, packed from index
    /// 0 and ended by level 0 (no fault targets the root cgroup).
    pub const LEVELS: &str = "DISPATCH_LEVELS";
    /// Hash map: target cgroup id -> slot in [`FAULTS`], for every fault held.
    pub const TARGETS: &str = "DISPATCH_TARGETS";
    /// Program array: each slot holds one fault's program on the dispatcher's hook.
    pub const FAULTS: &str = "DISPATCH_FAULTS";
    /// The program on raw `sys_enter` (its function name in the object).
    pub const PROGRAM: &str = "chaos_dispatch";
    /// The program on fentry of one syscall's entry function; one loaded copy per function.
    pub const PROGRAM_ENTRY: &str = "chaos_dispatch_entry";
    /// Distinct target levels one dispatcher tells apart: each costs an untargeted syscall one
    /// helper call and one hash lookup, so few are kept; a fault at a further level attaches its
    /// own program.
    pub const MAX_LEVELS: u32 = 4;
    /// Faults one dispatcher holds.
    pub const MAX_SLOTS: u32 = 256;

    /// One level the faults target. Where one fault alone targets it (one fault per process is
    /// the usual case), its cgroup id and slot are here, so an untargeted task pays a compare
    /// instead of a hash lookup (151 ns inside the program became 106 ns, `bench floor`, host).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct LevelRoute {
        /// The cgroup level; 0 ends the array.
        pub level: u32,
        /// The sole fault's slot in [`FAULTS`] (when `sole_target` is set).
        pub slot: u32,
        /// The one target cgroup id at this level; 0 when several share it (ask [`TARGETS`]).
        pub sole_target: u64,
    }
}

/// [`FaultConfig::syscall_mask`] bits for hooks that serve several syscalls.
pub mod syscall_mask {
    /// file_permission with MAY_READ: read, readv, pread64, preadv.
    pub const READ: u32 = 1 << 0;
    /// file_permission with MAY_WRITE: write, writev, pwrite64, pwritev.
    pub const WRITE: u32 = 1 << 1;
}

/// [`FaultConfig::net_filters`] bits: which packet filters are active (all must match).
pub mod net_filters {
    /// The remote address must be in `REMOTE_V4` / `REMOTE_V6` (by the packet's family).
    pub const REMOTE_ADDRESS: u32 = 1 << 0;
    /// The remote port must be in the first port set.
    pub const REMOTE_PORT: u32 = 1 << 1;
    /// The local port must be in the second port set.
    pub const LOCAL_PORT: u32 = 1 << 2;
    /// The L4 protocol must be `FaultConfig::protocol`.
    pub const PROTOCOL: u32 = 1 << 3;
}

/// [`FaultConfig::action`]: what a syscall program does to a call when the fault fires. The
/// programs and the gate are the same for all three; only the ending differs.
pub mod action {
    /// Fail the call with `errno` (`syscall fail`): the default, 0.
    pub const FAIL: u32 = 0;
    /// Send `signal` to the calling process and let the call go on (a crash point).
    pub const KILL: u32 = 1;
    /// Send `signal` and fail the call too, so it has no effect (`--before-effect`, LSM hooks).
    pub const KILL_AND_FAIL: u32 = 2;
}

/// Ports per set and u64 words per set in `PORT_SETS`.
pub const PORTS_PER_SET: u32 = 65_536;
pub const WORDS_PER_PORT_SET: u32 = PORTS_PER_SET / 64;

/// One fault, as the kernel sees it. Written by userspace before the programs attach; may be
/// rewritten while they run (a new rate is a map write, not a reload). Fields a fault family does
/// not use stay zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    /// `CLOCK_MONOTONIC` time in ns (`bpf_ktime_get_ns`) at which the fault switches itself off.
    /// 0 means disarmed. This is the kernel-enforced time box: it holds even when the controller
    /// is stopped or dead.
    pub deadline_ns: u64,
    /// See [`threshold_from_ppm`].
    pub threshold: u64,
    /// For programs on global hooks (tracepoints, LSM): the target cgroup's id. The program
    /// compares it with the current task's ancestor at `target_level`, so tasks in child cgroups
    /// of the target belong to it too. 0 for programs attached to the target cgroup itself.
    pub target_cgroup: u64,
    /// Depth of the target cgroup below the root (the root is level 0).
    pub target_level: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Schedule: leave the first `skip_first` matching events alone (`--after`).
    pub skip_first: u64,
    /// Schedule: only the first `only_first` events after those are eligible (`--first`; 0: all).
    pub only_first: u64,
    /// Schedule: only every `every`-th eligible event (`--every`; 0 or 1: each).
    pub every: u64,
    /// Schedule: inject at most this many times (`--max`; 0: no limit).
    pub max_injections: u64,
    /// Burst model: threshold (like `threshold`) of moving from the good to the bad state.
    pub burst_enter: u64,
    /// Burst model: threshold of moving from the bad back to the good state.
    pub burst_leave: u64,
    /// [`net_filters`] bits.
    pub net_filters: u32,
    /// IP protocol number for [`net_filters::PROTOCOL`] (1 also matches ICMPv6).
    pub protocol: u32,
    /// Syscall faults: the errno to fail with (positive, e.g. 5 for EIO).
    pub errno: u32,
    /// Syscall faults: [`syscall_mask`] bits, for hooks that serve several syscalls.
    pub syscall_mask: u32,
    /// Path filter: the directory's device, in the kernel's `dev_t` encoding (major << 20 |
    /// minor, as `super_block.s_dev` holds it).
    pub path_dev: u64,
    /// Path filter: the directory's inode number.
    pub path_ino: u64,
    /// Delay faults: the delay in ns (`--by`).
    pub delay_ns: u64,
    /// Delay faults: the jitter in ns (uniform half-width, or standard deviation when
    /// `JITTER_NORMAL`).
    pub jitter_ns: u64,
    /// `net rate`: the rate limit in bytes per second (0: none).
    pub rate_bytes_per_sec: u64,
    /// `net rate`: the longest a packet may wait for its turn (the queue, in time); a packet
    /// that would wait longer is dropped, and takes no slot.
    pub rate_queue_ns: u64,
    /// Syscall faults: [`action`], what to do to a call when the fault fires.
    pub action: u32,
    /// Crash points: the signal sent to the calling process (e.g. 9 for SIGKILL).
    pub signal: u32,
    /// `--trace-rate`: at most this many injection records a second (with [`flags::TRACE`]).
    pub trace_per_sec: u64,
    /// `net sever --after-bytes`: the bytes of payload each direction of a connection carries
    /// (counted by TCP sequence number) before the connection goes silent.
    pub after_bytes: u64,
}

/// Where an injection happened: the program's hook, so that userspace can name the call a
/// cgroup or LSM hook serves (those hooks do not know the syscall number). Index into
/// [`TRACE_SITES`].
pub mod site {
    pub const UNKNOWN: u32 = 0;
    pub const CGROUP_SKB: u32 = 1;
    pub const TC: u32 = 2;
    pub const CONNECT: u32 = 3;
    pub const SENDMSG: u32 = 4;
    pub const BIND: u32 = 5;
    pub const SOCKET: u32 = 6;
    pub const SETSOCKOPT: u32 = 7;
    pub const GETSOCKOPT: u32 = 8;
    pub const SYS_ENTER: u32 = 9;
    pub const KPROBE: u32 = 10;
    pub const LSM_OPEN: u32 = 11;
    pub const LSM_READ_WRITE: u32 = 12;
    pub const LSM_IOCTL: u32 = 13;
    pub const LSM_MMAP: u32 = 14;
    pub const LSM_UNLINK: u32 = 15;
    pub const LSM_MKDIR: u32 = 16;
    pub const LSM_RMDIR: u32 = 17;
    pub const LSM_RENAME: u32 = 18;
    pub const LSM_EXEC: u32 = 19;
    pub const LSM_FORK: u32 = 20;
    pub const LSM_SOCKET: u32 = 21;
    pub const LSM_CONNECT: u32 = 22;
    pub const LSM_BIND: u32 = 23;
    pub const LSM_LISTEN: u32 = 24;
    pub const LSM_ACCEPT: u32 = 25;
    pub const LSM_SENDMSG: u32 = 26;
    pub const LSM_RECVMSG: u32 = 27;
}

/// What each [`site`] stands for, for people: the call (or calls) it serves.
pub const TRACE_SITES: [&str; 28] = [
    "?",
    "packet (cgroup_skb)",
    "packet (tc)",
    "connect",
    "sendto/sendmsg",
    "bind",
    "socket",
    "setsockopt",
    "getsockopt",
    "syscall",
    "syscall (kprobe)",
    "open",
    "read/write",
    "ioctl",
    "mmap",
    "unlink",
    "mkdir",
    "rmdir",
    "rename",
    "execve",
    "fork/clone",
    "socket",
    "connect",
    "bind",
    "listen",
    "accept",
    "sendmsg",
    "recvmsg",
];

/// Name of the global (a u32 of [`skb_task`] bits) that says which task helpers cgroup_skb
/// programs may call on this kernel: newer kernels allow them there, older ones refuse the
/// whole program, so the loader probes and the verifier prunes the calls it may not make.
pub const SKB_TASK_HELPERS_GLOBAL: &str = "SKB_TASK_HELPERS";

/// Bits of the `SKB_TASK_HELPERS` global.
pub mod skb_task {
    pub const PID_TGID: u32 = 1 << 0;
    pub const COMM: u32 = 1 << 1;
}

/// [`InjectionRecord::syscall`] when the hook does not know the syscall number.
pub const NO_SYSCALL: u32 = u32::MAX;

/// One injection, as `--trace-injections` reports it (a rate-limited sample).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectionRecord {
    /// `CLOCK_MONOTONIC` ns when the program injected.
    pub at_ns: u64,
    /// The current process and thread (0 where the hook has no task: TC programs).
    pub tgid: u32,
    pub tid: u32,
    /// [`site`]: the hook.
    pub site: u32,
    /// [`Direction`] of a packet.
    pub direction: u32,
    /// The syscall number, or [`NO_SYSCALL`].
    pub syscall: u32,
    /// The signal sent (crash points, `syscall delay`'s SIGSTOP), or 0.
    pub signal: u32,
    /// The errno a failed call got, or 0.
    pub errno: u32,
    /// IP protocol of a packet (or 0).
    pub protocol: u32,
    /// The remote address (IPv4 in the first 4 bytes), when the hook knows it.
    pub remote: [u8; 16],
    pub remote_port: u16,
    pub local_port: u16,
    /// 1 for an IPv6 address, 2 when `remote` holds no address at all.
    pub address_kind: u8,
    pub _pad: [u8; 3],
    /// The current thread's command name, NUL-padded.
    pub comm: [u8; 16],
}

/// [`InjectionRecord::address_kind`] values.
pub mod address_kind {
    pub const IPV4: u8 = 0;
    pub const IPV6: u8 = 1;
    pub const NONE: u8 = 2;
}

/// The trace rate limit's state: records taken in the current second of `CLOCK_MONOTONIC`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceWindow {
    pub second: u64,
    pub taken: u64,
}

/// A task `syscall delay` stopped (SIGSTOP): the controller resumes it (SIGCONT) when the delay
/// has passed, counted from `stopped_at_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopEvent {
    /// `CLOCK_MONOTONIC` ns when the program sent SIGSTOP.
    pub stopped_at_ns: u64,
    /// The process (thread group) stopped.
    pub tgid: u32,
    /// The thread whose syscall was delayed.
    pub tid: u32,
    /// As [`KillEvent::syscall`].
    pub syscall: u32,
    pub _pad: u32,
}

/// A process a crash point signalled from inside its own syscall (`bpf_send_signal`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KillEvent {
    /// `CLOCK_MONOTONIC` ns when the program sent the signal.
    pub at_ns: u64,
    /// The process (thread group) signalled.
    pub tgid: u32,
    /// The thread whose call was the crash point.
    pub tid: u32,
    /// The syscall number on the raw `sys_enter` tracepoint; [`KILL_EVENT_LSM`] from LSM hooks
    /// (which serve several syscalls) and from fentry programs on one syscall's entry function
    /// (the plan names it).
    pub syscall: u32,
    pub signal: u32,
    /// The thread's command name, NUL-padded.
    pub comm: [u8; 16],
}

/// [`KillEvent::syscall`] of a kill from an LSM hook.
pub const KILL_EVENT_LSM: u32 = u32::MAX;

/// A connection `net sever --after-bytes` silenced: the first packet that would have carried
/// one of its directions past the limit, as the program saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeverEvent {
    /// `CLOCK_MONOTONIC` ns when the program silenced it.
    pub at_ns: u64,
    /// The socket's cookie: the controller finds the socket by it.
    pub cookie: u64,
    /// [`Direction`] of the packet that crossed the limit.
    pub direction: u32,
    /// 1 for IPv6 addresses (else IPv4, in the first 4 bytes).
    pub ipv6: u32,
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u32,
}

/// Offsets of the few kernel struct members the syscall programs read, taken from the running
/// kernel's BTF at load time and written into the object's read-only data (the verifier sees
/// them as constants). Rust eBPF cannot emit CO-RE relocations, and hard-coded offsets would be
/// wrong on the next kernel. All zero means "not available": the path filter is then refused.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct file` -> `f_path.dentry`.
    pub file_dentry: u32,
    /// `struct dentry` -> `d_parent`.
    pub dentry_parent: u32,
    /// `struct dentry` -> `d_inode`.
    pub dentry_inode: u32,
    /// `struct inode` -> `i_ino`.
    pub inode_ino: u32,
    /// `struct inode` -> `i_sb`.
    pub inode_sb: u32,
    /// `struct super_block` -> `s_dev`.
    pub sb_dev: u32,
    /// `struct linux_binprm` -> `file`.
    pub binprm_file: u32,
    /// `struct task_struct` -> `files` (fd-based calls of the error-injection backend).
    pub task_files: u32,
    /// `struct files_struct` -> `fdt`.
    pub files_fdt: u32,
    /// `struct fdtable` -> `max_fds`.
    pub fdt_max_fds: u32,
    /// `struct fdtable` -> `fd` (the array of `struct file *`).
    pub fdt_fd: u32,
    /// `struct pt_regs` -> `di`: a syscall's first argument, in the registers its entry
    /// function receives.
    pub regs_di: u32,
}

/// Name of the global holding [`KernelOffsets`] in the object.
pub const KERNEL_OFFSETS_GLOBAL: &str = "KERNEL_OFFSETS";

/// What a fault did, counted per CPU and per direction while it was live.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    /// Events (packets, calls) of the target the program saw while the fault was live.
    pub seen: u64,
    /// Of those, the ones that passed the fault's filters.
    pub matched: u64,
    /// Of those, the ones the fault was applied to.
    pub injected: u64,
}

impl FaultCounters {
    #[must_use]
    pub const fn add(self, other: Self) -> Self {
        Self {
            seen: self.seen + other.seen,
            matched: self.matched + other.matched,
            injected: self.injected + other.injected,
        }
    }
}

/// Exact, machine-wide counts for schedules (`--first`, `--every`, `--max` must be exact, so
/// these are shared by all CPUs and updated with atomic adds).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScheduleState {
    pub matched: u64,
    pub injected: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY (all): plain-old-data, `#[repr(C)]`, every field an integer, no implicit padding.
    unsafe impl aya::Pod for super::FaultConfig {}
    unsafe impl aya::Pod for super::FaultCounters {}
    unsafe impl aya::Pod for super::ScheduleState {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::StopEvent {}
    unsafe impl aya::Pod for super::KillEvent {}
    unsafe impl aya::Pod for super::InjectionRecord {}
    unsafe impl aya::Pod for super::TraceWindow {}
    unsafe impl aya::Pod for super::SeverEvent {}
    unsafe impl aya::Pod for super::dispatch::LevelRoute {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_covers_the_edges() {
        assert_eq!(threshold_from_ppm(0), 0);
        assert_eq!(threshold_from_ppm(PPM_SCALE), 1 << 32);
        assert_eq!(threshold_from_ppm(PPM_SCALE + 5), 1 << 32);
        // 20 %: exactly a fifth of the 32-bit range, rounded down.
        assert_eq!(threshold_from_ppm(200_000), (1u64 << 32) / 5);
    }

    #[test]
    fn one_ppm_is_a_distinct_step() {
        // Every ppm step moves the threshold (about 4295 per ppm), so 1 ppm is representable.
        for ppm in [1, 2, 999_999] {
            assert!(threshold_from_ppm(ppm) > threshold_from_ppm(ppm - 1));
        }
    }

    #[test]
    fn shared_structs_have_no_implicit_padding() {
        // 17 u64 and 8 u32 fields, nothing between them.
        assert_eq!(core::mem::size_of::<FaultConfig>(), 17 * 8 + 8 * 4);
        assert_eq!(core::mem::size_of::<SeverEvent>(), 2 * 8 + 2 * 4 + 2 * 16 + 2 * 2 + 4);
        assert_eq!(core::mem::size_of::<InjectionRecord>(), 8 + 8 * 4 + 16 + 8 + 16);
        assert_eq!(core::mem::size_of::<TraceWindow>(), 2 * 8);
        assert_eq!(core::mem::size_of::<KillEvent>(), 8 + 4 * 4 + 16);
        assert_eq!(core::mem::size_of::<StopEvent>(), 8 + 4 * 4);
        assert_eq!(core::mem::size_of::<KernelOffsets>(), 12 * 4);
        assert_eq!(core::mem::size_of::<ScheduleState>(), 2 * 8);
    }
}
