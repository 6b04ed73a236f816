//! Detached experiments: faults that run without a foreground process.
//!
//! `chaos run --detach` attaches every fault inert, pins its links and its config and counter
//! maps under `/sys/fs/bpf/chaos/<id>/`, writes the run's record (with its schedule) and starts
//! a reaper: `chaos` itself in a new session, which arms, ramps and ends the faults on time by
//! writing the pinned maps, and removes the pins at the end. What holds when:
//! - each fault's kernel deadline is written when it is armed, so a live fault ends on time
//!   even if the reaper is killed;
//! - if the reaper is killed, faults not yet armed stay inert (deadline 0) and the pins stay
//!   until `chaos stop`, `chaos status`, `chaos cleanup` or the next `chaos run` removes them
//!   (they remove a detached experiment's pins once its deadline has passed);
//! - steady-state checks need a process that watches: a detached experiment runs none.
use std::{
    fs, io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{
    events::{FaultAttached, FaultDetached, FaultPlanned, Started, TimelineEvent},
    plan::ExperimentPlan,
    steps::{self, Action, Step},
    timeline::Timeline,
};
use crate::{
    engine::PinnedFault,
    os::sys,
    plan::options::Ppm,
    report::TARGET_GONE_EXIT,
    run::arm_to_pin,
    run_records::{self, FaultRecord, RunRecord},
    targets::CgroupFs,
};

/// Why a detached experiment ends when its target's cgroup is removed.
const TARGET_GONE: &str = "target gone";

/// Where detached experiments pin their links and maps.
pub const PIN_ROOT: &str = "/sys/fs/bpf/chaos";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The schedule a reaper follows, kept beside the run record.
#[derive(serde::Serialize, serde::Deserialize)]
struct ReaperSchedule {
    /// CLOCK_MONOTONIC ns at which the faults phase started.
    started_ns: u64,
    /// The timeline's `t` at that moment, so the reaper's events continue its clock.
    t0_s: f64,
    steps: Vec<Step>,
    /// Each fault's own probability, for its `arm` event.
    #[serde(default)]
    percents: Vec<Option<Ppm>>,
}

fn schedule_path(id: &str) -> PathBuf {
    Path::new(run_records::RUNS_DIR).join(format!("{id}.schedule"))
}

/// Mounts bpffs on /sys/fs/bpf if nothing is mounted there; says so when it does.
pub fn ensure_bpffs() -> anyhow::Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if is_bpffs(root) {
        return Ok(());
    }
    fs::create_dir_all(root).ok();
    let (source, target, fstype) = (c"bpf", c"/sys/fs/bpf", c"bpf");
    // SAFETY: valid C strings; no data argument.
    if unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) } != 0 {
        bail!(
            "bpffs is not mounted at /sys/fs/bpf and mounting it failed: {}; mount it (`mount -t bpf bpf /sys/fs/bpf`) and retry",
            io::Error::last_os_error()
        );
    }
    eprintln!(
        "chaos: note: mounted bpffs at /sys/fs/bpf (it was not mounted) to pin the detached experiment; it stays mounted"
    );
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: statfs fills the zeroed struct; valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) == 0 && stat.f_type as i64 == BPF_FS_MAGIC }
}

