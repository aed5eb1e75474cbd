//! [`CollectionRepository`] on PostgreSQL: collections, grants and access checks. The
//! row types, access statements, listings and queries are `repo_diesel`'s macros;
//! this file adds PostgreSQL's row lock and its one-statement grant.

use crate::codec::PgCodec;
use crate::connection::{missing_reference, ConnectionSource};
use crate::error::map_diesel_error;
use crate::prepared::CacheDsl;
use crate::schema::{api_keys, collection_permissions, collections};
use crate::users as user_repo;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Timestamptz, Uuid as SqlUuid};
use repo_core::{
    AccessLevel, ApiKeyId, Collection, CollectionId, CollectionPatch, CollectionPermission,
    CollectionRepository, CollectionStats, CollectionStatus, CursorPage, CursorRequest, Entity,
    Grantee, NewCollection, Page, PageRequest, Principal, RepoError, RepoResult, SyncRun,
    Timestamp,
};
use repo_diesel::codec::Codec as _;
use serde_json::Value;

repo_diesel::collection_rows!(backend: Pg, codec: PgCodec, uuid: uuid::Uuid, timestamp: Timestamp, json: Value);
repo_diesel::collection_access!(
    conn: PgConnection,
    codec: PgCodec,
    sigil: '$',
    uuid_sql: SqlUuid,
    timestamp_sql: Timestamptz,
    json_sql: Jsonb,
    timestamp: Timestamp,
    json: Value,
);
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

pub(crate) use self::access as with_access;
pub(crate) use self::ensure_exists as require;

/// Grants in one statement: a missing collection or grantee is the foreign-key
/// violation of the insert (checked in this order, as the columns are declared); an
/// existing grant takes the update path, where the referenced rows exist by
/// construction. Per docs/semantics.md only the level changes; `created_at` keeps the
/// first grant.
fn grant(
    conn: &mut PgConnection,
    id: CollectionId,
    grantee: Grantee,
    level: AccessLevel,
) -> RepoResult<CollectionPermission> {
    let insert = diesel::insert_into(collection_permissions::table)
        .values(InsertPermission::from_domain(id, grantee, level));
    let changes = collection_permissions::permission
        .eq(diesel::upsert::excluded(collection_permissions::permission));
    let stored = match grantee {
        Grantee::User(_) => insert
            .on_conflict((
                collection_permissions::collection_id,
                collection_permissions::user_id,
            ))
            .do_update()
            .set(changes)
            .returning(PermissionRow::as_returning())
            .cached()
            .get_result(conn),
        Grantee::ApiKey(_) => insert
            .on_conflict((
                collection_permissions::collection_id,
                collection_permissions::api_key_id,
            ))
            .do_update()
            .set(changes)
            .returning(PermissionRow::as_returning())
            .cached()
            .get_result(conn),
    };
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
    let stored = missing_reference(
        stored,
        [
            (
                "collection_permissions_collection_id_fkey",
                RepoError::not_found(Entity::Collection, id),
            ),
            grantee_fkey,
        ],
    )?
    .into_domain()?;
    if let Grantee::ApiKey(key) = grantee {
        mark_key_scoped(conn, key)?;
    }
    Ok(stored)
}

/// Marks a key scoped once it holds a grant (`repo_core::access::mark_scoped`), so
/// that revoking its last grant does not hand it back all of its user's rights.
fn mark_key_scoped(conn: &mut PgConnection, key: ApiKeyId) -> RepoResult<()> {
    let current: Option<Value> = api_keys::table
        .find(key.0)
        .select(api_keys::permissions)
        .for_update()
        .first(conn)
        .map_err(map_diesel_error)?;
    if let Some(next) = repo_core::access::mark_scoped(current.as_ref())? {
        diesel::update(api_keys::table.find(key.0))
            .set(api_keys::permissions.eq(next))
            .execute(conn)
            .map_err(map_diesel_error)?;
    }
    Ok(())
}

