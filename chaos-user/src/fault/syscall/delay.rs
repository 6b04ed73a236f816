//! `syscall delay`: a program at the syscall's entry stops the target's matching calls
//! (SIGSTOP) for the resumer to continue after the delay; a guard process resumes them if chaos
//! dies. The program is fentry on the one syscall's entry function where the kernel can, else on
//! the raw `sys_enter` tracepoint (`entry_hook`).
use chaos_common::{Direction, FaultConfig, threshold_from_ppm};
use serde_json::json;

use crate::{
    fault::{
        FaultContext, FaultPlan, MapContents, PlanError, PlanFault, PlannedProgram, cgroup_level,
        syscall::{
            ScheduleOptions,
            entry_hook::{EntryHook, HookChoice},
        },
    },
    features,
    os::syscall_table,
    plan::options::{Ppm, parse_delay, parse_percent},
};

/// `syscall delay`.
#[derive(Clone, Debug, clap::Args)]
pub struct SyscallDelayOptions {
    /// Comma-separated syscall names; repeatable (any of the common x86_64 syscalls).
    #[arg(long = "syscall", value_name = "NAMES", required = true, value_parser = syscall_table::parse_list)]
    pub syscalls: Vec<Vec<syscall_table::Numbered>>,
    /// How long each matching call is held, e.g. 50ms (up to 10s).
    #[arg(long, value_name = "DELAY", value_parser = parse_delay)]
    pub by: std::time::Duration,
    /// Spread each delay uniformly by up to this much either way.
    #[arg(long, value_name = "DELAY", value_parser = parse_delay)]
    pub jitter: Option<std::time::Duration>,
    /// Share of matching calls to delay, in percent.
    #[arg(long, value_parser = parse_percent, default_value = "100")]
    pub percent: Ppm,
    #[command(flatten)]
    pub schedule: ScheduleOptions,
    /// Where the program catches the call: fentry on the syscall's entry function (only its
    /// callers pay), the raw sys_enter tracepoint (every kernel), or the best this kernel has.
    #[arg(long, value_enum, default_value = "auto")]
    pub hook: HookChoice,
}

impl SyscallDelayOptions {
    #[must_use]
    pub fn chosen(&self) -> Vec<syscall_table::Numbered> {
        let mut chosen: Vec<syscall_table::Numbered> = Vec::new();
        for syscall in self.syscalls.iter().flatten() {
            if !chosen.iter().any(|s| s.number == syscall.number) {
                chosen.push(*syscall);
            }
        }
        chosen
    }
}

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
        let hook = EntryHook::choose(context.kernel, &syscalls, self.hook)?;
        let (program, hook_words, attach) =
            hook.program("syscall_delay", "syscall_delay_entry", Some(target.dir.clone()));
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
            programs: vec![PlannedProgram { program, hook: hook_words, attach, direction: Direction::Egress }],
            config,
            maps: MapContents { syscall_set: Some(syscall_table::bitmap(&syscalls)), ..MapContents::default() },
            kernel_offsets: None,
            companion: None,
            userspace: None,
            target,
        })
    }

    fn percent(&self) -> Option<Ppm> {
        Some(self.percent)
    }
}
