//! # repo-bench
//!
//! What the repository layer costs against raw Diesel, and which backend to choose:
//! one invocation opens SQLite (a temporary file) and PostgreSQL (a fresh database on
//! the server named by `BENCH_DATABASE_URL`, else `TEST_DATABASE_URL`), seeds both
//! through the factory's handle, runs every section on both, and prints a markdown
//! report (machine, tables, each target met or missed) on stdout; `--json FILE` writes
//! the same figures as JSON.
//!
//! ```text
//! bash scripts/bench.sh --quick              # CI-sized, under 2 minutes
//! bash scripts/bench.sh --full --json out.json
//! ```
//!
//! Sections: point operations, the same through PgBouncer with the pooler mode
//! (`BENCH_PGBOUNCER_URL` or `TEST_PGBOUNCER_URL`; required in full mode, skipped
//! without it in quick mode), concurrency, bulk paths, and (full mode) data copy
//! with `repoctl`. They live in `sections/` (see its module documentation for adding one); raw
//! Diesel baselines live in `raw/` and are checked statement for statement against the
//! repository by the audit in `audit.rs`.

#![forbid(unsafe_code)]

mod audit;
mod backend;
mod cli;
mod machine;
mod raw;
mod report;
mod sections;
mod stats;

use backend::{Backend, MAX_THREADS};
use cli::{Args, Command, Plan};
use machine::Machine;
use repo_core::{redact_url, StoreConfig};
use report::Report;
use std::process::ExitCode;
use std::time::Instant;

/// Errors of the benchmark: reported and the run ends.
pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    match Args::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Run(args)) => match run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("repo-bench: error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Command::Profile(args)) => match profile(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("repo-bench: error: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("repo-bench: {e}\n\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

/// The PostgreSQL server to create the benchmark database on.
fn admin_url() -> BenchResult<String> {
    for name in ["BENCH_DATABASE_URL", "TEST_DATABASE_URL"] {
        if let Ok(url) = std::env::var(name) {
            if !url.trim().is_empty() {
                sections::progress(format!(
                    "PostgreSQL from {name}: {}",
                    redact_url(url.trim())
                ));
                return Ok(url.trim().to_owned());
            }
        }
    }
    Err(
        "neither BENCH_DATABASE_URL nor TEST_DATABASE_URL is set: run scripts/bench.sh, \
         which provisions PostgreSQL the way scripts/test.sh does"
            .into(),
    )
}

/// The store configuration of the run: the environment's (`DB_*` variables, defaults
/// otherwise), with the pool raised to at least [`MAX_THREADS`] connections so that the
/// concurrency section measures the databases, not waits for the pool.
fn store_config() -> BenchResult<StoreConfig> {
    let mut config = StoreConfig::from_env()?;
    let max = u32::try_from(MAX_THREADS).unwrap_or(u32::MAX);
    if config.pool.max_size() < max {
        config.pool.max_overflow = max.saturating_sub(config.pool.pool_size);
    }
    Ok(config)
}

fn command_line() -> String {
    if let Ok(command) = std::env::var("REPO_BENCH_COMMAND") {
        if !command.trim().is_empty() {
            return command.trim().to_owned();
        }
    }
    let mut parts = vec!["repo-bench".to_owned()];
    parts.extend(std::env::args().skip(1));
    parts.join(" ")
}

fn profile(args: &cli::ProfileArgs) -> BenchResult<()> {
    use sections::point::{self, PointOp, ProfileVariant};
    let op =
        PointOp::from_id(&args.op).ok_or_else(|| format!("unknown operation {:?}", args.op))?;
    let variant = match args.variant.as_str() {
        "repo" => ProfileVariant::Repo,
        "repo-no-pre-ping" => ProfileVariant::RepoNoPrePing,
        "raw" => ProfileVariant::Raw,
        "floor" => ProfileVariant::Floor,
        other => return Err(format!("unknown variant {other:?}").into()),
    };
    let config = store_config()?;
    let mut backend = match args.backend.as_str() {
        "sqlite" => Backend::sqlite(&config)?,
        "postgres" => Backend::postgres(&admin_url()?, &config)?,
        "postgres-async" => Backend::postgres(&admin_url()?, &config)?.postgres_async_commit()?,
        other => return Err(format!("unknown backend {other:?}").into()),
    };
    let per_call = point::profile(&mut backend, op, variant, args.calls)?;
    println!(
        "{} on {}, {}: {} calls, {:.1} µs per call",
        args.op,
        backend.label(),
        args.variant,
        args.calls,
        per_call as f64 / 1_000.0
    );
    Ok(())
}

fn run(args: &Args) -> BenchResult<()> {
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let plan = Plan::for_mode(args.mode);
    let mut machine = Machine::detect();
    let config = store_config()?;
    let admin = admin_url()?;

    sections::progress("opening and seeding SQLite");
    let sqlite = Backend::sqlite(&config)?;
    sections::progress("opening and seeding PostgreSQL");
    let postgres = Backend::postgres(&admin, &config)?;
    let postgres_async = postgres.postgres_async_commit()?;
    let backends = vec![sqlite, postgres, postgres_async];
    machine.databases = backends.iter().map(|b| b.info.clone()).collect();

    let mut env = sections::Env {
        plan: plan.clone(),
        backends,
    };
    let mut reports = Vec::new();
    let chosen = sections::all().into_iter().filter(|s| {
        args.only
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == s.id()))
    });
    for section in chosen {
        let section_start = Instant::now();
        let report = section
            .run(&mut env)
            .map_err(|e| format!("section {}: {e}", section.id()))?;
        sections::progress(format!(
            "section {} took {:.1} s",
            section.id(),
            section_start.elapsed().as_secs_f64()
        ));
        reports.push(report);
    }
    drop(env);
    machine.load_at_end = machine::load_average();

    let report = Report {
        mode: args.mode,
        command: command_line(),
        started_at,
        duration_s: started.elapsed().as_secs_f64(),
        plan,
        machine,
        sections: reports,
    };
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        sections::progress(format!("JSON written to {}", path.display()));
    }
    Ok(())
}
