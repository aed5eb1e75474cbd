//! `repoctl backup` and `repoctl restore`.
//!
//! - SQLite: `VACUUM INTO` writes a consistent copy (one read snapshot) while the
//!   application keeps writing; restore copies the file into place and checks it
//!   (`PRAGMA integrity_check`, `PRAGMA foreign_key_check`).
//! - PostgreSQL: `pg_dump -Fc` (custom format, compressed) and `pg_restore` into an
//!   empty database (`--no-owner --no-privileges --single-transaction
//!   --exit-on-error`). The client tools come from Debian's `postgresql-client`
//!   package. A password in the URL never reaches a command line (where `ps` shows
//!   it): the tools get the URL without it and the password in their own `PGPASSWORD`.
//!
//! Either way the backup is written next to `--out` under a temporary name and renamed
//! when complete, so a failed backup never leaves a file that looks like one.
//!
//! `--verify` restores the backup into a scratch database (a temporary SQLite file, or
//! a temporary database on the same PostgreSQL server, dropped afterwards) and compares
//! it, table by table with `verify`'s checksums, with the source **as of the backup's
//! snapshot**, so that it holds while writers run: PostgreSQL dumps a snapshot that
//! repoctl exported from a transaction it keeps open and reads the source in; SQLite
//! starts its read snapshot right after `VACUUM INTO` on the same connection and
//! checks with `PRAGMA data_version` that no other connection committed in between
//! (if one did, it takes the copy once more while holding the write lock, so writers
//! wait for the length of the copy).

use crate::conn::{DbConn, Endpoint, Role};
use crate::error::{exit, Failure, Secrets};
use crate::libpq_url::ClientUrl;
use crate::progress::{Mode, Progress};
use crate::report::VerifyRow;
use crate::schema::Table;
use crate::verify::{checksum_all, checksum_table, verify_rows};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The Debian package that has `pg_dump` and `pg_restore`.
pub const CLIENT_PACKAGE: &str = "postgresql-client";

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const PG_CUSTOM_MAGIC: &[u8] = b"PGDMP";

/// What a backup file holds, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupFormat {
    /// A SQLite database file (from `VACUUM INTO`).
    Sqlite,
    /// A `pg_dump` custom-format archive.
    PostgresCustom,
}

impl BackupFormat {
    /// Reads the first bytes of `path`; `None` when they are neither format.
    pub fn detect(path: &Path) -> Result<Option<Self>, Failure> {
        use std::io::Read;
        let mut head = Vec::with_capacity(16);
        std::fs::File::open(path)
            .map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display())))?
            .take(16)
            .read_to_end(&mut head)?;
        Ok(if head.starts_with(SQLITE_MAGIC) {
            Some(BackupFormat::Sqlite)
        } else if head.starts_with(PG_CUSTOM_MAGIC) {
            Some(BackupFormat::PostgresCustom)
        } else {
            None
        })
    }
}

/// `program` with the password of `client` in its environment (`PGPASSWORD`), never
/// on its command line, and no standard input.
fn client_command(client: &ClientUrl, program: &str) -> Command {
    let mut cmd = Command::new(program);
    if let Some(p) = &client.password {
        cmd.env("PGPASSWORD", p);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a PostgreSQL client tool to completion; a missing tool names the package.
fn run_tool(mut cmd: Command, tool: &str, secrets: &Secrets) -> Result<(), Failure> {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::connection(format!(
                "{tool} was not found on PATH: install the PostgreSQL client tools \
                 (Debian/Ubuntu: apt-get install {CLIENT_PACKAGE}), of the server's major \
                 version or newer"
            )));
        }
        Err(e) => return Err(Failure::other(format!("cannot run {tool}: {e}"))),
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = secrets.scrub(String::from_utf8_lossy(&out.stderr).trim());
    let message = format!("{tool} failed ({}): {stderr}", out.status);
    Err(
        if stderr.contains("connection to server") || stderr.contains("could not connect") {
            Failure::connection(message)
        } else {
            Failure::other(message)
        },
    )
}

