//! [`CollectionRepository`] on SQLite: collections, grants and access checks. The row
//! types, access statements, listings and queries are `repo_diesel`'s macros; this
//! file adds SQLite's row "lock" (the write transaction holds the database) and its
//! grant, which checks the grantee before the upsert.

use crate::codec::SqliteCodec;
use crate::error::map_diesel_error;
use crate::prepared::CacheDsl;
use crate::schema::{api_keys, collection_permissions, collections};
use crate::unit_of_work::{read_tx, write_tx, ConnectionSource, SqliteRepos};
use crate::users as user_repo;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;
use diesel::upsert::excluded;
use repo_core::{
    require_access, AccessLevel, ApiKeyId, Collection, CollectionId, CollectionPatch,
    CollectionPermission, CollectionRepository, CollectionStats, CollectionStatus, CursorPage,
    CursorRequest, Entity, Grantee, NewCollection, Page, PageRequest, Principal, RepoError,
    RepoResult, SyncRun, Timestamp,
};
use repo_diesel::codec::Codec as _;

repo_diesel::collection_rows!(backend: Sqlite, codec: SqliteCodec, uuid: String, timestamp: String, json: String);
repo_diesel::collection_access!(
    conn: SqliteConnection,
    codec: SqliteCodec,
    sigil: '?',
    uuid_sql: Text,
    timestamp_sql: Text,
    json_sql: Text,
    timestamp: String,
    json: String,
);
repo_diesel::visible_collections!(backend: Sqlite, conn: SqliteConnection, codec: SqliteCodec, sigil: '?');
repo_diesel::collection_queries!(conn: SqliteConnection, codec: SqliteCodec);

/// The collection row for a write: SQLite has no row locks (writes run in
/// `BEGIN IMMEDIATE`, which holds the database), so this reads it.
fn lock(conn: &mut SqliteConnection, id: CollectionId) -> RepoResult<Collection> {
    get(conn, id)
}

/// Grants: checks the collection and the grantee, then upserts (only the level
/// changes; `created_at` keeps the first grant).
fn grant(
    conn: &mut SqliteConnection,
    id: CollectionId,
    grantee: Grantee,
    level: AccessLevel,
) -> RepoResult<CollectionPermission> {
    ensure_exists(conn, id)?;
    let insert = diesel::insert_into(collection_permissions::table)
        .values(InsertPermission::from_domain(id, grantee, level));
    let changes =
        collection_permissions::permission.eq(excluded(collection_permissions::permission));
    let stored = match grantee {
        Grantee::User(user) => {
            user_repo::ensure_exists(conn, user)?;
            insert
                .on_conflict((
                    collection_permissions::collection_id,
                    collection_permissions::user_id,
                ))
                .do_update()
                .set(changes)
                .returning(PermissionRow::as_returning())
                .get_result(conn)
        }
        Grantee::ApiKey(key) => {
            let key_id = SqliteCodec::uuid(key.0);
            let exists: bool = diesel::select(diesel::dsl::exists(api_keys::table.find(key_id)))
                .get_result(conn)
                .map_err(map_diesel_error)?;
            if !exists {
                return Err(RepoError::not_found(Entity::ApiKey, key));
            }
            insert
                .on_conflict((
                    collection_permissions::collection_id,
                    collection_permissions::api_key_id,
                ))
                .do_update()
                .set(changes)
                .returning(PermissionRow::as_returning())
                .get_result(conn)
        }
    };
    let stored = stored.map_err(map_diesel_error)?.into_domain()?;
    if let Grantee::ApiKey(key) = grantee {
        mark_key_scoped(conn, key)?;
    }
    Ok(stored)
}

/// Marks a key scoped once it holds a grant (`repo_core::access::mark_scoped`), so
/// that revoking its last grant does not hand it back all of its user's rights.
fn mark_key_scoped(conn: &mut SqliteConnection, key: ApiKeyId) -> RepoResult<()> {
    let key_id = SqliteCodec::uuid(key.0);
    let stored: Option<String> = api_keys::table
        .find(&key_id)
        .select(api_keys::permissions)
        .get_result(conn)
        .map_err(map_diesel_error)?;
    let permissions = SqliteCodec::read_opt_json("api_keys", "permissions", stored)?;
    if let Some(next) = repo_core::access::mark_scoped(permissions.as_ref())? {
        diesel::update(api_keys::table.find(&key_id))
            .set(api_keys::permissions.eq(SqliteCodec::json(&next)?))
            .execute(conn)
            .map_err(map_diesel_error)?;
    }
    Ok(())
}

