//! # repoctl
//!
//! Schema migrations and verified data migration between the SQLite and PostgreSQL
//! backends of the data layer (docs/domain.md, "Moving data between backends").
//!
//! ```text
//! repoctl migrate up|down|status --database-url URL      (down: the newest; --all: every one)
//! repoctl copy --from URL --to URL [--dry-run] [--batch-size N] [--tables a,b]
//!              [--truncate | --resume] [--on-error stop|skip-row] [--report FILE]
//!              [--no-progress] [--progress-every SECONDS] [--no-verify]
//! repoctl verify --from URL --to URL [--tables a,b] [--report FILE] [--no-progress]
//! repoctl demo-data --database-url URL --scale N [--chunks-per-document N] [--seed S]
//! repoctl backup --database-url URL --out PATH [--verify]
//! repoctl restore --from PATH --database-url URL
//! repoctl live start|sync|status|cutover|abort --from URL [--to URL] …   (see [`live`])
//! ```
//!
//! URLs are those of `DATABASE_URL` (`sqlite://path`, `path.db`, `postgres://…`).
//!
//! ## Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (a database error during the copy, I/O) |
//! | 2 | usage error (bad arguments; same source and target) |
//! | 3 | connection or configuration error (bad URL, unreachable server, missing SQLite file, `pg_dump`/`pg_restore` not installed) |
//! | 4 | rows were refused (or, in a dry run, would be) |
//! | 5 | verification found a difference (wins over 4) |
//! | 6 | the target is not ready: not empty without `--truncate`/`--resume`, or a schema version mismatch; a backup `--out` or restore target that already exists |
//!
//! ## Backup and restore
//!
//! See [`backup`]: SQLite through `VACUUM INTO`, PostgreSQL through `pg_dump -Fc` /
//! `pg_restore`; `--verify` restores into a scratch database and compares it with the
//! source as of the backup (exit 5 on a difference).
//!
//! ## What `copy` guarantees
//!
//! - Tables go in foreign-key order (users, api_keys, collections,
//!   collection_permissions, operations, documents, chunks), read in one snapshot of the
//!   source in pages of `--batch-size` rows; each page is one transaction on the target
//!   (PostgreSQL `COPY … FROM STDIN`; SQLite `BEGIN IMMEDIATE` and multi-row INSERTs),
//!   so memory stays flat and a killed copy can be continued with `--resume`.
//! - Every value is converted with one rule per column type. A value with one clear
//!   meaning in another spelling (a timestamp with a space for `T`, fewer fraction
//!   digits, an offset; a boolean stored as `'true'`/`'1'`) is converted and counted;
//!   anything else (NUL in text, invalid UTF-8, an unparseable or empty timestamp,
//!   `'yes'` in a boolean, invalid JSON, a non-canonical UUID, a CHECK violation, a
//!   foreign key pointing nowhere) refuses the row, reported with table, key, column and
//!   reason. Nothing is silently dropped or changed.
//! - Every row also passes the domain's own validation, the functions the repositories
//!   call before writing (see [`domain`]): a row the application could not have written
//!   (an email differing from its lowercase stored form, an upper-case `content_hash`,
//!   an operation `config` of `{}`, a `meta` that is not an object, …) is refused too.
//! - JSON with a key twice in one object is refused: it has no single meaning.
//! - Identity sequences are reset past the largest id and the source's own high-water
//!   mark, so ids of deleted rows are not reused.
//! - It ends with `verify`: row counts and order-independent content checksums
//!   computed the same way on both sides.

#![forbid(unsafe_code)]

pub mod backup;
pub mod conn;
pub mod copy;
pub mod demo;
pub mod domain;
pub mod error;
pub mod json;
pub mod libpq_url;
pub mod live;
pub mod migrate;
pub mod progress;
pub mod report;
pub mod schema;
pub mod target;
pub mod timestamp;
pub mod value;
pub mod verify;

