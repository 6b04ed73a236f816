//! The workspace's shape, checked in the lint step: in every crate, no import circle between
//! source files, and no arrow that runs back up the crate's declared layers (data flows down;
//! the few exceptions are listed below, each with its reason).
//!
//! Every path a file names counts: `use` lines (brace groups expanded) and inline `crate::`,
//! `super::` and `self::` paths in the code, outside `#[cfg(test)]` modules. A path resolves
//! to the file of the longest module it names. A module's own descendants are its structure
//! (it declares them, re-exports them and hands work to them), so a file's edges to its
//! descendants are not arrows; its edges to its ancestors are (a child that uses its parent's
//! items depends on them), as are all others. Files are modules: `a/b.rs` and `a/b/mod.rs`
//! are `a::b`.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// A crate's source tree and the order of its top-level modules, lowest layer first. A module
/// may use modules of its own layer or lower ones; a layer is a list of top-level module names.
/// Top-level modules not listed are on the top layer.
pub struct Crate {
    pub name: &'static str,
    pub src: &'static str,
    pub layers: &'static [&'static [&'static str]],
}

/// Arrows allowed to run back up, each with the reason it is there: (from file's module, to
/// module, why).
pub type Exception = (&'static str, &'static str, &'static str);

/// The arrows that may run back up, and why. Each is a debt with its reason.
pub const EXCEPTIONS: &[Exception] = &[];

/// The workspace's crates and their layers.
pub const CRATES: &[Crate] = &[
    Crate { name: "chaos-common", src: "chaos-common/src", layers: &[] },
    Crate {
        name: "chaos-ebpf",
        src: "chaos-ebpf/src",
        // Shared plumbing at the top of the tree and at the bottom of the layers; the families'
        // folders above it (they may use one another's helpers: the syscall hooks filter by
        // net's filters and signal through proc's); the other objects' entry points last.
        layers: &[
            &["maps"],
            &["packet", "dentry"],
            &["gate", "trace"],
            &["dns", "net", "proc", "syscall"],
            &["dispatch", "floor"],
        ],
    },
    Crate {
        name: "chaos-user",
        src: "chaos-user/src",
        layers: &[
            &["os"],
            &["live", "injections", "ledger", "run_records"],
            &["targets", "features"],
            &["plan"],
            &["report", "engine"],
            &["hints", "fault"],
            &["run", "run_all"],
            &["steady"],
            &["experiment"],
            &["daemon"],
            &["cli"],
        ],
    },
    Crate {
        name: "chaos-tests",
        src: "tests/src",
        layers: &[
            &["skip", "manifest"],
            &["cgroup", "net", "programs"],
            &["workload", "kernel", "probe"],
            &["chaos", "runtimes", "crash"],
        ],
    },
    Crate {
        name: "xtask",
        src: "xtask/src",
        // main.rs orders setup, build, lint, test, bench, demo, package; each below it knows only
        // lower ones.
        layers: &[
            &["util"],
            &["host_state", "links", "structure", "errinj", "tally"],
            &["build", "vm"],
            &["setup", "lint"],
            &["test", "bench", "demo", "package"],
        ],
    },
];

/// What the check found in one crate.
#[derive(Debug, Default)]
pub struct Findings {
    pub circles: Vec<Vec<String>>,
    /// (from file module, to module, the names that tie them).
    pub upward: Vec<(String, String)>,
    pub files: usize,
    pub arrows: usize,
}

/// Checks every crate under `root`; one line per problem.
pub fn check(root: &Path, exceptions: &[Exception]) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for krate in CRATES {
        let findings = check_crate(&root.join(krate.src), krate.layers)?;
        println!(
            "structure: {}: {} files, {} arrows, {} circles, {} arrows back up",
            krate.name,
            findings.files,
            findings.arrows,
            findings.circles.len(),
            findings.upward.len()
        );
        for circle in &findings.circles {
            problems.push(format!("{}: import circle: {}", krate.name, circle.join(" -> ")));
        }
        for (from, to) in &findings.upward {
            let allowed = exceptions.iter().any(|(f, t, _)| from == f && to == t);
            if !allowed {
                problems.push(format!(
                    "{}: {from} uses {to}, a layer above it (data flows down; see xtask/src/structure.rs)",
                    krate.name
                ));
            }
        }
    }
    Ok(problems)
}

/// The findings of one crate whose sources are under `src`.
pub fn check_crate(src: &Path, layers: &[&[&str]]) -> anyhow::Result<Findings> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|f| (module_of(src, f), f.clone())).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut findings = Findings { files: files.len(), ..Findings::default() };
    for (module, file) in &modules {
        let text = fs::read_to_string(file)?;
        let is_dir_module = matches!(file.file_stem().and_then(|s| s.to_str()), Some("mod" | "lib" | "main"));
        let edges = graph.entry(module.clone()).or_default();
        for path in paths_named(&without_tests(&text)) {
            let Some(absolute) = resolve(&path, module, is_dir_module) else { continue };
            let Some(target) = longest_module(&absolute, &modules) else { continue };
            if target == *module || is_descendant(&target, module) {
                continue;
            }
            edges.insert(target);
        }
    }
    findings.arrows = graph.values().map(BTreeSet::len).sum();
    findings.circles = circles(&graph);
    let layer_of = |module: &str| {
        let top = module.split("::").next().unwrap_or_default();
        layers.iter().position(|layer| layer.contains(&top)).unwrap_or(layers.len())
    };
    for (from, targets) in &graph {
        for to in targets {
            let same_top = from.split("::").next() == to.split("::").next();
            if !same_top && !to.is_empty() && !from.is_empty() && layer_of(to) > layer_of(from) {
                findings.upward.push((from.clone(), to.clone()));
            }
        }
    }
    Ok(findings)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// `src/fault/net/drop.rs` is `fault::net::drop`; `src/fault/mod.rs` is `fault`; `src/lib.rs`
