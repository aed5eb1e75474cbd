//! The unit of work: every repository bound to the one connection of a `BEGIN
//! IMMEDIATE` transaction, behind the [`Transaction`] handle.

use crate::collections;
use crate::connection::{SqliteRepositories, TxError, TxSource};
use diesel::SqliteConnection;
use repo_core::{
    BackendKind, Collection, CollectionId, Instrumented, RepoResult, StoreConfig, Transaction,
};
use std::sync::Mutex;

/// Every repository bound to the one connection of an open transaction.
impl Transaction for SqliteRepositories<TxSource<'_, '_>> {
    fn lock_collection(&self, id: CollectionId) -> RepoResult<Collection> {
        // BEGIN IMMEDIATE already holds SQLite's database-wide write lock, so loading
        // the row is all that is needed.
        self.collections.run(|c| collections::get(c, id))
    }
}

/// Runs a unit of work on `conn` in `BEGIN IMMEDIATE`, committing on `Ok`.
pub(crate) fn run_unit_of_work(
    conn: &mut SqliteConnection,
    config: &StoreConfig,
    work: &mut dyn FnMut(&dyn Transaction) -> RepoResult<()>,
) -> RepoResult<()> {
    conn.immediate_transaction(|c| {
        let cell = Mutex::new(c);
        let tx = Instrumented::new(
            BackendKind::Sqlite,
            SqliteRepositories::new(|| TxSource {
                conn: &cell,
                config,
            }),
        );
        work(&tx).map_err(TxError::Repo)
    })
    .map_err(|e| e.into_repo(crate::error::map_diesel_error))
}
