//! Collections, their grants and access checks.

use crate::codec::{
    affected, count, json, opt_json, opt_ts, read_enum, read_json, read_opt_json, read_opt_ts,
    read_ts, read_uuid, ts, uuid,
};
use crate::connection::{read_tx, write_tx, ConnectionSource, SqliteCollections};
use crate::error::map_diesel_error;
use crate::prepared::CacheDsl;
use crate::schema::{api_keys, collection_permissions as grants, collections};
use crate::users as user_repo;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::upsert::excluded;
use repo_core::{
    now, require_access, validate, AccessLevel, Actor, ApiKeyId, Attempt, Collection, CollectionId,
    CollectionPatch, CollectionPermission, CollectionRepository, CollectionStats, CollectionStatus,
    CursorPage, CursorRequest, Entity, Field, Grantee, KeyFacts, NewCollection, Page, PageRequest,
    Principal, PrincipalFacts, RepoError, RepoResult, SyncMode, SyncRun, Timestamp, UserId,
};

/// A `collections` row as stored.
#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = collections, check_for_backend(Sqlite), treat_none_as_default_value = false)]
pub(crate) struct CollectionRow {
    id: String,
    name: String,
    description: Option<String>,
    owner_id: i64,
    vector_store_name: String,
    embedding_model: String,
    quantization: String,
    chunk_size: i32,
    chunk_overlap: i32,
    chunking_strategy: Option<String>,
    chunking_config: Option<String>,
    is_public: bool,
    meta: String,
    status: String,
    status_message: Option<String>,
    document_count: i64,
    vector_count: i64,
    total_size_bytes: i64,
    sync_mode: String,
    sync_interval_minutes: Option<i32>,
    sync_paused_at: Option<String>,
    sync_next_run_at: Option<String>,
    sync_last_run_started_at: Option<String>,
    sync_last_run_completed_at: Option<String>,
    sync_last_run_status: Option<String>,
    sync_last_error: Option<String>,
    created_at: String,
    updated_at: String,
}

impl CollectionRow {
    fn from_collection(c: &Collection) -> RepoResult<Self> {
        Ok(Self {
            id: uuid(c.id.0),
            name: c.name.clone(),
            description: c.description.clone(),
            owner_id: c.owner_id.0,
            vector_store_name: c.vector_store_name.clone(),
            embedding_model: c.embedding_model.clone(),
            quantization: c.quantization.as_str().to_owned(),
            chunk_size: c.chunk_size,
            chunk_overlap: c.chunk_overlap,
            chunking_strategy: c.chunking_strategy.clone(),
            chunking_config: opt_json(c.chunking_config.as_ref())?,
            is_public: c.is_public,
            meta: json(&c.meta)?,
            status: c.status.as_str().to_owned(),
            status_message: c.status_message.clone(),
            document_count: c.document_count,
            vector_count: c.vector_count,
            total_size_bytes: c.total_size_bytes,
            sync_mode: c.sync_mode.as_str().to_owned(),
            sync_interval_minutes: c.sync_interval_minutes,
            sync_paused_at: opt_ts(c.sync_paused_at),
            sync_next_run_at: opt_ts(c.sync_next_run_at),
            sync_last_run_started_at: opt_ts(c.sync_last_run_started_at),
            sync_last_run_completed_at: opt_ts(c.sync_last_run_completed_at),
            sync_last_run_status: c.sync_last_run_status.map(|s| s.as_str().to_owned()),
            sync_last_error: c.sync_last_error.clone(),
            created_at: ts(c.created_at),
            updated_at: ts(c.updated_at),
        })
    }

