//! `cargo xtask bench limit` (VM tier: the host's controllers are bound to cgroup v1): the same
//! aim, a target that gets about a quarter of a CPU, reached two ways side by side.
//! - chaos: `chaos limit cpu --to 25%` on the target (its cpu.max);
//! - the anchors' way (Chaos Mesh's StressChaos, Litmus, chaosd): stress-ng CPU workers started
//!   in the target's cgroup, as many as it takes for the target's own busy loop to get about a
//!   quarter of a CPU (found by a calibration before the rounds).
//!
//! The target runs a busy loop, an untargeted neighbour (another cgroup, its parent delegating
//! the cpu controller as the target's does) another. Per variant: the target's CPU share each
//! second (its loop's threads' run time, /proc/PID/task/*/schedstat), how steady it is, the
//! CPU the tool itself burned (chaos and its guard; the stress-ng workers), and the neighbour's
//! lot against no fault: the CPU share the guest's scheduler gave it, and its throughput (loop
//! iterations a second), which also moves with the host's own load (the guest's vCPUs are
//! threads of a shared host), so both are shown.
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chaos_tests::{
    chaos::Chaos,
    controllers::Delegated,
    workload::{command_in, workload_bin},
};

use super::common::{load_average, machine_in, median};

const WINDOW: Duration = Duration::from_secs(6);
const ROUNDS: usize = 4;
/// The stress-ng worker counts the calibration tries.
const WORKERS: [u32; 6] = [1, 2, 3, 4, 6, 8];

/// A process killed (and reaped) on Drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ns on CPU of every thread of `pid` so far.
fn run_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The processes of a cgroup (its cgroup.procs).
fn procs(dir: &std::path::Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect()
}

/// A busy loop whose per-second iteration counts are collected as it prints them.
struct Loop {
    process: Running,
    ops: Arc<Mutex<Vec<u64>>>,
}

impl Loop {
    fn start(cgroup: &chaos_tests::cgroup::TestCgroup) -> anyhow::Result<Self> {
        let mut child = command_in(workload_bin(), Some(cgroup), None)
            .args(["burn"])
            .stdout(Stdio::piped())
            .spawn()
            .context("start the busy loop")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let ops = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&ops);
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(n) = serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v["ops"].as_u64()) {
                    sink.lock().expect("lock").push(n);
                }
            }
        });
        Ok(Self { process: Running(child), ops })
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    fn reported(&self) -> usize {
        self.ops.lock().expect("lock").len()
    }

    /// The per-second counts reported after the first `from`.
    fn since(&self, from: usize) -> Vec<u64> {
        self.ops.lock().expect("lock")[from..].to_vec()
    }
}

/// One variant's window.
#[derive(Default)]
struct Window {
    /// The target loop's CPU share, each second.
    shares: Vec<f64>,
    /// The neighbour's iterations a second (median of the window).
    neighbour_ops: f64,
    /// The neighbour loop's CPU share over the window.
    neighbour_share: f64,
    /// CPUs the tool burned on average (chaos and its guard, or the stress-ng workers).
    tool_cpus: f64,
}

/// Measures one window: `tool` lists the tool's processes at the end (their CPU is summed).
fn window(target: &Loop, neighbour: &Loop, tool: &dyn Fn() -> Vec<u32>) -> anyhow::Result<Window> {
    let tool_before: u64 = tool().iter().map(|&p| run_ns(p)).sum();
    let (neighbour_before, started) = (run_ns(neighbour.pid()), Instant::now());
    let from = neighbour.reported();
    let mut shares = Vec::new();
    let mut last = run_ns(target.pid());
    for _ in 0..WINDOW.as_secs() {
        let tick = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        let now = run_ns(target.pid());
        shares.push((now - last) as f64 / tick.elapsed().as_nanos() as f64);
        last = now;
    }
    let seconds = started.elapsed().as_secs_f64();
    let neighbour_share = (run_ns(neighbour.pid()) - neighbour_before) as f64 / 1e9 / seconds;
    let tool_cpus = tool().iter().map(|&p| run_ns(p)).sum::<u64>().saturating_sub(tool_before) as f64 / 1e9 / seconds;
    let ops: Vec<f64> = neighbour.since(from).into_iter().map(|n| n as f64).collect();
    if ops.is_empty() {
        bail!("the neighbour's loop reported nothing in {seconds:.1} s");
    }
    Ok(Window { shares, neighbour_ops: median(&ops), neighbour_share, tool_cpus })
}

