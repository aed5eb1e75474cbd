//! Command line and the sizes of a run.

use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// What the usage text says.
pub(crate) const USAGE: &str = "\
repo-bench: what the repository layer costs against raw Diesel, and PostgreSQL against
SQLite under concurrency. Runs both backends in one invocation and prints a markdown
report on stdout.

USAGE:
    repo-bench [--quick | --full] [--json FILE]
    repo-bench profile BACKEND OPERATION VARIANT [CALLS]

PROFILE:
    Runs one point operation CALLS times (default 2000) inside the function
    `profile_loop`, for a profiler, e.g.
        valgrind --tool=callgrind --toggle-collect='*profile_loop*' \\
            target/release/repo-bench profile sqlite get_user repo
    BACKEND    sqlite | postgres | postgres-async
    OPERATION  get_user | collection_with_access | verify_key | create_operation |
               transition | grant_upsert
    VARIANT    repo | repo-no-pre-ping | raw | floor

OPTIONS:
    --quick       CI-sized run, under 2 minutes for both backends (default)
    --full        larger samples, longer concurrency windows, larger bulk batches,
                  the scale section at 10,000 / 100,000 / 1,000,000 chunks,
                  and the copy and live sections (repoctl copy against psql \\copy
                  and pgloader, repoctl live's write pause under writers; need the
                  repoctl binary next to this one or REPOCTL_BIN, sqlite3 and psql;
                  pgloader is optional)
    --json FILE   also write every figure as JSON to FILE
    --only IDS    run only these sections (comma-separated: point, pooler, replicas,
                  async_handle, concurrency, scenarios, bulk, copy, live, scale)
    -h, --help    print this text

ENVIRONMENT:
    BENCH_DATABASE_URL  PostgreSQL server to use (a fresh database is created on it
                        and dropped afterwards); else TEST_DATABASE_URL. Without
                        either, run scripts/bench.sh, which provisions PostgreSQL the
                        way scripts/test.sh does.
    BENCH_PGBOUNCER_URL PgBouncer in transaction mode in front of that server (pooler
                        section); else TEST_PGBOUNCER_URL.
    BENCH_PRIMARY_URL, BENCH_STANDBY_URL
                        a primary and a streaming replica of it (replicas section);
                        else TEST_PRIMARY_URL and TEST_STANDBY_URL.
    REPOCTL_BIN         repoctl binary of the copy section (full mode); default
                        the repoctl next to this binary.
    REPO_BENCH_SCALE_SIZES
                        sizes of the scale section instead of the mode's, e.g.
                        10000,100000 (as many chunks again go to other collections).
    REPO_BENCH_COPY_CHUNKS, REPO_BENCH_COPY_USERS
                        sizes of the copy section's two parts (chunk rows; narrow user
                        rows) instead of the full mode's 200000 and 1000000; 0 skips
                        that part. The section still runs in full mode only.
";

/// Run size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// CI-sized.
    Quick,
    /// Publication-sized.
    Full,
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    /// Run size.
    pub(crate) mode: Mode,
    /// Where to write the JSON report.
    pub(crate) json: Option<PathBuf>,
    /// Section ids to run (`None`: all).
    pub(crate) only: Option<Vec<String>>,
}

/// What `repo-bench profile` runs.
#[derive(Debug, Clone)]
pub(crate) struct ProfileArgs {
    /// `sqlite`, `postgres` or `postgres-async`.
    pub(crate) backend: String,
    /// Operation id.
    pub(crate) op: String,
    /// `repo`, `repo-no-pre-ping`, `raw` or `floor`.
    pub(crate) variant: String,
    /// Calls in the profiled loop.
    pub(crate) calls: usize,
}

/// What the command line asked for.
pub(crate) enum Command {
    /// Run the benchmark.
    Run(Args),
    /// Run one operation in a loop for a profiler.
    Profile(ProfileArgs),
    /// Print the usage text.
    Help,
}

impl Args {
    /// Parses the arguments after the program name.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
        let mut mode = Mode::Quick;
        let mut json = None;
        let mut only = None;
        let mut args = args.into_iter().peekable();
        if args.peek().map(String::as_str) == Some("profile") {
            args.next();
            let mut need = |what: &str| args.next().ok_or(format!("profile: {what} is missing"));
            let backend = need("BACKEND")?;
            let op = need("OPERATION")?;
            let variant = need("VARIANT")?;
            let calls = match args.next() {
                Some(n) => n
                    .parse()
                    .map_err(|_| format!("profile: CALLS {n:?} is not a number"))?,
                None => 2_000,
            };
            return Ok(Command::Profile(ProfileArgs {
                backend,
                op,
                variant,
                calls,
            }));
        }
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => mode = Mode::Quick,
                "--full" => mode = Mode::Full,
                "--json" => {
                    let path = args.next().ok_or("--json needs a file name")?;
                    json = Some(PathBuf::from(path));
                }
                "--only" => {
                    let ids = args.next().ok_or("--only needs section ids")?;
                    only = Some(ids.split(',').map(|s| s.trim().to_owned()).collect());
                }
                "-h" | "--help" => return Ok(Command::Help),
                other => {
                    if let Some(path) = other.strip_prefix("--json=") {
                        json = Some(PathBuf::from(path));
                    } else {
                        return Err(format!("unknown argument {other:?} (see --help)"));
                    }
                }
            }
        }
        Ok(Command::Run(Args { mode, json, only }))
    }
}

