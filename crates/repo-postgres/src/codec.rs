//! The PostgreSQL [`Codec`]: UUIDs, timestamps and JSON are native column types
//! (`uuid`, `timestamptz`, `jsonb`), so storing and reading them is the identity.

use repo_core::{RepoError, RepoResult, Timestamp};
use repo_diesel::codec::Codec;
use serde_json::Value;

/// Stores UUIDs, timestamps and JSON as PostgreSQL's own types.
pub(crate) struct PgCodec;

impl Codec for PgCodec {
    type Uuid = uuid::Uuid;
    type Timestamp = Timestamp;
    type Json = Value;
    type UuidSql = diesel::sql_types::Uuid;
    type TimestampSql = diesel::sql_types::Timestamptz;
    type JsonSql = diesel::sql_types::Jsonb;
    type JsonIn<'a> = &'a Value;

    fn uuid(value: uuid::Uuid) -> uuid::Uuid {
        value
    }

    /// Cut to the microseconds PostgreSQL keeps (it would round), as SQLite's text
    /// does, so both backends store the same instant.
    fn timestamp(value: Timestamp) -> Timestamp {
        repo_core::time::truncate_micros(value)
    }

    fn json(value: &Value) -> RepoResult<Value> {
        Ok(value.clone())
    }

    fn json_in(value: &Value) -> RepoResult<&Value> {
        Ok(value)
    }

    fn read_uuid(_: &str, _: &str, stored: uuid::Uuid) -> RepoResult<uuid::Uuid> {
        Ok(stored)
    }

    fn read_timestamp(_: &str, _: &str, stored: Timestamp) -> RepoResult<Timestamp> {
        Ok(stored)
    }

    fn read_json(_: &str, _: &str, stored: Value) -> RepoResult<Value> {
        Ok(stored)
    }

    fn corrupt(table: &str, column: &str, detail: String) -> RepoError {
        RepoError::Backend {
            message: format!("unexpected value in {table}.{column}: {detail}"),
            source: None,
        }
    }
}
