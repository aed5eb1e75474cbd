//! Settings a newcomer sets wrong, on both backends: each is refused when the store
//! opens, with a `Config` error that names what to change, instead of a panic, a
//! silent fallback or a failure at the first call. PostgreSQL runs on the server of
//! `TEST_DATABASE_URL` (set by `scripts/test.sh`), one throwaway database per test.

use repo_core::SchemaAdmin;
use repo_core::{BackendKind, PoolConfig, RepoError, RepoResult, Store, StoreConfig};
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;
use rstest::rstest;
use std::sync::Arc;
use std::time::Duration;

/// A fresh, empty database of `backend` (nothing migrated), and what keeps it alive.
struct Empty {
    url: String,
    _keep: Box<dyn std::any::Any>,
}

fn empty_database(backend: BackendKind) -> Empty {
    match backend {
        BackendKind::Sqlite => {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
            let url = dir
                .path()
                .join("settings.db")
                .to_string_lossy()
                .into_owned();
            Empty {
                url,
                _keep: Box::new(dir),
            }
        }
        BackendKind::Postgres => {
            let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
            Empty {
                url: db.url().to_owned(),
                _keep: Box::new(db),
            }
        }
    }
}

fn connect(backend: BackendKind, url: &str, config: &StoreConfig) -> RepoResult<Arc<dyn Store>> {
    Ok(match backend {
        BackendKind::Sqlite => Arc::new(SqliteStore::connect(url, config)?),
        BackendKind::Postgres => Arc::new(PostgresStore::connect(url, config)?),
    })
}

fn config_error_naming(result: RepoResult<Arc<dyn Store>>, words: &[&str], what: &str) {
    match result {
        Err(RepoError::Config { message }) => {
            for word in words {
                assert!(
                    message.contains(word),
                    "{what}: {word:?} not in {message:?}"
                );
            }
        }
        Err(other) => panic!("{what}: expected a Config error, got {other:?}"),
        Ok(_) => panic!("{what}: the store opened"),
    }
}

/// A `StoreConfig` built in code with a value outside its range is refused at open
/// (a checkout timeout of `Duration::MAX` used to panic inside r2d2).
#[rstest]
#[case::sqlite(BackendKind::Sqlite)]
#[case::postgres(BackendKind::Postgres)]
fn out_of_range_settings_are_refused_at_open(#[case] backend: BackendKind) {
    let db = empty_database(backend);
    let out_of_range = [
        (
            "DB_POOL_TIMEOUT",
            PoolConfig {
                connection_timeout: Duration::MAX,
                ..PoolConfig::default()
            },
        ),
        (
            "DB_POOL_SIZE",
            PoolConfig {
                pool_size: u32::MAX,
                ..PoolConfig::default()
            },
        ),
    ];
    for (variable, pool) in out_of_range {
        let config = StoreConfig {
            pool,
            ..StoreConfig::default()
        };
        let opened = std::panic::catch_unwind(|| connect(backend, &db.url, &config))
            .unwrap_or_else(|_| panic!("opening with {variable} out of range panicked"));
        config_error_naming(opened, &[variable, "out of range"], variable);
    }
}

/// With `DB_RUN_MIGRATIONS=false`, opening an empty database, or one behind the
/// embedded migrations, is a `Config` error listing the missing versions; a migrated
/// one opens. Nothing is created on the way (not even Diesel's bookkeeping table).
#[rstest]
#[case::sqlite(BackendKind::Sqlite)]
#[case::postgres(BackendKind::Postgres)]
fn disabled_migrations_on_an_unmigrated_database_are_refused_at_open(#[case] backend: BackendKind) {
    let db = empty_database(backend);
    let no_migrations = StoreConfig {
        run_migrations: false,
        ..StoreConfig::default()
    };
    // Every migration directory of the backend is one embedded migration.
    let dir = match backend {
        BackendKind::Sqlite => "sqlite",
        _ => "postgres",
    };
    let embedded = std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("migrations/{dir}: {e}"))
        .count();
    let lacks_all = format!("lacks {embedded} of {embedded} migrations");
    config_error_naming(
        connect(backend, &db.url, &no_migrations),
        &[&lacks_all, "2026-11-21-000001", "DB_RUN_MIGRATIONS"],
        "empty database",
    );
    // Migrate, then step one migration back: the database is behind by one.
    match backend {
        BackendKind::Sqlite => {
            let store = SqliteStore::connect(&db.url, &StoreConfig::default())
                .unwrap_or_else(|e| panic!("migrating: {e}"));
            store
                .revert_last_migration()
                .unwrap_or_else(|e| panic!("reverting: {e}"))
        }
        BackendKind::Postgres => {
            let store = PostgresStore::connect(&db.url, &StoreConfig::default())
                .unwrap_or_else(|e| panic!("migrating: {e}"));
            store
                .revert_last_migration()
                .unwrap_or_else(|e| panic!("reverting: {e}"))
        }
    };
    config_error_naming(
        connect(backend, &db.url, &no_migrations),
        &["lacks 1 of ", "DB_RUN_MIGRATIONS"],
        "database behind by one",
    );
    connect(backend, &db.url, &StoreConfig::default())
        .unwrap_or_else(|e| panic!("migrating again: {e}"));
    connect(backend, &db.url, &no_migrations)
        .unwrap_or_else(|e| panic!("a migrated database opens without migrating: {e}"));
}
