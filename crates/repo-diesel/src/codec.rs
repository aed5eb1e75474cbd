//! How a backend stores the column types the two databases spell differently: UUIDs,
//! timestamps and JSON are text on SQLite and native types on PostgreSQL. Code
//! written once for both backends (the row macros of [`crate::collections`] and
//! [`crate::users`]) converts through a [`Codec`], so that the conversion between a
//! row and its domain type is written once.

use repo_core::{RepoError, RepoResult, Timestamp};
use serde_json::Value;
use std::str::FromStr;
use uuid::Uuid;

/// One backend's storage of UUIDs, timestamps and JSON, and its error for a stored
/// value it cannot read.
pub trait Codec {
    /// A UUID as stored.
    type Uuid;
    /// A timestamp as stored.
    type Timestamp;
    /// A JSON document as stored.
    type Json;
    /// The SQL type of a stored UUID (for statements written as SQL text).
    type UuidSql;
    /// The SQL type of a stored timestamp.
    type TimestampSql;
    /// The SQL type of a stored JSON document.
    type JsonSql;
    /// A JSON document as written by an insert (see [`json_in`](Self::json_in)).
    type JsonIn<'a>;

    /// A UUID as stored.
    fn uuid(value: Uuid) -> Self::Uuid;
    /// A timestamp as stored (microseconds).
    fn timestamp(value: Timestamp) -> Self::Timestamp;
    /// A JSON document as stored.
    fn json(value: &Value) -> RepoResult<Self::Json>;
    /// A JSON document as bound in an insert, borrowing the domain value where the
    /// backend can (PostgreSQL binds `&Value`; SQLite writes text).
    fn json_in(value: &Value) -> RepoResult<Self::JsonIn<'_>>;
    /// Reads a stored UUID of `table.column`.
    fn read_uuid(table: &str, column: &str, stored: Self::Uuid) -> RepoResult<Uuid>;
    /// Reads a stored timestamp of `table.column`.
    fn read_timestamp(table: &str, column: &str, stored: Self::Timestamp) -> RepoResult<Timestamp>;
    /// Reads a stored JSON document of `table.column`.
    fn read_json(table: &str, column: &str, stored: Self::Json) -> RepoResult<Value>;
    /// The error for a value of `table.column` that does not read back (a corrupt row).
    fn corrupt(table: &str, column: &str, detail: String) -> RepoError;

    /// An optional timestamp as stored.
    fn opt_timestamp(value: Option<Timestamp>) -> Option<Self::Timestamp> {
        value.map(Self::timestamp)
    }

    /// An optional JSON document as stored.
    fn opt_json(value: Option<&Value>) -> RepoResult<Option<Self::Json>> {
        value.map(Self::json).transpose()
    }

    /// Reads an optional stored timestamp.
    fn read_opt_timestamp(
        table: &str,
        column: &str,
        stored: Option<Self::Timestamp>,
    ) -> RepoResult<Option<Timestamp>> {
        stored
            .map(|s| Self::read_timestamp(table, column, s))
            .transpose()
    }

    /// Reads an optional stored JSON document.
    fn read_opt_json(
        table: &str,
        column: &str,
        stored: Option<Self::Json>,
    ) -> RepoResult<Option<Value>> {
        stored
            .map(|s| Self::read_json(table, column, s))
            .transpose()
    }

    /// Reads a stored enum spelling (statuses, kinds, levels).
    fn read_enum<T: FromStr>(table: &str, column: &str, text: &str) -> RepoResult<T> {
        text.parse()
            .map_err(|_| Self::corrupt(table, column, format!("unknown value {text:?}")))
    }

    /// Reads an optional stored enum spelling.
    fn read_opt_enum<T: FromStr>(
        table: &str,
        column: &str,
        text: Option<&str>,
    ) -> RepoResult<Option<T>> {
        text.map(|t| Self::read_enum(table, column, t)).transpose()
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
