//! Observability shared by every backend: a `tracing` span per repository call
//! ([`Instrumented`]), the slow-query clock the backends feed from Diesel's connection
//! instrumentation ([`SlowQueryLog`]), and the pool-pressure warning ([`PoolWatch`]).
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
use crate::store::{BackendKind, Repositories, Transaction};
use crate::time::Timestamp;
use crate::user::{DeleteMode, NewUser, User, UserFilter, UserPatch, UserRepository};
use serde_json::Value;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::field::Empty;

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

/// Times the statements of one connection and logs those slower than a threshold.
///
/// Backends feed it from Diesel's connection instrumentation: [`start`](Self::start)
/// on `StartQuery`, [`finish`](Self::finish) on `FinishQuery`. The WARN event
/// (target `repo_core::slow_query`) has the fields `backend`, `elapsed_ms`,
/// `threshold_ms`, `failed` and `sql`. The SQL is the statement text only: bound
/// values (API-key hashes, user text) are never formatted.
#[derive(Debug, Clone)]
pub struct SlowQueryLog {
    backend: BackendKind,
    threshold: Duration,
    started: Option<Instant>,
}

/// Diesel's `Display` of a query writes `<sql> -- binds: [<values>]`; everything from
/// this marker on is bound values.
const BINDS_MARKER: &str = " -- binds: ";

impl SlowQueryLog {
    /// A log for one connection of `backend`; statements taking `threshold` or longer
    /// are logged (`Duration::ZERO`: every statement).
    pub fn new(backend: BackendKind, threshold: Duration) -> Self {
        Self {
            backend,
            threshold,
            started: None,
        }
    }

    /// A statement starts.
    pub fn start(&mut self) {
        // Reading the clock costs ~25 ns; skip it when nobody would see the warning.
        if tracing::enabled!(target: "repo_core::slow_query", tracing::Level::WARN) {
            self.started = Some(Instant::now());
        }
    }

    /// The statement that last started has finished; `query` is Diesel's `Display`
    /// of it, formatted only when the statement was slow.
    pub fn finish(&mut self, query: &dyn fmt::Display, failed: bool) {
        if let Some(slow) = self.finish_unlogged(query) {
            slow.log(failed);
        }
    }

    /// Like [`finish`](Self::finish) for a statement whose outcome is not known yet:
    /// returns it, when it was slow, for the caller to [`log`](SlowStatement::log)
    /// once it knows. (Diesel's SQLite connection reports a statement that returns
    /// rows as finished without its error, which only the caller sees.)
    pub fn finish_unlogged(&mut self, query: &dyn fmt::Display) -> Option<SlowStatement> {
        let elapsed = self.started.take()?.elapsed();
        (elapsed >= self.threshold).then(|| SlowStatement {
            backend: self.backend,
            elapsed,
            threshold: self.threshold,
            sql: sql_without_binds(query),
        })
    }
}

/// A statement that reached the slow-query threshold, not logged yet; see
/// [`SlowQueryLog::finish_unlogged`].
#[derive(Debug, Clone)]
pub struct SlowStatement {
    backend: BackendKind,
    elapsed: Duration,
    threshold: Duration,
    sql: String,
}

impl SlowStatement {
    /// Logs the WARN event of [`SlowQueryLog`] (the same fields on every backend).
    pub fn log(self, failed: bool) {
        tracing::warn!(
            target: "repo_core::slow_query",
            backend = self.backend.as_str(),
            elapsed_ms = self.elapsed.as_secs_f64() * 1000.0,
            threshold_ms = u64::try_from(self.threshold.as_millis()).unwrap_or(u64::MAX),
            failed,
            sql = %self.sql,
            "slow query",
        );
    }
}

