//! Configuration shared by every backend: pool, timeouts, policies, URL redaction.

use crate::api_key::ApiKeyPolicy;
use crate::error::{RepoError, RepoResult};
use crate::store::RetryPolicy;
use std::time::Duration;

/// Connection-pool settings, mapped onto r2d2 by each backend.
///
/// | variable | default | r2d2 setting |
/// |---|---|---|
/// | `DB_POOL_SIZE` | 5 | `min_idle` (connections kept open) |
/// | `DB_MAX_OVERFLOW` | 10 | `max_size = DB_POOL_SIZE + DB_MAX_OVERFLOW` |
/// | `DB_POOL_TIMEOUT` | 5 (s) | `connection_timeout` (checkout wait) |
/// | `DB_POOL_RECYCLE` | 3600 (s, 0 = never) | `max_lifetime` |
/// | `DB_POOL_PRE_PING` | true | `test_on_check_out` |
/// | `DB_POOL_PRE_PING_IDLE_MS` | 1000 (ms) | test only connections idle this long, or whose last call failed (0 = every checkout) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections kept open.
    pub pool_size: u32,
    /// Extra connections opened under load.
    pub max_overflow: u32,
    /// How long a checkout waits for a free connection.
    pub connection_timeout: Duration,
    /// Connections older than this are closed (`None`: never).
    pub max_lifetime: Option<Duration>,
    /// Test connections when they are checked out (`false`: never).
    pub pre_ping: bool,
    /// With `pre_ping`, test only connections that sat idle in the pool at least this
    /// long, or whose last call failed; a connection reused sooner is handed out
    /// untested, which saves a round trip per call on a busy pool. Zero tests every
    /// checkout. See [`crate::pool_check`].
    pub pre_ping_idle: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            pool_size: 5,
            max_overflow: 10,
            connection_timeout: Duration::from_secs(5),
            max_lifetime: Some(Duration::from_secs(3600)),
            pre_ping: true,
            pre_ping_idle: Duration::from_secs(1),
        }
    }
}

impl PoolConfig {
    /// Largest number of open connections.
    pub fn max_size(&self) -> u32 {
        (self.pool_size + self.max_overflow).max(1)
    }

    /// Connections kept open when idle.
    pub fn min_idle(&self) -> u32 {
        self.pool_size.min(self.max_size())
    }
}

/// SQLite-only settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// `PRAGMA busy_timeout` (`DB_SQLITE_BUSY_TIMEOUT_MS`, default 5000 ms).
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_millis(5000),
        }
    }
}

/// PostgreSQL session settings applied to every pooled connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `statement_timeout` (`DB_STATEMENT_TIMEOUT_MS`, default 30 s; 0 = none).
    pub statement_timeout: Duration,
    /// `lock_timeout` (`DB_LOCK_TIMEOUT_MS`, default 5 s; 0 = none).
    pub lock_timeout: Duration,
    /// `idle_in_transaction_session_timeout` (`DB_IDLE_IN_TRANSACTION_TIMEOUT_MS`,
    /// default 60 s; 0 = none).
    pub idle_in_transaction_timeout: Duration,
    /// `application_name` (`DB_APPLICATION_NAME`, default `smtk-repo`).
    pub application_name: String,
    /// Transaction-pooler mode (`DB_PGBOUNCER`, default false), for PgBouncer in
    /// transaction mode and the pooled endpoints of managed services: no prepared
    /// statement cache, no session state; every call runs in a transaction whose
    /// `BEGIN` sets the timeouts above with `SET LOCAL`. `application_name` then
    /// travels only as the startup parameter.
    pub pgbouncer: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(60),
            application_name: "smtk-repo".into(),
            pgbouncer: false,
        }
    }
}

