//! An experiment file as text with positions: every table, key and value knows where it is, so
//! each error names `file:line:column` and the reason.
//!
//! The toml crate's `DeTable` keeps the byte span of every key and value; this module wraps it
//! with typed accessors whose errors say which key, what was expected and what was found, and
//! with a check that a table has no key chaos does not know (a typo must not be ignored).
use std::{cell::RefCell, fmt, ops::Range, time::Duration};

use toml::de::{DeTable, DeValue};

use crate::plan::options::{self, Ppm};

/// An error in a file, at a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub path: String,
    /// 1-based line and column (in characters).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path, self.line, self.column, self.message)
    }
}

impl std::error::Error for FileError {}

/// The text of a file and its name, for turning byte offsets into positions.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: String,
    pub text: String,
}

impl Source {
    #[must_use]
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self { path: path.into(), text: text.into() }
    }

    /// 1-based (line, column) of a byte offset.
    #[must_use]
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    #[must_use]
    pub fn error(&self, span: &Range<usize>, message: impl Into<String>) -> FileError {
        let (line, column) = self.position(span.start);
        FileError { path: self.path.clone(), line, column, message: message.into() }
    }

    /// Parses the text as a TOML document; syntax errors come with their position.
    pub fn parse(&self) -> Result<Document<'_>, FileError> {
        let root = DeTable::parse(&self.text).map_err(|err| {
            let span = err.span().unwrap_or(0..0);
            self.error(&span, format!("not valid TOML: {}", err.message().trim()))
        })?;
        Ok(Document { source: self, span: root.span(), root: root.into_inner() })
    }
}

/// A parsed document; [`Document::root`] reads it.
pub struct Document<'a> {
    source: &'a Source,
    span: Range<usize>,
    root: DeTable<'a>,
}

impl Document<'_> {
    #[must_use]
    pub fn root(&self) -> Table<'_> {
        Table {
            source: self.source,
            entries: &self.root,
            span: self.span.clone(),
            name: "the file".into(),
            used: RefCell::default(),
        }
    }
}

/// A TOML table being read: accessors mark keys as used, [`Table::finish`] refuses the rest.
pub struct Table<'a> {
    source: &'a Source,
    entries: &'a DeTable<'a>,
    pub span: Range<usize>,
    /// How errors name it, e.g. "[steady_state]" or "the [[fault]] at line 12".
    pub name: String,
    used: RefCell<Vec<String>>,
}

impl<'a> Table<'a> {
    const fn entries(&self) -> &'a DeTable<'a> {
        self.entries
    }

    #[must_use]
    pub const fn source(&self) -> &'a Source {
        self.source
    }

    /// The value of `key`, if present (and marks it as used).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<Item<'a>> {
        let (k, v) = self.entries().iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
        self.used.borrow_mut().push(key.to_owned());
        Some(Item {
            source: self.source,
            key: key.to_owned(),
            key_span: k.span(),
            span: v.span(),
            value: v.get_ref(),
            what: None,
        })
    }

    /// The value of `key`, or an error at the table saying it is missing.
    pub fn require(&self, key: &str, example: &str) -> Result<Item<'a>, FileError> {
        self.get(key).ok_or_else(|| self.error(format!("{} needs `{key}`, e.g. {example}", self.name)))
    }

    /// Every entry, in file order (for tables whose keys are not fixed, like a fault's options).
    pub fn items(&self) -> impl Iterator<Item = Item<'a>> + use<'a> {
        let source = self.source;
        self.entries().iter().map(move |(k, v)| Item {
            source,
            key: k.get_ref().to_string(),
            key_span: k.span(),
            span: v.span(),
            value: v.get_ref(),
            what: None,
        })
    }

    /// Refuses keys that no accessor asked for: a misspelt key must not be silently ignored.
    pub fn finish(&self, known: &[&str]) -> Result<(), FileError> {
        let used = self.used.borrow();
        for (key, _) in self.entries() {
            let name = key.get_ref().as_ref();
            if !used.iter().any(|u| u == name) {
                let expected =
                    if known.is_empty() { String::new() } else { format!("; expected one of: {}", known.join(", ")) };
                return Err(self.source.error(&key.span(), format!("unknown key `{name}` in {}{expected}", self.name)));
            }
        }
        Ok(())
    }

    #[must_use]
    pub fn error(&self, message: impl Into<String>) -> FileError {
        self.source.error(&self.span, message)
    }
}

/// One value of a table, with its key and where both are.
#[derive(Clone)]
pub struct Item<'a> {
    source: &'a Source,
    pub key: String,
    pub key_span: Range<usize>,
    pub span: Range<usize>,
    pub value: &'a DeValue<'a>,
    /// What the key is, said by every error about its value (see [`Item::described`]).
    pub what: Option<&'static str>,
}

impl<'a> Item<'a> {
    /// The same value, whose errors say what its key is: "`min_gap_per_target` (the least time
    /// between two runs on one target): ...", so a refusal never reads as if about another key.
    #[must_use]
    pub fn described(mut self, what: &'static str) -> Self {
        self.what = Some(what);
        self
    }

