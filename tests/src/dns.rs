//! Real DNS for the DNS fault tests: a dnsmasq resolver on the loopback of a test network
//! namespace (answering only the names it is given, forwarding nowhere unless told to), and
//! real clients: `dig` (bind9-dnsutils) and glibc's getaddrinfo (`chaos-workload resolve`).
use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::{
    cgroup::TestCgroup,
    net::Netns,
    workload::{command_in, workload_json},
};

/// The test zone: names below it resolve to [`ZONE_V4`] and [`ZONE_V6`] (RFC 6761 keeps
/// `.test` off the Internet; the resolvers here forward nothing anyway).
pub const ZONE: &str = "chaos.test";
pub const ZONE_V4: &str = "10.53.0.1";
pub const ZONE_V6: &str = "fd00:53::1";

/// A dnsmasq in `netns` on 127.0.0.1:53 and [::1]:53, killed on Drop.
pub struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    /// Serves [`ZONE`] with its two addresses, no cache (each query reaches it), no upstream.
    #[must_use]
    pub fn zone(netns: &Netns) -> Self {
        Self::start(netns, &["127.0.0.1", "::1"], &["--cache-size=0", &zone_v4(), &zone_v6()])
    }

    /// A dnsmasq listening on `addresses` (port 53) with `args` added to the options that keep it
    /// to itself: no configuration file, no /etc/resolv.conf, no /etc/hosts, root (a VM guest has
    /// no user to drop to), in the foreground.
    #[must_use]
    pub fn start(netns: &Netns, addresses: &[&str], args: &[&str]) -> Self {
        let mut command = command_in("dnsmasq", None, Some(netns));
        command.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=",
            "--group=",
            "--pid-file=",
            "--log-facility=-",
        ]);
        command.args(addresses.iter().map(|a| format!("--listen-address={a}")));
        command.args(args);
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (`cargo xtask setup` installs dnsmasq-base)");
        let server = Self { child };
        // Ready once it answers on every address (glibc asks: the VM guests have no dig).
        let probe = format!("probe.{ZONE}");
        let deadline = Instant::now() + Duration::from_secs(20);
        for address in addresses {
            let asked = Resolve { timeout_s: 1, ..Resolve::once(&probe, address) };
            while asked.run(netns, None)[0].error.as_deref() == Some("EAI_AGAIN") {
                assert!(Instant::now() < deadline, "dnsmasq did not answer on {address} within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        server
    }
}

impl Dnsmasq {
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq's options that make it answer for [`ZONE`] and every name below it.
#[must_use]
pub fn zone_v4() -> String {
    format!("--address=/{ZONE}/{ZONE_V4}")
}

#[must_use]
pub fn zone_v6() -> String {
    format!("--address=/{ZONE}/{ZONE_V6}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What `dig` printed: the status of the answer (None: no answer, it timed out), the answer
/// section's data, and how long it took.
#[derive(Debug)]
pub struct DigAnswer {
    pub status: Option<String>,
    pub answers: Vec<String>,
    /// The TTL of each answer.
    pub ttls: Vec<u32>,
    /// The server dig reports the answer from (`127.0.0.1#53(127.0.0.1) (UDP)`).
    pub server: Option<String>,
    pub elapsed: Duration,
}

/// `dig @server -t qtype name` once (1 s timeout, no retry), in `netns` and, if given, `cgroup`.
#[must_use]
pub fn dig(
    netns: &Netns,
    cgroup: Option<&TestCgroup>,
    server: &str,
    name: &str,
    qtype: &str,
    transport: Transport,
) -> DigAnswer {
    dig_with(netns, cgroup, server, name, qtype, transport, 1)
}

/// [`dig`] waiting `timeout_s` for the answer.
#[must_use]
pub fn dig_with(
    netns: &Netns,
    cgroup: Option<&TestCgroup>,
    server: &str,
    name: &str,
    qtype: &str,
    transport: Transport,
    timeout_s: u32,
) -> DigAnswer {
    let mut command = command_in("dig", cgroup, Some(netns));
    command.args([format!("@{server}"), format!("+time={timeout_s}"), "+tries=1".into(), "+nocookie".into()]);
    if transport == Transport::Tcp {
        command.arg("+tcp");
    }
    command.args(["-t", qtype, name]);
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).output().expect("run dig (`cargo xtask setup` installs bind9-dnsutils)");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .map(|rest| rest.split(',').next().unwrap_or_default().trim().to_owned());
    let server = text.lines().find_map(|l| l.strip_prefix(";; SERVER: ")).map(str::to_owned);
    let (mut answers, mut ttls) = (Vec::new(), Vec::new());
    let mut in_answer = false;
    for line in text.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
        } else if line.trim().is_empty() || line.starts_with(";;") {
            in_answer = false;
        } else if in_answer {
            // name, TTL, class, type, data
            let fields: Vec<&str> = line.split_whitespace().collect();
            answers.extend(fields.last().map(|d| (*d).to_owned()));
            ttls.extend(fields.get(1).and_then(|t| t.parse::<u32>().ok()));
        }
    }
    DigAnswer { status, answers, ttls, server, elapsed }
}

/// One getaddrinfo(3) call of `chaos-workload resolve`.
#[derive(Debug, serde::Deserialize)]
pub struct Lookup {
    pub ok: bool,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub error: Option<String>,
    pub elapsed_us: u64,
    pub at_ns: u64,
}

/// How `resolve` runs its lookups.
#[derive(Clone, Copy, Debug)]
pub struct Resolve<'a> {
    pub name: &'a str,
    pub count: u64,
    pub gap_ms: u64,
    /// `any`, `4` or `6`.
    pub family: &'a str,
    /// The nameserver its private resolv.conf names (None: the system's, e.g. a container's).
    pub nameserver: Option<&'a str>,
    /// resolv.conf's `timeout:` (s); one attempt.
    pub timeout_s: u64,
    /// Over TCP (resolv.conf's `use-vc`).
    pub tcp: bool,
}

impl<'a> Resolve<'a> {
    /// One lookup of `name` (any family) through `nameserver`, 2 s timeout.
    #[must_use]
    pub const fn once(name: &'a str, nameserver: &'a str) -> Self {
        Self { name, count: 1, gap_ms: 0, family: "any", nameserver: Some(nameserver), timeout_s: 2, tcp: false }
    }

    /// The workload's arguments.
    #[must_use]
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "resolve".to_owned(),
            "--name".into(),
            self.name.into(),
            "--count".into(),
            self.count.to_string(),
            "--gap-ms".into(),
            self.gap_ms.to_string(),
            "--family".into(),
            self.family.into(),
            "--timeout".into(),
            self.timeout_s.to_string(),
        ];
        if let Some(nameserver) = self.nameserver {
            args.extend(["--nameserver".into(), nameserver.into()]);
        }
        if self.tcp {
            args.push("--tcp".into());
        }
        args
    }

    /// Runs the lookups with glibc in `netns` and, if given, `cgroup`.
    #[must_use]
    pub fn run(&self, netns: &Netns, cgroup: Option<&TestCgroup>) -> Vec<Lookup> {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        parse_lookups(&workload_json(&args, cgroup, Some(netns)))
    }
}

/// The lookups of a `resolve` report.
#[must_use]
pub fn parse_lookups(report: &serde_json::Value) -> Vec<Lookup> {
    serde_json::from_value(report["lookups"].clone()).unwrap_or_else(|e| panic!("resolve report {report}: {e}"))
}

/// The `p`-quantile (0..1) of `values` (sorted here), nearest rank.
#[must_use]
pub fn quantile(values: &[u64], p: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
