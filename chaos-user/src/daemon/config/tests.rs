//! The daemon configuration's parser: windows, days, times, and errors at their positions.
use super::*;

fn schedule_of(text: &str) -> Result<Schedule, FileError> {
    // The schedule is read before the catalogue, so a missing experiment file comes later.
    let source = Source::new("daemon.toml", format!("{text}\n[[experiment]]\nfile = \"/nonexistent.toml\"\n"));
    match DaemonConfig::parse(&source) {
        Ok(config) => Ok(config.schedule),
        Err(err) if err.message.contains("does not exist") => Err(FileError { message: "ok".into(), ..err }),
        Err(err) => Err(err),
    }
}

fn error_of(text: &str) -> String {
    schedule_of(text).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn days_and_times_of_windows_parse_with_ranges_that_wrap() {
    let source = Source::new("d.toml", "days = \"Fri-Mon,Wed\"\nfrom = \"22:00\"\nto = \"24:00\"\nat = \"10:15:30\"\n");
    let document = source.parse().unwrap();
    let root = document.root();
    assert_eq!(parse_days(&root.get("days").unwrap()).unwrap(), [true, false, true, false, true, true, true]);
    assert_eq!(parse_time_of_day(&root.get("to").unwrap()).unwrap(), 86_400);
    assert_eq!(parse_time_of_day(&root.get("at").unwrap()).unwrap(), 10 * 3600 + 15 * 60 + 30);
}

#[test]
fn schedule_errors_point_at_the_value() {
    let cases: &[(&str, &str)] = &[
        (
            "[schedule]\nevery = \"1m\"\nwindows = [{ days = \"Moonday\", from = \"10:00\", to = \"11:00\" }]",
            "daemon.toml:3:21: `days` (the days the window is on): \"Moonday\" is not a day",
        ),
        ("[schedule]\nevery = \"1m\"\ncron = \"0 * * * * *\"", "exactly one of"),
        ("[schedule]\nevery = \"1m\"\nwindows = [{ from = \"10:00\", to = \"10:00\" }]", "is empty"),
        (
            "[schedule]\nevery = \"1m\"\n[budget]\nmax_concurrent = 0",
            "daemon.toml:4:18: `max_concurrent` (the most runs under way at once): 0 would never",
        ),
        ("[schedule]\nevery = \"1m\"\n[safety]\ncooldown = \"1h\"", "daemon.toml:4:1: unknown key `cooldown`"),
    ];
    for (text, expected) in cases {
        let error = error_of(text);
        assert!(error.contains(expected), "{text:?}: expected {expected:?} in {error}");
    }
}

#[test]
fn every_key_error_says_what_that_key_is() {
    // Zero is no gap and no jitter: accepted (the only error left is the test's missing file).
    for zero in ["[budget]\nmin_gap_per_target = \"0s\"", "jitter = \"0s\""] {
        let error = error_of(&format!("[schedule]\nevery = \"10m\"\n{zero}"));
        assert!(error.ends_with(": ok"), "{zero}: {error}");
    }
    let cases: &[(&str, &str)] = &[
        (
            "[budget]\nmin_gap_per_target = \"soon\"",
            "daemon.toml:4:22: `min_gap_per_target` (the least time between two runs on one target; 0s for none): \
             'soon' is not a duration",
        ),
        (
            "[budget]\nmin_gap_per_target = 30",
            "`min_gap_per_target` (the least time between two runs on one target; 0s for none): expected a duration",
        ),
        (
            "[safety]\ncool_down = \"0s\"",
            "`cool_down` (how long injection stays paused after a violated steady state; absent: until `chaos daemon \
             resume`): the string \"0s\" is zero",
        ),
        (
            "[budget]\nmax_runs_per_hour = -1",
            "`max_runs_per_hour` (the most runs started in any hour): -1 is out of range",
        ),
        (
            "[budget]\nmax_share = 0",
            "`max_share` (the largest share of a selector's matches under fault at once, in %): 0",
        ),
        ("keep_timelines = 0", "`keep_timelines` (how many timelines of past runs are kept): 0 is out of range"),
        ("metrics = 9464", "`metrics` (the address:port that serves Prometheus /metrics, or false for none): expected"),
    ];
    for (text, expected) in cases {
        // Top-level keys go before the first table.
        let text = if text.starts_with('[') {
            format!("[schedule]\nevery = \"10m\"\n{text}")
        } else {
            format!("{text}\n[schedule]\nevery = \"10m\"")
        };
        let error = error_of(&text);
        assert!(error.contains(expected), "{text:?}: expected {expected:?} in {error}");
    }
    let every = error_of("[schedule]\nevery = \"0s\"");
    assert!(every.contains("`every` (the time between two scheduled runs): the string \"0s\" is zero"), "{every}");
    assert!(!every.contains("fault"), "{every}");
}

/// The selector of a one-experiment configuration (the experiment file is this test's own).
fn selector_of(kubernetes: &str, targets: &str) -> Result<Option<Selector>, String> {
    let dir = std::env::temp_dir().join(format!("chaos-selector-{}-{}", std::process::id(), targets.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let experiment = "name = \"x\"\ntarget = { cgroup = \"/x\" }\nduration = \"1s\"\n\n\
                      [[fault]]\nkind = \"net drop\"\npercent = 10\n";
    std::fs::write(dir.join("e.toml"), experiment).unwrap();
    let text =
        format!("[schedule]\nevery = \"1m\"\n{kubernetes}\n[[experiment]]\nfile = \"e.toml\"\ntargets = {targets}\n");
    let source = Source::new(dir.join("daemon.toml").display().to_string(), text);
    let result = DaemonConfig::parse(&source).map(|c| c.catalogue[0].selector.clone()).map_err(|e| e.to_string());
    std::fs::remove_dir_all(&dir).unwrap();
    result
}

#[test]
fn container_name_and_pod_selectors_parse_and_errors_point_at_the_value() {
    let shop = "[kubernetes]\nnamespaces = [\"shop\"]";
    assert_eq!(selector_of("", "{ container_name = \"web-*\" }"), Ok(Some(Selector::ContainerName("web-*".into()))));
    let pods = selector_of(shop, "{ pods = \"app=web,tier=db\", namespace = \"shop\", container_name = \"nginx\" }");
    assert_eq!(
        pods,
        Ok(Some(Selector::Pods(PodSelector {
            text: "app=web,tier=db".into(),
            labels: vec![("app".into(), "web".into()), ("tier".into(), "db".into())],
            namespace: Some("shop".into()),
            container_name: Some("nginx".into()),
        })))
    );
    // Line 6 is the `targets` line; the column is the value's.
    let cases: &[(&str, &str, &str)] = &[
        (
            "",
            "{ pods = \"app\" }",
            "daemon.toml:6:20: `pods` (the labels of the pods to pick from): \"app\" in \"app\" is not",
        ),
        (
            "",
            "{ pods = \"app=web\", namespace = \"shop\" }",
            "6:43: `namespace` (the one namespace the pods are picked in): namespace \"shop\" has not opted in",
        ),
        (shop, "{ pods = \"app=web\", namespace = \"Shop!\" }", "is not a namespace name"),
        ("", "{ namespace = \"shop\" }", "6:13: `namespace` narrows a pod selector"),
        ("", "{ pods = \"a=b\", unit = \"x.service\" }", "`unit` and `pods` are two selectors"),
        (
            "",
            "{ container_name = \"web/x\" }",
            "6:30: `container_name` (a glob over container names): a container name glob is a name",
        ),
        ("", "{ container_name = \"web\", cgroup = \"/x\" }", "takes exactly one of"),
        ("", "{ pod = \"a=b\" }", "6:13: unknown key `pod`"),
        (
            "[kubernetes]\nnamespaces = [\"-x\"]",
            "{ cgroup = \"/x\" }",
            "daemon.toml:4:14: `namespaces` (the namespaces that opted in: only their pods may be picked): \"-x\" is not",
        ),
    ];
    for (kubernetes, targets, expected) in cases {
        let error = selector_of(kubernetes, targets).unwrap_err();
        assert!(error.contains(expected), "{targets}: expected {expected:?} in {error}");
    }
}

#[test]
fn follow_needs_a_selector_by_name_and_says_so_at_its_position() {
    let dir = std::env::temp_dir().join(format!("chaos-follow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let experiment = dir.join("e.toml");
    std::fs::write(
        &experiment,
        "name = \"e\"\ntarget = { cgroup = \"/x\" }\nduration = \"1s\"\n[[fault]]\nkind = \"net drop\"\npercent = 1\n",
    )
    .unwrap();
    let config = |targets: &str| {
        let text = format!(
            "[schedule]\nevery = \"1m\"\n[[experiment]]\nfile = \"{}\"\ntargets = {targets}\nfollow = true\n",
            experiment.display()
        );
        DaemonConfig::parse(&Source::new("daemon.toml", text))
    };
    let refused = config("{ cgroup = \"/a/*\" }").map(|_| ()).unwrap_err().to_string();
    assert!(refused.starts_with("daemon.toml:6:10:") && refused.contains("container_name"), "{refused}");
    let accepted = config("{ container_name = \"web-*\" }").expect("follow with a name selector");
    assert!(accepted.catalogue[0].follow);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_configuration_without_experiments_is_valid_and_schedules_nothing() {
    let source = Source::new("daemon.toml", "# nothing yet\n[schedule]\nevery = \"10m\"\n");
    let config = DaemonConfig::parse(&source).expect("an empty catalogue is a valid configuration");
    assert!(config.catalogue.is_empty());
    let weights: Vec<u32> = config.catalogue.iter().map(|e| e.weight).collect();
    assert_eq!(crate::daemon::scheduler::pick_weighted(&weights, 7), None, "nothing is ever picked");
}
