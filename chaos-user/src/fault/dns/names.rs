//! Which queries a DNS fault takes: name patterns (`--name`) and query types (`--type`), parsed
//! and checked before anything touches the kernel, and matched by the responder.
//!
//! A pattern is a name or a glob over the whole name: `*` stands for any run of characters
//! (dots included, so `*.example.com` covers every name below example.com at any depth, not
//! example.com itself), `?` for one. Matching ignores case and a trailing dot, as DNS does.
use hickory_proto::rr::RecordType;
use serde::Serialize;

/// Longest name DNS carries, in its text form without the trailing dot (RFC 1035: 255 octets
/// on the wire).
const MAX_NAME: usize = 253;
/// Longest label (RFC 1035).
const MAX_LABEL: usize = 63;

/// One `--name` pattern.
#[derive(Clone, Debug)]
pub struct NamePattern {
    /// As the user gave it, lowercased and without its trailing dot.
    text: String,
    glob: glob::Pattern,
}

impl NamePattern {
    /// Whether `name` (lowercase, no trailing dot) matches.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        self.glob.matches_with(
            name,
            glob::MatchOptions {
                case_sensitive: false,
                require_literal_separator: false,
                require_literal_leading_dot: false,
            },
        )
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Serialize for NamePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Parses a `--name` pattern: `api.example.com`, `*.example.com`, `Example.COM.`.
pub fn parse_name_pattern(text: &str) -> Result<NamePattern, String> {
    let trimmed = text.trim();
    let name = trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase();
    let example = "give a name or a glob, e.g. api.example.com or '*.example.com'";
    if name.is_empty() {
        return Err(format!("'{text}' is an empty name: {example}"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.*?".contains(*c))) {
        return Err(format!(
            "'{text}': {bad:?} cannot be in a name pattern (letters, digits, '-', '_', dots, and the globs '*' \
             and '?'); {example}"
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("'{text}' has an empty label (two dots in a row, or a leading dot): {example}"));
    }
    if let Some(label) = name.split('.').find(|l| l.len() > MAX_LABEL && !l.contains(['*', '?'])) {
        return Err(format!("'{text}': the label '{label}' is longer than the {MAX_LABEL} characters DNS allows"));
    }
    if name.len() > MAX_NAME && !name.contains('*') {
        return Err(format!("'{text}' is longer than the {MAX_NAME} characters a DNS name may have"));
    }
    let glob = glob::Pattern::new(&name).map_err(|err| format!("'{text}' is not a valid pattern: {err}"))?;
    Ok(NamePattern { text: name, glob })
}

/// One `--type`: a query type, or `any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryType {
    Any,
    Only(RecordType),
}

/// The types `--type` accepts besides `any` (the common ones a service asks for).
pub const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::MX,
    RecordType::CNAME,
    RecordType::PTR,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CAA,
    RecordType::HTTPS,
    RecordType::SVCB,
];

/// Parses `--type`: `A`, `aaaa`, `SRV`, ..., or `any`.
pub fn parse_query_type(text: &str) -> Result<QueryType, String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper == "ANY" {
        return Ok(QueryType::Any);
    }
    TYPES.iter().find(|t| t.to_string() == upper).map(|&t| QueryType::Only(t)).ok_or_else(|| {
        let names: Vec<String> = TYPES.iter().map(ToString::to_string).collect();
        format!("'{text}' is not a query type chaos matches: {} or any", names.join(", "))
    })
}

/// The `--type`s of a fault: empty or `any` among them means every type.
#[derive(Clone, Debug, Default)]
pub struct QueryTypes(Vec<RecordType>);

impl QueryTypes {
    #[must_use]
    pub fn of(types: &[QueryType]) -> Self {
        if types.contains(&QueryType::Any) {
            return Self::default();
        }
        Self(types.iter().filter_map(|t| if let QueryType::Only(t) = t { Some(*t) } else { None }).collect())
    }

    #[must_use]
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    #[must_use]
    pub fn matches(&self, query_type: RecordType) -> bool {
        self.is_any() || self.0.contains(&query_type)
    }

    /// Whether any type it takes has addresses for answers (A, AAAA), for `spoof`.
    #[must_use]
    pub fn has_addresses(&self) -> bool {
        self.is_any() || self.0.iter().any(|t| matches!(t, RecordType::A | RecordType::AAAA))
    }

    /// `A, AAAA` or `any type`.
    #[must_use]
    pub fn describe(&self) -> String {
        if self.is_any() {
            return "any type".to_owned();
        }
        self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    #[must_use]
    pub fn names(&self) -> Vec<String> {
        if self.is_any() { vec!["any".to_owned()] } else { self.0.iter().map(ToString::to_string).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_case_and_trailing_dot_aside() {
        let wild = parse_name_pattern("*.Example.com.").unwrap();
        assert!(wild.matches("api.example.com"));
        assert!(wild.matches("a.b.example.com"), "any depth below");
        assert!(!wild.matches("example.com"), "not the name itself");
        assert!(!wild.matches("api.example.com.evil"));
        let exact = parse_name_pattern("API.example.com").unwrap();
        assert_eq!(exact.as_str(), "api.example.com");
        assert!(exact.matches("api.example.com") && !exact.matches("xapi.example.com"));
        assert!(parse_name_pattern("db-?.internal").unwrap().matches("db-1.internal"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        assert!(parse_name_pattern("").unwrap_err().contains("empty name"));
        assert!(parse_name_pattern(".").unwrap_err().contains("empty name"));
        assert!(parse_name_pattern("a..b").unwrap_err().contains("empty label"));
        assert!(parse_name_pattern("exa mple.com").unwrap_err().contains("' '"));
        assert!(parse_name_pattern("[ab].com").unwrap_err().contains("'['"));
        assert!(parse_name_pattern(&format!("{}.com", "a".repeat(64))).unwrap_err().contains("63"));
    }

    #[test]
    fn types_parse_in_any_case_and_any_means_all() {
        assert_eq!(parse_query_type("aaaa"), Ok(QueryType::Only(RecordType::AAAA)));
        assert_eq!(parse_query_type("Any"), Ok(QueryType::Any));
        assert!(parse_query_type("BOGUS").unwrap_err().contains("A, AAAA, SRV, TXT"));
        let a = QueryTypes::of(&[QueryType::Only(RecordType::A)]);
        assert!(a.matches(RecordType::A) && !a.matches(RecordType::AAAA) && a.has_addresses());
        assert!(QueryTypes::of(&[QueryType::Only(RecordType::A), QueryType::Any]).is_any());
        assert!(!QueryTypes::of(&[QueryType::Only(RecordType::TXT)]).has_addresses());
    }
}
