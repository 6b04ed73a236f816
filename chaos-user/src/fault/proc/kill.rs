//! `chaos proc kill`: its options and its planner.
//!
//! Two modes. **Periodic** (`--every 30s`): at each tick, userspace sends `--signal` to one
//! process of the target chosen by `--pick` (or to all of them), on the thread of
//! [`super::actor`].
//! **Crash point** (`--on-syscall fsync --after 99`): the kernel signals the calling process at
//! that exact call, with the gate and exact schedules of `syscall fail`; the program is fentry
//! on the one syscall's entry function where the kernel can, else the raw `sys_enter`
//! tracepoint (every kernel with bpf_send_signal; `entry_hook` chooses), or, for
//! `--before-effect` and `--path`, the `syscall fail` LSM programs with the kill action.
use std::time::Duration;

use chaos_common::{Direction, FaultConfig, action, flags, threshold_from_ppm};
use serde_json::json;

use super::{pick, ticker::Ticker};
use crate::{
    fault::{
        FaultContext, FaultPlan, MapContents, PlanError, PlanFault, PlannedProgram,
        actor::Actor,
        cgroup_level,
        proc::pick::Pick,
        syscall::{
            Schedule, ScheduleOptions,
            entry_hook::{EntryHook, HookChoice},
            fail::{Backend, SyscallFailOptions},
            hooks,
        },
    },
    features,
    os::{freezer, signal::Signal, sys, syscall_table as syscall_numbers},
    plan::{
        action::{ActionEvent, ActionOutcome, RunningAction, UserspaceAction},
        options::{Ppm, parse_duration, parse_percent, serialize_secs},
    },
    targets::Target,
};

/// `--pick all` over more processes than this needs `--i-know`.
pub const DEFAULT_MAX_PROCS: u64 = 64;

/// The errno a `--before-effect` call fails with: the caller is being killed, so it only shows
/// to a process that survives the signal (a caught SIGTERM).
const BEFORE_EFFECT_ERRNO: i32 = libc::EINTR;

/// `--every`: a period without `--on-syscall`, a count of calls with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    Period(Duration),
    Calls(u64),
}

/// Parses `30s` (a period) or `5` (every 5th matching call); zero of either is refused.
pub fn parse_every(text: &str) -> Result<Every, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return match trimmed.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("'{text}': --every N counts calls from 1 (or give a period, e.g. 30s)")),
            Ok(n) => Ok(Every::Calls(n)),
        };
    }
    let period = parse_duration(trimmed)
        .map_err(|e| format!("{e}; --every takes a period (30s) or, with --on-syscall, a count of calls (5)"))?;
    Ok(Every::Period(period))
}

/// `proc kill`.
#[derive(Clone, Debug, clap::Args)]
pub struct ProcKillOptions {
    /// The signal, by name or number (KILL, TERM, INT, SEGV, 9, ...).
    #[arg(long, value_parser = crate::os::signal::parse, default_value = "KILL")]
    pub signal: Signal,
    /// Periodic: a kill every PERIOD (30s). With --on-syscall: only every Nth eligible call.
    #[arg(long, value_name = "PERIOD|N", value_parser = parse_every)]
    pub every: Option<Every>,
    /// Periodic: move each tick by up to this much either way (below half the period).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub jitter: Option<Duration>,
    /// Periodic: which process of the target each tick hits.
    #[arg(long, value_enum, default_value = "random")]
    pub pick: Pick,
    /// Stop after N kills (ticks, or calls with --on-syscall).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// `--pick all` over more processes than this asks for --i-know.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PROCS)]
    pub max_procs: u64,
    /// Crash point: kill the process at a call of one of these syscalls (comma-separated).
    #[arg(long, value_name = "NAMES", value_parser = syscall_numbers::parse_list)]
    pub on_syscall: Vec<Vec<syscall_numbers::Numbered>>,
    /// Crash point: only calls on files under this directory (LSM-served file syscalls).
    #[arg(long, value_name = "PREFIX", requires = "on_syscall")]
    pub path: Option<std::path::PathBuf>,
    /// Crash point: leave the first N matching calls alone.
    #[arg(long, value_name = "N", requires = "on_syscall")]
    pub after: Option<u64>,
    /// Crash point: share of eligible calls that kill, in percent.
    #[arg(long, value_parser = parse_percent, requires = "on_syscall")]
    pub percent: Option<Ppm>,
    /// Crash point: also fail the call, so it never takes effect (BPF LSM hooks only).
    #[arg(long, requires = "on_syscall")]
    pub before_effect: bool,
    /// Crash point: where the program catches the call: fentry on the entry function or raw
    /// sys_enter (auto: fentry where the kernel can); with --before-effect or --path, how the
    /// BPF LSM programs attach: lsm-cgroup or lsm (auto: per cgroup where the kernel can).
    #[arg(long, value_enum, value_name = "HOOK", requires = "on_syscall")]
    pub hook: Option<HookChoice>,
}

