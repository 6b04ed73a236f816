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
