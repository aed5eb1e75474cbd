//! The r2d2 pool: per-connection session settings, sizing, and checkout errors.

use crate::error::{map_checkout_error, map_connection_error, map_diesel_error, scrub_error};
use diesel::connection::CacheSize;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};
use repo_core::instrument::POOL_WARNING_INTERVAL;
use repo_core::metrics::PoolMetrics;
use repo_core::store::{UnitOfWorkMarker, UnitOfWorkOpen};
use repo_core::{
    BackendKind, ConnectionErrors, PoolConfig, PoolStatus, PoolWatch, PostgresConfig, RepoError,
    RepoResult,
};
use repo_diesel::connection::TxError;
use repo_diesel::observe::WithSlowQueryLog;
use repo_diesel::pool_check::{finish_call, CustomizeChecked, IdleCheckManager};
use repo_diesel::pool_events::RecordErrors;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The connection manager: Diesel's, pre-pinging only idle or suspect connections.
pub(crate) type PgManager = IdleCheckManager<ConnectionManager<PgConnection>>;
/// The pool type of the store.
pub(crate) type PgPool = Pool<PgManager>;
/// A connection checked out of [`PgPool`]; derefs to `PgConnection`.
pub(crate) type PgPooled = PooledConnection<PgManager>;

/// The settings of every connection the pool opens: once per session, or, in
/// transaction-pooler mode, at the start of every transaction.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    statement_timeout_ms: String,
    lock_timeout_ms: String,
    idle_in_transaction_timeout_ms: String,
    application_name: String,
    /// Transaction-pooler mode ([`PostgresConfig::pgbouncer`]).
    pooler: bool,
    /// `BEGIN` with the settings as `SET LOCAL`, for pooler mode.
    begin_sql: String,
}

impl SessionSettings {
    pub(crate) fn new(config: &PostgresConfig) -> Self {
        let ms = |d: Duration| d.as_millis().min(i32::MAX as u128).to_string();
        let statement_timeout_ms = ms(config.statement_timeout);
        let lock_timeout_ms = ms(config.lock_timeout);
        let idle_in_transaction_timeout_ms = ms(config.idle_in_transaction_timeout);
        // Sent as one simple-protocol message: one round trip, nothing prepared. The
        // values are integers rendered here, never text from outside.
        let begin_sql = format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; \
             SET LOCAL statement_timeout = {statement_timeout_ms}; \
             SET LOCAL lock_timeout = {lock_timeout_ms}; \
             SET LOCAL idle_in_transaction_session_timeout = {idle_in_transaction_timeout_ms}; \
             SET LOCAL TimeZone = 'UTC'"
        );
        Self {
            statement_timeout_ms,
            lock_timeout_ms,
            idle_in_transaction_timeout_ms,
            application_name: config.application_name.clone(),
            pooler: config.pgbouncer,
            begin_sql,
        }
    }

    /// Whether the store runs in transaction-pooler mode.
    pub(crate) fn pooler(&self) -> bool {
        self.pooler
    }

    /// Prepares a fresh connection. Session mode: the settings, in one round trip,
    /// every value a bound parameter. Pooler mode: Diesel's prepared-statement cache
    /// off (each statement is then one unnamed Parse/Bind/Execute/Sync, which a
    /// transaction pooler keeps on one server connection), and no session state.
    pub(crate) fn apply(&self, conn: &mut PgConnection) -> diesel::QueryResult<()> {
        if self.pooler {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
            return Ok(());
        }
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

/// Runs `f` in a top-level `READ COMMITTED` transaction.
pub(crate) fn read_committed<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    conn.build_transaction()
        .read_committed()
        .run::<T, TxError, _>(|c| f(c).map_err(TxError::Repo))
        .map_err(|e| e.into_repo(map_diesel_error))
}

/// Runs `f` in a top-level transaction whose `BEGIN` carries `begin_sql` (one round
/// trip), then commits, or rolls back when `f` fails. Diesel's transaction manager
/// keeps track, so transactions that `f` opens become savepoints.
pub(crate) fn transaction_with<T>(
    conn: &mut PgConnection,
    begin_sql: &str,
    f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    if let Err(error) = AnsiTransactionManager::begin_transaction_sql(conn, begin_sql) {
        // A batch that failed after its BEGIN leaves the server in a transaction that
        // Diesel does not know about: end it, or the next call would run inside it.
        let _ = diesel::connection::SimpleConnection::batch_execute(conn, "ROLLBACK");
        return Err(map_diesel_error(error));
    }
    match f(conn) {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).map_err(map_diesel_error)?;
            Ok(value)
        }
        Err(error) => match AnsiTransactionManager::rollback_transaction(conn) {
            // The original error tells more than a failed rollback.
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(error),
            Err(rollback) => Err(map_diesel_error(rollback)),
        },
    }
}

