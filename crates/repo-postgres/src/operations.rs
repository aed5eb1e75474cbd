//! [`OperationRepository`](repo_core::OperationRepository) on PostgreSQL: the rows,
//! queries and impl shared with SQLite come from
//! [`repo_diesel::operation_repository!`]; the rules (status machine, transition plan,
//! cancel rights) from `repo_core::operation`. Only what PostgreSQL does its own way
//! is here.

use crate::codec::PgCodec;
use crate::collections as collection_repo;
use crate::connection::{missing_reference, ConnectionSource};
use crate::error::map_diesel_error;
use crate::prepared::CacheDsl;
use crate::schema::operations;
use diesel::pg::{Pg, PgConnection};
use repo_core::{Entity, Operation, OperationUuid, RepoError, RepoResult};
use repo_diesel::codec::as_is;

repo_diesel::operation_repository! {
    backend: Pg,
    connection: PgConnection,
    codec: PgCodec,
    map_error: map_diesel_error,
    impl for PgOperations<S> where S: ConnectionSource,
    // Reads may go to a replica; multi-statement writes get one transaction.
    read(this, f) => this.src.read(f),
    run(this, f) => this.src.run(f),
    write(this, f) => this.src.write(f),
    atomic: as_is,
    snapshot: as_is,
    access: collection_repo::access,
    // `= ANY($1)`: one array parameter, whatever the number of ids.
    ids_per_statement: usize::MAX,
}

/// Operations over a [`ConnectionSource`].
pub(crate) struct PgOperations<S> {
    pub(crate) src: S,
}

fn create(
    conn: &mut PgConnection,
    op: &Operation,
    row: &InsertOperation<'_>,
) -> RepoResult<Operation> {
    if op.idempotency_key.is_some() {
        // `ON CONFLICT DO NOTHING` without a target arbitrates on every unique index:
        // a racing creator with the same key waits for the first to commit, then
        // inserts nothing, and the re-read (a new statement, a new snapshot) finds the
        // first's row. An active operation with the same key is returned too, not the
        // `ActiveOperation` conflict. When the key is not there, the conflict was
        // another index: the plain insert below reports it.
        let inserted = diesel::insert_into(operations::table)
            .values(row)
            .on_conflict_do_nothing()
            .returning(OperationRow::as_returning())
            .cached()
            .get_result(conn)
            .optional();
        if let Some(stored) = missing_references(inserted, op)? {
            return stored.into_domain();
        }
        if let Some(found) = by_idempotency_key(conn, op)? {
            return Ok(found);
        }
    }
    // One statement. A second active operation on the collection violates the partial
    // unique index `operations_one_active_per_collection`: `Conflict { ActiveOperation
    // }`. A missing collection or user is the foreign-key violation of the insert,
    // checked in the order the columns are declared (collection first).
    missing_references(insert(conn, row), op)?.into_domain()
}

/// The `NotFound` of a missing collection or user instead of the foreign-key violation.
fn missing_references<T>(result: QueryResult<T>, op: &Operation) -> RepoResult<T> {
    missing_reference(
        result,
        [
            (
                "operations_collection_id_fkey",
                RepoError::not_found(Entity::Collection, op.collection_id),
            ),
            (
                "operations_user_id_fkey",
                RepoError::not_found(Entity::User, op.user_id),
            ),
        ],
    )
}

/// The current `meta`, locked (`FOR UPDATE`) until the write transaction ends.
fn locked_meta(conn: &mut PgConnection, id: OperationUuid) -> RepoResult<serde_json::Value> {
    operations::table
        .filter(operations::uuid.eq(id.0))
        .select(operations::meta)
        .for_update()
        .first(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| RepoError::not_found(Entity::Operation, id))
}
