//! The two backends of a run: a store through the factory, a raw Diesel connection
//! on the same database, and the rows every section works on.

use crate::machine::DatabaseInfo;
use crate::raw::{self, FloorConn, RawConn};
use crate::BenchResult;
use diesel::pg::PgConnection;
use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use repo_core::{
    AccessLevel, ApiKeyPolicy, ApiKeySecret, BackendKind, CollectionId, Grantee, NewApiKey,
    NewCollection, NewUser, Store, StoreConfig, UserId,
};
use repo_postgres::testing::TempDatabase;
use std::sync::Arc;

/// Users (each with one API key and one read grant) seeded for the point reads.
pub(crate) const USERS: usize = 64;
/// Collections on which operations are created, one per writer: lane 0 for the
/// point section, lanes 1..=16 for the threads of the concurrency section.
pub(crate) const LANES: usize = 17;
/// Most threads any section runs; the pool is sized so that none waits for it.
pub(crate) const MAX_THREADS: usize = 16;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

/// Rows seeded through the store before anything is measured.
#[derive(Clone)]
pub(crate) struct Fixtures {
    /// Owner of every collection below; creator of the operations.
    pub(crate) owner: UserId,
    /// Regular users; user `i` holds a read grant on `collections[i]`.
    pub(crate) users: Vec<UserId>,
    /// The API-key secret of each user (same index).
    pub(crate) secrets: Vec<ApiKeySecret>,
    /// Private collections owned by `owner`.
    pub(crate) collections: Vec<CollectionId>,
    /// Collections reserved for operation create/transition cycles.
    pub(crate) lanes: Vec<CollectionId>,
    /// The API-key policy of the stores (the baselines stamp `last_used_at` alike).
    pub(crate) key_policy: ApiKeyPolicy,
}

/// Keeps the database alive for the run; dropped last.
enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(TempDatabase),
}

/// How PostgreSQL commits: the server's setting, or `synchronous_commit=off` for the
/// benchmark's connections (set through the URL's `options`), which gives up the
/// same durability as SQLite's `synchronous=NORMAL` in WAL mode: the last commits may
/// be lost on a crash of the machine, the database stays consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// As the server is configured (SQLite: `synchronous=NORMAL`, set by repo-sqlite).
    ServerDefault,
    /// `synchronous_commit=off` (PostgreSQL only).
    Asynchronous,
}

/// One backend under test.
pub(crate) struct Backend {
    /// Which backend.
    pub(crate) kind: BackendKind,
    /// How commits reach the disk.
    pub(crate) commit: Commit,
    /// The handle the factory returned (fields drop in order: store before guard).
    pub(crate) store: Arc<dyn Store>,
    /// A connection the benchmark holds, for the raw-Diesel baselines.
    pub(crate) raw: RawConn,
    /// Another held connection, for the floor of the point operations.
    pub(crate) floor: FloorConn,
    /// Seeded rows.
    pub(crate) fixtures: Fixtures,
    /// The configuration `store` was opened with.
    pub(crate) config: StoreConfig,
    /// What the report says about this database.
    pub(crate) info: DatabaseInfo,
    url: String,
    _guard: Arc<Guard>,
}