use clap::{Parser, Subcommand};
use conn::Endpoint;
use error::{exit, Failure, Secrets};
use schema::Table;
use std::path::PathBuf;
use std::process::ExitCode;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "repoctl",
    version,
    about = "Schema migrations and verified SQLite ⇄ PostgreSQL data migration"
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embedded schema migrations.
    Migrate {
        /// What to do.
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Copy every table from one database to another, then verify.
    Copy(CopyArgs),
    /// Compare row counts and content checksums of two databases.
    Verify(VerifyArgs),
    /// Fill a database with realistic generated data.
    DemoData(DemoArgs),
    /// Back a database up into a file (SQLite: `VACUUM INTO`; PostgreSQL: `pg_dump -Fc`).
    Backup(BackupArgs),
    /// Restore a backup into an empty database (SQLite: a new file; PostgreSQL: `pg_restore`).
    Restore(RestoreArgs),
    /// Online migration while the application keeps writing: start, sync, cutover, abort.
    Live {
        /// What to do.
        #[command(subcommand)]
        action: live::LiveAction,
    },
}

/// `backup` arguments.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Database URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The backup file to write (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// Restore the backup into a scratch database and compare it with the source as of
    /// the backup (exit 5 on a difference).
    #[arg(long)]
    pub verify: bool,
}

/// `restore` arguments.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file (a SQLite file from `backup`, or a `pg_dump -Fc` archive).
    #[arg(long)]
    pub from: PathBuf,
    /// The empty database to restore into (SQLite: a file that does not exist yet).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

/// `migrate` actions.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up {
        /// Database URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Revert the newest migration (or all with --all).
    Down {
        /// Database URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Revert every applied migration (drops every table).
        #[arg(long)]
        all: bool,
    },
    /// List applied and pending migrations.
    Status {
        /// Database URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

/// `copy` arguments.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// Source database URL.
    #[arg(long)]
    pub from: String,
    /// Target database URL (migrated first when it has no schema).
    #[arg(long)]
    pub to: String,
    /// Rows per page and per target transaction.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_size: u32,
    /// Copy only these tables (and the tables they reference).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub tables: Option<Vec<Table>>,
    /// Read and validate everything, write nothing; print what would happen.
    #[arg(long)]
    pub dry_run: bool,
    /// Empty every table of a non-empty target first.
    #[arg(long, conflicts_with = "resume")]
    pub truncate: bool,
    /// Continue an interrupted copy: rows already in the target are left out.
    #[arg(long)]
    pub resume: bool,
    /// What to do with a row that cannot be represented on the target.
    #[arg(long, value_enum, default_value = "stop")]
    pub on_error: copy::OnError,
    /// Write a JSON report (per-table summary, conversions, refusals, verification).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No progress on stderr (bars on a terminal; otherwise a plain line per table at
    /// least every --progress-every seconds, the header first).
    #[arg(long)]
    pub no_progress: bool,
    /// Longest gap between two progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 10.0, value_parser = progress_seconds)]
    pub progress_every: f64,
    /// Skip the verification at the end.
    #[arg(long)]
    pub no_verify: bool,
}

/// `verify` arguments.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Source database URL.
    #[arg(long)]
    pub from: String,
    /// Target database URL.
    #[arg(long)]
    pub to: String,
    /// Only these tables.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub tables: Option<Vec<Table>>,
    /// Write the result as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No progress on stderr (see `copy --no-progress`).
    #[arg(long)]
    pub no_progress: bool,
    /// Longest gap between two progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 10.0, value_parser = progress_seconds)]
    pub progress_every: f64,
}

fn progress_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err("a number of seconds from 0 to 3600".into()),
    }
}

/// `demo-data` arguments.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Database URL (migrated first).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Size: per unit 4 users, 8 API keys, 2 collections, grants, 10 operations and
    /// 20 documents.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub scale: u32,
    /// Chunks per document.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub chunks_per_document: u32,
    /// Random seed (same seed, same text).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    let mut secrets = Secrets::default();
    match run(cli, &mut secrets) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", secrets.scrub(&f.message));
            f.exit_code()
        }
    }
}

