//! [`PostgresStore`]: the pool-backed handle, and the unit of work bound to one
//! transaction.

use crate::api_keys::PgApiKeys;
use crate::chunks::PgChunks;
use crate::collections::{self as collection_repo, PgCollections};
use crate::connection::{PoolSource, TxSource};
use crate::documents::PgDocuments;
use crate::migrations;
use crate::operations::PgOperations;
use crate::pool::{ConnectionPool, SessionSettings};
use crate::replica::{ReadSource, ReplicaSet};
use crate::users::PgUsers;
use diesel::pg::PgConnection;
use repo_core::store::health_check_within;
use repo_core::{
    ApiKeyPolicy, BackendKind, Collection, CollectionId, Instrumented, NodeHealth, NodeRole,
    NodeStatus, PoolStatus, PostgresUrl, ReadView, RepoResult, RetryPolicy, Store, Transaction,
    WritePosition,
};
use repo_core::{SchemaAdmin, SchemaSnapshot};
use repo_diesel::connection::ConnectionSource;
use repo_diesel::pool_check::finish_call;
use std::fmt;
use std::sync::{Arc, Mutex};

/// The PostgreSQL store: an r2d2 pool of Diesel connections and every repository.
///
/// Cheap to clone (one `Arc` inside) and `Send + Sync`. Each repository call outside
/// a unit of work checks a connection out of the pool; a unit of work
/// ([`Store::run_transaction`]) runs every call on its own connection.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Instrumented<Inner>>,
}

struct Inner {
    pool: Arc<ConnectionPool>,
    retry: RetryPolicy,
    policy: ApiKeyPolicy,
    repos: PgRepositories<PoolSource>,
    health_timeout: std::time::Duration,
    replicas: Arc<ReplicaSet>,
    /// `StoreConfig::migration_url`, parsed: migrations run over a direct connection
    /// to it.
    migration_url: Option<PostgresUrl>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.pool.state();
        f.debug_struct("PostgresStore")
            .field("url", &self.inner.pool.redacted_url())
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens a pool on `url` (`postgres://` or `postgresql://`) configured by `config`,
    /// checks that the server answers within `config.pool.connection_timeout`, and
    /// runs pending migrations when `config.run_migrations` is set (in one transaction
    /// under a transaction-scoped advisory lock, so concurrent processes do not race;
    /// over `config.migration_url` when set).
    ///
    /// A server in recovery (a standby) is refused with `Config`. With
    /// `config.postgres.pgbouncer` (transaction-pooler mode) no prepared statement is
    /// cached and no session state is set: every call runs in a transaction whose
    /// `BEGIN` sets the timeouts for that transaction only.
    /// Without `config.run_migrations`, a database that lacks one of them is a
    /// `Config` error listing them. `pgbouncer=true` in the URL turns the pooler mode
    /// on like `config.postgres.pgbouncer`.
    ///
    /// An unreachable server is `Unavailable { ConnectionFailed }`; a malformed URL is
    /// `Config`. No message shows the URL's password. The URL may list several hosts
    /// (libpq tries them in order); libpq gets it with `pgbouncer=` taken out and the
    /// [`DEADLINE_DEFAULTS`](repo_core::postgres_url::DEADLINE_DEFAULTS) added where
    /// the URL does not set them.
    pub fn connect(url: &str, config: &repo_core::StoreConfig) -> RepoResult<Self> {
        Self::open(url, config, true)
    }

    /// Opens a pool on `url` without running or checking migrations, whatever
    /// `config.run_migrations` says: for tools that manage the schema themselves
    /// (`repoctl migrate`), through its [`SchemaAdmin`](repo_core::SchemaAdmin)
    /// methods.
    pub fn connect_for_migrations(url: &str, config: &repo_core::StoreConfig) -> RepoResult<Self> {
        let config = repo_core::StoreConfig {
            run_migrations: false,
            ..config.clone()
        };
        Self::open(url, &config, false)
    }

