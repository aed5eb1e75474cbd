//! r2d2's view of a pool, reported to the pool's [`PoolMetrics`] (the connection
//! gauges, the timeout counter and the wait/use histograms of `repo-core`'s
//! `metrics` feature).

use repo_core::metrics::{PoolMetrics, ENABLED};

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
