//! `chaos net ...`: packet faults for a target cgroup.
use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use chaos_common::{Direction, FaultConfig};

use super::TargetArgs;
use crate::{
    attach::LoadedFault,
    features,
    plan::{self, NetDropPlan},
    report::{FaultReport, OutputFormat},
    run::{self, Progress, StopSignals},
    spec::{self, DirectionChoice, Ppm},
    sys,
    target::{self, CgroupFs, TargetSpec},
};

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Drop a share of the target's packets, silently, as a lossy network would.
    #[command(after_help = "\
Examples:
  chaos net drop --cgroup /system.slice/api.service --percent 20 --for 30s
  chaos net drop --container 3f2a --percent 100 --for 10s --direction ingress

The sender sees no error: dropped packets are simply lost (egress) or never delivered
(ingress). TCP recovers by retransmitting; UDP loses the datagram. The fault ends at its
deadline even if chaos itself is stopped or killed.")]
    Drop(NetDropArgs),
}

#[derive(Debug, Args)]
pub struct NetDropArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Share of matching packets to drop, in percent (0 to 100, steps of 0.0001).
    #[arg(long, value_parser = spec::parse_percent)]
    percent: Ppm,
    /// How long the fault lasts, e.g. 30s, 5m (at most 1h without --i-know).
    #[arg(long = "for", value_name = "DURATION", value_parser = spec::parse_duration)]
    duration: Duration,
    /// Which packets: those the target sends, receives, or both.
    #[arg(long, value_enum, default_value = "both")]
    direction: DirectionChoice,
    /// Print what would be attached where, and stop.
    #[arg(long)]
    dry_run: bool,
    /// Allow durations over the 1h cap.
    #[arg(long)]
    i_know: bool,
}

impl NetCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            Self::Drop(args) => net_drop(args, output),
        }
    }
}

fn net_drop(args: NetDropArgs, output: OutputFormat) -> anyhow::Result<ExitCode> {
    spec::check_duration_cap(args.duration, args.i_know).map_err(anyhow::Error::msg)?;
    let target_spec = args.target.spec();
    let target = CgroupFs::discover()?.resolve(&target_spec, target::own_cgroup().as_deref())?;
    let kernel = features::probe();
    let plan = plan::net_drop(target, args.percent, args.duration, args.direction, &kernel)?;
    if args.dry_run {
        print_plan(&plan, output);
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(target_spec, TargetSpec::Pid(_)) {
        eprintln!(
            "note: a socket stays in the cgroup it was created in; sockets this process opened \
             before it joined {} are not affected",
            plan.target.cgroup
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(execute(&plan, output))
}

async fn execute(plan: &NetDropPlan, output: OutputFormat) -> anyhow::Result<ExitCode> {
    // Signals first: a Ctrl-C during set-up must still reach the clean-up below.
    let mut signals = StopSignals::install().context("installing signal handlers")?;
    let _ = sys::raise_memlock_rlimit();
    let mut fault = LoadedFault::load()?;
    let started = tokio::time::Instant::now();
    let deadline_ns = sys::monotonic_deadline_ns(plan.duration);
    fault.configure(FaultConfig { deadline_ns, threshold: plan.threshold })?;
    tracing::info!("fault armed: kernel deadline CLOCK_MONOTONIC ns={deadline_ns}");
    for program in &plan.programs {
        fault.attach_cgroup_skb(program.program, program.attach_type(), &plan.target.dir)?;
    }
    tracing::info!(target = %plan.target.cgroup, "attached {} program(s)", plan.programs.len());

    let directions: Vec<Direction> = plan.programs.iter().map(|p| p.direction).collect();
    let progress = Progress::on_stderr("net drop", "dropped");
    let stopped = run::supervise(&fault, &directions, started + plan.duration, &mut signals, Some(progress)).await;
    let elapsed = started.elapsed();

    fault.disarm()?;
    let counters = run::read_counters(&fault, &directions)?;
    drop(fault); // detaches every program

    let report = FaultReport {
        fault: plan.fault,
        target: &plan.target,
        percent: plan.percent,
        requested: plan.duration,
        elapsed,
        stopped,
        counters,
    };
    print!("{}", report.render(output, "dropped"));
    if output == OutputFormat::Json {
        println!();
    }
    Ok(ExitCode::from(stopped.exit_code()))
}

fn print_plan(plan: &NetDropPlan, output: OutputFormat) {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(plan).expect("plan serializes")),
        OutputFormat::Text => {
            println!(
                "plan: {} {} of {} packets of {} for {}",
                plan.fault,
                plan.percent,
                match plan.direction {
                    DirectionChoice::Both => "all",
                    DirectionChoice::Egress => "outgoing",
                    DirectionChoice::Ingress => "incoming",
                },
                plan.target.describe(),
                humantime::format_duration(plan.duration),
            );
            for program in &plan.programs {
                println!("  attach {} ({}) to {}", program.program, program.hook, program.attach_to);
            }
            println!("  map FAULT_CONFIG[0] = {{ threshold: {}, deadline: now + {} }}", plan.threshold, humantime::format_duration(plan.duration));
            println!("dry run: nothing attached");
        }
    }
}
