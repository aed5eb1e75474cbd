//! The quickstart runs as the README writes it, `cargo run --example quickstart`: in a
//! fresh directory on the embedded SQLite default, and with `DATABASE_URL` naming a
//! throwaway PostgreSQL database on the server of `TEST_DATABASE_URL` (set by
//! `scripts/test.sh`; never skipped). Each runs twice, the second reusing what the
//! first stored, and prints values a person reads: no `Some(..)` or `None`, and no
//! escape codes when its output is not a terminal.

use repo_postgres::testing::TempDatabase;
use std::path::Path;
use std::process::Command;

/// Runs the example in `dir`; returns its stdout and stderr, panicking with both when
/// it fails.
fn run_quickstart(dir: &Path, database_url: Option<&str>) -> (String, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args([
            "run",
            "--quiet",
            "--example",
            "quickstart",
            "--manifest-path",
        ])
        .arg(&manifest)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("POSTGRES_HOST");
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    let output = command.output().expect("run cargo");
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
    assert!(
        output.status.success(),
        "the quickstart failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// The value printed after `label` on the first line that starts with it.
fn value<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label).filter(|v| v.starts_with(' ')))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
        .trim()
}

fn check_runs(dir: &Path, database_url: Option<&str>, backend: &str) {
    let (first, first_log) = run_quickstart(dir, database_url);
    let (second, second_log) = run_quickstart(dir, database_url);
    for text in [&first, &first_log, &second, &second_log] {
        assert!(
            !text.contains('\x1b'),
            "escape codes off a terminal:\n{text}"
        );
    }
    for out in [&first, &second] {
        assert!(
            !out.contains("Some(") && !out.contains("None"),
            "Debug output of an Option:\n{out}"
        );
        assert_eq!(value(out, "backend"), backend);
        assert!(value(out, "login").ends_with(" UTC"), "{out}");
        assert!(out.contains("laptop: 2 hit(s)"), "{out}");
        assert!(out.contains("badge -lost: 1 hit(s)"), "{out}");
        assert!(
            value(out, "done").starts_with("Quickstart docs has "),
            "{out}"
        );
    }
    // The first run creates the documents and their chunks and has never logged in;
    // the second finds them and the first run's login.
    let runs = [(&first, 3, 0, 6, true), (&second, 0, 3, 0, false)];
    for (out, new, stored, inserted, never_logged_in) in runs {
        let documents = format!("3 registered ({new} new, {stored} already stored)");
        assert_eq!(value(out, "documents"), documents);
        let chunks = format!("{inserted} inserted now");
        assert!(value(out, "chunks").starts_with(&chunks), "{out}");
        let user = value(out, "user");
        assert_eq!(user.ends_with("last login never"), never_logged_in, "{out}");
    }
}

#[test]
fn quickstart_runs_on_the_sqlite_default_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    check_runs(dir.path(), None, "sqlite");
    assert!(
        dir.path().join("smtk.sqlite3").exists(),
        "the default database is a file in the working directory"
    );
}

#[test]
fn quickstart_runs_on_postgres_twice() {
    let db = TempDatabase::from_env().expect("TEST_DATABASE_URL names a PostgreSQL server");
    let dir = tempfile::tempdir().expect("temp dir");
    check_runs(dir.path(), Some(db.url()), "postgres");
    assert!(
        !dir.path().join("smtk.sqlite3").exists(),
        "DATABASE_URL was used, not the SQLite default"
    );
}