impl<S: ConnectionSource> CollectionRepository for SqliteRepos<S> {
    fn create(&self, new: &NewCollection) -> RepoResult<Collection> {
        self.run(|c| write_tx(c, |c| create(c, new)))
    }

    fn get(&self, id: CollectionId) -> RepoResult<Collection> {
        self.run(|c| get(c, id))
    }

    fn get_by_name(&self, name: &str) -> RepoResult<Collection> {
        self.run(|c| get_by_name(c, name))
    }

    fn get_with_access(
        &self,
        id: CollectionId,
        principal: Principal,
        needed: AccessLevel,
    ) -> RepoResult<Collection> {
        self.run(|c| {
            let (collection, _, level) = access(c, id, principal)?;
            require_access(&collection, level, needed)?;
            Ok(collection)
        })
    }

    fn access_level(
        &self,
        id: CollectionId,
        principal: Principal,
    ) -> RepoResult<Option<AccessLevel>> {
        self.run(|c| access(c, id, principal).map(|(_, _, level)| level))
    }

    fn list_visible(
        &self,
        principal: Principal,
        page: PageRequest,
    ) -> RepoResult<Page<Collection>> {
        self.run(|c| read_tx(c, |c| list_visible(c, principal, page)))
    }

    fn list_visible_by_cursor(
        &self,
        principal: Principal,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Collection>> {
        self.run(|c| read_tx(c, |c| list_visible_by_cursor(c, principal, page)))
    }

    fn update(&self, id: CollectionId, patch: &CollectionPatch) -> RepoResult<Collection> {
        self.run(|c| write_tx(c, |c| update(c, id, patch)))
    }

    fn rename(&self, id: CollectionId, new_name: &str) -> RepoResult<Collection> {
        self.run(|c| rename(c, id, new_name))
    }

    fn update_status(
        &self,
        id: CollectionId,
        status: CollectionStatus,
        message: Option<&str>,
    ) -> RepoResult<Collection> {
        self.run(|c| write_tx(c, |c| update_status(c, id, status, message)))
    }

    fn update_stats(&self, id: CollectionId, stats: CollectionStats) -> RepoResult<Collection> {
        self.run(|c| update_stats(c, id, stats))
    }

    fn delete(&self, id: CollectionId, actor: Principal) -> RepoResult<()> {
        self.run(|c| write_tx(c, |c| delete(c, id, actor)))
    }

    fn due_for_sync(&self, now: Timestamp, limit: u32) -> RepoResult<Vec<Collection>> {
        self.run(|c| due_for_sync(c, now, limit))
    }

    fn pause_sync(&self, id: CollectionId) -> RepoResult<Collection> {
        self.run(|c| write_tx(c, |c| pause_sync(c, id)))
    }

    fn resume_sync(&self, id: CollectionId, next_run_at: Timestamp) -> RepoResult<Collection> {
        self.run(|c| write_tx(c, |c| resume_sync(c, id, next_run_at)))
    }

    fn record_sync_run(&self, id: CollectionId, run: &SyncRun) -> RepoResult<Collection> {
        self.run(|c| write_tx(c, |c| record_sync_run(c, id, run)))
    }

    fn grant(
        &self,
        id: CollectionId,
        grantee: Grantee,
        level: AccessLevel,
    ) -> RepoResult<CollectionPermission> {
        self.run(|c| write_tx(c, |c| grant(c, id, grantee, level)))
    }

    fn revoke_grant(&self, id: CollectionId, grantee: Grantee) -> RepoResult<bool> {
        self.run(|c| revoke_grant(c, id, grantee))
    }

    fn list_grants(&self, id: CollectionId) -> RepoResult<Vec<CollectionPermission>> {
        self.run(|c| read_tx(c, |c| list_grants(c, id)))
    }
}
