//! The one error type every repository returns, whatever the backend.

use std::error::Error as StdError;
use std::fmt;

/// Result alias used by every repository method.
pub type RepoResult<T> = Result<T, RepoError>;

/// A boxed backend error kept as the `source` of a [`RepoError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a write conflicted with another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConflictReason {
    /// PostgreSQL serialization failure (SQLSTATE 40001).
    Serialization,
    /// PostgreSQL deadlock detected (SQLSTATE 40P01).
    Deadlock,
    /// SQLite could not take the write lock before its busy timeout.
    Busy,
    /// A collection already has an active (pending or processing) operation.
    ActiveOperation,
    /// Another writer changed the row between our read and our write.
    ConcurrentUpdate,
}

impl ConflictReason {
    /// Whether re-running the whole unit of work may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Serialization | Self::Deadlock | Self::Busy)
    }

    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Serialization => "serialization_failure",
            Self::Deadlock => "deadlock",
            Self::Busy => "database_busy",
            Self::ActiveOperation => "active_operation_exists",
            Self::ConcurrentUpdate => "concurrent_update",
        }
    }
}

impl fmt::Display for ConflictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the database could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnavailableReason {
    /// Every pooled connection was in use until the checkout timeout passed.
    PoolExhausted,
    /// No connection could be opened (refused, unknown host, authentication …).
    ConnectionFailed,
    /// An established connection was lost mid-call.
    ConnectionLost,
    /// The server did not answer within a client-side deadline (the libpq deadlines
    /// of the URL, or [`Store::health`](crate::Store::health)'s timeout).
    Timeout,
    /// The statement ran past the server's `statement_timeout` (PostgreSQL 57014).
    StatementTimeout,
    /// A write reached a read-only server: a standby, typically after a failover
    /// (PostgreSQL 25006). The connection is dropped; a retry gets a fresh one.
    ReadOnly,
    /// An administrator shut the server down or terminated the connection
    /// (PostgreSQL 57P01, "terminating connection due to administrator command").
    AdminShutdown,
    /// The server is restarting after a crash of another server process
    /// (PostgreSQL 57P02).
    CrashShutdown,
    /// The server does not accept connections yet or any more: starting up, shutting
    /// down, in recovery (PostgreSQL 57P03).
    CannotConnectNow,
    /// Writes are paused for a database migration (`repoctl live cutover`, see
    /// [`crate::maintenance`]); retry in a few seconds, against the new database once
    /// the application has been switched to it.
    Maintenance,
}

impl UnavailableReason {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PoolExhausted => "pool exhausted",
            Self::ConnectionFailed => "connection failed",
            Self::ConnectionLost => "connection lost",
            Self::Timeout => "timeout",
            Self::StatementTimeout => "statement timeout",
            Self::ReadOnly => "read only",
            Self::AdminShutdown => "admin shutdown",
            Self::CrashShutdown => "crash shutdown",
            Self::CannotConnectNow => "cannot connect now",
            Self::Maintenance => "maintenance",
        }
    }

    /// Whether a connection that reported this is unusable and must be dropped from
    /// the pool instead of being handed out again (lost, or attached to a server
    /// that is going away or can no longer take writes).
    pub fn breaks_connection(self) -> bool {
        matches!(
            self,
            Self::ConnectionLost
                | Self::ReadOnly
                | Self::AdminShutdown
                | Self::CrashShutdown
                | Self::CannotConnectNow
        )
    }
}

