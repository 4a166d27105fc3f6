//! The module layering ARCHITECTURE.md states, checked on the source: no import cycle between the
//! top-level modules of `src/`, and only `src/http/` names the web framework.
//!
//! A module "imports" another when its non-test code names `crate::other` (comments and
//! `#[cfg(test)] mod` blocks left out). Test files (`tests.rs`) and `main.rs` (the binary, which
//! sits above everything) are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without its test module and its comments.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'))
        {
            break;
        }
        let without_comment = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        code.push_str(without_comment);
        code.push('\n');
    }
    code
}

/// The top-level module a file under `src/` belongs to (`None` for `lib.rs` and `main.rs`).
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_owned()),
        None => Some(first),
    }
}

/// `module -> modules it imports`, over the non-test code.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
        let Some(from) = top_module(file) else {
            continue;
        };
        let code = code_of(file);
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name != from && modules.contains(&name) {
                graph.get_mut(&from).expect("known").insert(name);
            }
        }
    }
    graph
}

/// The modules `from` reaches through imports.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = graph[from].iter().map(String::as_str).collect();
    while let Some(m) = todo.pop() {
        if seen.insert(m.to_owned()) {
            todo.extend(graph[m].iter().map(String::as_str));
        }
    }
    seen
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = import_graph();
    assert!(graph.len() > 20, "too few modules found: {graph:?}");
    assert!(
        graph["http"].contains("pipeline"),
        "the parser sees no import at all: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter(|m| reachable(&graph, m).contains(*m))
        .map(|m| {
            let back: Vec<&String> = graph[m]
                .iter()
                .filter(|n| reachable(&graph, n).contains(m))
                .collect();
            format!("{m} -> {back:?} -> … -> {m}")
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_lower_modules_know_nothing_of_those_above() {
    let graph = import_graph();
    for (module, must_not_reach) in [
        ("email", &["http", "notify", "pipeline"][..]),
        ("store", &["notify", "http", "pipeline", "email"][..]),
        ("notify", &["http", "pipeline"][..]),
        ("engine", &["probe", "store", "http", "pipeline"][..]),
        ("config", &["http", "store", "probe"][..]),
    ] {
        let reach = reachable(&graph, module);
        for above in must_not_reach {
            assert!(
                !reach.contains(*above),
                "{module} reaches {above}: {:?}",
                graph[module]
            );
        }
    }
}

/// `notify` sends stored bytes: it names no incident (what it sends was rendered and committed
/// by the pager); it reaches `incident` only through the types of `email` and `store`.
#[test]
fn notify_names_no_incident() {
    let graph = import_graph();
    assert!(
        !graph["notify"].contains("incident"),
        "{:?}",
        graph["notify"]
    );
    assert!(!graph["notify"].contains("engine"), "{:?}", graph["notify"]);
}

#[test]
fn only_http_knows_axum() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let http = src().join("http");
    let outside: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&http) && code_of(f).contains("axum"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "axum named outside src/http/: {outside:?}"
    );
}
