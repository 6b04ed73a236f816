//! What chaos prints, frozen: the `--dry-run` plan (text and JSON) of one fault of every family,
//! an experiment's dry run, a real experiment's timeline and `chaos report` of it, and the
//! `--output json` summary of a one-shot fault. Code moves (issue "one home per fault family")
//! must leave these byte-identical once the parts that differ from run to run (paths, cgroup
//! ids, namespace inodes, times, counts) are replaced by placeholders.
//!
//! The files live in `tests/golden/<set>/`, one set per distinct output ([`GOLDEN_SETS`]): the
//! kernel decides what can be planned (no fq on the host, BPF LSM only in the VMs), so the host
//! has a set of its own, and the VM kernels, which print the same, share one. Every tier still
//! compares its own output with its set, byte for byte.
//!
//! `CHAOS_GOLDEN_UPDATE=1` compares too, rewrites each file that differs (or is missing), and
//! then fails naming them, so an update never passes unseen: review the change (`git diff`),
//! run the other tiers of that set to check they still agree, then run again without it. In a
//! VM, where files do not come back, `CHAOS_GOLDEN_PRINT=1` prints each output as one
//! `GOLDEN <name> <json string>` line to copy out of the console log.
use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use chaos_tests::{
    TempDir,
    cgroup::TestCgroup,
    chaos,
    net::TwoHosts,
    require_root, skip,
    workload::{HttpServer, Resident},
};
use serde_json::Value;

/// What varies between runs, and the placeholder that stands for it.
struct Normalizer {
    replacements: Vec<(String, String)>,
}

/// Keys whose values change from run to run: replaced by `<key>` wherever they appear.
const VOLATILE_KEYS: &[&str] = &[
    "time",
    "t",
    "id",
    "pid",
    "elapsed",
    "seen",
    "matched",
    "injected",
    "seen_total",
    "matched_total",
    "injected_total",
    "kernel_deadline_ns",
    "latency_ms",
    "detail",
    "timeline",
    // The machine an experiment ran on (its `experiment` event).
    "hostname",
    "kernel",
    "cpu",
    "chaos_version",
];

impl Normalizer {
    fn new(cgroup: &TestCgroup) -> Self {
        let id = cgroup_id(cgroup.dir());
        let mut replacements = vec![
            (cgroup.dir().display().to_string(), "<CGROUP_DIR>".to_owned()),
            (cgroup.path().to_owned(), "<CGROUP>".to_owned()),
            (format!("(id {id})"), "(id <CGROUP_ID>)".to_owned()),
            (format!("\"id\": {id}"), "\"id\": \"<CGROUP_ID>\"".to_owned()),
            (format!("\"id\":{id}"), "\"id\":\"<CGROUP_ID>\"".to_owned()),
        ];
        // Longest first, so a path is replaced before any of its parts.
        replacements.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Self { replacements }
    }

    fn with(mut self, from: impl Into<String>, to: &str) -> Self {
        self.replacements.insert(0, (from.into(), to.to_owned()));
        self
    }

    fn text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (from, to) in &self.replacements {
            text = text.replace(from, to);
        }
        normalize_netns(&text)
    }

    /// A JSON document with volatile values replaced.
    fn json(&self, text: &str) -> String {
        let mut document: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        scrub(&mut document);
        self.text(&serde_json::to_string_pretty(&document).expect("serializes")) + "\n"
    }

    /// A timeline (JSON Lines, or the JSON array `--output json` prints): the events in order,
    /// except checks and counts, which come as often as time allows and interleave with the
    /// rest by the millisecond; of those, the first of each kind stands for the shape, at the end.
    fn timeline(&self, text: &str) -> String {
        let events: Vec<Value> = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(events)) => events,
            _ => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect(),
        };
        let repeated = |e: &Value| e["event"] == "check" || e["event"] == "counts";
        let mut out = String::new();
        let mut shapes: Vec<Value> = Vec::new();
        for event in events {
            if repeated(&event) {
                if !shapes.iter().any(|s| s["event"] == event["event"]) {
                    shapes.push(event);
                }
                continue;
            }
            out.push_str(&self.json(&event.to_string()));
        }
        out.push_str("--- repeated events, first of each\n");
        for mut shape in shapes {
            // Whether the first check passed is the run's luck, not chaos's output: the
            // hypothesis tolerates a failed check (pass rate), and a TCG guest under load
            // fails the first one now and then.
            if shape["event"] == "check" {
                shape["ok"] = Value::String("<ok>".into());
            }
            out.push_str(&self.json(&shape.to_string()));
        }
        out
    }
}

