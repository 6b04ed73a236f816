//! `cargo xtask bench delay`: what a delayed call costs when it holds one thread (chaos's
//! default, `--scope thread`), the whole process (`--scope process`), or when strace holds it
//! (`strace -f -e inject=SYSCALL:delay_enter=US -p PID`, which ChaosBlade's delay runs), on the
//! same multi-threaded target, variants interleaved round by round:
//!
//! - the target's own threads whose calls are not delayed: getpid() loops beside a worker whose
//!   getppid() calls are delayed, their throughput against nothing attached;
//! - a delayed call's latency beyond the asked delay, p50 and p99;
//! - CPU per delayed call (the target's, and the controller's: chaos and its holder, or strace);
//! - how long the holder takes to seize a target of 1, 100 and 1000 threads.
//!
//! The same function runs on the host (raw sys_enter) and in the 6.12 VM (fentry on
//! `__x64_sys_getppid`, so the getpid() loops run no program at all).
use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use chaos_tests::{
    cgroup::TestCgroup,
    chaos::Chaos,
    workload::{command_in, workload_bin},
};

use super::common::{Ratios, machine, machine_in, median, percentile};

const ROUNDS: usize = 5;
/// The delay asked for, and the worker's pause between its calls (as long: per process, the
/// target stands still half the time).
const DELAY_MS: u64 = 5;
const CALLS: u64 = 100;

/// Who holds the delayed calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    Nothing,
    /// chaos per thread at `--percent 0`: the hook and the seized threads, nothing held.
    Armed,
    Thread,
    Process,
    Strace,
}

impl Holder {
    const fn name(self) -> &'static str {
        match self {
            Self::Nothing => "nothing attached",
            Self::Armed => "chaos, per thread, --percent 0 (armed, nothing held)",
            Self::Thread => "chaos, per thread",
            Self::Process => "chaos, whole process (--scope process)",
            Self::Strace => "strace delay_enter",
        }
    }
}

