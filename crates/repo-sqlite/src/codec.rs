//! Column codecs: how timestamps, UUIDs, JSON and enums are stored as SQLite text.

use crate::error::corrupt;
use chrono::{Datelike, Timelike};
use repo_core::time::{from_text, to_text};
use repo_core::{RepoResult, Timestamp};
use serde_json::Value;
use std::fmt::Write;
use uuid::Uuid;

/// A timestamp as stored: fixed-width RFC 3339 UTC text, microseconds; the text of
/// [`to_text`], written without parsing a format string on every call (bulk inserts
/// format three timestamps per row).
pub(crate) fn ts(value: Timestamp) -> String {
    let year = value.year();
    let nanos = value.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Signed or five-digit years and leap seconds: chrono's own rendering.
        return to_text(value);
    }
    let mut out = String::with_capacity(27);
    // Writing into a `String` cannot fail.
    let _ = write!(
        out,
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        value.month(),
        value.day(),
        value.hour(),
        value.minute(),
        value.second(),
        nanos / 1_000
    );
    out
}

/// Reads a stored timestamp.
pub(crate) fn read_ts(table: &str, column: &str, text: &str) -> RepoResult<Timestamp> {
    from_text(text).ok_or_else(|| corrupt(table, column, format!("not a timestamp: {text:?}")))
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

/// Reads stored JSON.
pub(crate) fn read_json(table: &str, column: &str, text: &str) -> RepoResult<Value> {
    serde_json::from_str(text).map_err(|e| corrupt(table, column, e))
}

/// The SQLite [`repo_diesel::codec::Codec`]: UUIDs, timestamps and JSON as the text
/// the functions above write and read.
pub(crate) struct SqliteCodec;

impl repo_diesel::codec::Codec for SqliteCodec {
    type Uuid = String;
    type Timestamp = String;
    type Json = String;
    type UuidSql = diesel::sql_types::Text;
    type TimestampSql = diesel::sql_types::Text;
    type JsonSql = diesel::sql_types::Text;
    type JsonIn<'a> = String;

    fn uuid(value: Uuid) -> String {
        uuid(value)
    }

    fn timestamp(value: Timestamp) -> String {
        ts(value)
    }

    fn json(value: &Value) -> RepoResult<String> {
        json(value)
    }

    fn json_in(value: &Value) -> RepoResult<String> {
        json(value)
    }

    fn read_uuid(table: &str, column: &str, stored: String) -> RepoResult<Uuid> {
        read_uuid(table, column, &stored)
    }

    fn read_timestamp(table: &str, column: &str, stored: String) -> RepoResult<Timestamp> {
        read_ts(table, column, &stored)
    }

    fn read_json(table: &str, column: &str, stored: String) -> RepoResult<Value> {
        read_json(table, column, &stored)
    }

    fn corrupt(table: &str, column: &str, detail: String) -> repo_core::RepoError {
        corrupt(table, column, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};

    #[test]
    fn ts_writes_the_text_of_to_text() {
        let mut at: DateTime<Utc> = DateTime::from_timestamp(-62_135_596_800, 0).expect("year 1");
        let step = Duration::seconds(7_919_993) + Duration::nanoseconds(123_456_789);
        for _ in 0..40_000 {
            assert_eq!(ts(at), to_text(at));
            at += step;
        }
        let now = repo_core::now();
        assert_eq!(ts(now), to_text(now));
        let far = DateTime::from_timestamp(253_402_300_800, 5_000).expect("year 10000");
        assert_eq!(ts(far), to_text(far));
        let before = DateTime::from_timestamp(-62_135_596_801, 999_999_999).expect("year 0");
        assert_eq!(ts(before), to_text(before));
    }
}
