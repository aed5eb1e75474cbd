//! The unit of work: every repository bound to the one connection of a `BEGIN
//! IMMEDIATE` transaction, behind the [`Transaction`] handle.

use crate::collections;
use crate::connection::{
    SqliteApiKeys, SqliteChunks, SqliteCollections, SqliteDocuments, SqliteOperations, SqliteUsers,
    TxError, TxSource,
};
use diesel::SqliteConnection;
use repo_core::{
    BackendKind, Collection, CollectionId, Instrumented, RepoResult, StoreConfig, Transaction,
};
use std::sync::Mutex;

/// Every repository bound to the one connection of an open transaction.
struct SqliteTransaction<'a, 'c> {
    users: SqliteUsers<TxSource<'a, 'c>>,
    api_keys: SqliteApiKeys<TxSource<'a, 'c>>,
    collections: SqliteCollections<TxSource<'a, 'c>>,
    operations: SqliteOperations<TxSource<'a, 'c>>,
    documents: SqliteDocuments<TxSource<'a, 'c>>,
    chunks: SqliteChunks<TxSource<'a, 'c>>,
}

impl<'a, 'c> SqliteTransaction<'a, 'c> {
    fn new(conn: &'a Mutex<&'c mut SqliteConnection>, config: &'a StoreConfig) -> Self {
        let src = || TxSource { conn, config };
        Self {
            users: SqliteUsers { src: src() },
            api_keys: SqliteApiKeys { src: src() },
            collections: SqliteCollections { src: src() },
            operations: SqliteOperations { src: src() },
            documents: SqliteDocuments { src: src() },
            chunks: SqliteChunks { src: src() },
        }
    }
}

repo_diesel::repositories_of_fields!(SqliteTransaction<'_, '_>);

impl Transaction for SqliteTransaction<'_, '_> {
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
        let tx = Instrumented::new(BackendKind::Sqlite, SqliteTransaction::new(&cell, config));
        work(&tx).map_err(TxError::Repo)
    })
    .map_err(TxError::into_repo)
}
