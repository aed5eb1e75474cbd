//! What r2d2 reports of a pool, passed on to `repo-core`: its events to the pool's
//! [`PoolMetrics`] (the connection gauges, the timeout counter and the wait/use
//! histograms of the `metrics` feature), its failed connection attempts to the
//! store's [`ConnectionErrors`] ([`RecordErrors`]).

use repo_core::metrics::{PoolMetrics, ENABLED};
use repo_core::postgres_url::scrub_secrets;
use repo_core::ConnectionErrors;
use std::fmt;
use std::sync::Arc;

/// The r2d2 event handler that reports the pool's events to `metrics`; r2d2's no-op
/// handler when this build records no metrics (without `repo-core`'s `metrics`
/// feature), so the events cost nothing then.
pub fn event_handler(metrics: &PoolMetrics) -> Box<dyn r2d2::HandleEvent> {
    if ENABLED {
        Box::new(PoolEvents(metrics.clone()))
    } else {
        Box::new(r2d2::NopEventHandler)
    }
}

/// r2d2 reports acquire, checkout, checkin, release and timeout; it releases only
/// connections that are back in the pool (reaped, failed their test, or broken).
#[derive(Debug)]
struct PoolEvents(PoolMetrics);

impl r2d2::HandleEvent for PoolEvents {
    fn handle_acquire(&self, _: r2d2::event::AcquireEvent) {
        self.0.acquired();
    }

    fn handle_release(&self, _: r2d2::event::ReleaseEvent) {
        self.0.released();
    }

    fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
        self.0.checked_out(event.duration());
    }

    fn handle_checkin(&self, event: r2d2::event::CheckinEvent) {
        self.0.checked_in(event.duration());
    }

    fn handle_timeout(&self, _: r2d2::event::TimeoutEvent) {
        // Called with the pool's lock held: touch nothing of the pool here.
        self.0.timed_out();
    }
}

/// r2d2's error handler of a pool: records each failed connection attempt in the
/// store's [`ConnectionErrors`] (the last one explains later checkout errors; the log
/// is rate-limited), with the secrets of the database URL replaced by `***` first.
pub struct RecordErrors {
    errors: Arc<ConnectionErrors>,
    secrets: Vec<String>,
}

impl RecordErrors {
    /// Records into `errors`, scrubbing `secrets` (none for a SQLite path; for a URL,
    /// `repo_core::postgres_url::url_secrets`).
    pub fn new(errors: Arc<ConnectionErrors>, secrets: Vec<String>) -> Self {
        Self { errors, secrets }
    }
}

impl fmt::Debug for RecordErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordErrors")
    }
}

impl<E: fmt::Display> r2d2::HandleError<E> for RecordErrors {
    fn handle_error(&self, error: E) {
        self.errors
            .record(&scrub_secrets(error.to_string(), &self.secrets));
    }
}
