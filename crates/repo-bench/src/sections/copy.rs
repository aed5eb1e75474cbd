//! Data copy: `repoctl copy` SQLite → PostgreSQL against `psql`'s `\copy` of the same
//! chunk rows from CSV into the same schema, and on narrow rows (users) against both
//! `\copy` and pgloader, in one run (full mode only: generating and copying the
//! sources takes minutes). Runs the built `repoctl` binary (next to this one, or
//! `REPOCTL_BIN`), `sqlite3`, `psql` and `pgloader` as processes, each load into a
//! fresh database of the benchmark's PostgreSQL server.

use super::{progress, Env, Section};
use crate::report::{SectionReport, Table, TargetResult};
use crate::BenchResult;
use repo_postgres::testing::TempDatabase;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The copy section.
pub(crate) struct Copy;

/// `repoctl demo-data` makes this many documents per unit of `--scale`.
pub(super) const DOCUMENTS_PER_SCALE: usize = 20;
/// `--chunks-per-document` of the generated source.
pub(super) const CHUNKS_PER_DOCUMENT: usize = 500;
/// Issue 6: `repoctl copy` (verification included) at most this multiple of `\copy`.
const RATIO_TARGET: f64 = 1.2;
/// Issue 6: peak resident memory of `repoctl copy` below this many MiB.
const MEMORY_TARGET_MIB: f64 = 200.0;
/// Issue 15: `repoctl copy` (verification included) at most this multiple of
/// pgloader's time on narrow rows.
const PGLOADER_TARGET: f64 = 1.0;
/// The user columns every tool writes.
const USER_COLUMNS: &str = "id, username, email, full_name, hashed_password, is_active, \
                            is_superuser, created_at, updated_at, last_login";
/// The chunk columns both tools write (`search_tsv` is generated on PostgreSQL).
const COLUMNS: &str = "id, collection_id, document_id, chunk_index, content, start_offset, \
                       end_offset, token_count, embedding_vector_id, meta, created_at, \
                       search_tokens";

/// The figures of one run.
#[derive(Debug, Serialize)]
struct CopyResult {
    chunk_rows: usize,
    psql_s: f64,
    psql_rows_per_s: f64,
    repoctl_s: f64,
    repoctl_rows_per_s: f64,
    /// `repoctl` seconds over `\copy` seconds.
    ratio: f64,
    /// Peak resident set of `repoctl copy`, from `/usr/bin/time -v` when present.
    repoctl_peak_rss_mib: Option<f64>,
}

/// The narrow-rows part: the same users loaded by `\copy`, pgloader and `repoctl copy`.
#[derive(Debug, Serialize)]
struct UsersResult {
    user_rows: usize,
    psql_s: f64,
    psql_rows_per_s: f64,
    /// `None` when pgloader failed (see `pgloader_error`).
    pgloader_s: Option<f64>,
    pgloader_rows_per_s: Option<f64>,
    /// Why pgloader gave no figure: not installed, failed, or loaded too few rows.
    pgloader_error: Option<String>,
    repoctl_s: f64,
    repoctl_rows_per_s: f64,
    /// `repoctl` seconds over `\copy` seconds.
    ratio: f64,
    /// `repoctl` seconds over pgloader seconds.
    ratio_pgloader: Option<f64>,
    /// pgloader seconds over `\copy` seconds.
    pgloader_ratio: Option<f64>,
    repoctl_peak_rss_mib: Option<f64>,
}

/// Every figure of the section: the chunk part's fields at the top level (as before
/// the narrow-rows part existed), the narrow-rows part under `narrow`.
#[derive(Debug, Serialize)]
struct CopyData {
    #[serde(flatten)]
    chunks: Option<CopyResult>,
    narrow: Option<UsersResult>,
}

