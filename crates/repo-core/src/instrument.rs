//! A `tracing` span per repository call ([`Instrumented`], [`traced`]), the same on
//! every backend. The slow-query log ([`SlowQueryLog`], module `slow_query`) and the
//! pool watch ([`PoolWatch`], [`ConnectionErrors`], module `pool_watch`) are
//! re-exported here, so that `repo_core::instrument` names all the observability
//! the backends wire up.
//!
//! Nothing here ever records an argument of a repository call: arguments carry
//! passwords' hashes, API-key secrets and user text. A span names the backend, the
//! repository and the method, and records how long the call took and its outcome
//! (`ok` or the error kind).
//!
//! ## Span fields
//!
//! Each call opens a `DEBUG` span named `repo` (target `repo_core::instrument`), so a
//! subscriber filtering at `INFO` pays nothing for it; enable it with a filter such as
//! `RUST_LOG=info,repo_core::instrument=debug`. The attributes follow OpenTelemetry's
//! database conventions, so an OpenTelemetry layer exports them as they are:
//!
//! | field | value |
//! |---|---|
//! | `db.system.name` | `sqlite` / `postgresql` |
//! | `db.collection.name` | the table: `users`, `api_keys`, `collections`, `collection_permissions` (grants), `operations`, `documents`, `chunks`; absent for the store's own calls |
//! | `db.operation.name` | the method, e.g. `create`, `verify`, `lock_collection`, `transaction`, `health` |
//! | `elapsed_us` | wall time of the call in microseconds (recorded when it returns) |
//! | `outcome` | `ok`, or the error kind (see [`error_kind`]) |
//!
//! Events logged during the call (slow queries, pool warnings) carry the span as
//! context. With `tracing_subscriber::fmt().with_span_events(FmtSpan::CLOSE)` every
//! call is also printed once when it ends.

use crate::access::Principal;
use crate::api_key::{ApiKey, ApiKeyRepository, CreatedApiKey, NewApiKey, VerifiedKey};
use crate::backend::BackendKind;
use crate::chunk::{Chunk, ChunkRepository, NewChunk, SearchCursor, SearchPage};
use crate::collection::{
    Collection, CollectionPatch, CollectionPermission, CollectionRepository, CollectionStats,
    Grantee, NewCollection, SyncRun,
};
use crate::document::{
    Document, DocumentFilter, DocumentRepository, DocumentStats, DocumentStatusUpdate, NewDocument,
    Registered,
};
use crate::enums::{AccessLevel, CollectionStatus, OperationStatus};
use crate::error::{RepoError, RepoResult};
use crate::ids::{ApiKeyId, CollectionId, DocumentId, OperationUuid, UserId};
use crate::operation::{NewOperation, Operation, OperationFilter, OperationRepository};
use crate::page::{CursorPage, CursorRequest, Page, PageRequest};
use crate::search::SearchQuery;
use crate::store::{Repositories, Transaction};
use crate::time::Timestamp;
use crate::user::{DeleteMode, NewUser, User, UserFilter, UserPatch, UserRepository};
use serde_json::Value;
use std::fmt;
use std::time::Instant;
use tracing::field::Empty;

pub use crate::pool_watch::{
    one_line, ConnectionErrors, ConnectionFailure, PoolStatus, PoolWatch, POOL_WARNING_INTERVAL,
};
pub use crate::slow_query::{SlowQueryLog, SlowStatement};

/// The stable name of an error's variant, as recorded in the `outcome` span field:
/// [`RepoError::code`] (`not_found`, `already_exists`, `access_denied`,
/// `validation_failed`, `invalid_state`, `conflict`, `unavailable`, `config` or
/// `backend`), so logs, metrics and API responses use one vocabulary.
pub fn error_kind(error: &RepoError) -> &'static str {
    error.code()
}

