//! Detached experiments' side of the engine: pinning a loaded fault's links and its config and
//! counter maps in bpffs so that it outlives chaos, and reaching a pinned fault through its maps
//! from another process (the reaper, `chaos status`).
use std::path::Path;

use aya::{
    maps::{Array, Map, MapData, PerCpuArray},
    programs::links::{FdLink, LinkError},
};
use chaos_common::{Direction, FaultConfig, FaultCounters, maps};

use super::{AttachError, LoadedFault, sum_counters};

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
        sum_counters(&self.counters, &Direction::ALL)
    }
}

impl LoadedFault {
    /// Pins every link and the config and counter maps under `dir` (in bpffs), so that the
    /// fault outlives this process: a detached experiment. Legacy TC filters (netlink objects)
    /// and cgroup sockopt links (aya cannot hand them over) cannot be pinned: such faults are
    /// refused.
    pub fn pin(&mut self, dir: &Path) -> Result<(), AttachError> {
        let pin_error = |what: &str, err: Box<dyn std::error::Error + Send + Sync>| AttachError::Pin {
            what: what.to_owned(),
            dir: dir.display().to_string(),
            source: err,
        };
        if !self.dispatched.is_empty() {
            return Err(AttachError::NotPinnable(
                "this fault runs through one of this process's shared programs (sys_enter, fentry), which end with the process; \
                 arm it with run::arm_to_pin"
                    .into(),
            ));
        }
        if self.companion.is_some() {
            return Err(AttachError::NotPinnable(
                "this fault works through a part of chaos's own process (the DNS responder), which ends with it: \
                 --detach does not support it; run it in the foreground"
                    .into(),
            ));
        }
        if self.resumer.is_some() {
            return Err(AttachError::NotPinnable(
                "a syscall delay stops tasks that only a running chaos resumes: --detach does not support it; run it \
                 in the foreground"
                    .into(),
            ));
        }
        if self.config.flags & chaos_common::flags::TRACE != 0 {
            return Err(AttachError::NotPinnable(
                "trace = true: only a running chaos reads the injection records, so --detach does not support \
                 tracing; run it in the foreground, or drop `trace`"
                    .into(),
            ));
        }
        if let Some(program) = self.unpinnable.first() {
            return Err(AttachError::NotPinnable(format!(
                "{program} (a cgroup sockopt hook) cannot be pinned: --detach does not support setsockopt/getsockopt \
                 faults; run it in the foreground"
            )));
        }
        if let Some(attachment) = self.tc.iter().find(|a| a.filter_record.is_some()) {
            return Err(AttachError::NotPinnable(format!(
                "TC programs on {} use a legacy TC filter on this kernel (before 6.6), which cannot be pinned: \
                 --detach needs tcx for this fault; run it in the foreground",
                attachment.iface
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| pin_error("the directory", e.into()))?;
        for name in [maps::FAULT_CONFIG, maps::FAULT_COUNTERS] {
            let map = self.ebpf.map(name).ok_or_else(|| pin_error(name, "not in the object".into()))?;
            map.pin(dir.join(name)).map_err(|e| pin_error(name, e.into()))?;
        }
        for (index, (program, link)) in std::mem::take(&mut self.links).into_iter().enumerate() {
            link.pin(dir.join(format!("link-{index}-{program}"))).map_err(|e| pin_error(program, e.into()))?;
        }
        for (index, attachment) in self.tc.iter_mut().enumerate() {
            if let Some(link) = attachment.link.take() {
                let link: FdLink = link.try_into().map_err(|e: LinkError| pin_error(&attachment.iface, e.into()))?;
                link.pin(dir.join(format!("link-tc-{index}-{}", attachment.iface)))
                    .map_err(|e| pin_error(&attachment.iface, e.into()))?;
            }
        }
        Ok(())
    }
}