impl Backend {
    /// `SQLite`, `PostgreSQL` or `PostgreSQL, async commit`.
    pub(crate) fn label(&self) -> &'static str {
        match (self.kind, self.commit) {
            (BackendKind::Postgres, Commit::Asynchronous) => ASYNC_POSTGRES,
            (kind, _) => label(kind),
        }
    }

    /// Opens another handle on the same database through the factory (no migrations).
    pub(crate) fn open_store(&self, config: &StoreConfig) -> BenchResult<Arc<dyn Store>> {
        let config = StoreConfig {
            run_migrations: false,
            ..config.clone()
        };
        Ok(repo_factory::open(&self.url, &config)?)
    }

    /// This PostgreSQL database reached through another server address (`server`, a
    /// URL such as a PgBouncer's), under the same name.
    pub(crate) fn url_through(&self, server: &str) -> BenchResult<String> {
        match &*self._guard {
            Guard::Postgres(db) => Ok(db.url_through(server)?),
            Guard::Sqlite(_) => Err("not a PostgreSQL database".into()),
        }
    }

    /// Opens another raw connection on the same database, set up like the pool's.
    pub(crate) fn open_raw(&self) -> BenchResult<RawConn> {
        open_raw(self.kind, &self.url, &self.config)
    }

    /// Opens another floor connection on the same database, set up like the pool's.
    pub(crate) fn open_floor(&self) -> BenchResult<FloorConn> {
        self.open_raw().map(FloorConn::new)
    }

    /// Opens a SQLite database in a fresh temporary directory.
    pub(crate) fn sqlite(config: &StoreConfig) -> BenchResult<Backend> {
        let dir = tempfile::Builder::new().prefix("repo-bench.").tempdir()?;
        let path = dir.path().join("bench.sqlite3");
        let url = path
            .to_str()
            .ok_or("the temporary directory's path is not UTF-8")?
            .to_owned();
        let store = repo_factory::open(&url, config)?;
        let mut raw = open_raw(BackendKind::Sqlite, &url, config)?;
        let version = match &mut raw {
            RawConn::Sqlite(c) => one_text(c, "SELECT sqlite_version() AS value")?,
            RawConn::Postgres(_) => unreachable_backend()?,
        };
        let info = DatabaseInfo {
            backend: "SQLite".into(),
            version: format!("SQLite {version} (bundled with libsqlite3-sys)"),
            settings: format!(
                "file in a temporary directory; WAL, synchronous=NORMAL, busy_timeout={} ms; {}",
                config.sqlite.busy_timeout.as_millis(),
                pool_text(config)
            ),
        };
        let fixtures = seed(store.as_ref(), config.api_keys)?;
        let floor = FloorConn::new(open_raw(BackendKind::Sqlite, &url, config)?);
        Ok(Backend {
            kind: BackendKind::Sqlite,
            commit: Commit::ServerDefault,
            store,
            raw,
            floor,
            fixtures,
            config: config.clone(),
            info,
            url,
            _guard: Arc::new(Guard::Sqlite(dir)),
        })
    }

    /// Creates a fresh database on the server at `admin_url` and opens it.
    pub(crate) fn postgres(admin_url: &str, config: &StoreConfig) -> BenchResult<Backend> {
        let db = TempDatabase::create(admin_url)?;
        let url = db.url().to_owned();
        let store = repo_factory::open(&url, config)?;
        let fixtures = seed(store.as_ref(), config.api_keys)?;
        Self::postgres_on(
            store,
            url,
            Commit::ServerDefault,
            fixtures,
            config,
            Arc::new(Guard::Postgres(db)),
        )
    }

    /// The same PostgreSQL database and rows, through connections that commit with
    /// `synchronous_commit=off`.
    pub(crate) fn postgres_async_commit(&self) -> BenchResult<Backend> {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{separator}options=-c%20synchronous_commit%3Doff",
            self.url
        );
        let config = StoreConfig {
            run_migrations: false,
            ..self.config.clone()
        };
        let store = repo_factory::open(&url, &config)?;
        Self::postgres_on(
            store,
            url,
            Commit::Asynchronous,
            self.fixtures.clone(),
            &self.config,
            Arc::clone(&self._guard),
        )
    }

    fn postgres_on(
        store: Arc<dyn Store>,
        url: String,
        commit: Commit,
        fixtures: Fixtures,
        config: &StoreConfig,
        guard: Arc<Guard>,
    ) -> BenchResult<Backend> {
        let mut raw = open_raw(BackendKind::Postgres, &url, config)?;
        let (version, settings) = match &mut raw {
            RawConn::Postgres(c) => (
                one_text(c, "SELECT current_setting('server_version') AS value")?,
                one_text(
                    c,
                    "SELECT 'fsync=' || current_setting('fsync') \
                     || ', synchronous_commit=' || current_setting('synchronous_commit') \
                     || ', shared_buffers=' || current_setting('shared_buffers') \
                     || ', connection ' || (SELECT CASE WHEN ssl THEN 'TLS (' || version || ')' \
                        ELSE 'without TLS' END FROM pg_stat_ssl WHERE pid = pg_backend_pid()) \
                     AS value",
                )?,
            ),
            RawConn::Sqlite(_) => unreachable_backend()?,
        };
        let server = repo_core::PostgresUrl::parse(&url)
            .map(|u| {
                let hosts: Vec<String> = u
                    .hosts()
                    .iter()
                    .map(|h| format!("{}:{}", h.host, h.port.unwrap_or(5432)))
                    .collect();
                hosts.join(",")
            })
            .unwrap_or_else(|_| "?".into());
        let label = match commit {
            Commit::ServerDefault => label(BackendKind::Postgres),
            Commit::Asynchronous => ASYNC_POSTGRES,
        };
        let info = DatabaseInfo {
            backend: label.into(),
            version: format!("PostgreSQL {version} at {server} (TCP)"),
            settings: format!("session: {settings}; {}", pool_text(config)),
        };
        let floor = FloorConn::new(open_raw(BackendKind::Postgres, &url, config)?);
        Ok(Backend {
            kind: BackendKind::Postgres,
            commit,
            store,
            raw,
            floor,
            fixtures,
            config: config.clone(),
            info,
            url,
            _guard: guard,
        })
    }
}