impl fmt::Display for UnavailableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure a repository call can report, identical on SQLite and PostgreSQL.
///
/// Messages never contain a password from a database URL nor an API-key secret or
/// hash: backends redact URLs before building a message, and key material is never
/// formatted into one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The entity does not exist.
    #[error("{entity} not found: {key}")]
    NotFound {
        /// Entity kind, e.g. `"user"`.
        entity: &'static str,
        /// The key that was looked up (never a secret).
        key: String,
    },

    /// A unique rule was violated.
    #[error("{entity} already exists with this {field}")]
    AlreadyExists {
        /// Entity kind, e.g. `"user"`.
        entity: &'static str,
        /// The field whose value is taken, e.g. `"email"`.
        field: &'static str,
    },

    /// The entity exists, but the caller may not use it in that way.
    #[error("access denied: {reason}")]
    AccessDenied {
        /// What was refused.
        reason: String,
    },

    /// Input broke a rule of the domain.
    #[error("invalid {field}: {message}")]
    Validation {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// A state machine refused the transition.
    #[error("cannot move from {current} to {attempted}")]
    InvalidState {
        /// The state the entity is in.
        current: String,
        /// The state (or action) that was attempted.
        attempted: String,
    },

    /// A write conflicted with another one and retrying did not help.
    #[error("conflict ({reason}): {message}")]
    Conflict {
        /// Why it conflicted.
        reason: ConflictReason,
        /// Human-readable detail.
        message: String,
    },

    /// The database could not be reached; the caller may retry.
    #[error("database unavailable ({reason}): {message}")]
    Unavailable {
        /// What went wrong.
        reason: UnavailableReason,
        /// Human-readable detail (URLs redacted).
        message: String,
        /// The driver or pool error.
        #[source]
        source: Option<BoxError>,
    },

    /// The configuration is unusable (bad URL, unsupported scheme, bad setting).
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong (URLs redacted).
        message: String,
    },

    /// Any other backend error, kept as the source.
    #[error("database error: {message}")]
    Backend {
        /// Human-readable detail.
        message: String,
        /// The original error.
        #[source]
        source: Option<BoxError>,
    },
}

impl RepoError {
    /// Whether the caller may reasonably retry the same call later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Conflict { reason, .. } => {
                reason.is_transient() || *reason == ConflictReason::ConcurrentUpdate
            }
            _ => false,
        }
    }

    /// Shorthand for [`RepoError::NotFound`].
    pub fn not_found(entity: &'static str, key: impl fmt::Display) -> Self {
        Self::NotFound {
            entity,
            key: key.to_string(),
        }
    }

    /// Shorthand for [`RepoError::Validation`].
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }

    /// Shorthand for [`RepoError::InvalidState`].
    pub fn invalid_state(current: impl fmt::Display, attempted: impl fmt::Display) -> Self {
        Self::InvalidState {
            current: current.to_string(),
            attempted: attempted.to_string(),
        }
    }

    /// Shorthand for [`RepoError::AccessDenied`].
    pub fn access_denied(reason: impl Into<String>) -> Self {
        Self::AccessDenied {
            reason: reason.into(),
        }
    }

    /// Shorthand for [`RepoError::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::Config {
            message: message.into(),
        }
    }

    /// Shorthand for [`RepoError::Conflict`].
    pub fn conflict(reason: ConflictReason, message: impl Into<String>) -> Self {
        Self::Conflict {
            reason,
            message: message.into(),
        }
    }

    /// Prefixes the message of a `Validation` error with the batch position of the
    /// offending item (`item 17: …`); other errors are returned unchanged.
    pub fn for_item(self, index: usize) -> Self {
        match self {
            Self::Validation { field, message } => Self::Validation {
                field,
                message: format!("item {index}: {message}"),
            },
            other => other,
        }
    }

    /// Whether a unit of work that failed with this error should be run again.
    pub fn is_transient_conflict(&self) -> bool {
        matches!(self, Self::Conflict { reason, .. } if reason.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_classification() {
        let busy = RepoError::conflict(ConflictReason::Busy, "locked");
        assert!(busy.is_retryable());
        assert!(busy.is_transient_conflict());
        let active = RepoError::conflict(ConflictReason::ActiveOperation, "x");
        assert!(!active.is_retryable());
        assert!(!RepoError::not_found("user", 1).is_retryable());
        let down = RepoError::Unavailable {
            reason: UnavailableReason::PoolExhausted,
            message: "x".into(),
            source: None,
        };
        assert!(down.is_retryable());
        assert!(down.to_string().contains("pool exhausted"));
    }

    #[test]
    fn unavailable_reasons_have_distinct_names_and_are_retryable() {
        let all = [
            UnavailableReason::PoolExhausted,
            UnavailableReason::ConnectionFailed,
            UnavailableReason::ConnectionLost,
            UnavailableReason::Timeout,
            UnavailableReason::StatementTimeout,
            UnavailableReason::ReadOnly,
            UnavailableReason::AdminShutdown,
            UnavailableReason::CrashShutdown,
            UnavailableReason::CannotConnectNow,
            UnavailableReason::Maintenance,
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), all.len());
        for reason in all {
            let error = RepoError::Unavailable {
                reason,
                message: String::new(),
                source: None,
            };
            assert!(error.is_retryable(), "{reason}");
        }
        assert!(UnavailableReason::ReadOnly.breaks_connection());
        assert!(!UnavailableReason::StatementTimeout.breaks_connection());
        assert!(!UnavailableReason::PoolExhausted.breaks_connection());
    }
}
