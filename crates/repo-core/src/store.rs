//! The backend-agnostic handle and the unit of work that spans repositories.

use crate::api_key::ApiKeyRepository;
pub use crate::backend::BackendKind;
use crate::chunk::ChunkRepository;
use crate::collection::{Collection, CollectionRepository};
use crate::document::DocumentRepository;
use crate::error::{Attempt, RepoError, RepoResult, State, UnavailableReason};
use crate::ids::CollectionId;
use crate::operation::OperationRepository;
use crate::pool_watch::{ConnectionErrors, PoolStatus};
use crate::replica::{NodeStatus, WritePosition};
use crate::user::UserRepository;
use std::time::Duration;

/// Access to every repository; implemented by the store and by a transaction.
pub trait Repositories {
    /// Users.
    fn users(&self) -> &dyn UserRepository;
    /// API keys.
    fn api_keys(&self) -> &dyn ApiKeyRepository;
    /// Collections and grants.
    fn collections(&self) -> &dyn CollectionRepository;
    /// Operations.
    fn operations(&self) -> &dyn OperationRepository;
    /// Documents.
    fn documents(&self) -> &dyn DocumentRepository;
    /// Chunks and full-text search.
    fn chunks(&self) -> &dyn ChunkRepository;
}

/// The repositories bound to one open database transaction.
pub trait Transaction: Repositories {
    /// Locks the collection row until the transaction ends (`SELECT … FOR UPDATE` on
    /// PostgreSQL; SQLite's write transaction already excludes other writers) and
    /// returns it, or `NotFound`.
    fn lock_collection(&self, id: CollectionId) -> RepoResult<Collection>;
}

/// The handle the factory returns: every repository, and units of work across them.
///
/// Each call outside a transaction checks a connection out of the pool and returns
/// it. The handle is `Send + Sync`; share it as `Arc<dyn Store>`.
pub trait Store: Repositories + Send + Sync {
    /// Which backend this is.
    fn backend(&self) -> BackendKind;

    /// Runs `work` in one write transaction, committing if it returns `Ok` and rolling
    /// back otherwise. Serialization failures, deadlocks and SQLite busy errors re-run
    /// `work` a bounded number of times with backoff, then surface as `Conflict`.
    /// Prefer [`transaction`](trait.Store.html#method.transaction) on `dyn Store`.
    ///
    /// Inside `work`, use only the [`Transaction`] handle it is given: a call on this
    /// store itself from the same thread (a closure that captured the store) is
    /// refused at once with `InvalidState` (see [`UnitOfWorkMarker`]) on both
    /// backends, instead of waiting for the transaction's own lock (SQLite) or running
    /// outside the transaction (PostgreSQL). Other stores are not affected.
    fn run_transaction(
        &self,
        work: &mut dyn FnMut(&dyn Transaction) -> RepoResult<()>,
    ) -> RepoResult<()>;

    /// Checks that the database answers a trivial query within
    /// [`StoreConfig::health_timeout`](crate::StoreConfig::health_timeout)
    /// (`DB_HEALTH_TIMEOUT_MS`). It never waits longer: a server that does not answer
    /// in time is `Unavailable { reason: Timeout }`; a failure before that is the
    /// error itself (`Unavailable { ConnectionFailed }` for a refused connection,
    /// `PoolExhausted` when every connection is busy).
    fn health(&self) -> RepoResult<()>;

    /// The pool's connection counts now (max, open, idle, in use): the primary's
    /// pool; [`nodes`](Store::nodes) reports every node.
    fn pool_status(&self) -> PoolStatus;

    /// The primary's position after every write committed so far (PostgreSQL: the WAL
    /// insert LSN; SQLite: [`WritePosition::ZERO`]). Take it after a request's writes
    /// and read through [`read_after`](Store::read_after) with it later; see
    /// [`crate::replica`].
    fn write_position(&self) -> RepoResult<WritePosition>;

    /// A stale-tolerant view: its reads go to a healthy replica whose replay lag is
    /// under `DB_REPLICA_MAX_LAG_MS`, round robin, or to the primary when there is
    /// none; its writes go to the primary. Without replicas (and on SQLite) it reads
    /// the primary. See [`crate::replica`].
    fn replica(&self) -> ReadView<'_>;

    /// A read-your-writes view: its reads go to a replica only if that replica has
    /// replayed past `position`, else to the primary, so no read misses a write the
    /// position covers; its writes go to the primary. See [`crate::replica`].
    fn read_after(&self, position: &WritePosition) -> ReadView<'_>;

    /// Every node of the store (the primary first, then each replica): role, redacted
    /// URL, pool counts, health, lag and the reads routed to it.
    fn nodes(&self) -> Vec<NodeStatus>;
}

/// The repositories of a routing view ([`Store::replica`], [`Store::read_after`]).
pub type ReadView<'a> = Box<dyn Repositories + Send + Sync + 'a>;

