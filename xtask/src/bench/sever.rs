//! `cargo xtask bench sever` (host): what `net sever` costs.
//!
//! 1. Time from the command to the last matching reset, for 10, 1 000 and 10 000 connections of
//!    the target among as many of another cgroup (each end watched by one epoll, which sees a
//!    reset the moment the kernel wakes it); and, from chaos's own record of when it asked the
//!    kernel, how long the destruction itself took. Beside it, the mechanism chaos does not use:
//!    an `iter/tcp` program calling the `bpf_sock_destroy` kfunc, assembled here by hand (aya 0.14
//!    cannot load a kfunc call, docs/sever.md) and run over the same sockets, selecting them by
//!    destination port (the target's connections alone go to that port).
//! 2. CPU per packet of `--after-bytes` (its cgroup_skb programs on the target, counting and
//!    never reaching the limit) against the floor's empty programs on the same hooks and the
//!    same packets, from the kernel's own run-time statistics (kernel.bpf_stats_enabled).
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    net::SocketAddr,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    process::{Child, ChildStdin, ChildStdout, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use aya::{
    EbpfLoader,
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType},
};
use chaos_tests::{
    cgroup::TestCgroup,
    chaos::Chaos,
    kernel,
    net::{Netns, TwoHosts},
    workload::{command_in, workload_bin},
};

use super::common::{BpfStats, machine, median};
use crate::util;

const COUNTS: [u64; 3] = [10, 1_000, 10_000];
const ROUNDS: usize = 3;
const TARGET_PORT: u16 = 7300;
const OTHER_PORT: u16 = 7301;
const BULK_PORT: u16 = 7310;
/// What each round of the per-packet measurement sends.
const BULK_BYTES: u64 = 200_000_000;

pub fn sever_bench() -> anyhow::Result<String> {
    let load = super::common::load_average();
    let resets = resets_bench()?;
    let per_packet = per_packet_bench()?;
    let mut out = String::new();
    let _ = writeln!(out, "## Connection sever on the host (`cargo xtask bench sever`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "Load average at the start: {load}. chaos is the debug build the tests use (aya optimised). \
         Medians of {ROUNDS} rounds, fresh connections each round.\n"
    );
    out.push_str(&resets);
    out.push_str(&per_packet);
    Ok(out)
}