/// A `chaos-workload threads --wait-line` in the target cgroup.
struct Target {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Target {
    fn start(cgroup: &TestCgroup, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = command_in(workload_bin(), Some(cgroup), None)
            .arg("threads")
            .args(args)
            .arg("--wait-line")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("start the workload")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the workload said {line:?}");
        }
        Ok(Self { child, stdin, stdout })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn run(mut self) -> anyhow::Result<serde_json::Value> {
        writeln!(self.stdin.take().context("stdin")?, "go")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let _ = self.child.wait();
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What holds the calls of one measurement; its CPU time is read before it goes.
enum Attached {
    None,
    Chaos(Chaos),
    Strace(Child),
}

impl Attached {
    fn attach(holder: Holder, cgroup: &TestCgroup, target: &Target) -> anyhow::Result<Self> {
        let by = format!("{DELAY_MS}ms");
        Ok(match holder {
            Holder::Nothing => Self::None,
            Holder::Armed | Holder::Thread | Holder::Process => {
                let scope = if holder == Holder::Process { "process" } else { "thread" };
                let percent = if holder == Holder::Armed { "0" } else { "100" };
                let mut chaos = Chaos::start(&[
                    "syscall",
                    "delay",
                    "--cgroup",
                    cgroup.path(),
                    "--syscall",
                    "getppid",
                    "--by",
                    &by,
                    "--scope",
                    scope,
                    "--percent",
                    percent,
                    "--for",
                    "30m",
                    "--output",
                    "json",
                    "-v",
                ]);
                chaos.wait_until_armed(Duration::from_secs(120));
                Self::Chaos(chaos)
            }
            Holder::Strace => {
                let inject = format!("inject=getppid:delay_enter={}", DELAY_MS * 1000);
                let strace = Command::new("strace")
                    .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=getppid", "-e", &inject, "-p"])
                    .arg(target.pid().to_string())
                    .spawn()
                    .context("start strace (`cargo xtask setup` installs it)")?;
                let since = Instant::now();
                while !traced_by(target.pid(), strace.id() as i32) {
                    if since.elapsed() > Duration::from_secs(60) {
                        bail!("strace did not attach to every thread in 60 s");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Self::Strace(strace)
            }
        })
    }

    /// CPU time of what holds the calls: chaos and its children (the holder, the guard), or
    /// strace.
    fn cpu_ns(&self) -> u64 {
        match self {
            Self::None => 0,
            Self::Chaos(chaos) => {
                let pid = chaos.pid();
                cpu_ns(pid) + children_of(pid).into_iter().map(cpu_ns).sum::<u64>()
            }
            Self::Strace(strace) => cpu_ns(strace.id() as i32),
        }
    }

    fn detach(self) {
        match self {
            Self::None => {}
            Self::Chaos(chaos) => drop(chaos.stop_json()),
            Self::Strace(mut strace) => {
                // SAFETY: SIGINT to our own child: strace detaches and exits.
                unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
                let _ = strace.wait();
            }
        }
    }
}

/// CPU time of process `pid` so far, in ns: the sum over its threads of the scheduler's own
/// count (/proc/PID/task/TID/schedstat), not the 10 ms ticks of /proc/PID/stat.
fn cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Whether every thread of `pid` is traced by `tracer`.
fn traced_by(pid: i32, tracer: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("status")).is_ok_and(|status| {
            status.lines().any(|l| l.strip_prefix("TracerPid:").is_some_and(|t| t.trim() == tracer.to_string()))
        })
    })
}

/// The processes whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).ok().is_some_and(|stat| {
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// One measurement: the target's report, and the CPU the holder of the calls used.
fn measure(holder: Holder, cgroup: &TestCgroup, args: &[&str]) -> anyhow::Result<(serde_json::Value, u64)> {
    let target = Target::start(cgroup, args)?;
    let attached = Attached::attach(holder, cgroup, &target)?;
    let before = attached.cpu_ns();
    let report = target.run()?;
    let used = attached.cpu_ns().saturating_sub(before);
    attached.detach();
    Ok((report, used))
}

fn numbers(report: &serde_json::Value, key: &str) -> Vec<f64> {
    report[key][0].as_array().map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect()).unwrap_or_default()
}

/// The section, for the host or the 6.12 VM (`where_`).
pub(super) fn thread_delay_bench(where_: &str) -> anyhow::Result<String> {
    let cgroup = TestCgroup::new();
    let holders = [Holder::Nothing, Holder::Armed, Holder::Thread, Holder::Process, Holder::Strace];
    let (calls, delay) = (CALLS.to_string(), DELAY_MS.to_string());
    // The untargeted threads: one getpid() loop beside a worker that calls getppid() every
    // DELAY_MS.
    let spin_args = ["--call", "getppid", "--count", &calls, "--gap-ms", &delay, "--spin-threads", "1"];
    // The delayed calls: back to back, for their latency and their CPU.
    let call_args = ["--call", "getppid", "--count", &calls];
    let mut throughput: Vec<Ratios> = (0..holders.len()).map(|_| Ratios::default()).collect();
    // chaos's rows against chaos armed at 0 %: what holding costs the other thread, the hook's
    // own cost on every syscall left out.
    let mut holding: Vec<Ratios> = (0..holders.len()).map(|_| Ratios::default()).collect();
    let mut spins_per_s: Vec<Vec<f64>> = vec![Vec::new(); holders.len()];
    let mut added: Vec<Vec<f64>> = vec![Vec::new(); holders.len()];
    let mut cpu_per_call: Vec<Vec<f64>> = vec![Vec::new(); holders.len()];
    for round in 1..=ROUNDS {
        eprintln!("bench delay ({where_}, per thread): round {round}/{ROUNDS}");
        let (mut bare_rate, mut armed_rate) = (0.0, 0.0);
        let mut bare_cpu = 0.0;
        for (i, &holder) in holders.iter().enumerate() {
            let (report, _) = measure(holder, &cgroup, &spin_args)?;
            // Calls per second of the time the thread was not waiting for a CPU: what other
            // processes on this shared machine take is left out, what the target's own stops
            // take is not.
            let own_ns = report["spin_ns"].as_f64().unwrap_or(1.0) - report["spin_wait_ns"].as_f64().unwrap_or(0.0);
            let rate = report["spins"].as_f64().unwrap_or(0.0) / (own_ns.max(1.0) / 1e9);
            match holder {
                Holder::Nothing => bare_rate = rate,
                Holder::Armed => armed_rate = rate,
                Holder::Thread | Holder::Process => holding[i].push(rate, armed_rate),
                Holder::Strace => {}
            }
            throughput[i].push(rate, bare_rate);
            spins_per_s[i].push(rate);
            let (report, holder_cpu) = measure(holder, &cgroup, &call_args)?;
            let latencies_ms: Vec<f64> = numbers(&report, "calls_ns").iter().map(|ns| ns / 1e6).collect();
            let cpu = report["cpu_ns"].as_f64().unwrap_or(0.0) + holder_cpu as f64;
            match holder {
                Holder::Nothing => bare_cpu = cpu,
                Holder::Armed => {}
                Holder::Thread | Holder::Process | Holder::Strace => {
                    added[i].extend(latencies_ms.iter().map(|ms| ms - DELAY_MS as f64));
                    cpu_per_call[i].push((cpu - bare_cpu) / CALLS as f64);
                }
            }
        }
    }
    let seize = seize_times(&cgroup)?;

    let mut out = String::new();
    let hook = if where_ == "host" { "the raw sys_enter tracepoint" } else { "fentry on __x64_sys_getppid" };
    let _ = writeln!(
        out,
        "## Syscall delay per thread against per process and strace ({where_}, `cargo xtask bench delay`)\n"
    );
    let _ = writeln!(out, "{}\n", if where_ == "host" { machine() } else { machine_in("6.12 VM guest under TCG") });
    let _ = writeln!(
        out,
        "One target process: a worker thread calls getppid() {CALLS} times, each delayed {DELAY_MS} ms, with {DELAY_MS} ms \
         between calls, beside a thread looping on raw getpid() (not delayed), whose throughput counts the time it was \
         not waiting for a CPU (its scheduler statistics: other processes on the machine are left out, the target's \
         stops are not). chaos's program is on {hook}. strace runs as \
         ChaosBlade runs it: `strace -f -e trace=getppid -e inject=getppid:delay_enter={} -p PID`. {ROUNDS} rounds, \
         variants interleaved; medians (range).\n",
        DELAY_MS * 1000
    );
    let _ = writeln!(
        out,
        "| who holds the delayed call | the other thread's getpid() throughput vs nothing attached | vs chaos armed, nothing held (goal >= 0.97x) | added latency beyond {DELAY_MS} ms, p50 / p99 | CPU per delayed call (target + holder) |\n|---|---|---|---|---|"
    );
    for (i, &holder) in holders.iter().enumerate().skip(1) {
        let against_armed =
            if matches!(holder, Holder::Thread | Holder::Process) { holding[i].summary() } else { "-".into() };
        let (latency, cpu) = if holder == Holder::Armed {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.3} / {:.3} ms", percentile(&added[i], 50.0), percentile(&added[i], 99.0)),
                format!("{:.1} us", median(&cpu_per_call[i]) / 1e3),
            )
        };
        let _ = writeln!(
            out,
            "| {} | **{}** ({:.0} vs {:.0} calls/s) | **{against_armed}** | {latency} | {cpu} |",
            holder.name(),
            throughput[i].summary(),
            median(&spins_per_s[i]),
            median(&spins_per_s[0]),
        );
    }
    let _ = writeln!(out, "\n| threads in the target | the holder seized them in |\n|---|---|");
    for (threads, ms) in seize {
        let _ = writeln!(out, "| {threads} | {ms:.1} ms |");
    }
    let _ = writeln!(
        out,
        "\nPer thread, the delayed call's thread alone stops: the other thread runs on at the speed it has with chaos \
         armed and nothing held; against nothing attached it pays what the hook costs every syscall on this kernel \
         ({}). Per process, it stands still while each call is held (here half the time). strace stops every syscall of \
         every thread twice (entry and exit) to find the ones to delay. The added latency is what a call takes beyond \
         the asked delay: per thread, the call's own time (microseconds for getppid) plus the holder's wake-up and the \
         thread's. CPU per call: the debug builds of chaos the benchmarks run; strace is an optimised C program.{}",
        if where_ == "host" {
            "the raw tracepoint puts every syscall on the kernel's slow path while anything is attached there"
        } else {
            "nothing: fentry on getppid's entry function runs for getppid only"
        },
        if where_ == "host" {
            ""
        } else {
            " Under TCG both vCPUs run on one host thread, so the CPU that chaos, its holder and the worker use comes out \
             of the spinner's share even while it runs: throughput ratios there measure that CPU more than the stops."
        }
    );
    Ok(out)
}