/// Collections over a [`ConnectionSource`].
pub(crate) struct PgCollections<S> {
    pub(crate) src: S,
}

impl<S: ConnectionSource> CollectionRepository for PgCollections<S> {
    fn create(&self, new: &NewCollection) -> RepoResult<Collection> {
        self.src.write(|c| create(c, new))
    }

    fn get(&self, id: CollectionId) -> RepoResult<Collection> {
        self.src.read(|c| get(c, id))
    }

    fn get_by_name(&self, name: &str) -> RepoResult<Collection> {
        self.src.read(|c| get_by_name(c, name))
    }

    fn get_with_access(
        &self,
        id: CollectionId,
        principal: Principal,
        needed: AccessLevel,
    ) -> RepoResult<Collection> {
        self.src.read(|c| {
            let (collection, _, level) = access(c, id, principal)?;
            repo_core::require_access(&collection, level, needed)?;
            Ok(collection)
        })
    }

    fn access_level(
        &self,
        id: CollectionId,
        principal: Principal,
    ) -> RepoResult<Option<AccessLevel>> {
        self.src
            .read(|c| access(c, id, principal).map(|(_, _, level)| level))
    }

    fn list_visible(
        &self,
        principal: Principal,
        page: PageRequest,
    ) -> RepoResult<Page<Collection>> {
        self.src.read(|c| list_visible(c, principal, page))
    }

    fn list_visible_by_cursor(
        &self,
        principal: Principal,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Collection>> {
        self.src
            .read(|c| list_visible_by_cursor(c, principal, page))
    }

    fn update(&self, id: CollectionId, patch: &CollectionPatch) -> RepoResult<Collection> {
        self.src.write(|c| update(c, id, patch))
    }

    fn rename(&self, id: CollectionId, new_name: &str) -> RepoResult<Collection> {
        self.src.run(|c| rename(c, id, new_name))
    }

    fn update_status(
        &self,
        id: CollectionId,
        status: CollectionStatus,
        message: Option<&str>,
    ) -> RepoResult<Collection> {
        self.src.run(|c| update_status(c, id, status, message))
    }

    fn update_stats(&self, id: CollectionId, stats: CollectionStats) -> RepoResult<Collection> {
        self.src.run(|c| update_stats(c, id, stats))
    }

    fn delete(&self, id: CollectionId, actor: Principal) -> RepoResult<()> {
        self.src.write(|c| delete(c, id, actor))
    }

    fn due_for_sync(&self, now: Timestamp, limit: u32) -> RepoResult<Vec<Collection>> {
        self.src.read(|c| due_for_sync(c, now, limit))
    }

    fn pause_sync(&self, id: CollectionId) -> RepoResult<Collection> {
        self.src.write(|c| pause_sync(c, id))
    }

    fn resume_sync(&self, id: CollectionId, next_run_at: Timestamp) -> RepoResult<Collection> {
        self.src.write(|c| resume_sync(c, id, next_run_at))
    }

    fn record_sync_run(&self, id: CollectionId, run: &SyncRun) -> RepoResult<Collection> {
        self.src.write(|c| record_sync_run(c, id, run))
    }

    fn grant(
        &self,
        id: CollectionId,
        grantee: Grantee,
        level: AccessLevel,
    ) -> RepoResult<CollectionPermission> {
        match grantee {
            // One statement: no transaction needed (and none sent).
            Grantee::User(_) => self.src.run(|c| grant(c, id, grantee, level)),
            // The grant and the key's scoped mark commit together.
            Grantee::ApiKey(_) => self.src.write(|c| grant(c, id, grantee, level)),
        }
    }

    fn revoke_grant(&self, id: CollectionId, grantee: Grantee) -> RepoResult<bool> {
        self.src.run(|c| revoke_grant(c, id, grantee))
    }

    fn list_grants(&self, id: CollectionId) -> RepoResult<Vec<CollectionPermission>> {
        self.src.read(|c| list_grants(c, id))
    }
}
