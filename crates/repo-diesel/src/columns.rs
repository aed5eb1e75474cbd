//! How a backend stores the domain's column values, so that row types and their
//! conversions are written once for both backends ([`ColumnCodec`]).
//!
//! SQLite stores UUIDs, timestamps and JSON as text (its codec lives in
//! `repo-sqlite`); PostgreSQL stores them in their own types, through
//! [`NativeColumns`].

use repo_core::{RepoError, RepoResult, Timestamp};
use serde_json::Value;
use std::str::FromStr;
use uuid::Uuid;

/// The stored form of the column values whose representation differs between the
/// backends, and the conversions both ways. A read that cannot be converted is a
/// corrupt row of `table`.`column`.
pub trait ColumnCodec {
    /// A UUID as stored.
    type Uuid;
    /// A timestamp as stored.
    type Timestamp;
    /// A JSON value as read.
    type Json;
    /// A JSON value as written, borrowing the domain value where the backend can.
    type JsonIn<'a>;

    /// A UUID as stored.
    fn uuid(value: Uuid) -> Self::Uuid;
    /// A timestamp as stored.
    fn timestamp(value: Timestamp) -> Self::Timestamp;
    /// A JSON value as written.
    fn json(value: &Value) -> RepoResult<Self::JsonIn<'_>>;
    /// Reads a stored UUID.
    fn read_uuid(table: &str, column: &str, value: Self::Uuid) -> RepoResult<Uuid>;
    /// Reads a stored timestamp.
    fn read_timestamp(table: &str, column: &str, value: Self::Timestamp) -> RepoResult<Timestamp>;
    /// Reads a stored JSON value.
    fn read_json(table: &str, column: &str, value: Self::Json) -> RepoResult<Value>;
    /// Reads the stored spelling of an enum.
    fn read_enum<T: FromStr>(table: &str, column: &str, text: &str) -> RepoResult<T>;

    /// Reads an optional stored timestamp.
    fn read_opt_timestamp(
        table: &str,
        column: &str,
        value: Option<Self::Timestamp>,
    ) -> RepoResult<Option<Timestamp>> {
        value
            .map(|v| Self::read_timestamp(table, column, v))
            .transpose()
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

/// Values stored in their own types (PostgreSQL's `uuid`, `timestamptz`, `jsonb`):
/// conversions are the identity, but for timestamps written with microseconds (the
/// precision PostgreSQL keeps).
#[derive(Debug, Clone, Copy)]
pub struct NativeColumns;

impl ColumnCodec for NativeColumns {
    type Uuid = Uuid;
    type Timestamp = Timestamp;
    type Json = Value;
    type JsonIn<'a> = &'a Value;

    fn uuid(value: Uuid) -> Uuid {
        value
    }

    fn timestamp(value: Timestamp) -> Timestamp {
        repo_core::time::truncate_micros(value)
    }

    fn json(value: &Value) -> RepoResult<&Value> {
        Ok(value)
    }

    fn read_uuid(_: &str, _: &str, value: Uuid) -> RepoResult<Uuid> {
        Ok(value)
    }

    fn read_timestamp(_: &str, _: &str, value: Timestamp) -> RepoResult<Timestamp> {
        Ok(value)
    }

    fn read_json(_: &str, _: &str, value: Value) -> RepoResult<Value> {
        Ok(value)
    }

    fn read_enum<T: FromStr>(_: &str, column: &str, text: &str) -> RepoResult<T> {
        text.parse().map_err(|_| RepoError::Backend {
            message: format!("unexpected value {text:?} in column {column}"),
            source: None,
        })
    }
}

/// A row count as `u64` (counts are never negative).
pub fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// An affected-row count as `u64`.
pub fn affected(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
