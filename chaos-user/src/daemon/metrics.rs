//! The daemon's Prometheus metrics (the official `prometheus-client`), served at `/metrics` by
//! a small HTTP listener on its own thread. Names follow Prometheus's conventions: a `chaos_`
//! prefix, `_total` on counters, base units (seconds), labels for experiment and outcome.
use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RunLabels {
    pub experiment: String,
    /// started, held, violated, aborted (could not run, or ended early)
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ExperimentLabel {
    pub experiment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct InjectionLabels {
    pub experiment: String,
    /// the fault's kind, e.g. "net drop", "syscall delay"
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CheckLabels {
    pub experiment: String,
    pub check: String,
    /// passed or failed
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PausedLabels {
    /// why injection is paused ("" when it is not)
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConfigLabels {
    pub path: String,
}

/// Every metric the daemon keeps; cheap to clone (each is an Arc inside).
#[derive(Clone)]
pub(crate) struct Metrics {
    pub runs: Family<RunLabels, Counter>,
    pub runs_active: Gauge,
    pub faults_active: Gauge,
    pub injections: Family<InjectionLabels, Counter>,
    pub checks: Family<CheckLabels, Counter>,
    pub paused: Family<PausedLabels, Gauge>,
    pub last_verdict_exit_code: Family<ExperimentLabel, Gauge>,
    pub last_run_end: Family<ExperimentLabel, Gauge<f64, AtomicU64>>,
    pub config_loaded: Family<ConfigLabels, Gauge>,
    pub config_reload_failures: Counter,
    pub cleaned_at_start: Gauge<i64, AtomicI64>,
    registry: Arc<Registry>,
}

impl Metrics {
    #[must_use]
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("chaos");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("daemon_runs", "Runs of the daemon by experiment and outcome", runs.clone());
        let runs_active = Gauge::default();
        registry.register("daemon_runs_active", "Experiments running now (faults attached)", runs_active.clone());
        let faults_active = Gauge::default();
        registry.register("daemon_faults_active", "Faults of the running experiments", faults_active.clone());
        let injections = Family::<InjectionLabels, Counter>::default();
        registry.register(
            "daemon_injections",
            "Injections (packets dropped, calls failed or delayed, ...) by experiment and fault family, counted when a run ends",
            injections.clone(),
        );
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "daemon_checks",
            "Steady-state check results by experiment, check and result",
            checks.clone(),
        );
        let paused = Family::<PausedLabels, Gauge>::default();
        registry.register("daemon_paused", "1 while injection is paused, labelled with why", paused.clone());
        let last_verdict_exit_code = Family::<ExperimentLabel, Gauge>::default();
        registry.register(
            "daemon_last_verdict_exit_code",
            "Exit code of the experiment's last run: 0 held, 1 violated, 2 could not run",
            last_verdict_exit_code.clone(),
        );
        let last_run_end = Family::<ExperimentLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "daemon_last_run_end_timestamp_seconds",
            "When the experiment's last run ended (Unix time)",
            last_run_end.clone(),
        );
        let config_loaded = Family::<ConfigLabels, Gauge>::default();
        registry.register("daemon_config_loaded", "1 for the configuration file in use", config_loaded.clone());
        let config_reload_failures = Counter::default();
        registry.register(
            "daemon_config_reload_failures",
            "SIGHUP reloads refused (the old configuration stayed)",
            config_reload_failures.clone(),
        );
        let cleaned_at_start = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "daemon_cleaned_at_start",
            "Items a crashed run left that the daemon removed when it started",
            cleaned_at_start.clone(),
        );
        Self {
            runs,
            runs_active,
            faults_active,
            injections,
            checks,
            paused,
            last_verdict_exit_code,
            last_run_end,
            config_loaded,
            config_reload_failures,
            cleaned_at_start,
            registry: Arc::new(registry),
        }
    }

    pub(crate) fn count_run(&self, experiment: &str, outcome: &str) {
        self.runs.get_or_create(&RunLabels { experiment: experiment.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    /// Counts what a run's timeline records: injections per fault family and check results.
    pub(crate) fn count_timeline(&self, experiment: &str, timeline: &std::path::Path) {
        use crate::experiment::{events::TimelineEvent, timeline};
        let Ok(events) = timeline::read(timeline) else { return };
        let mut kinds = std::collections::HashMap::new();
        for (_, recorded) in events {
            match recorded.event {
                TimelineEvent::Plan(planned) => {
                    kinds.insert(planned.fault, planned.kind);
                }
                TimelineEvent::Detach(detached) => {
                    let family = kinds.get(&detached.fault).cloned().unwrap_or_default();
                    self.injections
                        .get_or_create(&InjectionLabels { experiment: experiment.to_owned(), family })
                        .inc_by(detached.injected);
                }
                TimelineEvent::Check { check, ok, .. } => {
                    let result = if ok { "passed" } else { "failed" }.to_owned();
                    self.checks.get_or_create(&CheckLabels { experiment: experiment.to_owned(), check, result }).inc();
                }
                _ => {}
            }
        }
    }

    pub(crate) fn set_paused(&self, reason: Option<&str>) {
        self.paused.clear();
        self.paused
            .get_or_create(&PausedLabels { reason: reason.unwrap_or_default().to_owned() })
            .set(i64::from(reason.is_some()));
    }

    pub(crate) fn set_config(&self, path: &str) {
        self.config_loaded.clear();
        self.config_loaded.get_or_create(&ConfigLabels { path: path.to_owned() }).set(1);
    }

    /// The text exposition format.
    #[must_use]
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Serves `/metrics` on `address` from a thread of its own, until the process ends.
    pub(crate) fn serve(&self, address: &str) -> anyhow::Result<()> {
        let server = tiny_http::Server::http(address).map_err(|e| {
            anyhow::anyhow!("cannot serve metrics on {address}: {e} (set `metrics` in the configuration)")
        })?;
        let metrics = self.clone();
        std::thread::Builder::new().name("chaos-metrics".into()).spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header = tiny_http::Header::from_bytes(
                        "Content-Type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(metrics.render()).with_header(header)
                } else {
                    tiny_http::Response::from_string("chaos daemon: metrics are at /metrics\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
