//! The r2d2 pool: per-connection PRAGMAs and pool settings from [`PoolConfig`].

use crate::error::{map_connection_error, map_diesel_error};
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, SqliteConnection};
use repo_core::metrics::PoolMetrics;
use repo_core::{
    redact_url, BackendKind, ConnectionErrors, PoolConfig, RepoError, RepoResult, SqliteConfig,
    UnavailableReason,
};
use repo_diesel::observe::WithSlowQueryLog;
use repo_diesel::pool_check::{CustomizeChecked, IdleCheckManager};
use repo_diesel::pool_events::RecordErrors;
use std::sync::Arc;
use std::time::Duration;

/// The connection manager: Diesel's, pre-pinging only connections idle for at least
/// `PoolConfig::pre_ping_idle` (a SQLite connection has no server to lose, so unlike
/// repo-postgres no call marks its connection suspect).
pub(crate) type SqliteManager = IdleCheckManager<ConnectionManager<SqliteConnection>>;
/// The pool type of the store.
pub(crate) type SqlitePool = Pool<SqliteManager>;

/// What a connection target opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    /// A file (path or `file:` URI naming a file).
    File,
    /// An in-memory database (`:memory:`, `file::memory:…`, `file:…?mode=memory`).
    Memory,
}

/// Classifies a target the way SQLite's open does.
pub(crate) fn classify(target: &str) -> RepoResult<TargetKind> {
    if target.trim().is_empty() {
        // SQLite opens a private temporary database per connection for "": never
        // what a caller wants from a pool.
        return Err(RepoError::config(
            "empty SQLite target: give a path, `:memory:` or a `file:` URI",
        ));
    }
    let uri = target
        .strip_prefix("sqlite://")
        .map(|rest| format!("file:{rest}"));
    let uri = uri.as_deref().unwrap_or(target);
    if uri == ":memory:" {
        return Ok(TargetKind::Memory);
    }
    if let Some(rest) = uri.strip_prefix("file:") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = path.split('#').next().unwrap_or(path);
        let memory_mode = query
            .split('&')
            .any(|pair| pair.eq_ignore_ascii_case("mode=memory"));
        if path == ":memory:" || memory_mode {
            return Ok(TargetKind::Memory);
        }
    }
    Ok(TargetKind::File)
}

/// Runs the PRAGMAs of every pooled connection, one statement each, and registers
/// the SQL functions the store's statements call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqlitePragmas {
    busy_timeout_ms: u64,
    wal: bool,
}

impl SqlitePragmas {
    /// PRAGMAs for `kind` under `config`.
    pub(crate) fn new(kind: TargetKind, config: &SqliteConfig) -> Self {
        Self {
            busy_timeout_ms: u64::try_from(config.busy_timeout.as_millis()).unwrap_or(u64::MAX),
            // An in-memory database has no WAL; the PRAGMA would report "memory".
            wal: kind == TargetKind::File,
        }
    }

    /// The same PRAGMAs for a connection that only reads: the journal mode stays as
    /// the file has it (switching to WAL writes the file).
    pub(crate) fn for_reading(self) -> Self {
        Self { wal: false, ..self }
    }

    /// Applies the PRAGMAs to `conn`.
    pub(crate) fn apply(&self, conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        // PRAGMAs take no bind parameters; the value is an integer from the typed
        // configuration, never caller text.
        conn.batch_execute(&format!("PRAGMA busy_timeout = {}", self.busy_timeout_ms))?;
        if self.wal {
            conn.batch_execute("PRAGMA journal_mode = WAL")?;
        }
        conn.batch_execute("PRAGMA synchronous = NORMAL")?;
        conn.batch_execute("PRAGMA foreign_keys = ON")?;
        // The SQL function search ranks by.
        crate::sql_functions::register(conn)
    }
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Pool size actually used: a pooled in-memory database must be one connection,
/// because every SQLite connection to `:memory:` opens its own empty database.
pub(crate) fn effective_max_size(kind: TargetKind, pool: &PoolConfig) -> u32 {
    match kind {
        TargetKind::Memory => 1,
        TargetKind::File => pool.max_size(),
    }
}

/// Opens one connection outside the pool with the PRAGMAs applied: turns a file into
/// WAL mode before several pooled connections race to do it, and reports an unusable
/// target precisely (r2d2 would only time out). Also the connection of
/// [`crate::connect_standalone`].
pub(crate) fn probe(target: &str, pragmas: SqlitePragmas) -> RepoResult<SqliteConnection> {
    let mut conn = SqliteConnection::establish(target)
        .map_err(|e| map_connection_error(e, &redact_url(target)))?;
    pragmas
        .apply(&mut conn)
        .map(|()| conn)
        .map_err(|e| match map_diesel_error(e) {
            RepoError::Backend { message, source } => RepoError::Unavailable {
                reason: UnavailableReason::ConnectionFailed,
                message: format!(
                    "cannot prepare SQLite database {}: {message}",
                    redact_url(target)
                ),
                source,
            },
            other => other,
        })
}

/// Builds the pool for `target`; its connection failures go to `errors`, its events
/// to `metrics`.
pub(crate) fn build(
    target: &str,
    kind: TargetKind,
    pool: &PoolConfig,
    sqlite: &SqliteConfig,
    slow_query_threshold: Duration,
    errors: Arc<ConnectionErrors>,
    metrics: &PoolMetrics,
) -> RepoResult<SqlitePool> {
    let pragmas = SqlitePragmas::new(kind, sqlite);
    probe(target, pragmas)?;
    let max_size = effective_max_size(kind, pool);
    let builder = Pool::builder()
        .max_size(max_size)
        .connection_timeout(nonzero(pool.connection_timeout))
        .test_on_check_out(pool.pre_ping)
        .connection_customizer(Box::new(CustomizeChecked(
            WithSlowQueryLog::new(pragmas, BackendKind::Sqlite, slow_query_threshold)
                .outcome_from_caller(),
        )))
        .error_handler(Box::new(RecordErrors::new(errors, Vec::new())))
        .event_handler(repo_diesel::pool_events::event_handler(metrics));
    let builder = match kind {
        // The one connection *is* the database: never recycle or reap it.
        TargetKind::Memory => builder
            .min_idle(Some(1))
            .max_lifetime(None)
            .idle_timeout(None),
        TargetKind::File => builder
            .min_idle(Some(pool.min_idle().min(max_size)))
            .max_lifetime(pool.max_lifetime),
    };
    builder
        .build(IdleCheckManager::new(
            ConnectionManager::<SqliteConnection>::new(target),
            pool.pre_ping_idle,
        ))
        .map_err(|e| RepoError::Unavailable {
            reason: UnavailableReason::ConnectionFailed,
            message: format!(
                "cannot open the connection pool for SQLite database {}: {e}",
                redact_url(target)
            ),
            source: Some(Box::new(e)),
        })
}

/// r2d2 panics on a zero connection timeout.
fn nonzero(timeout: Duration) -> Duration {
    timeout.max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_targets() {
        assert_eq!(classify(":memory:").ok(), Some(TargetKind::Memory));
        assert_eq!(
            classify("file::memory:?cache=shared").ok(),
            Some(TargetKind::Memory)
        );
        assert_eq!(
            classify("file:db1?mode=memory&cache=shared").ok(),
            Some(TargetKind::Memory)
        );
        assert_eq!(classify("/tmp/x.db").ok(), Some(TargetKind::File));
        assert_eq!(
            classify("file:/tmp/x.db?mode=rwc").ok(),
            Some(TargetKind::File)
        );
        assert!(classify("").is_err());
    }
}