    pub(crate) fn into_domain(self) -> RepoResult<Collection> {
        const T: &str = "collections";
        Ok(Collection {
            id: CollectionId(read_uuid(T, "id", &self.id)?),
            name: self.name,
            description: self.description,
            owner_id: UserId(self.owner_id),
            vector_store_name: self.vector_store_name,
            embedding_model: self.embedding_model,
            quantization: read_enum(T, "quantization", &self.quantization)?,
            chunk_size: self.chunk_size,
            chunk_overlap: self.chunk_overlap,
            chunking_strategy: self.chunking_strategy,
            chunking_config: read_opt_json(T, "chunking_config", self.chunking_config.as_deref())?,
            is_public: self.is_public,
            meta: read_json(T, "meta", &self.meta)?,
            status: read_enum(T, "status", &self.status)?,
            status_message: self.status_message,
            document_count: self.document_count,
            vector_count: self.vector_count,
            total_size_bytes: self.total_size_bytes,
            sync_mode: read_enum(T, "sync_mode", &self.sync_mode)?,
            sync_interval_minutes: self.sync_interval_minutes,
            sync_paused_at: read_opt_ts(T, "sync_paused_at", self.sync_paused_at.as_deref())?,
            sync_next_run_at: read_opt_ts(T, "sync_next_run_at", self.sync_next_run_at.as_deref())?,
            sync_last_run_started_at: read_opt_ts(
                T,
                "sync_last_run_started_at",
                self.sync_last_run_started_at.as_deref(),
            )?,
            sync_last_run_completed_at: read_opt_ts(
                T,
                "sync_last_run_completed_at",
                self.sync_last_run_completed_at.as_deref(),
            )?,
            sync_last_run_status: self
                .sync_last_run_status
                .as_deref()
                .map(|s| read_enum(T, "sync_last_run_status", s))
                .transpose()?,
            sync_last_error: self.sync_last_error,
            created_at: read_ts(T, "created_at", &self.created_at)?,
            updated_at: read_ts(T, "updated_at", &self.updated_at)?,
        })
    }
}

/// The columns [`CollectionPatch`] may change (everything but identity, name, state,
/// counters and sync runs).
#[derive(AsChangeset)]
#[diesel(table_name = collections, treat_none_as_null = true)]
struct PatchChanges {
    description: Option<String>,
    embedding_model: String,
    quantization: String,
    chunk_size: i32,
    chunk_overlap: i32,
    chunking_strategy: Option<String>,
    chunking_config: Option<String>,
    is_public: bool,
    meta: String,
    sync_mode: String,
    sync_interval_minutes: Option<i32>,
    sync_next_run_at: Option<String>,
    updated_at: String,
}

/// A `collection_permissions` row as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = grants, check_for_backend(Sqlite))]
struct PermissionRow {
    collection_id: String,
    user_id: Option<i64>,
    api_key_id: Option<String>,
    permission: String,
    created_at: String,
}

