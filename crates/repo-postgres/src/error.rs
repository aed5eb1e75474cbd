//! Mapping of Diesel, libpq and r2d2 failures onto [`RepoError`] (docs/semantics.md).

use diesel::result::{ConnectionError, DatabaseErrorInformation, DatabaseErrorKind, Error};
use repo_core::{BoxError, ConflictReason, RepoError, UnavailableReason};

/// Maps a Diesel error to the core error, per the table in `docs/semantics.md`.
///
/// Unique violations are recognised by index name, CHECK violations by constraint
/// name. Diesel reports deadlocks (40P01), statement timeouts (57014) and lock
/// timeouts (55P03) as `Unknown`, so those are classified by the server's message.
/// The original error is kept as `source` where the variant has one.
pub(crate) fn map_diesel_error(error: Error) -> RepoError {
    match error {
        Error::NotFound => RepoError::not_found("row", "query returned no rows"),
        Error::DatabaseError(kind, info) => map_database_error(kind, info),
        Error::RollbackErrorOnCommit { commit_error, .. } => map_diesel_error(*commit_error),
        Error::BrokenTransactionManager => RepoError::Unavailable {
            reason: UnavailableReason::ConnectionLost,
            message: "the connection's transaction state is broken".into(),
            source: Some(Box::new(Error::BrokenTransactionManager)),
        },
        other => backend(other),
    }
}

fn map_database_error(
    kind: DatabaseErrorKind,
    info: Box<dyn DatabaseErrorInformation + Send + Sync>,
) -> RepoError {
    match kind {
        DatabaseErrorKind::UniqueViolation => unique_violation(info.constraint_name()),
        DatabaseErrorKind::CheckViolation => RepoError::validation(
            check_field(info.table_name(), info.constraint_name()),
            "violates a CHECK constraint",
        ),
        DatabaseErrorKind::NotNullViolation => RepoError::validation(
            info.column_name().and_then(known_column).unwrap_or("value"),
            "must not be null",
        ),
        DatabaseErrorKind::ForeignKeyViolation => RepoError::not_found(
            "referenced row",
            info.constraint_name().unwrap_or("foreign key"),
        ),
        DatabaseErrorKind::SerializationFailure => {
            RepoError::conflict(ConflictReason::Serialization, info.message())
        }
        DatabaseErrorKind::ClosedConnection => connection_lost(kind, info),
        _ => classify_by_message(kind, info),
    }
}

/// The errors Diesel reports as `Unknown`: recognised by the server's message.
fn classify_by_message(
    kind: DatabaseErrorKind,
    info: Box<dyn DatabaseErrorInformation + Send + Sync>,
) -> RepoError {
    let message = info.message().to_owned();
    let lower = message.to_ascii_lowercase();
    if lower.contains("deadlock detected") {
        RepoError::conflict(ConflictReason::Deadlock, message)
    } else if lower.contains("lock timeout") || lower.contains("could not obtain lock") {
        RepoError::conflict(ConflictReason::ConcurrentUpdate, message)
    } else if lower.contains("statement timeout") {
        RepoError::Unavailable {
            reason: UnavailableReason::Timeout,
            message,
            source: Some(Box::new(Error::DatabaseError(kind, info))),
        }
    } else if is_connection_loss(&lower) {
        connection_lost(kind, info)
    } else {
        backend(Error::DatabaseError(kind, info))
    }
}

fn is_connection_loss(lower: &str) -> bool {
    lower.contains("server closed the connection")
        || lower.contains("terminating connection")
        || lower.contains("no connection to the server")
        || lower.contains("could not send data to server")
        || lower.contains("could not receive data from server")
        || lower.contains("ssl connection has been closed unexpectedly")
        || (lower.contains("connection to server") && lower.contains("failed"))
}