    fn open(url: &str, config: &repo_core::StoreConfig, check_schema: bool) -> RepoResult<Self> {
        config.validate()?;
        // Multi-host URLs included; `pgbouncer=` is taken out (and turns the pooler
        // mode on) and client-side deadlines are added where the URL sets none
        // (docs/postgres.md).
        let parsed = PostgresUrl::parse(url)?;
        let mut config = config.clone();
        if let Some(pgbouncer) = parsed.pgbouncer() {
            config.postgres.pgbouncer = pgbouncer;
        }
        let config = &config;
        let migration_url = config
            .migration_url
            .as_deref()
            .map(PostgresUrl::parse)
            .transpose()
            .map_err(|e| repo_core::RepoError::config(format!("DATABASE_MIGRATION_URL: {e}")))?;
        let redacted = parsed.redacted();
        let secrets = parsed.secrets();
        let url = &parsed.with_deadline_defaults().libpq_url();
        let pool = ConnectionPool::open(
            url,
            &config.pool,
            SessionSettings::new(&config.postgres),
            redacted,
            secrets,
            config.slow_query_threshold,
        )?;
        let replicas = Arc::new(open_replicas(config)?);
        let pool = Arc::new(pool);
        let source = PoolSource {
            pool: Arc::clone(&pool),
            policy: config.api_keys,
        };
        let store = Self {
            inner: Arc::new(Instrumented::new(
                BackendKind::Postgres,
                Inner {
                    pool,
                    retry: config.retry,
                    policy: config.api_keys,
                    repos: PgRepositories::new(|| source.clone()),
                    health_timeout: config.health_timeout,
                    replicas,
                    migration_url,
                },
            )),
        };
        let max_size = store.inner.pool.max_size();
        store.on_connection(|c| crate::pool::warn_if_larger_than_server(c, max_size))?;
        if config.run_migrations {
            repo_core::SchemaAdmin::run_pending_migrations(&store)?;
        } else if check_schema {
            store.on_connection(migrations::require_migrated)?;
        }
        Ok(store)
    }

    pub(crate) fn on_connection<T>(
        &self,
        f: impl FnMut(&mut PgConnection) -> RepoResult<T>,
    ) -> RepoResult<T> {
        self.inner.repos.users.src.run(f)
    }

    /// Runs a migration step on its own connection: one direct connection to
    /// `StoreConfig::migration_url` when set (closed afterwards), else a pooled one.
    /// `f` gets the connection and its URL, redacted, for messages.
    pub(crate) fn on_migration_connection<T>(
        &self,
        f: impl FnOnce(&mut PgConnection, &str) -> RepoResult<T>,
    ) -> RepoResult<T> {
        match &self.inner.migration_url {
            Some(parsed) => {
                use diesel::Connection;
                let redacted = parsed.redacted();
                let secrets = parsed.secrets();
                let result =
                    PgConnection::establish(&parsed.clone().with_deadline_defaults().libpq_url())
                        .map_err(|e| crate::error::map_connection_error(e, &redacted))
                        .and_then(|mut conn| f(&mut conn, &redacted));
                result.map_err(|e| crate::error::scrub_error(e, &secrets))
            }
            None => {
                let pool = &self.inner.pool;
                let mut conn = pool.get()?;
                let result = f(&mut conn, pool.redacted_url());
                finish_call(&mut conn, result).map_err(|e| pool.scrub(e))
            }
        }
    }

    /// Computes `chunks.search_tokens` (in Rust, [`repo_core::search::index_text`])
    /// for every chunk where it is NULL, in batches of 500 rows. Idempotent; returns
    /// the number of rows filled.
    pub fn backfill_search_tokens(&self) -> RepoResult<u64> {
        self.on_connection(crate::chunks::backfill_search_tokens)
    }
}

repo_diesel::repository_set! {
    /// Every repository over one connection source: the store's over the pool, a read
    /// view's over its routing source, a unit of work's over its transaction.
    struct PgRepositories {
        PgUsers, PgApiKeys, PgCollections, PgOperations, PgDocuments, PgChunks
    }
}

repo_diesel::forward_repositories!(Inner => repos);

// Every call goes through the `Instrumented` wrapper, which opens its span and
// forwards to the store's own repositories.
repo_diesel::forward_repositories!(PostgresStore => inner);

impl Store for PostgresStore {
    fn backend(&self) -> BackendKind {
        BackendKind::Postgres
    }

    fn run_transaction(
        &self,
        work: &mut dyn FnMut(&dyn Transaction) -> RepoResult<()>,
    ) -> RepoResult<()> {
        self.inner.traced("store", "transaction", || {
            let mut conn = self.inner.pool.get()?;
            let _open = self.inner.pool.enter_unit_of_work();
            let policy = self.inner.policy;
            let pool = &self.inner.pool;
            let result = self.inner.retry.run(|| {
                pool.read_committed(&mut conn, |c| {
                    let cell = Mutex::new(c);
                    let tx = PgRepositories::new(|| TxSource {
                        conn: &cell,
                        policy,
                    });
                    work(&Instrumented::new(BackendKind::Postgres, tx))
                })
            });
            finish_call(&mut conn, result).map_err(|e| self.inner.pool.scrub(e))
        })
    }

