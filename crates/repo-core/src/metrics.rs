//! Metrics in OpenTelemetry's database-client conventions, through the
//! [`metrics`](https://docs.rs/metrics) facade (cargo feature `metrics`).
//!
//! With the feature on, every repository call records its duration, and every pool
//! its connections, to whatever recorder the application installed
//! (`metrics-exporter-prometheus`, an OpenTelemetry bridge, …). Without it, or with no
//! recorder installed, nothing is recorded; the types here stay, as no-ops, so the
//! backends are the same either way.
//!
//! | metric | kind | unit | labels |
//! |---|---|---|---|
//! | [`db.client.operation.duration`](OPERATION_DURATION) | histogram | s | `db.system.name`, `db.collection.name` (absent for `transaction`, `health`, `write_position`), `db.operation.name`, `outcome` |
//! | [`db.client.connection.count`](CONNECTION_COUNT) | gauge | connections | `db.system.name`, `db.client.connection.pool.name`, `db.client.connection.state` (`idle` / `used`) |
//! | [`db.client.connection.max`](CONNECTION_MAX) | gauge | connections | `db.system.name`, `db.client.connection.pool.name` |
//! | [`db.client.connection.pending_requests`](CONNECTION_PENDING_REQUESTS) | gauge | requests | `db.system.name`, `db.client.connection.pool.name` |
//! | [`db.client.connection.timeouts`](CONNECTION_TIMEOUTS) | counter | timeouts | `db.system.name`, `db.client.connection.pool.name` |
//! | [`db.client.connection.wait_time`](CONNECTION_WAIT_TIME) | histogram | s | `db.system.name`, `db.client.connection.pool.name` |
//! | [`db.client.connection.use_time`](CONNECTION_USE_TIME) | histogram | s | `db.system.name`, `db.client.connection.pool.name` |
//!
//! `db.system.name` is `sqlite` or `postgresql`; `db.operation.name` the repository
//! method (`create`, `verify`, `search`, `transaction` …); `db.collection.name` the
//! table it works on (`users`, `api_keys`, `collections`, `collection_permissions`,
//! `operations`, `documents`, `chunks`); `outcome` is `ok` or the error's code
//! (`not_found`, `conflict`, `unavailable` …: OpenTelemetry's `error.type`, with `ok`
//! for success so one label selects both). `db.client.connection.pool.name` names the
//! database without credentials (`host:port/database`, or the SQLite path). No label
//! ever holds an argument of a call or a bound value of a statement.
//!
//! Install the recorder before opening the store: the connection gauges move by
//! increments from the pool's events, so a recorder installed later misses the
//! connections opened before it.

use crate::backend::BackendKind;
use crate::error::RepoError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Histogram of repository-call durations, in seconds.
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// Gauge of the pool's open connections, by `db.client.connection.state`.
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// Gauge of the most connections the pool opens.
pub const CONNECTION_MAX: &str = "db.client.connection.max";
/// Gauge of callers waiting for a connection from the pool.
pub const CONNECTION_PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
/// Counter of checkouts that found no connection within the pool's timeout.
pub const CONNECTION_TIMEOUTS: &str = "db.client.connection.timeouts";
/// Histogram of the time a checkout waited for a connection, in seconds.
pub const CONNECTION_WAIT_TIME: &str = "db.client.connection.wait_time";
/// Histogram of the time a connection stayed checked out, in seconds.
pub const CONNECTION_USE_TIME: &str = "db.client.connection.use_time";

/// Label: the database system, `sqlite` or `postgresql`.
pub const SYSTEM_NAME: &str = "db.system.name";
/// Label: the table a call works on.
pub const COLLECTION_NAME: &str = "db.collection.name";
/// Label: the repository method.
pub const OPERATION_NAME: &str = "db.operation.name";
/// Label: `ok`, or the error code of a failed call.
pub const OUTCOME: &str = "outcome";
/// Label: the pool (the database it connects to, without credentials).
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// Label: `idle` or `used`, on [`CONNECTION_COUNT`].
pub const CONNECTION_STATE: &str = "db.client.connection.state";

/// Whether this build records metrics (the `metrics` feature).
pub const ENABLED: bool = cfg!(feature = "metrics");

/// The `outcome` of a call: `ok`, or the error's code.
pub fn outcome<T>(result: &Result<T, RepoError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// The table a repository method works on (`db.collection.name`), or `None` for the
/// store's own calls (`transaction`, `health`, `write_position`), which span tables.
///
/// The repositories are named after their tables, except that the grants of the
/// collections repository live in `collection_permissions`.
pub fn table_of(repository: &'static str, method: &'static str) -> Option<&'static str> {
    match (repository, method) {
        ("store", _) => None,
        ("collections", "grant" | "revoke_grant" | "list_grants") => Some("collection_permissions"),
        (table, _) => Some(table),
    }
}

