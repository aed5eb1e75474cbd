//! Mapping of Diesel, libpq and r2d2 failures onto [`RepoError`] (docs/semantics.md).

use diesel::result::{ConnectionError, DatabaseErrorInformation, DatabaseErrorKind, Error};
use repo_core::postgres_url::scrub_secrets;
use repo_core::{BoxError, ConflictReason, Entity, Field, RepoError, UnavailableReason};

/// Maps a Diesel error to the core error, per the table in `docs/semantics.md`.
///
/// Unique violations are recognised by index name, CHECK violations by constraint
/// name. Diesel reports deadlocks (40P01), statement timeouts (57014) and lock
/// timeouts (55P03) as `Unknown`, so those are classified by the server's message.
/// The original error is kept as `source` where the variant has one.
pub(crate) fn map_diesel_error(error: Error) -> RepoError {
    match error {
        Error::NotFound => RepoError::not_found(Entity::Row, "query returned no rows"),
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
            info.column_name()
                .and_then(Field::from_name)
                .unwrap_or(Field::Value),
            "must not be null",
        ),
        DatabaseErrorKind::ForeignKeyViolation => RepoError::not_found(
            Entity::ReferencedRow,
            info.constraint_name().unwrap_or("foreign key"),
        ),
        DatabaseErrorKind::SerializationFailure => {
            RepoError::conflict(ConflictReason::Serialization, info.message())
        }
        DatabaseErrorKind::ReadOnlyTransaction => {
            unavailable(UnavailableReason::ReadOnly, kind, info)
        }
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
    if repo_core::maintenance::is_maintenance_message(&message) {
        return unavailable(UnavailableReason::Maintenance, kind, info);
    }
    // Checked before the connection-loss texts: 57P01 also says "terminating
    // connection", and libpq then reports the connection closed.
    if let Some(reason) = shutdown_reason(&lower) {
        return unavailable(reason, kind, info);
    }
    if kind == DatabaseErrorKind::ClosedConnection {
        return connection_lost(kind, info);
    }
    if is_pooler_statement_error(&lower) {
        return RepoError::config(format!(
            "{}: the server connection changed under a prepared statement, which is what \
             a transaction pooler (PgBouncer in transaction mode, a managed pooled \
             endpoint) does; add pgbouncer=true to the database URL or set \
             DB_PGBOUNCER=true",
            message.trim_end()
        ));
    }
    if lower.contains("deadlock detected") {
        RepoError::conflict(ConflictReason::Deadlock, message)
    } else if lower.contains("lock timeout") || lower.contains("could not obtain lock") {
        RepoError::conflict(ConflictReason::ConcurrentUpdate, message)
    } else if lower.contains("statement timeout") {
        unavailable(UnavailableReason::StatementTimeout, kind, info)
    } else if is_connection_loss(&lower) {
        connection_lost(kind, info)
    } else {
        backend(Error::DatabaseError(kind, info))
    }
}

/// The server going away (57P01, 57P02) or not accepting connections (57P03), by the
/// server's message (Diesel does not expose the SQLSTATE). `lower` is lowercase.
fn shutdown_reason(lower: &str) -> Option<UnavailableReason> {
    if lower.contains("terminating connection due to administrator command") {
        Some(UnavailableReason::AdminShutdown)
    } else if lower.contains("because of crash of another server process")
        || lower.contains("terminating connection due to immediate shutdown")
    {
        Some(UnavailableReason::CrashShutdown)
    } else if lower.contains("the database system is starting up")
        || lower.contains("the database system is shutting down")
        || lower.contains("the database system is in recovery mode")
        || lower.contains("the database system is not yet accepting connections")
        || lower.contains("the database system is not accepting connections")
    {
        Some(UnavailableReason::CannotConnectNow)
    } else {
        None
    }
}

/// The errors a transaction pooler causes with per-connection prepared statements:
/// Diesel's statement cache names statements per connection, and the pooler runs a
/// client's next statement on another server connection. `lower` is lowercase.
fn is_pooler_statement_error(lower: &str) -> bool {
    (lower.contains("prepared statement")
        && (lower.contains("does not exist") || lower.contains("already exists")))
        || (lower.contains("bind message supplies") && lower.contains("prepared statement"))
}