/// One `chaos-workload` process answering "report" on stdin with one JSON line; killed on Drop.
struct Reporter {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Reporter {
    fn start(args: &[&str], cgroup: Option<&TestCgroup>, netns: &Netns) -> anyhow::Result<Self> {
        let mut child = command_in(workload_bin(), cgroup, Some(netns))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("start chaos-workload {args:?}"))?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("chaos-workload {args:?} did not start: {line:?}");
        }
        Ok(Self { child, stdin, stdout })
    }

    fn report(&mut self) -> anyhow::Result<serde_json::Value> {
        writeln!(self.stdin, "report")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// N connections from `cgroup` in host a to `port` on host b.
fn many(hosts: &TwoHosts, cgroup: &TestCgroup, port: u16, count: u64) -> anyhow::Result<Reporter> {
    let to = SocketAddr::from((TwoHosts::B, port)).to_string();
    Reporter::start(&["tcp-many", "--to", &to, "--count", &count.to_string()], Some(cgroup), &hosts.a)
}

/// Waits until `clients` report `count` ended connections (or 60 s); the last end's time.
fn wait_ended(clients: &mut Reporter, count: u64) -> anyhow::Result<u64> {
    for _ in 0..6000 {
        let report = clients.report()?;
        if report["ended"].as_u64() == Some(count) {
            return report["last_ns"].as_u64().context("last_ns");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the connections did not all end: {}", clients.report()?)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn resets_bench() -> anyhow::Result<String> {
    let hosts = TwoHosts::new();
    let (target, other) = (TestCgroup::new(), TestCgroup::new());
    // Servers that only hold what they accept (tcp-hold prints nothing after "ready": its
    // Reporter is only kept alive), new for each batch of connections: they never close theirs.
    let servers = || -> anyhow::Result<[Reporter; 2]> {
        let hold = |port: u16| Reporter::start(&["tcp-hold", "--port", &port.to_string()], None, &hosts.b);
        Ok([hold(TARGET_PORT)?, hold(OTHER_PORT)?])
    };
    let iterator = SockDestroyIterator::load().map_err(|e| eprintln!("bench sever: no iterator reference: {e:#}")).ok();
    let mut out = String::from(
        "### Time from the command to the last reset\n\n\
         The target's N connections and another cgroup's N, all from one namespace to another across a veth pair; \
         `chaos net sever --remote-port P --for 1s` resets the target's. *Command to last reset*: from just before \
         chaos is started to the moment the last of the target's connections saw its reset (its client's epoll). \
         *Destruction*: from chaos's record of when it asked the kernel (after listing and choosing) to that last \
         reset. *Iterator*: the same sockets destroyed by an `iter/tcp` program calling `bpf_sock_destroy` (the \
         mechanism chaos does not use: docs/sever.md), from the iterator's creation to the last reset. The other \
         cgroup's connections are checked untouched every round.\n\n\
         | connections of the target (and of the other cgroup) | command to last reset | destruction | iterator |\n\
         |---|---|---|---|\n",
    );
    for count in COUNTS {
        let (mut whole, mut destruction, mut iterated) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            eprintln!("bench sever: {count} connections, round {round}/{ROUNDS}");
            let _servers = servers()?;
            let mut mine = many(&hosts, &target, TARGET_PORT, count)?;
            let mut theirs = many(&hosts, &other, OTHER_PORT, count)?;
            let started = kernel::monotonic_ns();
            let port = TARGET_PORT.to_string();
            let (status, stdout, stderr) = chaos_tests::chaos::run(&[
                "net",
                "sever",
                "--cgroup",
                target.path(),
                "--remote-port",
                &port,
                "--for",
                "1s",
                "--output",
                "json",
            ]);
            if !status.success() {
                bail!("chaos net sever failed: {stderr}");
            }
            let summary: serde_json::Value = serde_json::from_str(&stdout)?;
            let asked = summary["events"]
                .as_array()
                .and_then(|events| events.iter().filter_map(|e| e["at_ns"].as_u64()).min())
                .context("chaos reported no severed connection")?;
            let last = wait_ended(&mut mine, count)?;
            whole.push(ms(last - started));
            destruction.push(ms(last.saturating_sub(asked)));
            let untouched = theirs.report()?;
            if untouched["ended"].as_u64() != Some(0) {
                bail!("the other cgroup's connections were touched: {untouched}");
            }
            if let Some(iterator) = &iterator {
                drop((mine, theirs, _servers));
                let _servers = servers()?;
                let (mut mine, mut theirs) =
                    (many(&hosts, &target, TARGET_PORT, count)?, many(&hosts, &other, OTHER_PORT, count)?);
                let started = kernel::monotonic_ns();
                iterator.run(&hosts.a)?;
                iterated.push(ms(wait_ended(&mut mine, count)? - started));
                if theirs.report()?["ended"].as_u64() != Some(0) {
                    bail!("the iterator touched the other cgroup's connections");
                }
            }
        }
        let iterated = if iterated.is_empty() { "-".to_owned() } else { format!("{:.1} ms", median(&iterated)) };
        let row = format!("| {count} | {:.1} ms | {:.1} ms | {iterated} |", median(&whole), median(&destruction));
        eprintln!("bench sever: {row}");
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
    Ok(out)
}

/// An `iter/tcp` program that calls `bpf_sock_destroy` on every established socket whose
/// destination port is [`TARGET_PORT`], hand-assembled (10 instructions), with the BTF ids of
/// the iterator target and the kfunc from the kernel's BTF. Reading an iterator made from it in a
/// namespace walks that namespace's TCP sockets once.
struct SockDestroyIterator {
    program: OwnedFd,
}

/// `bpf(2)` with `attr` (128 bytes: enough for every command used here).
fn bpf(command: i64, attr: &mut [u8; 128]) -> std::io::Result<OwnedFd> {
    // SAFETY: the attribute buffer is as large as the union the kernel reads.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn put(attr: &mut [u8; 128], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

impl SockDestroyIterator {
    const BPF_PROG_LOAD: i64 = 5;
    const BPF_LINK_CREATE: i64 = 28;
    const BPF_ITER_CREATE: i64 = 33;
    const BPF_PROG_TYPE_TRACING: u32 = 26;
    const BPF_TRACE_ITER: u32 = 28;

    fn load() -> anyhow::Result<Self> {
        let btf = aya::Btf::from_sys_fs().context("the kernel's BTF")?;
        let id = |name: &str| btf.id_by_type_name_kind(name, aya_obj::btf::BtfKind::Func);
        let iterator = id("bpf_iter_tcp").context("no bpf_iter_tcp in the kernel's BTF")?;
        let kfunc = id("bpf_sock_destroy").context("no bpf_sock_destroy kfunc in this kernel (6.5+)")?;
        let dport = u16::from_le_bytes(TARGET_PORT.to_be_bytes()) as i32;
        // (code, dst, src, off, imm): r6 = ctx->sk_common; skip unless ESTABLISHED and to the
        // port; bpf_sock_destroy(r6) (a kfunc call: src 2, imm its BTF id); return 0.
        let program: [(u8, u8, u8, i16, i32); 10] = [
            (0x79, 6, 1, 8, 0),            // r6 = *(u64 *)(r1 + 8)
            (0x15, 6, 0, 6, 0),            // if r6 == 0 goto exit
            (0x71, 2, 6, 18, 0),           // r2 = *(u8 *)(r6 + 18): skc_state
            (0x55, 2, 0, 4, 1),            // if r2 != TCP_ESTABLISHED goto exit
            (0x69, 2, 6, 12, 0),           // r2 = *(u16 *)(r6 + 12): skc_dport
            (0x55, 2, 0, 2, dport),        // if r2 != port goto exit
            (0xbf, 1, 6, 0, 0),            // r1 = r6
            (0x85, 0, 2, 0, kfunc as i32), // call bpf_sock_destroy
            (0xb7, 0, 0, 0, 0),            // exit: r0 = 0
            (0x95, 0, 0, 0, 0),            // exit
        ];
        let instructions: Vec<u8> = program
            .iter()
            .flat_map(|&(code, dst, src, off, imm)| {
                let mut insn = [code, dst | src << 4, 0, 0, 0, 0, 0, 0];
                insn[2..4].copy_from_slice(&off.to_le_bytes());
                insn[4..8].copy_from_slice(&imm.to_le_bytes());
                insn
            })
            .collect();
        let license = c"GPL";
        let mut log = vec![0u8; 64 * 1024];
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &Self::BPF_PROG_TYPE_TRACING.to_ne_bytes());
        put(&mut attr, 4, &(program.len() as u32).to_ne_bytes());
        put(&mut attr, 8, &(instructions.as_ptr() as u64).to_ne_bytes());
        put(&mut attr, 16, &(license.as_ptr() as u64).to_ne_bytes());
        put(&mut attr, 24, &1u32.to_ne_bytes());
        put(&mut attr, 28, &(log.len() as u32).to_ne_bytes());
        put(&mut attr, 32, &(log.as_mut_ptr() as u64).to_ne_bytes());
        put(&mut attr, 68, &Self::BPF_TRACE_ITER.to_ne_bytes());
        put(&mut attr, 108, &iterator.to_ne_bytes());
        let program = bpf(Self::BPF_PROG_LOAD, &mut attr).map_err(|e| {
            let log = String::from_utf8_lossy(&log);
            anyhow::anyhow!("loading the iterator: {e}: {}", log.trim_end_matches('\0'))
        })?;
        Ok(Self { program })
    }

    /// Walks `netns`'s TCP sockets once (from a thread inside it), destroying the chosen ones.
    fn run(&self, netns: &Netns) -> anyhow::Result<()> {
        let namespace = fs::File::open(netns.path())?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> anyhow::Result<()> {
                    // SAFETY: a valid namespace descriptor; only this short-lived thread moves.
                    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        bail!("setns: {}", std::io::Error::last_os_error());
                    }
                    let mut attr = [0u8; 128];
                    put(&mut attr, 0, &(self.program.as_fd().as_raw_fd() as u32).to_ne_bytes());
                    put(&mut attr, 8, &Self::BPF_TRACE_ITER.to_ne_bytes());
                    let link = bpf(Self::BPF_LINK_CREATE, &mut attr).context("BPF_LINK_CREATE")?;
                    let mut attr = [0u8; 128];
                    put(&mut attr, 0, &(link.as_raw_fd() as u32).to_ne_bytes());
                    let iterator = fs::File::from(bpf(Self::BPF_ITER_CREATE, &mut attr).context("BPF_ITER_CREATE")?);
                    std::io::copy(&mut &iterator, &mut std::io::sink()).context("reading the iterator")?;
                    Ok(())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the iterator thread panicked"))?
        })
    }
}

/// The run count and total run time of the loaded program named `name` (kernel.bpf_stats_enabled;
/// bpftool leaves both out while the program has not run).
fn run_stats(name: &str) -> anyhow::Result<(f64, f64)> {
    let json =
        util::output(std::process::Command::new("bpftool").args(["-j", "prog", "show", "name", name]), "bpftool")?;
    let value: serde_json::Value = serde_json::from_str(&json)?;
    let program = if value.is_array() { &value[0] } else { &value };
    if program["id"].is_null() {
        bail!("no program named {name} is loaded: {json}");
    }
    Ok((program["run_cnt"].as_f64().unwrap_or(0.0), program["run_time_ns"].as_f64().unwrap_or(0.0)))
}

fn per_packet_bench() -> anyhow::Result<String> {
    let hosts = TwoHosts::new();
    let target = TestCgroup::new();
    let _server = Reporter::start(&["tcp-serve", "--port", &BULK_PORT.to_string()], None, &hosts.b)?;
    // A limit the transfers never reach: every packet is counted, none dropped.
    let mut chaos = Chaos::start(&[
        "net",
        "sever",
        "--cgroup",
        target.path(),
        "--all-connections",
        "--after-bytes",
        "1073741824",
        "--for",
        "30m",
        "--output",
        "json",
        "-v",
    ]);
    chaos.wait_until_armed(Duration::from_secs(60));
    // The floor's empty programs on the same hooks of the same cgroup: both run on every packet.
    let object = fs::read(super::floor::empty::floor_object(&chaos_tests::chaos::chaos_bin())?)?;
    let mut floor = EbpfLoader::new().btf(None).load(&object).context("load the chaos-floor object")?;
    for (name, hook) in [("floor_egress", CgroupSkbAttachType::Egress), ("floor_ingress", CgroupSkbAttachType::Ingress)]
    {
        let program: &mut CgroupSkb = floor.program_mut(name).context(name)?.try_into()?;
        program.load()?;
        program.attach(fs::File::open(target.dir())?.as_fd(), hook, CgroupAttachMode::Single)?;
    }
    let _stats = BpfStats::enable()?;
    // bpftool matches a program's full name (from its BTF) where the kernel keeps 15 characters.
    let names = [("egress", "net_sever_egress", "floor_egress"), ("ingress", "net_sever_ingress", "floor_ingress")];
    let mut rows: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); names.len()];
    let mut packets = vec![Vec::new(); names.len()];
    for round in 1..=ROUNDS {
        eprintln!("bench sever: per-packet cost, round {round}/{ROUNDS}");
        let before: Vec<_> =
            names.iter().map(|(_, a, b)| Ok((run_stats(a)?, run_stats(b)?))).collect::<anyhow::Result<_>>()?;
        let to = SocketAddr::from((TwoHosts::B, BULK_PORT)).to_string();
        let mut client = Reporter::start(
            &[
                "tcp-clients",
                "--to",
                &to,
                "--count",
                "1",
                "--send",
                &BULK_BYTES.to_string(),
                "--chunk",
                "65536",
                "--gap-ms",
                "0",
            ],
            Some(&target),
            &hosts.a,
        )?;
        for _ in 0..6000 {
            if client.report()?["connections"][0]["sent"].as_u64() == Some(BULK_BYTES) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(client);
        for (i, (_, sever, empty)) in names.iter().enumerate() {
            let ((sever_runs, sever_time), (empty_runs, empty_time)) = (run_stats(sever)?, run_stats(empty)?);
            let ((sever_runs0, sever_time0), (empty_runs0, empty_time0)) = before[i];
            rows[i].0.push((sever_time - sever_time0) / (sever_runs - sever_runs0).max(1.0));
            rows[i].1.push((empty_time - empty_time0) / (empty_runs - empty_runs0).max(1.0));
            packets[i].push(sever_runs - sever_runs0);
        }
    }
    drop(floor);
    let summary = chaos.stop_json();
    if summary["counters"][0]["injected"].as_u64() != Some(0) {
        bail!("the limit was reached: the per-packet figures would include drops: {summary}");
    }
    let mut out = format!(
        "### CPU per packet of `--after-bytes`\n\n\
         One TCP connection of the target sends {} MB (64 KiB writes) to another namespace; `--after-bytes 1073741824` \
         (never reached) counts every packet of it, and the floor's empty program sits on the same hook of the same \
         cgroup, so both run on the same packets (egress: the data, as the stack hands it down, GSO-sized; ingress: \
         the ACKs). Mean ns per run from the kernel's statistics (kernel.bpf_stats_enabled), median of {ROUNDS} \
         rounds.\n\n\
         | hook | packets a round | empty program | --after-bytes | added per packet |\n|---|---|---|---|---|\n",
        BULK_BYTES / 1_000_000
    );
    for (i, (hook, _, _)) in names.iter().enumerate() {
        let (sever, empty) = (median(&rows[i].0), median(&rows[i].1));
        let _ = writeln!(
            out,
            "| cgroup_skb {hook} | {:.0} | {empty:.0} ns | {sever:.0} ns | {:.0} ns ({:.1}x) |",
            median(&packets[i]),
            sever - empty,
            sever / empty
        );
    }
    out.push('\n');
    Ok(out)
}
