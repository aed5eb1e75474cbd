//! The r2d2 pool: per-connection session settings, sizing, and checkout errors.

use crate::error::{map_checkout_error, map_connection_error, map_diesel_error, scrub_error};
use crate::observe::WithSlowQueryLog;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, HandleError, Pool, PooledConnection};
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};
use repo_core::instrument::POOL_WARNING_INTERVAL;
use repo_core::pool_check::{CustomizeChecked, IdleCheckManager};
use repo_core::store::{UnitOfWorkMarker, UnitOfWorkOpen};
use repo_core::{
    BackendKind, ConnectionErrors, PoolConfig, PoolStatus, PoolWatch, PostgresConfig, RepoError,
    RepoResult,
};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The connection manager: Diesel's, pre-pinging only idle or suspect connections.
pub(crate) type PgManager = IdleCheckManager<ConnectionManager<PgConnection>>;
/// The pool type of the store.
pub(crate) type PgPool = Pool<PgManager>;
/// A connection checked out of [`PgPool`]; derefs to `PgConnection`.
pub(crate) type PgPooled = PooledConnection<PgManager>;

/// Session settings applied once to every connection the pool opens.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    statement_timeout_ms: String,
    lock_timeout_ms: String,
    idle_in_transaction_timeout_ms: String,
    application_name: String,
}

impl SessionSettings {
    pub(crate) fn new(config: &PostgresConfig) -> Self {
        let ms = |d: Duration| d.as_millis().min(i32::MAX as u128).to_string();
        Self {
            statement_timeout_ms: ms(config.statement_timeout),
            lock_timeout_ms: ms(config.lock_timeout),
            idle_in_transaction_timeout_ms: ms(config.idle_in_transaction_timeout),
            application_name: config.application_name.clone(),
        }
    }

    /// One round trip, every value a bound parameter.
    pub(crate) fn apply(&self, conn: &mut PgConnection) -> diesel::QueryResult<()> {
        diesel::sql_query(
            "SELECT set_config('statement_timeout', $1, false), \
                    set_config('lock_timeout', $2, false), \
                    set_config('idle_in_transaction_session_timeout', $3, false), \
                    set_config('application_name', $4, false), \
                    set_config('TimeZone', $5, false)",
        )
        .bind::<Text, _>(&self.statement_timeout_ms)
        .bind::<Text, _>(&self.lock_timeout_ms)
        .bind::<Text, _>(&self.idle_in_transaction_timeout_ms)
        .bind::<Text, _>(&self.application_name)
        .bind::<Text, _>("UTC")
        .execute(conn)
        .map(|_| ())
    }
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Records background connection failures of the pool with the password scrubbed
/// (the last one explains later checkout errors; the log is rate-limited).
#[derive(Clone)]
struct RedactingErrorHandler {
    secrets: Vec<String>,
    errors: Arc<ConnectionErrors>,
}

impl std::fmt::Debug for RedactingErrorHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactingErrorHandler")
    }
}

impl HandleError<diesel::r2d2::Error> for RedactingErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        self.errors
            .record(&crate::error::scrub(error.to_string(), &self.secrets));
    }
}

/// A pool plus what is needed to explain its failures.
pub(crate) struct ConnectionPool {
    pool: PgPool,
    settings: SessionSettings,
    max_size: u32,
    redacted_url: String,
    secrets: Vec<String>,
    watch: PoolWatch,
    unit_of_work: UnitOfWorkMarker,
    errors: Arc<ConnectionErrors>,
}

impl ConnectionPool {
    /// Builds the pool without waiting for connections (so a down server cannot make
    /// this hang), then proves the server answers with one connection opened within
    /// `connection_timeout`.
    pub(crate) fn open(
        url: &str,
        pool: &PoolConfig,
        settings: SessionSettings,
        redacted_url: String,
        secrets: Vec<String>,
        slow_query_threshold: Duration,
    ) -> RepoResult<Self> {
        // r2d2 panics on a zero timeout; a zero lifetime means "never" in PoolConfig.
        if pool.connection_timeout.is_zero() {
            return Err(RepoError::config(
                "the pool connection timeout (DB_POOL_TIMEOUT) must be positive",
            ));
        }
        probe(url, pool.connection_timeout, &settings, &redacted_url)
            .map_err(|e| scrub_error(e, &secrets))?;
        Ok(Self::build(
            url,
            pool,
            settings,
            redacted_url,
            secrets,
            slow_query_threshold,
        ))
    }

