//! The one error type every repository returns, whatever the backend, and the
//! vocabulary it is matched on: [`Entity`], [`Field`], [`State`] and [`Attempt`].
//!
//! Applications match on variants, never on message text:
//!
//! ```
//! use repo_core::{Entity, Field, RepoError};
//!
//! fn describe(error: &RepoError) -> String {
//!     match error {
//!         RepoError::AlreadyExists { entity: Entity::User, field: Field::Email } => {
//!             "that email is taken".to_owned()
//!         }
//!         RepoError::Validation { field, item: Some(i), .. } => format!("item {i}: bad {field}"),
//!         other => format!("{} ({})", other.code(), other.http_status()),
//!     }
//! }
//!
//! let taken = RepoError::AlreadyExists { entity: Entity::User, field: Field::Email };
//! assert_eq!(describe(&taken), "that email is taken");
//! assert_eq!(taken.code(), "already_exists");
//! assert_eq!(taken.http_status(), 409);
//! ```

use crate::enums::{CollectionStatus, OperationStatus, SyncMode, UnknownValue};
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// Result alias used by every repository method.
pub type RepoResult<T> = Result<T, RepoError>;

/// A boxed backend error kept as the `source` of a [`RepoError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

pub use crate::names::{Entity, Field};

/// The state an entity was in when a call refused to change it
/// ([`RepoError::InvalidState`]'s `current`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// A collection's status.
    Collection(CollectionStatus),
    /// An operation's status.
    Operation(OperationStatus),
    /// A collection's sync mode (a `one_time` collection has no sync to pause).
    SyncMode(SyncMode),
    /// A user who still owns collections (a restricting delete is refused).
    OwnsCollections,
    /// A collection that already has an active operation (an application's unit of
    /// work that starts one refuses).
    HasActiveOperation,
    /// A unit of work of this store is open on the calling thread.
    InUnitOfWork,
}

impl State {
    /// The stable lowercase name: the status's own spelling for the status variants
    /// (`"completed"`), else `owns_collections`, `has_active_operation`,
    /// `in_unit_of_work`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collection(s) => s.as_str(),
            Self::Operation(s) => s.as_str(),
            Self::SyncMode(s) => s.as_str(),
            Self::OwnsCollections => "owns_collections",
            Self::HasActiveOperation => "has_active_operation",
            Self::InUnitOfWork => "in_unit_of_work",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUnitOfWork => f.write_str("inside a unit of work of this store on this thread"),
            other => f.write_str(other.as_str()),
        }
    }
}

impl From<CollectionStatus> for State {
    fn from(status: CollectionStatus) -> Self {
        Self::Collection(status)
    }
}

impl From<OperationStatus> for State {
    fn from(status: OperationStatus) -> Self {
        Self::Operation(status)
    }
}

impl From<SyncMode> for State {
    fn from(mode: SyncMode) -> Self {
        Self::SyncMode(mode)
    }
}

/// What a refused call tried ([`RepoError::InvalidState`]'s `attempted`): a move to
/// another status, or an action the current state forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Attempt {
    /// Moving a collection to this status.
    Collection(CollectionStatus),
    /// Moving an operation to this status (`cancel` is a move to `cancelled`).
    Operation(OperationStatus),
    /// Deleting the entity.
    Delete,
    /// Pausing a collection's sync.
    PauseSync,
    /// Resuming a collection's sync.
    ResumeSync,
    /// Starting an operation on a collection.
    StartOperation,
    /// A call on the store itself where the unit of work's handle must be used.
    StoreCall,
}

impl Attempt {
    /// The stable lowercase name: the status's own spelling for the status variants
    /// (`"cancelled"`), else `delete`, `pause_sync`, `resume_sync`,
    /// `start_operation`, `store_call`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collection(s) => s.as_str(),
            Self::Operation(s) => s.as_str(),
            Self::Delete => "delete",
            Self::PauseSync => "pause_sync",
            Self::ResumeSync => "resume_sync",
            Self::StartOperation => "start_operation",
            Self::StoreCall => "store_call",
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StoreCall => f.write_str(
                "a call on the store itself; inside `store.transaction(|tx| …)` call through \
                 `tx` (a call on the store would wait for the transaction's lock or run \
                 outside the transaction)",
            ),
            other => f.write_str(other.as_str()),
        }
    }
}

impl From<CollectionStatus> for Attempt {
    fn from(status: CollectionStatus) -> Self {
        Self::Collection(status)
    }
}

impl From<OperationStatus> for Attempt {
    fn from(status: OperationStatus) -> Self {
        Self::Operation(status)
    }
}

/// `item 17: ` for the batch position of an error, nothing outside a batch.
struct ItemPrefix(Option<usize>);