/// How many samples and how long each measurement runs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    /// Untimed calls per variant before a point operation is measured.
    pub(crate) point_warmup: usize,
    /// Rounds per point operation; each round runs a batch of every variant, in a
    /// rotated order, so that drift (other load on the machine, WAL growth,
    /// checkpoints) hits all alike.
    pub(crate) point_rounds: usize,
    /// Calls per variant per round.
    pub(crate) point_batch: usize,
    /// Quick mode: no further rounds (beyond 20) once an operation took this long.
    #[serde(serialize_with = "as_opt_secs")]
    pub(crate) point_budget: Option<Duration>,
    /// Thread counts of the concurrency section.
    pub(crate) thread_levels: Vec<usize>,
    /// Untimed run before each concurrency window.
    #[serde(serialize_with = "as_secs")]
    pub(crate) level_warmup: Duration,
    /// Timed window of each concurrency level.
    #[serde(serialize_with = "as_secs")]
    pub(crate) level_duration: Duration,
    /// Documents per `register_many` call of the bulk section.
    pub(crate) bulk_documents: usize,
    /// Chunks the bulk section inserts per run, in calls of [`Plan::chunk_call`].
    pub(crate) bulk_chunks: usize,
    /// Chunks per `insert_many` call.
    pub(crate) chunk_call: usize,
    /// Runs of each bulk path; the best is reported.
    pub(crate) bulk_rounds: usize,
    /// Chunk rows of the copy section's source; `None` skips the section (quick mode:
    /// generating and copying them takes minutes).
    pub(crate) copy_chunks: Option<usize>,
    /// User rows (narrow rows) of the copy section's second source, loaded by `\copy`,
    /// pgloader and `repoctl copy`; `None` skips that part (quick mode).
    pub(crate) copy_users: Option<usize>,
    /// Whether the pooler section fails without a PgBouncer URL (full mode) instead of
    /// reporting itself skipped (quick mode).
    pub(crate) pooler_required: bool,
    /// Worker counts of the scenarios section.
    pub(crate) scenario_levels: Vec<usize>,
    /// Collections each worker creates (collection-creation scenario).
    pub(crate) scenario_collections: usize,
    /// Documents each worker registers (parallel-indexing scenario).
    pub(crate) scenario_documents: usize,
    /// Chunks inserted per document (parallel-indexing scenario).
    pub(crate) scenario_chunks_per_document: usize,
    /// Units of work each worker runs (locked-work and rollback scenarios).
    pub(crate) scenario_units: usize,
    /// How long the exhaustion scenario holds the pool's connection.
    #[serde(serialize_with = "as_secs")]
    pub(crate) scenario_hold: Duration,
    /// Sizes the scale section grows its collection through; as many chunks again
    /// sit in other collections.
    pub(crate) scale_sizes: Vec<usize>,
    /// Timed calls per measurement of the scale section (the p50 is reported).
    pub(crate) scale_runs: usize,
}

fn as_opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Plan {
    /// The plan of `mode`.
    pub(crate) fn for_mode(mode: Mode) -> Plan {
        let thread_levels = vec![1, 2, 4, 8, 16];
        match mode {
            Mode::Quick => Plan {
                point_warmup: 100,
                point_rounds: 600,
                point_batch: 1,
                point_budget: Some(Duration::from_millis(2500)),
                thread_levels,
                level_warmup: Duration::from_millis(200),
                level_duration: Duration::from_millis(1000),
                bulk_documents: 1_000,
                bulk_chunks: 10_000,
                chunk_call: 10_000,
                bulk_rounds: 1,
                copy_chunks: None,
                copy_users: None,
                pooler_required: false,
                scenario_levels: vec![1, 4, 8, 16],
                scenario_collections: 10,
                scenario_documents: 100,
                scenario_chunks_per_document: 2,
                scenario_units: 10,
                scenario_hold: Duration::from_millis(300),
                scale_sizes: vec![3_000, 6_000],
                scale_runs: 5,
            },
            Mode::Full => Plan {
                point_warmup: 500,
                point_rounds: 10_000,
                point_batch: 1,
                point_budget: None,
                thread_levels,
                level_warmup: Duration::from_secs(1),
                level_duration: Duration::from_secs(5),
                bulk_documents: 10_000,
                bulk_chunks: 100_000,
                chunk_call: 10_000,
                bulk_rounds: 3,
                copy_chunks: Some(200_000),
                copy_users: Some(1_000_000),
                pooler_required: true,
                scenario_levels: vec![1, 2, 4, 8, 16],
                scenario_collections: 100,
                scenario_documents: 1_000,
                scenario_chunks_per_document: 4,
                scenario_units: 200,
                scenario_hold: Duration::from_secs(1),
                scale_sizes: vec![10_000, 100_000, 1_000_000],
                scale_runs: 7,
            },
        }
    }

    /// Samples per variant of one point operation.
    pub(crate) fn point_samples(&self) -> usize {
        self.point_rounds * self.point_batch
    }
}