/// and `src/main.rs` are the crate root (`""`); `src/bin/x.rs` is `bin::x`, a root of its own.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap_or_default();
    let stem = file.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

/// The text without `#[cfg(test)]` items: a test module may reach anywhere.
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        // Skip the next item: up to the end of its brace block, or of the statement.
        let (Some(open), semi) = (after.find('{'), after.find(';')) else { return out };
        if semi.is_some_and(|semi| semi < open) {
            rest = &after[semi.unwrap_or_default() + 1..];
            continue;
        }
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every module path the code names: `use` trees expanded (`crate::{a, b::{c, d}}` gives
/// `crate::a`, `crate::b::c`, `crate::b::d`), and inline paths that start with `crate`,
/// `super` or `self`.
fn paths_named(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let code = strip_comments_and_strings(code);
    // use statements, cut out of the code the inline scan reads
    let mut rest = code.as_str();
    let mut outside_uses = String::new();
    while let Some(at) = find_word(rest, "use") {
        outside_uses.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        let tree: String = after[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        expand("", &tree, &mut paths);
        rest = &after[end + 1..];
    }
    outside_uses.push_str(rest);
    // inline paths
    let code = outside_uses;
    let bytes = code.as_bytes();
    let mut inline = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(start) {
            let at = from + found;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            inline.push((at, code[at..end].trim_end_matches(':').to_owned()));
        }
    }
    inline.sort();
    paths.extend(inline.into_iter().map(|(_, path)| path));
    paths
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before_ok = at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let after_ok = bytes.get(at + word.len()).is_some_and(u8::is_ascii_whitespace);
        if before_ok && after_ok {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Code with comments removed and string and char literals emptied, so that a path in prose
/// or in a message is not taken for an import.
fn strip_comments_and_strings(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == 'r' && (next == Some('"') || (next == Some('#') && chars.get(i + 2) == Some(&'"'))) {
            // raw string r"..." or r#"..."#
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            i += 1 + hashes + 1;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Every path a `use` tree names, brace groups expanded.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let Some(close) = tree.rfind('}') else { return };
        let inner = &tree[open + 1..close];
        let base = join(prefix, head);
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        out.push(join(prefix, tree.split(" as ").next().unwrap_or(tree).trim()));
    }
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}::{rest}"),
    }
}

/// A path as written in `module` (whose file is a `mod.rs`/`lib.rs` when `is_dir_module`,
/// which matters not: `super` is the parent module either way) as segments from the crate
/// root; None for paths into other crates.
fn resolve(path: &str, module: &str, _is_dir_module: bool) -> Option<Vec<String>> {
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let mut rest = segments.as_slice();
    match rest.first() {
        Some(&"crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some(&"self") => rest = &rest[1..],
        Some(&"super") => {
            while rest.first() == Some(&"super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().filter(|s| **s != "self" && **s != "*").map(|s| (*s).to_owned()));
    Some(base)
}

/// The longest module of `modules` that `path` names (at least one segment of it).
fn longest_module(path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|candidate| modules.contains_key(candidate))
}

/// Whether `inner` is a module below `outer` (the crate root is above every module).
fn is_descendant(inner: &str, outer: &str) -> bool {
    outer.is_empty() || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with("::"))
}

/// Every import circle, each once, as the modules along it.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components; each component of more than one module holds
    // at least one circle, reported as one path around it.
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        components: Vec<Vec<String>>,
    }
    fn connect<'g>(state: &mut State<'g>, node: &'g str) {
        state.index.insert(node, state.next);
        state.low.insert(node, state.next);
        state.next += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in state.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                connect(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.components.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            connect(&mut state, node);
        }
    }
    state.components
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_and_inline_paths_are_read_and_prose_is_not() {
        let code = "use crate::{a, b::{c, d as e}, f::G};\n\
                    // crate::in_a_comment\n\
                    fn x() { let s = \"crate::in_a_string\"; super::sibling::call(); crate::deep::item(); }";
        let paths = paths_named(code);
        assert_eq!(
            paths,
            ["crate::a", "crate::b::c", "crate::b::d", "crate::f::G", "super::sibling::call", "crate::deep::item"]
        );
    }

    #[test]
    fn test_modules_are_left_out() {
        let code = "use crate::a;\n#[cfg(test)]\nmod tests {\n    use crate::b;\n    fn f() { {} }\n}\nuse crate::c;";
        assert_eq!(paths_named(&without_tests(code)), ["crate::a", "crate::c"]);
    }

    #[test]
    fn paths_resolve_from_their_module() {
        assert_eq!(resolve("super::x::Y", "engine::load", false), Some(vec!["engine".into(), "x".into(), "Y".into()]));
        assert_eq!(resolve("crate::os::netns", "fault::net", false), Some(vec!["os".into(), "netns".into()]));
        assert_eq!(
            resolve("self::tc::attach", "engine", true),
            Some(vec!["engine".into(), "tc".into(), "attach".into()])
        );
        assert_eq!(resolve("std::fs", "engine", true), None);
    }

    #[test]
    fn a_circle_is_found_and_a_chain_is_not() {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        graph.entry("a".into()).or_default().insert("b".into());
        graph.entry("b".into()).or_default().insert("c".into());
        assert!(circles(&graph).is_empty());
        graph.entry("c".into()).or_default().insert("a".into());
        assert_eq!(circles(&graph), vec![vec!["a".to_owned(), "b".into(), "c".into()]]);
    }
}
#[cfg(test)]
mod workspace {
    /// The same check the lint step runs, so `cargo test` alone also sees a circle.
    #[test]
    fn the_workspace_has_no_circle_and_no_arrow_back_up() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        let problems = super::check(root, super::EXCEPTIONS).expect("the sources read");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
