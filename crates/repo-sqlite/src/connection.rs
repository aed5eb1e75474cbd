//! How a repository reaches a connection: a checkout from the pool for each call
//! ([`PoolSource`]), or the one connection of an open unit of work
//! ([`TxSource`], which never touches the pool: a pool of one, for an in-memory
//! database, would otherwise deadlock). Also the repository types, one per
//! repository, and the write transactions that nest as savepoints.
//!
//! Every repository method is written once, as a function over `&mut
//! SqliteConnection`; the repository types run those functions on their source.

use crate::error::{map_checkout_error, map_diesel_error};
use crate::pool::{self, SqlitePool, TargetKind};
use diesel::r2d2::PooledConnection;
use diesel::result::Error as DieselError;
use diesel::{Connection, SqliteConnection};
use repo_core::metrics::PoolMetrics;
use repo_core::store::UnitOfWorkMarker;
use repo_core::{
    ApiKeyPolicy, ConnectionErrors, PoolStatus, PoolWatch, RepoError, RepoResult, StoreConfig,
};
use repo_diesel::connection::ConnectionSource as Source;
pub(crate) use repo_diesel::connection::TxError;
use std::sync::{Arc, Mutex};

/// The connection source of the repository code: `repo_diesel`'s
/// [`ConnectionSource`](Source) over [`SqliteConnection`] (whose `run` the pool-backed
/// source may run again after a transient conflict; `f` must therefore leave nothing
/// behind when it fails, which holds because every multi-statement write is one
/// transaction), plus the store's settings.
pub(crate) trait ConnectionSource: Source<SqliteConnection> {
    /// Store settings (API-key policy, retry policy).
    fn config(&self) -> &StoreConfig;
}

/// A shared source is a source: the store's repositories share one pool.
impl<S: ConnectionSource> ConnectionSource for Arc<S> {
    fn config(&self) -> &StoreConfig {
        S::config(self)
    }
}

/// Declares one repository type per name, holding its connection source in `src`,
/// with `run` and `config` forwarded to the source (the repository impls call
/// `self.run(..)` and `self.config()`).
macro_rules! repository_types {
    ($($(#[$doc:meta])* $name:ident,)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name<S> {
            /// Where the repository gets its connection.
            pub(crate) src: S,
        }

        impl<S: ConnectionSource> $name<S> {
            /// See [`ConnectionSource::run`].
            #[allow(dead_code, reason = "repositories written by repo_diesel's macros call `src`")]
            pub(crate) fn run<T>(
                &self,
                f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>,
            ) -> RepoResult<T> {
                self.src.run(f)
            }

            /// See [`ConnectionSource::config`].
            #[allow(dead_code, reason = "not every repository reads the settings")]
            pub(crate) fn config(&self) -> &StoreConfig {
                self.src.config()
            }
        }
    )+};
}

repository_types! {
    /// The [`UserRepository`](repo_core::UserRepository) (`crate::users`).
    SqliteUsers,
    /// The [`ApiKeyRepository`](repo_core::ApiKeyRepository) (`crate::api_keys`).
    SqliteApiKeys,
    /// The [`CollectionRepository`](repo_core::CollectionRepository) (`crate::collections`).
    SqliteCollections,
    /// The [`OperationRepository`](repo_core::OperationRepository) (`crate::operations`).
    SqliteOperations,
    /// The [`DocumentRepository`](repo_core::DocumentRepository) (`crate::documents`).
    SqliteDocuments,
    /// The [`ChunkRepository`](repo_core::ChunkRepository) (`crate::chunks`).
    SqliteChunks,
}

repo_diesel::repository_set! {
    /// Every repository over one connection source: the store's over the pool, a unit
    /// of work's over its transaction.
    pub(crate) struct SqliteRepositories {
        SqliteUsers, SqliteApiKeys, SqliteCollections, SqliteOperations, SqliteDocuments,
        SqliteChunks,
    }
}

/// A pooled connection.
pub(crate) type PooledConn = PooledConnection<pool::SqliteManager>;

/// The pool-backed connection source: each call checks a connection out.
pub(crate) struct PoolSource {
    pub(crate) pool: SqlitePool,
    pub(crate) max_size: u32,
    pub(crate) kind: TargetKind,
    pub(crate) target: String,
    pub(crate) config: StoreConfig,
    pub(crate) watch: PoolWatch,
    pub(crate) metrics: PoolMetrics,
    pub(crate) unit_of_work: UnitOfWorkMarker,
    pub(crate) errors: Arc<ConnectionErrors>,
}

impl PoolSource {
    /// Checks a connection out, telling an exhausted pool from a failing database.
    /// Refused inside a unit of work of this store on the calling thread.
    pub(crate) fn checkout(&self) -> RepoResult<PooledConn> {
        self.unit_of_work.check()?;
        let conn = self
            .metrics
            .checkout(|| self.pool.get())
            .map_err(|e| self.errors.explain(map_checkout_error(e, self.status())))?;
        self.watch.observe(|| self.status());
        Ok(conn)
    }

    /// The pool's connection counts now.
    pub(crate) fn status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus::from_counts(self.max_size, state.connections, state.idle_connections)
    }
}

/// The methods both SQLite sources write the same way over their own `run`: `write`
/// in `write_tx` (`BEGIN IMMEDIATE`, a savepoint inside a unit of work), `read` in
/// `read_tx` (one consistent snapshot, e.g. a page and its total), and the store's
/// API-key policy from `self.config`.
macro_rules! transactions_over_run {
    () => {
        fn api_key_policy(&self) -> &ApiKeyPolicy {
            &self.config.api_keys
        }

        fn write<T>(
            &self,
            mut f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>,
        ) -> RepoResult<T> {
            self.run(|c| write_tx(c, &mut f))
        }

        fn read<T>(&self, f: impl Fn(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
            self.run(|c| read_tx(c, &f))
        }
    };
}

impl ConnectionSource for PoolSource {
    fn config(&self) -> &StoreConfig {
        &self.config
    }
}

impl Source<SqliteConnection> for PoolSource {
    transactions_over_run!();

    fn run<T>(&self, mut f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        // Each call is its own transaction, so a busy database is retried like a
        // unit of work.
        let result = self.config.retry.run(|| {
            let mut conn = self.checkout()?;
            f(&mut conn)
        });
        crate::observe::call_finished();
        result
    }
}

/// Inside a unit of work: the transaction's own connection, shared by every
/// repository of the [`Transaction`](repo_core::Transaction) handle. The traits are
/// `Send + Sync`, hence the mutex; calls inside one unit of work are sequential, so
/// it is never contended.
pub(crate) struct TxSource<'a, 'c> {
    pub(crate) conn: &'a Mutex<&'c mut SqliteConnection>,
    pub(crate) config: &'a StoreConfig,
}

impl ConnectionSource for TxSource<'_, '_> {
    fn config(&self) -> &StoreConfig {
        self.config
    }
}

impl Source<SqliteConnection> for TxSource<'_, '_> {
    transactions_over_run!();

    fn run<T>(&self, mut f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        let mut guard = self.conn.lock().map_err(|_| RepoError::Backend {
            message: "a previous call in this unit of work panicked".into(),
            source: None,
        })?;
        f(&mut guard)
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
