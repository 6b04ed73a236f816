//! Unit tests of the parent module.
use super::*;
use crate::steady::CheckKind;

const GOOD: &str = r#"
name = "api under loss"
target = { cgroup = "/app" }
duration = "2m"

[[fault]]
kind = "net drop"
percent = 20
burst_len = 4
direction = "egress"
remote = ["10.0.3.0/24", "fd00::/64"]
remote_port = [80, "8000-8100"]
start = "10s"
duration = "1m"

[[fault]]
kind = "net partition"
to = ["192.0.2.7"]

[[fault]]
kind = "net corrupt"
percent = 0.5
fix_checksum = true
ramp = { steps = 5, from = 0.1 }

[steady_state]
before = "3s"
interval = "500ms"
pass_rate = "95%"

[[steady_state.check]]
name = "health"
http = "http://127.0.0.1:8080/health"
max_latency = "200ms"

[[steady_state.check]]
tcp = "127.0.0.1:5432"
timeout = "2s"

[[steady_state.check]]
command = "test -e /tmp"

[abort]
consecutive_failures = 3
"#;

fn parse_text(text: &str) -> Result<Experiment, FileError> {
    parse(Source::new("exp.toml", text), false)
}

#[test]
fn a_full_experiment_parses() {
    let exp = parse_text(GOOD).unwrap();
    assert_eq!(exp.name, "api under loss");
    assert_eq!(exp.target, TargetName::Cgroup("/app".into()));
    assert_eq!(exp.duration, Duration::from_secs(120));
    assert_eq!(exp.faults.len(), 3);
    let drop = &exp.faults[0];
    assert_eq!(drop.kind.name, "net drop");
    assert_eq!((drop.start, drop.duration), (Duration::from_secs(10), Duration::from_secs(60)));
    assert_eq!(
        drop.flags,
        [
            "--percent=20",
            "--burst-len=4",
            "--direction=egress",
            "--remote=10.0.3.0/24",
            "--remote=fd00::/64",
            "--remote-port=80",
            "--remote-port=8000-8100"
        ]
    );
    // Defaults: from its start to the end of the experiment.
    assert_eq!((exp.faults[1].start, exp.faults[1].duration), (Duration::ZERO, Duration::from_secs(120)));
    assert_eq!(exp.faults[2].flags, ["--percent=0.5", "--fix-checksum"]);
    assert_eq!(exp.faults[2].ramp, Some(Ramp { from: options::parse_percent("0.1").unwrap(), steps: 5 }));
    let steady = &exp.steady_state;
    assert_eq!((steady.before, steady.after), (Duration::from_secs(3), Duration::from_secs(5)));
    assert_eq!(steady.checks.len(), 3);
    assert_eq!(steady.checks[0].timeout, Duration::from_millis(500), "the timeout defaults to the interval");
    assert_eq!(steady.checks[1].name, "127.0.0.1:5432");
    assert_eq!(steady.checks[1].pass_rate, options::parse_percent("95").unwrap());
    assert!(matches!(&steady.checks[2].kind, CheckKind::Command { argv, .. } if argv[0] == "sh"));
    assert_eq!(exp.abort, AbortRules { on_violation: true, consecutive_failures: Some(3) });
}

