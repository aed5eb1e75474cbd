//! The slow-query log: times the statements of one connection and logs those slower
//! than a threshold ([`SlowQueryLog`]). Backend-agnostic: a backend feeds it from its
//! driver's instrumentation and hands it the statement text without bound values
//! (for Diesel, `repo_diesel::observe` does both).

use crate::backend::BackendKind;
use std::time::{Duration, Instant};

/// Times the statements of one connection and logs those slower than a threshold.
///
/// Backends feed it from their driver's instrumentation (Diesel's, through
/// `repo_diesel::observe`): [`start`](Self::start) when a statement starts,
/// [`finish`](Self::finish) when it finishes. The WARN event (target
/// `repo_core::slow_query`) has the fields `backend`, `elapsed_ms`, `threshold_ms`,
/// `failed` and `sql`. The SQL is the statement text only: the backend's `sql`
/// closure must leave bound values (API-key hashes, user text) out.
#[derive(Debug, Clone)]
pub struct SlowQueryLog {
    backend: BackendKind,
    threshold: Duration,
    started: Option<Instant>,
}

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

    /// The statement that last started has finished; `sql` gives its text without
    /// bound values, and is called only when the statement was slow.
    pub fn finish(&mut self, sql: impl FnOnce() -> String, failed: bool) {
        if let Some(slow) = self.finish_unlogged(sql) {
            slow.log(failed);
        }
    }

    /// Like [`finish`](Self::finish) for a statement whose outcome is not known yet:
    /// returns it, when it was slow, for the caller to [`log`](SlowStatement::log)
    /// once it knows. (Diesel's SQLite connection reports a statement that returns
    /// rows as finished without its error, which only the caller sees.)
    pub fn finish_unlogged(&mut self, sql: impl FnOnce() -> String) -> Option<SlowStatement> {
        let elapsed = self.started.take()?.elapsed();
        (elapsed >= self.threshold).then(|| SlowStatement {
            backend: self.backend,
            elapsed,
            threshold: self.threshold,
            sql: sql(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_log::captured;

    #[test]
    fn only_slow_statements_are_logged_and_formatted() {
        let text = captured(|| {
            let mut log = SlowQueryLog::new(BackendKind::Sqlite, Duration::ZERO);
            log.start();
            log.finish(
                || "SELECT * FROM api_keys WHERE key_hash = $1".into(),
                false,
            );
            let mut quiet = SlowQueryLog::new(BackendKind::Sqlite, Duration::from_secs(60));
            quiet.start();
            quiet.finish(|| unreachable!("a fast statement is not formatted"), false);
            // A finish without a start (the log was off when it started) logs nothing.
            log.finish(|| unreachable!("never started"), true);
        });
        assert!(text.contains("slow query"), "{text}");
        assert!(text.contains("WHERE key_hash = $1"), "{text}");
        assert!(text.contains("failed=false"), "{text}");
    }
}
