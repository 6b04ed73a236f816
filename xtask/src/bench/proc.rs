//! `cargo xtask bench proc`: process faults on the host: a crash point against strace's signal
//! injection, and how soon a frozen target is thawed after chaos is SIGKILLed.
use std::{fmt::Write as _, fs, time::Duration};

use anyhow::Context as _;
use chaos_tests::{cgroup::TestCgroup, chaos::Chaos, kernel};

use super::common::{machine, percentile};

/// Host tier: how long a crash point takes, from the syscall's entry (a timestamp the process
/// writes to shared memory just before the call) to the process being reaped by its parent,
/// against the same crash from userspace (`strace -e inject=getppid:signal=KILL`, where the
/// parent is strace); and how long a frozen target waits for its guard after chaos is SIGKILLed.
pub(super) fn proc_bench() -> anyhow::Result<String> {
    const CRASHES: usize = 200;
    const THAWS: usize = 20;
    let (cgroup, traced) = (TestCgroup::new(), TestCgroup::new());
    let scratch = chaos_tests::TempDir::new();
    let stamp_file = scratch.path().join("stamp");
    let stamp = stamp_file.display().to_string();
    let workload = chaos_tests::workload::workload_bin().display().to_string();
    let read_stamp = || -> anyhow::Result<u64> {
        let bytes = fs::read(&stamp_file)?;
        Ok(u64::from_ne_bytes(bytes.get(..8).context("short stamp file")?.try_into()?))
    };
    // One crash: start `wrapper... workload crash-stamp` in the cgroup, wait for it, return the
    // entry-to-reaped time.
    let crash = |wrapper: &[&str], cgroup: &TestCgroup| -> anyhow::Result<f64> {
        let (program, args): (&str, Vec<&str>) = match wrapper.split_first() {
            Some((first, rest)) => (first, rest.iter().copied().chain([workload.as_str()]).collect()),
            None => (workload.as_str(), Vec::new()),
        };
        let status = chaos_tests::workload::command_in(program, Some(cgroup), None)
            .args(args)
            .args(["crash-stamp", "--file", &stamp])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        let reaped = kernel::monotonic_ns();
        anyhow::ensure!(!status.success() || !wrapper.is_empty(), "the crash point did not kill the process");
        Ok(reaped.saturating_sub(read_stamp()?) as f64)
    };
    let (mut chaos_ns, mut strace_ns) = (Vec::new(), Vec::new());
    let strace = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=getppid", "-e", "inject=getppid:signal=KILL"];
    {
        // Armed on `cgroup` only: strace's runs go to `traced`, out of the crash point's reach.
        let mut armed =
            Chaos::start(&["proc", "kill", "--cgroup", cgroup.path(), "--on-syscall", "getppid", "--for", "30m", "-v"]);
        armed.wait_until_armed(Duration::from_secs(120));
        for round in 0..CRASHES {
            if round % 50 == 0 {
                eprintln!("bench proc (host): crashes {round}/{CRASHES}");
            }
            chaos_ns.push(crash(&[], &cgroup)?);
            strace_ns.push(crash(&strace, &traced)?);
        }
    }
    // Thaw latency: chaos SIGKILLed mid-pause; time until cgroup.events says thawed.
    let mut thaw_ns = Vec::new();
    let counter = chaos_tests::workload::command_in(&workload, Some(&cgroup), None)
        .args(["counter", "--file", &scratch.path().join("counter").display().to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _counter = Killed(counter);
    for round in 0..THAWS {
        eprintln!("bench proc (host): thaw {}/{THAWS}", round + 1);
        let mut chaos = Chaos::start(&["proc", "pause", "--cgroup", cgroup.path(), "--for", "60s", "-v"]);
        chaos.wait_until("the target is frozen", Duration::from_secs(60), || kernel::is_frozen(cgroup.dir()));
        chaos.signal(libc::SIGKILL);
        let killed = kernel::monotonic_ns();
        while kernel::is_frozen(cgroup.dir()) {
            anyhow::ensure!(kernel::monotonic_ns() - killed < 5_000_000_000, "still frozen 5 s after SIGKILL");
            std::thread::sleep(Duration::from_micros(100));
        }
        thaw_ns.push((kernel::monotonic_ns() - killed) as f64);
        drop(chaos.wait(Duration::from_secs(10)));
    }
    let us = |ns: f64| ns / 1e3;
    let mut out = String::new();
    let _ = writeln!(out, "## Process faults on the host (`cargo xtask bench proc`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "A process writes CLOCK_MONOTONIC into shared memory and makes one raw getppid(2); a crash point kills it \
         there (`proc kill --on-syscall getppid`, raw sys_enter tracepoint, SIGKILL), or strace does (`strace -f -e \
         inject=getppid:signal=KILL`, ptrace). The time runs from the stamp to the moment the parent has reaped the \
         process (for strace, its own exit after it saw the tracee die), {} crashes each, interleaved. Then \
         chaos is SIGKILLed {THAWS} times while it holds the target frozen (`proc pause`), and the time until \
         cgroup.events says thawed is measured.\n",
        chaos_ns.len()
    );
    let _ = writeln!(out, "| measurement | median | p99 | max |\n|---|---|---|---|");
    for (name, values) in
        [("crash point (chaos, in the kernel)", &chaos_ns), ("strace inject=...:signal=KILL", &strace_ns)]
    {
        let _ = writeln!(
            out,
            "| {name}: syscall entry to reaped | {:.0} us | {:.0} us | {:.0} us |",
            us(percentile(values, 50.0)),
            us(percentile(values, 99.0)),
            us(percentile(values, 100.0))
        );
    }
    let _ = writeln!(
        out,
        "| thaw after SIGKILL of chaos mid-pause (the guard) | {:.1} ms | | {:.1} ms |",
        percentile(&thaw_ns, 50.0) / 1e6,
        percentile(&thaw_ns, 100.0) / 1e6
    );
    let _ = writeln!(
        out,
        "\nThe strace figure includes strace noticing the death and exiting itself (it is the parent here), and \
         strace slows every syscall of the traced process by two ptrace stops; the crash point adds nothing to the \
         target before the call it kills. The guard thaws the target as soon as chaos starts to exit (it reads chaos's PF_EXITING flag every \
         2 ms while a freeze is recorded), before the kernel has finished tearing chaos down."
    );
    Ok(out)
}
