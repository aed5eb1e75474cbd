//! Diesel connection instrumentation: feeds every statement of a pooled connection to
//! the backend-agnostic [`SlowQueryLog`] of `repo-core`, with the statement's SQL
//! text cut before Diesel's bound values ([`sql_without_binds`]).
//!
//! Both backends wrap their pool's connection customizer in [`WithSlowQueryLog`].
//! SQLite asks for [`WithSlowQueryLog::outcome_from_caller`]: Diesel's SQLite
//! connection reports a statement that returns rows (`INSERT … RETURNING`, `SELECT`)
//! as finished without the error that stopped it, which only reaches the caller; so
//! such a statement is logged once its outcome is known: failed when the backend's
//! error mapping sees a database error ([`statement_failed`]), not failed at the next
//! statement or at the end of the repository call ([`call_finished`]).

use diesel::connection::{get_default_instrumentation, Instrumentation, InstrumentationEvent};
use diesel::r2d2::CustomizeConnection;
use diesel::Connection;
use repo_core::instrument::SlowStatement;
use repo_core::{BackendKind, SlowQueryLog};
use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

/// Diesel's `Display` of a query writes `<sql> -- binds: [<values>]`; everything from
/// this marker on is bound values.
pub const BINDS_MARKER: &str = " -- binds: ";

/// The SQL text of a Diesel query display, stopping before its bound values: the
/// formatting is cut off as soon as [`BINDS_MARKER`] is written, so the values are
/// never even turned into text.
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

/// Times each statement of one connection (Diesel calls it on the connection's thread),
/// and passes every event on to the instrumentation the application installed with
/// `diesel::connection::set_default_instrumentation`, which a connection carries from
/// birth and which `set_instrumentation` would otherwise replace.
struct SlowQueries {
    log: SlowQueryLog,
    outcome_from_caller: bool,
    application: Option<Box<dyn Instrumentation>>,
}

thread_local! {
    /// The slow statement that last finished on this thread without an error in its
    /// event, on a connection whose errors only reach the caller (see the module
    /// documentation): logged by [`statement_failed`], [`call_finished`] or the next
    /// statement.
    static UNLOGGED: RefCell<Option<SlowStatement>> = const { RefCell::new(None) };
}

fn log_unlogged(failed: bool) {
    if let Some(slow) = UNLOGGED.with(RefCell::take) {
        slow.log(failed);
    }
}

/// The last statement on this thread failed with a database error: call it from the
/// backend's error mapping when its connection uses
/// [`WithSlowQueryLog::outcome_from_caller`].
pub fn statement_failed() {
    log_unlogged(true);
}

/// A repository call ends: its last statement, if not logged yet, succeeded.
pub fn call_finished() {
    log_unlogged(false);
}

impl Instrumentation for SlowQueries {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::StartQuery { .. } => {
                if self.outcome_from_caller {
                    log_unlogged(false);
                }
                self.log.start();
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let sql = || sql_without_binds(query);
                if !self.outcome_from_caller {
                    self.log.finish(sql, error.is_some());
                } else {
                    log_unlogged(false);
                    if error.is_some() {
                        self.log.finish(sql, true);
                    } else if let Some(slow) = self.log.finish_unlogged(sql) {
                        UNLOGGED.with(|u| *u.borrow_mut() = Some(slow));
                    }
                }
            }
            _ => {}
        }
        if let Some(application) = &mut self.application {
            application.on_connection_event(event);
        }
    }
}

/// Wraps the pool's connection customizer `C` so every connection it opens (pooled
/// calls and units of work alike) also gets the slow-query log, installed before
/// `C` runs so that the connection's own setup statements are timed too.
#[derive(Debug)]
pub struct WithSlowQueryLog<C> {
    inner: C,
    backend: BackendKind,
    threshold: Duration,
    outcome_from_caller: bool,
}

impl<C> WithSlowQueryLog<C> {
    /// Logs the statements of `backend` taking `threshold` or longer, then runs
    /// `inner` on each new connection.
    pub fn new(inner: C, backend: BackendKind, threshold: Duration) -> Self {
        Self {
            inner,
            backend,
            threshold,
            outcome_from_caller: false,
        }
    }

    /// For a connection whose finished-statement events may lack the statement's
    /// error (Diesel's SQLite connection): a slow statement finished without an
    /// error is logged once the caller knows, see the module documentation.
    pub fn outcome_from_caller(mut self) -> Self {
        self.outcome_from_caller = true;
        self
    }
}

impl<Conn, C> CustomizeConnection<Conn, diesel::r2d2::Error> for WithSlowQueryLog<C>
where
    Conn: Connection,
    C: CustomizeConnection<Conn, diesel::r2d2::Error>,
{
    fn on_acquire(&self, conn: &mut Conn) -> Result<(), diesel::r2d2::Error> {
        conn.set_instrumentation(SlowQueries {
            log: SlowQueryLog::new(self.backend, self.threshold),
            outcome_from_caller: self.outcome_from_caller,
            application: get_default_instrumentation(),
        });
        self.inner.on_acquire(conn)
    }

    fn on_release(&self, conn: Conn) {
        self.inner.on_release(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct DieselLike;
    impl fmt::Display for DieselLike {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // The shape of diesel::debug_query's Display.
            let sql = "SELECT * FROM api_keys WHERE key_hash = $1";
            write!(f, "{sql}{BINDS_MARKER}{:?}", ["deadbeef-hash"])
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
}
