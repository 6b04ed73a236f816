//! What this kernel can do, asked of the kernel itself and never of chaos: a trivial program of
//! each type loaded through bpf(2) directly (attached too where the attach is the test, as
//! for fentry's trampolines), its BTF id found by a reader of the kernel's BTF written here, and
//! a qdisc added in a throwaway namespace. Tests gate on these answers, so a test of
//! `chaos doctor` is not gated on doctor's own answer (doctor.rs compares the two on every tier),
//! and a tier whose kernel lost a feature shows as tests skipped against its manifest.
use std::{ffi::CString, io, sync::OnceLock};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;

// enum bpf_prog_type
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_PROG_TYPE_LSM: u32 = 29;
// enum bpf_attach_type
const BPF_TRACE_FENTRY: u32 = 24;
const BPF_LSM_MAC: u32 = 27;
const BPF_LSM_CGROUP: u32 = 43;

/// `mov r0, 0; exit`: a program that does nothing and allows everything.
const RETURN_ZERO: [u64; 2] = [insn(0xb7, 0, 0), insn(0x95, 0, 0)];
/// `mov r2, 0; call bpf_override_return; mov r0, 0; exit`: loads only where the helper exists.
const OVERRIDE_RETURN: [u64; 4] = [insn(0xb7, 2, 0), insn(0x85, 0, 58), insn(0xb7, 0, 0), insn(0x95, 0, 0)];

/// One eBPF instruction (struct bpf_insn, little-endian): opcode, destination register, imm.
const fn insn(code: u8, dst: u8, imm: i32) -> u64 {
    code as u64 | ((dst as u64) << 8) | ((imm as u32 as u64) << 32)
}

/// The BPF_PROG_LOAD part of union bpf_attr, up to `core_relo_cnt` (the kernel zero-fills
/// the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
}

/// An fd the kernel gave us, closed on Drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing an fd we own.
        unsafe { libc::close(self.0) };
    }
}

/// Loads `insns` as a program of `prog_type`: its fd, or why the kernel refused it.
fn load(prog_type: u32, attach_type: u32, attach_btf_id: u32, insns: &[u64]) -> Result<Fd, String> {
    let license = CString::new("GPL").expect("no NUL");
    let attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: attach_type,
        attach_btf_id,
        ..ProgLoadAttr::default()
    };
    // SAFETY: attr is a valid, zero-padded bpf_attr for BPF_PROG_LOAD whose pointers (insns,
    // license) outlive the call; the size given is the struct's.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &raw const attr, size_of::<ProgLoadAttr>() as u32) };
    if fd < 0 {
        return Err(format!("BPF_PROG_LOAD returned {}", errno_name(&io::Error::last_os_error())));
    }
    Ok(Fd(fd as i32))
}

/// Attaches a tracing program at the function it was loaded for (BPF_RAW_TRACEPOINT_OPEN with
/// no name): its link, which goes with the fd.
fn attach_at_its_function(program: &Fd) -> Result<Fd, String> {
    let mut attr = [0u64; 2];
    attr[1] = program.0 as u32 as u64;
    // SAFETY: attr is a zeroed bpf_attr for BPF_RAW_TRACEPOINT_OPEN (name NULL, prog_fd).
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_RAW_TRACEPOINT_OPEN, attr.as_ptr(), 16) };
    if fd < 0 {
        return Err(format!("attaching it returned {}", errno_name(&io::Error::last_os_error())));
    }
    Ok(Fd(fd as i32))
}

fn errno_name(error: &io::Error) -> String {
    let name = match error.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::ESRCH) => "ESRCH",
        Some(524) => "ENOTSUPP",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(libc::E2BIG) => "E2BIG",
        Some(libc::EACCES) => "EACCES",
        _ => return error.to_string(),
    };
    format!("{name} ({error})")
}

/// Why BPF LSM programs cannot run here, if they cannot: a trivial `lsm/file_open` program
/// must load, and `bpf` must be among the active LSMs where securityfs says which are.
#[must_use]
pub fn bpf_lsm_missing() -> Option<String> {
    static ANSWER: OnceLock<Option<String>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let id = match vmlinux_func("bpf_lsm_file_open") {
                Ok(id) => id,
                Err(why) => return Some(format!("no BPF LSM hooks in the kernel's BTF: {why}")),
            };
            if let Err(why) = load(BPF_PROG_TYPE_LSM, BPF_LSM_MAC, id, &RETURN_ZERO) {
                return Some(format!("a trivial lsm/file_open program does not load: {why}"));
            }
            let active = std::fs::read_to_string("/sys/kernel/security/lsm").ok()?;
            (!active.split(',').any(|lsm| lsm.trim() == "bpf"))
                .then(|| format!("bpf is not among the active LSMs ({})", active.trim()))
        })
        .clone()
}

/// Why BPF LSM programs cannot attach per cgroup here (BPF_LSM_CGROUP, 6.0+), if they cannot.
#[must_use]
pub fn lsm_cgroup_missing() -> Option<String> {
    if let Some(why) = bpf_lsm_missing() {
        return Some(why);
    }
    let id = vmlinux_func("bpf_lsm_file_open").ok()?;
    load(BPF_PROG_TYPE_LSM, BPF_LSM_CGROUP, id, &RETURN_ZERO)
        .err()
        .map(|why| format!("a trivial lsm_cgroup/file_open program does not load: {why}"))
}