/// The SQL text of a Diesel query display, stopping before its bound values: the
/// formatting is cut off as soon as the marker is written, so the values are never
/// even turned into text.
pub fn sql_without_binds(query: &dyn fmt::Display) -> String {
    struct UntilBinds {
        out: String,
    }
    impl fmt::Write for UntilBinds {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.out.push_str(s);
            match self.out.find(BINDS_MARKER) {
                Some(at) => {
                    self.out.truncate(at);
                    // Abort the formatting: the rest is bound values.
                    Err(fmt::Error)
                }
                None => Ok(()),
            }
        }
    }
    let mut sink = UntilBinds { out: String::new() };
    // An Err here is our own cut-off, not a failure.
    let _ = fmt::write(&mut sink, format_args!("{query}"));
    sink.out
}

/// Connection counts of a store's pool; see [`Store::pool_status`](crate::Store::pool_status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max: u32,
    /// Connections open now.
    pub open: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// Open connections checked out by callers.
    pub in_use: u32,
}

impl PoolStatus {
    /// Builds the status from r2d2's counts (`connections`, `idle_connections`).
    pub fn from_counts(max: u32, open: u32, idle: u32) -> Self {
        Self {
            max,
            open,
            idle,
            in_use: open.saturating_sub(idle),
        }
    }

    /// Whether more than 90 % of the pool is checked out.
    pub fn is_under_pressure(&self) -> bool {
        // in_use / max > 0.9, in integers.
        u64::from(self.in_use) * 10 > u64::from(self.max) * 9
    }
}

/// Shortest time between two pool-pressure warnings of one store.
pub const POOL_WARNING_INTERVAL: Duration = Duration::from_secs(30);

/// Warns (target `repo_core::pool`) when a checkout leaves more than 90 % of the pool
/// in use, at most once per interval, so a saturated pool does not flood the log.
#[derive(Debug)]
pub struct PoolWatch {
    backend: BackendKind,
    interval: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last warning, plus one (0: never warned).
    last_warned: AtomicU64,
}

impl PoolWatch {
    /// Warnings at most once per `interval`.
    pub fn new(backend: BackendKind, interval: Duration) -> Self {
        Self {
            backend,
            interval,
            epoch: Instant::now(),
            last_warned: AtomicU64::new(0),
        }
    }

    /// Called after each checkout with a way to read the pool's counts (read only
    /// when a subscriber would see the warning: r2d2 takes its lock to count);
    /// returns whether it warned.
    pub fn observe(&self, status: impl FnOnce() -> PoolStatus) -> bool {
        if !tracing::enabled!(target: "repo_core::pool", tracing::Level::WARN) {
            return false;
        }
        let status = status();
        if !status.is_under_pressure() {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_warned.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return false;
        }
        // Only the thread that wins the exchange warns for this interval.
        if self
            .last_warned
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        tracing::warn!(
            target: "repo_core::pool",
            backend = self.backend.as_str(),
            max = status.max,
            open = status.open,
            idle = status.idle,
            in_use = status.in_use,
            "connection pool over 90% in use: raise DB_POOL_SIZE/DB_MAX_OVERFLOW or find long-held connections",
        );
        true
    }
}

/// `text` on one line: libpq's multi-line messages (`…failed\n\tIs the server
/// running…`) joined with single spaces, so a message or a log line never spans lines.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The last error a pool met opening a connection: r2d2 hands its own copy to one
/// waiting caller only, so every other caller timed out with no cause. Shown as the
/// `source` of the checkout errors it explains ([`ConnectionErrors::explain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFailure {
    /// The driver's message, on one line, secrets scrubbed by the backend.
    pub message: String,
    /// How long before the error was reported the failure happened.
    pub age: Duration,
}

impl fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "last connection error ({:.1} s ago): {}",
            self.age.as_secs_f64(),
            self.message
        )
    }
}

impl std::error::Error for ConnectionFailure {}