    fn health(&self) -> RepoResult<()> {
        let store = self.clone();
        self.inner.traced("store", "health", || {
            health_check_within(
                BackendKind::Postgres,
                self.inner.health_timeout,
                self.inner.pool.errors(),
                move || {
                    store.on_connection(|c| {
                        use diesel::RunQueryDsl;
                        diesel::sql_query("SELECT 1")
                            .execute(c)
                            .map(|_| ())
                            .map_err(crate::error::map_diesel_error)
                    })
                },
            )
        })
    }

    fn pool_status(&self) -> PoolStatus {
        self.inner.pool.status()
    }

    fn write_position(&self) -> RepoResult<WritePosition> {
        self.inner.traced("store", "write_position", || {
            self.on_connection(crate::replica::write_position)
        })
    }

    fn replica(&self) -> ReadView<'_> {
        self.view(None)
    }

    fn read_after(&self, position: &WritePosition) -> ReadView<'_> {
        self.view(Some(*position))
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        let mut nodes = vec![NodeStatus {
            role: NodeRole::Primary,
            url: self.inner.pool.redacted_url().to_owned(),
            pool: self.inner.pool.status(),
            health: NodeHealth::Up,
            lag: None,
            routed_reads: self.inner.replicas.primary_reads(),
        }];
        nodes.extend(self.inner.replicas.statuses());
        nodes
    }
}

impl PostgresStore {
    /// A read view; without replicas, the store itself.
    fn view(&self, after: Option<WritePosition>) -> ReadView<'_> {
        if self.inner.replicas.is_empty() {
            return Box::new(self.clone());
        }
        let src = ReadSource {
            primary: self.inner.repos.users.src.clone(),
            replicas: Arc::clone(&self.inner.replicas),
            after,
        };
        Box::new(Instrumented::new(
            BackendKind::Postgres,
            PgRepositories::new(|| src.clone()),
        ))
    }
}

/// Opens one pool per replica URL of `config.replicas` (connections open on first
/// use) and checks each replica; see [`ReplicaSet::open`].
fn open_replicas(config: &repo_core::StoreConfig) -> RepoResult<ReplicaSet> {
    let pools = config
        .replicas
        .urls
        .iter()
        .map(|url| {
            // Multi-host URLs and `pgbouncer=` as for the primary.
            let parsed = PostgresUrl::parse(url)?;
            // No idle connections kept: a replica that is down is then not redialled
            // in the background, only when its back-off ends.
            let pool = repo_core::PoolConfig {
                pool_size: 0,
                max_overflow: config.pool.max_size(),
                ..config.pool.clone()
            };
            let mut postgres = config.postgres.clone();
            if let Some(pgbouncer) = parsed.pgbouncer() {
                postgres.pgbouncer = pgbouncer;
            }
            Ok(ConnectionPool::build(
                &parsed.clone().with_deadline_defaults().libpq_url(),
                &pool,
                SessionSettings::new(&postgres),
                parsed.redacted(),
                parsed.secrets(),
                config.slow_query_threshold,
            ))
        })
        .collect::<RepoResult<Vec<_>>>()?;
    ReplicaSet::open(pools, config.replicas.max_lag)
}

/// The repositories of a unit of work, bound to the one connection of its
/// transaction.
impl Transaction for PgRepositories<TxSource<'_, '_>> {
    fn lock_collection(&self, id: CollectionId) -> RepoResult<Collection> {
        self.collections.src.run(|c| collection_repo::lock(c, id))
    }
}

/// Migration steps run on their own connection ([`StoreConfig::migration_url`] when
/// set) under the migration lock; reads on a pooled connection.
///
/// [`StoreConfig::migration_url`]: repo_core::StoreConfig::migration_url
impl SchemaAdmin for PostgresStore {
    /// Then fills the search tokens of chunks that have none
    /// ([`PostgresStore::backfill_search_tokens`]).
    fn run_pending_migrations(&self) -> RepoResult<Vec<String>> {
        let applied = self.on_migration_connection(migrations::run_pending)?;
        self.backfill_search_tokens()?;
        Ok(applied)
    }

