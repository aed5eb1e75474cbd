//! [`SqliteStore`]: the pool-backed handle implementing [`Store`].

use crate::connection::{PoolSource, SqliteRepositories};
use crate::error::map_diesel_error;
use crate::pool::{self, TargetKind};
use crate::unit_of_work::run_unit_of_work;
use diesel::RunQueryDsl;
use repo_core::instrument::POOL_WARNING_INTERVAL;
use repo_core::metrics::PoolMetrics;
use repo_core::store::{health_check_within, UnitOfWorkMarker};
use repo_core::{
    redact_url, BackendKind, ConnectionErrors, Instrumented, NodeHealth, NodeRole, NodeStatus,
    PoolStatus, PoolWatch, ReadView, RepoResult, Store, StoreConfig, Transaction, WritePosition,
};
use std::fmt;
use std::sync::Arc;

/// A SQLite database behind an r2d2 pool; cheap to clone (an `Arc` inside).
///
/// A file database gets `config.pool.max_size()` connections in WAL mode. An
/// in-memory database (`:memory:`, `file::memory:…`, `file:…?mode=memory`) gets a
/// pool of exactly one connection that is never recycled, because every SQLite
/// connection to `:memory:` opens a separate, empty database; concurrent callers
/// then wait for that connection (up to `config.pool.connection_timeout`).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Instrumented<Inner>>,
}

/// The pool and every repository over it.
struct Inner {
    source: Arc<PoolSource>,
    repos: SqliteRepositories<Arc<PoolSource>>,
}

repo_diesel::forward_repositories!(Inner => repos);

impl SqliteStore {
    /// Opens `target` (a filesystem path, `:memory:`, or a `file:` URI: what SQLite's
    /// open accepts), builds the pool and, when `config.run_migrations` is set, runs
    /// the pending migrations; when it is not set, a database that lacks one of them
    /// is a `Config` error listing them.
    ///
    /// Replica URLs (`config.replicas`) are a `Config` error: SQLite has no replicas,
    /// and its read views ([`Store::replica`], [`Store::read_after`]) read the one
    /// database.
    pub fn connect(target: &str, config: &StoreConfig) -> RepoResult<Self> {
        Self::open(target, config, true)
    }

    /// Opens `target` without running or checking migrations, whatever
    /// `config.run_migrations` says: for tools that manage the schema themselves
    /// (`repoctl migrate`), through its [`SchemaAdmin`](repo_core::SchemaAdmin)
    /// methods.
    pub fn connect_for_migrations(target: &str, config: &StoreConfig) -> RepoResult<Self> {
        let config = StoreConfig {
            run_migrations: false,
            ..config.clone()
        };
        Self::open(target, &config, false)
    }

    fn open(target: &str, config: &StoreConfig, check_schema: bool) -> RepoResult<Self> {
        config.validate()?;
        if !config.replicas.urls.is_empty() {
            return Err(repo_core::RepoError::config(
                "DATABASE_REPLICA_URLS is set, but read replicas are for PostgreSQL: the \
                 SQLite store reads its one database (unset DATABASE_REPLICA_URLS)",
            ));
        }
        let kind = pool::classify(target)?;
        let errors = Arc::new(
            ConnectionErrors::new(BackendKind::Sqlite, POOL_WARNING_INTERVAL)
                .naming(redact_url(target)),
        );
        let max_size = pool::effective_max_size(kind, &config.pool);
        let metrics = PoolMetrics::new(
            BackendKind::Sqlite,
            &repo_core::metrics::pool_name(&redact_url(target)),
            max_size,
        );
        let pool = pool::build(
            target,
            kind,
            &config.pool,
            &config.sqlite,
            config.slow_query_threshold,
            Arc::clone(&errors),
            &metrics,
        )?;
        let source = Arc::new(PoolSource {
            pool,
            max_size,
            kind,
            target: redact_url(target),
            config: config.clone(),
            watch: PoolWatch::new(BackendKind::Sqlite, POOL_WARNING_INTERVAL),
            metrics,
            unit_of_work: UnitOfWorkMarker::new(),
            errors,
        });
        let inner = Inner {
            repos: SqliteRepositories::new(|| Arc::clone(&source)),
            source,
        };
        let store = Self {
            inner: Arc::new(Instrumented::new(BackendKind::Sqlite, inner)),
        };
        if config.run_migrations {
            repo_core::SchemaAdmin::run_pending_migrations(&store)?;
        } else if check_schema {
            store.require_migrated()?;
        }
        Ok(store)
    }

    /// Whether this store holds an in-memory database (a pool of one connection).
    pub fn is_in_memory(&self) -> bool {
        self.source().kind == TargetKind::Memory
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.source().config
    }

    pub(crate) fn source(&self) -> &PoolSource {
        &self.inner.source
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = self.source();
        let state = source.pool.state();
        f.debug_struct("SqliteStore")
            .field("target", &source.target)
            .field("kind", &source.kind)
            .field("max_size", &source.max_size)
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .finish()
    }
}

// Every call goes through the `Instrumented` wrapper, which opens its span and
// forwards to the store's own repositories.
repo_diesel::forward_repositories!(SqliteStore => inner);

impl Store for SqliteStore {
    fn backend(&self) -> BackendKind {
        BackendKind::Sqlite
    }

    fn run_transaction(
        &self,
        work: &mut dyn FnMut(&dyn Transaction) -> RepoResult<()>,
    ) -> RepoResult<()> {
        let source = self.source();
        self.inner.traced("store", "transaction", || {
            let result = source.config.retry.run(|| {
                let mut conn = source.checkout()?;
                let _open = source.unit_of_work.enter();
                run_unit_of_work(&mut conn, &source.config, &mut *work)
            });
            crate::observe::call_finished();
            result
        })
    }

    fn health(&self) -> RepoResult<()> {
        let store = self.clone();
        self.inner.traced("store", "health", || {
            health_check_within(
                BackendKind::Sqlite,
                self.config().health_timeout,
                &self.source().errors,
                move || {
                    let mut conn = store.source().checkout()?;
                    diesel::sql_query("SELECT 1")
                        .execute(&mut **conn)
                        .map(|_| ())
                        .map_err(map_diesel_error)
                },
            )
        })
    }

    fn pool_status(&self) -> PoolStatus {
        self.source().status()
    }

    /// Every read sees every committed write: the one position there is.
    fn write_position(&self) -> RepoResult<WritePosition> {
        Ok(WritePosition::ZERO)
    }

    /// The store itself: SQLite has no replicas.
    fn replica(&self) -> ReadView<'_> {
        Box::new(self.clone())
    }

    /// The store itself: SQLite has no replicas.
    fn read_after(&self, _position: &WritePosition) -> ReadView<'_> {
        Box::new(self.clone())
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        let source = self.source();
        vec![NodeStatus {
            role: NodeRole::Primary,
            url: source.target.clone(),
            pool: source.status(),
            health: NodeHealth::Up,
            lag: None,
            routed_reads: 0,
        }]
    }
}