/// What a periodic kill does, for its runner.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeriodicKill {
    #[serde(serialize_with = "serialize_secs")]
    pub every: Duration,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_optional_secs")]
    pub jitter: Option<Duration>,
    pub signal: Signal,
    pub pick: Pick,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    pub max_procs: u64,
    pub i_know: bool,
}

fn serialize_optional_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl ProcKillOptions {
    /// The periodic kill asked for, or None for a crash point; errors for mixed-up flags.
    pub fn periodic(&self, i_know: bool) -> Result<Option<PeriodicKill>, PlanError> {
        if self.is_crash_point() {
            if self.jitter.is_some() || self.pick != Pick::Random {
                return Err(PlanError::Refused(
                    "--jitter and --pick are for periodic kills (--every PERIOD); a crash point (--on-syscall) kills the \
                     process that makes the call"
                        .into(),
                ));
            }
            if let Some(Every::Period(period)) = self.every {
                return Err(PlanError::Refused(format!(
                    "--every {} is a period, but with --on-syscall --every counts calls (e.g. --every 5)",
                    humantime::format_duration(period)
                )));
            }
            return Ok(None);
        }
        match self.every {
            Some(Every::Period(every)) => Ok(Some(PeriodicKill {
                every,
                jitter: self.jitter,
                signal: self.signal,
                pick: self.pick,
                max: self.max,
                max_procs: self.max_procs,
                i_know,
            })),
            Some(Every::Calls(n)) => Err(PlanError::Refused(format!(
                "--every {n} counts calls, which needs --on-syscall; for a periodic kill give a period, e.g. --every {n}s"
            ))),
            None => Err(PlanError::Refused(
                "proc kill needs --every PERIOD (kill on a schedule) or --on-syscall NAMES (a crash point)".into(),
            )),
        }
    }
}

impl PlanFault for ProcKillOptions {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        match self.periodic(context.i_know)? {
            Some(periodic) => {
                refuse_all_over_cap(&periodic, context)?;
                Ok(plan_periodic(&periodic, context))
            }
            None => self.plan_crash_point(context),
        }
    }

    fn percent(&self) -> Option<Ppm> {
        self.is_crash_point().then(|| self.percent.unwrap_or(Ppm::ALL))
    }
}

/// `--pick all` on a target holding more than `--max-procs` processes needs `--i-know`.
fn refuse_all_over_cap(periodic: &PeriodicKill, context: &FaultContext<'_>) -> Result<(), PlanError> {
    if periodic.pick != Pick::All || periodic.i_know {
        return Ok(());
    }
    let count = super::pick::members(&context.target.dir).len() as u64;
    if count <= periodic.max_procs {
        return Ok(());
    }
    Err(PlanError::Refused(format!(
        "--pick all: {} holds {count} processes, more than --max-procs {}; raise --max-procs, or add --i-know if \
         killing all of them at every tick is what you want",
        context.target.cgroup, periodic.max_procs
    )))
}

/// A periodic kill has no program: the plan says what the runner will do, for `--dry-run`,
/// `status` and the report.
fn plan_periodic(periodic: &PeriodicKill, context: &FaultContext<'_>) -> FaultPlan {
    let mut summary = format!(
        "{} to {} every {}",
        periodic.signal,
        match periodic.pick {
            Pick::All => "every process".to_owned(),
            pick => format!("one process ({})", serde_json::to_value(pick).expect("serializes").as_str().unwrap_or("")),
        },
        humantime::format_duration(periodic.every)
    );
    if let Some(jitter) = periodic.jitter {
        summary.push_str(&format!(" +- {}", humantime::format_duration(jitter)));
    }
    if let Some(max) = periodic.max {
        summary.push_str(&format!(", at most {max} times"));
    }
    FaultPlan {
        fault: "proc kill",
        injected_word: "killed",
        counter_label: Some("kills"),
        target: context.target.clone(),
        summary,
        parameters: serde_json::to_value(periodic).expect("serializes"),
        duration: context.duration,
        programs: Vec::new(),
        config: FaultConfig::default(),
        maps: MapContents::default(),
        kernel_offsets: None,
        companion: None,
        userspace: Some(std::sync::Arc::new(periodic.clone())),
    }
}

impl ProcKillOptions {
    #[must_use]
    pub fn is_crash_point(&self) -> bool {
        !self.on_syscall.is_empty()
    }

