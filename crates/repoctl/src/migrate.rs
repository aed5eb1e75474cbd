//! `repoctl migrate up|down|status`: the embedded schema migrations of either backend,
//! through the backend's [`SchemaAdmin`] (opened by `repo_factory::open_admin_target`,
//! migrations neither run nor checked on open). The migrations, their locking and
//! their transactions are the backends' own: this crate embeds none.

use crate::conn::Endpoint;
use crate::error::{Failure, Secrets};
use repo_core::{BackendKind, PoolConfig, SchemaAdmin, StoreConfig};
use repo_factory::DatabaseTarget;
use std::time::Duration;

/// Migration versions this build knows for `backend`, oldest first.
pub fn known_versions(backend: BackendKind) -> Result<Vec<String>, Failure> {
    Ok(repo_factory::embedded_migrations(backend)?
        .into_iter()
        .map(|(version, _)| version)
        .collect())
}

/// Settings of a store opened for migrations only: one connection.
fn store_config() -> StoreConfig {
    StoreConfig {
        run_migrations: false,
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 0,
            connection_timeout: Duration::from_secs(10),
            max_lifetime: None,
            pre_ping: false,
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    }
}

/// Opens `endpoint` for administration; unless `create`, a SQLite file that does not
/// exist is a connection error (SQLite would create an empty one).
fn open(
    endpoint: &Endpoint,
    secrets: &Secrets,
    create: bool,
) -> Result<Box<dyn SchemaAdmin>, Failure> {
    if !create && !endpoint.exists() {
        return Err(Failure::connection(format!(
            "SQLite database {} does not exist",
            endpoint.display()
        )));
    }
    let target = match endpoint {
        Endpoint::Sqlite(path) => DatabaseTarget::Sqlite(path.clone()),
        Endpoint::Postgres(url) => DatabaseTarget::Postgres(url.clone()),
    };
    repo_factory::open_admin_target(&target, &store_config()).map_err(|e| {
        let mut f = Failure::from(e);
        f.message = secrets.scrub(&f.message);
        f
    })
}

/// Applies every pending migration (creating a SQLite file if needed); returns the
/// versions applied now.
pub fn up(endpoint: &Endpoint, secrets: &Secrets) -> Result<Vec<String>, Failure> {
    Ok(open(endpoint, secrets, true)?.run_pending_migrations()?)
}

/// Applied and pending versions.
pub fn status(
    endpoint: &Endpoint,
    secrets: &Secrets,
) -> Result<(Vec<String>, Vec<String>), Failure> {
    let admin = open(endpoint, secrets, false)?;
    Ok((admin.applied_migrations()?, admin.pending_migrations()?))
}

/// Reverts every applied migration.
pub fn down_all(endpoint: &Endpoint, secrets: &Secrets) -> Result<Vec<String>, Failure> {
    Ok(open(endpoint, secrets, false)?.revert_all_migrations()?)
}

/// Reverts the newest applied migration; `None` when nothing is applied.
pub fn down_one(endpoint: &Endpoint, secrets: &Secrets) -> Result<Option<String>, Failure> {
    let admin = open(endpoint, secrets, false)?;
    if admin.applied_migrations()?.is_empty() {
        return Ok(None);
    }
    Ok(Some(admin.revert_last_migration()?))
}
