//! Loaded BPF programs as the kernel reports them: which ones a process holds, their names and
//! how many times they ran (kernel.bpf_stats_enabled), so tests count what the kernel did.
use std::io;

/// The ids of the programs behind the BPF descriptors process `pid` holds (programs and links).
#[must_use]
pub fn programs_held_by(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fdinfo: {e}"))
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:"))?.trim().parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// What the kernel says of one loaded program: its name (cut at 15 bytes) and, while
/// kernel.bpf_stats_enabled is 1, how many times it ran.
#[derive(Clone, Debug)]
pub struct ProgramInfo {
    pub name: String,
    pub run_count: u64,
}

/// Offsets in `struct bpf_prog_info` (uapi, stable).
const INFO_NAME: usize = 64;
const INFO_RUN_CNT: usize = 200;

/// The kernel's information on program `id`, if it is still loaded (BPF_PROG_GET_FD_BY_ID,
/// BPF_OBJ_GET_INFO_BY_FD).
#[must_use]
pub fn program_info(id: u32) -> Option<ProgramInfo> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let mut by_id = [0u32; 4];
    by_id[0] = id;
    // SAFETY: bpf(2) with an attr buffer of the size given; returns a new fd we close below.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, by_id.as_mut_ptr(), 16) };
    if fd < 0 {
        return None; // unloaded meanwhile
    }
    let mut info = [0u8; 256];
    let mut get_info = [0u64; 2];
    get_info[0] = (fd as u64) | ((info.len() as u64) << 32);
    get_info[1] = info.as_mut_ptr() as u64;
    // SAFETY: as above; the kernel writes at most info_len bytes into `info`.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, get_info.as_mut_ptr(), 16) };
    // SAFETY: closing the fd bpf(2) gave us.
    unsafe { libc::close(fd as i32) };
    if rc != 0 {
        return None;
    }
    let name = &info[INFO_NAME..INFO_NAME + 16];
    let name = String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(16)]).into_owned();
    let run_count = u64::from_ne_bytes(info[INFO_RUN_CNT..INFO_RUN_CNT + 8].try_into().expect("8 bytes"));
    Some(ProgramInfo { name, run_count })
}

/// kernel.bpf_stats_enabled set to 1 (the kernel counts program runs), restored on Drop.
pub struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    /// Turns the statistics on, or says why not.
    pub fn enable() -> io::Result<Self> {
        let previous = std::fs::read_to_string(BPF_STATS)?;
        std::fs::write(BPF_STATS, "1")?;
        Ok(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, self.previous.trim());
    }
}

/// The ids of the bpf_links process `pid` holds (`link_id:` in /proc/<pid>/fdinfo): they exist
/// until the last descriptor of each closes, which for chaos is its detach.
#[must_use]
pub fn link_ids_held_by(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fdinfo: {e}"))
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("link_id:"))?.trim().parse().ok())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether the kernel still has bpf_link `id` (BPF_LINK_GET_FD_BY_ID).
#[must_use]
pub fn link_exists(id: u32) -> bool {
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    let mut by_id = [0u32; 4];
    by_id[0] = id;
    // SAFETY: bpf(2) with an attr buffer of the size given; returns a new fd we close below.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_GET_FD_BY_ID, by_id.as_mut_ptr(), 16) };
    if fd < 0 {
        return false;
    }
    // SAFETY: closing the fd bpf(2) gave us.
    unsafe { libc::close(fd as i32) };
    true
}

/// Whether the running kernel lets a cgroup_skb program call BPF helper `helper` (its number in
/// enum bpf_func_id: 14 get_current_pid_tgid, 16 get_current_comm), asked of the verifier
/// itself by loading a six-instruction program that calls it: an independent probe, not chaos's.
#[must_use]
pub fn cgroup_skb_may_call(helper: i32) -> bool {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
    /// One eBPF instruction: opcode, registers (src << 4 | dst), offset, immediate.
    const fn insn(code: u8, regs: u8, imm: i32) -> u64 {
        (code as u64) | ((regs as u64) << 8) | ((imm as u32 as u64) << 32)
    }
    let program: [u64; 6] = [
        insn(0xbf, 0xa1, 0),   // r1 = r10 (the stack)
        insn(0x07, 0x01, -16), // r1 += -16: a 16-byte buffer (get_current_comm writes it)
        insn(0xb7, 0x02, 16),  // r2 = 16
        insn(0x85, 0x00, helper),
        insn(0xb7, 0x00, 1), // r0 = 1 (let the packet pass)
        insn(0x95, 0x00, 0), // exit
    ];
    let license = c"GPL";
    let mut attr = [0u8; 72];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_SKB.to_ne_bytes());
    attr[4..8].copy_from_slice(&(program.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(program.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: bpf(2) with a zero-padded bpf_attr for BPF_PROG_LOAD whose pointers outlive the
    // call; a returned fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_mut_ptr(), attr.len() as u32) };
    if fd < 0 {
        let error = io::Error::last_os_error();
        // The verifier's answer for a helper this program type may not call; anything else
        // (no permission, no memory) must not read as "not allowed".
        assert!(error.raw_os_error() == Some(libc::EINVAL), "BPF_PROG_LOAD of the helper probe {helper}: {error}");
        return false;
    }
    // SAFETY: closing the fd bpf(2) gave us.
    unsafe { libc::close(fd as i32) };
    true
}
