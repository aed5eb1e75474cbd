//! Data copy: `repoctl copy` SQLite → PostgreSQL against `psql`'s `\copy` of the same
//! chunk rows from CSV into the same schema, in one run (full mode only: generating
//! and copying the source takes minutes). Runs the built `repoctl` binary (next to
//! this one, or `REPOCTL_BIN`), `sqlite3` and `psql` as processes, on two fresh
//! databases of the benchmark's PostgreSQL server.

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
    // Straight into the file: at full size the CSV is over 100 MB.
    run(Command::new("sqlite3")
        .args([
            "-csv",
            source,
            &format!("SELECT {COLUMNS} FROM chunks ORDER BY id"),
        ])
        .stdout(std::fs::File::create(&csv)?))?;
    psql(base.url(), "CHECKPOINT")?;
    let start = Instant::now();
    psql(
        base.url(),
        &format!("\\copy chunks ({COLUMNS}) FROM '{}' CSV", csv.display()),
    )?;
    let psql_s = start.elapsed().as_secs_f64();
    drop(base);

    // repoctl: all tables, verification included, under /usr/bin/time -v for the
    // peak memory when it is installed.
    progress("copy: repoctl copy (all tables, verification included)");
    let target = migrated(&admin, &repoctl)?;
    psql(target.url(), "CHECKPOINT")?;
    let time_file = dir.path().join("time.txt");
    let gnu_time = Path::new("/usr/bin/time").is_file();
    let mut cmd = if gnu_time {
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-v").arg("-o").arg(&time_file).arg(&repoctl);
        cmd
    } else {
        Command::new(&repoctl)
    };
    cmd.args([
        "copy",
        "--from",
        source,
        "--to",
        target.url(),
        "--no-progress",
    ]);
    let start = Instant::now();
    run(&mut cmd)?;
    let repoctl_s = start.elapsed().as_secs_f64();
    let repoctl_peak_rss_mib = if gnu_time {
        std::fs::read_to_string(&time_file)?
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|kb| kb.trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    } else {
        None
    };
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
        let mut targets = Vec::new();
        let result = match env.plan.copy_chunks {
            Some(n) => Some(measure(n)?),
            None => None,
        };
        match &result {
            None => table.row(vec![
                "skipped: full mode only (generating and copying the source takes minutes)"
                    .to_owned(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]),
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
        Ok(SectionReport {
            id: self.id(),
            title: "Data copy: repoctl copy against psql \\copy".into(),
            method: format!(
                "A SQLite source from `repoctl demo-data` ({} chunks per document; {} chunk \
                 rows in full mode), generated untimed. Baseline: a fresh PostgreSQL \
                 database with the schema and the documents loaded, the chunks exported to \
                 CSV with `sqlite3` (untimed), then timed `psql -c \"\\copy chunks (…) FROM \
                 'chunks.csv' CSV\"`. Then `repoctl copy --from SQLITE --to PG` of every \
                 table into another fresh database, verification included, timed as a \
                 process (peak memory from `/usr/bin/time -v`). Ratio = repoctl seconds over \
                 `\\copy` seconds (lower is better).",
                CHUNKS_PER_DOCUMENT,
                env.plan
                    .copy_chunks
                    .or(crate::cli::Plan::for_mode(crate::cli::Mode::Full).copy_chunks)
                    .unwrap_or(0)
            ),
            tables: vec![table],
            notes: Vec::new(),
            targets,
            data: serde_json::to_value(&result)?,
        })
    }
}
