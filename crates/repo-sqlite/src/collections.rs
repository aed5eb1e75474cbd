//! [`CollectionRepository`] on SQLite: collections, grants and access checks. The row
//! types, access statements, listings and queries are `repo_diesel`'s macros; this
//! file adds SQLite's row "lock" (the write transaction holds the database) and its
//! grant, which checks the grantee before the upsert.

use crate::codec::SqliteCodec;
use crate::connection::{ConnectionSource, SqliteCollections};
use crate::error::map_diesel_error;
use crate::schema::{api_keys, collection_permissions, collections};
use crate::users as user_repo;
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use repo_core::{ApiKeyId, Collection, CollectionId, Entity, Grantee, RepoError, RepoResult};
use repo_diesel::codec::Codec as _;

repo_diesel::collection_rows!(backend: Sqlite, codec: SqliteCodec);
repo_diesel::collection_access!(conn: SqliteConnection, codec: SqliteCodec, sigil: '?');
repo_diesel::visible_collections!(backend: Sqlite, conn: SqliteConnection, codec: SqliteCodec, sigil: '?');
repo_diesel::collection_queries!(conn: SqliteConnection, codec: SqliteCodec);

/// The collection row for a write: SQLite has no row locks (writes run in
/// `BEGIN IMMEDIATE`, which holds the database), so this reads it.
fn lock(conn: &mut SqliteConnection, id: CollectionId) -> RepoResult<Collection> {
    get(conn, id)
}

/// Checks the collection and the grantee, then runs the grant's `upsert`.
fn grant_references(
    conn: &mut SqliteConnection,
    id: CollectionId,
    grantee: Grantee,
    upsert: impl FnOnce(&mut SqliteConnection) -> QueryResult<PermissionRow>,
) -> RepoResult<PermissionRow> {
    ensure_exists(conn, id)?;
    match grantee {
        Grantee::User(user) => user_repo::ensure_exists(conn, user)?,
        Grantee::ApiKey(key) => {
            let key_row = api_keys::table.find(SqliteCodec::uuid(key.0));
            if !diesel::select(diesel::dsl::exists(key_row))
                .get_result::<bool>(conn)
                .map_err(map_diesel_error)?
            {
                return Err(RepoError::not_found(Entity::ApiKey, key));
            }
        }
    }
    upsert(conn).map_err(map_diesel_error)
}

// A key's grant and its scoped mark: the caller's write transaction holds both, so
// nothing more is needed around them.
use repo_diesel::codec::as_is as key_grant_transaction;

/// A key's stored permissions (no row lock: the write transaction holds the database).
fn key_permissions(conn: &mut SqliteConnection, key: ApiKeyId) -> QueryResult<Option<String>> {
    api_keys::table
        .find(SqliteCodec::uuid(key.0))
        .select(api_keys::permissions)
        .get_result(conn)
}

repo_diesel::collection_repository!(SqliteCollections<S: ConnectionSource>.src {
    lookup: run,
    listing: read,
    statement: run,
    transaction: write,
    transition: write,
    grant: write,
});
