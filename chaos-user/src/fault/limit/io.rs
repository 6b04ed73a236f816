//! `chaos limit io --device DEV|auto --write-iops 20`: `io.max` on one disk for the target
//! (the block layer's throttling): the target's reads and writes to that disk are held to the
//! rates given, and only the threads that do that I/O wait; its other threads run on. That is
//! the per-thread slow disk a syscall delay cannot give (a delay stops the whole process).
//!
//! What is throttled is the I/O the kernel charges to the target: its direct I/O and the
//! writeback of its dirty pages (cgroup v2 writeback). The filesystem's journal is written by
//! a kernel thread (jbd2 for ext4) and charged to the root cgroup, so it is not: an fsync waits
//! for the target's own data writes, not for the journal commit (docs/limits.md measures it).
use std::path::PathBuf;

use super::{LimitPlan, Resource, Setting, amounts, device};
use crate::fault::{FaultContext, FaultPlan, PlanError, PlanFault};

/// `limit io`.
#[derive(Clone, Debug, clap::Args)]
pub struct LimitIoOptions {
    /// The disk: /dev/NAME, NAME or MAJ:MIN (a partition means its disk); `auto` for the disk
    /// holding --path.
    #[arg(long, value_name = "DEVICE|auto")]
    pub device: String,
    /// With --device auto: a file or directory on the disk to throttle (e.g. /var/lib/db).
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub rates: IoRates,
}

/// The rates of `limit io`: at least one.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "io-rates", required = true, multiple = true)]
pub struct IoRates {
    /// Reads at most this many bytes a second (10M, 512K: powers of 1024).
    #[arg(long, value_name = "RATE", value_parser = amounts::parse_rate)]
    pub read_bps: Option<u64>,
    /// Writes at most this many bytes a second.
    #[arg(long, value_name = "RATE", value_parser = amounts::parse_rate)]
    pub write_bps: Option<u64>,
    /// At most this many read operations a second.
    #[arg(long, value_name = "N", value_parser = amounts::parse_count)]
    pub read_iops: Option<u64>,
    /// At most this many write operations a second.
    #[arg(long, value_name = "N", value_parser = amounts::parse_count)]
    pub write_iops: Option<u64>,
}

impl LimitIoOptions {
    fn limit(&self) -> Result<LimitPlan, String> {
        let disk = device::resolve(&self.device, self.path.as_deref())?;
        Ok(LimitPlan {
            resource: Resource::Io,
            settings: vec![Setting::IoMax {
                device: disk.id.clone(),
                rbps: self.rates.read_bps,
                wbps: self.rates.write_bps,
                riops: self.rates.read_iops,
                wiops: self.rates.write_iops,
            }],
            oom: false,
            device: Some(disk),
            start_ppm: None,
        })
    }
}

impl PlanFault for LimitIoOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let limit = self.limit().map_err(PlanError::Refused)?;
        let rates = &self.rates;
        let rates: Vec<String> = [
            ("reads", rates.read_bps.map(|b| format!("{}/s", amounts::format_bytes(b)))),
            ("writes", rates.write_bps.map(|b| format!("{}/s", amounts::format_bytes(b)))),
            ("reads", rates.read_iops.map(|n| format!("{n} ops/s"))),
            ("writes", rates.write_iops.map(|n| format!("{n} ops/s"))),
        ]
        .into_iter()
        .filter_map(|(what, rate)| rate.map(|r| format!("{what} {r}")))
        .collect();
        let disk = limit.device.as_ref().map(device::BlockDevice::describe).unwrap_or_default();
        let summary = format!("{} on {disk} (io.max); only the threads doing that I/O wait", rates.join(", "));
        super::plan(&limit, context, summary)
    }

    fn uses_ledger(&self) -> bool {
        true
    }
}
