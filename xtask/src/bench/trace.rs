//! `cargo xtask bench trace`: what `--trace-injections` costs, on the floor bench's connect4
//! hook (the cgroup socket hook of `syscall fail`), in the workload's own cgroup. Off, tracing
//! is one flag test after "fires", so at 0 % (nothing fires) it must cost nothing beyond the
//! program itself; at 100 % every call pays the flag test and, traced, the kernel's rate-limit
//! check, and each recorded call a ring-buffer record.
use std::{fmt::Write as _, time::Duration};

use chaos_tests::chaos::Chaos;

use super::{
    common::{BpfStats, load_average, machine, median, median_and_range, rotated},
    floor::{CONNECTS, Hook, Setup, empty::Empty, floor_object, measure, program_ns_per_run},
};
use crate::build;

const ROUNDS: usize = 3;

/// One variant: its label, and chaos's `--percent` and extra arguments (no chaos: None).
struct Variant {
    label: &'static str,
    chaos: Option<(&'static str, &'static [&'static str])>,
}

/// The variants, in the order of the table. The second is the empty program (no chaos).
const VARIANTS: [Variant; 7] = [
    Variant { label: "nothing attached", chaos: None },
    Variant { label: "empty program", chaos: None },
    Variant { label: "chaos 0 %, trace off", chaos: Some(("0", &[])) },
    Variant { label: "chaos 0 %, --trace-injections", chaos: Some(("0", &["--trace-injections"])) },
    Variant { label: "chaos 100 %, trace off", chaos: Some(("100", &[])) },
    Variant {
        label: "chaos 100 %, --trace-injections (100/s recorded)",
        chaos: Some(("100", &["--trace-injections"])),
    },
    Variant {
        label: "chaos 100 %, --trace-injections --trace-rate 10000",
        chaos: Some(("100", &["--trace-injections", "--trace-rate", "10000"])),
    },
];

/// CPU ns per call of the variant, and (`program_time`) ns per run inside chaos's program.
fn measure_variant(index: usize, setup: &Setup, program_time: bool) -> anyhow::Result<(f64, Option<f64>)> {
    let Some((percent, extra)) = VARIANTS[index].chaos else {
        let empty = if index == 1 { Some(Empty::attach(Hook::Connect4, setup)?) } else { None };
        let ns = measure(Hook::Connect4, setup)?;
        // The empty program is this process's own.
        let inside = (program_time && empty.is_some())
            .then(|| program_ns_per_run(std::process::id(), "floor_connect4"))
            .transpose()?;
        return Ok((ns, inside));
    };
    let mut args: Vec<String> = Hook::Connect4
        .chaos_args(setup.target.path())
        .into_iter()
        .map(|a| if a == "0" { percent.to_owned() } else { a })
        .collect();
    args.extend(extra.iter().map(|&a| a.to_owned()));
    let mut chaos = Chaos::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    chaos.wait_until_armed(Duration::from_secs(120));
    let ns = measure(Hook::Connect4, setup)?;
    let inside = program_time.then(|| program_ns_per_run(chaos.pid() as u32, "sys_connect4")).transpose()?;
    Ok((ns, inside))
}

pub(super) fn trace_bench(binaries: &build::Binaries) -> anyhow::Result<String> {
    let setup = Setup::new(floor_object(binaries)?);
    let load = load_average();
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..ROUNDS {
        eprintln!("bench trace: round {}/{ROUNDS}", round + 1);
        for i in rotated(round, VARIANTS.len()) {
            ns[i].push(measure_variant(i, &setup, false)?.0);
        }
    }
    // Apart from the rounds: the run-time statistics slow every run a little.
    let inside: Vec<Option<f64>> = {
        let _stats = BpfStats::enable()?;
        (0..VARIANTS.len()).map(|i| measure_variant(i, &setup, true).map(|m| m.1)).collect::<Result<_, _>>()?
    };
    let load_after = load_average();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## The cost of `--trace-injections`\n\n{}\n\nLoad average at the start: {load}; at the end: {load_after}. \
         {CONNECTS} connect() calls on a UDP socket per run, in the workload's own cgroup, where chaos's \
         `sys_connect4` program runs (`syscall fail --syscall connect --backend cgroup`); {ROUNDS} rounds, the \
         variants in a rotating order. CPU ns per call is the workload's own user + system time (wait4); added = \
         variant less nothing within the round; median (range) over rounds.\n",
        machine()
    );
    let _ = writeln!(
        out,
        "| variant | CPU ns per connect() | added ns | ns inside the program per run |\n|---|---|---|---|"
    );
    let added = |i: usize| -> Vec<f64> { ns[i].iter().zip(&ns[0]).map(|(v, n)| v - n).collect() };
    for (i, variant) in VARIANTS.iter().enumerate() {
        let time = inside[i].map_or_else(|| "-".to_owned(), |t| format!("{t:.1}"));
        let _ =
            writeln!(out, "| {} | {:.0} | {} | {time} |", variant.label, median(&ns[i]), median_and_range(&added(i)));
    }
    let _ = writeln!(
        out,
        "\nHow to read it: tracing tests its flag only after the gate said \"fires\", so at 0 % (nothing fires) \
         `--trace-injections` runs the same instructions as trace off: a gap between the two 0 % rows is measurement (one run \
         each, always in this order), not code. At 100 % \
         every call fires: traced, each one also pays the kernel's rate-limit check (the clock, a map lookup, an \
         atomic add), and the recorded ones a ring-buffer record; the default 100 a second makes that check \
         nearly all of the cost. The time inside the program (kernel.bpf_stats_enabled, measured apart) is the \
         figure to read; CPU per call carries the spread of a shared machine."
    );
    Ok(out)
}
