//! Where repository code gets its connection, write transactions that nest as
//! savepoints, and the [`Transaction`] handle of a unit of work.
//!
//! Every repository method is written once, as a function over `&mut
//! SqliteConnection`. [`SqliteRepos`] runs those functions either on a connection
//! checked out of the pool for the call (the store's `PoolSource`) or on the
//! connection of an open unit of work ([`TxSource`]), which never touches the pool: a
//! pool of one (in-memory databases) would otherwise deadlock.

use crate::collections;
use crate::error::map_diesel_error;
use diesel::result::Error as DieselError;
use diesel::{Connection, SqliteConnection};
use repo_core::{
    ApiKeyPolicy, ApiKeyRepository, BackendKind, ChunkRepository, Collection, CollectionId,
    CollectionRepository, DocumentRepository, Instrumented, OperationRepository, RepoError,
    RepoResult, Repositories, StoreConfig, Transaction, UserRepository,
};
use repo_diesel::connection::{ConnectionSource as Source, TxError};
use std::sync::Mutex;

/// The connection source of the repository code: `repo_diesel`'s
/// [`ConnectionSource`](Source) over [`SqliteConnection`] (whose `run` the pool-backed
/// source may run again after a transient conflict; `f` must therefore leave nothing
/// behind when it fails, which holds because every multi-statement write is one
/// transaction), plus the store's settings.
pub(crate) trait ConnectionSource: Source<SqliteConnection> {
    /// Store settings (API-key policy, retry policy).
    fn config(&self) -> &StoreConfig;
}

/// The repositories over one connection source; implements every repository trait.
pub(crate) struct SqliteRepos<S>(pub(crate) S);

impl<S: ConnectionSource> SqliteRepos<S> {
    /// See [`ConnectionSource::run`].
    pub(crate) fn run<T>(
        &self,
        f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>,
    ) -> RepoResult<T> {
        self.0.run(f)
    }

    /// See [`ConnectionSource::config`].
    pub(crate) fn config(&self) -> &StoreConfig {
        self.0.config()
    }
}

impl<S: ConnectionSource> Repositories for SqliteRepos<S> {
    fn users(&self) -> &dyn UserRepository {
        self
    }

    fn api_keys(&self) -> &dyn ApiKeyRepository {
        self
    }

    fn collections(&self) -> &dyn CollectionRepository {
        self
    }

    fn operations(&self) -> &dyn OperationRepository {
        self
    }

    fn documents(&self) -> &dyn DocumentRepository {
        self
    }

    fn chunks(&self) -> &dyn ChunkRepository {
        self
    }
}

/// The connection of an open unit of work. The traits are `Send + Sync`, hence the
/// mutex; calls inside one unit of work are sequential, so it is never contended.
pub(crate) struct TxSource<'c> {
    conn: Mutex<&'c mut SqliteConnection>,
    config: &'c StoreConfig,
}

impl<'c> TxSource<'c> {
    /// Wraps the connection of a transaction that is already open.
    pub(crate) fn new(conn: &'c mut SqliteConnection, config: &'c StoreConfig) -> Self {
        Self {
            conn: Mutex::new(conn),
            config,
        }
    }
}

impl ConnectionSource for TxSource<'_> {
    fn config(&self) -> &StoreConfig {
        self.config
    }
}

impl Source<SqliteConnection> for TxSource<'_> {
    fn api_key_policy(&self) -> &ApiKeyPolicy {
        &self.config.api_keys
    }

    fn write<T>(&self, mut f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.run(|c| write_tx(c, &mut f))
    }

    fn run<T>(&self, mut f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        let mut guard = self.conn.lock().map_err(|_| RepoError::Backend {
            message: "a previous call in this unit of work panicked".into(),
            source: None,
        })?;
        f(&mut guard)
    }
}