impl PermissionRow {
    fn into_domain(self) -> RepoResult<CollectionPermission> {
        const T: &str = "collection_permissions";
        let grantee = match (self.user_id, self.api_key_id.as_deref()) {
            (Some(user), None) => Grantee::User(UserId(user)),
            (None, Some(key)) => Grantee::ApiKey(ApiKeyId(read_uuid(T, "api_key_id", key)?)),
            _ => {
                return Err(crate::error::corrupt(
                    T,
                    "user_id",
                    "a grant must name exactly one grantee",
                ))
            }
        };
        Ok(CollectionPermission {
            collection_id: CollectionId(read_uuid(T, "collection_id", &self.collection_id)?),
            grantee,
            permission: read_enum(T, "permission", &self.permission)?,
            created_at: read_ts(T, "created_at", &self.created_at)?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = grants, treat_none_as_default_value = false)]
struct InsertPermission {
    collection_id: String,
    user_id: Option<i64>,
    api_key_id: Option<String>,
    permission: &'static str,
    created_at: String,
}

fn not_found(id: CollectionId) -> RepoError {
    RepoError::not_found(Entity::Collection, id)
}

fn one(row: Option<CollectionRow>, id: CollectionId) -> RepoResult<Collection> {
    row.ok_or_else(|| not_found(id))?.into_domain()
}

fn many(rows: Vec<CollectionRow>) -> RepoResult<Vec<Collection>> {
    rows.into_iter().map(CollectionRow::into_domain).collect()
}

/// The collection with this id, or `NotFound { entity: Entity::Collection }`.
pub(crate) fn get(conn: &mut SqliteConnection, id: CollectionId) -> RepoResult<Collection> {
    let row = collections::table
        .find(uuid(id.0))
        .select(CollectionRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

/// `NotFound { entity: Entity::Collection }` unless the collection exists.
pub(crate) fn ensure_exists(conn: &mut SqliteConnection, id: CollectionId) -> RepoResult<()> {
    let exists: bool = diesel::select(diesel::dsl::exists(collections::table.find(uuid(id.0))))
        .get_result(conn)
        .map_err(map_diesel_error)?;
    if exists {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

/// The joins that resolve a principal: `?1` is the user id (NULL for a key), `?2` the
/// key id (NULL for a user); `u` is the acting user, `k` the key.
const PRINCIPAL_JOINS: &str = "LEFT JOIN api_keys k ON k.id = ?2 \
     LEFT JOIN users u ON u.id = COALESCE(k.user_id, ?1)";

/// The columns of [`PrincipalColumns`], over [`PRINCIPAL_JOINS`]. The `CASE` keeps a
/// user principal (no key) from running the grant probe at all.
const PRINCIPAL_COLUMNS: &str = "u.id AS principal_user_id, \
     u.is_active AS principal_user_is_active, \
     u.is_superuser AS principal_is_superuser, \
     k.is_active AS key_is_active, \
     k.expires_at AS key_expires_at, \
     k.permissions AS key_permissions, \
     CASE WHEN k.id IS NULL THEN FALSE ELSE EXISTS ( \
         SELECT 1 FROM collection_permissions kg_any WHERE kg_any.api_key_id = k.id \
     ) END AS key_has_grants";

/// What one access statement reads about the principal.
#[derive(QueryableByName)]
struct PrincipalColumns {
    #[diesel(sql_type = Nullable<BigInt>)]
    principal_user_id: Option<i64>,
    #[diesel(sql_type = Nullable<Bool>)]
    principal_user_is_active: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    principal_is_superuser: Option<bool>,
    #[diesel(sql_type = Nullable<Bool>)]
    key_is_active: Option<bool>,
    #[diesel(sql_type = Nullable<Text>)]
    key_expires_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    key_permissions: Option<String>,
    #[diesel(sql_type = Bool)]
    key_has_grants: bool,
}

impl PrincipalColumns {
    /// The facts, or `NotFound` for a principal that does not exist.
    fn into_facts(self, principal: Principal) -> RepoResult<PrincipalFacts> {
        const T: &str = "api_keys";
        let user_id = self
            .principal_user_id
            .ok_or_else(|| principal.not_found())?;
        let key = match principal.api_key_id() {
            None => None,
            Some(_) => Some(KeyFacts {
                is_active: self.key_is_active.unwrap_or(false),
                expires_at: read_opt_ts(T, "expires_at", self.key_expires_at.as_deref())?,
                permissions: read_opt_json(T, "permissions", self.key_permissions.as_deref())?,
                has_grants: self.key_has_grants,
            }),
        };
        Ok(PrincipalFacts {
            user_id: UserId(user_id),
            user_is_active: self.principal_user_is_active.unwrap_or(false),
            is_superuser: self.principal_is_superuser.unwrap_or(false),
            key,
        })
    }
}

/// A collection with its principal and the acting user's and key's grants on it.
#[derive(QueryableByName)]
struct AccessColumns {
    #[diesel(embed)]
    collection: CollectionRow,
    #[diesel(embed)]
    principal: PrincipalColumns,
    #[diesel(sql_type = Nullable<Text>)]
    user_grant: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    key_grant: Option<String>,
}

fn parse_grant(grant: Option<String>) -> RepoResult<Option<AccessLevel>> {
    grant
        .as_deref()
        .map(|g| read_enum("collection_permissions", "permission", g))
        .transpose()
}

/// How `principal` may act (`repo_core::access`), in one statement; an unknown user or
/// key is `NotFound { entity: Entity::User | Entity::ApiKey }`.
pub(crate) fn actor(conn: &mut SqliteConnection, principal: Principal) -> RepoResult<Actor> {
    let row: PrincipalColumns = diesel::sql_query(format!(
        "SELECT {PRINCIPAL_COLUMNS} FROM (SELECT 1) AS one {PRINCIPAL_JOINS}"
    ))
    .bind::<Nullable<BigInt>, _>(principal.user_id().map(|u| u.0))
    .bind::<Nullable<Text>, _>(principal.api_key_id().map(|k| uuid(k.0)))
    .cached()
    .get_result(conn)
    .map_err(map_diesel_error)?;
    Ok(row.into_facts(principal)?.actor(now()))
}

/// The collection, how `principal` may act, and the level it holds on the collection,
/// in one statement (the collection row left-joined to the principal and to both
/// grants). No row: `NotFound { entity: Entity::Collection }`; then an unknown user or key
/// is `NotFound { entity: Entity::User | Entity::ApiKey }`.
pub(crate) fn access(
    conn: &mut SqliteConnection,
    id: CollectionId,
    principal: Principal,
) -> RepoResult<(Collection, Actor, Option<AccessLevel>)> {
    let row: Option<AccessColumns> = diesel::sql_query(format!(
        "SELECT c.*, {PRINCIPAL_COLUMNS}, ug.permission AS user_grant, kg.permission AS key_grant \
         FROM collections c {PRINCIPAL_JOINS} \
         LEFT JOIN collection_permissions ug ON ug.collection_id = c.id AND ug.user_id = u.id \
         LEFT JOIN collection_permissions kg ON kg.collection_id = c.id AND kg.api_key_id = k.id \
         WHERE c.id = ?3"
    ))
    .bind::<Nullable<BigInt>, _>(principal.user_id().map(|u| u.0))
    .bind::<Nullable<Text>, _>(principal.api_key_id().map(|k| uuid(k.0)))
    .bind::<Text, _>(uuid(id.0))
    .cached()
    .get_result(conn)
    .optional()
    .map_err(map_diesel_error)?;
    let row = row.ok_or_else(|| not_found(id))?;
    let actor = row.principal.into_facts(principal)?.actor(now());
    let collection = row.collection.into_domain()?;
    let level = actor.level(
        &collection,
        parse_grant(row.user_grant)?,
        parse_grant(row.key_grant)?,
    );
    Ok((collection, actor, level))
}

fn create(conn: &mut SqliteConnection, new: &NewCollection) -> RepoResult<Collection> {
    let collection = new.prepare()?;
    let row = CollectionRow::from_collection(&collection)?;
    write_tx(conn, |c| {
        user_repo::ensure_exists(c, collection.owner_id)?;
        diesel::insert_into(collections::table)
            .values(&row)
            .returning(CollectionRow::as_returning())
            .get_result(c)
            .map_err(map_diesel_error)?
            .into_domain()
    })
}

fn get_by_name(conn: &mut SqliteConnection, name: &str) -> RepoResult<Collection> {
    repo_core::validate::text(Field::Name, name)?;
    collections::table
        .filter(collections::name.eq(name))
        .select(CollectionRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| RepoError::not_found(Entity::Collection, name))?
        .into_domain()
}

type CollectionQuery = collections::BoxedQuery<'static, Sqlite>;

/// Collections a user can reach: owned, public, or granted to the user.
fn user_reach(
    user: UserId,
) -> Box<dyn BoxableExpression<collections::table, Sqlite, SqlType = Bool>> {
    let granted = grants::table
        .filter(grants::user_id.eq(user.0))
        .select(grants::collection_id);
    Box::new(
        collections::owner_id
            .eq(user.0)
            .or(collections::is_public.eq(true))
            .or(collections::id.eq_any(granted)),
    )
}

/// The collections `actor` (resolved from `principal`) lists, as `repo_core::access`
/// decides.
fn visible_to(actor: Actor, principal: Principal) -> CollectionQuery {
    let all = collections::table.into_boxed();
    match actor {
        Actor::Denied => all.filter(collections::id.ne(collections::id)),
        Actor::User { user, .. } => all.filter(user_reach(user)),
        Actor::Scoped {
            user,
            is_superuser,
            read_public,
        } => {
            let key_granted = grants::table
                .filter(grants::api_key_id.eq(principal.api_key_id().map(|k| uuid(k.0))))
                .select(grants::collection_id);
            let scoped = if is_superuser {
                all.filter(collections::id.eq_any(key_granted))
            } else {
                all.filter(collections::id.eq_any(key_granted).and(user_reach(user)))
            };
            if read_public {
                scoped.or_filter(collections::is_public.eq(true))
            } else {
                scoped
            }
        }
    }
}

/// A user's reach as indexed branches (`Actor::User`): owned
/// (`collections_owner_id_idx`), public (`collections_public_created_at_idx`) and
/// granted (`collection_permissions_user_id_idx`, then the primary key), each read
/// newest first, instead of one `OR` that scans every collection. Other actors
/// (scoped API keys) keep one query.
fn visible_branches(actor: Actor, principal: Principal) -> Vec<CollectionQuery> {
    match actor {
        Actor::User { user, .. } => {
            let granted = grants::table
                .filter(grants::user_id.eq(user.0))
                .select(grants::collection_id);
            vec![
                collections::table
                    .filter(collections::owner_id.eq(user.0))
                    .into_boxed(),
                collections::table
                    .filter(collections::is_public.eq(true))
                    .into_boxed(),
                collections::table
                    .filter(collections::id.eq_any(granted))
                    .into_boxed(),
            ]
        }
        _ => vec![visible_to(actor, principal)],
    }
}

/// Rows `skip..skip + take` of the newest-first listing of what `actor` sees, after
/// the cursor position `after` when given: `skip + take` rows of each branch, merged.
fn visible_rows(
    c: &mut SqliteConnection,
    actor: Actor,
    principal: Principal,
    after: Option<&repo_core::Cursor>,
    skip: i64,
    take: i64,
) -> RepoResult<Vec<Collection>> {
    let mut branches = Vec::new();
    for mut query in visible_branches(actor, principal) {
        if let Some(after) = after {
            let (at, id) = (ts(after.created_at()), uuid(after.uuid_id()?));
            query = query.filter(
                collections::created_at
                    .lt(at.clone())
                    .or(collections::created_at.eq(at).and(collections::id.lt(id))),
            );
        }
        let rows = query
            .select(CollectionRow::as_select())
            .order((collections::created_at.desc(), collections::id.desc()))
            .limit(skip.saturating_add(take))
            .load(c)
            .map_err(map_diesel_error)?;
        branches.push(many(rows)?);
    }
    let index = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(repo_core::merge_newest_first(
        branches,
        index(skip),
        index(take),
    ))
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How many collections `actor` sees: for a user, the union of the branches' ids.
fn visible_count(c: &mut SqliteConnection, actor: Actor, principal: Principal) -> RepoResult<u64> {
    let n = match actor {
        Actor::User { user, .. } => {
            diesel::sql_query(
                "SELECT count(*) AS n FROM ( \
                   SELECT id FROM collections WHERE owner_id = ?1 \
                   UNION SELECT id FROM collections WHERE is_public = 1 \
                   UNION SELECT collection_id FROM collection_permissions WHERE user_id = ?1)",
            )
            .bind::<BigInt, _>(user.0)
            .get_result::<Counted>(c)
            .map_err(map_diesel_error)?
            .n
        }
        _ => visible_to(actor, principal)
            .count()
            .get_result(c)
            .map_err(map_diesel_error)?,
    };
    Ok(count(n))
}

fn list_visible(
    conn: &mut SqliteConnection,
    principal: Principal,
    page: PageRequest,
) -> RepoResult<Page<Collection>> {
    read_tx(conn, |c| {
        let actor = actor(c, principal)?;
        actor.require_usable()?;
        let items = visible_rows(
            c,
            actor,
            principal,
            None,
            page.offset_i64(),
            page.limit_i64(),
        )?;
        let total = visible_count(c, actor, principal)?;
        Ok(Page { items, total })
    })
}

fn list_visible_by_cursor(
    conn: &mut SqliteConnection,
    principal: Principal,
    page: &CursorRequest,
) -> RepoResult<CursorPage<Collection>> {
    read_tx(conn, |c| {
        let actor = actor(c, principal)?;
        actor.require_usable()?;
        let rows = visible_rows(
            c,
            actor,
            principal,
            page.after.as_ref(),
            0,
            page.fetch_i64(),
        )?;
        Ok(page.page(rows, Collection::cursor))
    })
}

fn update(
    conn: &mut SqliteConnection,
    id: CollectionId,
    patch: &CollectionPatch,
) -> RepoResult<Collection> {
    write_tx(conn, |c| {
        let current = get(c, id)?;
        let next = patch.apply_to(&current)?;
        let row = diesel::update(collections::table.find(uuid(id.0)))
            .set(PatchChanges {
                description: next.description.clone(),
                embedding_model: next.embedding_model.clone(),
                quantization: next.quantization.as_str().to_owned(),
                chunk_size: next.chunk_size,
                chunk_overlap: next.chunk_overlap,
                chunking_strategy: next.chunking_strategy.clone(),
                chunking_config: opt_json(next.chunking_config.as_ref())?,
                is_public: next.is_public,
                meta: json(&next.meta)?,
                sync_mode: next.sync_mode.as_str().to_owned(),
                sync_interval_minutes: next.sync_interval_minutes,
                sync_next_run_at: opt_ts(next.sync_next_run_at),
                updated_at: ts(next.updated_at),
            })
            .returning(CollectionRow::as_returning())
            .get_result(c)
            .optional()
            .map_err(map_diesel_error)?;
        one(row, id)
    })
}

fn rename(conn: &mut SqliteConnection, id: CollectionId, new_name: &str) -> RepoResult<Collection> {
    let name = validate::collection_name(new_name)?;
    let row = diesel::update(collections::table.find(uuid(id.0)))
        .set((
            collections::name.eq(&name),
            collections::updated_at.eq(ts(now())),
        ))
        .returning(CollectionRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

fn update_status(
    conn: &mut SqliteConnection,
    id: CollectionId,
    status: CollectionStatus,
    message: Option<&str>,
) -> RepoResult<Collection> {
    validate::opt_text(Field::StatusMessage, message)?;
    let from: Vec<&'static str> = CollectionStatus::predecessors(status)
        .into_iter()
        .map(CollectionStatus::as_str)
        .collect();
    write_tx(conn, |c| {
        let row = if from.is_empty() {
            None
        } else {
            diesel::update(
                collections::table
                    .find(uuid(id.0))
                    .filter(collections::status.eq_any(&from)),
            )
            .set((
                collections::status.eq(status.as_str()),
                collections::status_message.eq(message),
                collections::updated_at.eq(ts(now())),
            ))
            .returning(CollectionRow::as_returning())
            .get_result(c)
            .optional()
            .map_err(map_diesel_error)?
        };
        match row {
            Some(row) => row.into_domain(),
            // No row changed: missing, or in a state that does not lead to `status`.
            None => {
                let current = get(c, id)?;
                Err(RepoError::invalid_state(current.status, status))
            }
        }
    })
}

fn update_stats(
    conn: &mut SqliteConnection,
    id: CollectionId,
    stats: CollectionStats,
) -> RepoResult<Collection> {
    stats.validate()?;
    let row = diesel::update(collections::table.find(uuid(id.0)))
        .set((
            collections::document_count.eq(stats.document_count),
            collections::vector_count.eq(stats.vector_count),
            collections::total_size_bytes.eq(stats.total_size_bytes),
            collections::updated_at.eq(ts(now())),
        ))
        .returning(CollectionRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

fn delete(conn: &mut SqliteConnection, id: CollectionId, actor: Principal) -> RepoResult<()> {
    write_tx(conn, |c| {
        let (collection, _, level) = access(c, id, actor)?;
        require_access(&collection, level, AccessLevel::Admin)?;
        // Operations and grants (and documents, chunks) go by ON DELETE CASCADE.
        diesel::delete(collections::table.find(uuid(id.0)))
            .execute(c)
            .map_err(map_diesel_error)?;
        Ok(())
    })
}

fn due_for_sync(
    conn: &mut SqliteConnection,
    at: Timestamp,
    limit: u32,
) -> RepoResult<Vec<Collection>> {
    let rows = collections::table
        .filter(collections::sync_mode.eq(SyncMode::Continuous.as_str()))
        .filter(collections::sync_paused_at.is_null())
        .filter(collections::sync_next_run_at.le(ts(at)))
        .filter(collections::status.eq(CollectionStatus::Ready.as_str()))
        .select(CollectionRow::as_select())
        .order((collections::sync_next_run_at.asc(), collections::id.asc()))
        .limit(i64::from(limit))
        .load(conn)
        .map_err(map_diesel_error)?;
    many(rows)
}

fn pause_sync(conn: &mut SqliteConnection, id: CollectionId) -> RepoResult<Collection> {
    write_tx(conn, |c| {
        let current = get(c, id)?;
        if current.sync_mode == SyncMode::OneTime {
            return Err(RepoError::invalid_state(
                SyncMode::OneTime,
                Attempt::PauseSync,
            ));
        }
        if current.sync_paused_at.is_some() {
            // Pausing twice keeps the first pause time.
            return Ok(current);
        }
        let at = ts(now());
        let row = diesel::update(collections::table.find(uuid(id.0)))
            .set((
                collections::sync_paused_at.eq(&at),
                collections::updated_at.eq(&at),
            ))
            .returning(CollectionRow::as_returning())
            .get_result(c)
            .optional()
            .map_err(map_diesel_error)?;
        one(row, id)
    })
}

fn resume_sync(
    conn: &mut SqliteConnection,
    id: CollectionId,
    next_run_at: Timestamp,
) -> RepoResult<Collection> {
    write_tx(conn, |c| {
        let current = get(c, id)?;
        if current.sync_mode == SyncMode::OneTime {
            return Err(RepoError::invalid_state(
                SyncMode::OneTime,
                Attempt::ResumeSync,
            ));
        }
        let row = diesel::update(collections::table.find(uuid(id.0)))
            .set((
                collections::sync_paused_at.eq(None::<String>),
                collections::sync_next_run_at.eq(ts(next_run_at)),
                collections::updated_at.eq(ts(now())),
            ))
            .returning(CollectionRow::as_returning())
            .get_result(c)
            .optional()
            .map_err(map_diesel_error)?;
        one(row, id)
    })
}

fn record_sync_run(
    conn: &mut SqliteConnection,
    id: CollectionId,
    run: &SyncRun,
) -> RepoResult<Collection> {
    validate::opt_text(Field::SyncLastError, run.error.as_deref())?;
    write_tx(conn, |c| {
        let current = get(c, id)?;
        let next_run = match (
            run.completed_at,
            current.sync_mode,
            current.sync_interval_minutes,
        ) {
            (Some(done), SyncMode::Continuous, Some(minutes)) => {
                Some(done + chrono::Duration::minutes(i64::from(minutes)))
            }
            _ => current.sync_next_run_at,
        };
        let row = diesel::update(collections::table.find(uuid(id.0)))
            .set((
                collections::sync_last_run_started_at.eq(ts(run.started_at)),
                collections::sync_last_run_completed_at.eq(opt_ts(run.completed_at)),
                collections::sync_last_run_status.eq(run.status.as_str()),
                collections::sync_last_error.eq(run.error.as_deref()),
                collections::sync_next_run_at.eq(opt_ts(next_run)),
                collections::updated_at.eq(ts(now())),
            ))
            .returning(CollectionRow::as_returning())
            .get_result(c)
            .optional()
            .map_err(map_diesel_error)?;
        one(row, id)
    })
}

fn grant(
    conn: &mut SqliteConnection,
    id: CollectionId,
    grantee: Grantee,
    level: AccessLevel,
) -> RepoResult<CollectionPermission> {
    write_tx(conn, |c| {
        ensure_exists(c, id)?;
        let row = InsertPermission {
            collection_id: uuid(id.0),
            user_id: None,
            api_key_id: None,
            permission: level.as_str(),
            created_at: ts(now()),
        };
        let stored = match grantee {
            Grantee::User(user) => {
                user_repo::ensure_exists(c, user)?;
                diesel::insert_into(grants::table)
                    .values(InsertPermission {
                        user_id: Some(user.0),
                        ..row
                    })
                    .on_conflict((grants::collection_id, grants::user_id))
                    .do_update()
                    .set(grants::permission.eq(excluded(grants::permission)))
                    .returning(PermissionRow::as_returning())
                    .get_result(c)
            }
            Grantee::ApiKey(key) => {
                let exists: bool =
                    diesel::select(diesel::dsl::exists(api_keys::table.find(uuid(key.0))))
                        .get_result(c)
                        .map_err(map_diesel_error)?;
                if !exists {
                    return Err(RepoError::not_found(Entity::ApiKey, key));
                }
                diesel::insert_into(grants::table)
                    .values(InsertPermission {
                        api_key_id: Some(uuid(key.0)),
                        ..row
                    })
                    .on_conflict((grants::collection_id, grants::api_key_id))
                    .do_update()
                    .set(grants::permission.eq(excluded(grants::permission)))
                    .returning(PermissionRow::as_returning())
                    .get_result(c)
            }
        };
        let stored = stored.map_err(map_diesel_error)?.into_domain()?;
        if let Grantee::ApiKey(key) = grantee {
            mark_key_scoped(c, key)?;
        }
        Ok(stored)
    })
}

/// Marks a key scoped once it holds a grant (`repo_core::access::mark_scoped`), so
/// that revoking its last grant does not hand it back all of its user's rights.
fn mark_key_scoped(conn: &mut SqliteConnection, key: ApiKeyId) -> RepoResult<()> {
    let current: Option<String> = api_keys::table
        .find(uuid(key.0))
        .select(api_keys::permissions)
        .get_result(conn)
        .map_err(map_diesel_error)?;
    let current = read_opt_json("api_keys", "permissions", current.as_deref())?;
    if let Some(next) = repo_core::access::mark_scoped(current.as_ref())? {
        diesel::update(api_keys::table.find(uuid(key.0)))
            .set(api_keys::permissions.eq(json(&next)?))
            .execute(conn)
            .map_err(map_diesel_error)?;
    }
    Ok(())
}

fn revoke_grant(
    conn: &mut SqliteConnection,
    id: CollectionId,
    grantee: Grantee,
) -> RepoResult<bool> {
    let target = grants::table.filter(grants::collection_id.eq(uuid(id.0)));
    let n = match grantee {
        Grantee::User(user) => {
            diesel::delete(target.filter(grants::user_id.eq(user.0))).execute(conn)
        }
        Grantee::ApiKey(key) => {
            diesel::delete(target.filter(grants::api_key_id.eq(uuid(key.0)))).execute(conn)
        }
    }
    .map_err(map_diesel_error)?;
    Ok(affected(n) > 0)
}

fn list_grants(
    conn: &mut SqliteConnection,
    id: CollectionId,
) -> RepoResult<Vec<CollectionPermission>> {
    read_tx(conn, |c| {
        ensure_exists(c, id)?;
        grants::table
            .filter(grants::collection_id.eq(uuid(id.0)))
            .select(PermissionRow::as_select())
            .order((grants::created_at.desc(), grants::id.desc()))
            .load(c)
            .map_err(map_diesel_error)?
            .into_iter()
            .map(PermissionRow::into_domain)
            .collect()
    })
}

impl<S: ConnectionSource> CollectionRepository for SqliteCollections<S> {
    fn create(&self, new: &NewCollection) -> RepoResult<Collection> {
        self.run(|c| create(c, new))
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
        self.run(|c| list_visible(c, principal, page))
    }

    fn list_visible_by_cursor(
        &self,
        principal: Principal,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Collection>> {
        self.run(|c| list_visible_by_cursor(c, principal, page))
    }

    fn update(&self, id: CollectionId, patch: &CollectionPatch) -> RepoResult<Collection> {
        self.run(|c| update(c, id, patch))
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
        self.run(|c| update_status(c, id, status, message))
    }

    fn update_stats(&self, id: CollectionId, stats: CollectionStats) -> RepoResult<Collection> {
        self.run(|c| update_stats(c, id, stats))
    }

    fn delete(&self, id: CollectionId, actor: Principal) -> RepoResult<()> {
        self.run(|c| delete(c, id, actor))
    }

    fn due_for_sync(&self, now: Timestamp, limit: u32) -> RepoResult<Vec<Collection>> {
        self.run(|c| due_for_sync(c, now, limit))
    }

    fn pause_sync(&self, id: CollectionId) -> RepoResult<Collection> {
        self.run(|c| pause_sync(c, id))
    }

    fn resume_sync(&self, id: CollectionId, next_run_at: Timestamp) -> RepoResult<Collection> {
        self.run(|c| resume_sync(c, id, next_run_at))
    }

    fn record_sync_run(&self, id: CollectionId, run: &SyncRun) -> RepoResult<Collection> {
        self.run(|c| record_sync_run(c, id, run))
    }

    fn grant(
        &self,
        id: CollectionId,
        grantee: Grantee,
        level: AccessLevel,
    ) -> RepoResult<CollectionPermission> {
        self.run(|c| grant(c, id, grantee, level))
    }

    fn revoke_grant(&self, id: CollectionId, grantee: Grantee) -> RepoResult<bool> {
        self.run(|c| revoke_grant(c, id, grantee))
    }

    fn list_grants(&self, id: CollectionId) -> RepoResult<Vec<CollectionPermission>> {
        self.run(|c| list_grants(c, id))
    }
}
