//! One connection outside the store's pool, for tools that hold a connection for a
//! whole run (repoctl's copy, verification and backup).

use crate::pool::{self, SqlitePragmas};
use diesel::connection::SimpleConnection;
use diesel::SqliteConnection;
use repo_core::{RepoError, RepoResult, SqliteConfig, UnavailableReason};

/// Opens `target` (a path or `file:` URI) with the PRAGMAs of the store's pooled
/// connections under `config` (`busy_timeout`, `journal_mode = WAL` on a file,
/// `synchronous = NORMAL`, `foreign_keys = ON`). With `read_only` the journal mode is
/// left as the file has it and `PRAGMA query_only = ON` refuses every write.
pub fn connect_standalone(
    target: &str,
    config: &SqliteConfig,
    read_only: bool,
) -> RepoResult<SqliteConnection> {
    let pragmas = SqlitePragmas::new(pool::classify(target)?, config);
    if !read_only {
        return pool::probe(target, pragmas);
    }
    let mut conn = pool::probe(target, pragmas.for_reading())?;
    conn.batch_execute("PRAGMA query_only = ON")
        .map_err(|e| RepoError::Unavailable {
            reason: UnavailableReason::ConnectionFailed,
            message: format!("cannot make a SQLite connection read-only: {e}"),
            source: Some(Box::new(e)),
        })?;
    Ok(conn)
}
