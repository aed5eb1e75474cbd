//! Test and tooling support (feature `testing`): a throwaway database file, removed
//! with its directory when the guard goes, like `repo_postgres::testing::TempDatabase`.

use repo_core::{RepoError, RepoResult};
use std::fmt;

/// A database file in a fresh temporary directory, for one test (or tool run); the
/// directory and everything in it (the WAL and shared-memory files included) is
/// removed when this guard is dropped. Drop the stores on it first.
pub struct TempDatabase {
    url: String,
    dir: tempfile::TempDir,
}

impl fmt::Debug for TempDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempDatabase")
            .field("url", &self.url)
            .finish()
    }
}

impl TempDatabase {
    /// A new, empty database named `name` (a file name, e.g. `behaviour.db`), not
    /// created yet: [`SqliteStore::connect`](crate::SqliteStore::connect) on
    /// [`url`](Self::url) creates and migrates it.
    pub fn create(name: &str) -> RepoResult<TempDatabase> {
        let dir = tempfile::tempdir().map_err(|e| RepoError::Backend {
            message: format!("no temporary directory for a test database: {e}"),
            source: Some(Box::new(e)),
        })?;
        let url = dir.path().join(name).to_string_lossy().into_owned();
        Ok(TempDatabase { url, dir })
    }

    /// What [`SqliteStore::connect`](crate::SqliteStore::connect) takes: the file's path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The temporary directory holding the file.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
