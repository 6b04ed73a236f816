//! `chaos daemon`: a long-lived service that keeps a small, constant level of failure on a node.
//! It runs the experiments of its catalogue on a schedule, within budgets, each through the same
//! path as `chaos run` (file, plan, runner: checks, timeline, verdict) on a thread of its own
//! with its own runtime, ended by a cancellation instead of a signal. A violated steady state
//! pauses injection daemon-wide; `pause --now` and the kill-switch file end every run at once.
//!
//! One task on the main thread owns the state: it ticks (schedule, kill switch, cool-down),
//! answers the control socket, collects ended runs and handles SIGHUP (reload) and SIGTERM/SIGINT
//! (end every run, then exit). Crash safety needs nothing here beyond the clean-up at start: each
//! fault has its kernel deadline and fd-owned links, which go with the process.
mod candidates;
mod check;
pub mod config;
mod config_watch;
pub mod control;
mod kill_watch;
pub mod metrics;
mod run;
pub mod scheduler;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
pub use check::check;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
    time::{MissedTickBehavior, interval},
};

use self::{
    config::DaemonConfig,
    metrics::Metrics,
    scheduler::{Budgets, next_delay, pick_weighted, random_u64},
};
use crate::{
    experiment, ledger,
    targets::{self, CgroupFs},
};

/// How often the daemon looks at its schedule, kill switch and windows while runs are live (or
/// the kill switch's directory cannot be watched): within 100 ms of the kill-switch file every
/// run must end, and a 40 ms tick leaves the rest for detaching (a few ms).
const TICK: Duration = Duration::from_millis(40);
/// The longest an idle daemon sleeps between looks at its schedule (events wake it sooner).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// A run under way, on its own thread.
struct ActiveRun {
    number: u64,
    name: String,
    target: String,
    /// How many faults it has (attached while it runs).
    faults: usize,
    started: Instant,
    cancel: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// What a run's thread sends back when it ends.
struct RunEnd {
    number: u64,
    /// The verdict's exit code (0 held, 1 violated, 2 could not run, 3 target gone), or why it
    /// did not start.
    outcome: Result<u8, String>,
    timeline: PathBuf,
}

struct Pause {
    reason: String,
    /// When a cool-down resumes injection by itself; None: a person must (`resume`).
    until: Option<Instant>,
}

struct Service {
    config: DaemonConfig,
    metrics: Metrics,
    budgets: Budgets,
    runs: Vec<ActiveRun>,
    paused: Option<Pause>,
    next_run: Instant,
    ended: mpsc::UnboundedSender<RunEnd>,
    next_number: u64,
    /// The configuration's files as last loaded: a change on disk reloads it.
    config_seen: config_watch::Fingerprint,
    /// The content on disk last refused, so that it is counted once.
    refused: Option<config_watch::Fingerprint>,
}

/// Runs the daemon until SIGTERM or SIGINT. A bad configuration is an error (exit 2).
pub fn serve(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = DaemonConfig::load(config_path)?;
    let _ = crate::os::sys::raise_resource_limits();
    // Each run has a thread of its own; glibc would give many of them an arena of their own,
    // which a long-lived service keeps forever. Two arenas serve the control task and one run.
    // SAFETY: mallopt(3) only sets an allocator parameter; called before any run thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    // What a crashed daemon (or any crashed run) left goes before the first run.
    let mut cleaned = experiment::clean_stale_runs();
    cleaned.extend(ledger::cleanup_stale());
    for line in &cleaned {
        tracing::info!(cleaned = %line, "cleaned what an earlier run left");
    }
    let metrics = Metrics::new();
    metrics.cleaned_at_start.set(i64::try_from(cleaned.len()).unwrap_or(i64::MAX));
    metrics.set_config(&config.path.display().to_string());
    metrics.set_paused(None);
    if let Some(address) = &config.metrics {
        metrics.serve(address)?;
    }
    std::fs::create_dir_all(config.timelines_dir())
        .with_context(|| format!("creating the state directory {}", config.timelines_dir().display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = control::bind(&config.socket)
            .with_context(|| format!("binding the control socket {}", config.socket.display()))?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (ended, mut ends) = mpsc::unbounded_channel();
        let first_run = Instant::now() + next_delay(&config.schedule, chrono::Utc::now(), random_u64());
        tracing::info!(
            config = %config.path.display(),
            socket = %config.socket.display(),
            experiments = config.catalogue.len(),
            cleaned = cleaned.len(),
            "chaos daemon started"
        );
        if config.catalogue.is_empty() {
            tracing::warn!(
                "the catalogue is empty: nothing will run until an [[experiment]] is added (reloaded on change)"
            );
        }
        let socket = config.socket.clone();
        let config_seen = config_watch::fingerprint(&config);
        let mut service = Service {
            config,
            metrics,
            budgets: Budgets::default(),
            runs: Vec::new(),
            paused: None,
            next_run: first_run,
            ended,
            next_number: 1,
            config_seen,
            refused: None,
        };
        let mut config_ticks = interval(config_watch::POLL);
        config_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ticks = interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut kill_watch = kill_watch::KillWatch::new(&service.config.kill_switch);
        let why = loop {
            if kill_watch.path != service.config.kill_switch {
                kill_watch = kill_watch::KillWatch::new(&service.config.kill_switch);
            }
            // Idle, the daemon sleeps until its next run or the cool-down's end, woken early by
            // the kill switch's directory; it ticks while runs are live (a closing window ends
            // them) or where that directory cannot be watched.
            let fast = !service.runs.is_empty() || !kill_watch.active();
            let wake = tokio::time::Instant::from_std(service.next_wake());
            tokio::select! {
                _ = ticks.tick(), if fast => service.tick(),
                () = tokio::time::sleep_until(wake) => service.tick(),
                () = kill_watch.changed() => service.tick(),
                Some(end) = ends.recv() => service.finished(end),
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        service.answer(stream).await;
                    }
                }
                _ = hup.recv() => service.reload(),
                _ = config_ticks.tick() => service.reload_if_changed(),
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
            }
        };
        let ended_runs = service.end_all(&format!("the daemon is stopping ({why})"));
        while let Ok(end) = ends.try_recv() {
            service.finished(end);
        }
        let _ = std::fs::remove_file(&socket);
        tracing::info!(signal = why, runs_ended = ended_runs, "chaos daemon stopped");
        Ok(ExitCode::SUCCESS)
    })
}

