//! The one mapping from Diesel / r2d2 errors to [`RepoError`] (docs/semantics.md).

use diesel::r2d2::PoolError;
use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
use repo_core::{ConflictReason, Entity, Field, PoolStatus, RepoError, UnavailableReason};

/// Maps a Diesel error to the core error, keeping the original as `source` where the
/// variant has one. Constraint messages are parsed because SQLite reports unique and
/// NOT NULL failures as `UNIQUE constraint failed: table.column` and busy errors only
/// by their text.
pub(crate) fn map_diesel_error(err: DieselError) -> RepoError {
    if matches!(err, DieselError::DatabaseError(..)) {
        crate::observe::statement_failed();
    }
    match err {
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            if repo_core::maintenance::is_maintenance_message(&message) {
                return RepoError::Unavailable {
                    reason: UnavailableReason::Maintenance,
                    message,
                    source: Some(Box::new(DieselError::DatabaseError(kind, info))),
                };
            }
            match kind {
                DatabaseErrorKind::UniqueViolation => unique_violation(&message)
                    .unwrap_or_else(|| backend(message, DieselError::DatabaseError(kind, info))),
                DatabaseErrorKind::CheckViolation => RepoError::validation(
                    check_field(&message),
                    "violates a check constraint of the database",
                ),
                DatabaseErrorKind::NotNullViolation => {
                    RepoError::validation(not_null_field(&message), "must not be null")
                }
                DatabaseErrorKind::ForeignKeyViolation => {
                    RepoError::not_found(Entity::ReferencedRow, "foreign key")
                }
                DatabaseErrorKind::ClosedConnection => RepoError::Unavailable {
                    reason: UnavailableReason::ConnectionLost,
                    message,
                    source: Some(Box::new(DieselError::DatabaseError(kind, info))),
                },
                _ if is_busy(&message) => RepoError::conflict(ConflictReason::Busy, message),
                _ => backend(message, DieselError::DatabaseError(kind, info)),
            }
        }
        DieselError::RollbackErrorOnCommit { commit_error, .. } => map_diesel_error(*commit_error),
        DieselError::BrokenTransactionManager => RepoError::Unavailable {
            reason: UnavailableReason::ConnectionLost,
            message: "the connection's transaction state is broken".into(),
            source: Some(Box::new(DieselError::BrokenTransactionManager)),
        },
        other => backend(other.to_string(), other),
    }
}

/// Maps a failure to open a connection.
pub(crate) fn map_connection_error(err: ConnectionError, target: &str) -> RepoError {
    RepoError::Unavailable {
        reason: UnavailableReason::ConnectionFailed,
        message: format!("cannot open SQLite database {target}: {err}"),
        source: Some(Box::new(err)),
    }
}

/// Maps a failed pool checkout: exhausted when every connection is in use, otherwise
/// the connections could not be opened.
pub(crate) fn map_checkout_error(err: PoolError, pool: PoolStatus) -> RepoError {
    let max_size = pool.max;
    let (reason, message) = if pool.is_exhausted() {
        (
            UnavailableReason::PoolExhausted,
            format!(
                "pool exhausted: all {max_size} connections stayed in use until the checkout timeout"
            ),
        )
    } else {
        (
            UnavailableReason::ConnectionFailed,
            format!(
                "no connection could be opened before the checkout timeout \
                 ({} of {max_size} open): {err}",
                pool.open
            ),
        )
    };
    RepoError::Unavailable {
        reason,
        message,
        source: Some(Box::new(err)),
    }
}

/// Maps an error of the migration harness.
pub(crate) fn map_migration_error(err: Box<dyn std::error::Error + Send + Sync>) -> RepoError {
    match err.downcast::<DieselError>() {
        Ok(diesel_err) => map_diesel_error(*diesel_err),
        Err(other) => RepoError::Backend {
            message: format!("migration failed: {other}"),
            source: Some(other),
        },
    }
}