/// How long the holder took to seize a target of 1, 100 and 1000 threads (chaos -v says).
fn seize_times(cgroup: &TestCgroup) -> anyhow::Result<Vec<(u64, f64)>> {
    let mut times = Vec::new();
    for threads in [1u64, 100, 1000] {
        let mut ms = Vec::new();
        for _ in 0..3 {
            let idle = (threads - 1).to_string();
            let target = Target::start(cgroup, &["--call", "getppid", "--count", "1", "--idle-threads", &idle])?;
            let chaos = Attached::attach(Holder::Thread, cgroup, &target)?;
            let Attached::Chaos(chaos) = chaos else { unreachable!("chaos attached") };
            let said = chaos.stderr_so_far();
            let line = said.lines().find(|l| l.contains("seized")).context("chaos -v did not say what it seized")?;
            let seized: u64 =
                line.split("seized ").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0);
            if seized != threads {
                bail!("the holder seized {seized} threads of a {threads}-thread target: {line}");
            }
            let took = line.rsplit(" in ").next().and_then(|r| r.trim_end_matches(" ms").trim().parse::<f64>().ok());
            ms.push(took.context("no seize time")?);
            drop(chaos.stop_json());
            drop(target);
        }
        times.push((threads, median(&ms)));
    }
    Ok(times)
}
