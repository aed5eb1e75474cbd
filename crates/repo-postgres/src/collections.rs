//! [`CollectionRepository`] on PostgreSQL: collections, grants and access checks.

use crate::connection::{missing_reference, parse_column, ConnectionSource, QueryResultExt};
use crate::prepared::CacheDsl;
use crate::schema::{api_keys, collection_permissions as perms, collections};
use crate::users as user_repo;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use repo_core::{
    now, require_access, validate, AccessLevel, Actor, ApiKeyId, Attempt, Collection, CollectionId,
    CollectionPatch, CollectionPermission, CollectionRepository, CollectionStats, CollectionStatus,
    CursorPage, CursorRequest, Entity, Field, Grantee, KeyFacts, NewCollection, Page, PageRequest,
    Principal, PrincipalFacts, RepoError, RepoResult, SyncMode, SyncRun, Timestamp, UserId,
};
use serde_json::Value;

/// A whole `collections` row; also the insert and full-update shape.
#[derive(Queryable, QueryableByName, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = collections, check_for_backend(Pg), treat_none_as_null = true)]
pub(crate) struct CollectionRow {
    id: uuid::Uuid,
    name: String,
    description: Option<String>,
    owner_id: i64,
    vector_store_name: String,
    embedding_model: String,
    quantization: String,
    chunk_size: i32,
    chunk_overlap: i32,
    chunking_strategy: Option<String>,
    chunking_config: Option<Value>,
    is_public: bool,
    meta: Value,
    status: String,
    status_message: Option<String>,
    document_count: i64,
    vector_count: i64,
    total_size_bytes: i64,
    sync_mode: String,
    sync_interval_minutes: Option<i32>,
    sync_paused_at: Option<Timestamp>,
    sync_next_run_at: Option<Timestamp>,
    sync_last_run_started_at: Option<Timestamp>,
    sync_last_run_completed_at: Option<Timestamp>,
    sync_last_run_status: Option<String>,
    sync_last_error: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl CollectionRow {
    fn into_domain(self) -> RepoResult<Collection> {
        Ok(Collection {
            id: CollectionId(self.id),
            name: self.name,
            description: self.description,
            owner_id: UserId(self.owner_id),
            vector_store_name: self.vector_store_name,
            embedding_model: self.embedding_model,
            quantization: parse_column("quantization", &self.quantization)?,
            chunk_size: self.chunk_size,
            chunk_overlap: self.chunk_overlap,
            chunking_strategy: self.chunking_strategy,
            chunking_config: self.chunking_config,
            is_public: self.is_public,
            meta: self.meta,
            status: parse_column("status", &self.status)?,
            status_message: self.status_message,
            document_count: self.document_count,
            vector_count: self.vector_count,
            total_size_bytes: self.total_size_bytes,
            sync_mode: parse_column("sync_mode", &self.sync_mode)?,
            sync_interval_minutes: self.sync_interval_minutes,
            sync_paused_at: self.sync_paused_at,
            sync_next_run_at: self.sync_next_run_at,
            sync_last_run_started_at: self.sync_last_run_started_at,
            sync_last_run_completed_at: self.sync_last_run_completed_at,
            sync_last_run_status: self
                .sync_last_run_status
                .as_deref()
                .map(|s| parse_column("sync_last_run_status", s))
                .transpose()?,
            sync_last_error: self.sync_last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    fn from_domain(c: &Collection) -> Self {
        Self {
            id: c.id.0,
            name: c.name.clone(),
            description: c.description.clone(),
            owner_id: c.owner_id.0,
            vector_store_name: c.vector_store_name.clone(),
            embedding_model: c.embedding_model.clone(),
            quantization: c.quantization.as_str().to_owned(),
            chunk_size: c.chunk_size,
            chunk_overlap: c.chunk_overlap,
            chunking_strategy: c.chunking_strategy.clone(),
            chunking_config: c.chunking_config.clone(),
            is_public: c.is_public,
            meta: c.meta.clone(),
            status: c.status.as_str().to_owned(),
            status_message: c.status_message.clone(),
            document_count: c.document_count,
            vector_count: c.vector_count,
            total_size_bytes: c.total_size_bytes,
            sync_mode: c.sync_mode.as_str().to_owned(),
            sync_interval_minutes: c.sync_interval_minutes,
            sync_paused_at: c.sync_paused_at,
            sync_next_run_at: c.sync_next_run_at,
            sync_last_run_started_at: c.sync_last_run_started_at,
            sync_last_run_completed_at: c.sync_last_run_completed_at,
            sync_last_run_status: c.sync_last_run_status.map(|s| s.as_str().to_owned()),
            sync_last_error: c.sync_last_error.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A `collection_permissions` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = perms, check_for_backend(Pg))]
struct PermissionRow {
    collection_id: uuid::Uuid,
    user_id: Option<i64>,
    api_key_id: Option<uuid::Uuid>,
    permission: String,
    created_at: Timestamp,
}

impl PermissionRow {
    fn into_domain(self) -> RepoResult<CollectionPermission> {
        let grantee = match (self.user_id, self.api_key_id) {
            (Some(u), None) => Grantee::User(UserId(u)),
            (None, Some(k)) => Grantee::ApiKey(ApiKeyId(k)),
            _ => {
                return Err(RepoError::Backend {
                    message: "grant row without exactly one grantee".into(),
                    source: None,
                })
            }
        };
        Ok(CollectionPermission {
            collection_id: CollectionId(self.collection_id),
            grantee,
            permission: parse_column("permission", &self.permission)?,
            created_at: self.created_at,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = perms)]
struct InsertPermission<'a> {
    collection_id: uuid::Uuid,
    user_id: Option<i64>,
    api_key_id: Option<uuid::Uuid>,
    permission: &'a str,
    created_at: Timestamp,
}

fn one(row: Option<CollectionRow>, id: CollectionId) -> RepoResult<Collection> {
    row.ok_or_else(|| RepoError::not_found(Entity::Collection, id))?
        .into_domain()
}

fn many(rows: Vec<CollectionRow>) -> RepoResult<Vec<Collection>> {
    rows.into_iter().map(CollectionRow::into_domain).collect()
}

/// The collection, or `NotFound { entity: Entity::Collection }`.
pub(crate) fn get(conn: &mut PgConnection, id: CollectionId) -> RepoResult<Collection> {
    let row = collections::table
        .find(id.0)
        .select(CollectionRow::as_select())
        .first(conn)
        .optional()
        .db()?;
    one(row, id)
}

/// `SELECT … FOR UPDATE` on the collection row, or `NotFound`.
pub(crate) fn lock(conn: &mut PgConnection, id: CollectionId) -> RepoResult<Collection> {
    let row = collections::table
        .find(id.0)
        .select(CollectionRow::as_select())
        .for_update()
        .first(conn)
        .optional()
        .db()?;
    one(row, id)
}

/// Checks that the collection exists, or reports `NotFound { entity: Entity::Collection }`.
pub(crate) fn require(conn: &mut PgConnection, id: CollectionId) -> RepoResult<()> {
    let found: Option<uuid::Uuid> = collections::table
        .find(id.0)
        .select(collections::id)
        .first(conn)
        .optional()
        .db()?;
    found
        .map(|_| ())
        .ok_or_else(|| RepoError::not_found(Entity::Collection, id))
}

/// The joins that resolve a principal: `$1` is the user id (NULL for a key), `$2` the
/// key id (NULL for a user); `u` is the acting user, `k` the key.
const PRINCIPAL_JOINS: &str = "LEFT JOIN api_keys k ON k.id = $2 \
     LEFT JOIN users u ON u.id = COALESCE(k.user_id, $1)";

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
    #[diesel(sql_type = Nullable<Timestamptz>)]
    key_expires_at: Option<Timestamp>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    key_permissions: Option<Value>,
    #[diesel(sql_type = Bool)]
    key_has_grants: bool,
}

impl PrincipalColumns {
    /// The facts, or `NotFound` for a principal that does not exist.
    fn into_facts(self, principal: Principal) -> RepoResult<PrincipalFacts> {
        let user_id = self
            .principal_user_id
            .ok_or_else(|| principal.not_found())?;
        let key = principal.api_key_id().map(|_| KeyFacts {
            is_active: self.key_is_active.unwrap_or(false),
            expires_at: self.key_expires_at,
            permissions: self.key_permissions,
            has_grants: self.key_has_grants,
        });
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
        .map(|g| parse_column("permission", g))
        .transpose()
}

/// How `principal` may act (`repo_core::access`), in one statement; an unknown user or
/// key is `NotFound { entity: Entity::User | Entity::ApiKey }`.
pub(crate) fn actor(conn: &mut PgConnection, principal: Principal) -> RepoResult<Actor> {
    let row: PrincipalColumns = diesel::sql_query(format!(
        "SELECT {PRINCIPAL_COLUMNS} FROM (SELECT 1) AS one {PRINCIPAL_JOINS}"
    ))
    .bind::<Nullable<BigInt>, _>(principal.user_id().map(|u| u.0))
    .bind::<Nullable<SqlUuid>, _>(principal.api_key_id().map(|k| k.0))
    .cached()
    .get_result(conn)
    .db()?;
    Ok(row.into_facts(principal)?.actor(now()))
}

/// The collection, how `principal` may act, and the level it holds on the collection,
/// in one statement (the collection row left-joined to the principal and to both
/// grants). No row: `NotFound { entity: Entity::Collection }`; then an unknown user or key
/// is `NotFound { entity: Entity::User | Entity::ApiKey }`.
pub(crate) fn with_access(
    conn: &mut PgConnection,
    id: CollectionId,
    principal: Principal,
) -> RepoResult<(Collection, Actor, Option<AccessLevel>)> {
    let row: Option<AccessColumns> = diesel::sql_query(format!(
        "SELECT c.*, {PRINCIPAL_COLUMNS}, ug.permission AS user_grant, kg.permission AS key_grant \
         FROM collections c {PRINCIPAL_JOINS} \
         LEFT JOIN collection_permissions ug ON ug.collection_id = c.id AND ug.user_id = u.id \
         LEFT JOIN collection_permissions kg ON kg.collection_id = c.id AND kg.api_key_id = k.id \
         WHERE c.id = $3"
    ))
    .bind::<Nullable<BigInt>, _>(principal.user_id().map(|u| u.0))
    .bind::<Nullable<SqlUuid>, _>(principal.api_key_id().map(|k| k.0))
    .bind::<SqlUuid, _>(id.0)
    .cached()
    .get_result(conn)
    .optional()
    .db()?;
    let row = row.ok_or_else(|| RepoError::not_found(Entity::Collection, id))?;
    let actor = row.principal.into_facts(principal)?.actor(now());
    let collection = row.collection.into_domain()?;
    let have = actor.level(
        &collection,
        parse_grant(row.user_grant)?,
        parse_grant(row.key_grant)?,
    );
    Ok((collection, actor, have))
}

fn create(conn: &mut PgConnection, new: &NewCollection) -> RepoResult<Collection> {
    let c = new.prepare()?;
    user_repo::require(conn, c.owner_id)?;
    diesel::insert_into(collections::table)
        .values(CollectionRow::from_domain(&c))
        .returning(CollectionRow::as_returning())
        .get_result(conn)
        .db()?
        .into_domain()
}

fn get_by_name(conn: &mut PgConnection, name: &str) -> RepoResult<Collection> {
    repo_core::validate::text(Field::Name, name)?;
    collections::table
        .filter(collections::name.eq(name))
        .select(CollectionRow::as_select())
        .first(conn)
        .optional()
        .db()?
        .ok_or_else(|| RepoError::not_found(Entity::Collection, name))?
        .into_domain()
}

fn get_with_access(
    conn: &mut PgConnection,
    id: CollectionId,
    principal: Principal,
    needed: AccessLevel,
) -> RepoResult<Collection> {
    let (collection, _, have) = with_access(conn, id, principal)?;
    require_access(&collection, have, needed)?;
    Ok(collection)
}

type CollectionQuery = collections::BoxedQuery<'static, Pg>;

/// Collections a user can reach: owned, public, or granted to the user.
fn user_reach(user: UserId) -> Box<dyn BoxableExpression<collections::table, Pg, SqlType = Bool>> {
    let granted = perms::table
        .filter(perms::user_id.eq(user.0))
        .select(perms::collection_id);
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
            let key_granted = perms::table
                .filter(perms::api_key_id.eq(principal.api_key_id().map(|k| k.0)))
                .select(perms::collection_id);
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
            let granted = perms::table
                .filter(perms::user_id.eq(user.0))
                .select(perms::collection_id);
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
    conn: &mut PgConnection,
    actor: Actor,
    principal: Principal,
    after: Option<&repo_core::Cursor>,
    skip: i64,
    take: i64,
) -> RepoResult<Vec<Collection>> {
    let mut branches = Vec::new();
    for mut q in visible_branches(actor, principal) {
        if let Some(after) = after {
            let (at, id) = (after.created_at(), after.uuid_id()?);
            q = q.filter(
                collections::created_at
                    .lt(at)
                    .or(collections::created_at.eq(at).and(collections::id.lt(id))),
            );
        }
        let rows = q
            .select(CollectionRow::as_select())
            .order((collections::created_at.desc(), collections::id.desc()))
            .limit(skip.saturating_add(take))
            .load(conn)
            .db()?;
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
fn visible_count(conn: &mut PgConnection, actor: Actor, principal: Principal) -> RepoResult<u64> {
    let n = match actor {
        Actor::User { user, .. } => {
            diesel::sql_query(
                "SELECT count(*) AS n FROM ( \
                   SELECT id FROM collections WHERE owner_id = $1 \
                   UNION SELECT id FROM collections WHERE is_public \
                   UNION SELECT collection_id FROM collection_permissions WHERE user_id = $1) AS v",
            )
            .bind::<BigInt, _>(user.0)
            .get_result::<Counted>(conn)
            .db()?
            .n
        }
        _ => visible_to(actor, principal).count().get_result(conn).db()?,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

fn list_visible_by_cursor(
    conn: &mut PgConnection,
    principal: Principal,
    page: &CursorRequest,
) -> RepoResult<CursorPage<Collection>> {
    let actor = actor(conn, principal)?;
    actor.require_usable()?;
    let rows = visible_rows(
        conn,
        actor,
        principal,
        page.after.as_ref(),
        0,
        page.fetch_i64(),
    )?;
    Ok(page.page(rows, Collection::cursor))
}

fn list_visible(
    conn: &mut PgConnection,
    principal: Principal,
    page: PageRequest,
) -> RepoResult<Page<Collection>> {
    let actor = actor(conn, principal)?;
    actor.require_usable()?;
    let items = visible_rows(
        conn,
        actor,
        principal,
        None,
        page.offset_i64(),
        page.limit_i64(),
    )?;
    let total = visible_count(conn, actor, principal)?;
    Ok(Page { items, total })
}

/// Writes every column of `next` (read under `FOR UPDATE` by the caller).
fn store(conn: &mut PgConnection, next: &Collection) -> RepoResult<Collection> {
    diesel::update(collections::table.find(next.id.0))
        .set(CollectionRow::from_domain(next))
        .returning(CollectionRow::as_returning())
        .get_result(conn)
        .optional()
        .db()
        .and_then(|row| one(row, next.id))
}

fn update(
    conn: &mut PgConnection,
    id: CollectionId,
    patch: &CollectionPatch,
) -> RepoResult<Collection> {
    let current = lock(conn, id)?;
    let next = patch.apply_to(&current)?;
    store(conn, &next)
}

fn rename(conn: &mut PgConnection, id: CollectionId, new_name: &str) -> RepoResult<Collection> {
    let name = validate::collection_name(new_name)?;
    let row = diesel::update(collections::table.find(id.0))
        .set((
            collections::name.eq(name),
            collections::updated_at.eq(now()),
        ))
        .returning(CollectionRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?;
    one(row, id)
}

fn update_status(
    conn: &mut PgConnection,
    id: CollectionId,
    status: CollectionStatus,
    message: Option<&str>,
) -> RepoResult<Collection> {
    validate::opt_text(Field::StatusMessage, message)?;
    let from: Vec<&str> = CollectionStatus::predecessors(status)
        .into_iter()
        .map(CollectionStatus::as_str)
        .collect();
    let row = diesel::update(
        collections::table
            .find(id.0)
            .filter(collections::status.eq_any(from)),
    )
    .set((
        collections::status.eq(status.as_str()),
        collections::status_message.eq(message),
        collections::updated_at.eq(now()),
    ))
    .returning(CollectionRow::as_returning())
    .get_result(conn)
    .optional()
    .db()?;
    match row {
        Some(row) => row.into_domain(),
        None => {
            let current = get(conn, id)?;
            Err(RepoError::invalid_state(current.status, status))
        }
    }
}

fn update_stats(
    conn: &mut PgConnection,
    id: CollectionId,
    stats: CollectionStats,
) -> RepoResult<Collection> {
    stats.validate()?;
    let row = diesel::update(collections::table.find(id.0))
        .set((
            collections::document_count.eq(stats.document_count),
            collections::vector_count.eq(stats.vector_count),
            collections::total_size_bytes.eq(stats.total_size_bytes),
            collections::updated_at.eq(now()),
        ))
        .returning(CollectionRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?;
    one(row, id)
}

fn delete(conn: &mut PgConnection, id: CollectionId, actor: Principal) -> RepoResult<()> {
    lock(conn, id)?;
    let (collection, _, have) = with_access(conn, id, actor)?;
    require_access(&collection, have, AccessLevel::Admin)?;
    // Operations and grants go by foreign-key cascade.
    diesel::delete(collections::table.find(id.0))
        .execute(conn)
        .db()?;
    Ok(())
}

fn due_for_sync(conn: &mut PgConnection, at: Timestamp, limit: u32) -> RepoResult<Vec<Collection>> {
    let rows = collections::table
        .filter(collections::sync_mode.eq(SyncMode::Continuous.as_str()))
        .filter(collections::sync_paused_at.is_null())
        .filter(collections::sync_next_run_at.le(at))
        .filter(collections::status.eq(CollectionStatus::Ready.as_str()))
        .select(CollectionRow::as_select())
        .order((collections::sync_next_run_at.asc(), collections::id.asc()))
        .limit(i64::from(limit))
        .load(conn)
        .db()?;
    many(rows)
}

fn pause_sync(conn: &mut PgConnection, id: CollectionId) -> RepoResult<Collection> {
    let current = lock(conn, id)?;
    if current.sync_mode == SyncMode::OneTime {
        return Err(RepoError::invalid_state(
            SyncMode::OneTime,
            Attempt::PauseSync,
        ));
    }
    if current.sync_paused_at.is_some() {
        return Ok(current);
    }
    let at = now();
    store(
        conn,
        &Collection {
            sync_paused_at: Some(at),
            updated_at: at,
            ..current
        },
    )
}

fn resume_sync(
    conn: &mut PgConnection,
    id: CollectionId,
    next_run_at: Timestamp,
) -> RepoResult<Collection> {
    let current = lock(conn, id)?;
    if current.sync_mode == SyncMode::OneTime {
        return Err(RepoError::invalid_state(
            SyncMode::OneTime,
            Attempt::ResumeSync,
        ));
    }
    store(
        conn,
        &Collection {
            sync_paused_at: None,
            sync_next_run_at: Some(repo_core::time::truncate_micros(next_run_at)),
            updated_at: now(),
            ..current
        },
    )
}

fn record_sync_run(
    conn: &mut PgConnection,
    id: CollectionId,
    run: &SyncRun,
) -> RepoResult<Collection> {
    validate::opt_text(Field::SyncLastError, run.error.as_deref())?;
    let current = lock(conn, id)?;
    let truncate = repo_core::time::truncate_micros;
    let completed_at = run.completed_at.map(truncate);
    let next_run = match (
        completed_at,
        current.sync_mode,
        current.sync_interval_minutes,
    ) {
        (Some(done), SyncMode::Continuous, Some(minutes)) => {
            Some(done + chrono::Duration::minutes(i64::from(minutes)))
        }
        _ => current.sync_next_run_at,
    };
    store(
        conn,
        &Collection {
            sync_last_run_started_at: Some(truncate(run.started_at)),
            sync_last_run_completed_at: completed_at,
            sync_last_run_status: Some(run.status),
            sync_last_error: run.error.clone(),
            sync_next_run_at: next_run,
            updated_at: now(),
            ..current
        },
    )
}

fn grant(
    conn: &mut PgConnection,
    id: CollectionId,
    grantee: Grantee,
    level: AccessLevel,
) -> RepoResult<CollectionPermission> {
    let (user_id, api_key_id) = match grantee {
        Grantee::User(u) => (Some(u.0), None),
        Grantee::ApiKey(k) => (None, Some(k.0)),
    };
    let row = InsertPermission {
        collection_id: id.0,
        user_id,
        api_key_id,
        permission: level.as_str(),
        created_at: now(),
    };
    let insert = diesel::insert_into(perms::table).values(&row);
    // Per docs/semantics.md: only the level changes; `created_at` keeps the first grant.
    let changes = perms::permission.eq(diesel::upsert::excluded(perms::permission));
    let stored = match grantee {
        Grantee::User(_) => insert
            .on_conflict((perms::collection_id, perms::user_id))
            .do_update()
            .set(changes)
            .returning(PermissionRow::as_returning())
            .cached()
            .get_result(conn),
        Grantee::ApiKey(_) => insert
            .on_conflict((perms::collection_id, perms::api_key_id))
            .do_update()
            .set(changes)
            .returning(PermissionRow::as_returning())
            .cached()
            .get_result(conn),
    };
    // One statement: a missing collection or grantee is the foreign-key violation of
    // the insert (checked in this order, as the columns are declared); an existing
    // grant takes the update path, where the referenced rows exist by construction.
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
        .db()?;
    if let Some(next) = repo_core::access::mark_scoped(current.as_ref())? {
        diesel::update(api_keys::table.find(key.0))
            .set(api_keys::permissions.eq(next))
            .execute(conn)
            .db()?;
    }
    Ok(())
}

fn revoke_grant(conn: &mut PgConnection, id: CollectionId, grantee: Grantee) -> RepoResult<bool> {
    let of_collection = perms::table.filter(perms::collection_id.eq(id.0));
    let n = match grantee {
        Grantee::User(u) => {
            diesel::delete(of_collection.filter(perms::user_id.eq(u.0))).execute(conn)
        }
        Grantee::ApiKey(k) => {
            diesel::delete(of_collection.filter(perms::api_key_id.eq(k.0))).execute(conn)
        }
    }
    .db()?;
    Ok(n > 0)
}

fn list_grants(conn: &mut PgConnection, id: CollectionId) -> RepoResult<Vec<CollectionPermission>> {
    require(conn, id)?;
    perms::table
        .filter(perms::collection_id.eq(id.0))
        .select(PermissionRow::as_select())
        .order((perms::created_at.desc(), perms::id.desc()))
        .load(conn)
        .db()?
        .into_iter()
        .map(PermissionRow::into_domain)
        .collect()
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
        self.src.read(|c| get_with_access(c, id, principal, needed))
    }

    fn access_level(
        &self,
        id: CollectionId,
        principal: Principal,
    ) -> RepoResult<Option<AccessLevel>> {
        self.src
            .read(|c| with_access(c, id, principal).map(|(_, _, have)| have))
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
