//! How repository code reaches a connection ([`ConnectionSource`]) and runs
//! transactions over Diesel with repository errors ([`TxError`], [`transaction`]).
//!
//! Each backend implements [`ConnectionSource`] for its sources: the pool (a checkout
//! per call), the connection of an open unit of work, and (PostgreSQL) a read view
//! that may send reads to a replica. Repository code is written against the trait,
//! over `&mut` the backend's connection type.

use diesel::result::Error as DieselError;
use diesel::Connection;
use repo_core::{ApiKeyPolicy, RepoError, RepoResult};

/// A source of connections of type `C` for the repository functions.
///
/// `run` and `write` take `FnMut` because a source may run the closure again: the
/// SQLite pool source retries a call that met a busy database (each call is its own
/// transaction, and a failed one leaves nothing behind). `read` takes `Fn` because a
/// read view may run it on a replica and again on the primary when the replica fails.
pub trait ConnectionSource<C>: Send + Sync {
    /// Runs `f` on a connection: a pooled one for the call, or the connection of the
    /// open unit of work (where a backend may wrap it in a savepoint, so that a failed
    /// statement does not poison the rest of the transaction).
    fn run<T>(&self, f: impl FnMut(&mut C) -> RepoResult<T>) -> RepoResult<T>;

    /// Runs `f` in one write transaction (each backend's kind: `BEGIN IMMEDIATE` on
    /// SQLite, `READ COMMITTED` on PostgreSQL), or in a savepoint of the unit of work.
    fn write<T>(&self, f: impl FnMut(&mut C) -> RepoResult<T>) -> RepoResult<T>;

    /// Runs `f`, which only reads, like [`run`](Self::run); a replica view may send it
    /// to a replica instead.
    fn read<T>(&self, f: impl Fn(&mut C) -> RepoResult<T>) -> RepoResult<T> {
        self.run(f)
    }

    /// API-key limits of the store.
    fn api_key_policy(&self) -> &ApiKeyPolicy;
}

/// The error of the closure of a Diesel transaction, which needs
/// `From<diesel::result::Error>`: a repository error of our own code, or one Diesel
/// raised running the transaction itself (`BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`).
#[derive(Debug)]
pub enum TxError {
    /// Returned by our own code.
    Repo(RepoError),
    /// Raised by Diesel.
    Diesel(DieselError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Diesel(e)
    }
}

impl From<RepoError> for TxError {
    fn from(e: RepoError) -> Self {
        Self::Repo(e)
    }
}

impl TxError {
    /// The repository error: ours as it is, Diesel's through the backend's
    /// `map_diesel_error`.
    pub fn into_repo(self, map_diesel_error: impl FnOnce(DieselError) -> RepoError) -> RepoError {
        match self {
            Self::Repo(e) => e,
            Self::Diesel(e) => map_diesel_error(e),
        }
    }
}

/// Runs `f` in a transaction of `conn` (Diesel's default kind), or in a savepoint when
/// one is already open; a Diesel error of the transaction itself goes through
/// `map_diesel_error`.
pub fn transaction<C: Connection, T>(
    conn: &mut C,
    map_diesel_error: fn(DieselError) -> RepoError,
    f: impl FnOnce(&mut C) -> RepoResult<T>,
) -> RepoResult<T> {
    conn.transaction(|c| f(c).map_err(TxError::Repo))
        .map_err(|e| e.into_repo(map_diesel_error))
}

/// A shared source is a source (a store's repositories share one pool).
impl<C, S: ConnectionSource<C> + ?Sized> ConnectionSource<C> for std::sync::Arc<S> {
    fn run<T>(&self, f: impl FnMut(&mut C) -> RepoResult<T>) -> RepoResult<T> {
        S::run(self, f)
    }

    fn write<T>(&self, f: impl FnMut(&mut C) -> RepoResult<T>) -> RepoResult<T> {
        S::write(self, f)
    }

    fn read<T>(&self, f: impl Fn(&mut C) -> RepoResult<T>) -> RepoResult<T> {
        S::read(self, f)
    }

    fn api_key_policy(&self) -> &ApiKeyPolicy {
        S::api_key_policy(self)
    }
}
