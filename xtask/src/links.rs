//! The Markdown link check of the lint step: every relative link (and image) in the project's
//! `.md` files must name a file or directory that exists inside the repository and, with
//! `#anchor` on a Markdown file, one of its headings as GitHub names them. The guide is many
//! pages that point at each other's sections; a moved page or a renamed heading would otherwise
//! leave links that only a reader finds broken.
//!
//! The Markdown is read by pulldown-cmark, the CommonMark parser rustdoc and mdBook use, so
//! what counts as a link or a heading is what a renderer sees: text in code spans and fenced
//! blocks (TOML arrays, shell lines) is not a link, reference-style links and links in tables
//! are, and a heading's anchor is made from its rendered text (code spans included, emphasis
//! and link syntax not).
//!
//! Not checked: links with a scheme (`https:`, `mailto:`), which need the network; anchors on
//! files that are not Markdown (`main.rs#L10`: GitHub's line anchors); anchors defined by raw
//! HTML (`<a id=..>`), which the project does not use.
use std::{
    collections::{HashMap, HashSet},
    fmt, fs,
    path::{Component, Path, PathBuf},
};

use anyhow::Context as _;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

#[cfg(test)]
mod tests;

/// One link that does not resolve: where it is, what it says, and why it fails.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Broken {
    /// The Markdown file, relative to the root.
    pub file: PathBuf,
    /// 1-based line of the link's start.
    pub line: usize,
    pub link: String,
    pub reason: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: broken link `{}`: {}", self.file.display(), self.line, self.link, self.reason)
    }
}

/// Checks every Markdown file under `root` (see [`markdown_files`]) and returns the broken
/// links, in file and line order.
pub(crate) fn check(root: &Path) -> anyhow::Result<Vec<Broken>> {
    let mut anchors = Anchors::default();
    let mut broken = Vec::new();
    for file in markdown_files(root)? {
        let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        for (line, link) in links(&text) {
            if let Err(reason) = resolve(root, &file, &link, &mut anchors) {
                let file = file.strip_prefix(root).unwrap_or(&file).to_path_buf();
                broken.push(Broken { file, line, link, reason });
            }
        }
    }
    Ok(broken)
}

/// The project's Markdown files: every `.md` under `root`, except in hidden directories,
/// `target/` (build output) and the crates under `vendor/` (other projects' files, whose links
/// point into their own repositories).
pub(crate) fn markdown_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                let skipped = name.starts_with('.')
                    || (dir == root && name == "target")
                    || dir.strip_prefix(root).is_ok_and(|d| d == Path::new("vendor"));
                if !skipped {
                    dirs.push(path);
                }
            } else if is_markdown(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn is_markdown(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("md"))
}

/// The parser options the project's pages use (tables hold links too).
fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// Every link and image destination in `text`, with the line it starts on.
pub(crate) fn links(text: &str) -> Vec<(usize, String)> {
    let line_starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let line_of = |offset: usize| line_starts.partition_point(|&start| start <= offset);
    Parser::new_ext(text, options())
        .into_offset_iter()
        .filter_map(|(event, range)| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some((line_of(range.start), dest_url.into_string()))
            }
            _ => None,
        })
        .collect()
}

/// The anchors of `text`'s headings, as GitHub makes them: each heading's slug, and `-1`,
/// `-2`, ... appended to repeats.
pub(crate) fn heading_anchors(text: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(text, options()) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(h) = heading.as_mut() {
                    h.push(' ');
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let base = slug(&heading.take().unwrap_or_default());
                // github-slugger: a repeat takes the first free `base-N`, N counting up per base.
                let mut anchor = base.clone();
                while anchors.contains(&anchor) {
                    let n = seen.entry(base.clone()).or_insert(0);
                    *n += 1;
                    anchor = format!("{base}-{n}");
                }
                anchors.insert(anchor);
            }
            _ => {}
        }
    }
    anchors
}

/// GitHub's anchor for a heading's text (github-slugger): lower case; letters, digits, `-`
/// and `_` kept; each space becomes `-`; everything else (punctuation, symbols, emoji) dropped.
/// Spaces are not collapsed: "drop | partition" is `drop--partition`.
pub(crate) fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of each Markdown file a link points at, read once.
#[derive(Default)]
struct Anchors(HashMap<PathBuf, HashSet<String>>);

impl Anchors {
    fn of(&mut self, file: &Path) -> Result<&HashSet<String>, String> {
        if !self.0.contains_key(file) {
            let text = fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            self.0.insert(file.to_path_buf(), heading_anchors(&text));
        }
        Ok(&self.0[file])
    }
}

/// Whether `link`, written in `file`, resolves; if not, why.
fn resolve(root: &Path, file: &Path, link: &str, anchors: &mut Anchors) -> Result<(), String> {
    if is_external(link) {
        return Ok(());
    }
    let (path, fragment) = link.split_once('#').map_or((link, None), |(p, f)| (p, Some(f)));
    if path.starts_with('/') {
        return Err("an absolute path: GitHub resolves it against its own site; write it relative to this file".into());
    }
    let target = if path.is_empty() {
        file.to_path_buf()
    } else {
        let joined = file.parent().unwrap_or(root).join(percent_decode(path));
        let target = normalize(&joined);
        if !target.starts_with(root) {
            return Err("it leaves the repository".into());
        }
        if !target.exists() {
            let shown = target.strip_prefix(root).unwrap_or(&target).display().to_string();
            return Err(format!("no file or directory {shown}"));
        }
        target
    };
    let Some(fragment) = fragment else { return Ok(()) };
    if !is_markdown(&target) || target.is_dir() {
        return Ok(());
    }
    let anchor = percent_decode(fragment);
    if anchors.of(&target)?.contains(&anchor) {
        Ok(())
    } else {
        let shown = target.strip_prefix(root).unwrap_or(&target).display().to_string();
        Err(format!("{shown} has no heading whose anchor is #{anchor}"))
    }
}

/// A link with a scheme (`https:`, `mailto:`) or to another host (`//host/..`).
fn is_external(link: &str) -> bool {
    if link.starts_with("//") {
        return true;
    }
    let scheme = link.split_once(':').map(|(s, _)| s);
    scheme.is_some_and(|s| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// `a/./b/../c` as `a/c`, without asking the file system (the file may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Decodes `%20`-style escapes, as a browser does before it looks a path or an anchor up;
/// anything that is not a valid escape stays as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}
