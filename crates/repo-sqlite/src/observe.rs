//! Diesel connection instrumentation: feeds every statement of a pooled connection to
//! the backend-agnostic [`SlowQueryLog`] of `repo-core`.

use diesel::connection::{get_default_instrumentation, Instrumentation, InstrumentationEvent};
use diesel::r2d2::CustomizeConnection;
use diesel::{Connection, SqliteConnection};
use repo_core::instrument::SlowStatement;
use repo_core::{BackendKind, SlowQueryLog};
use std::cell::RefCell;
use std::time::Duration;

/// Times each statement of one connection (Diesel calls it on the connection's thread),
/// and passes every event on to the instrumentation the application installed with
/// `diesel::connection::set_default_instrumentation`, which a connection carries from
/// birth and which `set_instrumentation` would otherwise replace.
struct SlowQueries {
    log: SlowQueryLog,
    application: Option<Box<dyn Instrumentation>>,
}

thread_local! {
    /// The slow statement that last finished on this thread without an error in its
    /// event. Diesel's SQLite connection reports a statement that returns rows
    /// (`INSERT … RETURNING`, `SELECT`) as finished without the error that stopped
    /// it, which only reaches the caller: so the statement is logged once the outcome
    /// is known, failed when [`crate::error::map_diesel_error`] sees a database error
    /// ([`statement_failed`]), not failed at the next statement or at the end of the
    /// repository call ([`call_finished`]).
    static UNLOGGED: RefCell<Option<SlowStatement>> = const { RefCell::new(None) };
}

fn log_unlogged(failed: bool) {
    if let Some(slow) = UNLOGGED.with(RefCell::take) {
        slow.log(failed);
    }
}

/// The last statement on this thread failed with a database error.
pub(crate) fn statement_failed() {
    log_unlogged(true);
}

/// A repository call ends: its last statement, if not logged yet, succeeded.
pub(crate) fn call_finished() {
    log_unlogged(false);
}

impl Instrumentation for SlowQueries {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::StartQuery { .. } => {
                log_unlogged(false);
                self.log.start();
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                log_unlogged(false);
                if error.is_some() {
                    self.log.finish(query, true);
                } else if let Some(slow) = self.log.finish_unlogged(query) {
                    UNLOGGED.with(|u| *u.borrow_mut() = Some(slow));
                }
            }
            _ => {}
        }
        if let Some(application) = &mut self.application {
            application.on_connection_event(event);
        }
    }
}

/// Wraps the pool's connection customizer so every connection it opens (pooled calls
/// and units of work alike) also gets the slow-query log.
#[derive(Debug)]
pub(crate) struct WithSlowQueryLog<C> {
    pub(crate) inner: C,
    pub(crate) threshold: Duration,
}

impl<C> CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for WithSlowQueryLog<C>
where
    C: CustomizeConnection<SqliteConnection, diesel::r2d2::Error>,
{
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // Installed first, so the connection's own PRAGMAs are timed too.
        conn.set_instrumentation(SlowQueries {
            log: SlowQueryLog::new(BackendKind::Sqlite, self.threshold),
            application: get_default_instrumentation(),
        });
        self.inner.on_acquire(conn)
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
    use repo_core::{Repositories, StoreConfig, UserId};
    use std::cell::Cell;

    thread_local! {
        /// Statements started on this thread, as the application's instrumentation saw them.
        static STARTED: Cell<usize> = const { Cell::new(0) };
    }

    fn counting() -> Option<Box<dyn Instrumentation>> {
        Some(Box::new(|event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                STARTED.with(|n| n.set(n.get() + 1));
            }
        }))
    }

    /// The slow-query log does not take the place of the application's own default
    /// instrumentation: statements of repository calls still reach it. (Counted per
    /// thread, so tests running beside this one cannot make it pass.)
    #[test]
    fn application_default_instrumentation_still_sees_statements() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("instrumented.sqlite3");
        set_default_instrumentation(counting).expect("set default instrumentation");
        let store = crate::SqliteStore::connect(
            path.to_str().expect("utf-8 path"),
            &StoreConfig::default(),
        );
        set_default_instrumentation(|| None).expect("reset default instrumentation");
        let store = store.expect("open store");
        let before = STARTED.with(Cell::get);
        let _ = store.users().get(UserId(1));
        assert!(
            STARTED.with(Cell::get) > before,
            "the application's instrumentation saw no statement of users().get"
        );
    }
}
