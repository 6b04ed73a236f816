//! `cargo xtask bench dns`: what a DNS fault costs and how it compares. A dnsmasq on the
//! loopback of a test namespace (no cache, so every query reaches it) serves the test zone and
//! answers NXDOMAIN itself for one name (the anchors' way: a resolver configured to fail a name,
//! as a patched CoreDNS does); glibc's getaddrinfo asks it (`chaos-workload resolve`, one A
//! query per lookup). Per round, interleaved: with no fault, then with `dns fail` armed on the
//! target cgroup: lookups from another cgroup (untargeted), the target's lookups of a name the
//! fault does not take (they go through chaos's responder), and failed lookups (chaos's answer
//! against dnsmasq's). CPU per query adds the client's, the resolver's and chaos's own CPU time
//! (per-thread schedstat, ns), so other jobs on the shared machine do not count.
use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::{Context as _, bail};
use chaos_tests::{
    cgroup::TestCgroup,
    dns::{Dnsmasq, Resolve, ZONE, parse_lookups, quantile, zone_v4, zone_v6},
    net::Netns,
    workload::{Resident, workload_json},
};

use super::common::{machine, median};
use crate::build;

const LOOKUPS: u64 = 4000;
const ROUNDS: usize = 6;

/// One batch of lookups: per-lookup latencies (us) and CPU per lookup (ns) of the client, the
/// resolver and chaos together.
struct Batch {
    latencies_us: Vec<u64>,
    lookups_per_sec: f64,
    cpu_ns_per_lookup: f64,
    failed: usize,
}

/// What the processes that serve a lookup have used so far.
struct Servers<'a> {
    resolver: u32,
    chaos: Option<&'a Armed>,
}

impl Servers<'_> {
    fn cpu_ns(&self) -> anyhow::Result<u64> {
        let chaos = self.chaos.map_or(Ok(0), |c| threads_cpu_ns(c.child.id()))?;
        Ok(threads_cpu_ns(self.resolver)? + chaos)
    }
}

fn batch(netns: &Netns, cgroup: &TestCgroup, name: &str, servers: &Servers<'_>) -> anyhow::Result<Batch> {
    let resolve = Resolve { count: LOOKUPS, family: "4", ..Resolve::once(name, "127.0.0.1") };
    let args = resolve.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = servers.cpu_ns()?;
    let report = workload_json(&args, Some(cgroup), Some(netns));
    let served = servers.cpu_ns()? - before;
    let lookups = parse_lookups(&report);
    let client = report["cpu_ns"].as_u64().context("no cpu_ns in the resolve report")?;
    let latencies_us: Vec<u64> = lookups.iter().map(|l| l.elapsed_us).collect();
    let total_s = latencies_us.iter().sum::<u64>() as f64 / 1e6;
    Ok(Batch {
        lookups_per_sec: LOOKUPS as f64 / total_s,
        cpu_ns_per_lookup: (client + served) as f64 / LOOKUPS as f64,
        failed: lookups.iter().filter(|l| !l.ok).count(),
        latencies_us,
    })
}

/// A chaos fault running in the background, armed; SIGINT and wait on drop.
struct Armed {
    child: Child,
}

impl Armed {
    fn start(chaos: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(chaos)
            .args(args)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", chaos.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("fault armed") => break,
                Some(Ok(_)) => {}
                _ => bail!("chaos {args:?} ended before it armed its fault"),
            }
        }
        // Drained so chaos never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self { child })
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// On-CPU time of every thread of `pid` (schedstat, ns).
fn threads_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Ok(total)
}

/// Per build: every round's batches.
#[derive(Default)]
struct Rounds {
    untargeted_ratio: Vec<f64>,
    /// CPU per untargeted lookup (client and dnsmasq), with the fault armed vs none.
    untargeted_cpu_ratio: Vec<f64>,
    direct: Vec<Batch>,
    through: Vec<Batch>,
    anchor_failed: Vec<Batch>,
    chaos_failed: Vec<Batch>,
}

