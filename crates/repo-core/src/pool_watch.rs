//! The pool as the store watches it: its connection counts ([`PoolStatus`]), the
//! pool-pressure warning ([`PoolWatch`]) and the memory of failed connection
//! attempts ([`ConnectionErrors`]). Backend-agnostic: the backends feed them from
//! their pools.

use crate::backend::BackendKind;
use crate::error::RepoError;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

    /// Whether every connection the pool may open is open and checked out: a checkout
    /// that timed out then met a pool too small (`PoolExhausted`), not connections
    /// that could not be opened (`ConnectionFailed`).
    pub fn is_exhausted(&self) -> bool {
        self.open >= self.max && self.idle == 0
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
    use crate::test_log::captured;

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

    #[test]
    fn pressure_is_over_ninety_percent() {
        assert!(!PoolStatus::from_counts(10, 10, 1).is_under_pressure());
        assert!(PoolStatus::from_counts(10, 10, 0).is_under_pressure());
        assert!(PoolStatus::from_counts(1, 1, 0).is_under_pressure());
        assert!(!PoolStatus::from_counts(20, 18, 0).is_under_pressure());
        assert!(PoolStatus::from_counts(20, 19, 0).is_under_pressure());
        assert_eq!(PoolStatus::from_counts(4, 2, 3).in_use, 0);
        assert!(PoolStatus::from_counts(4, 4, 0).is_exhausted());
        assert!(!PoolStatus::from_counts(4, 4, 1).is_exhausted());
        assert!(!PoolStatus::from_counts(4, 3, 0).is_exhausted());
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
}
