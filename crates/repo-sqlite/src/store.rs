//! [`SqliteStore`]: the pool-backed handle implementing [`Store`].

use crate::error::{map_checkout_error, map_diesel_error};
use crate::pool::{self, SqlitePool, TargetKind};
use crate::unit_of_work::{run_unit_of_work, write_tx, ConnectionSource, SqliteRepos};
use diesel::r2d2::PooledConnection;
use diesel::{RunQueryDsl, SqliteConnection};
use repo_core::instrument::POOL_WARNING_INTERVAL;
use repo_core::metrics::PoolMetrics;
use repo_core::store::{health_check_within, UnitOfWorkMarker};
use repo_core::{
    redact_url, ApiKeyPolicy, ApiKeyRepository, BackendKind, ChunkRepository, CollectionRepository,
    ConnectionErrors, DocumentRepository, Instrumented, NodeHealth, NodeRole, NodeStatus,
    OperationRepository, PoolStatus, PoolWatch, ReadView, RepoResult, Repositories, Store,
    StoreConfig, Transaction, UserRepository, WritePosition,
};
use repo_diesel::connection::ConnectionSource as Source;
use std::fmt;
use std::sync::Arc;

/// A pooled connection.
pub(crate) type PooledConn = PooledConnection<pool::SqliteManager>;

/// A SQLite database behind an r2d2 pool; cheap to clone (an `Arc` inside).
///
/// A file database gets `config.pool.max_size()` connections in WAL mode. An
/// in-memory database (`:memory:`, `file::memory:…`, `file:…?mode=memory`) gets a
/// pool of exactly one connection that is never recycled, because every SQLite
/// connection to `:memory:` opens a separate, empty database; concurrent callers
/// then wait for that connection (up to `config.pool.connection_timeout`).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Instrumented<SqliteRepos<PoolSource>>>,
}

/// The pool-backed connection source: each call checks a connection out.
pub(crate) struct PoolSource {
    pool: SqlitePool,
    max_size: u32,
    kind: TargetKind,
    target: String,
    config: StoreConfig,
    watch: PoolWatch,
    metrics: PoolMetrics,
    unit_of_work: UnitOfWorkMarker,
    errors: Arc<ConnectionErrors>,
}

impl PoolSource {
    /// Checks a connection out, telling an exhausted pool from a failing database.
    /// Refused inside a unit of work of this store on the calling thread.
    pub(crate) fn checkout(&self) -> RepoResult<PooledConn> {
        self.unit_of_work.check()?;
        let conn = self
            .metrics
            .checkout(|| self.pool.get())
            .map_err(|e| self.errors.explain(map_checkout_error(e, self.status())))?;
        self.watch.observe(|| self.status());
        Ok(conn)
    }

    /// The pool's connection counts now.
    fn status(&self) -> PoolStatus {
        let state = self.pool.state();
        PoolStatus::from_counts(self.max_size, state.connections, state.idle_connections)
    }
}

impl ConnectionSource for PoolSource {
    fn config(&self) -> &StoreConfig {
        &self.config
    }
}

impl Source<SqliteConnection> for PoolSource {
    fn api_key_policy(&self) -> &ApiKeyPolicy {
        &self.config.api_keys
    }

    fn write<T>(&self, mut f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.run(|c| write_tx(c, &mut f))
    }

    fn run<T>(&self, mut f: impl FnMut(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        // Each call is its own transaction, so a busy database is retried like a
        // unit of work.
        let result = self.config.retry.run(|| {
            let mut conn = self.checkout()?;
            f(&mut conn)
        });
        crate::observe::call_finished();
        result
    }
}

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
    /// (`repoctl migrate`), through [`run_pending_migrations`](Self::run_pending_migrations)
    /// and its siblings.
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
        let repos = SqliteRepos(PoolSource {
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
        let store = Self {
            inner: Arc::new(Instrumented::new(BackendKind::Sqlite, repos)),
        };
        if config.run_migrations {
            store.run_pending_migrations()?;
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
        &self.inner.0
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

impl Repositories for SqliteStore {
    fn users(&self) -> &dyn UserRepository {
        self.inner.users()
    }

    fn api_keys(&self) -> &dyn ApiKeyRepository {
        self.inner.api_keys()
    }

    fn collections(&self) -> &dyn CollectionRepository {
        self.inner.collections()
    }

    fn operations(&self) -> &dyn OperationRepository {
        self.inner.operations()
    }

    fn documents(&self) -> &dyn DocumentRepository {
        self.inner.documents()
    }

    fn chunks(&self) -> &dyn ChunkRepository {
        self.inner.chunks()
    }
}

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