/// Attaches and pins every fault, starts the reaper, and returns at once.
pub fn start(plan: &ExperimentPlan<'_>, timeline_path: &Path) -> anyhow::Result<ExitCode> {
    let experiment = plan.experiment;
    ensure_bpffs()?;
    let _ = sys::raise_resource_limits();
    if !experiment.steady_state.checks.is_empty() {
        eprintln!(
            "chaos: note: a detached experiment runs no steady-state checks (no process stays to watch them); \
             run it in the foreground for a verdict"
        );
    }
    let id = run_records::new_id();
    let pin_dir = Path::new(PIN_ROOT).join(&id);
    let mut timeline = Timeline::create(timeline_path)
        .with_context(|| format!("creating the timeline {}", timeline_path.display()))?;
    timeline.event(&TimelineEvent::Experiment(Started::detached(&id, plan)));
    let fault_dir = |number: usize| pin_dir.join(format!("fault-{number}"));
    // The record before the pins: a chaos that dies while pinning leaves a record (its owner
    // dead, `starting`) that cleanup ends, never pins nothing describes.
    let mut record = RunRecord {
        id: id.clone(),
        pid: std::process::id(),
        pid_start: crate::os::process::start_time(std::process::id()).unwrap_or(0),
        detached: true,
        starting: true,
        kind: run_records::RunKind::Experiment,
        name: experiment.name.clone(),
        file: experiment.source.path.clone(),
        target: plan.target.cgroup.clone(),
        target_id: plan.target.id,
        faults: plan
            .faults
            .iter()
            .map(|f| FaultRecord {
                label: f.label.clone(),
                hooks: f.hooks(),
                injected: 0,
                pin_dir: Some(fault_dir(f.number)),
            })
            .collect(),
        ends_ns: sys::monotonic_deadline_ns(experiment.duration),
        timeline: timeline_path.canonicalize().unwrap_or_else(|_| timeline_path.to_owned()).display().to_string(),
        pin_dir: Some(pin_dir.clone()),
    };
    record.write().with_context(|| format!("recording the detached experiment in {}", run_records::RUNS_DIR))?;
    for fault in &plan.faults {
        timeline.event(&TimelineEvent::Plan(FaultPlanned::of(fault)));
        let dir = fault_dir(fault.number);
        let pinned = arm_to_pin(&fault.plan).map_err(anyhow::Error::from).and_then(|mut loaded| {
            loaded.pin(&dir)?;
            Ok(loaded)
        });
        match pinned {
            // Dropping the loaded object closes its fds; the pins keep the links and maps alive.
            Ok(loaded) => drop(loaded),
            Err(err) => {
                let _ = fs::remove_dir_all(&pin_dir);
                record.remove();
                let reason = format!("fault {} could not attach: {err}", fault.label);
                timeline.event(&TimelineEvent::Abort { phase: None, reason });
                let summary = format!("could not run: {err:#}");
                timeline.event(&TimelineEvent::Verdict { held: Some(false), exit_code: 2, summary });
                return Err(err.context(format!("fault {}", fault.label)));
            }
        }
        timeline.event(&TimelineEvent::Attach(FaultAttached {
            fault: fault.number,
            programs: None,
            pinned: Some(dir.clone()),
            hooks: fault.hooks(),
        }));
    }
    let started_ns = sys::monotonic_now_ns();
    record.ends_ns = started_ns + u64::try_from(experiment.duration.as_nanos()).unwrap_or(u64::MAX);
    let schedule = ReaperSchedule {
        started_ns,
        t0_s: timeline.elapsed(),
        steps: steps::steps(&plan.faults),
        percents: plan.faults.iter().map(|f| f.percent).collect(),
    };
    let written = record.write().and_then(|()| {
        crate::os::records::write_atomic(&schedule_path(&id), &serde_json::to_vec(&schedule).map_err(io::Error::other)?)
    });
    if let Err(err) = written {
        let _ = fs::remove_dir_all(&pin_dir);
        record.remove();
        bail!("recording the detached experiment in {}: {err}", run_records::RUNS_DIR);
    }
    let reaper = spawn_reaper(&id);
    match reaper {
        Ok(pid) => {
            (record.pid, record.starting) = (pid, false);
            record.pid_start = crate::os::process::start_time(pid).unwrap_or(0);
            if let Err(err) = record.write() {
                // The reaper runs and ends the run on time; only `chaos stop` cannot find it to
                // stop it first (it still removes the pins).
                eprintln!(
                    "chaos: warning: the record of {id} could not name its reaper (pid {pid}): {err}; `chaos stop {id}` \
                     removes the pins but cannot stop that process"
                );
            }
        }
        Err(err) => {
            let lines = end(&record, "could not start the reaper");
            bail!("starting the reaper: {err}; the experiment was removed again ({})", lines.join("; "));
        }
    }
    println!("{id}");
    eprintln!(
        "chaos: detached experiment {id} runs for {} on {}; pinned under {}. `chaos status` shows it, `chaos stop {id}` ends it; \
         timeline: {}",
        humantime::format_duration(experiment.duration),
        plan.target.describe(),
        pin_dir.display(),
        record.timeline
    );
    Ok(ExitCode::SUCCESS)
}