/// Why fentry programs cannot run here, if they cannot: a trivial fentry program on read's
/// entry function (where chaos's own fentry tests attach) must load and attach (the attach
/// builds the BPF trampoline; the program does nothing).
#[must_use]
pub fn fentry_missing() -> Option<String> {
    static ANSWER: OnceLock<Option<String>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let id = match vmlinux_func("__x64_sys_read") {
                Ok(id) => id,
                Err(why) => return Some(format!("no syscall entry functions in the kernel's BTF: {why}")),
            };
            let program = match load(BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, id, &RETURN_ZERO) {
                Ok(program) => program,
                Err(why) => return Some(format!("a trivial fentry program does not load: {why}")),
            };
            attach_at_its_function(&program).err().map(|why| format!("a trivial fentry program loads, but {why}"))
        })
        .clone()
}

/// Why error injection cannot run here, if it cannot: the kernel must have the kprobe PMU,
/// and a kprobe program calling bpf_override_return must load (CONFIG_BPF_KPROBE_OVERRIDE).
#[must_use]
pub fn error_injection_missing() -> Option<String> {
    if !std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        return Some("no kprobe PMU (/sys/bus/event_source/devices/kprobe/type): no CONFIG_KPROBES".into());
    }
    load(BPF_PROG_TYPE_KPROBE, 0, 0, &OVERRIDE_RETURN)
        .err()
        .map(|why| format!("a kprobe program calling bpf_override_return does not load: {why}"))
}

/// Why this kernel has no fq qdisc, if it has none (see [`crate::kernel::qdisc_missing`]).
#[must_use]
pub fn fq_missing() -> Option<String> {
    static ANSWER: OnceLock<Option<String>> = OnceLock::new();
    ANSWER.get_or_init(|| crate::kernel::qdisc_missing("fq")).clone()
}

/// The BTF type id of function `name` in the kernel's own BTF (/sys/kernel/btf/vmlinux).
fn vmlinux_func(name: &str) -> Result<u32, String> {
    static BTF: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    let btf = BTF
        .get_or_init(|| std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}")))
        .as_ref()
        .map_err(Clone::clone)?;
    btf_func(btf, name)
}

/// The id of FUNC `name` in a BTF blob (the kernel's format, `include/uapi/linux/btf.h`): a
/// header, then the types (ids from 1, each a 12-byte `btf_type` and a tail its kind sizes),
/// then the strings they name.
fn btf_func(btf: &[u8], name: &str) -> Result<u32, String> {
    let u32_at = |at: usize| -> Result<u32, String> {
        btf.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes"))).ok_or("BTF cut short".into())
    };
    if btf.get(..2) != Some(&0xeb9f_u16.to_le_bytes()[..]) {
        return Err("not little-endian BTF (bad magic)".into());
    }
    let header = u32_at(4)? as usize;
    let (types, types_len) = (header + u32_at(8)? as usize, u32_at(12)? as usize);
    let strings = header + u32_at(16)? as usize;
    let (mut at, mut id) = (types, 1u32);
    while at < types + types_len {
        let (name_off, info) = (u32_at(at)? as usize, u32_at(at + 4)?);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        if kind == 12 {
            let start = strings + name_off;
            let end = btf[start..].iter().position(|&b| b == 0).map(|n| start + n).ok_or("unterminated name")?;
            if &btf[start..end] == name.as_bytes() {
                return Ok(id);
            }
        }
        let tail = match kind {
            2 | 7..=12 | 16 | 18 => 0,
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 | 19 => 12 * vlen,
            6 | 13 => 8 * vlen,
            other => return Err(format!("BTF type {id} has kind {other}, which this reader does not know")),
        };
        at += 12 + tail;
        id += 1;
    }
    Err(format!("no function {name}"))
}

#[cfg(test)]
mod tests {
    use super::btf_func;

    /// A BTF blob: header, then the given types, then the strings.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(0xeb9f_u16.to_le_bytes());
        out.extend([1, 0]);
        for word in [24, 0, type_bytes.len() as u32, type_bytes.len() as u32, strings.len() as u32] {
            out.extend(word.to_le_bytes());
        }
        out.extend(type_bytes);
        out.extend(strings);
        out
    }

    #[test]
    fn functions_are_found_by_name_past_types_of_every_size() {
        let strings = b"\0int\0s\0f\0g\0";
        let types = [
            1,
            1 << 24,
            4,
            32, // [1] INT "int" (a 4-byte tail)
            5,
            (4 << 24) | 2,
            8,
            0,
            1,
            0,
            0,
            1,
            32, // [2] STRUCT "s", two members
            0,
            13 << 24 | 1,
            1,
            0,
            1, // [3] FUNC_PROTO, one parameter
            7,
            12 << 24,
            3, // [4] FUNC "f"
            9,
            12 << 24,
            3, // [5] FUNC "g"
        ];
        let btf = blob(&types, strings);
        assert_eq!(btf_func(&btf, "f"), Ok(4));
        assert_eq!(btf_func(&btf, "g"), Ok(5));
        assert_eq!(btf_func(&btf, "int"), Err("no function int".into()));
        assert!(btf_func(&btf[1..], "f").is_err());
    }
}
