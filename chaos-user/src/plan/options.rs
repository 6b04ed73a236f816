//! The option values every family shares, parsed and validated before anything touches the
//! kernel: percentages (as exact parts per million), durations and delays, and their caps.
//!
//! Parsers here return `Err(String)` with the whole explanation, so clap can print
//! "invalid value '101' for '--percent <PERCENT>': ..." and the same text serves experiment files.
use std::{fmt, time::Duration};

use chaos_common::PPM_SCALE;
use serde::Serialize;

/// A probability in parts per million, parsed from a percentage without going through floats
/// ("20" -> 200 000 ppm, "0.0001" -> 1 ppm), so what the user typed is exactly what the kernel
/// gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ppm(u32);

impl Ppm {
    pub const ZERO: Self = Self(0);
    pub const ALL: Self = Self(PPM_SCALE);

    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// From parts per million (clamped to 100 %).
    #[must_use]
    pub const fn from_ppm(ppm: u32) -> Self {
        Self(if ppm > PPM_SCALE { PPM_SCALE } else { ppm })
    }

    #[must_use]
    pub fn as_percent(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }
}

impl fmt::Display for Ppm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 10_000, self.0 % 10_000);
        if frac == 0 {
            write!(f, "{whole}%")
        } else {
            let frac = format!("{frac:04}");
            write!(f, "{whole}.{}%", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Ppm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_percent())
    }
}

/// Reads a percentage written by `Serialize` (a timeline read back), to the nearest ppm.
impl<'de> serde::Deserialize<'de> for Ppm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let percent = f64::deserialize(d)?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(serde::de::Error::custom(format!("{percent} is not a percentage")));
        }
        Ok(Self::from_ppm((percent * 10_000.0).round() as u32))
    }
}

/// Parses a percentage: `20`, `20%`, `0.5`, `99.9999`. At most four decimals (1 ppm).
pub fn parse_percent(text: &str) -> Result<Ppm, String> {
    let trimmed = text.trim();
    let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim();
    let bad = || format!("'{text}' is not a percentage: expected a number from 0 to 100, e.g. 20 or 0.5");
    if number.is_empty() || number.starts_with('-') {
        return Err(if number.starts_with('-') {
            format!("'{text}' is negative: a percentage goes from 0 to 100")
        } else {
            bad()
        });
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > 4 && frac[4..].bytes().any(|b| b != b'0') {
        return Err(format!("'{text}' is finer than chaos can inject: the smallest step is 0.0001 % (1 ppm)"));
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac4 = format!("{:0<4}", &frac[..frac.len().min(4)]);
    let frac: u64 = frac4.parse().map_err(|_| bad())?;
    let ppm = whole.saturating_mul(10_000).saturating_add(frac);
    if ppm > u64::from(PPM_SCALE) {
        return Err(format!("'{text}' is over 100 %: a percentage goes from 0 to 100"));
    }
    Ok(Ppm(ppm as u32))
}

/// The longest fault chaos runs without `--i-know`: long enough for any experiment, short enough
/// that a forgotten one does not become the new normal.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);

/// Parses a duration such as `30s`, `5m`, `1h30m`, `250ms`. Zero is refused: a fault that ends
/// before it starts is a typo.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(text)?;
    if duration.is_zero() {
        return Err(format!("'{text}' is zero: a fault must last some time, e.g. 30s"));
    }
    Ok(duration)
}

/// Parses a duration that may be zero (`0s`: none), such as a jitter or a gap; negative and
/// unit-less values are refused with the same messages as [`parse_duration`].
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!("'{text}' is negative: a duration must be positive, e.g. 30s"));
    }
    humantime::parse_duration(trimmed).map_err(|err| {
        let hint = if trimmed.bytes().all(|b| b.is_ascii_digit()) && !trimmed.is_empty() {
            format!(" (a unit is required: did you mean {trimmed}s?)")
        } else {
            format!(" ({err})")
        };
        format!("'{text}' is not a duration: expected a number with a unit, e.g. 30s, 5m, 1h30m{hint}")
    })
}