/// The pool name of a database target: its host(s), port and database for a URL,
/// without scheme, credentials or parameters (`db.example.com:5432/app`); a SQLite
/// path as it is.
pub fn pool_name<'a>(target: &'a str) -> String {
    let without_query = |s: &'a str| s.split(['?', '#']).next().unwrap_or(s);
    match target.split_once("://") {
        Some((_, rest)) => {
            let rest = without_query(rest);
            // Userinfo ends at the last '@' before the path.
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let start = rest[..authority_end].rfind('@').map_or(0, |at| at + 1);
            rest[start..].to_owned()
        }
        None => without_query(target).to_owned(),
    }
}

/// Records one repository call: [`OPERATION_DURATION`] with its labels. A no-op
/// without the `metrics` feature.
pub fn record_operation(
    backend: BackendKind,
    table: Option<&'static str>,
    method: &'static str,
    outcome: &'static str,
    elapsed: Duration,
) {
    #[cfg(feature = "metrics")]
    {
        let system = backend.db_system_name();
        let seconds = elapsed.as_secs_f64();
        match table {
            Some(table) => ::metrics::histogram!(
                OPERATION_DURATION,
                SYSTEM_NAME => system,
                COLLECTION_NAME => table,
                OPERATION_NAME => method,
                OUTCOME => outcome,
            )
            .record(seconds),
            None => ::metrics::histogram!(
                OPERATION_DURATION,
                SYSTEM_NAME => system,
                OPERATION_NAME => method,
                OUTCOME => outcome,
            )
            .record(seconds),
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, table, method, outcome, elapsed);
}

/// The connection metrics of one pool: the gauges of open (`idle`/`used`), maximum
/// and pending connections, the timeout counter, and the wait and use times.
///
/// A backend builds one per pool, reports the pool's events to it
/// ([`acquired`](Self::acquired), [`checked_out`](Self::checked_out),
/// [`checked_in`](Self::checked_in), [`released`](Self::released),
/// [`timed_out`](Self::timed_out); for r2d2, `repo_diesel::pool_events` does), and
/// wraps each checkout in [`checkout`](Self::checkout) (r2d2 has no event for a caller
/// starting to wait). A connection is idle from its acquisition until its checkout
/// and again from its checkin, used in between. When the pool is gone its gauges go
/// back down. Cheap to clone.
#[derive(Clone)]
pub struct PoolMetrics {
    inner: Arc<PoolGauges>,
}

struct PoolGauges {
    system: &'static str,
    pool: Arc<str>,
    max: u32,
    #[cfg(feature = "metrics")]
    open: Counts,
}

/// What this pool added to the shared gauges, so that dropping it takes exactly that
/// back off (several pools may report under the same labels).
#[cfg(feature = "metrics")]
#[derive(Default)]
struct Counts {
    idle: std::sync::atomic::AtomicI64,
    used: std::sync::atomic::AtomicI64,
}

impl fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolMetrics")
            .field("system", &self.inner.system)
            .field("pool", &self.inner.pool)
            .field("max", &self.inner.max)
            .field("enabled", &ENABLED)
            .finish()
    }
}

impl PoolMetrics {
    /// Metrics of a pool of `backend` named `pool` (see [`pool_name`]) that opens at
    /// most `max` connections.
    pub fn new(backend: BackendKind, pool: &str, max: u32) -> Self {
        let metrics = Self {
            inner: Arc::new(PoolGauges {
                system: backend.db_system_name(),
                pool: Arc::from(pool),
                max,
                #[cfg(feature = "metrics")]
                open: Counts::default(),
            }),
        };
        #[cfg(feature = "metrics")]
        metrics
            .inner
            .gauge(CONNECTION_MAX)
            .increment(f64::from(max));
        metrics
    }

    /// Runs `get` (a checkout) counted in [`CONNECTION_PENDING_REQUESTS`] while it
    /// waits.
    pub fn checkout<T>(&self, get: impl FnOnce() -> T) -> T {
        #[cfg(feature = "metrics")]
        {
            let pending = self.inner.gauge(CONNECTION_PENDING_REQUESTS);
            pending.increment(1.0);
            let out = get();
            pending.decrement(1.0);
            out
        }
        #[cfg(not(feature = "metrics"))]
        get()
    }

