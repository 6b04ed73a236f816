//! Member offsets of kernel structs, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`): what CO-RE relocations would give a C program, for the few
//! fields chaos's syscall programs read. Only the parts of the format this needs are decoded.
use std::{collections::HashMap, fs, io};

use chaos_common::KernelOffsets;

const BTF_MAGIC: u16 = 0xeb9f;

// Kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

struct Composite {
    members: Vec<Member>,
}

/// The structs and unions of a BTF blob, by type id, plus the string table.
pub(crate) struct Btf {
    strings: Vec<u8>,
    composites: HashMap<u32, Composite>,
    by_name: HashMap<String, u32>,
}

impl Btf {
    pub(crate) fn from_sys_fs() -> io::Result<Self> {
        Self::parse(&fs::read("/sys/kernel/btf/vmlinux")?)
    }

    pub(crate) fn parse(data: &[u8]) -> io::Result<Self> {
        let u32_at = |at: usize| data.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let sections = Sections::of(data)?;
        let (types, type_len) = sections.types;
        let strings = sections.strings.to_vec();

        let mut composites = HashMap::new();
        let mut by_name = HashMap::new();
        let (mut at, end, mut id) = (types, types + type_len, 1u32);
        while at + 12 <= end {
            let name = u32_at(at).ok_or_else(|| bad("truncated type"))?;
            let info = u32_at(at + 4).ok_or_else(|| bad("truncated type"))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let kind_flag = info >> 31 == 1;
            at += 12;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                _ => 0,
            };
            if kind == KIND_STRUCT || kind == KIND_UNION {
                let members = (0..vlen)
                    .map(|i| {
                        let m = at + 12 * i;
                        let offset = u32_at(m + 8).unwrap_or(0);
                        Member {
                            name: u32_at(m).unwrap_or(0),
                            type_id: u32_at(m + 4).unwrap_or(0),
                            // With kind_flag the top 8 bits hold a bitfield size.
                            bit_offset: if kind_flag { offset & 0x00ff_ffff } else { offset },
                        }
                    })
                    .collect();
                composites.insert(id, Composite { members });
                if kind == KIND_STRUCT && name != 0 {
                    by_name.entry(string_at(&strings, name).to_owned()).or_insert(id);
                }
            }
            at += extra;
            id += 1;
        }
        Ok(Self { strings, composites, by_name })
    }

    /// Byte offset of `member` in struct `name`, looking inside anonymous structs and unions.
    #[must_use]
    pub(crate) fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        self.offset_in(*self.by_name.get(name)?, member).map(|bits| bits / 8)
    }

    fn offset_in(&self, id: u32, member: &str) -> Option<u32> {
        let composite = self.composites.get(&id)?;
        for m in &composite.members {
            let name = string_at(&self.strings, m.name);
            if name == member {
                return Some(m.bit_offset);
            }
            // Anonymous members point straight at their struct or union type.
            if name.is_empty()
                && let Some(inner) = self.offset_in(m.type_id, member)
            {
                return Some(m.bit_offset + inner);
            }
        }
        None
    }

    /// The offsets the syscall programs need, or the first one the kernel's BTF lacks.
    pub(crate) fn kernel_offsets(&self) -> Result<KernelOffsets, String> {
        let get = |s: &str, m: &str| {
            self.member_offset(s, m).ok_or_else(|| format!("struct {s} has no member {m} in this kernel's BTF"))
        };
        Ok(KernelOffsets {
            file_dentry: get("file", "f_path")? + get("path", "dentry")?,
            dentry_parent: get("dentry", "d_parent")?,
            dentry_inode: get("dentry", "d_inode")?,
            inode_ino: get("inode", "i_ino")?,
            inode_sb: get("inode", "i_sb")?,
            sb_dev: get("super_block", "s_dev")?,
            binprm_file: get("linux_binprm", "file")?,
            task_files: get("task_struct", "files")?,
            files_fdt: get("files_struct", "fdt")?,
            fdt_max_fds: get("fdtable", "max_fds")?,
            fdt_fd: get("fdtable", "fd")?,
            regs_di: get("pt_regs", "di")?,
        })
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("BTF: {what}"))
}

