//! Planning syscall delays: a raw `sys_enter` tracepoint program that stops the target's
//! matching calls (SIGSTOP) for the controller to resume after the delay.
use chaos_common::{Direction, FaultConfig, threshold_from_ppm};
use serde_json::json;

use super::{AttachPoint, FaultContext, FaultPlan, MapContents, PlanError, PlanFault, PlannedProgram, cgroup_level};
use crate::{
    features,
    spec::{Ppm, syscall::SyscallDelayOptions},
    syscall_numbers,
};

impl PlanFault for SyscallDelayOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let support = context.kernel.family(features::SYSCALL_DELAY);
        if !support.supported {
            return Err(PlanError::Unsupported { family: support.name, reason: support.reason.unwrap_or_default() });
        }
        let target = context.target.clone();
        let syscalls = self.chosen();
        let schedule = self.schedule.schedule();
        let mut config = FaultConfig {
            threshold: threshold_from_ppm(self.percent.get()),
            target_cgroup: target.id,
            target_level: cgroup_level(&target.cgroup),
            delay_ns: u64::try_from(self.by.as_nanos()).unwrap_or(u64::MAX),
            jitter_ns: self.jitter.map_or(0, |j| u64::try_from(j.as_nanos()).unwrap_or(0)),
            ..FaultConfig::default()
        };
        let names: Vec<&str> = syscalls.iter().map(|s| s.name).collect();
        let mut summary =
            format!("{} of {} calls held {}", self.percent, names.join(","), humantime::format_duration(self.by));
        if let Some(jitter) = self.jitter {
            summary.push_str(&format!(" +- {} (uniform)", humantime::format_duration(jitter)));
        }
        if schedule.is_set() {
            schedule.apply(&mut config);
            summary.push_str(&format!(", {}", schedule.describe()));
        }
        summary.push_str("; stops the whole process while a call is held");
        Ok(FaultPlan {
            fault: "syscall delay",
            injected_word: "delayed",
            counter_label: Some("calls"),
            parameters: json!({
                "syscalls": names,
                "by": humantime::format_duration(self.by).to_string(),
                "jitter": self.jitter.map(|j| humantime::format_duration(j).to_string()),
                "percent": self.percent,
                "schedule": schedule,
            }),
            summary,
            duration: context.duration,
            programs: vec![PlannedProgram {
                program: "syscall_delay",
                hook: "raw_tracepoint/sys_enter",
                attach: AttachPoint::RawTracepoint { tracepoint: "sys_enter", cgroup_dir: target.dir.clone() },
                direction: Direction::Egress,
            }],
            config,
            maps: MapContents { syscall_set: Some(syscall_numbers::bitmap(&syscalls)), ..MapContents::default() },
            kernel_offsets: None,
            target,
        })
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }
}