/// Everything a backend needs besides its URL.
///
/// `Debug` shows [`migration_url`](Self::migration_url) with its password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Pool settings.
    pub pool: PoolConfig,
    /// Run pending migrations on connect (`DB_RUN_MIGRATIONS`, default true).
    pub run_migrations: bool,
    /// API-key limits.
    pub api_keys: ApiKeyPolicy,
    /// Re-runs of units of work after transient conflicts (`DB_TX_MAX_ATTEMPTS`).
    pub retry: RetryPolicy,
    /// SQLite settings.
    pub sqlite: SqliteConfig,
    /// PostgreSQL settings.
    pub postgres: PostgresConfig,
    /// Statements taking at least this long are logged at WARN with their SQL text
    /// (never their bound values) (`DB_SLOW_QUERY_MS`, default 1000 ms; 0 logs every
    /// statement).
    pub slow_query_threshold: Duration,
    /// How long [`Store::health`](crate::Store::health) waits for the database to
    /// answer (`DB_HEALTH_TIMEOUT_MS`, default 2000 ms).
    pub health_timeout: Duration,
    /// A direct PostgreSQL URL that migrations run over, one connection outside the
    /// pool (`DATABASE_MIGRATION_URL`, like Prisma's `directUrl`): for a `DATABASE_URL`
    /// that points at a transaction pooler. Unset: migrations use the pool.
    pub migration_url: Option<String>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("pool", &self.pool)
            .field("run_migrations", &self.run_migrations)
            .field("api_keys", &self.api_keys)
            .field("retry", &self.retry)
            .field("sqlite", &self.sqlite)
            .field("postgres", &self.postgres)
            .field("slow_query_threshold", &self.slow_query_threshold)
            .field("health_timeout", &self.health_timeout)
            .field(
                "migration_url",
                &self.migration_url.as_deref().map(redact_url),
            )
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            pool: PoolConfig::default(),
            run_migrations: true,
            api_keys: ApiKeyPolicy::default(),
            retry: RetryPolicy::default(),
            sqlite: SqliteConfig::default(),
            postgres: PostgresConfig::default(),
            slow_query_threshold: Duration::from_millis(1000),
            health_timeout: Duration::from_millis(2000),
            migration_url: None,
        }
    }
}

impl StoreConfig {
    /// Reads every setting from the process environment; unset variables keep their
    /// defaults, invalid ones are `Config` errors naming the variable.
    pub fn from_env() -> RepoResult<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) with any variable source (handy in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> RepoResult<Self> {
        let env = EnvReader(&lookup);
        let d = Self::default();
        Ok(Self {
            pool: PoolConfig {
                pool_size: env.parse("DB_POOL_SIZE", d.pool.pool_size)?,
                max_overflow: env.parse("DB_MAX_OVERFLOW", d.pool.max_overflow)?,
                connection_timeout: env.secs("DB_POOL_TIMEOUT", d.pool.connection_timeout)?,
                max_lifetime: {
                    let secs = env.parse(
                        "DB_POOL_RECYCLE",
                        d.pool.max_lifetime.map_or(0, |l| l.as_secs()),
                    )?;
                    (secs > 0).then(|| Duration::from_secs(secs))
                },
                pre_ping: env.bool("DB_POOL_PRE_PING", d.pool.pre_ping)?,
                pre_ping_idle: env.millis("DB_POOL_PRE_PING_IDLE_MS", d.pool.pre_ping_idle)?,
            },
            run_migrations: env.bool("DB_RUN_MIGRATIONS", d.run_migrations)?,
            api_keys: ApiKeyPolicy {
                max_active_per_user: env.parse(
                    "API_KEY_MAX_ACTIVE_PER_USER",
                    d.api_keys.max_active_per_user,
                )?,
                ..d.api_keys
            },
            retry: RetryPolicy {
                max_attempts: env
                    .parse("DB_TX_MAX_ATTEMPTS", d.retry.max_attempts)?
                    .max(1),
                ..d.retry
            },
            sqlite: SqliteConfig {
                busy_timeout: env.millis("DB_SQLITE_BUSY_TIMEOUT_MS", d.sqlite.busy_timeout)?,
            },
            postgres: PostgresConfig {
                statement_timeout: env
                    .millis("DB_STATEMENT_TIMEOUT_MS", d.postgres.statement_timeout)?,
                lock_timeout: env.millis("DB_LOCK_TIMEOUT_MS", d.postgres.lock_timeout)?,
                idle_in_transaction_timeout: env.millis(
                    "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                    d.postgres.idle_in_transaction_timeout,
                )?,
                application_name: match lookup("DB_APPLICATION_NAME") {
                    Some(name) if !name.trim().is_empty() => {
                        if !name.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
                            return Err(RepoError::config(
                                "DB_APPLICATION_NAME must be printable ASCII",
                            ));
                        }
                        name
                    }
                    _ => d.postgres.application_name,
                },
                pgbouncer: env.bool("DB_PGBOUNCER", d.postgres.pgbouncer)?,
            },
            migration_url: lookup("DATABASE_MIGRATION_URL")
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty()),
            slow_query_threshold: env.millis("DB_SLOW_QUERY_MS", d.slow_query_threshold)?,
            health_timeout: env
                .millis("DB_HEALTH_TIMEOUT_MS", d.health_timeout)?
                .max(Duration::from_millis(1)),
        })
    }
}

