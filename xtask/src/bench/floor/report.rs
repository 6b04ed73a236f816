//! The floor bench's BENCHMARKS.md sections: the host's (every hook this kernel runs) and the
//! error-injection VM's (the kprobe of `--backend override`), with the same two tables.
use std::fmt::Write as _;

use super::{CONNECTS, FSYNC_ENTRY, FSYNCS, GETPIDS, Hook, PACKETS, ROUNDS, Run};
use crate::bench::common::{machine, machine_in, median, median_and_range};

/// The goal: chaos's untargeted added cost at most 1.25x the empty program's, or within 10 ns.
fn verdict(chaos: f64, empty: f64) -> (String, &'static str) {
    let ratio = if empty > 0.0 { format!("{:.2}x", chaos / empty) } else { "n/a".to_owned() };
    let met = chaos <= empty * 1.25 || chaos - empty <= 10.0;
    (ratio, if met { "met" } else { "missed" })
}

const ROUNDS_HEADER: &str = "| hook | event | CPU ns per event, nothing | added: empty program | added: chaos untargeted | added: chaos on target, 0 % | untargeted / empty (goal <= 1.25x or +10 ns) | target 0 % / empty |\n|---|---|---|---|---|---|---|---|";

/// `whose_load`: whose load average the figures are (the host's, or a guest's own).
fn method(out: &mut String, run: &Run, whose_load: &str, workloads: &str) {
    let _ = writeln!(
        out,
        "Load average at the start: {}; at the end: {} ({whose_load}). The figures are \
         the workload process's own CPU time (user + system, from wait4), which other tasks inflate far less than \
         wall time.\n\n\
         Per hook, {ROUNDS} rounds; in each round four variants run back to back in a rotating order: nothing \
         attached, an empty program that only returns \"pass\" on the same hook (the test-only object \
         `chaos-floor`), chaos's program armed for another cgroup (untargeted), and chaos's program on the \
         workload's own cgroup at 0 %. Added ns per event = variant less nothing within the round; median \
         (range) over rounds. Workloads: {workloads}.\n",
        run.load, run.load_after
    );
}

fn rounds_table(out: &mut String, hooks: &[Hook], run: &Run) {
    let _ = writeln!(out, "{ROUNDS_HEADER}");
    for (hook, f) in hooks.iter().zip(&run.figures) {
        let [empty, untargeted, zero] = [0, 1, 2].map(|i| median(&f.added[i]));
        let (ratio, met) = if hook.global() {
            verdict(untargeted, empty)
        } else {
            ("n/a".to_owned(), "chaos's program does not run for other cgroups")
        };
        let zero_ratio = if empty > 0.0 { format!("{:.2}x", zero / empty) } else { "n/a".to_owned() };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {ratio} ({met}) | {zero_ratio} |",
            hook.name(),
            hook.event(),
            median(&f.nothing),
            median_and_range(&f.added[0]),
            median_and_range(&f.added[1]),
            median_and_range(&f.added[2]),
        );
    }
}

fn times_table(out: &mut String, hooks: &[Hook], run: &Run) {
    let _ = writeln!(
        out,
        "\nTime inside the program per run (kernel.bpf_stats_enabled, one run of each workload apart from the rounds; \
         this excludes the hook's own dispatch, which is the same for every program on a hook):\n\n\
         | hook | empty program | chaos untargeted | chaos on target, 0 % | untargeted / empty |\n|---|---|---|---|---|"
    );
    let ns = |t: Option<f64>| t.map_or_else(|| "not measured (see text)".to_owned(), |t| format!("{t:.1} ns"));
    for (hook, [empty, untargeted, zero, other_syscall]) in hooks.iter().zip(&run.times) {
        let ratio = match (empty, untargeted) {
            (Some(e), Some(u)) if *e > 0.0 => format!("{:.2}x (+{:.1} ns)", u / e, u - e),
            _ => String::new(),
        };
        let untargeted_text = if hook.global() { ns(*untargeted) } else { "never runs for other cgroups".to_owned() };
        let _ = writeln!(out, "| {} | {} | {untargeted_text} | {} | {ratio} |", hook.name(), ns(*empty), ns(*zero));
        if let (Some(e), Some(o)) = (empty, other_syscall) {
            let _ = writeln!(
                out,
                "| {}, fault on `read` (the loop calls getpid) | {} | {} | | {:.2}x (+{:.1} ns) |",
                hook.name(),
                ns(*empty),
                ns(*other_syscall),
                o / e,
                o - e
            );
        }
    }
}