/// `path` with a temporary suffix, in the same directory (so a rename is atomic).
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

/// Removes a file when dropped unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(QueryableByName)]
struct DatabaseLocale {
    #[diesel(sql_type = Text)]
    encoding: String,
    #[diesel(sql_type = Text)]
    collate: String,
    #[diesel(sql_type = Text)]
    ctype: String,
}

#[derive(QueryableByName)]
struct IntRow {
    #[diesel(sql_type = BigInt)]
    v: i64,
}

fn sqlite_data_version(conn: &mut SqliteConnection) -> Result<i64, Failure> {
    let rows = diesel::sql_query("SELECT data_version AS v FROM pragma_data_version")
        .load::<IntRow>(conn)?;
    Ok(rows.first().map_or(0, |r| r.v))
}

fn vacuum_into(conn: &mut SqliteConnection, path: &Path) -> Result<(), Failure> {
    let path = path
        .to_str()
        .ok_or_else(|| Failure::other("the backup path is not valid UTF-8"))?;
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(path)
        .execute(conn)
        .map_err(|e| Failure::other(format!("VACUUM INTO failed: {e}")))?;
    Ok(())
}

fn open_sqlite_source(source: &Endpoint, secrets: &Secrets) -> Result<SqliteConnection, Failure> {
    if !source.exists() {
        return Err(Failure::connection(format!(
            "SQLite database {} does not exist",
            source.display()
        )));
    }
    let mut conn = SqliteConnection::establish(source.url()).map_err(|e| {
        Failure::connection(secrets.scrub(&format!("cannot open {}: {e}", source.display())))
    })?;
    conn.batch_execute("PRAGMA busy_timeout = 5000")?;
    Ok(conn)
}

/// Starts a read snapshot on `conn` (a read transaction with one read in it).
fn sqlite_begin_read(conn: &mut SqliteConnection) -> Result<(), Failure> {
    conn.batch_execute("BEGIN")?;
    diesel::sql_query("SELECT count(*) AS v FROM sqlite_schema").load::<IntRow>(conn)?;
    Ok(())
}

/// Writes the SQLite backup to `partial`; with `snapshot`, leaves `conn` in a read
/// transaction whose snapshot is exactly the backup's.
fn sqlite_backup(
    conn: &mut SqliteConnection,
    source: &Endpoint,
    partial: &Path,
    snapshot: bool,
    secrets: &Secrets,
) -> Result<(), Failure> {
    if !snapshot {
        return vacuum_into(conn, partial);
    }
    let before = sqlite_data_version(conn)?;
    vacuum_into(conn, partial)?;
    sqlite_begin_read(conn)?;
    if sqlite_data_version(conn)? == before {
        return Ok(());
    }
    // Another connection committed between the copy and the snapshot: copy once more
    // with writers held off by a write lock, then take the snapshot before letting go.
    conn.batch_execute("ROLLBACK")?;
    std::fs::remove_file(partial)?;
    let mut lock = open_sqlite_source(source, secrets)?;
    lock.batch_execute("BEGIN IMMEDIATE")?;
    let copied = vacuum_into(conn, partial).and_then(|()| sqlite_begin_read(conn));
    lock.batch_execute("ROLLBACK")?;
    copied
}

/// Exported snapshot of a PostgreSQL source: the connection holds the transaction.
fn pg_export_snapshot(conn: &mut DbConn) -> Result<String, Failure> {
    let DbConn::Pg(c) = conn else {
        return Err(Failure::other("not a PostgreSQL connection"));
    };
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    let rows = diesel::sql_query("SELECT pg_export_snapshot() AS v").load::<TextRow>(c)?;
    rows.into_iter()
        .next()
        .map(|r| r.v)
        .ok_or_else(|| Failure::other("pg_export_snapshot returned nothing"))
}