struct EnvReader<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> EnvReader<'_, F> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, default: T) -> RepoResult<T> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                RepoError::config(format!("{name}={v:?} is not a valid non-negative integer"))
            }),
        }
    }

    fn secs(&self, name: &str, default: Duration) -> RepoResult<Duration> {
        self.parse(name, default.as_secs()).map(Duration::from_secs)
    }

    fn millis(&self, name: &str, default: Duration) -> RepoResult<Duration> {
        let ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        self.parse(name, ms).map(Duration::from_millis)
    }

    fn bool(&self, name: &str, default: bool) -> RepoResult<bool> {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(RepoError::config(format!(
                    "{name}={v:?} is not a boolean (true/false, 1/0, yes/no, on/off)"
                ))),
            },
        }
    }
}

/// Replaces the password of a URL (`scheme://user:secret@host`) with `***`, and any
/// `password=` query parameter likewise. Text that is not a URL is returned as is.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_overrides_and_errors() {
        let c = StoreConfig::from_lookup(lookup(&[
            ("DB_POOL_SIZE", "3"),
            ("DB_MAX_OVERFLOW", "2"),
            ("DB_POOL_RECYCLE", "0"),
            ("DB_POOL_PRE_PING", "no"),
            ("DB_SLOW_QUERY_MS", "0"),
            ("DB_HEALTH_TIMEOUT_MS", "250"),
            ("DB_POOL_PRE_PING_IDLE_MS", "250"),
        ]))
        .unwrap();
        assert_eq!(c.slow_query_threshold, Duration::ZERO);
        assert_eq!(c.health_timeout, Duration::from_millis(250));
        assert_eq!(c.pool.pre_ping_idle, Duration::from_millis(250));
        let d = StoreConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(d.slow_query_threshold, Duration::from_secs(1));
        assert_eq!(d.health_timeout, Duration::from_secs(2));
        assert_eq!(c.pool.max_size(), 5);
        assert_eq!(c.pool.max_lifetime, None);
        assert!(!c.pool.pre_ping);
        let err = StoreConfig::from_lookup(lookup(&[("DB_POOL_TIMEOUT", "soon")])).unwrap_err();
        assert!(matches!(err, RepoError::Config { .. }));
        assert!(err.to_string().contains("DB_POOL_TIMEOUT"));
    }

    #[test]
    fn pooler_mode_and_migration_url_from_env() {
        let d = StoreConfig::from_lookup(lookup(&[])).unwrap();
        assert!(!d.postgres.pgbouncer);
        assert_eq!(d.migration_url, None);
        let c = StoreConfig::from_lookup(lookup(&[
            ("DB_PGBOUNCER", "true"),
            ("DATABASE_MIGRATION_URL", "postgres://app:s3cret@db:5432/x"),
        ]))
        .unwrap();
        assert!(c.postgres.pgbouncer);
        assert_eq!(
            c.migration_url.as_deref(),
            Some("postgres://app:s3cret@db:5432/x")
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("postgres://app:***@db:5432/x"), "{debug}");
        let err = StoreConfig::from_lookup(lookup(&[("DB_PGBOUNCER", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("DB_PGBOUNCER"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=hunter2"),
            "postgres://db/x?user=a&password=***"
        );
        assert_eq!(redact_url("sqlite://data.db"), "sqlite://data.db");
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    }
}