/// What a pool's failed connection attempts leave behind, per store: the last error
/// (attached to checkout errors, and reported by `health()` as soon as it is known)
/// and a WARN log (target `repo_core::pool`) limited to one line per interval, with
/// the number of errors left out since the previous one, so a server refusing
/// connections does not flood the log (r2d2 retries every slot of the pool).
#[derive(Debug)]
pub struct ConnectionErrors {
    backend: BackendKind,
    /// The database in log lines (a redacted URL or a SQLite target), if named.
    database: String,
    interval: Duration,
    state: std::sync::Mutex<ErrorsState>,
}

#[derive(Debug, Default)]
struct ErrorsState {
    /// Errors recorded so far.
    count: u64,
    last: Option<(String, Instant)>,
    last_logged: Option<Instant>,
    /// Errors recorded and not logged since the last line.
    unlogged: u64,
}

impl ConnectionErrors {
    /// Logs at most one line per `interval`.
    pub fn new(backend: BackendKind, interval: Duration) -> Self {
        Self {
            backend,
            database: String::new(),
            interval,
            state: std::sync::Mutex::new(ErrorsState::default()),
        }
    }

    /// Names the database in the log lines (`database` field): a URL with its password
    /// redacted, or a SQLite target; never a secret.
    pub fn naming(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ErrorsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection attempt failed with `message` (secrets already scrubbed); returns
    /// whether it was logged.
    pub fn record(&self, message: &str) -> bool {
        let message = one_line(message);
        let mut state = self.state();
        state.count += 1;
        state.last = Some((message.clone(), Instant::now()));
        if state
            .last_logged
            .is_some_and(|at| at.elapsed() < self.interval)
        {
            state.unlogged += 1;
            return false;
        }
        let suppressed = std::mem::take(&mut state.unlogged);
        state.last_logged = Some(Instant::now());
        drop(state);
        tracing::warn!(
            target: "repo_core::pool",
            backend = self.backend.as_str(),
            database = %self.database,
            error = %message,
            suppressed,
            "pool connection error (at most one line per {:?}; suppressed = errors left out since the last line)",
            self.interval,
        );
        true
    }

    /// How many errors were recorded so far: pass it to [`since`](Self::since).
    pub fn mark(&self) -> u64 {
        self.state().count
    }

    /// The last error, if one was recorded after `mark` was taken.
    pub fn since(&self, mark: u64) -> Option<ConnectionFailure> {
        let state = self.state();
        if state.count > mark {
            Self::failure(&state)
        } else {
            None
        }
    }

    /// The last error recorded, however old.
    pub fn last(&self) -> Option<ConnectionFailure> {
        Self::failure(&self.state())
    }

    fn failure(state: &ErrorsState) -> Option<ConnectionFailure> {
        state.last.as_ref().map(|(message, at)| ConnectionFailure {
            message: message.clone(),
            age: at.elapsed(),
        })
    }

    /// Gives an `Unavailable { ConnectionFailed }` checkout error the last connection
    /// error as its cause (in the message and as its `source`) unless it carries it
    /// already; other errors are returned unchanged.
    pub fn explain(&self, error: RepoError) -> RepoError {
        match error {
            RepoError::Unavailable {
                reason: reason @ crate::error::UnavailableReason::ConnectionFailed,
                message,
                source,
            } => {
                let message = one_line(&message);
                match self.last() {
                    Some(last) if !message.contains(&last.message) => RepoError::Unavailable {
                        reason,
                        message: format!("{message}; {last}"),
                        source: Some(Box::new(last)),
                    },
                    _ => RepoError::Unavailable {
                        reason,
                        message,
                        source,
                    },
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_kept_flattened_and_logged_sparingly() {
        let text = captured(|| {
            let errors = ConnectionErrors::new(BackendKind::Postgres, Duration::from_secs(3600));
            assert!(errors.last().is_none());
            let mark = errors.mark();
            assert!(errors.record("connection to server failed\n\tIs the server running?\n"));
            for _ in 0..99 {
                assert!(!errors.record("connection refused"));
            }
            let last = errors.since(mark).expect("recorded after the mark");
            assert_eq!(last.message, "connection refused");
            assert!(errors.since(errors.mark()).is_none());
            let bare = RepoError::Unavailable {
                reason: crate::error::UnavailableReason::ConnectionFailed,
                message: "timed out waiting for connection".into(),
                source: None,
            };
            let explained = errors.explain(bare);
            assert!(
                explained.to_string().contains("connection refused"),
                "{explained}"
            );
            let source = std::error::Error::source(&explained).expect("a source");
            assert!(source.to_string().contains("connection refused"));
            let exhausted = RepoError::Unavailable {
                reason: crate::error::UnavailableReason::PoolExhausted,
                message: "busy".into(),
                source: None,
            };
            assert!(!errors.explain(exhausted).to_string().contains("refused"));
        });
        assert_eq!(text.matches("pool connection error").count(), 1, "{text}");
        assert!(
            text.contains("connection to server failed Is the server running?"),
            "one line: {text}"
        );
    }

    struct DieselLike;
    impl fmt::Display for DieselLike {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // The shape of diesel::debug_query's Display.
            let sql = "SELECT * FROM api_keys WHERE key_hash = $1";
            write!(f, "{sql} -- binds: {:?}", ["deadbeef-hash"])
        }
    }

    #[test]
    fn sql_is_cut_before_the_binds() {
        assert_eq!(
            sql_without_binds(&DieselLike),
            "SELECT * FROM api_keys WHERE key_hash = $1"
        );
        assert_eq!(
            sql_without_binds(&"PRAGMA foreign_keys = ON"),
            "PRAGMA foreign_keys = ON"
        );
    }

    #[test]
    fn pressure_is_over_ninety_percent() {
        assert!(!PoolStatus::from_counts(10, 10, 1).is_under_pressure());
        assert!(PoolStatus::from_counts(10, 10, 0).is_under_pressure());
        assert!(PoolStatus::from_counts(1, 1, 0).is_under_pressure());
        assert!(!PoolStatus::from_counts(20, 18, 0).is_under_pressure());
        assert!(PoolStatus::from_counts(20, 19, 0).is_under_pressure());
        assert_eq!(PoolStatus::from_counts(4, 2, 3).in_use, 0);
    }

    /// Captures what the calling thread logs (DEBUG and up, with closing spans).
    fn captured(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::fmt::format::FmtSpan;
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || Buf(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn pool_warning_is_rate_limited() {
        let full = PoolStatus::from_counts(4, 4, 0);
        let text = captured(|| {
            let watch = PoolWatch::new(BackendKind::Postgres, Duration::from_secs(3600));
            assert!(
                !watch.observe(|| PoolStatus::from_counts(4, 4, 2)),
                "not under pressure"
            );
            assert!(watch.observe(|| full), "first warning");
            assert!(!watch.observe(|| full), "second one within the interval");
            let eager = PoolWatch::new(BackendKind::Sqlite, Duration::ZERO);
            assert!(eager.observe(|| full));
            std::thread::sleep(Duration::from_millis(2));
            assert!(eager.observe(|| full), "interval passed");
        });
        assert_eq!(
            text.matches("connection pool over 90% in use").count(),
            3,
            "{text}"
        );
        assert!(text.contains("in_use=4"), "{text}");
    }

    #[test]
    fn slow_query_log_shows_sql_not_binds() {
        let text = captured(|| {
            let mut log = SlowQueryLog::new(BackendKind::Sqlite, Duration::ZERO);
            log.start();
            log.finish(&DieselLike, false);
            let mut quiet = SlowQueryLog::new(BackendKind::Sqlite, Duration::from_secs(60));
            quiet.start();
            quiet.finish(&"SELECT 'fast'", false);
        });
        assert!(text.contains("slow query"), "{text}");
        assert!(text.contains("WHERE key_hash = $1"), "{text}");
        assert!(!text.contains("deadbeef-hash"), "{text}");
        assert!(!text.contains("fast"), "{text}");
    }

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