/// Runs `cmd`, failing with its stderr when it fails; returns its stdout.
pub(super) fn run(cmd: &mut Command) -> BenchResult<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) fn repoctl_bin() -> BenchResult<PathBuf> {
    let bin = match std::env::var_os("REPOCTL_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => std::env::current_exe()?.with_file_name("repoctl"),
    };
    if !bin.is_file() {
        return Err(format!(
            "{} not found: build it (cargo build --release -p repoctl; scripts/bench.sh \
             does) or set REPOCTL_BIN",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// A fresh database on the server with the schema migrated by `repoctl`.
fn migrated(admin: &str, repoctl: &Path) -> BenchResult<TempDatabase> {
    let db = TempDatabase::create(admin)?;
    run(Command::new(repoctl).args(["migrate", "up", "--database-url", db.url()]))?;
    Ok(db)
}

fn psql(url: &str, command: &str) -> BenchResult<String> {
    run(Command::new("psql").args(["-q", "-X", "-v", "ON_ERROR_STOP=1", url, "-c", command]))
}

/// Generates the SQLite source of about `chunk_rows` chunks with `repoctl demo-data`
/// in `dir` (progress lines prefixed with `section`); returns its path and its chunk
/// count.
pub(super) fn demo_source(
    repoctl: &Path,
    dir: &Path,
    chunk_rows: usize,
    section: &str,
) -> BenchResult<(String, usize)> {
    let source = dir.join("source.sqlite3");
    let source = source.to_str().ok_or("temporary path is not UTF-8")?;
    let scale = (chunk_rows / (DOCUMENTS_PER_SCALE * CHUNKS_PER_DOCUMENT)).max(1);
    progress(format!(
        "{section}: generating the SQLite source (scale {scale})"
    ));
    run(Command::new(repoctl).args([
        "demo-data",
        "--database-url",
        source,
        "--scale",
        &scale.to_string(),
        "--chunks-per-document",
        &CHUNKS_PER_DOCUMENT.to_string(),
    ]))?;
    let rows: usize = run(Command::new("sqlite3").args([source, "SELECT count(*) FROM chunks"]))?
        .trim()
        .parse()?;
    Ok((source.to_owned(), rows))
}

/// Times `repoctl copy --from source --to target` (every table, verification included)
/// after a CHECKPOINT on the target, under `/usr/bin/time -v` for the peak memory when
/// it is installed; returns the seconds and the peak resident MiB.
fn timed_repoctl_copy(
    repoctl: &Path,
    source: &str,
    target: &str,
    dir: &Path,
) -> BenchResult<(f64, Option<f64>)> {
    psql(target, "CHECKPOINT")?;
    let time_file = dir.join("time.txt");
    let gnu_time = Path::new("/usr/bin/time").is_file();
    let mut cmd = if gnu_time {
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-v").arg("-o").arg(&time_file).arg(repoctl);
        cmd
    } else {
        Command::new(repoctl)
    };
    cmd.args(["copy", "--from", source, "--to", target, "--no-progress"]);
    let start = Instant::now();
    run(&mut cmd)?;
    let seconds = start.elapsed().as_secs_f64();
    let peak_rss_mib = if gnu_time {
        std::fs::read_to_string(&time_file)?
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|kb| kb.trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    } else {
        None
    };
    Ok((seconds, peak_rss_mib))
}

fn count_users(url: &str) -> BenchResult<usize> {
    Ok(run(Command::new("psql").args([
        "-q",
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        url,
        "-c",
        "SELECT count(*) FROM users",
    ]))?
    .trim()
    .parse()?)
}

/// A SQLite database migrated by `repoctl` holding `users` narrow user rows, made by
/// one `INSERT … SELECT` over a recursive CTE (seconds, against minutes through the
/// repositories): canonical timestamps, a fifth without a full name, a third never
/// logged in.
fn users_source(repoctl: &Path, dir: &Path, users: usize) -> BenchResult<String> {
    let source = dir.join("users.sqlite3");
    let source = source.to_str().ok_or("temporary path is not UTF-8")?;
    progress(format!(
        "copy: generating the SQLite source ({users} users)"
    ));
    run(Command::new(repoctl).args(["migrate", "up", "--database-url", source]))?;
    let insert = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users}) \
         INSERT INTO users ({USER_COLUMNS}) SELECT i, 'user' || i, \
         'user' || i || '@example.com', \
         CASE WHEN i % 5 = 0 THEN NULL ELSE 'User Number ' || i END, \
         '$argon2id$v=19$m=19456,t=2,p=1$' || hex(randomblob(16)), \
         i % 17 <> 0, i % 1000 = 0, \
         strftime('%Y-%m-%dT%H:%M:%S', 1700000000 + i, 'unixepoch') || '.' || \
         printf('%06d', i % 1000000) || 'Z', \
         strftime('%Y-%m-%dT%H:%M:%S', 1700000000 + 2 * i, 'unixepoch') || '.000000Z', \
         CASE WHEN i % 3 = 0 THEN NULL \
         ELSE strftime('%Y-%m-%dT%H:%M:%S', 1710000000 + i, 'unixepoch') || '.000000Z' END \
         FROM n"
    );
    run(Command::new("sqlite3").args([source, &insert]))?;
    Ok(source.to_owned())
}

/// Runs pgloader on `command_file` and checks that it loaded `rows` users into `url`:
/// the seconds, or why there are none (pgloader exits 0 with rejected rows, hence the
/// count).
fn timed_pgloader(dir: &Path, command_file: &Path, url: &str, rows: usize) -> Result<f64, String> {
    let root = dir.join("pgloader");
    let start = Instant::now();
    let out = Command::new("pgloader")
        .arg("--root-dir")
        .arg(&root)
        .arg(command_file)
        .output();
    let seconds = start.elapsed().as_secs_f64();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("not installed (apt-get install pgloader)".into())
        }
        Err(e) => return Err(format!("cannot run pgloader: {e}")),
    };
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let reason = text
            .lines()
            .find(|l| l.contains("ERROR") || l.contains("FATAL"))
            .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("no output")
            .trim()
            // It goes into a markdown table cell.
            .replace('|', "/");
        let reason: String = reason.chars().take(300).collect();
        return Err(format!("{}: {reason}", out.status));
    }
    match count_users(url) {
        Ok(n) if n == rows => Ok(seconds),
        Ok(n) => Err(format!("loaded {n} of {rows} rows")),
        Err(e) => Err(format!("cannot count the loaded rows: {e}")),
    }
}

