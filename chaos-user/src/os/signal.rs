//! Signals by name or number (`--signal KILL`, `SIGTERM`, `15`), for `proc kill`.
use std::fmt;

/// A signal chaos may send: a standard one (1..=31) or a real-time one (SIGRTMIN..=SIGRTMAX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Signal(i32);

/// The standard signals by name (x86_64 numbering, as the kernel's uapi signal.h has it).
const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

impl Signal {
    #[cfg(test)]
    pub(crate) const KILL: Self = Self(libc::SIGKILL);

    #[must_use]
    pub(crate) const fn number(self) -> i32 {
        self.0
    }

    /// `SIGKILL`, `SIGRTMIN+3`, ...
    #[must_use]
    pub(crate) fn name(self) -> String {
        match NAMES.iter().find(|(_, n)| *n == self.0) {
            Some((name, _)) => format!("SIG{name}"),
            None => format!("SIGRTMIN+{}", self.0 - libc::SIGRTMIN()),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl serde::Serialize for Signal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses `KILL`, `SIGKILL`, `kill`, `9`, `RTMIN+2`. Signal 0 (no signal, only a check) is
/// refused: it would "kill" without doing anything.
pub(crate) fn parse(text: &str) -> Result<Signal, String> {
    let trimmed = text.trim();
    let (rt_min, rt_max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let valid = |n: i32| (1..=31).contains(&n) || (rt_min..=rt_max).contains(&n);
    if let Ok(number) = trimmed.parse::<i32>() {
        return if valid(number) {
            Ok(Signal(number))
        } else {
            Err(format!("{number} is not a signal number: use 1..=31 or {rt_min}..={rt_max} (real-time signals)"))
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, number)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(Signal(*number));
    }
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let offset = if rest.is_empty() { Some(0) } else { rest.strip_prefix('+').and_then(|n| n.parse::<i32>().ok()) };
        if let Some(offset) = offset.filter(|&o| valid(rt_min + o)) {
            return Ok(Signal(rt_min + offset));
        }
    }
    Err(format!(
        "unknown signal {trimmed:?}: use a name (KILL, TERM, INT, HUP, QUIT, ABRT, SEGV, USR1, ...) or a number (9)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_parse_to_the_same_signal() {
        for text in ["KILL", "SIGKILL", "kill", "sigkill", "9", " 9 "] {
            assert_eq!(parse(text), Ok(Signal::KILL), "{text}");
        }
        assert_eq!(parse("TERM").unwrap().number(), 15);
        assert_eq!(parse("RTMIN+2").unwrap().number(), libc::SIGRTMIN() + 2);
    }

    #[test]
    fn unknown_signals_and_zero_are_refused() {
        for text in ["KILLL", "0", "-9", "65", "", "RTMIN+99", "SIG"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn names_print_with_the_sig_prefix() {
        assert_eq!(Signal::KILL.to_string(), "SIGKILL");
        assert_eq!(parse("15").unwrap().to_string(), "SIGTERM");
        assert_eq!(parse("RTMIN+1").unwrap().to_string(), "SIGRTMIN+1");
    }
}
