//! Configuration shared by every backend: pool, timeouts, policies.

use crate::api_key::ApiKeyPolicy;
use crate::error::{RepoError, RepoResult};
use crate::postgres_url::redact_url;
use crate::store::RetryPolicy;
use std::time::Duration;

/// One numeric setting: its environment variable, unit and accepted range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericSetting {
    /// The environment variable (also named by every error about the value).
    pub variable: &'static str,
    /// `"s"`, `"ms"`, or `""` for a count.
    pub unit: &'static str,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
}

/// Every numeric setting and its range (inclusive). A value outside it, from the
/// environment ([`StoreConfig::from_env`]) or in a [`StoreConfig`] built in code
/// ([`StoreConfig::validate`], run by both backends when they open), is a `Config`
/// error naming the variable: an unchecked value could make r2d2 panic (a checkout
/// deadline past the end of time) or wrap (a pool size near `u32::MAX`).
///
/// | variable | unit | range | why the bounds |
/// |---|---|---|---|
/// | `DB_POOL_SIZE` | connections | 0–1000 | more than a server accepts |
/// | `DB_MAX_OVERFLOW` | connections | 0–1000 | idem |
/// | `DB_POOL_TIMEOUT` | s | 1–3600 | r2d2 needs a positive timeout |
/// | `DB_POOL_RECYCLE` | s | 0–604800 (0 = never) | a week |
/// | `DB_POOL_PRE_PING_IDLE_MS` | ms | 0–86400000 | a day |
/// | `DB_SQLITE_BUSY_TIMEOUT_MS` | ms | 0–3600000 | SQLite takes an `int` |
/// | `DB_STATEMENT_TIMEOUT_MS` | ms | 0–2147483647 | PostgreSQL's `int` limit |
/// | `DB_LOCK_TIMEOUT_MS` | ms | 0–2147483647 | idem |
/// | `DB_IDLE_IN_TRANSACTION_TIMEOUT_MS` | ms | 0–2147483647 | idem |
/// | `DB_TX_MAX_ATTEMPTS` | attempts | 1–100 | at least one try |
/// | `API_KEY_MAX_ACTIVE_PER_USER` | keys | 1–100000 | |
/// | `API_KEY_LAST_USED_GRANULARITY_S` | s | 0–86400 (0 = every verify) | a day |
/// | `DB_SLOW_QUERY_MS` | ms | 0–86400000 | a day |
/// | `DB_HEALTH_TIMEOUT_MS` | ms | 1–600000 | ten minutes |
pub const NUMERIC_SETTINGS: &[NumericSetting] = &[
    setting("DB_POOL_SIZE", "", 0, 1000),
    setting("DB_MAX_OVERFLOW", "", 0, 1000),
    setting("DB_POOL_TIMEOUT", "s", 1, 3600),
    setting("DB_POOL_RECYCLE", "s", 0, 604_800),
    setting("DB_POOL_PRE_PING_IDLE_MS", "ms", 0, 86_400_000),
    setting("DB_SQLITE_BUSY_TIMEOUT_MS", "ms", 0, 3_600_000),
    setting("DB_STATEMENT_TIMEOUT_MS", "ms", 0, i32::MAX as u64),
    setting("DB_LOCK_TIMEOUT_MS", "ms", 0, i32::MAX as u64),
    setting(
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        "ms",
        0,
        i32::MAX as u64,
    ),
    setting("DB_TX_MAX_ATTEMPTS", "", 1, 100),
    setting("API_KEY_MAX_ACTIVE_PER_USER", "", 1, 100_000),
    setting("API_KEY_LAST_USED_GRANULARITY_S", "s", 0, 86_400),
    setting("DB_SLOW_QUERY_MS", "ms", 0, 86_400_000),
    setting("DB_HEALTH_TIMEOUT_MS", "ms", 1, 600_000),
];

const fn setting(variable: &'static str, unit: &'static str, min: u64, max: u64) -> NumericSetting {
    NumericSetting {
        variable,
        unit,
        min,
        max,
    }
}

impl NumericSetting {
    /// The setting of `variable`, if it is numeric.
    pub fn of(variable: &str) -> Option<&'static NumericSetting> {
        NUMERIC_SETTINGS.iter().find(|s| s.variable == variable)
    }

    /// `Ok` when `value` is in range, else a `Config` error naming the variable.
    pub fn check(&self, value: u64) -> RepoResult<u64> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(self.out_of_range(&value.to_string()))
        }
    }

    fn out_of_range(&self, value: &str) -> RepoError {
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        RepoError::config(format!(
            "{}={value:?} is out of range: expected an integer from {} to {}{unit}",
            self.variable, self.min, self.max
        ))
    }
}

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
    /// checkout. See `repo_diesel::pool_check`.
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