    #[must_use]
    pub fn error(&self, message: impl Into<String>) -> FileError {
        let key = match self.what {
            Some(what) => format!("`{}` ({what})", self.key),
            None => format!("`{}`", self.key),
        };
        self.source.error(&self.span, format!("{key}: {}", message.into()))
    }

    /// An error about the key itself (unknown, misplaced), at the key.
    #[must_use]
    pub fn error_at_key(&self, message: impl Into<String>) -> FileError {
        self.source.error(&self.key_span, message)
    }

    fn type_error(&self, expected: &str) -> FileError {
        self.error(format!("expected {expected}, found {}", describe(self.value)))
    }

    pub fn str(&self) -> Result<&'a str, FileError> {
        match self.value {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.type_error("a string")),
        }
    }

    pub fn bool(&self) -> Result<bool, FileError> {
        self.value.as_bool().ok_or_else(|| self.type_error("true or false"))
    }

    /// An integer (a TOML integer, or a string holding one).
    pub fn integer<T: TryFrom<i64>>(&self, range: &str) -> Result<T, FileError> {
        let text = match self.value {
            DeValue::Integer(i) if i.radix() == 10 => i.as_str().replace('_', ""),
            DeValue::Integer(i) => {
                return i64::from_str_radix(&i.as_str().replace('_', ""), i.radix())
                    .ok()
                    .and_then(|n| T::try_from(n).ok())
                    .ok_or_else(|| self.error(format!("{} is out of range: expected {range}", i.as_str())));
            }
            _ => return Err(self.type_error(&format!("an integer ({range})"))),
        };
        text.parse::<i64>()
            .ok()
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| self.error(format!("{text} is out of range: expected {range}")))
    }

    /// The value as it was written, for numbers and strings: what a command-line flag would
    /// have received. Numbers keep their exact text (`0.5` stays `0.5`, not a float).
    pub fn scalar_text(&self) -> Result<String, FileError> {
        match self.value {
            DeValue::String(s) => Ok(s.to_string()),
            DeValue::Integer(i) => Ok(i.as_str().replace('_', "")),
            DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
            _ => Err(self.type_error("a number or a string")),
        }
    }

    /// A duration such as "30s" (the command line's parser and messages), longer than zero.
    pub fn duration(&self) -> Result<Duration, FileError> {
        let duration = self.duration_or_zero()?;
        if duration.is_zero() {
            return Err(
                self.error(format!("{} is zero: expected a time longer than that, e.g. \"30s\"", describe(self.value)))
            );
        }
        Ok(duration)
    }

    /// A duration that may be zero ("0s": none), such as a jitter or a gap.
    pub fn duration_or_zero(&self) -> Result<Duration, FileError> {
        let text = match self.value {
            DeValue::String(s) => s.as_ref(),
            DeValue::Integer(i) => {
                return Err(self.error(format!(
                    "expected a duration with a unit as a string, e.g. \"{}s\", found the number {}",
                    i.as_str(),
                    i.as_str()
                )));
            }
            _ => return Err(self.type_error("a duration as a string, e.g. \"30s\"")),
        };
        options::parse_duration_or_zero(text).map_err(|e| self.error(e))
    }

    /// A percentage: `20`, `0.5` or `"99.9%"` (the command line's parser and messages).
    pub fn percent(&self) -> Result<Ppm, FileError> {
        let text = self.scalar_text()?;
        options::parse_percent(&text).map_err(|e| self.error(e))
    }

    /// A table value, to read further.
    pub fn table(&self, name: impl Into<String>) -> Result<Table<'a>, FileError> {
        match self.value {
            DeValue::Table(entries) => Ok(Table {
                source: self.source,
                entries,
                span: self.span.clone(),
                name: name.into(),
                used: RefCell::default(),
            }),
            _ => Err(self.type_error("a table")),
        }
    }

    /// An array of values.
    pub fn array(&self) -> Result<Vec<Item<'a>>, FileError> {
        match self.value {
            DeValue::Array(values) => Ok(values
                .iter()
                .map(|v| Item {
                    source: self.source,
                    key: self.key.clone(),
                    key_span: self.key_span.clone(),
                    span: v.span(),
                    value: v.get_ref(),
                    what: self.what,
                })
                .collect()),
            _ => Err(self.type_error("an array")),
        }
    }

    /// Strings, from one string or an array of them.
    pub fn strings(&self) -> Result<Vec<String>, FileError> {
        match self.value {
            DeValue::Array(_) => self.array()?.iter().map(|i| i.str().map(str::to_owned)).collect(),
            _ => Ok(vec![self.str()?.to_owned()]),
        }
    }
}

/// What a value is, for "expected X, found Y".
#[must_use]
pub fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("the string \"{s}\""),
        DeValue::Integer(i) => format!("the integer {}", i.as_str()),
        DeValue::Float(f) => format!("the number {}", f.as_str()),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}