fn unavailable(
    reason: UnavailableReason,
    kind: DatabaseErrorKind,
    info: Box<dyn DatabaseErrorInformation + Send + Sync>,
) -> RepoError {
    RepoError::Unavailable {
        reason,
        message: format!("{reason}: {}", info.message().trim_end()),
        source: Some(Box::new(Error::DatabaseError(kind, info))),
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

/// Whether a libpq message says a client-side deadline passed (`connect_timeout`:
/// "timeout expired"; keepalives or `tcp_user_timeout`: "Connection timed out").
fn is_deadline(lower: &str) -> bool {
    lower.contains("timed out") || lower.contains("timeout expired")
}

fn connection_lost(
    kind: DatabaseErrorKind,
    info: Box<dyn DatabaseErrorInformation + Send + Sync>,
) -> RepoError {
    let reason = if is_deadline(&info.message().to_ascii_lowercase()) {
        UnavailableReason::Timeout
    } else {
        UnavailableReason::ConnectionLost
    };
    RepoError::Unavailable {
        reason,
        message: format!(
            "connection lost: {}",
            repo_core::instrument::one_line(info.message())
        ),
        source: Some(Box::new(Error::DatabaseError(kind, info))),
    }
}

fn backend(error: Error) -> RepoError {
    RepoError::Backend {
        message: repo_core::instrument::one_line(&error.to_string()),
        source: Some(Box::new(error)),
    }
}

/// The index of the partitioned `chunks` table that a partition's index belongs to.
///
/// A unique violation on a partitioned table names the partition's own index
/// (`chunks_p13_collection_id_document_id_chunk_index_idx`, `chunks_p13_pkey`), whose
/// name PostgreSQL generates from the partition and its columns.
fn chunks_parent_index(name: &str) -> Option<&'static str> {
    let rest = name.strip_prefix("chunks_p")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    match &rest[digits..] {
        "_collection_id_document_id_chunk_index_idx" => Some("chunks_document_chunk_index_key"),
        "_pkey" => Some("chunks_pkey"),
        _ => None,
    }
}

/// The unique indexes of the schema, by name.
fn unique_violation(constraint: Option<&str>) -> RepoError {
    let name = constraint.unwrap_or("");
    let name = chunks_parent_index(name).unwrap_or(name);
    let (entity, field) = match name {
        "operations_one_active_per_collection" => {
            return RepoError::conflict(
                ConflictReason::ActiveOperation,
                "the collection already has an active operation",
            )
        }
        "users_username_key" => (Entity::User, Field::Username),
        "users_email_key" => (Entity::User, Field::Email),
        "operations_collection_idempotency_key" => (Entity::Operation, Field::IdempotencyKey),
        "users_pkey" => (Entity::User, Field::Id),
        "api_keys_user_name_key" => (Entity::ApiKey, Field::Name),
        "api_keys_key_hash_key" => (Entity::ApiKey, Field::KeyHash),
        "api_keys_pkey" => (Entity::ApiKey, Field::Id),
        "collections_name_key" => (Entity::Collection, Field::Name),
        "collections_vector_store_name_key" => (Entity::Collection, Field::VectorStoreName),
        "collections_pkey" => (Entity::Collection, Field::Id),
        "collection_permissions_user_key" | "collection_permissions_api_key_key" => {
            (Entity::CollectionPermission, Field::Grantee)
        }
        "collection_permissions_pkey" => (Entity::CollectionPermission, Field::Id),
        "operations_uuid_key" => (Entity::Operation, Field::Uuid),
        "operations_pkey" => (Entity::Operation, Field::Id),
        "documents_collection_content_hash_key" => (Entity::Document, Field::ContentHash),
        "documents_collection_uri_key" => (Entity::Document, Field::Uri),
        "documents_pkey" | "documents_collection_id_id_key" => (Entity::Document, Field::Id),
        "chunks_document_chunk_index_key" => (Entity::Chunk, Field::ChunkIndex),
        "chunks_pkey" => (Entity::Chunk, Field::Id),
        _ => (Entity::Row, Field::Value),
    };
    RepoError::already_exists(entity, field)
}

/// The column a CHECK constraint guards: named constraints explicitly, PostgreSQL's
/// generated names (`<table>_<column>_check`) by stripping table and suffix.
fn check_field(table: Option<&str>, constraint: Option<&str>) -> Field {
    let Some(constraint) = constraint else {
        return Field::Value;
    };
    match constraint {
        "collections_chunk_overlap_check" => return Field::ChunkOverlap,
        "collections_sync_interval_check" => return Field::SyncIntervalMinutes,
        "collection_permissions_one_grantee" => return Field::Grantee,
        _ => {}
    }
    // A partition (`chunks_p13`) reports its parent's constraint (`chunks_…_check`).
    let parent = table.map(|t| match t.rsplit_once("_p") {
        Some((parent, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => parent,
        _ => t,
    });
    let column = parent
        .and_then(|t| constraint.strip_prefix(t))
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.strip_suffix("_check"));
    column.and_then(Field::from_name).unwrap_or(Field::Value)
}

/// Maps a failure to open a connection; `redacted_url` must already be redacted.
pub(crate) fn map_connection_error(error: ConnectionError, redacted_url: &str) -> RepoError {
    match error {
        ConnectionError::InvalidConnectionUrl(msg) => {
            RepoError::config(format!("invalid PostgreSQL URL {redacted_url}: {msg}"))
        }
        other => RepoError::Unavailable {
            reason: shutdown_reason(&other.to_string().to_ascii_lowercase()).unwrap_or(
                if is_deadline(&other.to_string().to_ascii_lowercase()) {
                    UnavailableReason::Timeout
                } else {
                    UnavailableReason::ConnectionFailed
                },
            ),
            message: format!(
                "could not connect to {redacted_url}: {}",
                repo_core::instrument::one_line(&other.to_string())
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
                repo_core::instrument::one_line(&error.to_string())
            ),
            source: Some(Box::new(error)),
        }
    }
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
                message: scrub_secrets(message, secrets),
                source: if leaked { None } else { source },
            }
        }
        RepoError::Backend { message, source } => {
            let leaked = leaks(source.as_ref(), secrets);
            RepoError::Backend {
                message: scrub_secrets(message, secrets),
                source: if leaked { None } else { source },
            }
        }
        RepoError::Config { message } => RepoError::Config {
            message: scrub_secrets(message, secrets),
        },
        RepoError::Conflict { reason, message } => RepoError::Conflict {
            reason,
            message: scrub_secrets(message, secrets),
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
            Field::ChunkSize
        );
        assert_eq!(
            check_field(Some("users"), Some("users_username_check")),
            Field::Username
        );
        assert_eq!(
            check_field(
                Some("collection_permissions"),
                Some("collection_permissions_one_grantee")
            ),
            Field::Grantee
        );
        assert_eq!(check_field(None, Some("whatever")), Field::Value);
        assert_eq!(
            check_field(Some("chunks_p13"), Some("chunks_chunk_index_check")),
            Field::ChunkIndex
        );
        assert_eq!(
            check_field(Some("documents"), Some("documents_file_size_check")),
            Field::FileSize
        );
    }

    #[test]
    fn unique_names() {
        assert!(matches!(
            unique_violation(Some("users_email_key")),
            RepoError::AlreadyExists {
                entity: Entity::User,
                field: Field::Email
            }
        ));
        for (index, entity, field) in [
            (
                "documents_collection_content_hash_key",
                Entity::Document,
                Field::ContentHash,
            ),
            ("documents_collection_uri_key", Entity::Document, Field::Uri),
            (
                "chunks_document_chunk_index_key",
                Entity::Chunk,
                Field::ChunkIndex,
            ),
            (
                "chunks_p13_collection_id_document_id_chunk_index_idx",
                Entity::Chunk,
                Field::ChunkIndex,
            ),
            ("chunks_p00_pkey", Entity::Chunk, Field::Id),
        ] {
            match unique_violation(Some(index)) {
                RepoError::AlreadyExists {
                    entity: e,
                    field: f,
                } => {
                    assert_eq!((e, f), (entity, field), "{index}");
                }
                other => panic!("{index}: {other:?}"),
            }
        }
        assert!(matches!(
            unique_violation(Some("chunks_px_pkey")),
            RepoError::AlreadyExists {
                entity: Entity::Row,
                field: Field::Value
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

    /// A dead peer: keepalives, `tcp_user_timeout` or `connect_timeout` ran out
    /// (`Timeout`), or the connection was closed (`ConnectionLost`).
    #[test]
    fn dead_peer_errors_are_unavailable() {
        let lost = |message: &str| {
            map_diesel_error(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new(message.to_owned()),
            ))
        };
        let reason = |e: RepoError| match e {
            RepoError::Unavailable { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        for (message, expected) in [
            (
                "could not receive data from server: Connection timed out",
                UnavailableReason::Timeout,
            ),
            (
                "could not send data to server: Connection timed out",
                UnavailableReason::Timeout,
            ),
            (
                "server closed the connection unexpectedly\n\tThis probably means the server \
                 terminated abnormally",
                UnavailableReason::ConnectionLost,
            ),
        ] {
            assert_eq!(reason(lost(message)), expected, "{message}");
        }
        let connect = map_connection_error(
            ConnectionError::BadConnection(
                "connection to server at \"10.0.0.1\", port 5432 failed: timeout expired".into(),
            ),
            "postgres://h/db",
        );
        assert_eq!(reason(connect), UnavailableReason::Timeout);
    }

    /// The server's messages of the failover and pooler errors, as PostgreSQL 15 and
    /// PgBouncer word them.
    #[test]
    fn failover_and_pooler_messages() {
        use UnavailableReason as R;
        for (text, reason) in [
            (
                "terminating connection due to administrator command",
                R::AdminShutdown,
            ),
            (
                "terminating connection because of crash of another server process",
                R::CrashShutdown,
            ),
            (
                "FATAL:  the database system is starting up",
                R::CannotConnectNow,
            ),
            ("the database system is shutting down", R::CannotConnectNow),
            (
                "the database system is in recovery mode",
                R::CannotConnectNow,
            ),
            (
                "the database system is not yet accepting connections",
                R::CannotConnectNow,
            ),
        ] {
            assert_eq!(
                shutdown_reason(&text.to_ascii_lowercase()),
                Some(reason),
                "{text}"
            );
        }
        assert_eq!(
            shutdown_reason("server closed the connection unexpectedly"),
            None
        );
        for text in [
            "prepared statement \"__diesel_stmt_3\" does not exist",
            "prepared statement \"__diesel_stmt_0\" already exists",
            "bind message supplies 2 parameters, but prepared statement \"__diesel_stmt_1\" requires 1",
            "unnamed prepared statement does not exist",
        ] {
            assert!(is_pooler_statement_error(&text.to_ascii_lowercase()), "{text}");
        }
        assert!(!is_pooler_statement_error(
            "relation \"users\" does not exist"
        ));
        let mapped = classify_by_message(
            DatabaseErrorKind::Unknown,
            Box::new("prepared statement \"__diesel_stmt_3\" does not exist".to_owned()),
        );
        match mapped {
            RepoError::Config { message } => {
                assert!(message.contains("pgbouncer=true"), "{message}");
                assert!(message.contains("DB_PGBOUNCER=true"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let read_only = map_database_error(
            DatabaseErrorKind::ReadOnlyTransaction,
            Box::new("cannot execute INSERT in a read-only transaction".to_owned()),
        );
        assert!(
            matches!(
                &read_only,
                RepoError::Unavailable {
                    reason: R::ReadOnly,
                    ..
                }
            ),
            "{read_only:?}"
        );
        assert!(read_only.is_retryable());
        let admin = map_database_error(
            DatabaseErrorKind::ClosedConnection,
            Box::new("terminating connection due to administrator command".to_owned()),
        );
        assert!(
            matches!(
                admin,
                RepoError::Unavailable {
                    reason: R::AdminShutdown,
                    ..
                }
            ),
            "{admin:?}"
        );
    }
}