/// Read replicas of a PostgreSQL store (see [`crate::replica`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// URLs of streaming replicas (`DATABASE_REPLICA_URLS`, comma-separated; each may
    /// be a multi-host URL). Empty: no replicas, every read on the primary.
    pub urls: Vec<String>,
    /// Largest replay lag a stale-tolerant read accepts (`DB_REPLICA_MAX_LAG_MS`,
    /// default 1000 ms).
    pub max_lag: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            max_lag: Duration::from_millis(1000),
        }
    }
}

/// The URLs with their passwords redacted.
impl std::fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("ReplicaConfig")
            .field("urls", &urls)
            .field("max_lag", &self.max_lag)
            .finish()
    }
}

/// Splits `DATABASE_REPLICA_URLS` into URLs: a comma starts a new URL only where a
/// scheme follows, so the commas of a multi-host URL (`postgres://h1:5432,h2:5432/db`)
/// stay inside it.
pub fn split_replica_urls(list: &str) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for part in list.split(',') {
        let trimmed = part.trim();
        if trimmed.is_empty() {
            continue;
        }
        let starts_url = trimmed.starts_with("postgres://")
            || trimmed.starts_with("postgresql://")
            || urls.is_empty();
        match urls.last_mut() {
            Some(last) if !starts_url => {
                last.push(',');
                last.push_str(trimmed);
            }
            _ => urls.push(trimmed.to_owned()),
        }
    }
    urls
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
    /// Read replicas (PostgreSQL only).
    pub replicas: ReplicaConfig,
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
            replicas: ReplicaConfig::default(),
            migration_url: None,
        }
    }
}

impl StoreConfig {
    /// Checks every numeric setting against [`NUMERIC_SETTINGS`]; the first one out of
    /// range is a `Config` error naming its variable. Both backends call it when
    /// they open, so a config built in code is held to the same ranges as the
    /// environment.
    pub fn validate(&self) -> RepoResult<()> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let values = [
            ("DB_POOL_SIZE", u64::from(self.pool.pool_size)),
            ("DB_MAX_OVERFLOW", u64::from(self.pool.max_overflow)),
            // A sub-second timeout is fine; only zero (r2d2 panics) and huge values are not.
            (
                "DB_POOL_TIMEOUT",
                self.pool
                    .connection_timeout
                    .as_secs()
                    .max(u64::from(!self.pool.connection_timeout.is_zero())),
            ),
            (
                "DB_POOL_RECYCLE",
                self.pool.max_lifetime.map_or(0, |l| l.as_secs()),
            ),
            ("DB_POOL_PRE_PING_IDLE_MS", ms(self.pool.pre_ping_idle)),
            ("DB_SQLITE_BUSY_TIMEOUT_MS", ms(self.sqlite.busy_timeout)),
            (
                "DB_STATEMENT_TIMEOUT_MS",
                ms(self.postgres.statement_timeout),
            ),
            ("DB_LOCK_TIMEOUT_MS", ms(self.postgres.lock_timeout)),
            (
                "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                ms(self.postgres.idle_in_transaction_timeout),
            ),
            ("DB_TX_MAX_ATTEMPTS", u64::from(self.retry.max_attempts)),
            (
                "API_KEY_MAX_ACTIVE_PER_USER",
                u64::from(self.api_keys.max_active_per_user),
            ),
            (
                "API_KEY_LAST_USED_GRANULARITY_S",
                self.api_keys.last_used_granularity.as_secs(),
            ),
            ("DB_SLOW_QUERY_MS", ms(self.slow_query_threshold)),
            ("DB_HEALTH_TIMEOUT_MS", ms(self.health_timeout)),
        ];
        for (variable, value) in values {
            if let Some(setting) = NumericSetting::of(variable) {
                setting.check(value)?;
            }
        }
        Ok(())
    }

    /// Reads every setting from the process environment; unset variables keep their
    /// defaults, invalid ones (not a number, or outside its range in
    /// [`NUMERIC_SETTINGS`]) are `Config` errors naming the variable.
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
                last_used_granularity: env.secs(
                    "API_KEY_LAST_USED_GRANULARITY_S",
                    d.api_keys.last_used_granularity,
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
            replicas: ReplicaConfig {
                urls: env
                    .raw("DATABASE_REPLICA_URLS")
                    .map(|list| split_replica_urls(&list))
                    .unwrap_or_default(),
                max_lag: env.millis("DB_REPLICA_MAX_LAG_MS", d.replicas.max_lag)?,
            },
        })
        .and_then(|config: Self| config.validate().map(|()| config))
    }
}