impl dyn Store + '_ {
    /// Runs `work` in one transaction and returns its value; see
    /// [`Store::run_transaction`]. `work` may run more than once. Inside `work` call
    /// through `tx` only: a call on `store` itself is refused with `InvalidState`.
    ///
    /// ```no_run
    /// # use repo_core::*;
    /// # fn demo(store: &dyn Store, id: CollectionId, user: UserId) -> RepoResult<Operation> {
    /// store.transaction(|tx| {
    ///     let collection = tx.lock_collection(id)?;
    ///     let op = tx.operations().create(&NewOperation::new(
    ///         collection.id, user, OperationKind::Index, serde_json::json!({"source": "/docs"}),
    ///     ))?;
    ///     tx.collections().update_status(id, CollectionStatus::Processing, None)?;
    ///     Ok(op)
    /// })
    /// # }
    /// ```
    pub fn transaction<T>(
        &self,
        mut work: impl FnMut(&dyn Transaction) -> RepoResult<T>,
    ) -> RepoResult<T> {
        let mut out = None;
        self.run_transaction(&mut |tx| {
            out = Some(work(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| RepoError::Backend {
            message: "transaction committed without a result".into(),
            source: None,
        })
    }
}

/// Tells a call on a store from a call made inside one of that store's own open units
/// of work on the same thread, which would otherwise stall or run outside the
/// transaction (a closure given to [`Store::run_transaction`] can capture the store).
///
/// Each backend keeps one marker per store (shared by its clones, distinct for every
/// store opened), [`enter`](Self::enter)s it while a unit of work runs, and calls
/// [`check`](Self::check) before every call that would check a connection out of the
/// pool. Another store, or another thread, is never refused.
#[derive(Debug)]
pub struct UnitOfWorkMarker {
    id: u64,
}

thread_local! {
    /// Markers of the units of work open on this thread, innermost last.
    static OPEN_UNITS_OF_WORK: std::cell::RefCell<Vec<u64>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Default for UnitOfWorkMarker {
    fn default() -> Self {
        Self::new()
    }
}

impl UnitOfWorkMarker {
    /// A marker distinct from every other one in the process.
    pub fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Marks a unit of work of this store open on the calling thread until the
    /// returned guard is dropped.
    pub fn enter(&self) -> UnitOfWorkOpen {
        OPEN_UNITS_OF_WORK.with(|open| open.borrow_mut().push(self.id));
        UnitOfWorkOpen { id: self.id }
    }

    /// `InvalidState` when a unit of work of this store is open on the calling thread:
    /// the call must go through that unit of work's `tx` handle instead.
    pub fn check(&self) -> RepoResult<()> {
        if OPEN_UNITS_OF_WORK.with(|open| open.borrow().contains(&self.id)) {
            return Err(RepoError::invalid_state(
                State::InUnitOfWork,
                Attempt::StoreCall,
            ));
        }
        Ok(())
    }
}

/// A unit of work marked open by [`UnitOfWorkMarker::enter`]; unmarks it when dropped.
#[derive(Debug)]
pub struct UnitOfWorkOpen {
    id: u64,
}

impl Drop for UnitOfWorkOpen {
    fn drop(&mut self) {
        OPEN_UNITS_OF_WORK.with(|open| {
            let mut open = open.borrow_mut();
            if let Some(at) = open.iter().rposition(|&id| id == self.id) {
                open.remove(at);
            }
        });
    }
}

/// Runs `check` (a trivial query on a connection of the store) on a helper thread and
/// waits at most `timeout` for its answer, so that a health probe never hangs on a
/// server that stopped answering (libpq and r2d2 may block far longer).
///
/// While it waits, a connection error the pool records (`errors`) is the answer as
/// soon as it is known: `Unavailable { ConnectionFailed }` with the driver's message,
/// instead of a timeout that hides why (the pool's checkout wait is usually longer
/// than the health timeout). A check that does not answer in time otherwise is
/// `Unavailable { reason: Timeout }` (naming the last connection error, if any); the
/// helper thread finishes on its own once the pool or the driver gives up.
pub fn health_check_within(
    backend: BackendKind,
    timeout: Duration,
    errors: &ConnectionErrors,
    check: impl FnOnce() -> RepoResult<()> + Send + 'static,
) -> RepoResult<()> {
    /// How often the connection errors are looked at while waiting.
    const POLL: Duration = Duration::from_millis(20);
    let mark = errors.mark();
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("{backend}-health"))
        .spawn(move || {
            // The caller may have stopped waiting; nothing to report then.
            let _ = tx.send(check());
        })
        .map_err(|e| RepoError::Backend {
            message: format!("could not start the health-check thread: {e}"),
            source: Some(Box::new(e)),
        })?;
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match rx.recv_timeout(left.min(POLL)) {
            Ok(result) => return result,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(RepoError::Backend {
                    message: "health check: the check thread ended without an answer".into(),
                    source: None,
                })
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(failure) = errors.since(mark) {
            return Err(RepoError::Unavailable {
                reason: UnavailableReason::ConnectionFailed,
                message: format!(
                    "health check: no connection to the {backend} database: {}",
                    failure.message
                ),
                source: Some(Box::new(failure)),
            });
        }
        if left.is_zero() {
            let last = errors.last().map(|f| format!(" ({f})")).unwrap_or_default();
            return Err(RepoError::Unavailable {
                reason: UnavailableReason::Timeout,
                message: format!(
                    "health check: the {backend} database did not answer within {timeout:?}{last}"
                ),
                source: None,
            });
        }
    }
}

/// How often a unit of work is re-run after a transient conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (≥ 1).
    pub max_attempts: u32,
    /// Sleep before the second attempt; doubles each time, with jitter.
    pub base_backoff: Duration,
    /// Longest sleep between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// Calls `attempt` until it succeeds, fails with something other than a transient
    /// conflict, or the attempts run out.
    pub fn run<T>(&self, mut attempt: impl FnMut() -> RepoResult<T>) -> RepoResult<T> {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt() {
                Err(e) if e.is_transient_conflict() && tries < self.max_attempts.max(1) => {
                    std::thread::sleep(self.backoff(tries));
                }
                other => return other,
            }
        }
    }

    /// Sleep after failed attempt number `tries` (1-based): exponential with jitter.
    pub fn backoff(&self, tries: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << tries.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        let jitter = rand::random_range(0.5..1.0);
        capped.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ConflictReason;

    fn no_errors() -> ConnectionErrors {
        ConnectionErrors::new(BackendKind::Postgres, Duration::from_secs(1))
    }

    /// A connection error recorded while the check waits is the answer at once.
    #[test]
    fn health_check_reports_a_connection_error_as_soon_as_known() {
        let errors = std::sync::Arc::new(no_errors());
        errors.record("old error, before the check");
        let recorder = std::sync::Arc::clone(&errors);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            recorder.record("connection refused\n\tIs the server running?");
        });
        let result = health_check_within(
            BackendKind::Postgres,
            Duration::from_secs(30),
            &errors,
            || {
                std::thread::sleep(Duration::from_secs(60));
                Ok(())
            },
        );
        match result {
            Err(RepoError::Unavailable {
                reason: UnavailableReason::ConnectionFailed,
                message,
                ..
            }) => assert!(
                message.contains("connection refused Is the server running?"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn health_check_times_out_instead_of_hanging() {
        let started = std::time::Instant::now();
        let errors = no_errors();
        let slow = health_check_within(
            BackendKind::Sqlite,
            Duration::from_millis(50),
            &errors,
            || {
                std::thread::sleep(Duration::from_secs(2));
                Ok(())
            },
        );
        assert!(
            matches!(
                slow,
                Err(RepoError::Unavailable {
                    reason: UnavailableReason::Timeout,
                    ..
                })
            ),
            "{slow:?}"
        );
        // Generous bound: only a hang (waiting for the 2 s sleep) fails it.
        assert!(started.elapsed() < Duration::from_millis(1500));
        let failing = health_check_within(
            BackendKind::Postgres,
            Duration::from_secs(5),
            &errors,
            || Err(RepoError::config("boom")),
        );
        assert!(matches!(failing, Err(RepoError::Config { .. })));
        assert!(
            health_check_within(BackendKind::Sqlite, Duration::from_secs(5), &errors, || Ok(
                ()
            ))
            .is_ok()
        );
    }

    #[test]
    fn unit_of_work_marker_is_per_store_and_per_thread() {
        let a = UnitOfWorkMarker::new();
        let b = UnitOfWorkMarker::new();
        assert!(a.check().is_ok());
        {
            let _open = a.enter();
            assert!(matches!(a.check(), Err(RepoError::InvalidState { .. })));
            assert!(b.check().is_ok(), "another store is not refused");
            let a = &a;
            std::thread::scope(|s| {
                s.spawn(|| assert!(a.check().is_ok(), "another thread is not refused"));
            });
            {
                let _inner = b.enter();
                assert!(b.check().is_err());
            }
            assert!(b.check().is_ok());
            assert!(a.check().is_err());
        }
        assert!(a.check().is_ok(), "closed again");
    }

    #[test]
    fn retries_only_transient_conflicts() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        };
        let mut calls = 0;
        let r: RepoResult<()> = policy.run(|| {
            calls += 1;
            Err(RepoError::conflict(ConflictReason::Busy, "busy"))
        });
        assert!(r.is_err());
        assert_eq!(calls, 3);

        let mut calls = 0;
        let r: RepoResult<()> = policy.run(|| {
            calls += 1;
            Err(RepoError::conflict(ConflictReason::ActiveOperation, "x"))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
