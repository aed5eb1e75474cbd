//! Column codecs: how timestamps, UUIDs, JSON and enums are stored as SQLite text.

use crate::error::corrupt;
use repo_core::time::{from_text, to_text};
use repo_core::{RepoResult, Timestamp};
use serde_json::Value;
use std::str::FromStr;
use uuid::Uuid;

/// A timestamp as stored: fixed-width RFC 3339 UTC text, microseconds.
pub(crate) fn ts(value: Timestamp) -> String {
    to_text(value)
}

/// An optional timestamp as stored.
pub(crate) fn opt_ts(value: Option<Timestamp>) -> Option<String> {
    value.map(to_text)
}

/// Reads a stored timestamp.
pub(crate) fn read_ts(table: &str, column: &str, text: &str) -> RepoResult<Timestamp> {
    from_text(text).ok_or_else(|| corrupt(table, column, format!("not a timestamp: {text:?}")))
}

/// Reads an optional stored timestamp.
pub(crate) fn read_opt_ts(
    table: &str,
    column: &str,
    text: Option<&str>,
) -> RepoResult<Option<Timestamp>> {
    text.map(|t| read_ts(table, column, t)).transpose()
}

/// A UUID as stored: lowercase hyphenated.
pub(crate) fn uuid(value: Uuid) -> String {
    value.hyphenated().to_string()
}

/// Reads a stored UUID.
pub(crate) fn read_uuid(table: &str, column: &str, text: &str) -> RepoResult<Uuid> {
    Uuid::parse_str(text).map_err(|e| corrupt(table, column, e))
}

/// A JSON value as stored.
pub(crate) fn json(value: &Value) -> RepoResult<String> {
    serde_json::to_string(value).map_err(|e| repo_core::RepoError::Backend {
        message: format!("cannot serialise JSON: {e}"),
        source: Some(Box::new(e)),
    })
}

/// An optional JSON value as stored.
pub(crate) fn opt_json(value: Option<&Value>) -> RepoResult<Option<String>> {
    value.map(json).transpose()
}

/// Reads stored JSON.
pub(crate) fn read_json(table: &str, column: &str, text: &str) -> RepoResult<Value> {
    serde_json::from_str(text).map_err(|e| corrupt(table, column, e))
}

/// Reads optional stored JSON.
pub(crate) fn read_opt_json(
    table: &str,
    column: &str,
    text: Option<&str>,
) -> RepoResult<Option<Value>> {
    text.map(|t| read_json(table, column, t)).transpose()
}

/// Reads a stored enum spelling.
pub(crate) fn read_enum<T: FromStr>(table: &str, column: &str, text: &str) -> RepoResult<T> {
    text.parse()
        .map_err(|_| corrupt(table, column, format!("unknown value {text:?}")))
}

/// Converts a row count to `u64` (counts are never negative).
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Converts an affected-row count to `u64`.
pub(crate) fn affected(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
