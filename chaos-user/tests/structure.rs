//! The shape of chaos-user, checked: no import circles between modules (data flows down), and no
//! source file so long that it does more than one job. Modules are files; `use crate::a::b` and
//! `use super::x` lines (with nested braces) are read as edges to the module they name. Edges
//! between a module and its own ancestors are the module tree itself and do not count.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Longest a source file may be (unit tests in their own `tests.rs` files do not count).
const MAX_LINES: usize = 600;

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `src/fault/net/drop.rs` -> `fault::net::drop`; `src/fault/mod.rs` -> `fault`.
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(source_dir()).expect("under src");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().expect("a file");
    let stem = file.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every path a `use` statement names, brace groups expanded: `crate::{a, b::{c, d}}` gives
/// `crate::a`, `crate::b::c`, `crate::b::d`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').expect("balanced braces")];
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

/// The `use` statements of a file (outside `#[cfg(test)]` modules), joined across lines.
fn use_statements(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut statements = Vec::new();
    let mut current: Option<String> = None;
    for line in code.lines() {
        let trimmed = line.trim();
        let statement = match current.take() {
            Some(mut open) => {
                open.push_str(trimmed);
                open
            }
            None => {
                let rest =
                    trimmed.strip_prefix("pub ").or_else(|| trimmed.strip_prefix("pub(crate) ")).unwrap_or(trimmed);
                match rest.strip_prefix("use ") {
                    Some(rest) => rest.to_owned(),
                    None => continue,
                }
            }
        };
        match statement.strip_suffix(';') {
            Some(done) => statements.push(done.to_owned()),
            None => current = Some(statement),
        }
    }
    statements
}

/// The modules `module` imports, resolved to the longest known module each path names.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for statement in use_statements(text) {
        let mut paths = Vec::new();
        expand("", &statement, &mut paths);
        for path in paths {
            let mut segments: Vec<&str> = path.split("::").collect();
            let mut base: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
            match segments.first().copied() {
                Some("crate") => {
                    segments.remove(0);
                    base.clear();
                }
                Some("super") => {
                    while segments.first() == Some(&"super") {
                        segments.remove(0);
                        base.pop();
                    }
                }
                Some("self") => {
                    segments.remove(0);
                }
                _ => continue,
            }
            base.extend(segments);
            while !base.is_empty() {
                let candidate = base.join("::");
                if known.contains(&candidate) {
                    found.insert(candidate);
                    break;
                }
                base.pop();
            }
        }
    }
    found
}

fn is_ancestor(a: &str, b: &str) -> bool {
    a.is_empty() || b.starts_with(&format!("{a}::"))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut files = Vec::new();
    rust_files(&source_dir(), &mut files);
    let known: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        let text = fs::read_to_string(file).expect("read");
        let edges = imports(&module, &text, &known)
            .into_iter()
            .filter(|target| *target != module && !is_ancestor(target, &module) && !is_ancestor(&module, target))
            .collect();
        graph.insert(module, edges);
    }
    // Depth-first search for a cycle; report the first one found, as a path.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle in chaos-user: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let mut files = Vec::new();
    rust_files(&source_dir(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = fs::read_to_string(file).expect("read").lines().count();
            (lines > MAX_LINES && !file.ends_with("tests.rs")).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    // One job per file is the rule, not a length: a long file is worth a look, never a trim.
    if !long.is_empty() {
        eprintln!("warning: files over {MAX_LINES} lines (do they do more than one job?): {}", long.join(", "));
    }
}

#[test]
fn the_use_parser_reads_nested_groups() {
    let mut paths = Vec::new();
    expand("", "crate::{a, b::{c, d as e}, f::G}", &mut paths);
    assert_eq!(paths, ["crate::a", "crate::b::c", "crate::b::d", "crate::f::G"]);
}