    /// A connection was opened: one more idle connection.
    pub fn acquired(&self) {
        #[cfg(feature = "metrics")]
        self.inner.shift("idle", 1);
    }

    /// A connection that was back in the pool was closed (reaped, failed its test,
    /// or broken): one idle connection less.
    pub fn released(&self) {
        #[cfg(feature = "metrics")]
        self.inner.shift("idle", -1);
    }

    /// A caller got a connection after waiting `wait`: it moves from idle to used.
    pub fn checked_out(&self, wait: Duration) {
        self.moved("idle", "used", CONNECTION_WAIT_TIME, wait);
    }

    /// A connection went back to the pool after being used for `used`.
    pub fn checked_in(&self, used: Duration) {
        self.moved("used", "idle", CONNECTION_USE_TIME, used);
    }

    /// A connection moved from state `from` to `to`; `histogram` records `took`.
    fn moved(&self, from: &'static str, to: &'static str, histogram: &'static str, took: Duration) {
        #[cfg(feature = "metrics")]
        {
            let gauges = &self.inner;
            gauges.shift(from, -1);
            gauges.shift(to, 1);
            gauges.histogram(histogram).record(took.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (from, to, histogram, took);
    }

    /// A checkout found no connection within the pool's timeout. Touches nothing but
    /// the counter (r2d2 reports it with the pool's lock held).
    pub fn timed_out(&self) {
        #[cfg(feature = "metrics")]
        ::metrics::counter!(
            CONNECTION_TIMEOUTS,
            SYSTEM_NAME => self.inner.system,
            POOL_NAME => Arc::clone(&self.inner.pool),
        )
        .increment(1);
    }
}

#[cfg(feature = "metrics")]
impl PoolGauges {
    fn gauge(&self, name: &'static str) -> ::metrics::Gauge {
        ::metrics::gauge!(name, SYSTEM_NAME => self.system, POOL_NAME => Arc::clone(&self.pool))
    }

    fn connections(&self, state: &'static str) -> ::metrics::Gauge {
        ::metrics::gauge!(
            CONNECTION_COUNT,
            SYSTEM_NAME => self.system,
            POOL_NAME => Arc::clone(&self.pool),
            CONNECTION_STATE => state,
        )
    }

    /// Moves the `state` gauge by `delta` and remembers it.
    fn shift(&self, state: &'static str, delta: i64) {
        use std::sync::atomic::Ordering;
        let count = match state {
            "idle" => &self.open.idle,
            _ => &self.open.used,
        };
        count.fetch_add(delta, Ordering::Relaxed);
        // Counts are tiny (≤ the pool size), so the cast is exact.
        self.connections(state).increment(delta as f64);
    }

    fn histogram(&self, name: &'static str) -> ::metrics::Histogram {
        ::metrics::histogram!(name, SYSTEM_NAME => self.system, POOL_NAME => Arc::clone(&self.pool))
    }
}

impl Drop for PoolGauges {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        {
            use std::sync::atomic::Ordering;
            self.gauge(CONNECTION_MAX).decrement(f64::from(self.max));
            for (state, count) in [("idle", &self.open.idle), ("used", &self.open.used)] {
                let left = count.swap(0, Ordering::Relaxed);
                if left != 0 {
                    self.connections(state).decrement(left as f64);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_carry_no_credentials() {
        assert_eq!(
            pool_name("postgres://app:s3cret@db.example.com:5432/semantik?sslmode=require"),
            "db.example.com:5432/semantik"
        );
        assert_eq!(
            pool_name("postgresql://u:***@h1:5432,h2:5433/app"),
            "h1:5432,h2:5433/app"
        );
        assert_eq!(
            pool_name("sqlite:///var/lib/smtk.sqlite3"),
            "/var/lib/smtk.sqlite3"
        );
        assert_eq!(pool_name("/tmp/a@b/x.db"), "/tmp/a@b/x.db");
        assert_eq!(pool_name(":memory:"), ":memory:");
        assert_eq!(pool_name("dir@host/x.db"), "dir@host/x.db");
        assert_eq!(pool_name("file:/tmp/x.db?mode=rwc"), "file:/tmp/x.db");
    }

    #[test]
    fn tables_follow_the_repositories() {
        assert_eq!(table_of("users", "create"), Some("users"));
        assert_eq!(
            table_of("collections", "grant"),
            Some("collection_permissions")
        );
        assert_eq!(table_of("collections", "create"), Some("collections"));
        assert_eq!(table_of("store", "transaction"), None);
    }
}
