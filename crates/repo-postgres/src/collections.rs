//! [`CollectionRepository`] on PostgreSQL: collections, grants and access checks. The
//! row types, access statements, listings and queries are `repo_diesel`'s macros;
//! this file adds PostgreSQL's row lock and its one-statement grant.

use crate::codec::PgCodec;
use crate::connection::{missing_reference, nested, ConnectionSource};
use crate::error::map_diesel_error;
use crate::schema::{api_keys, collection_permissions, collections};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use repo_core::{ApiKeyId, Collection, CollectionId, Entity, Grantee, RepoError, RepoResult};
use serde_json::Value;

repo_diesel::collection_rows!(backend: Pg, codec: PgCodec);
repo_diesel::collection_access!(conn: PgConnection, codec: PgCodec, sigil: '$');
repo_diesel::visible_collections!(backend: Pg, conn: PgConnection, codec: PgCodec, sigil: '$');
repo_diesel::collection_queries!(conn: PgConnection, codec: PgCodec);

/// `SELECT … FOR UPDATE` on the collection row, or `NotFound`.
pub(crate) fn lock(conn: &mut PgConnection, id: CollectionId) -> RepoResult<Collection> {
    let row = collections::table
        .find(id.0)
        .select(CollectionRow::as_select())
        .for_update()
        .first(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

/// Runs the grant's `upsert` alone: a missing collection or grantee is the
/// foreign-key violation of the insert (checked in this order, as the columns are
/// declared); an existing grant takes the update path, where the referenced rows exist
/// by construction. So a grant to a user is one statement, without a transaction.
fn grant_references(
    conn: &mut PgConnection,
    id: CollectionId,
    grantee: Grantee,
    upsert: impl FnOnce(&mut PgConnection) -> QueryResult<PermissionRow>,
) -> RepoResult<PermissionRow> {
    missing_reference(upsert(conn), references(id, grantee))
}

/// A key's grant and its scoped mark commit together: one transaction, or a
/// savepoint inside a unit of work.
fn key_grant_transaction<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    nested(conn, f)
}

/// The `NotFound` of each row a grant references, by the name of its foreign key.
fn references(id: CollectionId, grantee: Grantee) -> [(&'static str, RepoError); 2] {
    let grantee_fkey = match grantee {
        Grantee::User(u) => (
            "collection_permissions_user_id_fkey",
            RepoError::not_found(Entity::User, u),
        ),
        Grantee::ApiKey(k) => (
            "collection_permissions_api_key_id_fkey",
            RepoError::not_found(Entity::ApiKey, k),
        ),
    };
    [
        (
            "collection_permissions_collection_id_fkey",
            RepoError::not_found(Entity::Collection, id),
        ),
        grantee_fkey,
    ]
}

/// A key's stored permissions, the row locked (`FOR UPDATE`) so that concurrent grants
/// to the key merge their marks.
fn key_permissions(conn: &mut PgConnection, key: ApiKeyId) -> QueryResult<Option<Value>> {
    api_keys::table
        .find(key.0)
        .select(api_keys::permissions)
        .for_update()
        .first(conn)
}

/// Collections over a [`ConnectionSource`].
pub(crate) struct PgCollections<S> {
    pub(crate) src: S,
}

// A grant to a user is one statement (no transaction sent); a key's grant and its
// scoped mark commit together in `grant`'s own transaction.
repo_diesel::collection_repository!(PgCollections<S: ConnectionSource>.src {
    lookup: read,
    listing: read,
    statement: run,
    transaction: write,
    transition: run,
    grant: run,
});