pub fn dns_bench(binaries: &build::Binaries) -> anyhow::Result<String> {
    let netns = Netns::new();
    let nx = format!("nx.{ZONE}");
    // One resolver serves the zone and fails `nx` itself (a name with no address is NXDOMAIN).
    let resolver = Dnsmasq::start(
        &netns,
        &["127.0.0.1"],
        &["--cache-size=0", &zone_v4(), &zone_v6(), &format!("--address=/{nx}/")],
    );
    let target = TestCgroup::new();
    let _member = Resident::start(&target, Some(&netns));
    let untargeted = TestCgroup::new();
    let (taken, other) = (format!("api.{ZONE}"), format!("db.{ZONE}"));
    let mut builds: Vec<(&str, PathBuf)> = vec![("debug", binaries.chaos.clone())];
    let release = binaries.chaos.parent().and_then(|d| d.parent()).map(|t| t.join("release").join("chaos"));
    if let Some(release) = release.filter(|r| r.exists()) {
        builds.push(("release", release));
    }
    let load = super::common::load_average();
    let mut results: Vec<Rounds> = builds.iter().map(|_| Rounds::default()).collect();
    for round in 1..=ROUNDS {
        for ((label, chaos), rounds) in builds.iter().zip(results.iter_mut()) {
            eprintln!("bench dns: round {round}/{ROUNDS} ({label})");
            // Half the rounds measure with the fault first, so drift does not favour a side.
            let fault_first = round % 2 == 0;
            let plain = Servers { resolver: resolver.pid(), chaos: None };
            let mut without = || -> anyhow::Result<Batch> {
                let off = batch(&netns, &untargeted, &other, &plain)?;
                rounds.direct.push(batch(&netns, &target, &other, &plain)?);
                rounds.anchor_failed.push(batch(&netns, &target, &nx, &plain)?);
                Ok(off)
            };
            let off_first = if fault_first { None } else { Some(without()?) };
            let args =
                ["dns", "fail", "--cgroup", target.path(), "--name", &taken, "--rcode", "nxdomain", "--for", "10m"];
            let armed = Armed::start(chaos, &args)?;
            let with_chaos = Servers { resolver: resolver.pid(), chaos: Some(&armed) };
            let on = batch(&netns, &untargeted, &other, &with_chaos)?;
            rounds.through.push(batch(&netns, &target, &other, &with_chaos)?);
            rounds.chaos_failed.push(batch(&netns, &target, &taken, &with_chaos)?);
            drop(armed);
            let off = match off_first {
                Some(off) => off,
                None => without()?,
            };
            rounds.untargeted_ratio.push(on.lookups_per_sec / off.lookups_per_sec);
            rounds.untargeted_cpu_ratio.push(on.cpu_ns_per_lookup / off.cpu_ns_per_lookup);
        }
    }
    let load_after = super::common::load_average();
    for rounds in &results {
        let wrong = rounds.anchor_failed.iter().chain(&rounds.chaos_failed).any(|b| b.failed != LOOKUPS as usize)
            || rounds.direct.iter().chain(&rounds.through).any(|b| b.failed != 0);
        if wrong {
            bail!("bench dns: a lookup did not end as it should (every failed lookup must fail, every other resolve)");
        }
    }
    drop(resolver);
    Ok(report(&builds, &results, &load, &load_after))
}

fn p(batches: &[Batch], q: f64) -> f64 {
    median(&batches.iter().map(|b| quantile(&b.latencies_us, q) as f64).collect::<Vec<_>>())
}

fn cpu(batches: &[Batch]) -> f64 {
    median(&batches.iter().map(|b| b.cpu_ns_per_lookup).collect::<Vec<_>>()) / 1000.0
}

fn range(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(0.0, f64::max);
    format!("{:.3}x ({min:.3}-{max:.3})", median(values))
}