/// The host section: every hook but the kprobe, whose row says where it is measured.
pub(super) fn host(hooks: &[Hook], run: &Run) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## The floor: empty programs on chaos's hooks (`cargo xtask bench floor`)\n");
    let _ = writeln!(out, "{}\n", machine());
    method(
        &mut out,
        run,
        "the machine is shared with other jobs",
        &format!(
            "{GETPIDS} getpid(), {CONNECTS} connect() on a UDP socket, {PACKETS} UDP packets sent as fast as one \
             sender can (the receiver in the same cgroup, so ingress programs run for every packet). This kernel \
             has no IRQ time accounting, so the softirq work a sender triggers for its packets on the veth pair \
             (the receiver's ingress path included) is charged to it"
        ),
    );
    rounds_table(&mut out, hooks, run);
    let kprobe = Hook::KprobeFsync;
    let _ = writeln!(
        out,
        "| {} | {} | not on this kernel: no kprobes, no bpf_override_return; measured on the error-injection VM \
         kernel (next section) | | | | | |",
        kprobe.name(),
        kprobe.event()
    );
    times_table(&mut out, hooks, run);
    let _ = writeln!(
        out,
        "\nOn the cgroup hooks (cgroup_skb, connect4) an untargeted cgroup never runs chaos's program: the \
         kernel runs a cgroup's own programs only, so the untargeted figure is the kernel's price of the hook \
         being in use anywhere (a static key, the cgroup's empty program array; for connect4 also the socket \
         lock the kernel takes around every connect() once any cgroup has that hook), which no program can \
         lower: the empty program pays it too, plus its own run. The raw sys_enter tracepoint and TC run for everyone: there the untargeted figure is \
         chaos's \"not my target\" test (syscall-number bitmap, then the task's ancestor cgroup; for TC, the \
         packet's socket cgroup) set against a program that does nothing. LSM hooks (file_open, \
         file_permission) need the VM tier: this host cannot load LSM programs (not measured here). The \
         error-injection backend's kprobe on `{FSYNC_ENTRY}` needs bpf_override_return, which neither this \
         host nor the Debian VM kernels have: its row is measured in the 6.1-errinj VM (`cargo xtask bench floor \
         --kernel 6.1-errinj`, next section). Negative \
         figures are noise (an added cost below the machine's run-to-run spread); the packet rows of the first \
         table are dominated by it (under load the receive softirq is often deferred to ksoftirqd and charged \
         to it rather than to the sender), so for packet hooks the time inside the program is the figure to \
         read.\n\n\
         Where chaos's untargeted cost is above the empty program's (raw sys_enter, TC): its untargeted path \
         already takes the cheapest test first and touches no counter before the target test. On sys_enter \
         (the process's one shared program, chaos-ebpf/src/dispatch.rs): the bitmap of the syscalls its faults \
         watch (an array lookup, which the verifier inlines), then the route of the target's cgroup level (also \
         inlined), then one helper call, bpf_get_current_ancestor_cgroup_id, and a compare (a hash lookup only \
         where several faults target one level: that lookup put the untargeted run at 151 ns inside, 2.04x the \
         empty program, before a level with one fault got the compare); a fault on another syscall stops at the \
         bitmap. On TC egress: the configuration, then bpf_skb_ancestor_cgroup_id. The \
         difference is that one helper call, the least a program on a hook every task runs can do to tell the \
         target's tasks (or packets) from the others. It cannot be cut inside the program; it goes away with \
         a hook that does not run for other tasks at all: fentry on the one syscall (what syscall delay \
         and crash points take where the kernel has BPF trampolines, measured in the VM by `bench delay`; this \
         host refuses tracing programs) or per-cgroup attachment (cgroup hooks, lsm_cgroup)."
    );
    helper_share(&mut out, hooks, run);
    out
}