impl Service {
    /// When the schedule next needs a look: the next run, or sooner the cool-down's end (a
    /// second at most, for the allowed windows and anything the events miss).
    fn next_wake(&self) -> Instant {
        let soon = Instant::now() + IDLE_LOOK;
        let until = self.paused.as_ref().and_then(|p| p.until).unwrap_or(soon);
        self.next_run.min(until).min(soon)
    }

    fn tick(&mut self) {
        let now = Instant::now();
        if self.config.kill_switch.exists() {
            if !self.paused.as_ref().is_some_and(|p| p.reason.starts_with("kill switch")) {
                let reason = format!("kill switch: {} exists", self.config.kill_switch.display());
                let ended = self.pause_now(&reason);
                tracing::warn!(runs_ended = ended, "{reason}: injection paused until `chaos daemon resume`");
            }
            return;
        }
        if let Some(until) = self.paused.as_ref().and_then(|p| p.until)
            && now >= until
        {
            tracing::info!("cool-down over: injection resumes");
            self.set_paused(None);
        }
        if let Err(why) = scheduler::allowed_at(&self.config.schedule, chrono::Utc::now()) {
            // A window that closes mid-run ends the run.
            if !self.runs.is_empty() {
                let reason = format!("the allowed window closed: {why}");
                let ended = self.end_all(&reason);
                tracing::info!(runs_ended = ended, "{reason}");
            }
            if now >= self.next_run {
                self.next_run = now + next_delay(&self.config.schedule, chrono::Utc::now(), random_u64());
                tracing::debug!("scheduled run skipped: {why}");
            }
            return;
        }
        if self.paused.is_some() || now < self.next_run {
            return;
        }
        self.next_run = now + next_delay(&self.config.schedule, chrono::Utc::now(), random_u64());
        let weights: Vec<u32> = self.config.catalogue.iter().map(|e| e.weight).collect();
        if let Some(index) = pick_weighted(&weights, random_u64())
            && let Err(why) = self.start(index)
        {
            tracing::info!(experiment = %self.config.catalogue[index].name, "scheduled run skipped: {why}");
        }
    }