fn scrub(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, member) in map.iter_mut() {
                if VOLATILE_KEYS.contains(&key.as_str()) && !member.is_object() && !member.is_array() {
                    *member = Value::String(format!("<{key}>"));
                } else {
                    scrub(member);
                }
            }
            // The API of TC programs is the kernel's choice (tcx or legacy), not chaos's output.
            if let Some(api) = map.get_mut("api") {
                *api = Value::String("<api>".into());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// `net:[4026532281]` -> `net:[<NETNS>]`.
fn normalize_netns(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("net:[") {
        out.push_str(&rest[..start + 5]);
        rest = &rest[start + 5..];
        let end = rest.find(']').unwrap_or(0);
        if rest[..end].bytes().all(|b| b.is_ascii_digit()) && end > 0 {
            out.push_str("<NETNS>");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

fn cgroup_id(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(dir).expect("cgroup dir").ino()
}

/// Which set of golden files each tier compares with (`tests/golden/<set>/`): one set per
/// distinct output. The host plans differently from the VM kernels (no fq, no BPF LSM); the VM
/// kernels all plan alike. A new tier gets a line here (the test fails on a tier without one):
/// the set it prints the same as, or a set of its own if its output differs.
const GOLDEN_SETS: &[(&str, &str)] = &[("host", "host"), ("vm-6.1", "vm"), ("vm-6.12", "vm"), ("vm-6.1-errinj", "vm")];

/// The set a tier compares with, if it has one.
fn golden_set(tier: &str) -> Option<&'static str> {
    GOLDEN_SETS.iter().find(|(name, _)| *name == tier).map(|&(_, set)| set)
}

/// The tiers that share a set, for messages.
fn tiers_of(set: &str) -> Vec<&'static str> {
    GOLDEN_SETS.iter().filter(|(_, s)| *s == set).map(|&(tier, _)| tier).collect()
}

fn golden_dir(set: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(set)
}

/// Compares every output with its golden file; in update mode also rewrites the files that
/// differ. Panics listing every difference (and, in update mode, every rewritten file).
struct Golden {
    set: &'static str,
    dir: PathBuf,
    update: bool,
    print: bool,
    differences: Vec<String>,
    rewritten: Vec<PathBuf>,
    compared: usize,
}

impl Golden {
    fn check(&mut self, name: &str, actual: &str) {
        let path = self.dir.join(name);
        if self.print {
            println!("GOLDEN {name} {}", serde_json::to_string(actual).expect("string"));
        }
        self.compared += 1;
        let difference = match fs::read_to_string(&path) {
            Ok(expected) if expected == actual => return,
            Ok(expected) => {
                format!("{name} differs from {}:\n--- expected\n{expected}\n--- actual\n{actual}", path.display())
            }
            Err(err) => format!("{name}: cannot read {}: {err}", path.display()),
        };
        if self.update {
            fs::create_dir_all(&self.dir).expect("golden dir");
            fs::write(&path, actual).expect("write golden");
            self.rewritten.push(path);
        } else {
            self.differences.push(difference);
        }
    }

    fn finish(self) {
        assert!(self.compared > 0, "no output was compared");
        assert!(self.differences.is_empty(), "{}", self.differences.join("\n\n"));
        // An update that changed something fails, so it cannot pass unseen; the set may be
        // shared, and the other tiers must be run to see that they still print the same.
        let rewritten: Vec<String> = self.rewritten.iter().map(|p| p.display().to_string()).collect();
        assert!(
            rewritten.is_empty(),
            "CHAOS_GOLDEN_UPDATE rewrote {} golden file(s) of set {:?}, which differed or were missing:\n  {}\n\
             Review the change (git diff), run the test on every tier of the set ({}) to check they \
             still print the same, then run again without CHAOS_GOLDEN_UPDATE.",
            rewritten.len(),
            self.set,
            rewritten.join("\n  "),
            tiers_of(self.set).join(", "),
        );
    }
}

/// Every family's dry run, on a cgroup with a process in a namespace of its own (TC faults
/// attach to that namespace's interfaces).
fn dry_runs() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "net-drop",
            vec![
                "net",
                "drop",
                "--percent",
                "20",
                "--burst-len",
                "4",
                "--direction",
                "egress",
                "--protocol",
                "udp",
                "--remote",
                "10.200.0.2/32",
                "--remote-port",
                "7101,7105-7106",
                "--local-port",
                "9000",
            ],
        ),
        ("net-partition", vec!["net", "partition", "--to", "10.200.0.2/32", "--to", "fd00:3::/64"]),
        ("net-corrupt", vec!["net", "corrupt", "--percent", "5", "--fix-checksum", "--protocol", "udp"]),
        ("net-duplicate", vec!["net", "duplicate", "--percent", "10", "--direction", "egress"]),
        (
            "net-delay",
            vec!["net", "delay", "--by", "100ms", "--jitter", "20ms", "--distribution", "uniform", "--percent", "50"],
        ),
        ("net-rate", vec!["net", "rate", "--limit", "1mbit", "--queue", "50ms", "--remote-port", "80"]),
        (
            "syscall-fail-cgroup",
            vec![
                "syscall",
                "fail",
                "--syscall",
                "connect",
                "--errno",
                "ECONNREFUSED",
                "--percent",
                "10",
                "--after",
                "3",
                "--max",
                "5",
                "--remote",
                "10.0.0.0/8",
                "--remote-port",
                "80",
                "--backend",
                "cgroup",
            ],
        ),
        (
            "syscall-fail-lsm",
            vec!["syscall", "fail", "--syscall", "openat,read", "--errno", "EIO", "--path", "/tmp", "--every", "4"],
        ),
        (
            "syscall-delay",
            vec!["syscall", "delay", "--syscall", "read,write", "--by", "50ms", "--jitter", "10ms", "--every", "2"],
        ),
        (
            "dns-fail",
            vec![
                "dns",
                "fail",
                "--name",
                "api.chaos.test",
                "--name",
                "*.internal",
                "--type",
                "A",
                "--rcode",
                "servfail",
                "--percent",
                "30",
                "--after",
                "2",
            ],
        ),
    ]
}