fn pg_dump(
    source: &Endpoint,
    partial: &Path,
    snapshot: Option<&str>,
    secrets: &Secrets,
) -> Result<(), Failure> {
    let client = ClientUrl::split(source.url())?;
    let mut cmd = client_command(&client, "pg_dump");
    cmd.arg("--format=custom").arg("--file").arg(partial);
    if let Some(id) = snapshot {
        cmd.arg(format!("--snapshot={id}"));
    }
    cmd.arg(format!("--dbname={}", client.url));
    run_tool(cmd, "pg_dump", secrets)
}

fn pg_restore(file: &Path, target: &Endpoint, secrets: &Secrets) -> Result<(), Failure> {
    let client = ClientUrl::split(target.url())?;
    let mut cmd = client_command(&client, "pg_restore");
    cmd.args([
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
    ])
    .arg(format!("--dbname={}", client.url))
    .arg(file);
    run_tool(cmd, "pg_restore", secrets)
}

/// A database created for `--verify` on the source's server, dropped on drop.
struct ScratchPg {
    admin: PgConnection,
    name: String,
    endpoint: Endpoint,
}

impl ScratchPg {
    fn create(source: &Endpoint, secrets: &Secrets) -> Result<Self, Failure> {
        let mut admin = PgConnection::establish(source.url()).map_err(|e| {
            Failure::connection(
                secrets.scrub(&format!("cannot connect to {}: {e}", source.display())),
            )
        })?;
        let name = format!(
            "repoctl_verify_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        // The same encoding and locale as the source (text functions in generated
        // columns and indexes depend on them). The name is generated here (letters,
        // digits, underscores); the locale names come from pg_database, quoted as
        // literals (CREATE DATABASE takes no bind parameters).
        let like = diesel::sql_query(
            "SELECT pg_encoding_to_char(encoding) AS encoding, datcollate::text AS collate, \
             datctype::text AS ctype FROM pg_database WHERE datname = current_database()",
        )
        .load::<DatabaseLocale>(&mut admin)?;
        let like = like
            .into_iter()
            .next()
            .ok_or_else(|| Failure::other("the source database is not in pg_database"))?;
        let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}",
                literal(&like.encoding),
                literal(&like.collate),
                literal(&like.ctype)
            ))
            .map_err(|e| {
                Failure::other(secrets.scrub(&format!(
                    "cannot create the scratch database for --verify (the user needs \
                     CREATEDB): {e}"
                )))
            })?;
        let url = ClientUrl {
            url: source.url().to_owned(),
            password: None,
        }
        .with_database(&name)?;
        Ok(ScratchPg {
            admin,
            name,
            endpoint: Endpoint::Postgres(url),
        })
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        // WITH (FORCE) needs PostgreSQL 13; nothing else is connected to it by now.
        let drop = format!("DROP DATABASE IF EXISTS {}", self.name);
        if self
            .admin
            .batch_execute(&format!("{drop} WITH (FORCE)"))
            .is_err()
        {
            let _ = self.admin.batch_execute(&drop);
        }
    }
}

/// What `backup` did.
#[derive(Debug)]
pub struct BackupOutcome {
    /// Bytes written.
    pub bytes: u64,
    /// With `--verify`: the comparison of the restored copy with the source snapshot.
    pub verification: Option<Vec<VerifyRow>>,
}