impl Transaction for SqliteRepos<TxSource<'_>> {
    fn lock_collection(&self, id: CollectionId) -> RepoResult<Collection> {
        // BEGIN IMMEDIATE already holds SQLite's database-wide write lock, so loading
        // the row is all that is needed.
        self.run(|c| collections::get(c, id))
    }
}

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` at top level (a deferred
/// transaction that later writes gets `SQLITE_BUSY` without waiting), a savepoint when
/// the connection is already inside a transaction (a unit of work).
///
/// Diesel's `immediate_transaction` refuses to nest (`AlreadyInTransaction`, raised
/// before any SQL runs and before `f` is called); `transaction` nests as
/// `SAVEPOINT diesel_savepoint_N`. Diesel does not expose the transaction depth, so
/// the first is tried and the second used when it refuses.
pub(crate) fn write_tx<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    let mut body = Some(f);
    let mut run = |c: &mut SqliteConnection| -> Result<T, TxError> {
        let f = body.take().ok_or_else(|| {
            TxError::Repo(RepoError::Backend {
                message: "transaction body ran twice".into(),
                source: None,
            })
        })?;
        f(c).map_err(TxError::Repo)
    };
    match conn.immediate_transaction(&mut run) {
        Err(TxError::Diesel(DieselError::AlreadyInTransaction)) => conn
            .transaction(&mut run)
            .map_err(|e| e.into_repo(map_diesel_error)),
        other => other.map_err(|e| e.into_repo(map_diesel_error)),
    }
}

/// Runs `f` in a read transaction (one consistent snapshot, e.g. a page and its
/// total), or as part of the enclosing transaction.
pub(crate) fn read_tx<T>(
    conn: &mut SqliteConnection,
    f: impl FnOnce(&mut SqliteConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    repo_diesel::connection::transaction(conn, map_diesel_error, f)
}

/// Runs a unit of work on `conn` in `BEGIN IMMEDIATE`, committing on `Ok`.
pub(crate) fn run_unit_of_work(
    conn: &mut SqliteConnection,
    config: &StoreConfig,
    work: &mut dyn FnMut(&dyn Transaction) -> RepoResult<()>,
) -> RepoResult<()> {
    conn.immediate_transaction(|c| {
        let tx = Instrumented::new(BackendKind::Sqlite, SqliteRepos(TxSource::new(c, config)));
        work(&tx).map_err(TxError::Repo)
    })
    .map_err(|e| e.into_repo(map_diesel_error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::BigInt;
    use diesel::RunQueryDsl;

    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn rows(conn: &mut SqliteConnection) -> i64 {
        diesel::sql_query("SELECT count(*) AS n FROM t")
            .get_result::<N>(conn)
            .map(|r| r.n)
            .unwrap_or(-1)
    }

    fn insert(conn: &mut SqliteConnection, v: i64) -> RepoResult<()> {
        diesel::sql_query("INSERT INTO t (v) VALUES (?)")
            .bind::<BigInt, _>(v)
            .execute(conn)
            .map(|_| ())
            .map_err(map_diesel_error)
    }

    #[test]
    fn diesel_refuses_nested_immediate_transactions() {
        let mut conn = SqliteConnection::establish(":memory:").expect("open");
        let nested =
            conn.immediate_transaction(|c| c.immediate_transaction(|_| Ok::<(), DieselError>(())));
        assert!(matches!(nested, Err(DieselError::AlreadyInTransaction)));
    }

    #[test]
    fn write_tx_nests_as_a_savepoint() {
        let mut conn = SqliteConnection::establish(":memory:").expect("open");
        conn.batch_execute("CREATE TABLE t (v INTEGER)")
            .expect("table");
        let outer = write_tx(&mut conn, |c| {
            insert(c, 1)?;
            let inner = write_tx(c, |c| {
                insert(c, 2)?;
                Err::<(), _>(RepoError::validation(
                    repo_core::Field::Value,
                    "undo the savepoint",
                ))
            });
            assert!(inner.is_err());
            assert_eq!(rows(c), 1, "only the savepoint was rolled back");
            write_tx(c, |c| insert(c, 3))
        });
        assert!(outer.is_ok());
        assert_eq!(rows(&mut conn), 2);

        let failed = write_tx(&mut conn, |c| {
            write_tx(c, |c| insert(c, 4))?;
            Err::<(), _>(RepoError::validation(
                repo_core::Field::Value,
                "undo everything",
            ))
        });
        assert!(failed.is_err());
        assert_eq!(
            rows(&mut conn),
            2,
            "the released savepoint went with the outer rollback"
        );
    }
}
