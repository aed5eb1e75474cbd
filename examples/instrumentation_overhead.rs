//! What the per-call `tracing` span and the slow-query clock cost.
//!
//! 1. The span wrapper alone, around a call that does nothing: without any subscriber
//!    (the fast path: one cached interest check), with a `fmt` subscriber at INFO
//!    (the spans are DEBUG, so it is not interested in them) and with one at DEBUG
//!    that records every span, both writing to `io::sink`.
//! 2. A real point read (`users().get`) on a SQLite file and, when
//!    `TEST_DATABASE_URL` is set, on a fresh PostgreSQL database: median and p90 of
//!    single calls without a subscriber, with the INFO and the DEBUG subscriber, and
//!    without one again (to show drift between the phases).
//!
//! ```text
//! TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release --example instrumentation_overhead
//! ```

use repo_core::instrument::traced;
use repo_core::{BackendKind, NewUser, RepoResult, Store, StoreConfig};
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;
use std::hint::black_box;
use std::time::Instant;
use tracing::Level;

const WRAPPER_CALLS: u32 = 2_000_000;
const POINT_CALLS: usize = 4_000;

fn sink_subscriber(level: tracing::Level) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::sink)
        .finish()
}

/// Nanoseconds per call of `f`, over `WRAPPER_CALLS` calls.
fn ns_per_call(mut f: impl FnMut() -> RepoResult<u64>) -> f64 {
    let started = Instant::now();
    for _ in 0..WRAPPER_CALLS {
        black_box(f().ok());
    }
    started.elapsed().as_nanos() as f64 / f64::from(WRAPPER_CALLS)
}

/// Median and p90 in microseconds of `POINT_CALLS` single calls.
fn point(store: &dyn Store, id: repo_core::UserId) -> (f64, f64) {
    let mut samples: Vec<u128> = (0..POINT_CALLS)
        .map(|_| {
            let started = Instant::now();
            black_box(store.users().get(id).expect("get user"));
            started.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.9))
}

fn measure_store(name: &str, store: &dyn Store) {
    let user = store
        .users()
        .create(&NewUser::new(
            "overhead",
            "overhead@example.com",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        ))
        .expect("seed user");
    point(store, user.id); // warm-up: pool, statement cache, page cache
    let (a50, a90) = point(store, user.id);
    let (b50, b90) =
        tracing::subscriber::with_default(sink_subscriber(Level::INFO), || point(store, user.id));
    let (d50, d90) =
        tracing::subscriber::with_default(sink_subscriber(Level::DEBUG), || point(store, user.id));
    let (c50, c90) = point(store, user.id);
    let base = (a50 + c50) / 2.0;
    println!(
        "| {name} | {a50:.1} / {a90:.1} | {b50:.1} / {b90:.1} ({:+.1} %) | {d50:.1} / {d90:.1} ({:+.1} %) | {c50:.1} / {c90:.1} |",
        (b50 / base - 1.0) * 100.0,
        (d50 / base - 1.0) * 100.0,
    );
}

fn main() {
    // No dispatcher has been set yet: the fast path every untraced process takes.
    let direct = ns_per_call(|| Ok(black_box(7)));
    let wrapped = || traced(BackendKind::Sqlite, "users", "get", || Ok(black_box(7)));
    // The first calls register the callsite; measure after them.
    ns_per_call(wrapped);
    let disabled = ns_per_call(wrapped);
    let info =
        tracing::subscriber::with_default(sink_subscriber(Level::INFO), || ns_per_call(wrapped));
    let debug =
        tracing::subscriber::with_default(sink_subscriber(Level::DEBUG), || ns_per_call(wrapped));
    println!("span wrapper around a call that does nothing ({WRAPPER_CALLS} calls):\n");
    println!("| no wrapper | wrapper, no subscriber | wrapper, fmt at INFO | wrapper, fmt at DEBUG (span recorded) |");
    println!("|---|---|---|---|");
    println!("| {direct:.1} ns | {disabled:.1} ns | {info:.1} ns | {debug:.1} ns |\n");

    println!("users().get, {POINT_CALLS} single calls per phase, µs median / p90:\n");
    println!("| backend | no subscriber | fmt at INFO (vs no subscriber) | fmt at DEBUG, spans recorded | no subscriber again |");
    println!("|---|---|---|---|---|");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("overhead.db");
    let sqlite =
        SqliteStore::connect(&path.to_string_lossy(), &StoreConfig::default()).expect("sqlite");
    measure_store("sqlite (file, WAL)", &sqlite);
    match TempDatabase::from_env() {
        Ok(db) => {
            let pg = PostgresStore::connect(db.url(), &StoreConfig::default()).expect("postgres");
            measure_store("postgres (127.0.0.1)", &pg);
        }
        Err(e) => println!("\n(PostgreSQL skipped: {e})"),
    }
}
