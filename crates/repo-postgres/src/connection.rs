//! How a repository reaches a connection: a fresh checkout from the pool for each call,
//! or the one connection of an open unit of work (which never touches the pool).

use crate::error::map_diesel_error;
use crate::pool::ConnectionPool;
use diesel::pg::PgConnection;
use repo_core::{ApiKeyPolicy, RepoError, RepoResult};
use repo_diesel::connection::ConnectionSource as Source;
use repo_diesel::pool_check::finish_call;
use std::sync::{Arc, Mutex};

/// The connection source of the repository types: `repo_diesel`'s
/// [`ConnectionSource`](repo_diesel::connection::ConnectionSource) over
/// [`PgConnection`], implemented by [`PoolSource`], [`TxSource`] and
/// the replica module's `ReadSource`. (Call its methods on a concrete source with
/// `repo_diesel::connection::ConnectionSource` in scope.)
pub(crate) trait ConnectionSource: Source<PgConnection> {}

impl<S: Source<PgConnection>> ConnectionSource for S {}

/// Runs `f` in a transaction, or in a savepoint when one is already open.
pub(crate) fn nested<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    repo_diesel::connection::transaction(conn, map_diesel_error, f)
}

/// Outside a unit of work: every call checks a connection out of the pool.
#[derive(Clone)]
pub(crate) struct PoolSource {
    pub(crate) pool: Arc<ConnectionPool>,
    pub(crate) policy: ApiKeyPolicy,
}

impl Source<PgConnection> for PoolSource {
    /// Pooler mode: in a transaction that carries the settings (see
    /// [`SessionSettings::pooled_transaction`](crate::pool::SessionSettings::pooled_transaction)).
    fn run<T>(&self, f: impl FnMut(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        let mut conn = self.pool.get()?;
        self.pool.call(&mut conn, f)
    }

    fn write<T>(&self, f: impl FnMut(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
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

impl Source<PgConnection> for TxSource<'_, '_> {
    fn run<T>(&self, f: impl FnMut(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.write(f)
    }

    fn write<T>(&self, f: impl FnMut(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
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