/// Starts `chaos __reap ID` in its own session, detached from the terminal.
fn spawn_reaper(id: &str) -> io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut command = std::process::Command::new(exe);
    command.args(["__reap", id]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command.spawn()?.id())
}

/// The reaper: follows the schedule by writing the pinned maps, then removes everything.
pub fn reap(id: &str) -> ExitCode {
    let (Some(record), Ok(schedule)) = (
        run_records::find(id),
        fs::read(schedule_path(id))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<ReaperSchedule>(&b).map_err(|e| e.to_string())),
    ) else {
        return ExitCode::from(2);
    };
    // The reaper starts a moment after the run was recorded: seconds in a busy VM, which would
    // shorten the steps it has not reached yet, or skip them all. When late, follow the
    // schedule from now and move the run's end by as much (re-read first: by then the parent
    // has long recorded this reaper's pid).
    let lag_ns = sys::monotonic_now_ns().saturating_sub(schedule.started_ns);
    let (started_ns, record) = if lag_ns > 100_000_000 {
        let mut record = run_records::find(id).unwrap_or(record);
        record.ends_ns += lag_ns;
        // The parent may not have named this reaper yet (it does once the spawn returns): a
        // record still `starting` under the parent's pid would be judged stale once the parent
        // exits, and the running experiment cleaned away.
        record.pid = std::process::id();
        record.pid_start = crate::os::process::start_time(record.pid).unwrap_or(0);
        record.starting = false;
        if let Err(err) = record.write() {
            // Nobody reads the reaper's stderr: the timeline is where people look.
            if let Ok(mut timeline) = Timeline::append(Path::new(&record.timeline)) {
                let warning = format!(
                    "the reaper started {:.1} s late and could not move the run's end in its record ({err}): \
                     `chaos status` shows the end {:.1} s early",
                    lag_ns as f64 / 1e9,
                    lag_ns as f64 / 1e9
                );
                timeline.event_at(None, &TimelineEvent::Warning { warning });
            }
        }
        (schedule.started_ns + lag_ns, record)
    } else {
        (schedule.started_ns, record)
    };
    let mut timeline = Timeline::append(Path::new(&record.timeline)).ok();
    let mut event = |event: TimelineEvent| {
        if let Some(timeline) = timeline.as_mut() {
            timeline.event_at(Some(schedule.t0_s + elapsed_s(schedule.started_ns)), &event);
        }
    };
    // The target, looked at while the reaper waits: a removed cgroup ends the run.
    let target = CgroupFs::discover().ok().map(|cgroups| (cgroups.dir_of(&record.target), record.target_id));
    for step in &schedule.steps {
        if !sleep_until_ns(started_ns + u64::try_from(step.at.as_nanos()).unwrap_or(u64::MAX), target.as_ref()) {
            return target_gone(&record);
        }
        let Some(fault) = record.faults.get(step.fault) else { continue };
        let number = step.fault + 1;
        let Some(dir) = &fault.pin_dir else { continue };
        let Ok(mut pinned) = PinnedFault::open(dir) else { continue };
        match step.action {
            Action::Arm { duration, ppm } => {
                let deadline_ns = sys::monotonic_deadline_ns(duration);
                if let Ok(config) = pinned.config()
                    && pinned.configure(steps::armed(config, deadline_ns, ppm)).is_ok()
                {
                    let percent = ppm.map(Ppm::from_ppm).or(schedule.percents.get(step.fault).copied().flatten());
                    event(TimelineEvent::Arm { fault: number, kernel_deadline_ns: deadline_ns, percent });
                }
            }
            Action::Ramp { ppm } => {
                if let Ok(config) = pinned.config()
                    && pinned.configure(steps::armed(config, config.deadline_ns, Some(ppm))).is_ok()
                {
                    event(TimelineEvent::Ramp { fault: number, percent: Ppm::from_ppm(ppm) });
                }
            }
            Action::End => {
                let total = pinned.total().unwrap_or_default();
                let _ = pinned.configure(chaos_common::FaultConfig::default());
                drop(pinned);
                let _ = fs::remove_dir_all(dir);
                event(TimelineEvent::Detach(detached(number, "end", total)));
            }
        }
    }
    if !sleep_until_ns(record.ends_ns, target.as_ref()) {
        return target_gone(&record);
    }
    end(&record, "its deadline");
    ExitCode::SUCCESS
}

