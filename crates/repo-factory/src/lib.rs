//! # repo-factory
//!
//! Turns a `DATABASE_URL` into a ready [`Store`]: SQLite for development, single
//! nodes and tests; PostgreSQL for production. Each backend sits behind a Cargo
//! feature (`sqlite`, `postgres`; both on by default).
//!
//! | `DATABASE_URL` | backend |
//! |---|---|
//! | set but blank | [`RepoError::Config`] (only unset selects a default) |
//! | unset | SQLite file [`DEFAULT_SQLITE_FILE`] in the working directory (or PostgreSQL from `POSTGRES_HOST` …, see [`resolve_database_url`]) |
//! | `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`, `file:…` URI, a path ending in `.db`, `.sqlite`, `.sqlite3` | SQLite |
//! | `postgres://…`, `postgresql://…` | PostgreSQL |
//! | anything else | [`RepoError::Config`] listing the supported schemes |
//!
//! A PostgreSQL URL whose hosts are all on this machine (loopback address,
//! `localhost`, Unix socket) and that sets no `sslmode` (nor `PGSSLMODE`) connects with
//! `sslmode=disable` instead of libpq's default `prefer`: see
//! [`plaintext_on_loopback`].
//!
//! ```no_run
//! use repo_core::StoreConfig;
//!
//! let store = repo_factory::open("sqlite::memory:", &StoreConfig::default())?;
//! assert_eq!(store.backend(), repo_core::BackendKind::Sqlite);
//! # Ok::<(), repo_core::RepoError>(())
//! ```
//!
//! Schema tools open the same URLs with [`open_admin`]: a [`SchemaAdmin`] of the
//! backend (migrations run, reverted and listed on request, never on open), and
//! [`embedded_migrations`] lists what a backend's build embeds without a database.
//!
//! ```no_run
//! use repo_core::StoreConfig;
//!
//! let admin = repo_factory::open_admin("sqlite://app.db", &StoreConfig::default())?;
//! for version in admin.run_pending_migrations()? {
//!     println!("applied {version}");
//! }
//! assert!(admin.pending_migrations()?.is_empty());
//! # Ok::<(), repo_core::RepoError>(())
//! ```

#![forbid(unsafe_code)]

mod sslmode;
mod url_parse;

pub use sslmode::plaintext_on_loopback;

pub use url_parse::{
    parse_database_url, resolve_database_url, DatabaseTarget, ResolvedUrl, UrlSource,
};

use repo_core::{redact_url, BackendKind, RepoError, RepoResult, SchemaAdmin, Store, StoreConfig};
use std::sync::Arc;

/// The SQLite file used when neither `DATABASE_URL` nor `POSTGRES_HOST` is set.
pub const DEFAULT_SQLITE_FILE: &str = "smtk.sqlite3";

/// The URL schemes this build accepts (depends on the enabled features).
pub fn supported_schemes() -> Vec<&'static str> {
    let mut schemes = Vec::new();
    if cfg!(feature = "sqlite") {
        schemes.extend([
            "sqlite://",
            "sqlite::memory:",
            "file:",
            "*.db / *.sqlite / *.sqlite3",
        ]);
    }
    if cfg!(feature = "postgres") {
        schemes.extend(["postgres://", "postgresql://"]);
    }
    schemes
}

/// Opens the backend named by `url` with `config` (migrations run unless
/// `config.run_migrations` is false).
pub fn open(url: &str, config: &StoreConfig) -> RepoResult<Arc<dyn Store>> {
    open_target(&parse_database_url(url)?, config)
}

/// Opens an already parsed target.
pub fn open_target(target: &DatabaseTarget, config: &StoreConfig) -> RepoResult<Arc<dyn Store>> {
    match target {
        DatabaseTarget::Sqlite(path) => open_sqlite(path, config),
        DatabaseTarget::Postgres(url) => open_postgres(url, config),
    }
}

/// Opens the backend named by `url` for schema administration: its migrations are
/// neither run nor checked on open (whatever `config.run_migrations` says), so a
/// database without a schema, or behind or ahead of this build, opens too.
pub fn open_admin(url: &str, config: &StoreConfig) -> RepoResult<Box<dyn SchemaAdmin>> {
    open_admin_target(&parse_database_url(url)?, config)
}