/// stress-ng with `workers` CPU stressors in the target cgroup, as StressChaos starts it.
fn stress_ng(target: &chaos_tests::cgroup::TestCgroup, workers: u32) -> anyhow::Result<Running> {
    let child = command_in("stress-ng", Some(target), None)
        .args(["--cpu", &workers.to_string(), "--timeout", "10m", "--quiet"])
        .stdout(Stdio::null())
        .spawn()
        .context("start stress-ng (`cargo xtask setup` installs it)")?;
    // Its workers fork from it: give them a moment to start spinning.
    std::thread::sleep(Duration::from_secs(1));
    Ok(Running(child))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn stdev(values: &[f64]) -> f64 {
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / values.len().max(1) as f64).sqrt()
}

/// The host's load average, which the guest cannot see: the job passes it in.
fn host_load() -> String {
    std::env::var("CHAOS_HOST_LOAD").unwrap_or_else(|_| "unknown".into())
}

/// The guard chaos started for its limit.
fn guard_of(chaos: &Chaos) -> Option<u32> {
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", chaos.pid())).ok()?;
    children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()).find(|pid| {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("__guard"))
    })
}

pub(super) fn limit_bench() -> anyhow::Result<String> {
    let load_before = load_average();
    let target_cg = Delegated::new(&["cpu"]).map_err(anyhow::Error::msg)?;
    let neighbour_cg = Delegated::new(&["cpu"]).map_err(anyhow::Error::msg)?;
    let target = Loop::start(target_cg.target())?;
    let neighbour = Loop::start(neighbour_cg.target())?;
    std::thread::sleep(Duration::from_secs(2));

    // Calibration: the stress-ng worker count that leaves the target's loop closest to a quarter.
    let mut calibration = Vec::new();
    for workers in WORKERS {
        let _stress = stress_ng(target_cg.target(), workers)?;
        let before = run_ns(target.pid());
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let share = (run_ns(target.pid()) - before) as f64 / start.elapsed().as_nanos() as f64;
        eprintln!("bench limit: calibration: stress-ng --cpu {workers} leaves the target {share:.3} CPU");
        calibration.push((workers, share));
    }
    let (workers, _) =
        *calibration.iter().min_by(|a, b| (a.1 - 0.25).abs().total_cmp(&(b.1 - 0.25).abs())).context("calibration")?;

    let (mut none, mut chaos, mut stress) = (Vec::new(), Vec::new(), Vec::new());
    let stress_dir = target_cg.target().dir().to_path_buf();
    for round in 1..=ROUNDS {
        eprintln!("bench limit: round {round}/{ROUNDS}");
        none.push(window(&target, &neighbour, &Vec::<u32>::new)?);
        {
            let path = target_cg.target().path();
            let mut run = Chaos::start(&["limit", "cpu", "--cgroup", path, "--to", "25%", "--for", "5m", "-v"]);
            run.wait_until_armed(Duration::from_secs(120));
            std::thread::sleep(Duration::from_secs(1));
            let processes: Vec<u32> = std::iter::once(run.pid() as u32).chain(guard_of(&run)).collect();
            chaos.push(window(&target, &neighbour, &|| processes.clone())?);
            run.signal(libc::SIGINT);
            let (status, _, stderr) = run.wait(Duration::from_secs(60));
            if status.code() != Some(130) {
                bail!("chaos limit cpu did not end as stopped ({status}): {stderr}");
            }
        }
        {
            let _stress = stress_ng(target_cg.target(), workers)?;
            let loop_pid = target.pid();
            let tool = || procs(&stress_dir).into_iter().filter(|&p| p != loop_pid).collect::<Vec<u32>>();
            stress.push(window(&target, &neighbour, &tool)?);
        }
    }
    drop((target, neighbour));

    let all = |windows: &[Window]| windows.iter().flat_map(|w| w.shares.iter().copied()).collect::<Vec<f64>>();
    let per = |windows: &[Window], pick: fn(&Window) -> f64| median(&windows.iter().map(pick).collect::<Vec<f64>>());
    let neighbour_none = per(&none, |w| w.neighbour_ops);
    let ratio = |windows: &[Window], pick: fn(&Window) -> f64| {
        let ratios: Vec<f64> = windows.iter().zip(&none).map(|(w, n)| pick(w) / pick(n)).collect();
        let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        format!("{:.3}x ({lo:.3}-{hi:.3})", median(&ratios))
    };
    let share = |windows: &[Window]| {
        let shares = all(windows);
        let (lo, hi) = shares.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        format!("{:.3} CPU (each second {lo:.3}-{hi:.3}, stdev {:.3})", mean(&shares), stdev(&shares))
    };
    let mut out = String::new();
    let _ = writeln!(out, "## Resource limits against stress-ng (`cargo xtask bench limit`, VM tier)\n");
    let _ = writeln!(
        out,
        "{}\n",
        machine_in(
            "VM tier: Debian 6.12 under QEMU with TCG, vCPUs on two host threads; ratios are valid within this run"
        )
    );
    let _ = writeln!(
        out,
        "The aim: a target whose busy loop gets about a quarter of a CPU. chaos: `chaos limit cpu --to 25%` (its \
         cpu.max). The anchors' way (Chaos Mesh StressChaos, Litmus, chaosd): stress-ng CPU workers in the target's \
         cgroup, `stress-ng --cpu {workers}` (the count whose share came closest to a quarter in a calibration: {}). \
         Target and untargeted neighbour each run one busy loop, each in a cgroup whose parent delegates the cpu \
         controller (as kubelet's pods are); 2 vCPUs. {ROUNDS} rounds of {} s per variant, interleaved; the target's \
         share from its loop's run time each second (/proc/PID/task/*/schedstat); the neighbour's throughput in \
         loop iterations a second, median per window, as a ratio to no fault in the same round.\n",
        calibration.iter().map(|(w, s)| format!("{w}: {s:.2}")).collect::<Vec<_>>().join(", "),
        WINDOW.as_secs()
    );
    let _ = writeln!(
        out,
        "| measurement | chaos limit cpu | stress-ng in the target | no fault | goal |\n|---|---|---|---|---|"
    );
    let _ = writeln!(
        out,
        "| target's CPU share | {} | {} | {} | about 0.25 |",
        share(&chaos),
        share(&stress),
        share(&none)
    );
    let _ = writeln!(
        out,
        "| CPU the tool burns | **{:.3} CPU** (chaos + its guard) | {:.3} CPU (its workers) | - | about 0 |",
        per(&chaos, |w| w.tool_cpus),
        per(&stress, |w| w.tool_cpus)
    );
    let _ = writeln!(
        out,
        "| untargeted neighbour's CPU share vs no fault | **{}** | {} | 1 ({:.3} CPU) | >= 0.98x with chaos |",
        ratio(&chaos, |w| w.neighbour_share),
        ratio(&stress, |w| w.neighbour_share),
        per(&none, |w| w.neighbour_share)
    );
    let _ = writeln!(
        out,
        "| untargeted neighbour's throughput vs no fault | {} | {} | 1 ({neighbour_none:.0} iterations/s) | >= 0.98x with chaos |",
        ratio(&chaos, |w| w.neighbour_ops),
        ratio(&stress, |w| w.neighbour_ops)
    );
    let _ = writeln!(
        out,
        "\nchaos holds the target through the kernel's own bandwidth control: nothing else runs for it, and its \
         share holds each second. stress-ng reaches a share only by competing for the CPU: its workers burn what \
         they take, and the target's share moves with that competition. Where the neighbour's cgroup has its own \
         cpu weight (as here, and as pods have), the guest's scheduler keeps the neighbour's share either way, and \
         the stressors' CPU comes out of the machine's spare capacity: on a node without spare CPU it would come \
         out of the neighbours. The CPU chaos burns is that of a debug build under emulation (each instruction \
         costs tens of times its native cost): a sample of the target's files each second and its guard's look \
         at chaos every 50 ms. The neighbour's throughput also moves with the host's load (the vCPUs are threads \
         of a shared host: load average {} on the host when this section was written, against 2 cores), hence its \
         wide range; its CPU share is the guest scheduler's own figure. Guest load average before: {load_before}; \
         after: {}.",
        host_load(),
        load_average()
    );
    Ok(out)
}