/// A value read from the database that cannot be represented (another tool wrote it).
pub(crate) fn corrupt(table: &str, column: &str, detail: impl std::fmt::Display) -> RepoError {
    RepoError::Backend {
        message: format!("unreadable value in {table}.{column}: {detail}"),
        source: None,
    }
}

fn backend(message: String, source: DieselError) -> RepoError {
    RepoError::Backend {
        message,
        source: Some(Box::new(source)),
    }
}

/// `SQLITE_BUSY` ("database is locked") and `SQLITE_LOCKED` ("database table is
/// locked"); Diesel has no error kind for them.
fn is_busy(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("database is locked") || m.contains("is locked") || m.contains("database is busy")
}

/// `UNIQUE constraint failed: users.email` (or `index 'name'` for expression indexes).
fn unique_violation(message: &str) -> Option<RepoError> {
    let detail = message
        .strip_prefix("UNIQUE constraint failed: ")
        .unwrap_or(message)
        .trim();
    if let Some(index) = detail
        .strip_prefix("index '")
        .and_then(|s| s.strip_suffix('\''))
    {
        return unique_index(index);
    }
    let columns: Vec<&str> = detail.split(',').map(str::trim).collect();
    let has = |c: &str| columns.contains(&c);
    let (entity, field) = if has("users.username") {
        (Entity::User, Field::Username)
    } else if has("users.email") {
        (Entity::User, Field::Email)
    } else if has("api_keys.key_hash") {
        (Entity::ApiKey, Field::KeyHash)
    } else if has("api_keys.name_folded") {
        (Entity::ApiKey, Field::Name)
    } else if has("api_keys.id") {
        (Entity::ApiKey, Field::Id)
    } else if has("collections.name") {
        (Entity::Collection, Field::Name)
    } else if has("collections.vector_store_name") {
        (Entity::Collection, Field::VectorStoreName)
    } else if has("collections.id") {
        (Entity::Collection, Field::Id)
    } else if has("operations.uuid") {
        (Entity::Operation, Field::Uuid)
    } else if has("operations.collection_id") {
        // The partial index `operations_one_active_per_collection`.
        return Some(active_operation());
    } else if has("collection_permissions.collection_id") {
        (Entity::CollectionPermission, Field::Grantee)
    } else if has("documents.content_hash") {
        // Normally absorbed by `ON CONFLICT (collection_id, content_hash) DO NOTHING`.
        (Entity::Document, Field::ContentHash)
    } else if has("documents.uri") {
        (Entity::Document, Field::Uri)
    } else if has("documents.id") {
        (Entity::Document, Field::Id)
    } else if has("chunks.chunk_index") {
        (Entity::Chunk, Field::ChunkIndex)
    } else if has("chunks.id") {
        (Entity::Chunk, Field::Id)
    } else if has("users.id") {
        (Entity::User, Field::Id)
    } else if has("operations.id") {
        (Entity::Operation, Field::Id)
    } else {
        return None;
    };
    Some(RepoError::already_exists(entity, field))
}

fn unique_index(index: &str) -> Option<RepoError> {
    let (entity, field) = match index {
        "users_username_key" => (Entity::User, Field::Username),
        "users_email_key" => (Entity::User, Field::Email),
        "api_keys_user_name_key" => (Entity::ApiKey, Field::Name),
        "api_keys_key_hash_key" => (Entity::ApiKey, Field::KeyHash),
        "collections_name_key" => (Entity::Collection, Field::Name),
        "collections_vector_store_name_key" => (Entity::Collection, Field::VectorStoreName),
        "operations_uuid_key" => (Entity::Operation, Field::Uuid),
        "operations_collection_idempotency_key" => (Entity::Operation, Field::IdempotencyKey),
        "operations_one_active_per_collection" => return Some(active_operation()),
        "documents_collection_content_hash_key" => (Entity::Document, Field::ContentHash),
        "documents_collection_uri_key" => (Entity::Document, Field::Uri),
        "chunks_document_chunk_index_key" => (Entity::Chunk, Field::ChunkIndex),
        _ => return None,
    };
    Some(RepoError::already_exists(entity, field))
}