    /// Starts catalogue entry `index` on a target within the budgets; returns its run number.
    fn start(&mut self, index: usize) -> Result<u64, String> {
        let now = Instant::now();
        self.budgets.allows(&self.config.budget, self.runs.len(), now)?;
        let entry = &self.config.catalogue[index];
        let busy: Vec<String> = self.runs.iter().map(|r| r.target.clone()).collect();
        let cgroups = CgroupFs::discover().map_err(|e| e.to_string())?;
        let mut follow = None;
        let target = match &entry.selector {
            Some(selector) => {
                let mut found = scheduler::matches(selector, &cgroups, &self.config.kubernetes);
                if found.cgroups.is_empty() {
                    return Err(found.why_none());
                }
                let picked = self.budgets.pick_target(&self.config.budget, &found.cgroups, &busy, now, random_u64())?;
                follow = found.names.remove(&picked).filter(|_| entry.follow);
                picked
            }
            None => {
                let own = targets::own_cgroup();
                let resolved = cgroups
                    .resolve_allowing(&entry.experiment.target, own.as_deref(), false)
                    .map_err(|e| e.to_string())?;
                if busy.contains(&resolved.cgroup) {
                    return Err(format!("{} is under fault already", resolved.cgroup));
                }
                resolved.cgroup
            }
        };
        self.budgets.started(&target, now);
        let number = self.next_number;
        self.next_number += 1;
        let name = entry.name.clone();
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(':', "");
        let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let timeline = self.config.timelines_dir().join(format!("{stamp}-{number}-{safe}.jsonl"));
        let (cancel, cancelled) = watch::channel(false);
        let file = entry.file.clone();
        let ended = self.ended.clone();
        let run_target = target.clone();
        let thread = std::thread::Builder::new()
            .name(format!("chaos-run-{number}"))
            .spawn(move || {
                let outcome = run::run_one(&file, &run_target, follow.as_ref(), &timeline, cancelled);
                let _ = ended.send(RunEnd { number, outcome, timeline });
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        tracing::info!(run = number, experiment = %name, target = %target, "run started");
        self.metrics.count_run(&name, "started");
        let faults = entry.experiment.faults.len();
        self.runs.push(ActiveRun { number, name, target, faults, started: now, cancel, thread: Some(thread) });
        self.metrics.runs_active.set(self.runs.len() as i64);
        self.set_faults_active();
        run::prune_timelines(&self.config.timelines_dir(), self.config.keep_timelines);
        Ok(number)
    }

    /// One log line per run, with its verdict; a violated steady state pauses injection.
    fn finished(&mut self, end: RunEnd) {
        let Some(position) = self.runs.iter().position(|r| r.number == end.number) else { return };
        let mut run = self.runs.remove(position);
        if let Some(thread) = run.thread.take() {
            let _ = thread.join();
        }
        self.metrics.runs_active.set(self.runs.len() as i64);
        // What a run allocated (the object, BTF, maps' buffers) goes back to the system, so
        // the daemon's footprint between runs stays that of an idle process.
        // SAFETY: malloc_trim(3) has no preconditions.
        unsafe { libc::malloc_trim(0) };
        let (outcome, verdict) = match &end.outcome {
            Ok(0) => ("held", "held".to_owned()),
            Ok(1) => ("violated", "violated".to_owned()),
            Ok(crate::report::TARGET_GONE_EXIT) => ("target_gone", "target gone (its cgroup was removed)".to_owned()),
            Ok(code) => match run::verdict_summary(&end.timeline) {
                Some(why) => ("aborted", format!("no verdict (exit {code}): {why}")),
                None => ("aborted", format!("no verdict (exit {code})")),
            },
            Err(why) => ("aborted", format!("could not run: {why}")),
        };
        tracing::info!(
            run = run.number,
            experiment = %run.name,
            target = %run.target,
            verdict = %verdict,
            seconds = run.started.elapsed().as_secs_f64(),
            timeline = %end.timeline.display(),
            "run ended"
        );
        self.metrics.count_run(&run.name, outcome);
        self.metrics.count_timeline(&run.name, &end.timeline);
        self.set_faults_active();
        let label = metrics::ExperimentLabel { experiment: run.name.clone() };
        self.metrics.last_verdict_exit_code.get_or_create(&label).set(i64::from(*end.outcome.as_ref().unwrap_or(&2)));
        let now_s = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        self.metrics.last_run_end.get_or_create(&label).set(now_s);
        if outcome == "violated" {
            let reason = format!("steady state violated by run {} ({} on {})", run.number, run.name, run.target);
            let until = self.config.cool_down.map(|d| Instant::now() + d);
            tracing::warn!(
                "{reason}: injection paused {}",
                self.config.cool_down.map_or("until `chaos daemon resume`".to_owned(), |d| format!(
                    "for {}",
                    humantime::format_duration(d)
                ))
            );
            self.end_all(&reason);
            self.set_paused(Some(Pause { reason, until }));
        }
    }

    fn set_faults_active(&self) {
        let faults: usize = self.runs.iter().map(|r| r.faults).sum();
        self.metrics.faults_active.set(i64::try_from(faults).unwrap_or(i64::MAX));
    }

    fn set_paused(&mut self, pause: Option<Pause>) {
        self.metrics.set_paused(pause.as_ref().map(|p| p.reason.as_str()));
        self.paused = pause;
    }

    /// The kill switch: no new run, and every running one ends (its faults detached) before
    /// this returns. Returns how many runs were ended.
    fn pause_now(&mut self, reason: &str) -> usize {
        self.set_paused(Some(Pause { reason: reason.to_owned(), until: None }));
        self.end_all(reason)
    }

    /// Ends every run and waits for their threads (each detaches its faults on the way out).
    fn end_all(&mut self, reason: &str) -> usize {
        for run in &self.runs {
            let _ = run.cancel.send(true);
        }
        let mut count = 0;
        for run in &mut self.runs {
            if let Some(thread) = run.thread.take() {
                let _ = thread.join();
                count += 1;
                tracing::info!(run = run.number, experiment = %run.name, "run ended early: {reason}");
            }
        }
        count
    }

    /// A configuration changed on disk (an edit, or kubelet swapping a ConfigMap's files) is
    /// reloaded as on SIGHUP.
    fn reload_if_changed(&mut self) {
        let now = config_watch::fingerprint(&self.config);
        if now != self.config_seen {
            tracing::info!(config = %self.config.path.display(), "configuration changed on disk");
            self.reload();
        }
    }

    /// Loads the configuration again; an invalid one is refused and the old one stays. A
    /// refusal counts once per content on disk (SIGHUP and the watch may both see it).
    fn reload(&mut self) {
        self.config_seen = config_watch::fingerprint(&self.config);
        match DaemonConfig::load(&self.config.path) {
            Ok(config) => {
                if config.socket != self.config.socket {
                    tracing::warn!("the control socket's path changes only with a restart");
                }
                tracing::info!(config = %config.path.display(), experiments = config.catalogue.len(), "configuration reloaded");
                self.metrics.set_config(&config.path.display().to_string());
                self.config = config;
                self.config_seen = config_watch::fingerprint(&self.config);
                self.refused = None;
            }
            Err(err) => {
                if self.refused.as_ref() != Some(&self.config_seen) {
                    self.metrics.config_reload_failures.inc();
                }
                self.refused = Some(self.config_seen.clone());
                tracing::error!("configuration not reloaded, the old one stays: {err}");
            }
        }
    }
}