/// Backs `source` up into `out` (which must not exist); with `verify`, restores the
/// backup into a scratch database and compares it with the source as of the backup.
pub fn backup(
    source: &Endpoint,
    out: &Path,
    verify: bool,
    secrets: &Secrets,
) -> Result<BackupOutcome, Failure> {
    if out.exists() {
        return Err(Failure::not_ready(format!(
            "{} already exists: a backup never overwrites a file",
            out.display()
        )));
    }
    let partial = partial_path(out);
    let _ = std::fs::remove_file(&partial);
    let mut cleanup = RemoveOnDrop(Some(partial.clone()));
    let verification = match source {
        Endpoint::Sqlite(_) => {
            let mut conn = open_sqlite_source(source, secrets)?;
            sqlite_backup(&mut conn, source, &partial, verify, secrets)?;
            if verify {
                let scratch_dir = tempfile_dir(out)?;
                let scratch_path = scratch_dir.path().join("verify.sqlite3");
                std::fs::copy(&partial, &scratch_path)?;
                let scratch = Endpoint::Sqlite(scratch_path.to_string_lossy().into_owned());
                check_sqlite_file(&scratch_path)?;
                let mut conn = DbConn::Sqlite(conn);
                Some(compare_with_snapshot(&mut conn, source, &scratch, secrets)?)
            } else {
                None
            }
        }
        Endpoint::Postgres(_) => {
            if verify {
                let mut conn = DbConn::open(source, Role::Read, secrets)?;
                let snapshot = pg_export_snapshot(&mut conn)?;
                pg_dump(source, &partial, Some(&snapshot), secrets)?;
                let scratch = ScratchPg::create(source, secrets)?;
                pg_restore(&partial, &scratch.endpoint, secrets)?;
                let rows = compare_with_snapshot(&mut conn, source, &scratch.endpoint, secrets)?;
                drop(scratch);
                Some(rows)
            } else {
                pg_dump(source, &partial, None, secrets)?;
                None
            }
        }
    };
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, out)?;
    cleanup.disarm();
    let bytes = std::fs::metadata(out)?.len();
    Ok(BackupOutcome {
        bytes,
        verification,
    })
}

fn tempfile_dir(near: &Path) -> Result<tempfile::TempDir, Failure> {
    let parent = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(tempfile::Builder::new()
        .prefix(".repoctl-verify-")
        .tempdir_in(parent)?)
}

/// Compares every table of `scratch` with the source read on `conn`, which is inside
/// the backup's snapshot (ended here).
fn compare_with_snapshot(
    conn: &mut DbConn,
    source: &Endpoint,
    scratch: &Endpoint,
    secrets: &Secrets,
) -> Result<Vec<VerifyRow>, Failure> {
    let progress = Progress::new(Mode::Off);
    let task = progress.task("verify", None);
    let src = Table::ALL
        .iter()
        .map(|&t| checksum_table(conn, source.origin(), t, 5000, None, &task))
        .collect::<Result<Vec<_>, _>>()?;
    conn.exec("COMMIT")?;
    let dst = checksum_all(
        scratch,
        secrets,
        &Table::ALL,
        5000,
        &HashMap::new(),
        "scratch",
        &progress,
    )?;
    Ok(verify_rows(&Table::ALL, &src, &dst))
}

/// `PRAGMA integrity_check` and `PRAGMA foreign_key_check` of a SQLite file.
fn check_sqlite_file(path: &Path) -> Result<(), Failure> {
    let mut conn = SqliteConnection::establish(&path.to_string_lossy())
        .map_err(|e| Failure::other(format!("cannot open {}: {e}", path.display())))?;
    let integrity = diesel::sql_query("SELECT integrity_check AS v FROM pragma_integrity_check")
        .load::<TextRow>(&mut conn)?;
    if integrity.len() != 1 || integrity[0].v != "ok" {
        let first: Vec<String> = integrity.into_iter().take(5).map(|r| r.v).collect();
        return Err(Failure::other(format!(
            "{} fails PRAGMA integrity_check: {}",
            path.display(),
            first.join("; ")
        )));
    }
    let fk = diesel::sql_query("SELECT count(*) AS v FROM pragma_foreign_key_check")
        .load::<IntRow>(&mut conn)?;
    if fk.first().map_or(0, |r| r.v) != 0 {
        return Err(Failure::other(format!(
            "{} has rows whose foreign key points nowhere (PRAGMA foreign_key_check)",
            path.display()
        )));
    }
    Ok(())
}