/// (file text, line, column, expected message part)
const BAD: &[(&str, usize, usize, &str)] = &[
    ("target = { cgroup = \"/a\" \nduration = \"1m\"", 2, 1, "not valid TOML: missing comma"),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net fly\"\n",
        4,
        8,
        "unknown fault kind \"net fly\"; chaos knows: net drop",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = true\n",
        5,
        11,
        "expected a number or a string, found the boolean true",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"-5s\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
        2,
        12,
        "is negative",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 101\n",
        5,
        11,
        "`percent`: '101' is over 100 %",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = \"150%\"\n",
        5,
        11,
        "is over 100 %",
    ),
    (
        "target = { vm = \"/a\" }\nduration = \"1m\"\n",
        1,
        12,
        "unknown key `vm` in the target; expected one of: cgroup, pid, unit, container",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\nburst = 4\n",
        6,
        1,
        "unknown option `burst` for net drop; it takes: percent, burst_len",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\ndirection = \"up\"\n",
        6,
        13,
        "'up' is not one of: egress, ingress, both",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\n",
        3,
        1,
        "net drop needs `percent`",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net partition\"\n",
        3,
        1,
        "net partition needs `to`",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"2h\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
        2,
        12,
        "longer than the 1h cap; pass --i-know",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\nstart = \"50s\"\nduration = \"20s\"\n",
        7,
        12,
        "ends after the experiment's 1m",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net partition\"\nto = [\"10.0.0.0/33\"]\n",
        5,
        7,
        "`to`: '10.0.0.0/33': the prefix length must be a number from 0 to 32",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net partition\"\nto = [\"10.0.0.0/8\"]\nramp = { steps = 3 }\n",
        6,
        8,
        "net partition has no percent to ramp",
    ),
    ("target = { cgroup = \"/a\" }\nduration = \"1m\"\n", 1, 1, "needs at least one [[fault]]"),
    ("duration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n", 1, 1, "needs `target`"),
    (
        "target = { cgroup = \"/a\" }\nduration = 60\n",
        2,
        12,
        "expected a duration with a unit as a string, e.g. \"60s\"",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\nhttp = \"ftp://x/\"\n",
        8,
        8,
        "is not an http:// or https:// URL",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\nprometheus = { url = \"http://127.0.0.1:9090\", query = \"up\" }\nbetween = [2, 1]\n",
        7,
        1,
        "the minimum 2 is above the maximum 1",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\nprometheus = { url = \"http://127.0.0.1:9090\", query = \"up\" }\nreduce = \"median\"\n",
        9,
        10,
        "is not a reduction",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\nhttp = \"http://x/\"\nca = \"x.pem\"\n",
        9,
        1,
        "only applies to an https:// URL",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\nhttp = \"https://x/\"\nca = \"/nonexistent/ca.pem\"\n",
        9,
        6,
        "cannot read the CA file",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\ntcp = \"x:1\"\nmax = 3\n",
        9,
        1,
        "`max` does not apply to a `tcp` check",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[steady_state]\n[[steady_state.check]]\ntcp = \"x:1\"\nstatus = 200\n",
        9,
        1,
        "`status` does not apply to a `tcp` check",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\ncolour = 1\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
        3,
        1,
        "unknown key `colour` in the file",
    ),
    (
        "target = { cgroup = \"/a\" }\nduration = \"1m\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n[abort]\nconsecutive_failures = 0\n",
        7,
        24,
        "0 failures in a row",
    ),
];

#[test]
fn bad_files_point_at_the_line_and_column_with_the_reason() {
    let mut wrong = Vec::new();
    for &(text, line, column, expected) in BAD {
        let err = parse_text(text).expect_err(text);
        if !err.message.contains(expected) || !err.to_string().starts_with(&format!("exp.toml:{line}:{column}: ")) {
            wrong.push(format!("{text:?}\n  expected {line}:{column} {expected:?}\n  got      {err}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

mod fuzz {
    use proptest::prelude::*;

    use super::{GOOD, parse_text};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary text: an error or an experiment, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_text(&text);
        }

        /// A valid file with a slice cut out and something else put in: close to valid, so
        /// it reaches deep into the parser.
        #[test]
        fn mutated_experiments_never_panic(
            at in 0usize..GOOD.len(),
            cut in 0usize..40,
            insert in prop::sample::select(vec!["", "\"", "[", "]", "=", "\n", "-1", "1e99", "\"-5s\"", "true",
                "[[fault]]\n", "{ }", "99999999999999999999", "\"\u{0}\"", "percent = 101\n", "ramp = { steps = 0 }"]),
        ) {
            let mut text = GOOD.to_owned();
            let start = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            let end = (start + cut..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
            text.replace_range(start..end, insert);
            if let Err(err) = parse_text(&text) {
                // Every error has a position inside the text.
                prop_assert!(err.line >= 1 && err.line <= text.lines().count().max(1) + 1, "{err}");
            }
        }
    }
}

#[test]
fn a_pod_or_a_selector_is_a_target() {
    let with = |target: &str| parse_text(&GOOD.replace("target = { cgroup = \"/app\" }", target)).map(|e| e.target);
    assert_eq!(
        with("target = { pod = \"shop/web-1\" }").unwrap(),
        TargetName::Pod { pod: "shop/web-1".into(), container: None }
    );
    assert_eq!(
        with("target = { selector = \"app=web\" }").unwrap(),
        TargetName::Selector(crate::targets::SelectorSpec {
            selector: "app=web".into(),
            namespace: None,
            container: None,
            pick: None
        })
    );
    assert!(with("target = { pod = \"shop/web-1\", unit = \"x.service\" }").is_err());
}

#[test]
fn follow_is_for_targets_a_runtime_names_and_is_refused_at_its_position_otherwise() {
    let with = |target: &str, follow: &str| {
        parse_text(&GOOD.replace("target = { cgroup = \"/app\" }", &format!("{target}\n{follow}")))
    };
    assert!(!parse_text(GOOD).unwrap().follow, "off unless asked");
    for target in
        ["target = { container = \"web\" }", "target = { pod = \"shop/web-1\" }", "target = { selector = \"app=web\" }"]
    {
        assert!(with(target, "follow = true").unwrap().follow, "{target}");
    }
    for (target, form) in [
        ("target = { cgroup = \"/app\" }", "cgroup"),
        ("target = { unit = \"a.service\" }", "unit"),
        ("target = { pid = 7 }", "pid"),
    ] {
        let err = with(target, "follow = true").unwrap_err();
        assert!(err.to_string().starts_with("exp.toml:4:10: "), "{err}");
        assert!(err.message.contains(&format!("a target given by {form} has no name")), "{err}");
    }
    assert!(with("target = { cgroup = \"/app\" }", "follow = false").is_ok(), "follow = false is always fine");
    let err = with("target = { container = \"web\" }", "follow = \"yes\"").unwrap_err();
    assert!(err.message.contains("true or false"), "{err}");
}
