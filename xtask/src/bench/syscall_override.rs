//! `cargo xtask bench override`: fsync() failed by the error-injection kprobe (`--backend
//! override`) against `strace -e inject`, and what the kprobe costs an untargeted loop, in the
//! 6.1-errinj VM (the one kernel with bpf_override_return). The method is `syscall`'s.
use std::fmt::Write as _;

use chaos_tests::cgroup::TestCgroup;

use super::{
    common::{machine_in, median},
    syscall::{InjectionFigures, Loop, arm_syscall, injection_vs_strace},
};

/// Error-injection kernel: fsync() failed by chaos's kprobe (`--backend override`) vs `strace -e
/// inject`, and an untargeted fsync loop with the kprobe armed for another cgroup vs nothing.
pub(super) fn syscall_override_bench() -> anyhow::Result<String> {
    const CALLS: u64 = 3000;
    const VM_ROUNDS: usize = 5;
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    let dir = chaos_tests::TempDir::new();
    let path = dir.path().join("data").display().to_string();
    let count = CALLS.to_string();
    let args = ["fsync-loop", "--path", &path, "--count", &count];
    let strace = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "inject=fsync:error=EIO"];
    let InjectionFigures { vs_strace, untargeted, chaos_ns, strace_ns, bare_ns } = injection_vs_strace(
        "VM",
        VM_ROUNDS,
        &Loop { args: &args, strace: &strace, calls: CALLS, netns: None, target: &target, other: &other },
        || arm_syscall(&target, "fsync", "EIO", "override", None),
    )?;
    let mut out = String::new();
    let _ = writeln!(out, "## Syscall errors through error injection: fsync() (`cargo xtask bench override`)\n");
    let _ = writeln!(
        out,
        "{}\n",
        machine_in("VM tier, error-injection kernel: QEMU with TCG; ratios are valid within this run")
    );
    let _ = writeln!(
        out,
        "A loop of fsync() on one file, {CALLS} calls per run, {VM_ROUNDS} runs; ratios within each run, median \
         (range). chaos fails fsync through a kprobe on `__x64_sys_fsync` calling bpf_override_return (`--backend \
         override`): the call returns EIO before it does any work; strace through ptrace: `strace -f -e \
         inject=fsync:error=EIO`.\n"
    );
    let _ = writeln!(out, "| measurement | median (range) | goal |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| time per failed fsync(): strace vs chaos (how many times faster chaos is) | **{}** ({:.0} vs {:.0} ns) | >= 100x |",
        vs_strace.summary(),
        median(&strace_ns),
        median(&chaos_ns)
    );
    let _ = writeln!(
        out,
        "| untargeted fsync loop: throughput with the kprobe armed for another cgroup vs nothing armed | **{}** | >= 0.97x |",
        untargeted.summary()
    );
    let _ = writeln!(out, "| for scale: one fsync() with nothing armed (it succeeds) | {:.0} ns | |", median(&bare_ns));
    let _ = writeln!(
        out,
        "\nThe kprobe runs for every task's fsync: an untargeted task pays the probe (an ftrace call at the \
         function's entry), one map lookup and one cgroup-id helper call; an empty kprobe on the same function, \
         the floor, is set beside it in `cargo xtask bench floor --kernel 6.1-errinj` (section \
         \"The floor of the error-injection kprobe\"). Not measured: fmod_ret (aya 0.14 cannot load \
         BPF_MODIFY_RETURN programs). Times are emulated (TCG) on a machine shared with other work, so only the ratios carry over, \
         and their ranges are wide: measure the untargeted cost on hardware before relying on it."
    );
    Ok(out)
}
