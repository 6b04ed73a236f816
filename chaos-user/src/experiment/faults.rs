//! How a `[[fault]]` table becomes the options the command line builds: the table is turned
//! into the flags the command line would have received (`percent = 20` -> `--percent=20`,
//! `remote = ["a", "b"]` -> `--remote=a --remote=b`, `fix_checksum = true` ->
//! `--fix-checksum`, `trace = true` -> `--trace-injections`) and parsed by the kind's own clap definition (`fault::registry`). Errors
//! are then mapped back to the key's position in the file.
use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::source::{FileError, Item, Table};
use crate::fault::{PlanFault, registry::FaultKind};

/// A fault's options read from its table, and the command line they stand for.
#[derive(Debug)]
pub(crate) struct ParsedOptions {
    pub options: Box<dyn PlanFault>,
    /// The equivalent flags, e.g. `["--percent=20", "--direction=egress"]`.
    pub flags: Vec<String>,
}

/// Reads the options of `kind` from `table`, skipping the keys the experiment itself uses
/// (`reserved`: kind, start, duration, ramp...).
pub(crate) fn parse_options(
    kind: &FaultKind,
    table: &Table<'_>,
    reserved: &[&str],
) -> Result<ParsedOptions, FileError> {
    let command = kind.command();
    let mut flags = Vec::new();
    // Which key each flag came from, to put clap's errors where the user wrote the value.
    let mut origins: Vec<(String, Item<'_>)> = Vec::new();
    for item in table.items() {
        if reserved.contains(&item.key.as_str()) {
            continue;
        }
        // `trace = true` is the file's short word for `--trace-injections`.
        let long = if item.key == "trace" { "trace-injections".to_owned() } else { item.key.replace('_', "-") };
        let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(long.as_str())) else {
            return Err(item.error_at_key(format!(
                "unknown option `{}` for {}; it takes: {} (and {})",
                item.key,
                kind.name,
                kind.option_names().join(", "),
                reserved.join(", ")
            )));
        };
        if arg.get_action().takes_values() {
            let values = match item.value {
                toml::de::DeValue::Array(_) => {
                    if !matches!(arg.get_action(), clap::ArgAction::Append) {
                        return Err(item.error("takes one value, not an array"));
                    }
                    item.array()?
                }
                _ => vec![item.clone()],
            };
            for value in values {
                flags.push(format!("--{long}={}", value.scalar_text()?));
            }
        } else if item.bool()? {
            flags.push(format!("--{long}"));
        }
        origins.push((long, item));
    }
    let matches = command.try_get_matches_from(&flags).map_err(|err| clap_error(kind, table, &origins, &err))?;
    let options = kind.build(&matches).map_err(|err| clap_error(kind, table, &origins, &err))?;
    Ok(ParsedOptions { options, flags })
}

/// Puts a clap error at the key it is about, in the file's words.
fn clap_error(kind: &FaultKind, table: &Table<'_>, origins: &[(String, Item<'_>)], err: &clap::Error) -> FileError {
    let arg_name = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    // "--percent <PERCENT>" -> "percent"
    let long = arg_name
        .as_deref()
        .and_then(|a| a.strip_prefix("--"))
        .map(|a| a.split([' ', '=']).next().unwrap_or(a).to_owned());
    let key = long.as_ref().map(|l| l.replace('-', "_"));
    let origin = long.as_ref().and_then(|l| origins.iter().find(|(o, _)| o == l)).map(|(_, item)| item);
    // In an array, point at the element that was refused.
    let bad_value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let element = origin
        .zip(bad_value)
        .and_then(|(item, value)| item.array().ok()?.into_iter().find(|e| e.scalar_text().is_ok_and(|t| t == value)));
    let origin = element.as_ref().or(origin);
    match (err.kind(), origin) {
        (ErrorKind::MissingRequiredArgument, _) => {
            let missing: Vec<String> = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(v)) => v.clone(),
                Some(ContextValue::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            };
            let keys: Vec<String> = missing
                .iter()
                .map(|m| {
                    format!("`{}`", m.trim_start_matches("--").split([' ', '=']).next().unwrap_or(m).replace('-', "_"))
                })
                .collect();
            table.error(format!("{} needs {}", kind.name, keys.join(" and ")))
        }
        (ErrorKind::ValueValidation, Some(item)) => {
            // The parser's own explanation (the command line shows the same text).
            let reason = std::error::Error::source(err).map_or_else(|| first_line(err), ToString::to_string);
            item.error(reason)
        }
        (ErrorKind::InvalidValue, Some(item)) => {
            let value = match err.get(ContextKind::InvalidValue) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            let valid = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => v.join(", "),
                _ => String::new(),
            };
            item.error(format!("'{value}' is not one of: {valid}"))
        }
        (ErrorKind::ArgumentConflict, Some(item)) => item.error(first_line(err)),
        (_, Some(item)) => item.error(first_line(err)),
        (_, None) => {
            let what = key.map_or_else(String::new, |k| format!("`{k}`: "));
            table.error(format!("{}: {what}{}", kind.name, first_line(err)))
        }
    }
}

fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned()
}
