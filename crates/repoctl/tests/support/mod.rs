//! What the repoctl test binaries share: running the built `repoctl`, reading its
//! output and exit code, and the throwaway databases they run it on.

use repo_postgres::testing::TempDatabase;
use std::path::Path;
use std::process::{Command, Output};

/// The `repoctl` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_repoctl");

/// Runs `repoctl` with `args` (and no `DATABASE_URL` from the environment).
pub fn repoctl(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run repoctl")
}

/// The exit code (-1 when killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Standard output and standard error, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts the exit code, showing the output when it differs.
#[track_caller]
pub fn expect_code(out: &Output, expected: i32) {
    assert_eq!(code(out), expected, "{}", text(out));
}

/// Fills `url` with `repoctl demo-data` (`--scale`, `--chunks-per-document`).
pub fn demo(url: &str, scale: &str, chunks: &str) {
    expect_code(
        &repoctl(&[
            "demo-data",
            "--database-url",
            url,
            "--scale",
            scale,
            "--chunks-per-document",
            chunks,
        ]),
        0,
    );
}

/// A throwaway PostgreSQL database on `TEST_DATABASE_URL`'s server.
pub fn pg() -> TempDatabase {
    TempDatabase::from_env().expect("TEST_DATABASE_URL must point at a PostgreSQL server")
}

/// `dir/name` as a string (a SQLite file or a backup path).
pub fn path_in(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}
