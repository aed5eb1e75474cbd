//! The workspace's layering, checked on its sources: no module of a crate depends on
//! another that depends back on it (`crate::x` in a `use` or a path), `repo-core`
//! links neither Diesel nor r2d2, and `repoctl` embeds no migrations of its own (it
//! takes the backends'). `scripts/module_cycles.py` prints the same cycles for a
//! reader.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src` belongs to (`None` for the crate root).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first
        .as_os_str()
        .to_str()?
        .trim_end_matches(".rs")
        .to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The modules named after `crate::` in `text` (also inside `crate::{a, b::c}`).
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::`, `some_crate::`
        }
        let rest = text[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(inner.split(',').map(|p| ident(p.trim())));
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    out
}

fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(src, &file) else {
            continue;
        };
        let text: String = fs::read_to_string(&file)
            .expect("read source file")
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let targets = referenced_modules(&text);
        graph
            .entry(module.clone())
            .or_default()
            .extend(targets.into_iter().filter(|t| *t != module));
    }
    graph
}

/// Modules from which `start` is reachable again.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if !graph.contains_key(next) {
                continue; // not a module of this crate (e.g. `crate::SomeType`)
            }
            if next == start {
                return Some(path.clone());
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_crate_has_a_module_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut crates: Vec<PathBuf> = fs::read_dir(root.join("crates"))
        .expect("crates directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    crates.push(root.to_path_buf());
    let mut cycles = Vec::new();
    for krate in crates {
        let graph = module_graph(&krate.join("src"));
        for module in graph.keys() {
            if let Some(path) = cycle_through(&graph, module) {
                cycles.push(format!(
                    "{}: {} -> {module}",
                    krate.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                    path.join(" -> ")
                ));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &["a"][..]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_owned(), to.iter().map(|t| (*t).to_owned()).collect()))
    .collect();
    assert_eq!(cycle_through(&graph, "a").map(|p| p.len()), Some(3));
    assert_eq!(cycle_through(&graph, "d"), None);
    assert_eq!(
        referenced_modules("use crate::{store::X, error};\nlet _ = $crate::y::Z; crate::page::P"),
        ["error", "page", "store"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

/// The `[dependencies]` table of a crate's manifest, as text.
fn dependencies(manifest: &Path) -> String {
    let text = fs::read_to_string(manifest).expect("read Cargo.toml");
    let start = text.find("[dependencies]").expect("a [dependencies] table");
    let rest = &text[start + "[dependencies]".len()..];
    rest[..rest.find("\n[").unwrap_or(rest.len())].to_owned()
}

#[test]
fn repo_core_links_neither_diesel_nor_r2d2() {
    let deps =
        dependencies(&Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/repo-core/Cargo.toml"));
    for name in ["diesel", "r2d2"] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(name)),
            "repo-core depends on {name}:\n{deps}"
        );
    }
}

#[test]
fn repoctl_embeds_no_migrations_of_its_own() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/repoctl/src"),
        &mut files,
    );
    for file in files {
        let text = fs::read_to_string(&file).expect("read source file");
        assert!(
            !text.contains("embed_migrations!"),
            "{} embeds migrations; repoctl takes the backends' (SchemaAdmin)",
            file.display()
        );
    }
}