fn connection_lost(
    kind: DatabaseErrorKind,
    info: Box<dyn DatabaseErrorInformation + Send + Sync>,
) -> RepoError {
    RepoError::Unavailable {
        reason: UnavailableReason::ConnectionLost,
        message: format!("connection lost: {}", info.message().trim_end()),
        source: Some(Box::new(Error::DatabaseError(kind, info))),
    }
}

fn backend(error: Error) -> RepoError {
    RepoError::Backend {
        message: error.to_string().trim_end().to_owned(),
        source: Some(Box::new(error)),
    }
}

/// The unique indexes of the schema, by name.
fn unique_violation(constraint: Option<&str>) -> RepoError {
    let (entity, field) = match constraint.unwrap_or("") {
        "operations_one_active_per_collection" => {
            return RepoError::conflict(
                ConflictReason::ActiveOperation,
                "the collection already has an active operation",
            )
        }
        "users_username_key" => ("user", "username"),
        "users_email_key" => ("user", "email"),
        "users_pkey" => ("user", "id"),
        "api_keys_user_name_key" => ("api_key", "name"),
        "api_keys_key_hash_key" => ("api_key", "key_hash"),
        "api_keys_pkey" => ("api_key", "id"),
        "collections_name_key" => ("collection", "name"),
        "collections_vector_store_name_key" => ("collection", "vector_store_name"),
        "collections_pkey" => ("collection", "id"),
        "collection_permissions_user_key" | "collection_permissions_api_key_key" => {
            ("collection_permission", "grantee")
        }
        "collection_permissions_pkey" => ("collection_permission", "id"),
        "operations_uuid_key" => ("operation", "uuid"),
        "operations_pkey" => ("operation", "id"),
        _ => ("row", "value"),
    };
    RepoError::AlreadyExists { entity, field }
}

/// The column a CHECK constraint guards: named constraints explicitly, PostgreSQL's
/// generated names (`<table>_<column>_check`) by stripping table and suffix.
fn check_field(table: Option<&str>, constraint: Option<&str>) -> &'static str {
    let Some(constraint) = constraint else {
        return "value";
    };
    match constraint {
        "collections_chunk_overlap_check" => return "chunk_overlap",
        "collections_sync_interval_check" => return "sync_interval_minutes",
        "collection_permissions_one_grantee" => return "grantee",
        _ => {}
    }
    let column = table
        .and_then(|t| constraint.strip_prefix(t))
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.strip_suffix("_check"));
    column.and_then(known_column).unwrap_or("value")
}

/// Every column name of the schema, so error fields can be `&'static str`.
const COLUMNS: &[&str] = &[
    "id",
    "username",
    "email",
    "full_name",
    "hashed_password",
    "is_active",
    "is_superuser",
    "created_at",
    "updated_at",
    "last_login",
    "user_id",
    "name",
    "name_folded",
    "key_prefix",
    "key_hash",
    "permissions",
    "expires_at",
    "last_used_at",
    "description",
    "owner_id",
    "vector_store_name",
    "embedding_model",
    "quantization",
    "chunk_size",
    "chunk_overlap",
    "chunking_strategy",
    "chunking_config",
    "is_public",
    "meta",
    "status",
    "status_message",
    "document_count",
    "vector_count",
    "total_size_bytes",
    "sync_mode",
    "sync_interval_minutes",
    "sync_paused_at",
    "sync_next_run_at",
    "sync_last_run_started_at",
    "sync_last_run_completed_at",
    "sync_last_run_status",
    "sync_last_error",
    "collection_id",
    "api_key_id",
    "permission",
    "uuid",
    "kind",
    "task_id",
    "config",
    "error_message",
    "started_at",
    "completed_at",
];

fn known_column(name: &str) -> Option<&'static str> {
    COLUMNS.iter().copied().find(|c| *c == name)
}