/// Runs a parsed command; `Ok` carries the exit code of a completed command.
pub fn run(cli: Cli, secrets: &mut Secrets) -> Result<u8, Failure> {
    match cli.command {
        Command::Migrate { action } => run_migrate(action, secrets),
        Command::Copy(a) => {
            let opts = copy::CopyOptions {
                from: Endpoint::parse(&a.from, secrets)?,
                to: Endpoint::parse(&a.to, secrets)?,
                tables: a.tables,
                batch_size: a.batch_size as usize,
                dry_run: a.dry_run,
                truncate: a.truncate,
                resume: a.resume,
                on_error: a.on_error,
                report: a.report,
                progress: !a.no_progress,
                progress_every: std::time::Duration::from_secs_f64(a.progress_every),
                verify: !a.no_verify,
            };
            copy::run(&opts, secrets)
        }
        Command::Verify(a) => {
            let from = Endpoint::parse(&a.from, secrets)?;
            let to = Endpoint::parse(&a.to, secrets)?;
            let tables = a
                .tables
                .map_or_else(|| Table::ALL.to_vec(), |t| Table::with_dependencies(&t));
            let started = std::time::Instant::now();
            let header = format!("repoctl verify: {} ↔ {}", from.display(), to.display());
            let progress = progress::Progress::new(progress::Mode::for_stderr(
                !a.no_progress,
                std::time::Duration::from_secs_f64(a.progress_every),
            ));
            progress.header(&header);
            let rows = verify::verify(
                &from,
                &to,
                secrets,
                &tables,
                5000,
                &Default::default(),
                &progress,
            )?;
            let equal = rows.iter().all(|r| r.equal);
            // After a `copy --on-error skip-row` the difference is the refused rows:
            // say so when leaving them out of the source side makes every table equal.
            let explained = if equal {
                None
            } else {
                copy::explained_by_refusals(&from, &to, secrets, &tables, 5000, &progress)?
            };
            drop(progress);
            println!("{header}\n");
            print!("{}", report::verify_table(&rows));
            println!(
                "\n{} in {:.2}s",
                if equal { "equal" } else { "MISMATCH" },
                started.elapsed().as_secs_f64()
            );
            if let Some(by_table) = &explained {
                println!("{}", report::refused_difference_text(by_table));
            }
            if let Some(path) = a.report {
                let json = serde_json::json!({
                    "command": "verify",
                    "source": from.display(),
                    "target": to.display(),
                    "verification": rows,
                    "equal": equal,
                    "difference_is_refused_rows": explained,
                });
                std::fs::write(
                    &path,
                    serde_json::to_vec_pretty(&json).map_err(|e| Failure::other(e.to_string()))?,
                )?;
            }
            Ok(if equal { exit::OK } else { exit::MISMATCH })
        }
        Command::DemoData(a) => {
            let endpoint = Endpoint::parse(&a.database_url, secrets)?;
            demo::run(&endpoint, secrets, a.scale, a.chunks_per_document, a.seed)?;
            Ok(exit::OK)
        }
        Command::Backup(a) => {
            let source = Endpoint::parse(&a.database_url, secrets)?;
            backup::run_backup(&source, &a.out, a.verify, secrets)
        }
        Command::Restore(a) => {
            let target = Endpoint::parse(&a.database_url, secrets)?;
            backup::run_restore(&a.from, &target, secrets)
        }
        Command::Live { action } => live::run(action, secrets),
    }
}

fn run_migrate(action: MigrateAction, secrets: &mut Secrets) -> Result<u8, Failure> {
    match action {
        MigrateAction::Up { database_url } => {
            let e = Endpoint::parse(&database_url, secrets)?;
            let applied = migrate::up(&e, secrets)?;
            if applied.is_empty() {
                println!("{}: up to date", e.display());
            } else {
                for v in applied {
                    println!("applied {v}");
                }
            }
        }
        MigrateAction::Down { database_url, all } => {
            let e = Endpoint::parse(&database_url, secrets)?;
            let reverted = if all {
                migrate::down_all(&e, secrets)?
            } else {
                migrate::down_one(&e, secrets)?.into_iter().collect()
            };
            if reverted.is_empty() {
                println!("{}: nothing to revert", e.display());
            }
            for v in reverted {
                println!("reverted {v}");
            }
        }
        MigrateAction::Status { database_url } => {
            let e = Endpoint::parse(&database_url, secrets)?;
            let (applied, pending) = migrate::status(&e, secrets)?;
            println!("{}", e.display());
            for v in applied {
                println!("  applied  {v}");
            }
            for v in pending {
                println!("  pending  {v}");
            }
        }
    }
    Ok(exit::OK)
}