fn measure_users(users: usize) -> BenchResult<UsersResult> {
    let repoctl = repoctl_bin()?;
    let admin = crate::admin_url()?;
    let dir = tempfile::Builder::new()
        .prefix("repo-bench-copy-users.")
        .tempdir()?;
    let source = users_source(&repoctl, dir.path(), users)?;
    let source = source.as_str();
    let rows: usize = run(Command::new("sqlite3").args([source, "SELECT count(*) FROM users"]))?
        .trim()
        .parse()?;

    // (a) `\copy` from a CSV exported untimed.
    progress(format!("copy: psql \\copy of {rows} user rows"));
    let csv = dir.path().join("users.csv");
    export_csv(
        source,
        &format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"),
        &csv,
    )?;
    let base = migrated(&admin, &repoctl)?;
    psql(base.url(), "CHECKPOINT")?;
    let start = Instant::now();
    psql(
        base.url(),
        &format!("\\copy users ({USER_COLUMNS}) FROM '{}' CSV", csv.display()),
    )?;
    let psql_s = start.elapsed().as_secs_f64();
    drop(base);

    // (b) pgloader: data only into the migrated table; it leaves the schema alone
    // (without `no foreign keys` it drops the foreign keys that reference users and
    // does not restore them).
    progress(format!("copy: pgloader of {rows} user rows"));
    let loaded = migrated(&admin, &repoctl)?;
    psql(loaded.url(), "CHECKPOINT")?;
    let command_file = dir.path().join("users.load");
    std::fs::write(
        &command_file,
        format!(
            "LOAD DATABASE\n  FROM sqlite://{source}\n  INTO {}\n  WITH data only, \
             create no tables, create no indexes, reset no sequences, no foreign keys\n  \
             INCLUDING ONLY TABLE NAMES LIKE 'users';\n",
            loaded.url()
        ),
    )?;
    let pgloader = timed_pgloader(dir.path(), &command_file, loaded.url(), rows);
    drop(loaded);

    // (c) repoctl, verification included, as the chunk part runs it.
    progress(format!(
        "copy: repoctl copy of {rows} user rows (verification included)"
    ));
    let target = migrated(&admin, &repoctl)?;
    let (repoctl_s, repoctl_peak_rss_mib) =
        timed_repoctl_copy(&repoctl, source, target.url(), dir.path())?;
    let (pgloader_s, pgloader_error) = match pgloader {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    Ok(UsersResult {
        user_rows: rows,
        psql_s,
        psql_rows_per_s: rows as f64 / psql_s,
        pgloader_s,
        pgloader_rows_per_s: pgloader_s.map(|s| rows as f64 / s),
        pgloader_error,
        repoctl_s,
        repoctl_rows_per_s: rows as f64 / repoctl_s,
        ratio: repoctl_s / psql_s,
        ratio_pgloader: pgloader_s.map(|s| repoctl_s / s),
        pgloader_ratio: pgloader_s.map(|s| s / psql_s),
        repoctl_peak_rss_mib,
    })
}

fn measure(chunk_rows: usize) -> BenchResult<CopyResult> {
    let repoctl = repoctl_bin()?;
    let admin = crate::admin_url()?;
    let dir = tempfile::Builder::new()
        .prefix("repo-bench-copy.")
        .tempdir()?;
    let (source, rows) = demo_source(&repoctl, dir.path(), chunk_rows, "copy")?;
    let source = source.as_str();

    // Baseline: every table but chunks loaded untimed, chunks exported to CSV
    // untimed, then the timed `\copy`.
    progress(format!("copy: psql \\copy of {rows} chunk rows"));
    let base = migrated(&admin, &repoctl)?;
    run(Command::new(&repoctl).args([
        "copy",
        "--from",
        source,
        "--to",
        base.url(),
        "--tables",
        "documents",
        "--no-progress",
        "--no-verify",
    ]))?;
    let csv = dir.path().join("chunks.csv");
    export_csv(
        source,
        &format!("SELECT {COLUMNS} FROM chunks ORDER BY id"),
        &csv,
    )?;
    psql(base.url(), "CHECKPOINT")?;
    let start = Instant::now();
    psql(
        base.url(),
        &format!("\\copy chunks ({COLUMNS}) FROM '{}' CSV", csv.display()),
    )?;
    let psql_s = start.elapsed().as_secs_f64();
    drop(base);

    // repoctl: all tables, verification included.
    progress("copy: repoctl copy (all tables, verification included)");
    let target = migrated(&admin, &repoctl)?;
    let (repoctl_s, repoctl_peak_rss_mib) =
        timed_repoctl_copy(&repoctl, source, target.url(), dir.path())?;
    Ok(CopyResult {
        chunk_rows: rows,
        psql_s,
        psql_rows_per_s: rows as f64 / psql_s,
        repoctl_s,
        repoctl_rows_per_s: rows as f64 / repoctl_s,
        ratio: repoctl_s / psql_s,
        repoctl_peak_rss_mib,
    })
}

/// `plan` (the mode's size of a part) overridden by the environment variable `name`
/// when set; 0 skips the part. Quick mode (`plan` is `None`) stays skipped.
fn part_size(plan: Option<usize>, name: &str) -> BenchResult<Option<usize>> {
    let Some(planned) = plan else {
        return Ok(None);
    };
    let size = match std::env::var(name) {
        Ok(n) if !n.trim().is_empty() => n
            .trim()
            .replace('_', "")
            .parse::<usize>()
            .map_err(|e| format!("{name} {n:?}: {e}"))?,
        _ => planned,
    };
    Ok((size > 0).then_some(size))
}

fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or("–".to_owned(), |r| format!("{r:.2}×"))
}

