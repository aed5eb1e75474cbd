//! [`OperationRepository`](repo_core::OperationRepository) on SQLite: the rows,
//! queries and impl shared with PostgreSQL come from
//! [`repo_diesel::operation_repository!`]; the rules (status machine, transition plan,
//! cancel rights) from `repo_core::operation`. Only what SQLite does its own way is
//! here.

use crate::codec::SqliteCodec;
use crate::collections;
use crate::connection::{read_tx, write_tx, ConnectionSource, SqliteOperations};
use crate::error::map_diesel_error;
use crate::prepared::CacheDsl;
use crate::schema::operations;
use crate::users as user_repo;
use diesel::sqlite::{Sqlite, SqliteConnection};
use repo_core::{Operation, OperationUuid, RepoResult};

repo_diesel::operation_repository! {
    backend: Sqlite,
    connection: SqliteConnection,
    codec: SqliteCodec,
    map_error: map_diesel_error,
    impl for SqliteOperations<S> where S: ConnectionSource,
    // Every call on one connection; the functions open their own transactions.
    read(repos, f) => repos.run(f),
    run(repos, f) => repos.run(f),
    write(repos, f) => repos.run(f),
    atomic: write_tx,
    snapshot: read_tx,
    access: collections::access,
    // Bind parameters per `IN (…)`: well below SQLite's limit (32,766 in the bundled
    // build).
    ids_per_statement: 10_000,
}

/// Inside `BEGIN IMMEDIATE`: creators run one after the other, so one with the key
/// of an earlier one finds its row and returns it instead of inserting. A second
/// active operation on the collection fails on the partial unique index
/// `operations_one_active_per_collection` → Conflict(ActiveOperation).
fn create(
    conn: &mut SqliteConnection,
    op: &Operation,
    row: &InsertOperation<'_>,
) -> RepoResult<Operation> {
    write_tx(conn, |c| {
        collections::ensure_exists(c, op.collection_id)?;
        user_repo::ensure_exists(c, op.user_id)?;
        match by_idempotency_key(c, op)? {
            Some(existing) => Ok(existing),
            None => insert(c, row).map_err(map_diesel_error)?.into_domain(),
        }
    })
}

/// The current `meta`; the write transaction (`BEGIN IMMEDIATE`) already holds
/// SQLite's database-wide write lock.
fn locked_meta(conn: &mut SqliteConnection, id: OperationUuid) -> RepoResult<serde_json::Value> {
    Ok(get(conn, id)?.meta)
}
