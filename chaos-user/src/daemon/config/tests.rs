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
            "daemon.toml:3:21: `days`: \"Moonday\" is not a day",
        ),
        ("[schedule]\nevery = \"1m\"\ncron = \"0 * * * * *\"", "exactly one of"),
        ("[schedule]\nevery = \"1m\"\nwindows = [{ from = \"10:00\", to = \"10:00\" }]", "is empty"),
        (
            "[schedule]\nevery = \"1m\"\n[budget]\nmax_concurrent = 0",
            "daemon.toml:4:18: `max_concurrent`: 0 would never",
        ),
        ("[schedule]\nevery = \"1m\"\n[safety]\ncooldown = \"1h\"", "daemon.toml:4:1: unknown key `cooldown`"),
    ];
    for (text, expected) in cases {
        let error = error_of(text);
        assert!(error.contains(expected), "{text:?}: expected {expected:?} in {error}");
    }
}