impl fmt::Display for ItemPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(index) => write!(f, "item {index}: "),
            None => Ok(()),
        }
    }
}
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
/// Match on the variants and their typed fields ([`Entity`], [`Field`], [`State`],
/// [`Attempt`], the batch `item`); [`code`](Self::code) gives a stable machine code
/// and [`http_status`](Self::http_status) the HTTP status a service answers with.
///
/// Messages never contain a password from a database URL nor an API-key secret or
/// hash: backends redact URLs before building a message, and key material is never
/// formatted into one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The entity does not exist.
    #[error("{entity} not found: {}{key}", ItemPrefix(*.item))]
    NotFound {
        /// What kind of record was looked up.
        entity: Entity,
        /// The key that was looked up (never a secret).
        key: String,
        /// The position in the batch of the item that referred to it, when a batch
        /// call failed (`item 7: ` in the message).
        item: Option<usize>,
    },

    /// A unique rule was violated.
    #[error("{entity} already exists with this {field}")]
    AlreadyExists {
        /// What kind of record holds the value.
        entity: Entity,
        /// The field whose value is taken, e.g. [`Field::Email`].
        field: Field,
    },

    /// The entity exists, but the caller may not use it in that way.
    #[error("access denied: {reason}")]
    AccessDenied {
        /// What was refused.
        reason: String,
    },

    /// Input broke a rule of the domain.
    #[error("invalid {field}: {}{message}", ItemPrefix(*.item))]
    Validation {
        /// The offending field.
        field: Field,
        /// What is wrong with it (without the batch position, which is `item`).
        message: String,
        /// The position of the offending item when a batch call refused
        /// (`item 17: ` in the message); `None` outside a batch.
        item: Option<usize>,
    },

    /// A state machine refused the transition.
    #[error("cannot move from {current} to {attempted}")]
    InvalidState {
        /// The state the entity is in.
        current: State,
        /// The state (or action) that was attempted.
        attempted: Attempt,
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
    /// Every machine code [`code`](Self::code) can return, one per variant.
    pub const CODES: &'static [&'static str] = &[
        "not_found",
        "already_exists",
        "access_denied",
        "validation_failed",
        "invalid_state",
        "conflict",
        "unavailable",
        "config",
        "backend",
    ];

    /// A stable machine code, one per variant, for API responses and metrics.
    ///
    /// These strings are part of the public contract: they do not change between
    /// releases, and a new variant gets a new code. The finer reason of a conflict or
    /// an outage is in the variant's `reason` ([`ConflictReason::as_str`],
    /// [`UnavailableReason::as_str`]).
    ///
    /// | variant | code |
    /// |---|---|
    /// | `NotFound` | `not_found` |
    /// | `AlreadyExists` | `already_exists` |
    /// | `AccessDenied` | `access_denied` |
    /// | `Validation` | `validation_failed` |
    /// | `InvalidState` | `invalid_state` |
    /// | `Conflict` | `conflict` |
    /// | `Unavailable` | `unavailable` |
    /// | `Config` | `config` |
    /// | `Backend` | `backend` |
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::AccessDenied { .. } => "access_denied",
            Self::Validation { .. } => "validation_failed",
            Self::InvalidState { .. } => "invalid_state",
            Self::Conflict { .. } => "conflict",
            Self::Unavailable { .. } => "unavailable",
            Self::Config { .. } => "config",
            Self::Backend { .. } => "backend",
        }
    }

    /// The HTTP status a service answers this error with (a `u16`, so no HTTP crate
    /// is needed). The mapping is stable:
    ///
    /// | variant | status |
    /// |---|---|
    /// | `NotFound` | 404 Not Found |
    /// | `AlreadyExists` | 409 Conflict |
    /// | `AccessDenied` | 403 Forbidden |
    /// | `Validation` | 422 Unprocessable Content |
    /// | `InvalidState` | 409 Conflict |
    /// | `Conflict { reason: ActiveOperation }` | 409 Conflict |
    /// | `Conflict` that [`is_retryable`](Self::is_retryable) (serialization failure, deadlock, busy, concurrent update) | 503 Service Unavailable, with [`retry_after`](Self::retry_after) |
    /// | `Unavailable` | 503 Service Unavailable, with [`retry_after`](Self::retry_after) |
    /// | `Config` | 500 Internal Server Error |
    /// | `Backend` | 500 Internal Server Error |
    ///
    /// A 503 tells the client that the same request may succeed later; a 409 that it
    /// will not until the data changes.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::AlreadyExists { .. } | Self::InvalidState { .. } => 409,
            Self::AccessDenied { .. } => 403,
            Self::Validation { .. } => 422,
            Self::Conflict { .. } if self.is_retryable() => 503,
            Self::Conflict { .. } => 409,
            Self::Unavailable { .. } => 503,
            Self::Config { .. } | Self::Backend { .. } => 500,
        }
    }

    /// How long a client should wait before retrying, for a `Retry-After` header:
    /// one second for every retryable error (those answered with 503 by
    /// [`http_status`](Self::http_status)), `None` otherwise. A hint, not a promise.
    pub fn retry_after(&self) -> Option<Duration> {
        self.is_retryable().then_some(Duration::from_secs(1))
    }

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

    /// Shorthand for [`RepoError::NotFound`] outside a batch.
    pub fn not_found(entity: Entity, key: impl fmt::Display) -> Self {
        Self::NotFound {
            entity,
            key: key.to_string(),
            item: None,
        }
    }

    /// Shorthand for [`RepoError::AlreadyExists`].
    pub fn already_exists(entity: Entity, field: Field) -> Self {
        Self::AlreadyExists { entity, field }
    }

    /// Shorthand for [`RepoError::Validation`] outside a batch.
    pub fn validation(field: Field, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
            item: None,
        }
    }

    /// Shorthand for [`RepoError::InvalidState`]; takes the status enums directly
    /// (`invalid_state(current.status, OperationStatus::Cancelled)`).
    pub fn invalid_state(current: impl Into<State>, attempted: impl Into<Attempt>) -> Self {
        Self::InvalidState {
            current: current.into(),
            attempted: attempted.into(),
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

    /// Sets the batch position of the offending item (`item` of a `Validation` or
    /// `NotFound`, shown as `item 17: …` in the message); other errors are returned
    /// unchanged.
    pub fn for_item(self, index: usize) -> Self {
        match self {
            Self::Validation { field, message, .. } => Self::Validation {
                field,
                message,
                item: Some(index),
            },
            Self::NotFound { entity, key, .. } => Self::NotFound {
                entity,
                key,
                item: Some(index),
            },
            other => other,
        }
    }

    /// The batch position of the offending item, when a batch call refused one.
    pub fn item(&self) -> Option<usize> {
        match self {
            Self::Validation { item, .. } | Self::NotFound { item, .. } => *item,
            _ => None,
        }
    }

    /// Whether a unit of work that failed with this error should be run again.
    pub fn is_transient_conflict(&self) -> bool {
        matches!(self, Self::Conflict { reason, .. } if reason.is_transient())
    }
}

/// A stored name that is none of an enum's values is a `Validation` error naming the
/// field.
impl From<UnknownValue> for RepoError {
    fn from(e: UnknownValue) -> Self {
        RepoError::validation(e.field, format!("unknown value {:?}", e.value))
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
        assert!(!RepoError::not_found(Entity::User, 1).is_retryable());
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

    /// One of every variant (conflicts and outages with each reason).
    fn every_variant() -> Vec<RepoError> {
        let mut all = vec![
            RepoError::not_found(Entity::User, 1),
            RepoError::already_exists(Entity::User, Field::Email),
            RepoError::access_denied("no"),
            RepoError::validation(Field::Email, "bad"),
            RepoError::invalid_state(OperationStatus::Completed, OperationStatus::Cancelled),
            RepoError::config("bad url"),
            RepoError::Backend {
                message: "x".into(),
                source: None,
            },
        ];
        all.extend(
            [
                ConflictReason::Serialization,
                ConflictReason::Deadlock,
                ConflictReason::Busy,
                ConflictReason::ActiveOperation,
                ConflictReason::ConcurrentUpdate,
            ]
            .map(|reason| RepoError::conflict(reason, "x")),
        );
        all.extend(
            [
                UnavailableReason::PoolExhausted,
                UnavailableReason::ConnectionFailed,
                UnavailableReason::ConnectionLost,
                UnavailableReason::Timeout,
                UnavailableReason::StatementTimeout,
                UnavailableReason::ReadOnly,
                UnavailableReason::AdminShutdown,
                UnavailableReason::CrashShutdown,
                UnavailableReason::CannotConnectNow,
            ]
            .map(|reason| RepoError::Unavailable {
                reason,
                message: String::new(),
                source: None,
            }),
        );
        all
    }

    /// The documented codes and statuses, variant by variant: these are a stable
    /// contract, so a change here is a breaking change.
    #[test]
    fn codes_and_http_statuses_are_the_documented_ones() {
        let expected = |e: &RepoError| -> (&str, u16) {
            match e {
                RepoError::NotFound { .. } => ("not_found", 404),
                RepoError::AlreadyExists { .. } => ("already_exists", 409),
                RepoError::AccessDenied { .. } => ("access_denied", 403),
                RepoError::Validation { .. } => ("validation_failed", 422),
                RepoError::InvalidState { .. } => ("invalid_state", 409),
                RepoError::Conflict {
                    reason: ConflictReason::ActiveOperation,
                    ..
                } => ("conflict", 409),
                RepoError::Conflict { .. } => ("conflict", 503),
                RepoError::Unavailable { .. } => ("unavailable", 503),
                RepoError::Config { .. } => ("config", 500),
                RepoError::Backend { .. } => ("backend", 500),
            }
        };
        for e in every_variant() {
            assert_eq!((e.code(), e.http_status()), expected(&e), "{e:?}");
            assert!(RepoError::CODES.contains(&e.code()), "{e:?}");
            assert_eq!(
                e.retry_after().is_some(),
                e.http_status() == 503,
                "a 503 and only a 503 carries a retry hint: {e:?}"
            );
        }
    }

    #[test]
    fn codes_are_distinct_per_variant_and_cover_every_variant() {
        let codes: std::collections::BTreeSet<_> =
            every_variant().iter().map(RepoError::code).collect();
        assert_eq!(codes.len(), 9, "one code per variant: {codes:?}");
        let listed: std::collections::BTreeSet<_> = RepoError::CODES.iter().copied().collect();
        assert_eq!(codes, listed);
        for code in codes {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn entity_and_field_names_are_distinct_and_round_trip() {
        for (names, count) in [
            (
                Entity::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                Entity::ALL.len(),
            ),
            (
                Field::ALL.iter().map(|f| f.as_str()).collect(),
                Field::ALL.len(),
            ),
        ] {
            let distinct: std::collections::BTreeSet<_> = names.iter().collect();
            assert_eq!(distinct.len(), count);
            for name in names {
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{name}"
                );
            }
        }
        for e in Entity::ALL {
            assert_eq!(Entity::from_name(e.as_str()), Some(*e));
            assert_eq!(e.to_string(), e.as_str());
        }
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.as_str()), Some(*f));
        }
        assert_eq!(Field::from_name("name_folded"), Some(Field::NameFolded));
        assert_eq!(Field::from_name("no_such_column"), None);
        assert_eq!(
            serde_json::to_value(Field::ContentHash).unwrap(),
            serde_json::json!("content_hash")
        );
        assert_eq!(
            serde_json::to_value(Entity::ApiKey).unwrap(),
            serde_json::json!("api_key")
        );
    }

    /// The messages keep the text they had when the fields were strings.
    #[test]
    fn messages_keep_their_wording() {
        assert_eq!(
            RepoError::already_exists(Entity::User, Field::Email).to_string(),
            "user already exists with this email"
        );
        assert_eq!(
            RepoError::validation(Field::Uri, "taken")
                .for_item(7)
                .to_string(),
            "invalid uri: item 7: taken"
        );
        assert_eq!(
            RepoError::not_found(Entity::Collection, "abc")
                .for_item(3)
                .to_string(),
            "collection not found: item 3: abc"
        );
        assert_eq!(
            RepoError::invalid_state(OperationStatus::Completed, OperationStatus::Cancelled)
                .to_string(),
            "cannot move from completed to cancelled"
        );
        assert_eq!(
            RepoError::invalid_state(State::OwnsCollections, Attempt::Delete).to_string(),
            "cannot move from owns_collections to delete"
        );
        assert_eq!(
            RepoError::invalid_state(SyncMode::OneTime, Attempt::PauseSync).to_string(),
            "cannot move from one_time to pause_sync"
        );
    }

    #[test]
    fn for_item_sets_the_index_of_validation_and_not_found_only() {
        let e = RepoError::validation(Field::ChunkIndex, "repeated").for_item(4);
        assert!(matches!(
            e,
            RepoError::Validation {
                field: Field::ChunkIndex,
                item: Some(4),
                ..
            }
        ));
        assert_eq!(e.item(), Some(4));
        assert_eq!(RepoError::validation(Field::Uri, "x").item(), None);
        assert_eq!(
            RepoError::not_found(Entity::Document, "d")
                .for_item(2)
                .item(),
            Some(2)
        );
        let other = RepoError::already_exists(Entity::Chunk, Field::ChunkIndex).for_item(1);
        assert_eq!(other.item(), None);
        assert!(matches!(other, RepoError::AlreadyExists { .. }));
    }

    #[test]
    fn states_name_the_status_enums() {
        let e = RepoError::invalid_state(CollectionStatus::Pending, CollectionStatus::Ready);
        assert!(matches!(
            e,
            RepoError::InvalidState {
                current: State::Collection(CollectionStatus::Pending),
                attempted: Attempt::Collection(CollectionStatus::Ready),
            }
        ));
        assert_eq!(State::Operation(OperationStatus::Failed).as_str(), "failed");
        assert_eq!(Attempt::StoreCall.as_str(), "store_call");
        assert_eq!(State::InUnitOfWork.as_str(), "in_unit_of_work");
        assert_eq!(
            serde_json::to_value(State::Operation(OperationStatus::Completed)).unwrap(),
            serde_json::json!({"operation": "completed"})
        );
        assert_eq!(
            serde_json::to_value(Attempt::PauseSync).unwrap(),
            serde_json::json!("pause_sync")
        );
    }
}
