//! The layout keeps its arrows one way: no import circle among the crate's
//! top-level modules (`app`, `server`, `graphql`, `services`, `db`, ...).
//!
//! An edge `a -> b` is a `crate::b` path in product code (not comments, not
//! a file's `#[cfg(test)]` module) of a file under `src/a`. The same check by hand: `bash scripts/module-graph.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module -> the top-level modules its code names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        // A file's `#[cfg(test)]` module (at its end, by convention) may use
        // test support; only product code counts.
        for line in text.lines().take_while(|l| l.trim() != "#[cfg(test)]") {
            let code = line.split("//").next().unwrap_or_default();
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle through `graph`, if there is one, as the list of its modules.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|n| n == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn top_level_modules_form_no_circle() {
    let graph = module_graph();
    assert!(graph.len() > 10, "the scan found the modules: {graph:?}");
    assert!(
        graph["server"].contains("graphql"),
        "the scan sees real edges: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import circle among top-level modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("app".into()).or_default().insert("graphql".into());
    graph.entry("graphql".into()).or_default().insert("services".into());
    graph.entry("services".into()).or_default().insert("app".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["app".into(), "graphql".into(), "services".into(), "app".into()])
    );
}

#[test]
fn state_and_product_code_do_not_reach_into_the_api_or_test_support() {
    let graph = module_graph();
    for (module, forbidden) in [
        ("app", "server"),
        ("app", "graphql"),
        ("db", "graphql"),
        ("db", "services"),
        ("jobs", "pipeline"),
        ("providers", "pipeline"),
        ("pipeline", "graphql"),
    ] {
        assert!(
            !graph[module].contains(forbidden),
            "{module} must not import {forbidden}"
        );
    }
    for (module, deps) in &graph {
        if module != "testing" {
            assert!(!deps.contains("testing"), "{module} uses test support");
        }
    }
}
