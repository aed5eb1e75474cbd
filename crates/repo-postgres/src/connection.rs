//! How a repository reaches a connection: a fresh checkout from the pool for each call,
//! or the one connection of an open unit of work (which never touches the pool).

use crate::error::map_diesel_error;
use crate::pool::ConnectionPool;
use diesel::pg::PgConnection;
use diesel::Connection;
use repo_core::pool_check::finish_call;
use repo_core::{ApiKeyPolicy, RepoError, RepoResult};
use std::sync::{Arc, Mutex};

/// A source of connections for the repository functions.
pub(crate) trait ConnectionSource: Send + Sync {
    /// Runs `f` on a connection. Inside a unit of work `f` runs in a savepoint, so a
    /// failed statement does not poison the rest of the transaction.
    fn run<T>(&self, f: impl FnOnce(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T>;

    /// Runs `f` in one write transaction (`READ COMMITTED`), or in a savepoint of the
    /// unit of work.
    fn write<T>(&self, f: impl FnOnce(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T>;

    /// Runs `f`, which only reads, like [`run`](Self::run). A replica view
    /// (`crate::replica`) may send it to a replica instead, and re-run it on the
    /// primary when the replica fails: hence `Fn`.
    fn read<T>(&self, f: impl Fn(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.run(f)
    }

    /// API-key limits of the store.
    fn api_key_policy(&self) -> &ApiKeyPolicy;
}

/// Error type for Diesel's transaction closures, which need `From<diesel::Error>`.
pub(crate) enum TxError {
    /// Returned by our own code.
    Repo(RepoError),
    /// Raised by Diesel (BEGIN, COMMIT, ROLLBACK, SAVEPOINT).
    Diesel(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Diesel(e)
    }
}

impl TxError {
    pub(crate) fn into_repo(self) -> RepoError {
        match self {
            Self::Repo(e) => e,
            Self::Diesel(e) => map_diesel_error(e),
        }
    }
}

/// Runs `f` in a transaction, or in a savepoint when one is already open.
pub(crate) fn nested<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    conn.transaction::<T, TxError, _>(|c| f(c).map_err(TxError::Repo))
        .map_err(TxError::into_repo)
}

/// Runs `f` in a top-level `READ COMMITTED` transaction.
pub(crate) fn read_committed<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    conn.build_transaction()
        .read_committed()
        .run::<T, TxError, _>(|c| f(c).map_err(TxError::Repo))
        .map_err(TxError::into_repo)
}

/// Outside a unit of work: every call checks a connection out of the pool.
#[derive(Clone)]
pub(crate) struct PoolSource {
    pub(crate) pool: Arc<ConnectionPool>,
    pub(crate) policy: ApiKeyPolicy,
}

impl ConnectionSource for PoolSource {
    /// Pooler mode: in a transaction that carries the settings (see
    /// [`SessionSettings::pooled_transaction`](crate::pool::SessionSettings::pooled_transaction)).
    fn run<T>(&self, f: impl FnOnce(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        let mut conn = self.pool.get()?;
        self.pool.call(&mut conn, f)
    }

    fn write<T>(&self, f: impl FnOnce(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        let mut conn = self.pool.get()?;
        let result = self.pool.read_committed(&mut conn, f);
        finish_call(&mut conn, result).map_err(|e| self.pool.scrub(e))
    }

    fn api_key_policy(&self) -> &ApiKeyPolicy {
        &self.policy
    }
}

/// Inside a unit of work: the transaction's own connection, shared by every
/// repository of the [`Transaction`](repo_core::Transaction) handle.
pub(crate) struct TxSource<'a, 'c> {
    pub(crate) conn: &'a Mutex<&'c mut PgConnection>,
    pub(crate) policy: ApiKeyPolicy,
}

impl ConnectionSource for TxSource<'_, '_> {
    fn run<T>(&self, f: impl FnOnce(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.write(f)
    }

    fn write<T>(&self, f: impl FnOnce(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        // A panic in another repository call poisons the mutex; the connection is
        // still consistent (Diesel rolled the savepoint back), so carry on.
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        nested(&mut guard, f)
    }

    fn api_key_policy(&self) -> &ApiKeyPolicy {
        &self.policy
    }
}

/// Maps a Diesel result inside repository code.
pub(crate) trait QueryResultExt<T> {
    /// `map_err(map_diesel_error)`.
    fn db(self) -> RepoResult<T>;
}

impl<T> QueryResultExt<T> for diesel::QueryResult<T> {
    fn db(self) -> RepoResult<T> {
        self.map_err(map_diesel_error)
    }
}

/// Maps the result of an insert that references other rows: a foreign-key violation of
/// one of the named constraints becomes the error paired with it (the `NotFound` of
/// the missing row), which spares a lookup per reference before the insert. Any
/// other error is mapped as usual.
pub(crate) fn missing_reference<T, const N: usize>(
    result: diesel::QueryResult<T>,
    references: [(&str, RepoError); N],
) -> RepoResult<T> {
    use diesel::result::{DatabaseErrorKind, Error};
    result.map_err(|error| {
        if let Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) = &error {
            let violated = info.constraint_name();
            if let Some((_, missing)) = references
                .into_iter()
                .find(|(name, _)| Some(*name) == violated)
            {
                return missing;
            }
        }
        map_diesel_error(error)
    })
}

/// Parses a status or kind column; a value outside the enum means a corrupt row.
pub(crate) fn parse_column<T: std::str::FromStr>(
    column: &'static str,
    value: &str,
) -> RepoResult<T> {
    value.parse().map_err(|_| RepoError::Backend {
        message: format!("unexpected value {value:?} in column {column}"),
        source: None,
    })
}

/// PostgreSQL's column codec for the row types and queries `repo_diesel` writes once
/// for both backends: native UUID, `timestamptz` and `jsonb` columns, read as they are.
pub(crate) struct PgCodec;

impl repo_diesel::codec::ColumnCodec for PgCodec {
    type Uuid = uuid::Uuid;
    type Ts = repo_core::Timestamp;
    type Json = serde_json::Value;

    fn uuid(value: uuid::Uuid) -> uuid::Uuid {
        value
    }

    fn ts(value: repo_core::Timestamp) -> repo_core::Timestamp {
        value
    }

    fn json(value: &serde_json::Value) -> RepoResult<serde_json::Value> {
        Ok(value.clone())
    }

    fn read_uuid(_: &str, _: &str, stored: uuid::Uuid) -> RepoResult<uuid::Uuid> {
        Ok(stored)
    }

    fn read_ts(_: &str, _: &str, stored: repo_core::Timestamp) -> RepoResult<repo_core::Timestamp> {
        Ok(stored)
    }

    fn read_json(_: &str, _: &str, stored: serde_json::Value) -> RepoResult<serde_json::Value> {
        Ok(stored)
    }

    fn read_enum<E: std::str::FromStr>(_: &str, column: &str, stored: &str) -> RepoResult<E> {
        stored.parse().map_err(|_| RepoError::Backend {
            message: format!("unexpected value {stored:?} in column {column}"),
            source: None,
        })
    }
}