impl SessionSettings {
    /// Pooler mode: runs `f` in a `READ COMMITTED` transaction that sets the
    /// timeouts and the time zone for itself only (`SET LOCAL`), so they hold for
    /// every statement of `f` on whichever server connection the pooler picked, and
    /// leak to no other client.
    pub(crate) fn pooled_transaction<T>(
        &self,
        conn: &mut PgConnection,
        f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
    ) -> RepoResult<T> {
        transaction_with(conn, &self.begin_sql, f)
    }
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        self.apply(conn).map_err(diesel::r2d2::Error::QueryError)
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
    metrics: PoolMetrics,
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
        let errors = Arc::new(
            ConnectionErrors::new(BackendKind::Postgres, POOL_WARNING_INTERVAL)
                .naming(redacted_url.clone()),
        );
        let metrics = PoolMetrics::new(
            BackendKind::Postgres,
            &repo_core::metrics::pool_name(&redacted_url),
            max_size,
        );
        let built = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(pool.min_idle()))
            .connection_timeout(pool.connection_timeout)
            .max_lifetime(max_lifetime)
            .test_on_check_out(pool.pre_ping)
            .connection_customizer(Box::new(CustomizeChecked(WithSlowQueryLog::new(
                settings.clone(),
                BackendKind::Postgres,
                slow_query_threshold,
            ))))
            .error_handler(Box::new(RecordErrors::new(
                Arc::clone(&errors),
                secrets.clone(),
            )))
            .event_handler(repo_diesel::pool_events::event_handler(&metrics))
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
            metrics,
            unit_of_work: UnitOfWorkMarker::new(),
            errors,
        }
    }

    /// Checks a connection out, telling an exhausted pool from an unreachable server.
    /// Refused inside a unit of work of this pool on the calling thread.
    pub(crate) fn get(&self) -> RepoResult<PgPooled> {
        self.unit_of_work.check()?;
        self.checkout(self.metrics.checkout(|| self.pool.get()))
    }

    /// Like [`get`](Self::get), waiting at most `timeout` for a connection.
    pub(crate) fn get_within(&self, timeout: Duration) -> RepoResult<PgPooled> {
        self.unit_of_work.check()?;
        self.checkout(self.metrics.checkout(|| self.pool.get_timeout(timeout)))
    }

    fn checkout(&self, attempt: Result<PgPooled, diesel::r2d2::PoolError>) -> RepoResult<PgPooled> {
        let conn = attempt.map_err(|error| {
            let exhausted = self.status().is_exhausted();
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

    /// Runs one call `f` on `conn`, checked out of this pool: in pooler mode in a
    /// transaction that carries the settings (see
    /// [`SessionSettings::pooled_transaction`]); marks the connection by the outcome
    /// ([`finish_call`]) and scrubs the error.
    pub(crate) fn call<T>(
        &self,
        conn: &mut PgPooled,
        f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
    ) -> RepoResult<T> {
        let result = if self.settings.pooler() {
            self.settings.pooled_transaction(conn, f)
        } else {
            f(conn)
        };
        finish_call(conn, result).map_err(|e| self.scrub(e))
    }

    /// Runs `f` in a top-level `READ COMMITTED` transaction of `conn`, which carries
    /// the settings in pooler mode.
    pub(crate) fn read_committed<T>(
        &self,
        conn: &mut PgConnection,
        f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
    ) -> RepoResult<T> {
        if self.settings.pooler() {
            self.settings.pooled_transaction(conn, f)
        } else {
            read_committed(conn, f)
        }
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
                .and_then(|mut conn| {
                    settings.apply(&mut conn).map_err(Probe::Query)?;
                    in_recovery(&mut conn).map_err(Probe::Query)
                });
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
        Ok(Ok(false)) => Ok(()),
        Ok(Ok(true)) => Err(standby_error(redacted_url)),
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

/// `pg_is_in_recovery()`: whether the server is a standby (read-only).
pub(crate) fn in_recovery(conn: &mut PgConnection) -> diesel::QueryResult<bool> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "pg_is_in_recovery()",
    ))
    .get_result(conn)
}

/// The error of opening a store (or migrating) on a standby.
pub(crate) fn standby_error(redacted_url: &str) -> RepoError {
    RepoError::config(format!(
        "{redacted_url} points at a read-only standby (pg_is_in_recovery() is true); \
         point DATABASE_URL at the primary (with several hosts, add \
         target_session_attrs=read-write)"
    ))
}

enum Probe {
    Connect(diesel::ConnectionError),
    Query(diesel::result::Error),
}
