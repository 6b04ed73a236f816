//! `--trace-injections` and `--trace-rate`, the options every fault has: one clap struct
//! flattened beside each family's own options ([`Traced`]), for the command line and
//! `[[fault]]` tables alike (`trace_injections = true`, or `trace = true` in experiment files).
//! Planning a traced fault sets the kernel's TRACE flag and rate; the programs then report a
//! rate-limited sample of their injections (chaos-ebpf trace.rs, read by `engine::trace`).
use chaos_common::flags;
use clap::Args;

use crate::{
    fault::{FaultContext, FaultPlan, PlanError, PlanFault},
    plan::options::Ppm,
};

/// The default kernel-side limit: records per second, per fault.
pub const DEFAULT_TRACE_RATE: u64 = 100;

/// The most records a second a fault may report: beyond this the ring buffer (64 KiB) fills
/// between two reads and records are lost anyway.
pub const MAX_TRACE_RATE: u64 = 10_000;

#[derive(Clone, Copy, Debug, Default, Args)]
pub struct TraceOptions {
    /// Report who was hit: a sample of the injections (time, process, addresses or syscall,
    /// signal) as log lines and, in experiments, `injection` events in the timeline.
    #[arg(long)]
    pub trace_injections: bool,
    /// With --trace-injections: at most this many records a second (default 100), limited in
    /// the kernel.
    #[arg(long, value_name = "N", value_parser = parse_trace_rate, requires = "trace_injections")]
    pub trace_rate: Option<u64>,
}

impl TraceOptions {
    /// Records per second the kernel may send, or None when tracing is off.
    #[must_use]
    pub fn rate(&self) -> Option<u64> {
        self.trace_injections.then(|| self.trace_rate.unwrap_or(DEFAULT_TRACE_RATE))
    }

    /// Turns tracing on in a plan's kernel configuration. Faults done from userspace have no
    /// program to trace: refused, with what to use instead.
    pub fn apply(&self, plan: &mut FaultPlan) -> Result<(), PlanError> {
        let Some(rate) = self.rate() else { return Ok(()) };
        if plan.programs.is_empty() {
            return Err(PlanError::Refused(format!(
                "--trace-injections: {} is done by chaos's own process, not by a kernel program; what it \
                 did is already in the timeline (`proc` events) and its report",
                plan.fault
            )));
        }
        plan.config.flags |= flags::TRACE;
        plan.config.trace_per_sec = rate;
        if let Some(parameters) = plan.parameters.as_object_mut() {
            parameters.insert("trace_per_sec".into(), rate.into());
        }
        Ok(())
    }
}

/// A family's options with the shared trace options beside them.
#[derive(Clone, Debug, Args)]
pub struct Traced<F: Args> {
    #[command(flatten)]
    pub fault: F,
    #[command(flatten)]
    pub trace: TraceOptions,
}

impl<F: Args + PlanFault> PlanFault for Traced<F> {
    fn plan(&self, context: &FaultContext<'_>) -> Result<FaultPlan, PlanError> {
        let mut plan = self.fault.plan(context)?;
        // An action that names whom it hit itself (`net sever`'s sweeps) is traced by its own
        // process and needs no program; its programs, if it has some, are traced as any.
        if let Some(rate) = self.trace.rate()
            && let Some(traced) = plan.userspace.as_ref().and_then(|action| action.traced(rate))
        {
            plan.userspace = Some(traced);
            if plan.programs.is_empty() {
                return Ok(plan);
            }
        }
        self.trace.apply(&mut plan)?;
        Ok(plan)
    }

    fn percent(&self) -> Option<Ppm> {
        self.fault.percent()
    }

    fn ramp_tightens(&self) -> bool {
        self.fault.ramp_tightens()
    }

    fn uses_ledger(&self) -> bool {
        self.fault.uses_ledger()
    }
}

fn parse_trace_rate(text: &str) -> Result<u64, String> {
    let rate: u64 =
        text.trim().parse().map_err(|_| format!("'{text}' is not a number of records a second, e.g. 100"))?;
    if rate == 0 || rate > MAX_TRACE_RATE {
        return Err(format!("'{text}': the trace rate goes from 1 to {MAX_TRACE_RATE} records a second"));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_rates_are_bounded() {
        assert_eq!(parse_trace_rate("100"), Ok(100));
        assert!(parse_trace_rate("0").unwrap_err().contains("from 1 to"));
        assert!(parse_trace_rate("10001").unwrap_err().contains("from 1 to"));
        assert!(parse_trace_rate("x").unwrap_err().contains("not a number"));
    }

    #[test]
    fn tracing_is_off_unless_asked() {
        assert_eq!(TraceOptions::default().rate(), None);
        assert_eq!(TraceOptions { trace_injections: true, trace_rate: None }.rate(), Some(DEFAULT_TRACE_RATE));
        assert_eq!(TraceOptions { trace_injections: true, trace_rate: Some(7) }.rate(), Some(7));
    }
}