/// Runs `call` inside a `repo` span for `backend`/`repository`/`method` and records
/// its duration and outcome; see the [module docs](self) for the fields. With the
/// `metrics` feature it also records [`db.client.operation.duration`](crate::metrics).
///
/// When no subscriber wants the span (and without the `metrics` feature), this is one
/// cached interest check and a direct call: no clock is read and nothing is allocated.
pub fn traced<T>(
    backend: BackendKind,
    repository: &'static str,
    method: &'static str,
    call: impl FnOnce() -> RepoResult<T>,
) -> RepoResult<T> {
    let table = crate::metrics::table_of(repository, method);
    let span = tracing::debug_span!(
        "repo",
        db.system.name = backend.db_system_name(),
        db.collection.name = table,
        db.operation.name = method,
        elapsed_us = Empty,
        outcome = Empty,
    );
    if span.is_disabled() && !crate::metrics::ENABLED {
        return call();
    }
    let started = Instant::now();
    let result = span.in_scope(call);
    let elapsed = started.elapsed();
    let outcome = crate::metrics::outcome(&result);
    if !span.is_disabled() {
        span.record(
            "elapsed_us",
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
        span.record("outcome", outcome);
    }
    crate::metrics::record_operation(backend, table, method, outcome, elapsed);
    result
}

/// Wraps a set of repositories so that every call runs in a [`traced`] span.
///
/// Both backends wrap their pooled repositories and the repositories of each unit of
/// work in it, so the spans look the same on SQLite and PostgreSQL. It dereferences
/// to the wrapped value, so backend code keeps reaching its own fields.
pub struct Instrumented<R> {
    backend: BackendKind,
    inner: R,
}

impl<R> Instrumented<R> {
    /// Wraps `inner`, naming `backend` in every span.
    pub fn new(backend: BackendKind, inner: R) -> Self {
        Self { backend, inner }
    }

    /// The wrapped repositories.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Runs `call` in a span of this backend; see [`traced`].
    pub fn traced<T>(
        &self,
        repository: &'static str,
        method: &'static str,
        call: impl FnOnce() -> RepoResult<T>,
    ) -> RepoResult<T> {
        traced(self.backend, repository, method, call)
    }
}

impl<R> std::ops::Deref for Instrumented<R> {
    type Target = R;

    fn deref(&self) -> &R {
        &self.inner
    }
}

impl<R: fmt::Debug> fmt::Debug for Instrumented<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl<R: Repositories + Send + Sync> Repositories for Instrumented<R> {
    fn users(&self) -> &dyn UserRepository {
        self
    }

    fn api_keys(&self) -> &dyn ApiKeyRepository {
        self
    }

    fn collections(&self) -> &dyn CollectionRepository {
        self
    }

    fn operations(&self) -> &dyn OperationRepository {
        self
    }

    fn documents(&self) -> &dyn DocumentRepository {
        self
    }

    fn chunks(&self) -> &dyn ChunkRepository {
        self
    }
}

impl<R: Transaction + Send + Sync> Transaction for Instrumented<R> {
    fn lock_collection(&self, id: CollectionId) -> RepoResult<Collection> {
        self.traced("collections", "lock_collection", || {
            self.inner.lock_collection(id)
        })
    }
}

/// Implements a repository trait for [`Instrumented`] by forwarding each method to
/// the wrapped repositories inside a span. The signatures are repeated from the
/// trait; the compiler rejects any that drift from it.
macro_rules! instrument_repository {
    ($trait:ident via $accessor:ident {
        $( fn $method:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*
    }) => {
        impl<R: Repositories + Send + Sync> $trait for Instrumented<R> {
            $(
                fn $method(&self $(, $arg: $ty)*) -> $ret {
                    self.traced(stringify!($accessor), stringify!($method), || {
                        self.inner.$accessor().$method($($arg),*)
                    })
                }
            )*
        }
    };
}

instrument_repository!(UserRepository via users {
    fn create(&self, new: &NewUser) -> RepoResult<User>;
    fn get(&self, id: UserId) -> RepoResult<User>;
    fn get_by_username(&self, username: &str) -> RepoResult<User>;
    fn get_by_email(&self, email: &str) -> RepoResult<User>;
    fn update(&self, id: UserId, patch: &UserPatch) -> RepoResult<User>;
    fn delete(&self, id: UserId, mode: DeleteMode) -> RepoResult<()>;
    fn list(&self, filter: UserFilter, page: PageRequest) -> RepoResult<Page<User>>;
    fn list_by_cursor(&self, filter: UserFilter, page: &CursorRequest)
        -> RepoResult<CursorPage<User>>;
    fn count(&self, filter: UserFilter) -> RepoResult<u64>;
    fn record_login(&self, id: UserId) -> RepoResult<User>;
});

instrument_repository!(ApiKeyRepository via api_keys {
    fn create(&self, new: &NewApiKey) -> RepoResult<CreatedApiKey>;
    fn get(&self, id: ApiKeyId) -> RepoResult<ApiKey>;
    fn list_for_user(&self, user_id: UserId) -> RepoResult<Vec<ApiKey>>;
    fn verify(&self, secret: &str) -> RepoResult<Option<VerifiedKey>>;
    fn revoke(&self, id: ApiKeyId) -> RepoResult<ApiKey>;
    fn delete(&self, id: ApiKeyId) -> RepoResult<()>;
    fn purge_expired(&self) -> RepoResult<u64>;
    fn count_active(&self, user_id: UserId) -> RepoResult<u64>;
});

instrument_repository!(CollectionRepository via collections {
    fn create(&self, new: &NewCollection) -> RepoResult<Collection>;
    fn get(&self, id: CollectionId) -> RepoResult<Collection>;
    fn get_by_name(&self, name: &str) -> RepoResult<Collection>;
    fn get_with_access(&self, id: CollectionId, principal: Principal, needed: AccessLevel)
        -> RepoResult<Collection>;
    fn access_level(&self, id: CollectionId, principal: Principal)
        -> RepoResult<Option<AccessLevel>>;
    fn list_visible(&self, principal: Principal, page: PageRequest)
        -> RepoResult<Page<Collection>>;
    fn list_visible_by_cursor(&self, principal: Principal, page: &CursorRequest)
        -> RepoResult<CursorPage<Collection>>;
    fn update(&self, id: CollectionId, patch: &CollectionPatch) -> RepoResult<Collection>;
    fn rename(&self, id: CollectionId, new_name: &str) -> RepoResult<Collection>;
    fn update_status(&self, id: CollectionId, status: CollectionStatus, message: Option<&str>)
        -> RepoResult<Collection>;
    fn update_stats(&self, id: CollectionId, stats: CollectionStats) -> RepoResult<Collection>;
    fn delete(&self, id: CollectionId, actor: Principal) -> RepoResult<()>;
    fn due_for_sync(&self, now: Timestamp, limit: u32) -> RepoResult<Vec<Collection>>;
    fn pause_sync(&self, id: CollectionId) -> RepoResult<Collection>;
    fn resume_sync(&self, id: CollectionId, next_run_at: Timestamp) -> RepoResult<Collection>;
    fn record_sync_run(&self, id: CollectionId, run: &SyncRun) -> RepoResult<Collection>;
    fn grant(&self, id: CollectionId, grantee: Grantee, level: AccessLevel)
        -> RepoResult<CollectionPermission>;
    fn revoke_grant(&self, id: CollectionId, grantee: Grantee) -> RepoResult<bool>;
    fn list_grants(&self, id: CollectionId) -> RepoResult<Vec<CollectionPermission>>;
});

instrument_repository!(OperationRepository via operations {
    fn create(&self, new: &NewOperation) -> RepoResult<Operation>;
    fn get_by_task_id(&self, task_id: &str) -> RepoResult<Operation>;
    fn get(&self, uuid: OperationUuid) -> RepoResult<Operation>;
    fn get_with_access(&self, uuid: OperationUuid, principal: Principal, needed: AccessLevel)
        -> RepoResult<Operation>;
    fn transition(&self, uuid: OperationUuid, to: OperationStatus, error_message: Option<&str>)
        -> RepoResult<Operation>;
    fn cancel(&self, uuid: OperationUuid, actor: Principal) -> RepoResult<Operation>;
    fn set_task_id(&self, uuid: OperationUuid, task_id: &str) -> RepoResult<Operation>;
    fn list_for_collection(&self, collection_id: CollectionId, filter: &OperationFilter,
        page: PageRequest) -> RepoResult<Page<Operation>>;
    fn list_for_user(&self, user_id: UserId, filter: &OperationFilter, page: PageRequest)
        -> RepoResult<Page<Operation>>;
    fn list_for_collection_by_cursor(&self, collection_id: CollectionId,
        filter: &OperationFilter, page: &CursorRequest) -> RepoResult<CursorPage<Operation>>;
    fn list_for_user_by_cursor(&self, user_id: UserId, filter: &OperationFilter,
        page: &CursorRequest) -> RepoResult<CursorPage<Operation>>;
    fn active_for_collection(&self, collection_id: CollectionId) -> RepoResult<Vec<Operation>>;
    fn stuck(&self, older_than: Timestamp) -> RepoResult<Vec<Operation>>;
    fn mark_failed_many(&self, uuids: &[OperationUuid], message: &str) -> RepoResult<u64>;
    fn merge_meta(&self, uuid: OperationUuid, patch: &Value) -> RepoResult<Operation>;
});

instrument_repository!(DocumentRepository via documents {
    fn register(&self, new: &NewDocument) -> RepoResult<Registered>;
    fn register_many(&self, batch: &[NewDocument]) -> RepoResult<Vec<Registered>>;
    fn get(&self, id: DocumentId) -> RepoResult<Document>;
    fn get_by_hash(&self, collection_id: CollectionId, content_hash: &str)
        -> RepoResult<Document>;
    fn get_by_uri(&self, collection_id: CollectionId, uri: &str) -> RepoResult<Document>;
    fn list_by_collection(&self, collection_id: CollectionId, filter: &DocumentFilter,
        page: PageRequest) -> RepoResult<Page<Document>>;
    fn find_by_meta(&self, collection_id: CollectionId, filter: &Value, page: PageRequest)
        -> RepoResult<Page<Document>>;
    fn update_status(&self, id: DocumentId, update: &DocumentStatusUpdate)
        -> RepoResult<Document>;
    fn update_status_many(&self, ids: &[DocumentId], update: &DocumentStatusUpdate)
        -> RepoResult<u64>;
    fn reset_failed_for_retry(&self, collection_id: CollectionId) -> RepoResult<u64>;
    fn mark_seen(&self, ids: &[DocumentId], at: Timestamp) -> RepoResult<u64>;
    fn mark_unseen_stale(&self, collection_id: CollectionId, seen_before: Timestamp)
        -> RepoResult<u64>;
    fn stats(&self, collection_id: CollectionId) -> RepoResult<DocumentStats>;
    fn delete(&self, id: DocumentId) -> RepoResult<()>;
});

instrument_repository!(ChunkRepository via chunks {
    fn insert_many(&self, collection_id: CollectionId, batch: &[NewChunk]) -> RepoResult<u64>;
    fn list_by_document(&self, document_id: DocumentId, page: PageRequest)
        -> RepoResult<Page<Chunk>>;
    fn without_embedding(&self, collection_id: CollectionId, limit: u32)
        -> RepoResult<Vec<Chunk>>;
    fn set_embedding_ids(&self, collection_id: CollectionId, pairs: &[(i64, String)])
        -> RepoResult<u64>;
    fn delete_by_document(&self, document_id: DocumentId) -> RepoResult<u64>;
    fn delete_by_collection(&self, collection_id: CollectionId) -> RepoResult<u64>;
    fn count(&self, collection_id: CollectionId) -> RepoResult<u64>;
    fn search(&self, collection_id: CollectionId, query: &SearchQuery, page: PageRequest)
        -> RepoResult<SearchPage>;
    fn search_after(&self, collection_id: CollectionId, query: &SearchQuery,
        after: Option<SearchCursor>, limit: u32) -> RepoResult<SearchPage>;
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::captured;

    #[test]
    fn spans_record_outcome_and_duration() {
        let text = captured(|| {
            let _ = traced(BackendKind::Sqlite, "users", "get", || {
                Err::<(), _>(RepoError::not_found(crate::Entity::User, 7))
            });
            let _ = traced(BackendKind::Postgres, "chunks", "count", || Ok(3u64));
        });
        assert!(
            text.contains(
                r#"db.system.name="sqlite" db.collection.name="users" db.operation.name="get""#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"db.system.name="postgresql" db.collection.name="chunks""#),
            "{text}"
        );
        assert!(text.contains(r#"outcome="not_found""#), "{text}");
        assert!(text.contains(r#"outcome="ok""#), "{text}");
        assert!(text.contains("elapsed_us="), "{text}");
    }

    #[test]
    fn error_kinds_are_snake_case() {
        assert_eq!(
            error_kind(&RepoError::not_found(crate::Entity::User, 1)),
            "not_found"
        );
        assert_eq!(error_kind(&RepoError::config("x")), "config");
    }
}
