//! Every document the repository ships can be followed from a checkout: no file
//! names or links to a file outside the repository, and every relative link of a
//! Markdown file leads to a file inside it.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The checkout's root (the root crate's directory).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Text files of the repository, outside build output and git metadata.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && name != ".git" {
                text_files(&path, out);
            }
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let text_ext = [
            "md", "rs", "toml", "sh", "yml", "yaml", "sql", "txt", "example",
        ];
        if text_ext.contains(&ext) || name == "Makefile" {
            out.push(path);
        }
    }
}

fn repository_text_files() -> Vec<(PathBuf, String)> {
    let mut paths = Vec::new();
    text_files(&root(), &mut paths);
    paths
        .into_iter()
        .filter_map(|p| fs::read_to_string(&p).ok().map(|text| (p, text)))
        .collect()
}

/// `a/../b` → `b`, without touching the file system (the target may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The targets of the Markdown links `[text](target)` in `text`.
fn markdown_links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            rest.find(')').map(|end| rest[..end].trim())
        })
        .collect()
}

#[test]
fn no_file_names_a_file_outside_the_repository() {
    // Built from pieces so that this file does not name them itself.
    let outside = [
        concat!("..", "/shared"),
        concat!("shared", "/DOMAIN"),
        concat!("shared", "/CONVENTIONS"),
        concat!("DOMAIN", ".md"),
        concat!("CONVENTIONS", ".md"),
    ];
    let files = repository_text_files();
    assert!(
        files.iter().any(|(p, _)| p.ends_with("README.md")),
        "the scan must see the README"
    );
    let mut found = Vec::new();
    for (path, text) in &files {
        for (number, line) in text.lines().enumerate() {
            for needle in outside {
                if line.contains(needle) {
                    found.push(format!("{}:{}: {needle}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "files outside the repository are named:\n{}",
        found.join("\n")
    );
}

#[test]
fn relative_markdown_links_lead_to_files_in_the_repository() {
    let root = root();
    let mut checked = 0;
    let mut broken = Vec::new();
    for (path, text) in repository_text_files() {
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        for link in markdown_links(&text) {
            let target = link.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let resolved = normalize(&path.parent().expect("a file has a parent").join(target));
            if !resolved.starts_with(&root) {
                broken.push(format!("{}: {link} leaves the repository", path.display()));
            } else if !resolved.exists() {
                broken.push(format!("{}: {link} does not exist", path.display()));
            }
        }
    }
    assert!(
        checked > 0,
        "the READMEs and docs link each other: some links must be seen"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_links_that_leave_the_repository() {
    let root = root();
    let readme = root.join("README.md");
    let links = markdown_links("see [spec](../elsewhere/SPEC.md) and [ok](docs/domain.md#users)");
    assert_eq!(links, ["../elsewhere/SPEC.md", "docs/domain.md#users"]);
    let outside = normalize(&readme.parent().unwrap().join(links[0]));
    assert!(!outside.starts_with(&root));
    let inside = normalize(&readme.parent().unwrap().join("docs/domain.md"));
    assert!(inside.starts_with(&root) && inside.exists());
}
