//! Imports point down: every `crate::<module>` path in `src/` is checked
//! against the layer table below (the one drawn at the top of `lib.rs` and
//! in docs/project-structure.md). A module may import from a lower layer,
//! and from its own layer as long as no cycle forms; never from a higher
//! one. A new top-level module must be given a layer here.
//!
//! What counts: `crate::name` and `crate::{name, ...}` paths in code
//! (comments and doc links are skipped, and so are the `#[cfg(test)] mod
//! tests` blocks at the end of files, which may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, top to bottom: a higher rank may import a lower one.
const RANKS: &[(u8, &[&str])] = &[
    (9, &["cli", "forward"]),
    (8, &["server"]),
    (7, &["api"]),
    (6, &["proxy"]),
    (5, &["router"]),
    (4, &["model_store", "replay", "telemetry"]),
    (
        3,
        &[
            "live", "catalog", "upstream", "protocol", "pipeline", "cache", "limits", "thinking",
            "reqlog", "redis", "keys",
        ],
    ),
    (2, &["config"]),
    (
        1,
        &[
            "sse",
            "wildcard",
            "endpoint",
            "metrics_names",
            "identity",
            "conn",
            "template",
            "errors",
            "ttl_store",
            "grant",
            "price",
            "usage",
        ],
    ),
];

fn rank(module: &str) -> Option<u8> {
    RANKS
        .iter()
        .find(|(_, names)| names.contains(&module))
        .map(|(r, _)| *r)
}

/// One import of a top-level module by another: where it is.
type Edges = BTreeMap<(String, String), String>;

/// The top-level modules' imports of each other, read from `src/`.
fn edges(src: &Path) -> Edges {
    let mut files = Vec::new();
    collect(src, &mut files);
    // The crate's top-level modules (a `crate::Name` that is none, like
    // `crate::Config`, is an item of the crate root).
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").unwrap_or(&name).to_string()
        })
        .collect();
    let mut edges = Edges::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let Some(first) = rel.components().next() else {
            continue;
        };
        let first = first.as_os_str().to_string_lossy();
        let from = first.strip_suffix(".rs").unwrap_or(&first).to_string();
        // The crate root's module list, and this file's own examples.
        if from == "lib" || from == "main" || from == "layers" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for to in referenced(line) {
                if to != from && modules.contains(&to) {
                    edges
                        .entry((from.clone(), to))
                        .or_insert_with(|| format!("{}:{}", rel.display(), n + 1));
                }
            }
        }
    }
    edges
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a line names through `crate::`.
fn referenced(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        // `yallmp_crate::` and the like are not ours.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the names at the first level.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphabetic() || c == '_') => {
                        out.push(ident(&group[j..]));
                        start = false;
                    }
                    c if !c.is_whitespace() => start = false,
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every way the edges break the table: an import up a layer, a module
/// with no layer, a cycle.
fn violations(edges: &Edges) -> Vec<String> {
    let mut found = Vec::new();
    let mut unranked = BTreeSet::new();
    for ((from, to), at) in edges {
        match (rank(from), rank(to)) {
            (Some(a), Some(b)) if a < b => found.push(format!(
                "{from} (layer {a}) imports {to} (layer {b}), which is above it, at src/{at}"
            )),
            (Some(_), Some(_)) => {}
            (None, _) => {
                unranked.insert(from.clone());
            }
            (_, None) => {
                unranked.insert(to.clone());
            }
        }
    }
    for m in unranked {
        found.push(format!(
            "module `{m}` has no layer: add it to RANKS in src/layers.rs"
        ));
    }
    for group in cycles(edges) {
        found.push(format!("import cycle among: {}", group.join(", ")));
    }
    found
}

/// The groups of modules that import each other round a cycle (strongly
/// connected components of more than one module), each sorted.
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
    }
    let reach = |start: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.to_string()];
        while let Some(n) = todo.pop() {
            for &m in graph.get(n.as_str()).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(m.to_string()) {
                    todo.push(m.to_string());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&str, BTreeSet<String>> = graph.keys().map(|&n| (n, reach(n))).collect();
    let mut groups: BTreeSet<Vec<String>> = BTreeSet::new();
    for (&n, from_n) in &reached {
        let group: Vec<String> = from_n
            .iter()
            .filter(|m| reached.get(m.as_str()).is_some_and(|r| r.contains(n)))
            .cloned()
            .collect();
        if group.len() > 1 {
            groups.insert(group);
        }
    }
    groups.into_iter().collect()
}

#[test]
fn imports_point_down_and_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    assert!(
        !edges.is_empty(),
        "no imports found under {}",
        src.display()
    );
    let found = violations(&edges);
    assert!(
        found.is_empty(),
        "the layer order is broken:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_checker_sees_an_import_up_and_a_cycle() {
    let e = |pairs: &[(&str, &str)]| -> Edges {
        pairs
            .iter()
            .map(|(a, b)| ((a.to_string(), b.to_string()), "x.rs:1".to_string()))
            .collect()
    };
    assert!(violations(&e(&[("api", "proxy"), ("proxy", "router")])).is_empty());
    let up = violations(&e(&[("config", "api")]));
    assert!(up[0].contains("config (layer 2) imports api"), "{up:?}");
    let round = violations(&e(&[("cache", "limits"), ("limits", "cache")]));
    assert!(
        round.iter().any(|v| v.starts_with("import cycle")),
        "{round:?}"
    );
    let unknown = violations(&e(&[("api", "nowhere")]));
    assert!(unknown[0].contains("`nowhere` has no layer"), "{unknown:?}");
}

#[test]
fn paths_are_read_from_code() {
    assert_eq!(referenced("use crate::router::Dispatch;"), ["router"]);
    assert_eq!(
        referenced("use crate::{cache, live::Live, pipeline::{a, b}};"),
        ["cache", "live", "pipeline"]
    );
    assert_eq!(
        referenced("let x = crate::sse::parse(f) + crate::usage::Usage::from_body(b);"),
        ["sse", "usage"]
    );
    assert!(referenced("use yallmp_crate::x;").is_empty());
}