/// Label of PostgreSQL with `synchronous_commit=off`.
pub(crate) const ASYNC_POSTGRES: &str = "PostgreSQL, async commit";

/// `SQLite` or `PostgreSQL`.
pub(crate) fn label(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Sqlite => "SQLite",
        BackendKind::Postgres => "PostgreSQL",
    }
}

fn pool_text(config: &StoreConfig) -> String {
    format!(
        "pool: {} kept open, at most {}, pre-ping {}",
        config.pool.min_idle(),
        config.pool.max_size(),
        if config.pool.pre_ping {
            format!(
                "on for connections idle ≥ {} ms or suspect",
                config.pool.pre_ping_idle.as_millis()
            )
        } else {
            "off".to_owned()
        }
    )
}

fn unreachable_backend<T>() -> BenchResult<T> {
    Err("raw connection of the wrong backend".into())
}

#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = Text)]
    value: String,
}

fn one_text<C>(conn: &mut C, sql: &str) -> BenchResult<String>
where
    C: Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, TextValue>,
{
    Ok(diesel::sql_query(sql).get_result::<TextValue>(conn)?.value)
}

fn open_raw(kind: BackendKind, url: &str, config: &StoreConfig) -> BenchResult<RawConn> {
    Ok(match kind {
        BackendKind::Sqlite => {
            let mut conn = SqliteConnection::establish(url)?;
            raw::apply_pragmas(&mut conn, &config.sqlite)?;
            RawConn::Sqlite(conn)
        }
        BackendKind::Postgres => {
            // The same URL rewrite as `repo_factory::open`, so that both variants
            // connect alike (TLS or not).
            let pgsslmode_set = std::env::var_os("PGSSLMODE").is_some();
            let url = repo_factory::plaintext_on_loopback(url, pgsslmode_set);
            let mut conn = PgConnection::establish(&url)?;
            raw::apply_session_settings(&mut conn, &config.postgres)?;
            RawConn::Postgres(conn)
        }
    })
}

/// Seeds the fixtures through the store (the same rows on both backends).
fn seed(store: &dyn Store, key_policy: ApiKeyPolicy) -> BenchResult<Fixtures> {
    let owner = store
        .users()
        .create(&NewUser::new("bench-owner", "owner@bench.invalid", HASH))?
        .id;
    let mut users = Vec::with_capacity(USERS);
    let mut secrets = Vec::with_capacity(USERS);
    let mut collections = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let user = store
            .users()
            .create(&NewUser::new(
                format!("bench-user-{i}"),
                format!("user{i}@bench.invalid"),
                HASH,
            ))?
            .id;
        let key = store.api_keys().create(&NewApiKey::new(user, "bench"))?;
        let collection = store
            .collections()
            .create(&NewCollection::new(format!("bench-collection-{i}"), owner))?
            .id;
        store
            .collections()
            .grant(collection, Grantee::User(user), AccessLevel::Read)?;
        users.push(user);
        secrets.push(key.secret);
        collections.push(collection);
    }
    let lanes = (0..LANES)
        .map(|i| {
            store
                .collections()
                .create(&NewCollection::new(format!("bench-lane-{i}"), owner))
                .map(|c| c.id)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Fixtures {
        owner,
        users,
        secrets,
        collections,
        lanes,
        key_policy,
    })
}
