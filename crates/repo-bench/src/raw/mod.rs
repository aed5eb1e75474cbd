//! Raw-Diesel baselines: the same statements the repositories run, issued with the
//! Diesel DSL on one connection the benchmark holds (no pool, no error mapping, no
//! conversion into domain types). A section that needs a new baseline adds a trait
//! here (as [`PointBaseline`]) and implements it for both connection types.

mod postgres;
mod postgres_bulk;
mod sqlite;
mod sqlite_bulk;

pub(crate) use postgres::apply_session_settings;
pub(crate) use sqlite::apply_pragmas;

use diesel::pg::PgConnection;
use diesel::{QueryResult, SqliteConnection};
use repo_core::{
    AccessLevel, ApiKeyPolicy, ApiKeySecret, Chunk, CollectionId, Document, OperationStatus,
    OperationUuid, UserId,
};
use std::time::Duration;

/// A connection the benchmark holds on the database of one backend.
pub(crate) enum RawConn {
    /// SQLite, with the PRAGMAs of the store's pool.
    Sqlite(SqliteConnection),
    /// PostgreSQL, with the session settings of the store's pool.
    Postgres(PgConnection),
}

impl RawConn {
    /// The point-operation baseline on this connection.
    pub(crate) fn point(&mut self) -> &mut dyn PointBaseline {
        match self {
            Self::Sqlite(c) => c,
            Self::Postgres(c) => c,
        }
    }
}

/// Point operations in raw Diesel, statement for statement as each backend's
/// repository runs them (checked by the statement audit of the point section).
pub(crate) trait PointBaseline {
    /// `UserRepository::get`.
    fn get_user(&mut self, id: UserId) -> QueryResult<()>;
    /// `CollectionRepository::get_with_access` (collection, user, grant); returns
    /// whether read access is granted.
    fn collection_with_access(&mut self, id: CollectionId, user: UserId) -> QueryResult<bool>;
    /// `ApiKeyRepository::verify` after the secret was parsed; returns whether the key
    /// is valid.
    fn verify_key(&mut self, secret: &ApiKeySecret, policy: &ApiKeyPolicy) -> QueryResult<bool>;
    /// `OperationRepository::create` of an `index` operation.
    fn create_operation(
        &mut self,
        collection: CollectionId,
        user: UserId,
        config: &serde_json::Value,
    ) -> QueryResult<OperationUuid>;
    /// `OperationRepository::transition` without an error message.
    fn transition(&mut self, id: OperationUuid, to: OperationStatus) -> QueryResult<()>;
    /// `CollectionRepository::grant` to a user.
    fn grant(
        &mut self,
        collection: CollectionId,
        user: UserId,
        level: AccessLevel,
    ) -> QueryResult<()>;
}

/// The *floor* of the point operations: the fewest statements an expert would write
/// for the same effect (the same rows read or written and returned) and the same
/// guarantees, prepared (Diesel caches every statement here), on a connection the
/// benchmark holds. Where the repository's statements already are that, the floor
/// runs the raw baseline's code; the statement audit lists both.
pub(crate) enum FloorConn {
    /// SQLite.
    Sqlite(Floor<SqliteConnection>),
    /// PostgreSQL.
    Postgres(Floor<PgConnection>),
}

/// A held connection running the floor statements.
pub(crate) struct Floor<C>(pub(crate) C);

impl FloorConn {
    /// Wraps a raw connection.
    pub(crate) fn new(raw: RawConn) -> FloorConn {
        match raw {
            RawConn::Sqlite(c) => FloorConn::Sqlite(Floor(c)),
            RawConn::Postgres(c) => FloorConn::Postgres(Floor(c)),
        }
    }

    /// The point operations on this connection.
    pub(crate) fn point(&mut self) -> &mut dyn PointBaseline {
        match self {
            Self::Sqlite(c) => c,
            Self::Postgres(c) => c,
        }
    }
}

impl RawConn {
    /// The bulk baseline on this connection.
    pub(crate) fn bulk(&mut self) -> &mut dyn BulkBaseline {
        match self {
            Self::Sqlite(c) => c,
            Self::Postgres(c) => c,
        }
    }
}

/// The bulk paths' baselines: the same rows written the cheapest plain way each
/// backend has (SQLite: one prepared single-row `INSERT` per row in one
/// `BEGIN IMMEDIATE` transaction; PostgreSQL: one `COPY … FROM STDIN` in one
/// transaction), with no repository logic (no validation, reads or conflict
/// handling). Each converts the rows into its column types, search tokens included,
/// before its clock starts, and returns only the time of the writes.
pub(crate) trait BulkBaseline {
    /// Writes `rows` (already validated documents) into `documents`.
    fn insert_documents(&mut self, rows: &[Document]) -> QueryResult<Duration>;
    /// Writes `rows` (already validated chunks) into `chunks`.
    fn insert_chunks(&mut self, rows: &[Chunk]) -> QueryResult<Duration>;
    /// Writes `rows` in transactions of `call` rows, each followed by the index and
    /// statistics upkeep the repository does after a bulk call, where the backend has
    /// one (PostgreSQL); `None` where it has none.
    fn insert_chunks_with_upkeep(
        &mut self,
        rows: &[Chunk],
        call: usize,
    ) -> QueryResult<Option<Duration>> {
        let _ = (rows, call);
        Ok(None)
    }
}