    /// The syscalls of the crash point, each once, in order.
    #[must_use]
    pub fn crash_syscalls(&self) -> Vec<syscall_numbers::Numbered> {
        let mut chosen: Vec<syscall_numbers::Numbered> = Vec::new();
        for syscall in self.on_syscall.iter().flatten() {
            if !chosen.iter().any(|s| s.number == syscall.number) {
                chosen.push(*syscall);
            }
        }
        chosen
    }

    fn schedule(&self) -> Schedule {
        let every = match self.every {
            Some(Every::Calls(n)) => Some(n),
            _ => None,
        };
        Schedule { after: self.after, first: None, every, max: self.max }
    }

    fn plan_crash_point(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let numbered = self.crash_syscalls();
        let percent = self.percent.unwrap_or(Ppm::ALL);
        let schedule = self.schedule();
        let names: Vec<&str> = numbered.iter().map(|s| s.name).collect();
        let by_lsm = self.before_effect || self.path.is_some();
        let (mut plan, mechanism) = if by_lsm {
            let plan = self.plan_on_lsm(context, &names, percent, schedule)?;
            let attach = plan.parameters["lsm_attach"].as_str().unwrap_or("lsm");
            let words = if attach == "lsm" { "BPF LSM (global programs)" } else { "BPF LSM (per cgroup, lsm_cgroup)" };
            (plan, words.to_owned())
        } else {
            let hook = EntryHook::choose(context.kernel, &numbered, self.hook.unwrap_or_default())?;
            (plan_at_entry(context, &numbered, percent, schedule, &hook)?, hook.describe())
        };
        plan.config.signal = self.signal.number() as u32;
        plan.fault = "proc kill";
        plan.injected_word = "killed";
        plan.counter_label = Some("calls");
        let mut summary =
            format!("{} to the process at {} of {}", self.signal, schedule_words(&schedule), names.join(","));
        if percent != Ppm::ALL {
            summary.push_str(&format!(" ({percent} of eligible calls)"));
        }
        if let Some(path) = &self.path {
            summary.push_str(&format!(", under {}", path.display()));
        }
        summary.push_str(&format!(
            "; {mechanism}: {}",
            if self.before_effect {
                "the call fails too, so it never takes effect"
            } else if by_lsm {
                "the call goes on; the process dies as it returns"
            } else {
                "the signal is pending from the call's entry; see docs/processes.md for what the call still does"
            }
        ));
        plan.summary = summary;
        plan.parameters = json!({
            "on_syscall": names,
            "signal": self.signal,
            "percent": percent,
            "path": self.path,
            "schedule": schedule,
            "before_effect": self.before_effect,
            "mechanism": mechanism,
        });
        Ok(plan)
    }

    /// The `syscall fail` LSM programs with the kill action: same hooks, filters and gate.
    fn plan_on_lsm(
        &self,
        context: &FaultContext<'_>,
        names: &[&str],
        percent: Ppm,
        schedule: Schedule,
    ) -> Result<FaultPlan, PlanError> {
        let flag = if self.before_effect { "--before-effect" } else { "--path" };
        let lsm = context.kernel.family(features::SYSCALL_ERRNO_LSM);
        if !lsm.supported {
            return Err(PlanError::Refused(format!(
                "{flag} needs BPF LSM, which this kernel does not offer: {}; without it the crash point runs on the raw \
                 sys_enter tracepoint (no --path, and the call may take effect: see docs/processes.md)",
                lsm.reason.unwrap_or_default()
            )));
        }
        let mut chosen = Vec::new();
        for name in names {
            let syscall = hooks::SYSCALLS.iter().find(|s| s.name == *name && s.lsm.is_some()).ok_or_else(|| {
                PlanError::Refused(format!(
                    "{flag}: {name} has no BPF LSM hook in chaos (`chaos syscall list` shows the ones that do)"
                ))
            })?;
            chosen.push(syscall);
        }
        // The `syscall fail` planner, on the LSM hooks only: same hooks, filters and gate.
        let fail = SyscallFailOptions {
            syscalls: vec![chosen],
            errno: BEFORE_EFFECT_ERRNO,
            percent,
            path: self.path.clone(),
            remote: Vec::new(),
            remote_port: Vec::new(),
            schedule: ScheduleOptions {
                after: schedule.after,
                first: schedule.first,
                every: schedule.every,
                max: schedule.max,
            },
            backend: Backend::Lsm,
            hook: self.hook,
        };
        let mut plan = fail.plan(context)?;
        plan.config.action = if self.before_effect { action::KILL_AND_FAIL } else { action::KILL };
        Ok(plan)
    }
}

