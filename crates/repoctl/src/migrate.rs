//! `repoctl migrate up|down|status`: the embedded schema migrations of either backend,
//! through the stores' migration API (opened with `connect_for_migrations`).
//!
//! Reverting one step is not part of the stores' API (they revert all), so `down`
//! without `--all` uses Diesel's harness directly: with `repo_sqlite::MIGRATIONS` on
//! SQLite (in `BEGIN IMMEDIATE`), and on PostgreSQL with this crate's own embedding of
//! `migrations/postgres` (the store keeps its constant private) under the same
//! advisory lock the store takes.

use crate::conn::Endpoint;
use crate::error::{Failure, Secrets};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sqlite::Sqlite;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use repo_core::{BackendKind, PoolConfig, StoreConfig};
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;
use std::time::Duration;

/// The PostgreSQL migrations (the same files `repo-postgres` embeds).
pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Migration versions this build knows for `backend`, oldest first.
pub fn known_versions(backend: BackendKind) -> Result<Vec<String>, Failure> {
    let mut versions: Vec<String> = match backend {
        BackendKind::Sqlite => MigrationSource::<Sqlite>::migrations(&repo_sqlite::MIGRATIONS)
            .map_err(|e| Failure::other(e.to_string()))?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect(),
        BackendKind::Postgres => MigrationSource::<Pg>::migrations(&PG_MIGRATIONS)
            .map_err(|e| Failure::other(e.to_string()))?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect(),
    };
    versions.sort();
    Ok(versions)
}

/// A store handle for migrations only: one connection, migrations not run on connect.
enum MigrationStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

fn store_config() -> StoreConfig {
    StoreConfig {
        run_migrations: false,
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 0,
            connection_timeout: Duration::from_secs(10),
            max_lifetime: None,
            pre_ping: false,
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    }
}

impl MigrationStore {
    fn open(endpoint: &Endpoint, secrets: &Secrets, create: bool) -> Result<Self, Failure> {
        let scrub = |e: repo_core::RepoError| {
            let mut f = Failure::from(e);
            f.message = secrets.scrub(&f.message);
            f
        };
        match endpoint {
            Endpoint::Sqlite(path) => {
                if !create && !endpoint.exists() {
                    return Err(Failure::connection(format!(
                        "SQLite database {} does not exist",
                        endpoint.display()
                    )));
                }
                Ok(Self::Sqlite(
                    SqliteStore::connect_for_migrations(path, &store_config()).map_err(scrub)?,
                ))
            }
            Endpoint::Postgres(url) => Ok(Self::Postgres(
                PostgresStore::connect_for_migrations(url, &store_config()).map_err(scrub)?,
            )),
        }
    }

    fn run_pending(&self) -> Result<Vec<String>, Failure> {
        Ok(match self {
            Self::Sqlite(s) => s.run_pending_migrations()?,
            Self::Postgres(s) => s.run_pending_migrations()?,
        })
    }

    fn revert_all(&self) -> Result<Vec<String>, Failure> {
        Ok(match self {
            Self::Sqlite(s) => s.revert_all_migrations()?,
            Self::Postgres(s) => s.revert_all_migrations()?,
        })
    }

    fn applied(&self) -> Result<Vec<String>, Failure> {
        Ok(match self {
            Self::Sqlite(s) => s.applied_migrations()?,
            Self::Postgres(s) => s.applied_migrations()?,
        })
    }

    fn pending(&self) -> Result<Vec<String>, Failure> {
        Ok(match self {
            Self::Sqlite(s) => s.pending_migrations()?,
            Self::Postgres(s) => s.pending_migrations()?,
        })
    }
}

/// Applies every pending migration (creating a SQLite file if needed); returns the
/// versions applied now.
pub fn up(endpoint: &Endpoint, secrets: &Secrets) -> Result<Vec<String>, Failure> {
    MigrationStore::open(endpoint, secrets, true)?.run_pending()
}

/// Applied and pending versions.
pub fn status(
    endpoint: &Endpoint,
    secrets: &Secrets,
) -> Result<(Vec<String>, Vec<String>), Failure> {
    let store = MigrationStore::open(endpoint, secrets, false)?;
    Ok((store.applied()?, store.pending()?))
}

/// Reverts every applied migration.
pub fn down_all(endpoint: &Endpoint, secrets: &Secrets) -> Result<Vec<String>, Failure> {
    MigrationStore::open(endpoint, secrets, false)?.revert_all()
}

/// Reverts the newest applied migration; `None` when nothing is applied.
pub fn down_one(endpoint: &Endpoint, secrets: &Secrets) -> Result<Option<String>, Failure> {
    let store = MigrationStore::open(endpoint, secrets, false)?;
    if store.applied()?.is_empty() {
        return Ok(None);
    }
    // The stores' own revert: on PostgreSQL one transaction under the
    // transaction-scoped migration lock, leaving no session state behind.
    Ok(Some(match store {
        MigrationStore::Sqlite(s) => s.revert_last_migration()?,
        MigrationStore::Postgres(s) => s.revert_last_migration()?,
    }))
}