fn report(builds: &[(&str, PathBuf)], results: &[Rounds], load: &str, load_after: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## DNS faults (`cargo xtask bench dns`)\n");
    let _ = writeln!(out, "{}\n", machine());
    let _ = writeln!(
        out,
        "A dnsmasq on the loopback of a test namespace (no cache: every query reaches it) serves the test zone and \
         answers NXDOMAIN itself for one name; glibc's getaddrinfo asks it ({LOOKUPS} lookups per batch, one A query \
         each, one after the other). {ROUNDS} rounds, each: batches with no fault and with `dns fail --name api... \
         --rcode nxdomain` armed on the target cgroup, which first alternating from round to round. Latencies are what the client measured around getaddrinfo; \
         medians over the rounds. CPU per lookup adds the client's, dnsmasq's and chaos's own CPU time (schedstat), \
         so other jobs on the machine do not count; latency and throughput cannot leave them out.\n"
    );
    let _ =
        writeln!(out, "| build | measurement | no fault / the anchor | with the fault | goal |\n|---|---|---|---|---|");
    for ((label, _), r) in builds.iter().zip(results) {
        let _ = writeln!(
            out,
            "| {label} | untargeted lookups (another cgroup), lookups/s with the fault armed vs none | | **{}** | >= 0.99x |",
            range(&r.untargeted_ratio)
        );
        let _ = writeln!(
            out,
            "| {label} | the same: CPU per untargeted lookup (client + dnsmasq), armed vs none | | **{}** | |",
            range(&r.untargeted_cpu_ratio)
        );
        let _ = writeln!(
            out,
            "| {label} | the target's lookups of a name the fault does not take: p50 / p99 latency (us) | {:.0} / {:.0} | \
             {:.0} / {:.0} (**+{:.0} / +{:.0}**) | +50 us at p50 |",
            p(&r.direct, 0.5),
            p(&r.direct, 0.99),
            p(&r.through, 0.5),
            p(&r.through, 0.99),
            p(&r.through, 0.5) - p(&r.direct, 0.5),
            p(&r.through, 0.99) - p(&r.direct, 0.99)
        );
        let _ = writeln!(
            out,
            "| {label} | the same: CPU per lookup, client + dnsmasq + chaos (us) | {:.1} | **{:.1}** | |",
            cpu(&r.direct),
            cpu(&r.through)
        );
        let _ = writeln!(
            out,
            "| {label} | a failed lookup (NXDOMAIN): p50 / p99 latency (us), dnsmasq configured to fail the name vs chaos | \
             {:.0} / {:.0} | **{:.0} / {:.0}** | chaos no slower |",
            p(&r.anchor_failed, 0.5),
            p(&r.anchor_failed, 0.99),
            p(&r.chaos_failed, 0.5),
            p(&r.chaos_failed, 0.99)
        );
        let _ = writeln!(
            out,
            "| {label} | the same: CPU per lookup (us) | {:.1} | **{:.1}** | |",
            cpu(&r.anchor_failed),
            cpu(&r.chaos_failed)
        );
    }
    let _ = writeln!(
        out,
        "\nUntargeted cgroups run none of the programs (they are attached to the target cgroup only): their CPU per \
         lookup is the same armed or not, and their throughput ratio is the machine's noise. The target's other names \
         take a detour through chaos's responder: two more wake-ups per lookup (the responder for the query, then for \
         the resolver's answer) and two more loopback hops. perf of the responder on this host puts about a third of \
         its time in being switched in (finish_task_switch) and most of the rest in the socket calls and the wake-ups \
         of the other side; parsing the question and deciding are a few percent. On a virtual machine whose other \
         tenants keep its two CPUs busy, each of those wake-ups costs tens of microseconds, which is where the added \
         latency comes from. A failed lookup never reaches the resolver: chaos answers it from the same single hop that \
         dnsmasq's own answer takes, with a parse and an encode where dnsmasq looks up its configuration. The debug \
         build is what the tests use; the release build is `cargo build --release -p chaos-user`, when made.\n\n\
         Load average at the start: {load}; at the end: {load_after} (the machine is shared)."
    );
    out
}