/// Runs chaos and renders what it said: exit status, then stdout, then (on failure) stderr.
fn render(args: &[&str]) -> String {
    let (status, stdout, stderr) = chaos::run(args);
    let mut out = format!("exit {}\n{stdout}", status.code().unwrap_or(-1));
    if !status.success() {
        out.push_str("stderr:\n");
        out.push_str(&stderr);
    }
    out
}

const EXPERIMENT: &str = r#"
name = "golden"
duration = "2s"

target = { cgroup = "CGROUP" }

[steady_state]
before = "1s"
after = "1s"

[[steady_state.check]]
name = "web"
http = "http://127.0.0.1:PORT/"
interval = "500ms"
timeout = "400ms"
pass_rate = "50%"

[[fault]]
kind = "net drop"
percent = 1
direction = "egress"
start = "0s"
duration = "2s"
ramp = { from = 0.5, steps = 2 }

[[fault]]
kind = "net partition"
to = ["10.255.0.1/32"]
start = "1s"
duration = "1s"
"#;

#[test]
fn the_output_of_every_family_is_unchanged() {
    require_root!("the_output_of_every_family_is_unchanged");
    let tier = skip::tier().unwrap_or_else(|| "host".into());
    let update = std::env::var_os("CHAOS_GOLDEN_UPDATE").is_some();
    let print = std::env::var_os("CHAOS_GOLDEN_PRINT").is_some();
    // A tier without a set fails rather than skips: it can run the test, it only lacks a
    // decision on which output it must print.
    let set = golden_set(&tier).unwrap_or_else(|| {
        panic!(
            "tier {tier} has no golden set: add it to GOLDEN_SETS in {} (the set whose output it \
             shares, or one of its own, recorded with CHAOS_GOLDEN_UPDATE or CHAOS_GOLDEN_PRINT)",
            file!()
        )
    });
    let _serial = chaos_tests::serialized();
    let mut golden = Golden {
        set,
        dir: golden_dir(set),
        update,
        print,
        differences: Vec::new(),
        rewritten: Vec::new(),
        compared: 0,
    };

    // Dry runs: a cgroup whose process lives in a test namespace with a veth.
    let hosts = TwoHosts::new();
    let cgroup = TestCgroup::new();
    let _resident = Resident::start(&cgroup, Some(&hosts.a));
    let normalizer = Normalizer::new(&cgroup);
    for (name, args) in dry_runs() {
        let mut args = args.clone();
        args.extend_from_slice(&["--cgroup", cgroup.path(), "--for", "30s", "--dry-run"]);
        golden.check(&format!("{name}.txt"), &normalizer.text(&render(&args)));
        args.extend_from_slice(&["--output", "json"]);
        let (status, stdout, stderr) = chaos::run(&args);
        let rendered = if status.success() {
            normalizer.json(&stdout)
        } else {
            normalizer.text(&format!("exit {}\nstderr:\n{stderr}", status.code().unwrap_or(-1)))
        };
        golden.check(&format!("{name}.json"), &rendered);
    }

    // A one-shot fault's JSON summary (a real run, briefly).
    let (status, stdout, stderr) =
        chaos::run(&["net", "drop", "--percent", "1", "--cgroup", cgroup.path(), "--for", "1s", "--output", "json"]);
    assert!(status.success(), "net drop: {stderr}");
    golden.check("net-drop-summary.json", &normalizer.json(&stdout));

    // An experiment: its dry run, then a real run's timeline, summary and report.
    let web = TestCgroup::new();
    let port = (18_000 + std::process::id() % 1000) as u16;
    let server = HttpServer::start(&web, port);
    let port = port.to_string();
    let files = TempDir::new();
    let file = files.path().join("golden.toml");
    fs::write(&file, EXPERIMENT.replace("CGROUP", web.path()).replace("PORT", &port)).expect("write experiment");
    let file_arg = file.display().to_string();
    let timeline = files.path().join("golden.jsonl");
    let timeline_arg = timeline.display().to_string();
    let normalizer = Normalizer::new(&web).with(files.path().display().to_string(), "<DIR>").with(port, "<PORT>");
    golden.check("experiment-dry-run.txt", &normalizer.text(&render(&["run", &file_arg, "--dry-run"])));
    let (status, stdout, stderr) = chaos::run(&["run", &file_arg, "--dry-run", "--output", "json"]);
    assert!(status.success(), "dry run: {stderr}");
    golden.check("experiment-dry-run.json", &normalizer.json(&stdout));
    let (status, stdout, stderr) = chaos::run(&["run", &file_arg, "--timeline", &timeline_arg, "--output", "json"]);
    assert_eq!(status.code(), Some(0), "the experiment holds: {stderr}");
    golden.check("experiment-summary.json", &normalizer.timeline(&stdout));
    let saved = fs::read_to_string(&timeline).expect("timeline");
    golden.check("experiment-timeline.jsonl", &normalizer.timeline(&saved));
    let first: Value = serde_json::from_str(saved.lines().next().unwrap_or_default()).expect("first event");
    let normalizer = normalizer.with(first["id"].as_str().unwrap_or("?"), "<RUN_ID>");
    let report = render(&["report", &timeline_arg]);
    golden.check("experiment-report.txt", &scrub_report(&normalizer.text(&report)));
    drop(server);
    std::thread::sleep(Duration::from_millis(10));
    golden.finish();
}

/// The report's counts, times and check tallies change from run to run: keep its words.
fn scrub_report(report: &str) -> String {
    let mut lines = report.lines();
    let first = lines.next().unwrap_or_default().to_owned() + "\n";
    first
        + &lines
            .map(|line| {
                line.split_whitespace() // padding depends on the numbers' widths
                    .map(|word| {
                        let digits = word.trim_end_matches(['%', 's', ':', ')']).trim_start_matches(['+', '(']);
                        let numeric = !digits.is_empty()
                            && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'/' || b == b'-');
                        if numeric && digits.bytes().any(|b| b.is_ascii_digit()) { "<n>" } else { word }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .map(|line| line + "\n")
            .collect::<String>()
}
