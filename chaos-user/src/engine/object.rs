//! The leaf under every loaded object (a fault's and the process's shared dispatcher): loading
//! an object's bytes with the globals it needs, and its maps and programs by name as their aya
//! types, every failure named. Like aya's `programs/utils.rs`: helpers shared by the types that
//! use them, importing none of them.
use aya::{Ebpf, EbpfError, EbpfLoader, maps::MapError, programs::ProgramError};
use chaos_common::{KERNEL_OFFSETS_GLOBAL, KernelOffsets, SKB_TASK_HELPERS_GLOBAL};

use super::{AttachError, privilege_hint};
use crate::os::errno;

/// Loads `object`: its maps are created, no program is loaded yet. Without kernel BTF: the
/// objects have no CO-RE relocations, and the programs that need the kernel's BTF (LSM, fentry)
/// get it when they attach. (aya is patched so that a loader parses no BTF it is not asked for:
/// vendor/README.md.) `fault_globals`: the kernel offsets some syscall programs need, for the
/// fault object; `None` for the shared dispatcher, which has none of its globals.
pub(super) fn load_object(object: &[u8], fault_globals: Option<KernelOffsets>) -> Result<Ebpf, AttachError> {
    if object.is_empty() {
        return Err(AttachError::NoObject);
    }
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    if let Some(offsets) = &fault_globals {
        loader.override_global(KERNEL_OFFSETS_GLOBAL, offsets, true).override_global(
            SKB_TASK_HELPERS_GLOBAL,
            super::trace::skb_task_helpers(),
            true,
        );
    }
    loader.load(object).map_err(|err| match err {
        EbpfError::MapError(MapError::CreateError { name, io_error }) => AttachError::Program {
            program: "(maps)",
            reason: format!("creating map {name} returned {}{}", errno::name_of(&io_error), privilege_hint(&io_error)),
        },
        other => AttachError::Load(other),
    })
}

/// The map `name` of `ebpf`, as the map type `T` (one home for both loaded objects: a fault's
/// and the shared dispatcher's).
pub(super) fn typed_map<'a, T: TryFrom<&'a mut aya::maps::Map, Error = MapError>>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<T, AttachError> {
    let map = ebpf
        .map_mut(name)
        .ok_or(AttachError::Map { map: name, source: MapError::InvalidName { name: name.into() } })?;
    T::try_from(map).map_err(map_error(name))
}

/// The program `name` of `ebpf`, as the program type `T` (a fault's object and the dispatcher's).
pub(super) fn typed_program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, AttachError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| AttachError::Program { program: name, reason: "not in the eBPF object".into() })?
        .try_into()
        .map_err(|err: ProgramError| AttachError::Program { program: name, reason: err.to_string() })
}

/// A map operation's error, naming the map.
pub(super) fn map_error(map: &'static str) -> impl Fn(MapError) -> AttachError {
    move |source| AttachError::Map { map, source }
}
