//! `cargo xtask bench daemon`: what the daemon costs a node: CPU and RSS while it waits for its
//! next run and while it runs an experiment, and an untargeted flow's throughput during a run
//! against none.
use std::{fmt::Write as _, fs, net::SocketAddr, os::unix::net::UnixStream, time::Duration};

use anyhow::Context as _;
use chaos_tests::{TempDir, cgroup::TestCgroup, chaos::Chaos, kernel, net::TwoHosts};

use super::common::{FLOW_PORT, Ratios, load_average, machine, measure_flow, median, process_cpu_ns, status_kb};

const IDLE: Duration = Duration::from_secs(60);
const ROUNDS: usize = 5;

pub(super) fn daemon_bench() -> anyhow::Result<String> {
    let hosts = TwoHosts::new();
    let workload = TestCgroup::new();
    let target = TestCgroup::new();
    let to = SocketAddr::from((TwoHosts::B, FLOW_PORT));
    let dir = TempDir::new();
    // A 20 % drop on another cgroup, started by hand (`chaos daemon run`): the schedule itself
    // would start nothing within the benchmark (once a day).
    fs::write(
        dir.path().join("drop.toml"),
        format!(
            "name = \"drop\"\ntarget = {{ cgroup = \"{}\" }}\nduration = \"10m\"\n\n[[fault]]\nkind = \"net drop\"\n\
             percent = 20\ndirection = \"both\"\n",
            target.path()
        ),
    )?;
    fs::write(
        dir.path().join("daemon.toml"),
        "socket = \"daemon.sock\"\nkill_switch = \"kill\"\nstate_dir = \"state\"\nmetrics = \"127.0.0.1:19468\"\n\
         [schedule]\nevery = \"24h\"\n[budget]\nmax_runs_per_hour = 1000\n\n[[experiment]]\nfile = \"drop.toml\"\n",
    )?;
    let config = dir.path().join("daemon.toml");
    let socket = dir.path().join("daemon.sock");
    let socket_arg = socket.to_str().context("a UTF-8 path")?.to_owned();
    let mut daemon = Chaos::start(&["daemon", "--config", config.to_str().context("a UTF-8 path")?]);
    daemon.wait_until("the daemon's socket answers", Duration::from_secs(30), || UnixStream::connect(&socket).is_ok());
    let pid = daemon.pid();
    std::thread::sleep(Duration::from_secs(2));

    let load = load_average();
    eprintln!("bench daemon: idle for {}s", IDLE.as_secs());
    let before = process_cpu_ns(pid)?;
    std::thread::sleep(IDLE);
    let idle_share = (process_cpu_ns(pid)? - before) as f64 / IDLE.as_nanos() as f64;
    let idle_rss = rss_mib(pid)?;

    let ask = |command: &str| {
        let (status, stdout, stderr) = chaos_tests::chaos::run(&["daemon", command, "drop", "--socket", &socket_arg]);
        anyhow::ensure!(status.success(), "chaos daemon {command}: {stdout}{stderr}");
        Ok(())
    };
    let mut untargeted = Ratios::default();
    let (mut run_share, mut run_rss) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("bench daemon: round {round}/{ROUNDS}");
        let off = measure_flow(&hosts, &workload, to)?;
        ask("run")?;
        kernel::wait_for_inet_programs(target.dir(), 2, Duration::from_secs(60));
        let started = std::time::Instant::now();
        let cpu_before = process_cpu_ns(pid)?;
        let on = measure_flow(&hosts, &workload, to)?;
        std::thread::sleep(Duration::from_secs(2));
        run_share.push((process_cpu_ns(pid)? - cpu_before) as f64 / started.elapsed().as_nanos() as f64);
        run_rss.push(rss_mib(pid)?);
        let (status, stdout, stderr) = chaos_tests::chaos::run(&["daemon", "stop-all", "--socket", &socket_arg]);
        anyhow::ensure!(status.success(), "chaos daemon stop-all: {stdout}{stderr}");
        kernel::wait_for_inet_programs(target.dir(), 0, Duration::from_secs(10));
        untargeted.push(on.pps, off.pps);
    }
    let load_after = load_average();
    daemon.signal(libc::SIGTERM);
    drop(daemon.wait(Duration::from_secs(20)));

    let mut out = String::new();
    let _ = writeln!(out, "## The daemon (`cargo xtask bench daemon`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "`chaos daemon` with one experiment (a 20 % drop on a test cgroup), its schedule once a day, metrics served. Idle: \
         {}s with nothing attached. During a run: {ROUNDS} runs started by `chaos daemon run`, each measured while a UDP \
         flow from another cgroup ran, against the same flow with no run.\n",
        IDLE.as_secs()
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| CPU while idle, share of one core over {}s | **{:.3} %** | <= 0.1 % |",
        IDLE.as_secs(),
        idle_share * 100.0
    );
    let _ = writeln!(out, "| RSS while idle | **{idle_rss:.1} MiB** | <= 30 MiB |");
    let _ = writeln!(out, "| CPU during a run, share of one core | **{:.3} %** | |", median(&run_share) * 100.0);
    let _ = writeln!(out, "| RSS during a run | **{:.1} MiB** | <= 30 MiB |", median(&run_rss));
    let _ =
        writeln!(out, "| untargeted UDP throughput during a run vs none | **{}** | >= 0.95x |", untargeted.summary());
    let _ = writeln!(
        out,
        "\nBetween runs the daemon holds no program attached: it sleeps until its next run or cool-down's end (a \
         second at most), woken early by inotify on the kill-switch file's directory (the kill switch must act within \
         100 ms) and by its socket; it looks every 40 ms only while a run is live. \
         The binary is the debug build the tests use. Loading a fault parses no kernel BTF (aya is patched for that: \
         vendor/README.md; it was 19 MB of heap per load here). During a run its RSS holds the eBPF object's maps and programs and the run's thread; that goes back to the \
         system when the run ends (malloc_trim).\n\nLoad average at the start: {load}; at the end: {load_after} (the \
         machine is shared: other jobs widen the CPU and throughput figures)."
    );
    Ok(out)
}

fn rss_mib(pid: i32) -> anyhow::Result<f64> {
    Ok(status_kb(pid, "VmRSS:").context("no VmRSS")? as f64 / 1024.0)
}
