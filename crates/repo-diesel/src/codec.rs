//! How a backend stores a domain value in a column and reads it back: SQLite keeps
//! UUIDs, timestamps and JSON as text, PostgreSQL in native types. The row types and
//! queries that both backends share (`repo_diesel::operations`, `repo_diesel::api_keys`)
//! are written once over a [`ColumnCodec`]; each backend names its own.

use repo_core::{RepoResult, Timestamp};
use serde_json::Value;
use std::str::FromStr;
use uuid::Uuid;

/// The column types of a backend and the conversions to and from the domain.
///
/// `read_*` take the table and column so that a backend can say which stored value is
/// corrupt.
pub trait ColumnCodec {
    /// Stored form of a UUID.
    type Uuid;
    /// Stored form of a timestamp.
    type Ts;
    /// Stored form of a JSON value.
    type Json;

    /// A UUID as stored (and bound in a query).
    fn uuid(value: Uuid) -> Self::Uuid;
    /// A timestamp as stored (and bound in a query).
    fn ts(value: Timestamp) -> Self::Ts;
    /// A JSON value as stored.
    fn json(value: &Value) -> RepoResult<Self::Json>;
    /// Reads a stored UUID.
    fn read_uuid(table: &str, column: &str, stored: Self::Uuid) -> RepoResult<Uuid>;
    /// Reads a stored timestamp.
    fn read_ts(table: &str, column: &str, stored: Self::Ts) -> RepoResult<Timestamp>;
    /// Reads stored JSON.
    fn read_json(table: &str, column: &str, stored: Self::Json) -> RepoResult<Value>;
    /// Reads a stored status or kind spelling.
    fn read_enum<E: FromStr>(table: &str, column: &str, stored: &str) -> RepoResult<E>;

    /// An optional timestamp as stored.
    fn opt_ts(value: Option<Timestamp>) -> Option<Self::Ts> {
        value.map(Self::ts)
    }

    /// An optional JSON value as stored.
    fn opt_json(value: Option<&Value>) -> RepoResult<Option<Self::Json>> {
        value.map(Self::json).transpose()
    }

    /// Reads an optional stored timestamp.
    fn read_opt_ts(
        table: &str,
        column: &str,
        stored: Option<Self::Ts>,
    ) -> RepoResult<Option<Timestamp>> {
        stored.map(|v| Self::read_ts(table, column, v)).transpose()
    }

    /// Reads optional stored JSON.
    fn read_opt_json(
        table: &str,
        column: &str,
        stored: Option<Self::Json>,
    ) -> RepoResult<Option<Value>> {
        stored
            .map(|v| Self::read_json(table, column, v))
            .transpose()
    }
}

/// Runs `f` on `conn` as it is, in no transaction of its own: the hook a backend
/// passes to the shared repository macros where the other backend needs one (SQLite's
/// `BEGIN IMMEDIATE` around a multi-statement write; PostgreSQL gets its transaction
/// from the connection source, or needs none for one statement).
pub fn as_is<C, T>(conn: &mut C, f: impl FnOnce(&mut C) -> RepoResult<T>) -> RepoResult<T> {
    f(conn)
}

/// Converts a row count to `u64` (counts are never negative).
pub fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Converts an affected-row count to `u64`.
pub fn affected(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