struct EnvReader<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> EnvReader<'_, F> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A numeric setting, within its range of [`NUMERIC_SETTINGS`].
    fn parse<T: TryFrom<u64>>(&self, name: &str, default: T) -> RepoResult<T> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        let range = NumericSetting::of(name);
        let out_of_range = || match range {
            Some(range) => range.out_of_range(&v),
            None => RepoError::config(format!("{name}={v:?} is out of range")),
        };
        let n: u64 = match v.parse() {
            Ok(n) => n,
            // All digits but too long for u64: out of range rather than malformed.
            Err(_) if v.bytes().all(|b| b.is_ascii_digit()) => return Err(out_of_range()),
            Err(_) => {
                return Err(RepoError::config(format!(
                    "{name}={v:?} is not a valid non-negative integer"
                )))
            }
        };
        if let Some(range) = range {
            range.check(n).map_err(|_| out_of_range())?;
        }
        T::try_from(n).map_err(|_| out_of_range())
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
            ("API_KEY_LAST_USED_GRANULARITY_S", "0"),
        ]))
        .unwrap();
        assert_eq!(c.api_keys.last_used_granularity, Duration::ZERO);
        assert_eq!(c.slow_query_threshold, Duration::ZERO);
        assert_eq!(c.health_timeout, Duration::from_millis(250));
        assert_eq!(c.pool.pre_ping_idle, Duration::from_millis(250));
        let d = StoreConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(d.slow_query_threshold, Duration::from_secs(1));
        assert_eq!(d.health_timeout, Duration::from_secs(2));
        assert_eq!(d.api_keys.last_used_granularity, Duration::from_secs(60));
        assert_eq!(c.pool.max_size(), 5);
        assert_eq!(c.pool.max_lifetime, None);
        assert!(!c.pool.pre_ping);
        let err = StoreConfig::from_lookup(lookup(&[("DB_POOL_TIMEOUT", "soon")])).unwrap_err();
        assert!(matches!(err, RepoError::Config { .. }));
        assert!(err.to_string().contains("DB_POOL_TIMEOUT"));
    }

    /// Values that used to panic inside r2d2 or wrap around are refused, naming the
    /// variable; the bounds themselves are accepted.
    #[test]
    fn numeric_settings_outside_their_range_are_config_errors() {
        for (name, value) in [
            ("DB_POOL_TIMEOUT", "18446744073709551615"),
            ("DB_POOL_TIMEOUT", "0"),
            ("DB_POOL_SIZE", "4294967295"),
            ("DB_MAX_OVERFLOW", "4294967296"),
            ("DB_POOL_RECYCLE", "99999999999999999999999"),
            ("DB_STATEMENT_TIMEOUT_MS", "2147483648"),
            ("DB_TX_MAX_ATTEMPTS", "0"),
            ("DB_HEALTH_TIMEOUT_MS", "0"),
            ("DB_SQLITE_BUSY_TIMEOUT_MS", "18446744073709551615"),
        ] {
            let err = StoreConfig::from_lookup(lookup(&[(name, value)]))
                .expect_err("out of range is refused");
            assert!(
                matches!(&err, RepoError::Config { message } if message.contains(name) && message.contains("out of range")),
                "{name}={value}: {err:?}"
            );
        }
        for setting in NUMERIC_SETTINGS {
            for value in [setting.min, setting.max] {
                let text = value.to_string();
                let config = StoreConfig::from_lookup(lookup(&[(setting.variable, &text)]));
                assert!(config.is_ok(), "{}={value}: {config:?}", setting.variable);
            }
        }
        let huge = StoreConfig {
            pool: PoolConfig {
                connection_timeout: Duration::MAX,
                ..PoolConfig::default()
            },
            ..StoreConfig::default()
        };
        let err = huge
            .validate()
            .expect_err("a config built in code is checked too");
        assert!(err.to_string().contains("DB_POOL_TIMEOUT"), "{err}");
        assert!(StoreConfig::default().validate().is_ok());
    }

    /// The README's range table says what [`NUMERIC_SETTINGS`] enforces.
    #[test]
    fn readme_lists_every_range() {
        let readme = include_str!("../../../README.md");
        for s in NUMERIC_SETTINGS {
            let row = format!("| `{}` | {}–{} |", s.variable, s.min, s.max);
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
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
    fn replica_urls_split_on_schemes_only() {
        assert_eq!(
            split_replica_urls(
                "postgres://a:s3cret@h1:5432,h2:5433/db?target_session_attrs=any, postgresql://b@h3/db,"
            ),
            vec![
                "postgres://a:s3cret@h1:5432,h2:5433/db?target_session_attrs=any".to_owned(),
                "postgresql://b@h3/db".to_owned(),
            ]
        );
        assert!(split_replica_urls(" ").is_empty());
        let c = StoreConfig::from_lookup(lookup(&[
            (
                "DATABASE_REPLICA_URLS",
                "postgres://r:pw@h1/db,postgres://r:pw@h2/db",
            ),
            ("DB_REPLICA_MAX_LAG_MS", "250"),
        ]))
        .unwrap();
        assert_eq!(c.replicas.urls.len(), 2);
        assert_eq!(c.replicas.max_lag, Duration::from_millis(250));
        let debug = format!("{c:?}");
        assert!(!debug.contains("pw"), "{debug}");
    }
}