fn plan_at_entry(
    context: &FaultContext<'_>,
    numbered: &[syscall_numbers::Numbered],
    percent: Ppm,
    schedule: Schedule,
    hook: &EntryHook,
) -> Result<FaultPlan, PlanError> {
    let support = context.kernel.family(features::PROCESS_KILL);
    if !support.supported {
        return Err(PlanError::Unsupported { family: support.name, reason: support.reason.unwrap_or_default() });
    }
    let target = context.target.clone();
    let mut config = FaultConfig {
        threshold: threshold_from_ppm(percent.get()),
        target_cgroup: target.id,
        target_level: cgroup_level(&target.cgroup),
        action: action::KILL,
        ..FaultConfig::default()
    };
    schedule.apply(&mut config);
    debug_assert!(config.flags & flags::PATH_FILTER == 0);
    let (program, hook_words, attach) = hook.program("proc_kill_on_syscall", "proc_kill_on_syscall_entry", None);
    Ok(FaultPlan {
        fault: "proc kill",
        injected_word: "killed",
        counter_label: Some("calls"),
        parameters: json!({}),
        summary: String::new(),
        duration: context.duration,
        programs: vec![PlannedProgram { program, hook: hook_words, attach, direction: Direction::Egress }],
        config,
        maps: MapContents { syscall_set: Some(syscall_numbers::bitmap(numbered)), ..MapContents::default() },
        kernel_offsets: None,
        companion: None,
        userspace: None,
        target,
    })
}

/// "every matching call", or the schedule in words.
fn schedule_words(schedule: &Schedule) -> String {
    if schedule.is_set() { format!("the matching calls {}", schedule.describe()) } else { "every matching call".into() }
}

impl UserspaceAction for PeriodicKill {
    /// Kills on the ticker's schedule, from now until `deadline_ns`.
    fn start(
        &self,
        target: &Target,
        deadline_ns: u64,
        _object: Option<&mut aya::Ebpf>,
    ) -> anyhow::Result<Box<dyn RunningAction>> {
        let (kill, target) = (self.clone(), target.clone());
        let start_ns = sys::monotonic_now_ns();
        let actor = Actor::spawn_counting(move |wait, acted| {
            let mut outcome = ActionOutcome::default();
            let mut ticker = Ticker::new(kill.every, kill.jitter, kill.max, start_ns);
            while let Some(due_ns) = ticker.next_due_ns().filter(|&due| due < deadline_ns) {
                if !wait(due_ns) {
                    break;
                }
                ticker.take(sys::monotonic_now_ns());
                outcome.ticks += 1;
                let killed = kill_once(&target, &kill, &mut outcome.events);
                outcome.acted += killed;
                acted(killed);
            }
            outcome
        })?;
        Ok(Box::new(actor))
    }
}

/// One tick of a periodic kill: returns how many processes it signalled.
fn kill_once(target: &Target, kill: &PeriodicKill, events: &mut Vec<ActionEvent>) -> u64 {
    let dir = &target.dir;
    let members = pick::members(dir);
    let at_ns = sys::monotonic_now_ns();
    let mut nothing = |reason: String| {
        eprintln!("chaos: proc kill: {reason}");
        events.push(ActionEvent::NoKill { reason, at_ns });
        0
    };
    if members.is_empty() {
        return nothing("no process in the target at this tick".into());
    }
    if kill.pick == Pick::All && members.len() as u64 > kill.max_procs && !kill.i_know {
        return nothing(format!(
            "the target now holds {} processes, more than --max-procs {}: this tick kills nothing (--i-know allows it)",
            members.len(),
            kill.max_procs
        ));
    }
    if kill.pick == Pick::All && kill.signal.number() == libc::SIGKILL && freezer::has_cgroup_kill(dir) {
        let count = members.len();
        match freezer::kill_all(dir) {
            Ok(()) => {
                eprintln!("chaos: proc kill: cgroup.kill took down {count} processes");
                events.push(ActionEvent::KillAll { processes: count, at_ns });
                return count as u64;
            }
            Err(err) => eprintln!("chaos: proc kill: cgroup.kill failed ({err}); signalling each process instead"),
        }
    }
    let mut killed = 0;
    for member in pick::choose(kill.pick, members) {
        // Signal only the process that was chosen: a pid reused since the listing has another
        // start time.
        if !crate::os::process::process_alive(member.pid, member.start) {
            continue;
        }
        // SAFETY: kill(2) on a process of the target cgroup.
        if unsafe { libc::kill(member.pid as i32, kill.signal.number()) } == 0 {
            killed += 1;
            eprintln!("chaos: proc kill: {} to pid {} ({})", kill.signal, member.pid, member.comm);
            events.push(ActionEvent::Kill {
                pid: member.pid,
                comm: member.comm,
                signal: kill.signal.name(),
                at_ns: sys::monotonic_now_ns(),
            });
        }
    }
    killed
}