/// The longest delay chaos holds a call or a packet: beyond it a stopped process or a queued
/// packet stops looking like latency (and fq drops packets scheduled further out than 10 s).
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// Parses a delay such as `50ms`, `1.5s` would be `1500ms`, `250us`: positive, at most 10 s.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let delay = parse_duration(text)?;
    if delay > MAX_DELAY {
        return Err(format!("'{text}' is longer than the {} a delay may last", humantime::format_duration(MAX_DELAY)));
    }
    Ok(delay)
}

/// Durations as seconds (a float) in JSON: plans, reports, a detached experiment's schedule.
pub fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Reads what [`serialize_secs`] wrote.
pub fn deserialize_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = <f64 as serde::Deserialize>::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

/// Refuses durations above the cap unless the user said `--i-know`.
pub fn check_duration_cap(duration: Duration, i_know: bool) -> Result<(), String> {
    if duration > DEFAULT_MAX_DURATION && !i_know {
        return Err(format!(
            "--for {} is longer than the {} cap; pass --i-know to run it anyway",
            humantime::format_duration(duration),
            humantime::format_duration(DEFAULT_MAX_DURATION)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_exactly() {
        assert_eq!(parse_percent("20"), Ok(Ppm(200_000)));
        assert_eq!(parse_percent("20%"), Ok(Ppm(200_000)));
        assert_eq!(parse_percent(" 0.5 "), Ok(Ppm(5_000)));
        assert_eq!(parse_percent(".5"), Ok(Ppm(5_000)));
        assert_eq!(parse_percent("0.0001"), Ok(Ppm(1)));
        assert_eq!(parse_percent("12.34560"), Ok(Ppm(123_456)));
        assert_eq!(parse_percent("100"), Ok(Ppm::ALL));
        assert_eq!(parse_percent("0"), Ok(Ppm::ZERO));
        assert_eq!(parse_percent("100.0000"), Ok(Ppm::ALL));
    }

    #[test]
    fn bad_percentages_say_why() {
        let cases = [
            ("101", "is over 100 %"),
            ("100.0001", "is over 100 %"),
            ("-1", "is negative"),
            ("abc", "is not a percentage"),
            ("", "is not a percentage"),
            ("1e3", "is not a percentage"),
            ("0.00001", "finer than chaos can inject"),
            ("1.2.3", "is not a percentage"),
            ("%", "is not a percentage"),
            (".", "is not a percentage"),
        ];
        for (input, expected) in cases {
            let err = parse_percent(input).expect_err(input);
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn ppm_displays_like_it_was_typed() {
        assert_eq!(Ppm(200_000).to_string(), "20%");
        assert_eq!(Ppm(5_000).to_string(), "0.5%");
        assert_eq!(Ppm(1).to_string(), "0.0001%");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn bad_durations_say_why() {
        let cases = [
            ("30", "did you mean 30s?"),
            ("-5s", "is negative"),
            ("0s", "is zero"),
            ("5x", "is not a duration"),
            ("", "is not a duration"),
        ];
        for (input, expected) in cases {
            let err = parse_duration(input).expect_err(input);
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn delays_are_capped() {
        assert_eq!(parse_delay("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_delay("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_delay("11s").unwrap_err().contains("longer than the 10s"));
        assert!(parse_delay("0ms").unwrap_err().contains("is zero"));
    }

    #[test]
    fn the_duration_cap_needs_i_know() {
        assert!(check_duration_cap(Duration::from_secs(3600), false).is_ok());
        let err = check_duration_cap(Duration::from_secs(3601), false).unwrap_err();
        assert!(err.contains("--i-know"), "{err}");
        assert!(check_duration_cap(Duration::from_secs(7200), true).is_ok());
    }
}
