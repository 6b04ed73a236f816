//! `cargo xtask bench syscall`, its VM half: openat() and read() failed through BPF LSM against
//! `strace -e inject`, and what chaos's global LSM hooks cost an untargeted loop (the host cannot
//! load LSM programs).
use std::{fmt::Write as _, fs};

use chaos_tests::cgroup::TestCgroup;

use super::{
    common::{machine_in, median},
    syscall::{InjectionFigures, Loop, arm_syscall, injection_vs_strace},
};

/// VM tier (BPF LSM): openat() + read() failed through the LSM hook vs `strace -e inject`, and
/// an untargeted loop with chaos's global LSM hooks armed for another cgroup vs nothing armed.
pub(super) fn syscall_open_bench() -> anyhow::Result<String> {
    const CALLS: u64 = 3000;
    const VM_ROUNDS: usize = 5;
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let dir = chaos_tests::TempDir::new();
    let file = dir.path().join("data");
    fs::write(&file, b"chaos")?;
    let (count, path) = (CALLS.to_string(), file.display().to_string());
    let args = ["open-loop", "--path", &path, "--count", &count];
    // Both injectors are scoped to the file (`-P` for strace, `--path` for chaos): an unscoped
    // openat fault also fails the workload's own dynamic loader, before the loop even starts.
    let strace = ["strace", "-f", "-qq", "-o", "/dev/null", "-P", &path, "-e", "inject=openat:error=EIO"];
    let prefix = dir.path().display().to_string();
    let InjectionFigures { vs_strace, untargeted, chaos_ns, strace_ns, bare_ns } = injection_vs_strace(
        "VM",
        VM_ROUNDS,
        &Loop { args: &args, strace: &strace, calls: CALLS, netns: None, target: &target, other: &other },
        || arm_syscall(&target, "openat,read", "EIO", "lsm", Some(&prefix)),
    )?;
    let mut out = String::new();
    let _ =
        writeln!(out, "## Syscall errors through BPF LSM: openat()/read() (`cargo xtask bench syscall`, VM tier)\n");
    let _ = writeln!(out, "{}\n", machine_in("VM tier: QEMU with TCG; ratios are valid within this run"));
    let _ = writeln!(
        out,
        "A loop of openat() + read() + close() of a small file, {CALLS} rounds per run, {VM_ROUNDS} runs; ratios within \
         each run, median (range). Under injection each round is one failed openat(). chaos fails openat and read \
         through BPF LSM hooks (`--backend lsm --path DIR`); strace through ptrace: `strace -f -P FILE -e \
         inject=openat:error=EIO` (both scoped to the file, or the workload's own loader fails).\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| time per failed open round: strace vs chaos (how many times faster chaos is) | **{}** ({:.0} vs {:.0} ns) | >= 100x |",
        vs_strace.summary(),
        median(&strace_ns),
        median(&chaos_ns)
    );
    let _ = writeln!(
        out,
        "| untargeted open/read loop: throughput with chaos's LSM hooks armed for another cgroup vs nothing armed | **{}** | >= 0.97x |",
        untargeted.summary()
    );
    let _ = writeln!(
        out,
        "| for scale: one round with nothing armed (open and read succeed) | {:.0} ns | |",
        median(&bare_ns)
    );
    let _ = writeln!(
        out,
        "\nLSM hooks run for every task: an untargeted task pays one map lookup and one cgroup-id helper call per \
         hooked syscall before the program leaves. Times are emulated (TCG), so only the ratios carry over."
    );
    Ok(out)
}
