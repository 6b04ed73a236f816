//! `cargo xtask bench scale`: what many faults at once cost the tasks none of them targets. N
//! syscall delays (on `read`, each for its own cgroup) armed on the host, where they are raw
//! `sys_enter` programs; an untargeted getpid() loop measured with 1, 10 and 50 of them against
//! nothing armed, two ways: N chaos processes (each its own program on the tracepoint, every one
//! of them run by every syscall of every task), and one daemon holding all N (one shared program
//! per process, engine/dispatch.rs).
use std::{fmt::Write as _, fs, os::unix::net::UnixStream, time::Duration};

use anyhow::Context as _;
use chaos_tests::{TempDir, cgroup::TestCgroup, chaos::Chaos, timeline_so_far};

use super::common::{getpid_ns, load_average, machine, machine_in, median, status_kb};

const GETPIDS: u64 = 2_000_000;
const ROUNDS: usize = 3;
const COUNTS: [usize; 3] = [1, 10, 50];

/// How the N faults are held.
#[derive(Clone, Copy)]
enum Holder {
    /// One `chaos syscall delay` per fault.
    Processes,
    /// One `chaos daemon` running an experiment per fault.
    Daemon,
}

/// Faults armed, until dropped.
enum Armed {
    Processes(Vec<Chaos>),
    Daemon(DelayDaemon),
}

/// `targets.len()` delays, one per cgroup, started together and all armed on return.
fn arm_all(holder: Holder, targets: &[TestCgroup]) -> anyhow::Result<Armed> {
    match holder {
        Holder::Processes => Ok(Armed::Processes(arm_processes(targets))),
        Holder::Daemon => arm_in_daemon(targets),
    }
}

fn arm_processes(targets: &[TestCgroup]) -> Vec<Chaos> {
    arm_delay_processes(targets, "read", "sys-enter")
}