/// Maps a failure to open a connection; `redacted_url` must already be redacted.
pub(crate) fn map_connection_error(error: ConnectionError, redacted_url: &str) -> RepoError {
    match error {
        ConnectionError::InvalidConnectionUrl(msg) => {
            RepoError::config(format!("invalid PostgreSQL URL {redacted_url}: {msg}"))
        }
        other => RepoError::Unavailable {
            reason: UnavailableReason::ConnectionFailed,
            message: format!(
                "could not connect to {redacted_url}: {}",
                other.to_string().trim_end()
            ),
            source: Some(Box::new(other)),
        },
    }
}

/// Maps a pool checkout that timed out. `exhausted` tells whether every connection
/// was open and in use (then the pool is too small), as opposed to connections that
/// could not be opened (then the server is unreachable).
pub(crate) fn map_checkout_error(
    error: diesel::r2d2::PoolError,
    exhausted: bool,
    max_size: u32,
    redacted_url: &str,
) -> RepoError {
    if exhausted {
        RepoError::Unavailable {
            reason: UnavailableReason::PoolExhausted,
            message: format!(
                "pool exhausted: all {max_size} connections were in use until the checkout \
                 timeout passed ({error})"
            ),
            source: Some(Box::new(error)),
        }
    } else {
        RepoError::Unavailable {
            reason: UnavailableReason::ConnectionFailed,
            message: format!(
                "connection failed: no connection to {redacted_url} could be opened ({})",
                error.to_string().trim_end()
            ),
            source: Some(Box::new(error)),
        }
    }
}

/// Removes every secret from `text` (defence in depth: libpq messages should not
/// carry passwords, but a message must never show one).
pub(crate) fn scrub(text: String, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text, |t, s| {
        if t.contains(s.as_str()) {
            t.replace(s.as_str(), "***")
        } else {
            t
        }
    })
}

fn leaks(source: Option<&BoxError>, secrets: &[String]) -> bool {
    source.is_some_and(|s| {
        let text = s.to_string();
        secrets
            .iter()
            .any(|p| !p.is_empty() && text.contains(p.as_str()))
    })
}

/// Scrubs the secrets out of every message of an error; a source that would show one
/// is dropped.
pub(crate) fn scrub_error(error: RepoError, secrets: &[String]) -> RepoError {
    if secrets.is_empty() {
        return error;
    }
    match error {
        RepoError::Unavailable {
            reason,
            message,
            source,
        } => {
            let leaked = leaks(source.as_ref(), secrets);
            RepoError::Unavailable {
                reason,
                message: scrub(message, secrets),
                source: if leaked { None } else { source },
            }
        }
        RepoError::Backend { message, source } => {
            let leaked = leaks(source.as_ref(), secrets);
            RepoError::Backend {
                message: scrub(message, secrets),
                source: if leaked { None } else { source },
            }
        }
        RepoError::Config { message } => RepoError::Config {
            message: scrub(message, secrets),
        },
        RepoError::Conflict { reason, message } => RepoError::Conflict {
            reason,
            message: scrub(message, secrets),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_fields() {
        assert_eq!(
            check_field(Some("collections"), Some("collections_chunk_size_check")),
            "chunk_size"
        );
        assert_eq!(
            check_field(Some("users"), Some("users_username_check")),
            "username"
        );
        assert_eq!(
            check_field(
                Some("collection_permissions"),
                Some("collection_permissions_one_grantee")
            ),
            "grantee"
        );
        assert_eq!(check_field(None, Some("whatever")), "value");
    }

    #[test]
    fn unique_names() {
        assert!(matches!(
            unique_violation(Some("users_email_key")),
            RepoError::AlreadyExists {
                entity: "user",
                field: "email"
            }
        ));
        assert!(matches!(
            unique_violation(Some("operations_one_active_per_collection")),
            RepoError::Conflict {
                reason: ConflictReason::ActiveOperation,
                ..
            }
        ));
    }

    #[test]
    fn scrubs_secret() {
        assert_eq!(scrub("a hunter2 b".into(), &["hunter2".into()]), "a *** b");
        assert_eq!(scrub("a b".into(), &[]), "a b");
    }
}