/// [`open_admin`] for an already parsed target.
pub fn open_admin_target(
    target: &DatabaseTarget,
    config: &StoreConfig,
) -> RepoResult<Box<dyn SchemaAdmin>> {
    match target {
        DatabaseTarget::Sqlite(path) => open_sqlite_admin(path, config),
        DatabaseTarget::Postgres(url) => open_postgres_admin(url, config),
    }
}

/// Version and name of every migration `backend`'s build embeds, oldest first (no
/// database needed).
pub fn embedded_migrations(backend: BackendKind) -> RepoResult<Vec<(String, String)>> {
    match backend {
        #[cfg(feature = "sqlite")]
        BackendKind::Sqlite => repo_sqlite::embedded_migrations(),
        #[cfg(feature = "postgres")]
        BackendKind::Postgres => repo_postgres::embedded_migrations(),
        #[allow(unreachable_patterns)] // reached only when a backend feature is off
        other => Err(not_compiled(&other.to_string())),
    }
}

/// Reads `DATABASE_URL` (or its fallbacks) and every pool setting from the environment
/// and opens the store. Logs which backend and database it chose (password redacted).
pub fn open_from_env() -> RepoResult<Arc<dyn Store>> {
    let config = StoreConfig::from_env()?;
    let resolved = resolve_database_url(|name| std::env::var(name).ok())?;
    match resolved.source {
        UrlSource::Default => tracing::info!(
            file = %resolved.url,
            "DATABASE_URL is not set: using the embedded SQLite database {}",
            resolved.url
        ),
        source => tracing::info!(url = %redact_url(&resolved.url), ?source, "opening database"),
    }
    open(&resolved.url, &config)
}

#[cfg(feature = "sqlite")]
fn open_sqlite(path: &str, config: &StoreConfig) -> RepoResult<Arc<dyn Store>> {
    Ok(Arc::new(repo_sqlite::SqliteStore::connect(path, config)?))
}

#[cfg(feature = "sqlite")]
fn open_sqlite_admin(path: &str, config: &StoreConfig) -> RepoResult<Box<dyn SchemaAdmin>> {
    Ok(Box::new(repo_sqlite::SqliteStore::connect_for_migrations(
        path, config,
    )?))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite_admin(_path: &str, _config: &StoreConfig) -> RepoResult<Box<dyn SchemaAdmin>> {
    Err(not_compiled("sqlite"))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_path: &str, _config: &StoreConfig) -> RepoResult<Arc<dyn Store>> {
    Err(not_compiled("sqlite"))
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str, config: &StoreConfig) -> RepoResult<Arc<dyn Store>> {
    Ok(Arc::new(repo_postgres::PostgresStore::connect(
        &loopback_url(url),
        config,
    )?))
}

/// `url` with [`plaintext_on_loopback`] applied (`PGSSLMODE` read here).
#[cfg(feature = "postgres")]
fn loopback_url(url: &str) -> std::borrow::Cow<'_, str> {
    plaintext_on_loopback(url, std::env::var_os("PGSSLMODE").is_some())
}

#[cfg(feature = "postgres")]
fn open_postgres_admin(url: &str, config: &StoreConfig) -> RepoResult<Box<dyn SchemaAdmin>> {
    Ok(Box::new(
        repo_postgres::PostgresStore::connect_for_migrations(&loopback_url(url), config)?,
    ))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres_admin(_url: &str, _config: &StoreConfig) -> RepoResult<Box<dyn SchemaAdmin>> {
    Err(not_compiled("postgres"))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_url: &str, _config: &StoreConfig) -> RepoResult<Arc<dyn Store>> {
    Err(not_compiled("postgres"))
}

#[allow(dead_code)] // used only when a backend feature is off
fn not_compiled(backend: &str) -> RepoError {
    RepoError::config(format!(
        "the {backend} backend is not compiled in (enable the `{backend}` feature of repo-factory); supported: {}",
        supported_schemes().join(", ")
    ))
}