/// Where a BTF blob's types are (offset, length) and its string table.
struct Sections<'a> {
    types: (usize, usize),
    strings: &'a [u8],
}

impl<'a> Sections<'a> {
    fn of(data: &'a [u8]) -> io::Result<Self> {
        let u16_at = |at: usize| data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |at: usize| data.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if u16_at(0) != Some(BTF_MAGIC) {
            return Err(bad("not little-endian BTF"));
        }
        let header_len = u32_at(4).ok_or_else(|| bad("short header"))? as usize;
        let field = |n: usize| u32_at(8 + 4 * n).map(|v| v as usize).ok_or_else(|| bad("short header"));
        let (type_off, type_len, str_off, str_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
        let strings_at = header_len + str_off;
        let strings = data.get(strings_at..strings_at + str_len).ok_or_else(|| bad("strings out of bounds"))?;
        Ok(Self { types: (header_len + type_off, type_len), strings })
    }
}

/// Whether the running kernel's BTF has the name `name` at all (a function, a type or a member
/// of that name): one search of its string table, a few ms, where decoding every type (aya's
/// `Btf`) takes tens. For "does this kernel have function X", where X is not also a member.
pub(crate) fn kernel_has_name(name: &str) -> io::Result<bool> {
    let data = fs::read("/sys/kernel/btf/vmlinux")?;
    let strings = Sections::of(&data)?.strings;
    // Strings are NUL-terminated and the table starts with an empty one: "\0name\0" is exact.
    let wanted = [b"\0", name.as_bytes(), b"\0"].concat();
    Ok(memchr::memmem::find(strings, &wanted).is_some())
}

/// [`kernel_has_name`] for many names, reading the BTF once.
pub(crate) fn kernel_has_names(names: &[&str]) -> io::Result<Vec<bool>> {
    let data = fs::read("/sys/kernel/btf/vmlinux")?;
    let strings = Sections::of(&data)?.strings;
    Ok(names
        .iter()
        .map(|name| memchr::memmem::find(strings, &[b"\0", name.as_bytes(), b"\0"].concat()).is_some())
        .collect())
}

fn string_at(strings: &[u8], offset: u32) -> &str {
    let tail = strings.get(offset as usize..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    std::str::from_utf8(&tail[..end]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_offsets_in_this_kernels_btf() {
        let btf = match Btf::from_sys_fs() {
            Ok(btf) => btf,
            // Every tier `cargo xtask test` runs has BTF: there, its absence is a failure.
            Err(err) if std::env::var_os("CHAOS_TEST_TIER").is_some() => {
                panic!("no /sys/kernel/btf/vmlinux on a test tier: {err}")
            }
            Err(err) => {
                eprintln!("SKIPPED finds_the_offsets_in_this_kernels_btf: no /sys/kernel/btf/vmlinux here ({err})");
                return;
            }
        };
        assert!(kernel_has_name("file_open").expect("the same BTF"), "a kernel function's name");
        assert!(!kernel_has_name("no_such_kernel_function_x").expect("the same BTF"));
        assert!(!kernel_has_name("file_ope").expect("the same BTF"), "whole names only");
        let offsets = btf.kernel_offsets().expect("every member exists");
        // Sanity, not exact values: each is inside its struct and the dentry fields differ.
        assert!(offsets.file_dentry > 0 && offsets.file_dentry < 512, "{offsets:?}");
        assert_ne!(offsets.dentry_parent, offsets.dentry_inode);
        // The syscall's registers: pt_regs is r15, r14, .., si, di (the 15th u64) on x86_64.
        if cfg!(target_arch = "x86_64") {
            assert_eq!(offsets.regs_di, 14 * 8, "{offsets:?}");
        }
        assert_ne!(offsets.fdt_max_fds, offsets.fdt_fd);
        assert!(btf.member_offset("file", "no_such_member").is_none());
    }
}