fn active_operation() -> RepoError {
    RepoError::conflict(
        ConflictReason::ActiveOperation,
        "the collection already has an active operation",
    )
}

/// `CHECK constraint failed: <constraint name or expression>`: the named constraints
/// are mapped explicitly, an expression names the first known column it mentions.
fn check_field(message: &str) -> Field {
    let detail = message
        .strip_prefix("CHECK constraint failed: ")
        .unwrap_or(message)
        .trim();
    match detail {
        "collections_chunk_overlap_check" => return Field::ChunkOverlap,
        "collections_sync_interval_check" => return Field::SyncIntervalMinutes,
        "collection_permissions_one_grantee" => return Field::Grantee,
        _ => {}
    }
    detail
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .find_map(Field::from_name)
        .unwrap_or(Field::Value)
}

/// `NOT NULL constraint failed: users.email`.
fn not_null_field(message: &str) -> Field {
    message
        .rsplit('.')
        .next()
        .and_then(|c| Field::from_name(c.trim()))
        .unwrap_or(Field::Value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_messages_name_the_field() {
        let e = unique_violation("UNIQUE constraint failed: users.email");
        assert!(matches!(
            e,
            Some(RepoError::AlreadyExists {
                entity: Entity::User,
                field: Field::Email
            })
        ));
        let e =
            unique_violation("UNIQUE constraint failed: api_keys.user_id, api_keys.name_folded");
        assert!(matches!(
            e,
            Some(RepoError::AlreadyExists {
                entity: Entity::ApiKey,
                field: Field::Name
            })
        ));
        let e = unique_violation("UNIQUE constraint failed: operations.collection_id");
        assert!(matches!(
            e,
            Some(RepoError::Conflict {
                reason: ConflictReason::ActiveOperation,
                ..
            })
        ));
        let e = unique_violation(
            "UNIQUE constraint failed: documents.collection_id, documents.content_hash",
        );
        assert!(matches!(
            e,
            Some(RepoError::AlreadyExists {
                entity: Entity::Document,
                field: Field::ContentHash
            })
        ));
        let e =
            unique_violation("UNIQUE constraint failed: documents.collection_id, documents.uri");
        assert!(matches!(
            e,
            Some(RepoError::AlreadyExists {
                entity: Entity::Document,
                field: Field::Uri
            })
        ));
        let e = unique_violation(
            "UNIQUE constraint failed: chunks.collection_id, chunks.document_id, chunks.chunk_index",
        );
        assert!(matches!(
            e,
            Some(RepoError::AlreadyExists {
                entity: Entity::Chunk,
                field: Field::ChunkIndex
            })
        ));
        let e = unique_violation("UNIQUE constraint failed: index 'collections_name_key'");
        assert!(matches!(
            e,
            Some(RepoError::AlreadyExists {
                entity: Entity::Collection,
                field: Field::Name
            })
        ));
    }

    #[test]
    fn check_and_not_null_fields() {
        assert_eq!(
            check_field("CHECK constraint failed: collections_chunk_overlap_check"),
            Field::ChunkOverlap
        );
        assert_eq!(
            check_field("CHECK constraint failed: length(username) BETWEEN 1 AND 64"),
            Field::Username
        );
        assert_eq!(
            check_field("CHECK constraint failed: something"),
            Field::Value
        );
        assert_eq!(
            not_null_field("NOT NULL constraint failed: users.email"),
            Field::Email
        );
    }

    #[test]
    fn busy_is_a_transient_conflict() {
        let e = map_diesel_error(DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("database is locked".to_owned()),
        ));
        assert!(e.is_transient_conflict());
    }
}