/// What the sys_enter rows say of that helper, from the time inside the programs (the steady
/// figure; the CPU rounds move by tens of ns between runs here): the program that makes only
/// the helper call (`floor_cgroup_id`) beside the empty one and chaos's untargeted run.
fn helper_share(out: &mut String, hooks: &[Hook], run: &Run) {
    let times = |hook: Hook| hooks.iter().position(|&h| h == hook).map(|i| run.times[i]);
    let (Some([Some(empty), Some(chaos), ..]), Some([Some(helper), ..])) =
        (times(Hook::SysEnter), times(Hook::SysEnterCgroupTest))
    else {
        return;
    };
    let met = chaos <= helper * 1.25 || chaos - helper <= 10.0;
    let _ = writeln!(
        out,
        "\nHow much of that is the helper, measured (the row \"against one cgroup helper call\": its program \
         `floor_cgroup_id` is the empty one plus bpf_get_current_ancestor_cgroup_id and a compare). Inside the \
         program per getpid(): the empty program {empty:.1} ns, the helper program {helper:.1} ns, chaos untargeted \
         {chaos:.1} ns. So of the {:.1} ns chaos spends above the empty program, the one helper call is {:.1} ns and \
         chaos's own work (the syscall bitmap, the level route, the compare) {:.1} ns: chaos is {:.2}x the least \
         program that can tell a cgroup's tasks apart on this hook (goal 1.25x or +10 ns: {}). What is left above \
         the empty program is the helper (task to css_set to cgroup to ancestor to id, under RCU), which only a \
         hook that other tasks do not reach removes.",
        chaos - empty,
        helper - empty,
        chaos - helper,
        chaos / helper,
        if met { "met" } else { "missed" }
    );
}

/// The error-injection VM's section: the kprobe of `--backend override`.
pub(super) fn errinj(hooks: &[Hook], run: &Run) -> String {
    let mut out = String::new();
    let _ =
        writeln!(out, "## The floor of the error-injection kprobe (`cargo xtask bench floor --kernel 6.1-errinj`)\n");
    let _ = writeln!(
        out,
        "{}\n",
        machine_in(
            "VM tier, error-injection kernel: QEMU with TCG, so times are emulated; ratios are valid within this run"
        )
    );
    method(
        &mut out,
        run,
        "the guest's own; the host under it is shared with other jobs",
        &format!(
            "{FSYNCS} fsync() on one small file in the VM's in-memory root (fsync there does no I/O, so the \
             probe is a large part of each call). chaos's program is `syscall fail --syscall fsync --backend \
             override --errno EIO` (a kprobe on `{FSYNC_ENTRY}` that would call bpf_override_return); the empty \
             program is a kprobe on the same function returning 0"
        ),
    );
    rounds_table(&mut out, hooks, run);
    times_table(&mut out, hooks, run);
    let _ = writeln!(
        out,
        "\nA kprobe runs for every task's fsync, so the untargeted figure is chaos's \"not my target\" test (the \
         configuration, then one cgroup-id helper call and a compare) set against a program that does nothing; \
         both pay the probe itself (an ftrace call at the function's entry and the kprobe's dispatch), which is \
         the hook's price however short the program. On the target at 0 % chaos goes on past that test: \
         the clock against the kernel deadline, the per-CPU counters, the `--path` flag and the random draw, \
         paid by the target's own calls only. The rounds' CPU figures move with the load of the host under the \
         guest (their ranges are wide); the time inside the program is the steadier figure. Not measured: fmod_ret, the other way to reach the \
         error-injection list (aya 0.14 cannot load BPF_MODIFY_RETURN programs), so the kprobe is the only \
         backend built. Under TCG every instruction is emulated and the machine is shared: the ratios carry \
         over, the nanoseconds do not."
    );
    out
}
