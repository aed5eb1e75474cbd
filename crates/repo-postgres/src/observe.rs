//! Diesel connection instrumentation: feeds every statement of a pooled connection to
//! the backend-agnostic [`SlowQueryLog`] of `repo-core`.

use diesel::connection::{get_default_instrumentation, Instrumentation, InstrumentationEvent};
use diesel::pg::PgConnection;
use diesel::r2d2::CustomizeConnection;
use diesel::Connection;
use repo_core::{BackendKind, SlowQueryLog};
use std::time::Duration;

/// Times each statement of one connection (Diesel calls it on the connection's thread),
/// and passes every event on to the instrumentation the application installed with
/// `diesel::connection::set_default_instrumentation`, which a connection carries from
/// birth and which `set_instrumentation` would otherwise replace.
struct SlowQueries {
    log: SlowQueryLog,
    application: Option<Box<dyn Instrumentation>>,
}

impl Instrumentation for SlowQueries {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::StartQuery { .. } => self.log.start(),
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                self.log.finish(query, error.is_some())
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

impl<C> CustomizeConnection<PgConnection, diesel::r2d2::Error> for WithSlowQueryLog<C>
where
    C: CustomizeConnection<PgConnection, diesel::r2d2::Error>,
{
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        // Installed first, so the session settings statement is timed too.
        conn.set_instrumentation(SlowQueries {
            log: SlowQueryLog::new(BackendKind::Postgres, self.threshold),
            application: get_default_instrumentation(),
        });
        self.inner.on_acquire(conn)
    }
}
