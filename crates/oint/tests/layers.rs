//! The crate's modules depend on each other in one direction: raw flags and small leaves at
//! the bottom, then settings, then the command families, then the app (ARCHITECTURE.md).
//! This test reads the sources and fails on any cycle between module files, so that an
//! arrow pointing back up is caught when it is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`settings::connection`) of every source file under `src/`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if name != "lib" && name != "main" {
                found.insert(name, path);
            }
        }
    }
    found
}

/// The paths a source names after `crate::` and `super::`, with `super` resolved against
/// `module`; `use x::{a, b::c}` gives `x::a` and `x::b::c`. Test modules are left out: a test
/// may reach anywhere.
fn referenced_paths(text: &str, module: &str) -> Vec<Vec<String>> {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    // `super` is the parent of the file's module (a `mod.rs` is its directory's module).
    let mut parent: Vec<String> = module.split("::").map(String::from).collect();
    parent.pop();
    let mut paths = Vec::new();
    for (root, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().last();
            rest = &rest[at + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            for tail in expand(rest) {
                let mut path = base.clone();
                path.extend(tail);
                paths.push(path);
            }
        }
    }
    paths
}

/// `a::b::{c, d::e}` at the start of `text` → `[[a, b, c], [a, b, d, e]]`.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut head = Vec::new();
    let mut rest = text;
    loop {
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len > 0 {
            head.push(rest[..len].to_string());
            rest = &rest[len..];
        }
        if let Some(after) = rest.strip_prefix("::") {
            rest = after;
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut end = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                let inner = &group[..end];
                let mut items = Vec::new();
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            items.push(&inner[start..i]);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                items.push(&inner[start..]);
                let mut out = Vec::new();
                for item in items {
                    let item = item.trim();
                    if item.is_empty() || item == "self" {
                        out.push(head.clone());
                        continue;
                    }
                    for tail in expand(item) {
                        let mut path = head.clone();
                        path.extend(tail);
                        out.push(path);
                    }
                }
                return out;
            }
            continue;
        }
        return vec![head];
    }
}

/// The module a path lands in: its longest prefix that is a module file.
fn owner(path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|name| modules.contains_key(name))
}

#[test]
fn no_module_depends_on_itself_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        for path in referenced_paths(&text, name) {
            if let Some(to) = owner(&path, &modules)
                && to != *name
            {
                edges.entry(name.clone()).or_default().insert(to);
            }
        }
    }
    assert!(
        edges
            .get("flags")
            .is_none_or(|d| d.iter().all(|m| m == "ranges")),
        "the raw flags are a leaf (only their number ranges below them): {:?}",
        edges.get("flags")
    );
    // Depth-first search; a grey node met again is a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|m| m == next).unwrap();
                    panic!("module cycle: {} -> {next}", stack[from..].join(" -> "));
                }
                Some(_) => {}
                None => visit(next, edges, state, stack),
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    for name in modules.keys() {
        if !state.contains_key(name) {
            visit(name, &edges, &mut state, &mut Vec::new());
        }
    }
    // The test sees the crate: a cycle it could not see would pass silently.
    assert!(modules.len() >= 20, "{:?}", modules.keys());
    assert!(
        edges
            .get("app")
            .is_some_and(|d| d.contains("commands::opi")),
        "{edges:?}"
    );
}

#[test]
fn the_reader_sees_use_groups_and_super() {
    let paths = referenced_paths(
        "use super::target::Target;\nuse crate::flags::{self, Cli, Command};\nfn f() { crate::output::note(\"\"); }\n#[cfg(test)]\nuse crate::app;",
        "settings::connection",
    );
    let shown: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        shown,
        [
            "flags",
            "flags::Cli",
            "flags::Command",
            "output::note",
            "settings::target::Target"
        ]
    );
}