/// A 1 ms delay on `syscall` through `hook` for each of `targets`, one chaos each, started
/// together and all armed on return.
pub(super) fn arm_delay_processes(targets: &[TestCgroup], syscall: &str, hook: &str) -> Vec<Chaos> {
    let mut armed: Vec<Chaos> = targets
        .iter()
        .map(|cgroup| {
            Chaos::start(&[
                "syscall",
                "delay",
                "--cgroup",
                cgroup.path(),
                "--syscall",
                syscall,
                "--by",
                "1ms",
                "--hook",
                hook,
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

/// A daemon with one experiment per target (a 1 ms delay on `syscall` through the experiment's
/// `auto` hook: the host's raw sys_enter, fentry where the kernel has it), none started yet.
pub(super) struct DelayDaemon {
    pub daemon: Chaos,
    dir: TempDir,
    socket: String,
    started: usize,
}

impl DelayDaemon {
    pub(super) fn start(targets: &[TestCgroup], syscall: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new();
        let mut config = String::from(
            "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = false\n[schedule]\n\
         every = \"24h\"\n[budget]\nmax_runs_per_hour = 100000\nmax_concurrent = 1000\n",
        );
        for (n, cgroup) in targets.iter().enumerate() {
            fs::write(
                dir.path().join(format!("f{n}.toml")),
                format!(
                    "name = \"f{n}\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"30m\"\n\n[[fault]]\n\
                     kind = \"syscall delay\"\nsyscall = \"{syscall}\"\nby = \"1ms\"\n",
                    cgroup.path()
                ),
            )?;
            let _ = write!(config, "\n[[experiment]]\nfile = \"f{n}.toml\"\n");
        }
        let config_path = dir.path().join("daemon.toml");
        fs::write(&config_path, config)?;
        let socket = dir.path().join("daemon.sock");
        let mut daemon = Chaos::start(&["daemon", "--config", config_path.to_str().context("a UTF-8 path")?]);
        daemon.wait_until("the daemon's socket answers", Duration::from_secs(60), || {
            UnixStream::connect(&socket).is_ok()
        });
        let socket = socket.to_str().context("a UTF-8 path")?.to_owned();
        Ok(Self { daemon, dir, socket, started: 0 })
    }

    /// Starts the next experiments until `count` run (`chaos daemon run`), all armed on return.
    pub(super) fn run_until(&mut self, count: usize) -> anyhow::Result<()> {
        for n in self.started..count {
            let (status, stdout, stderr) =
                chaos_tests::chaos::run(&["daemon", "run", &format!("f{n}"), "--socket", &self.socket]);
            anyhow::ensure!(status.success(), "chaos daemon run f{n}: {stdout}{stderr}");
        }
        self.started = self.started.max(count);
        let timelines = self.dir.path().join("state/timelines");
        self.daemon.wait_until("every run armed", Duration::from_secs(300), || {
            let armed = fs::read_dir(&timelines)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|entry| timeline_so_far(&entry.path()).iter().any(|event| event["event"] == "arm"));
            armed.count() >= count
        });
        Ok(())
    }
}

/// [`DelayDaemon`] on `read`, every target's experiment started.
fn arm_in_daemon(targets: &[TestCgroup]) -> anyhow::Result<Armed> {
    let mut daemon = DelayDaemon::start(targets, "read")?;
    daemon.run_until(targets.len())?;
    Ok(Armed::Daemon(daemon))
}

/// Stops them all at once (SIGINT: each chaos, or the daemon with its runs, detaches and
/// exits), then waits for each.
fn stop_all(armed: Armed) {
    let chaoses = match armed {
        Armed::Processes(chaoses) => chaoses,
        Armed::Daemon(held) => vec![held.daemon],
    };
    for chaos in &chaoses {
        chaos.signal(libc::SIGINT);
    }
    for chaos in chaoses {
        drop(chaos.wait(Duration::from_secs(60)));
    }
}

/// Per count, the median ns per untargeted getpid() with that many faults armed by `holder`,
/// and the bare runs' figures on either side of each armed one.
fn measure(
    holder: Holder,
    other: &TestCgroup,
    targets: &[TestCgroup],
    bare_ns: &mut Vec<f64>,
) -> anyhow::Result<[f64; 3]> {
    let mut armed_ns: [Vec<f64>; 3] = Default::default();
    for round in 1..=ROUNDS {
        eprintln!("bench scale: round {round}/{ROUNDS}");
        for (i, &count) in COUNTS.iter().enumerate() {
            let before = getpid_ns(other, GETPIDS);
            let armed = arm_all(holder, &targets[..count])?;
            armed_ns[i].push(getpid_ns(other, GETPIDS));
            stop_all(armed);
            bare_ns.push((before + getpid_ns(other, GETPIDS)) / 2.0);
        }
    }
    Ok(armed_ns.map(|v| median(&v)))
}

fn table(out: &mut String, bare: f64, with: &[f64; 3]) {
    let _ = writeln!(
        out,
        "| faults armed | ns per untargeted getpid() | added per call | vs 1 fault | goal |\n|---|---|---|---|---|"
    );
    let _ = writeln!(out, "| 0 | {bare:.0} | | | |");
    for (i, &count) in COUNTS.iter().enumerate() {
        let goal = if count == 50 { "within 1.10x of 1 fault" } else { "" };
        let verdict = match (count, with[i] / with[0] > 1.10) {
            (50, true) => " (missed)",
            (50, false) => " (met)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "| {count} | {:.0} | {:.0} ns | {:.2}x{verdict} | {goal} |",
            with[i],
            with[i] - bare,
            with[i] / with[0]
        );
    }
}

pub(super) fn scale_bench() -> anyhow::Result<String> {
    let other = TestCgroup::new();
    let targets: Vec<TestCgroup> = (0..COUNTS[COUNTS.len() - 1]).map(|_| TestCgroup::new()).collect();
    let load_before = load_average();
    let mut bare_ns = Vec::new();
    eprintln!("bench scale: one chaos per fault");
    let processes = measure(Holder::Processes, &other, &targets, &mut bare_ns)?;
    eprintln!("bench scale: one daemon holding every fault");
    let daemon = measure(Holder::Daemon, &other, &targets, &mut bare_ns)?;
    let bare = median(&bare_ns);
    let mut out = String::new();
    let _ = writeln!(out, "## Many faults at once (`cargo xtask bench scale`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(out, "Load average at the start: {load_before}; at the end: {}.\n", load_average());
    let _ = writeln!(
        out,
        "N syscall delays on `read`, each armed for its own cgroup, and a raw getpid() loop ({GETPIDS} calls) in a \
         cgroup none of them targets; on this host they are raw `sys_enter` programs (the only hook it has for \
         them). {ROUNDS} rounds, each armed run between two bare ones, medians; the bare figure is the median of all \
         bare runs of both tables.\n"
    );
    let _ = writeln!(out, "One daemon holding all N (an experiment per fault, started with `chaos daemon run`):\n");
    table(&mut out, bare, &daemon);
    let _ = writeln!(out, "\nN chaos processes, one fault each (`chaos syscall delay ... --hook sys-enter`):\n");
    table(&mut out, bare, &processes);
    let per_fault = (processes[2] - processes[0]) / (COUNTS[2] - COUNTS[0]) as f64;
    let _ = writeln!(
        out,
        "\nWhy they differ: the tracepoint runs every attached program in turn for every syscall of every task. \
         Within one chaos process (the daemon, an experiment, `--selector --all`) the faults' raw `sys_enter` \
         programs share one program on the tracepoint (engine/dispatch.rs): it turns away a syscall no fault \
         watches with one bitmap lookup (the union of the faults' bitmaps), looks the task's ancestor cgroup up at \
         each distinct level a fault targets (one helper call per level, at most 4, and a compare, or a hash \
         lookup where several faults share the level) and \
         tail-calls the fault found there, whose own program, maps, counters and kernel deadline are unchanged. \
         So the untargeted cost does not grow with N. Separate chaos processes each attach their own shared \
         program, so N of them cost about {per_fault:.0} ns per syscall per process: sharing across processes would \
         need a program that outlives the process that attached it (a pin), which chaos does not leave behind; the \
         daemon is the way to hold many faults on a node. A fault on the same cgroup as another of its process, or \
         on a cgroup above or below one, attaches its own program (one lookup cannot reach both). Where the \
         kernel has BPF trampolines, a delay on one syscall is an fentry program on that syscall's entry function \
         (`bench delay`, VM section): other syscalls pay nothing, and one process's faults on one function share \
         one program there the same way (the fentry VM section below); the cgroup hooks and lsm_cgroup (BPF LSM \
         faults on 6.0+ kernels, the LSM VM section) attach per cgroup, so N faults on N cgroups do not stack there."
    );
    Ok(out)
}

/// The machine line of the VM halves (`bench-in-vm scale-*`), which run in the 6.12 guest.
pub(super) fn tcg_6_12_machine() -> String {
    machine_in("VM tier: Debian 6.12 under QEMU with TCG; ratios are valid within this run")
}

/// kB of a `/proc/meminfo` field.
fn meminfo_kb(field: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// How many chaos processes the guest's memory holds, from the RSS of `one`, armed (and
/// stopped here): at most three quarters of what is available, so the loop and the kernel keep
/// room. With that RSS (kB).
pub(super) fn processes_that_fit(one: Vec<Chaos>) -> anyhow::Result<(usize, u64)> {
    let rss = status_kb(one[0].pid(), "VmRSS:").context("read chaos's VmRSS")?;
    drop(one);
    let available = meminfo_kb("MemAvailable:").context("read MemAvailable")?;
    Ok(((available * 3 / 4 / rss.max(1)) as usize, rss))
}