/// Ends a detached experiment whose target went away: an `abort`, every fault detached.
fn target_gone(record: &RunRecord) -> ExitCode {
    if let Ok(mut timeline) = Timeline::append(Path::new(&record.timeline)) {
        let reason = format!("{TARGET_GONE}: {} was removed", record.target);
        timeline.event_at(None, &TimelineEvent::Abort { phase: None, reason });
    }
    end(record, TARGET_GONE);
    ExitCode::from(TARGET_GONE_EXIT)
}

fn elapsed_s(started_ns: u64) -> f64 {
    (sys::monotonic_now_ns().saturating_sub(started_ns) as f64 / 1e6).round() / 1e3
}

/// Sleeps until `at_ns`, looking at the target's cgroup (directory, id) every half second;
/// false if it went away first.
fn sleep_until_ns(at_ns: u64, target: Option<&(PathBuf, u64)>) -> bool {
    loop {
        let now = sys::monotonic_now_ns();
        if now >= at_ns {
            return true;
        }
        if let Some((dir, id)) = target
            && !crate::targets::watch::is_present(dir, *id)
        {
            return false;
        }
        std::thread::sleep(Duration::from_nanos(at_ns - now).min(crate::targets::watch::POLL));
    }
}

/// Ends a detached experiment: its reaper (if another process ends it), its pins, its record.
/// Returns what was done, one line per item.
pub fn end(record: &RunRecord, why: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if record.pid != 0
        && record.pid != std::process::id()
        && crate::os::process::process_alive(record.pid, record.pid_start)
    {
        // SAFETY: kill(2) on the reaper we started (pid and start time checked).
        unsafe { libc::kill(record.pid as i32, libc::SIGKILL) };
        lines.push(format!("stopped the reaper of detached experiment {} (pid {})", record.id, record.pid));
    }
    // Each fault disarmed and its totals read while its maps are pinned; the events that say
    // so are written once the pins (and with them the links) are gone, and the verdict once
    // the record is: whoever reads the timeline finds the kernel and `chaos status` agreeing.
    let mut detach_events = Vec::new();
    for (index, fault) in record.faults.iter().enumerate() {
        let Some(dir) = &fault.pin_dir else { continue };
        if !dir.exists() {
            continue;
        }
        let total = PinnedFault::open(dir).and_then(|mut pinned| {
            let total = pinned.total()?;
            pinned.configure(chaos_common::FaultConfig::default())?;
            Ok(total)
        });
        if let Ok(total) = total {
            detach_events.push(TimelineEvent::Detach(detached(index + 1, why, total)));
        }
    }
    if let Some(dir) = &record.pin_dir
        && dir.exists()
    {
        match fs::remove_dir_all(dir) {
            Ok(()) => {
                lines.push(format!("removed the pins of detached experiment {} ({why}): {}", record.id, dir.display()))
            }
            Err(err) => lines.push(format!("could not remove {}: {err}", dir.display())),
        }
    }
    // The schedule first: a death between the two leaves a record cleanup still finds (and
    // ends again), never a schedule no record names.
    let _ = fs::remove_file(schedule_path(&record.id));
    record.remove();
    if let Ok(mut timeline) = Timeline::append(Path::new(&record.timeline)) {
        for event in &detach_events {
            timeline.event_at(None, event);
        }
        let summary = format!("detached experiment ended ({why}); it ran no steady-state checks");
        let exit_code = if why == TARGET_GONE { TARGET_GONE_EXIT } else { 0 };
        timeline.event_at(None, &TimelineEvent::Verdict { held: None, exit_code, summary });
    }
    lines
}

/// A `detach` event of a pinned fault (the reaper and `chaos stop` have no problems to report).
fn detached(fault: usize, why: &str, total: chaos_common::FaultCounters) -> FaultDetached {
    FaultDetached {
        fault,
        why: why.to_owned(),
        seen: total.seen,
        matched: total.matched,
        injected: total.injected,
        problems: None,
    }
}

/// Pin directories that no record describes (a crash between pinning and recording).
#[must_use]
pub fn orphan_pins(records: &[RunRecord]) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| !records.iter().any(|r| r.pin_dir.as_deref() == Some(path.as_path())))
        .collect()
}
