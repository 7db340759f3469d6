//! The architecture as a test: every file of `src/` belongs to a layer, imports run only down
//! (or across within one layer), the policy and restore controllers never import each other,
//! and no files import each other in a circle. Reads `crate::…` and `super::…` paths as text,
//! `use` groups included; a file's `#[cfg(test)] mod tests` is left out (tests may reach up).
//!
//! The layers, bottom first (a file takes the rank of the first prefix its path starts with):

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("base/", 0),
    ("api/", 1),
    ("telemetry/", 1),
    ("strategy/", 2),
    ("error.rs", 3),
    ("platform/", 4),
    ("hooks/", 5),
    ("runs/", 5),
    ("notify/", 5),
    ("context.rs", 6),
    ("policy/", 7),
    ("restore/", 7),
    ("operator.rs", 8),
    ("plugin_cli.rs", 9),
    ("main.rs", 10),
    ("lib.rs", 10),
];

/// Folders of one rank that must not import each other.
const APART: &[(&str, &str)] = &[("policy/", "restore/")];

fn rank(file: &str) -> Option<u8> {
    LAYERS.iter().find(|(prefix, _)| file.starts_with(prefix)).map(|(_, r)| *r)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `runs/mod.rs` → [runs], `runs/report.rs` → [runs, report].
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts
}

/// The file a module path names (its longest prefix that is a file).
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    (1..=path.len()).rev().find_map(|n| {
        let base = path[..n].join("/");
        [format!("{base}.rs"), format!("{base}/mod.rs")].into_iter().find(|f| files.contains(f))
    })
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths of a use tree at `chars[i..]` (after `crate::` or `super::`), each as segments
/// after `prefix`; returns where the tree ends.
fn use_paths(chars: &[char], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let skip = |i: &mut usize, also: &[char]| {
        while *i < chars.len() && (chars[*i].is_whitespace() || also.contains(&chars[*i])) {
            *i += 1;
        }
    };
    loop {
        skip(&mut i, &[]);
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            loop {
                skip(&mut i, &[',']);
                if i >= chars.len() || chars[i] == '}' {
                    return i + 1;
                }
                i = use_paths(chars, i, path.clone(), out);
            }
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        if i > start {
            path.push(chars[start..i].iter().collect());
        }
        if i + 1 < chars.len() && chars[i] == ':' && chars[i + 1] == ':' {
            i += 2;
            continue;
        }
        out.push(path);
        // An `as name` belongs to this path.
        let mut j = i;
        skip(&mut j, &[]);
        if chars[j..].starts_with(&['a', 's', ' ']) {
            j += 3;
            skip(&mut j, &[]);
            while j < chars.len() && is_ident(chars[j]) {
                j += 1;
            }
            return j;
        }
        return i;
    }
}

/// The files `file` imports.
fn imports(file: &str, text: &str, files: &BTreeSet<String>) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let module = module_of(file);
    // Comments (doc links included) are not imports.
    let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let chars: Vec<char> = code.chars().collect();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let before = if i > 0 { chars[i - 1] } else { ' ' };
        if chars[i..].starts_with(&['c', 'r', 'a', 't', 'e', ':', ':']) && !is_ident(before) {
            i = use_paths(&chars, i + 7, Vec::new(), &mut paths);
        } else if chars[i..].starts_with(&['s', 'u', 'p', 'e', 'r', ':', ':']) && !is_ident(before) && before != ':' {
            // `super` of a file `a/b.rs` is `a`; of `a/mod.rs`, the parent of `a`.
            let mut parent = module.clone();
            parent.pop();
            i = use_paths(&chars, i + 7, parent, &mut paths);
        } else {
            i += 1;
        }
    }
    paths.iter().filter_map(|p| file_of(p, files)).filter(|f| f != file).collect()
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), next: 0, out: Vec::new() };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&root, &mut paths);
    let names: BTreeMap<String, PathBuf> =
        paths.into_iter().map(|p| (p.strip_prefix(&root).expect("under src").to_string_lossy().replace('\\', "/"), p)).collect();
    let files: BTreeSet<String> = names.keys().cloned().collect();
    names.iter().map(|(name, path)| (name.clone(), imports(name, &std::fs::read_to_string(path).expect("read"), &files))).collect()
}

#[test]
fn every_file_has_a_layer_and_imports_run_down() {
    let graph = graph();
    let mut broken = Vec::new();
    for (file, targets) in &graph {
        let Some(from) = rank(file) else {
            broken.push(format!("{file}: in no layer (add it to LAYERS in tests/layers.rs)"));
            continue;
        };
        for target in targets {
            let Some(to) = rank(target) else { continue };
            if to > from {
                broken.push(format!("{file} (layer {from}) imports {target} (layer {to}): an import up"));
            }
            for (a, b) in APART {
                if (file.starts_with(a) && target.starts_with(b)) || (file.starts_with(b) && target.starts_with(a)) {
                    broken.push(format!("{file} imports {target}: {a} and {b} stay apart"));
                }
            }
        }
    }
    println!("{} files, {} imports between them", graph.len(), graph.values().map(BTreeSet::len).sum::<usize>());
    assert!(broken.is_empty(), "layer rules broken:\n{}", broken.join("\n"));
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let circles = circles(&graph());
    let text: Vec<String> = circles.iter().map(|c| format!("{} files: {}", c.len(), c.join(", "))).collect();
    assert!(circles.is_empty(), "import circles:\n{}", text.join("\n"));
}

#[test]
fn the_reader_sees_use_groups_and_super() {
    let files: BTreeSet<String> = ["a/mod.rs", "a/b.rs", "c.rs", "d/e.rs", "d/mod.rs"].iter().map(|s| s.to_string()).collect();
    let text = "use crate::{a::b::X, c::{Y, Z as W}};\nuse super::e::Q;\nfn f() { crate::d::g(); }\n#[cfg(test)]\nmod tests { use crate::a::T; }\n";
    let found = imports("d/f.rs", text, &files);
    let expected: BTreeSet<String> = ["a/b.rs", "c.rs", "d/e.rs", "d/mod.rs"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, expected);
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("x.rs", vec!["y.rs"]), ("y.rs", vec!["z.rs"]), ("z.rs", vec!["x.rs"]), ("w.rs", vec!["x.rs"])]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(circles(&graph), vec![vec!["x.rs".to_owned(), "y.rs".to_owned(), "z.rs".to_owned()]]);
}