    /// Builds the pool without waiting for, or proving, any connection: connections
    /// open on first use (a replica that is down at start is used once it is up).
    pub(crate) fn build(
        url: &str,
        pool: &PoolConfig,
        settings: SessionSettings,
        redacted_url: String,
        secrets: Vec<String>,
        slow_query_threshold: Duration,
    ) -> Self {
        let max_lifetime = pool.max_lifetime.filter(|l| !l.is_zero());
        let max_size = pool.max_size();
        let errors = Arc::new(ConnectionErrors::new(
            BackendKind::Postgres,
            POOL_WARNING_INTERVAL,
        ));
        let built = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(pool.min_idle()))
            .connection_timeout(pool.connection_timeout)
            .max_lifetime(max_lifetime)
            .test_on_check_out(pool.pre_ping)
            .connection_customizer(Box::new(CustomizeChecked(WithSlowQueryLog {
                inner: settings.clone(),
                threshold: slow_query_threshold,
            })))
            .error_handler(Box::new(RedactingErrorHandler {
                secrets: secrets.clone(),
                errors: Arc::clone(&errors),
            }))
            .build_unchecked(
                IdleCheckManager::new(ConnectionManager::new(url), pool.pre_ping_idle)
                    .presuming_dead(presumed_dead),
            );
        Self {
            pool: built,
            settings,
            max_size,
            redacted_url,
            secrets,
            watch: PoolWatch::new(BackendKind::Postgres, POOL_WARNING_INTERVAL),
            unit_of_work: UnitOfWorkMarker::new(),
            errors,
        }
    }

    /// Checks a connection out, telling an exhausted pool from an unreachable server.
    /// Refused inside a unit of work of this pool on the calling thread.
    pub(crate) fn get(&self) -> RepoResult<PgPooled> {
        self.unit_of_work.check()?;
        self.checkout(self.pool.get())
    }

    /// Like [`get`](Self::get), waiting at most `timeout` for a connection.
    pub(crate) fn get_within(&self, timeout: Duration) -> RepoResult<PgPooled> {
        self.unit_of_work.check()?;
        self.checkout(self.pool.get_timeout(timeout))
    }

    fn checkout(&self, attempt: Result<PgPooled, diesel::r2d2::PoolError>) -> RepoResult<PgPooled> {
        let conn = attempt.map_err(|error| {
            let state = self.pool.state();
            let exhausted = state.connections >= self.max_size && state.idle_connections == 0;
            self.errors.explain(scrub_error(
                map_checkout_error(error, exhausted, self.max_size, &self.redacted_url),
                &self.secrets,
            ))
        })?;
        self.watch.observe(|| self.status());
        Ok(conn)
    }

    /// Most connections the pool opens.
    pub(crate) fn max_size(&self) -> u32 {
        self.max_size
    }

    /// The pool's connection errors (last one, rate-limited log).
    pub(crate) fn errors(&self) -> &ConnectionErrors {
        &self.errors
    }

    /// Marks a unit of work of this pool open on the calling thread.
    pub(crate) fn enter_unit_of_work(&self) -> UnitOfWorkOpen {
        self.unit_of_work.enter()
    }

    /// The pool's connection counts now.
    pub(crate) fn status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus::from_counts(self.max_size, state.connections, state.idle_connections)
    }

    /// Scrubs the password out of an error's messages.
    pub(crate) fn scrub(&self, error: RepoError) -> RepoError {
        scrub_error(error, &self.secrets)
    }

    /// The session settings every pooled connection gets.
    pub(crate) fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// Open and idle connections, for diagnostics.
    pub(crate) fn state(&self) -> diesel::r2d2::State {
        self.pool.state()
    }

    /// The URL with its password replaced by `***`.
    pub(crate) fn redacted_url(&self) -> &str {
        &self.redacted_url
    }
}

/// The error of a pooled connection that is not tested because an older test failed
/// (see [`IdleCheckManager::presuming_dead`]).
fn presumed_dead() -> diesel::r2d2::Error {
    diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(
        "connection presumed dead: a connection idle for as long failed its test".into(),
    ))
}

/// Warns once (target `repo_postgres::pool`) when the pool may open more connections
/// than the server accepts from ordinary roles (`max_connections` minus
/// `superuser_reserved_connections` and, from PostgreSQL 16, `reserved_connections`):
/// under load such a pool takes every connection of the server (other clients then
/// get "too many clients") and still waits. A warning, not a refusal: other settings
/// (several processes, a pooler in front) change the real budget either way. Returns
/// the server's budget.
pub(crate) fn warn_if_larger_than_server(
    conn: &mut PgConnection,
    max_size: u32,
) -> RepoResult<i32> {
    #[derive(diesel::QueryableByName)]
    struct Budget {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        available: i32,
    }
    let available = diesel::sql_query(
        "SELECT current_setting('max_connections')::int \
              - current_setting('superuser_reserved_connections')::int \
              - coalesce(current_setting('reserved_connections', true)::int, 0) AS available",
    )
    .get_result::<Budget>(conn)
    .map_err(map_diesel_error)?
    .available;
    if i64::from(max_size) > i64::from(available) {
        tracing::warn!(
            target: "repo_postgres::pool",
            pool_max = max_size,
            server_available = available,
            "the pool may open {max_size} connections but the server accepts {available} \
             (max_connections - superuser_reserved_connections - reserved_connections): \
             lower DB_POOL_SIZE + DB_MAX_OVERFLOW, or raise max_connections",
        );
    }
    Ok(available)
}

/// Opens one connection on a helper thread, waiting at most `timeout` for it (libpq
/// has no connect timeout by default, and an unroutable host would block for minutes).
fn probe(
    url: &str,
    timeout: Duration,
    settings: &SessionSettings,
    redacted_url: &str,
) -> RepoResult<()> {
    let (tx, rx) = mpsc::channel();
    let owned_url = url.to_owned();
    let settings = settings.clone();
    let spawned = std::thread::Builder::new()
        .name("repo-postgres-probe".into())
        .spawn(move || {
            let result = PgConnection::establish(&owned_url)
                .map_err(Probe::Connect)
                .and_then(|mut conn| settings.apply(&mut conn).map_err(Probe::Query));
            // The receiver may have given up waiting; nothing to do then.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(RepoError::Backend {
            message: format!("could not start the connection probe thread: {e}"),
            source: Some(Box::new(e)),
        });
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Probe::Connect(e))) => Err(map_connection_error(e, redacted_url)),
        Ok(Err(Probe::Query(e))) => Err(map_diesel_error(e)),
        Err(_) => Err(RepoError::Unavailable {
            reason: repo_core::UnavailableReason::ConnectionFailed,
            message: format!(
                "connection failed: no connection to {redacted_url} within {timeout:?}"
            ),
            source: None,
        }),
    }
}

enum Probe {
    Connect(diesel::ConnectionError),
    Query(diesel::result::Error),
}