    fn revert_last_migration(&self) -> RepoResult<String> {
        self.on_migration_connection(migrations::revert_last)
    }

    fn revert_all_migrations(&self) -> RepoResult<Vec<String>> {
        self.on_migration_connection(migrations::revert_all)
    }

    fn applied_migrations(&self) -> RepoResult<Vec<String>> {
        self.on_connection(migrations::applied)
    }

    fn pending_migrations(&self) -> RepoResult<Vec<String>> {
        self.on_connection(migrations::pending)
    }

    fn schema_snapshot(&self) -> RepoResult<SchemaSnapshot> {
        self.on_connection(migrations::schema_snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_core::Repositories;

    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }

    fn show(conn: &mut PgConnection, name: &str) -> String {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT current_setting($1) AS value")
            .bind::<diesel::sql_types::Text, _>(name)
            .get_result::<Setting>(conn)
            .expect("current_setting")
            .value
    }

    /// Session settings are applied to every pooled connection, not only the first.
    #[test]
    fn session_settings_on_every_pooled_connection() {
        let admin = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db = crate::testing::TempDatabase::create(&admin).expect("temp database");
        let config = repo_core::StoreConfig {
            pool: repo_core::PoolConfig {
                pool_size: 1,
                max_overflow: 5,
                ..Default::default()
            },
            postgres: repo_core::PostgresConfig {
                statement_timeout: std::time::Duration::from_millis(4321),
                lock_timeout: std::time::Duration::from_millis(1234),
                idle_in_transaction_timeout: std::time::Duration::from_secs(42),
                application_name: "smoke-test".into(),
                pgbouncer: false,
            },
            ..Default::default()
        };
        let store = PostgresStore::connect(db.url(), &config).expect("connect");
        // Hold six checkouts at once so they are six distinct connections.
        let mut held: Vec<_> = (0..6)
            .map(|_| store.inner.pool.get().expect("checkout"))
            .collect();
        let mut pids = std::collections::BTreeSet::new();
        for conn in held.iter_mut() {
            assert_eq!(show(conn, "statement_timeout"), "4321ms");
            assert_eq!(show(conn, "lock_timeout"), "1234ms");
            assert_eq!(show(conn, "idle_in_transaction_session_timeout"), "42s");
            assert_eq!(show(conn, "application_name"), "smoke-test");
            assert_eq!(show(conn, "TimeZone"), "UTC");
            pids.insert(pid(conn));
        }
        assert_eq!(pids.len(), 6, "six distinct backends");
    }

    /// A pooled connection that the server dropped fails one call at most: that failure
    /// marks it suspect, so the next checkout tests it and opens a fresh connection,
    /// even though the connection was used a moment ago (no idle pre-ping due).
    #[test]
    fn a_connection_dropped_by_the_server_fails_one_call_only() {
        use diesel::{Connection, RunQueryDsl};
        use repo_core::{RepoError, UserId};
        let admin = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db = crate::testing::TempDatabase::create(&admin).expect("temp database");
        let config = repo_core::StoreConfig {
            pool: repo_core::PoolConfig {
                pool_size: 1,
                max_overflow: 0,
                pre_ping_idle: std::time::Duration::from_secs(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let store = PostgresStore::connect(db.url(), &config).expect("connect");
        let victim = pid(&mut store.inner.pool.get().expect("checkout"));
        let mut killer = PgConnection::establish(db.url()).expect("second connection");
        diesel::sql_query("SELECT pg_terminate_backend($1)")
            .bind::<diesel::sql_types::Integer, _>(victim)
            .execute(&mut killer)
            .expect("terminate");
        // The server may take a moment to close the socket; until it has, the call
        // can still succeed, and that is fine too. What must never happen is two
        // failures in a row.
        let first = store.users().get(UserId(1));
        assert!(
            matches!(
                first,
                Err(RepoError::Unavailable { .. }
                    | RepoError::Backend { .. }
                    | RepoError::NotFound { .. })
            ),
            "{first:?}"
        );
        let second = store.users().get(UserId(1));
        assert!(
            matches!(second, Err(RepoError::NotFound { .. })),
            "{second:?}"
        );
        let now = pid(&mut store.inner.pool.get().expect("checkout"));
        assert_ne!(now, victim, "the dropped connection was replaced");
    }

    fn pid(conn: &mut PgConnection) -> i32 {
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(conn)
            .expect("pid")
            .pid
    }
}
