//! `cargo xtask bench scale`: what many faults at once cost the tasks none of them targets. N
//! syscall delays (on `read`, each for its own cgroup) armed on the host, where they are raw
//! `sys_enter` programs, one per fault, every one of them run by every syscall of every task;
//! an untargeted getpid() loop measured with 1, 10 and 50 of them against nothing armed.
use std::{fmt::Write as _, time::Duration};

use chaos_tests::{cgroup::TestCgroup, chaos::Chaos, workload::workload_json};

use super::{machine, median};

const GETPIDS: u64 = 2_000_000;
const ROUNDS: usize = 3;
const COUNTS: [usize; 3] = [1, 10, 50];

/// ns per getpid() of a loop in `cgroup`.
fn getpid_ns(cgroup: &TestCgroup) -> f64 {
    let json = workload_json(&["getpid-loop", "--count", &GETPIDS.to_string()], Some(cgroup), None);
    json["elapsed_ns"].as_f64().unwrap_or(0.0) / GETPIDS as f64
}

/// `targets.len()` delays, one per cgroup, started together and all armed on return.
fn arm_all(targets: &[TestCgroup]) -> Vec<Chaos> {
    let mut armed: Vec<Chaos> = targets
        .iter()
        .map(|cgroup| {
            Chaos::start(&[
                "syscall",
                "delay",
                "--cgroup",
                cgroup.path(),
                "--syscall",
                "read",
                "--by",
                "1ms",
                "--hook",
                "sys-enter",
                "--for",
                "30m",
                "-v",
            ])
        })
        .collect();
    for chaos in &mut armed {
        chaos.wait_until_armed(Duration::from_secs(180));
    }
    armed
}

/// Stops them all at once (SIGINT: each detaches and exits), then waits for each.
fn stop_all(armed: Vec<Chaos>) {
    for chaos in &armed {
        chaos.signal(libc::SIGINT);
    }
    for chaos in armed {
        drop(chaos.wait(Duration::from_secs(60)));
    }
}

pub fn scale_bench() -> anyhow::Result<String> {
    let other = TestCgroup::new();
    let targets: Vec<TestCgroup> = (0..COUNTS[COUNTS.len() - 1]).map(|_| TestCgroup::new()).collect();
    let mut bare_ns = Vec::new();
    let mut armed_ns: [Vec<f64>; 3] = Default::default();
    for round in 1..=ROUNDS {
        eprintln!("bench scale: round {round}/{ROUNDS}");
        for (i, &count) in COUNTS.iter().enumerate() {
            let before = getpid_ns(&other);
            let armed = arm_all(&targets[..count]);
            armed_ns[i].push(getpid_ns(&other));
            stop_all(armed);
            bare_ns.push((before + getpid_ns(&other)) / 2.0);
        }
    }
    let bare = median(&bare_ns);
    let with: Vec<f64> = armed_ns.iter().map(|v| median(v)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "## Many faults at once (`cargo xtask bench scale`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "N syscall delays on `read`, each armed for its own cgroup by its own chaos (`--hook sys-enter`: the raw \
         tracepoint, all this host has), and a raw getpid() loop ({GETPIDS} calls) in a cgroup none of them targets; \
         {ROUNDS} rounds, each armed run between two bare ones, medians.\n"
    );
    let _ = writeln!(
        out,
        "| faults armed | ns per untargeted getpid() | added per call | vs 1 fault | goal |\n|---|---|---|---|---|"
    );
    let _ = writeln!(out, "| 0 | {bare:.0} | | | |");
    for (i, &count) in COUNTS.iter().enumerate() {
        let goal = if count == 50 { "within 1.10x of 1 fault" } else { "" };
        let verdict = if count == 50 && with[i] / with[0] > 1.10 { " (missed)" } else { "" };
        let _ = writeln!(
            out,
            "| {count} | {:.0} | {:.0} ns | {:.2}x{verdict} | {goal} |",
            with[i],
            with[i] - bare,
            with[i] / with[0]
        );
    }
    let per_fault = (with[2] - with[0]) / (COUNTS[2] - COUNTS[0]) as f64;
    let _ = writeln!(
        out,
        "\nEach fault is its own loaded object and its own raw `sys_enter` program, and the tracepoint runs every \
         attached program in turn for every syscall of every task: the cost grows by about {per_fault:.0} ns per \
         syscall per armed fault. The redesign that makes it flat (not built): one shared program per global hook \
         (raw `sys_enter`, each LSM hook, fentry on an entry function) loaded once per machine, and a hash map from \
         cgroup id to the fault's slot (config, counters, schedule state, syscall bitmap, its own kernel deadline); \
         the program looks the task's cgroup up once (its ancestors' ids for faults on a parent cgroup: one lookup per \
         level, bounded) and passes when there is no entry, so an untargeted task pays one helper call and one hash \
         lookup whatever N is. Faults are added and removed by map writes; the deadline stays per fault in its slot, \
         checked by the same gate. Where the kernel attaches per cgroup (the cgroup hooks; lsm_cgroup for the LSM \
         faults on 6.0+ kernels, the VM section below), N faults on N cgroups do not stack at all: an untargeted \
         cgroup runs none of them. Where the kernel has BPF trampolines, a syscall delay is an fentry program on its one syscall's entry \
         function (`bench delay`, VM section): N of them on `read` cost other syscalls nothing, but every read() on \
         the machine runs all N, so the shared program is the answer there too."
    );
    Ok(out)
}