/// Restores the backup `from` into `target`, which must be empty: a SQLite file that
/// does not exist yet, or a PostgreSQL database without tables.
pub fn restore(from: &Path, target: &Endpoint, secrets: &Secrets) -> Result<(), Failure> {
    let format = BackupFormat::detect(from)?.ok_or_else(|| Failure {
        code: exit::USAGE,
        message: format!(
            "{} is neither a SQLite database nor a pg_dump custom-format archive",
            from.display()
        ),
    })?;
    match (format, target) {
        (BackupFormat::Sqlite, Endpoint::Sqlite(_)) => {
            let path = target.sqlite_path().unwrap_or_default();
            let wal = PathBuf::from(format!("{}-wal", path.display()));
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) || wal.exists() {
                return Err(Failure::not_ready(format!(
                    "{} already exists: restore into a new file (or move it away first)",
                    target.display()
                )));
            }
            let partial = partial_path(&path);
            let mut cleanup = RemoveOnDrop(Some(partial.clone()));
            std::fs::copy(from, &partial)?;
            std::fs::File::open(&partial)?.sync_all()?;
            check_sqlite_file(&partial)?;
            std::fs::rename(&partial, &path)?;
            cleanup.disarm();
            Ok(())
        }
        (BackupFormat::PostgresCustom, Endpoint::Postgres(_)) => {
            let mut conn = DbConn::open(target, Role::Write, secrets)?;
            if let DbConn::Pg(c) = &mut conn {
                let tables = diesel::sql_query(
                    "SELECT count(*) AS v FROM information_schema.tables \
                     WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
                )
                .load::<IntRow>(c)?;
                if tables.first().map_or(0, |r| r.v) > 0 {
                    return Err(Failure::not_ready(format!(
                        "{} is not empty: restore into a new database \
                         (createdb, or CREATE DATABASE …)",
                        target.display()
                    )));
                }
            }
            drop(conn);
            pg_restore(from, target, secrets)
        }
        (BackupFormat::Sqlite, Endpoint::Postgres(_)) => Err(Failure {
            code: exit::USAGE,
            message: format!(
                "{} is a SQLite backup: restore it to a SQLite path, then `repoctl copy` it \
                 to PostgreSQL",
                from.display()
            ),
        }),
        (BackupFormat::PostgresCustom, Endpoint::Sqlite(_)) => Err(Failure {
            code: exit::USAGE,
            message: format!(
                "{} is a PostgreSQL dump: restore it into a PostgreSQL database, then \
                 `repoctl copy` it to SQLite",
                from.display()
            ),
        }),
    }
}

/// Runs `backup` and prints what happened; returns the exit code.
pub fn run_backup(
    source: &Endpoint,
    out: &Path,
    verify: bool,
    secrets: &Secrets,
) -> Result<u8, Failure> {
    let started = Instant::now();
    let outcome = backup(source, out, verify, secrets)?;
    println!(
        "repoctl backup: {} → {} ({} bytes, {:.2}s)",
        source.display(),
        out.display(),
        outcome.bytes,
        started.elapsed().as_secs_f64()
    );
    let Some(rows) = outcome.verification else {
        return Ok(exit::OK);
    };
    let equal = rows.iter().all(|r| r.equal);
    println!(
        "\nverified: the backup restored into a scratch database, against the source \
         as of the backup\n"
    );
    print!("{}", crate::report::verify_table(&rows));
    println!("\n{}", if equal { "equal" } else { "MISMATCH" });
    Ok(if equal { exit::OK } else { exit::MISMATCH })
}

/// Runs `restore` and prints what happened; returns the exit code.
pub fn run_restore(from: &Path, target: &Endpoint, secrets: &Secrets) -> Result<u8, Failure> {
    let started = Instant::now();
    restore(from, target, secrets)?;
    println!(
        "repoctl restore: {} → {} ({:.2}s)",
        from.display(),
        target.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(exit::OK)
}