/// The row of a part that did not run: quick mode (`plan` is `None`) or a size of 0.
fn skipped_row(plan: Option<usize>, variable: &str, cells: usize) -> Vec<String> {
    let mut row = vec![match plan {
        None => {
            "skipped: full mode only (generating and copying the source takes minutes)".to_owned()
        }
        Some(_) => format!("skipped: {variable}=0"),
    }];
    row.resize(cells, "–".into());
    row
}

impl Section for Copy {
    fn id(&self) -> &'static str {
        "copy"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let mut table = Table::new(
            "SQLite → PostgreSQL",
            &[
                "tool",
                "chunk rows",
                "seconds",
                "rows/s",
                "vs \\copy",
                "peak RSS MiB",
            ],
        );
        let mut narrow = Table::new(
            "SQLite → PostgreSQL, narrow rows (users)",
            &[
                "tool",
                "user rows",
                "seconds",
                "rows/s",
                "vs \\copy",
                "vs pgloader",
                "peak RSS MiB",
            ],
        );
        let mut targets = Vec::new();
        let chunks = match part_size(env.plan.copy_chunks, "REPO_BENCH_COPY_CHUNKS")? {
            Some(n) => Some(measure(n)?),
            None => None,
        };
        let users_size = part_size(env.plan.copy_users, "REPO_BENCH_COPY_USERS")?;
        let users = match users_size {
            Some(n) => Some(measure_users(n)?),
            None => None,
        };
        match &chunks {
            None => table.row(skipped_row(
                env.plan.copy_chunks,
                "REPO_BENCH_COPY_CHUNKS",
                table.header.len(),
            )),
            Some(r) => {
                let rss = r
                    .repoctl_peak_rss_mib
                    .map_or("–".to_owned(), |m| format!("{m:.1}"));
                table.row(vec![
                    "`psql \\copy` (chunks only, from CSV)".into(),
                    r.chunk_rows.to_string(),
                    format!("{:.1}", r.psql_s),
                    format!("{:.0}", r.psql_rows_per_s),
                    "1.00×".into(),
                    "–".into(),
                ]);
                table.row(vec![
                    "`repoctl copy` (all tables + verify)".into(),
                    r.chunk_rows.to_string(),
                    format!("{:.1}", r.repoctl_s),
                    format!("{:.0}", r.repoctl_rows_per_s),
                    format!("{:.2}×", r.ratio),
                    rss.clone(),
                ]);
                targets.push(TargetResult {
                    target: format!("repoctl copy ≤ {RATIO_TARGET}× psql \\copy time"),
                    subject: "repoctl copy, SQLite → PostgreSQL".into(),
                    measured: format!("{:.2}×", r.ratio),
                    met: r.ratio <= RATIO_TARGET,
                });
                if let Some(mib) = r.repoctl_peak_rss_mib {
                    targets.push(TargetResult {
                        target: format!("repoctl copy peak memory < {MEMORY_TARGET_MIB} MB"),
                        subject: "repoctl copy, SQLite → PostgreSQL".into(),
                        measured: format!("{mib:.1} MiB"),
                        met: mib < MEMORY_TARGET_MIB,
                    });
                }
            }
        }
        match &users {
            None => narrow.row(skipped_row(
                env.plan.copy_users,
                "REPO_BENCH_COPY_USERS",
                narrow.header.len(),
            )),
            Some(r) => {
                let n = r.user_rows.to_string();
                narrow.row(vec![
                    "`psql \\copy` (from CSV)".into(),
                    n.clone(),
                    format!("{:.2}", r.psql_s),
                    format!("{:.0}", r.psql_rows_per_s),
                    "1.00×".into(),
                    ratio_cell(r.pgloader_s.map(|s| r.psql_s / s)),
                    "–".into(),
                ]);
                match (&r.pgloader_s, &r.pgloader_error) {
                    (Some(s), _) => narrow.row(vec![
                        "pgloader (data only)".into(),
                        n.clone(),
                        format!("{s:.2}"),
                        format!("{:.0}", r.pgloader_rows_per_s.unwrap_or(0.0)),
                        ratio_cell(r.pgloader_ratio),
                        "1.00×".into(),
                        "–".into(),
                    ]),
                    (None, e) => {
                        let mut row = vec![format!(
                            "pgloader failed: {}",
                            e.as_deref().unwrap_or("no figure")
                        )];
                        row.resize(narrow.header.len(), "–".into());
                        narrow.row(row);
                    }
                }
                narrow.row(vec![
                    "`repoctl copy` (+ verify)".into(),
                    n,
                    format!("{:.2}", r.repoctl_s),
                    format!("{:.0}", r.repoctl_rows_per_s),
                    format!("{:.2}×", r.ratio),
                    ratio_cell(r.ratio_pgloader),
                    r.repoctl_peak_rss_mib
                        .map_or("–".to_owned(), |m| format!("{m:.1}")),
                ]);
                let subject = format!(
                    "repoctl copy, SQLite → PostgreSQL, {} narrow rows (users)",
                    r.user_rows
                );
                targets.push(TargetResult {
                    target: format!(
                        "repoctl copy (verification included) ≤ {PGLOADER_TARGET}× pgloader \
                         time on narrow rows"
                    ),
                    subject: subject.clone(),
                    measured: match (r.ratio_pgloader, &r.pgloader_error) {
                        (Some(ratio), _) => format!("{ratio:.2}×"),
                        (None, e) => {
                            format!("no pgloader figure ({})", e.as_deref().unwrap_or("unknown"))
                        }
                    },
                    met: r.ratio_pgloader.is_some_and(|x| x <= PGLOADER_TARGET),
                });
                targets.push(TargetResult {
                    target: format!(
                        "repoctl copy ≤ {RATIO_TARGET}× psql \\copy time on narrow rows"
                    ),
                    subject,
                    measured: format!("{:.2}×", r.ratio),
                    met: r.ratio <= RATIO_TARGET,
                });
            }
        }
        let full = crate::cli::Plan::for_mode(crate::cli::Mode::Full);
        Ok(SectionReport {
            id: self.id(),
            title: "Data copy: repoctl copy against psql \\copy and pgloader".into(),
            method: format!(
                "Chunks: a SQLite source from `repoctl demo-data` ({} chunks per document; {} \
                 chunk rows in full mode), generated untimed. Baseline: a fresh PostgreSQL \
                 database with the schema and the documents loaded, the chunks exported to \
                 CSV with `sqlite3` (untimed), then timed `psql -c \"\\copy chunks (…) FROM \
                 'chunks.csv' CSV\"`. Then `repoctl copy --from SQLITE --to PG` of every \
                 table into another fresh database, verification included, timed as a \
                 process (peak memory from `/usr/bin/time -v`). Narrow rows: a SQLite source \
                 migrated by `repoctl` holding {} users (ten columns, about 180 bytes a row) \
                 made untimed by one `INSERT … SELECT` over a recursive CTE; each tool then \
                 loads it into its own fresh database with the schema already migrated, after \
                 a CHECKPOINT: `\\copy users (…) FROM 'users.csv' CSV` (CSV exported \
                 untimed), `pgloader` with a command file (`data only, create no tables, \
                 create no indexes, reset no sequences, no foreign keys`, users only; its \
                 row count is checked untimed, as it exits 0 with rejected rows), and \
                 `repoctl copy` of every table (only users has rows) with its verification. \
                 pgloader does no verification and no sequence reset. Ratios = the row's \
                 seconds over the column's tool's seconds (lower is better). Sizes: \
                 REPO_BENCH_COPY_CHUNKS, REPO_BENCH_COPY_USERS (0 skips a part).",
                CHUNKS_PER_DOCUMENT,
                part_size(env.plan.copy_chunks, "REPO_BENCH_COPY_CHUNKS")?
                    .or(full.copy_chunks)
                    .unwrap_or(0),
                users_size.or(full.copy_users).unwrap_or(0),
            ),
            tables: vec![table, narrow],
            notes: Vec::new(),
            targets,
            data: serde_json::to_value(CopyData {
                chunks,
                narrow: users,
            })?,
        })
    }
}

/// Writes the rows of `select` on the SQLite file `source` as CSV into `csv`, with
/// `sqlite3` (untimed), straight into the file: at full size it is over 100 MB.
fn export_csv(source: &str, select: &str, csv: &std::path::Path) -> BenchResult<()> {
    run(Command::new("sqlite3")
        .args(["-csv", source, select])
        .stdout(std::fs::File::create(csv)?))?;
    Ok(())
}
