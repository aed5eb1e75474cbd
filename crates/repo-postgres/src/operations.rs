//! [`OperationRepository`] on PostgreSQL: the operation state machine.

use crate::collections as collection_repo;
use crate::connection::{missing_reference, parse_column, ConnectionSource, QueryResultExt};
use crate::prepared::CacheDsl;
use crate::schema::operations;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use repo_core::{
    now, require_access, validate, AccessLevel, CollectionId, CursorPage, CursorRequest, Entity,
    Field, NewOperation, Operation, OperationFilter, OperationRepository, OperationStatus,
    OperationUuid, Page, PageRequest, Principal, RepoError, RepoResult, Timestamp, UserId,
};
use serde_json::Value;

/// An `operations` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = operations, check_for_backend(Pg))]
struct OperationRow {
    id: i64,
    uuid: uuid::Uuid,
    collection_id: uuid::Uuid,
    user_id: i64,
    kind: String,
    status: String,
    task_id: Option<String>,
    idempotency_key: Option<String>,
    config: Value,
    error_message: Option<String>,
    meta: Value,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
}

impl OperationRow {
    fn into_domain(self) -> RepoResult<Operation> {
        Ok(Operation {
            id: self.id,
            uuid: OperationUuid(self.uuid),
            collection_id: CollectionId(self.collection_id),
            user_id: UserId(self.user_id),
            kind: parse_column("kind", &self.kind)?,
            status: parse_column("status", &self.status)?,
            task_id: self.task_id,
            idempotency_key: self.idempotency_key,
            config: self.config,
            error_message: self.error_message,
            meta: self.meta,
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = operations)]
struct InsertOperation<'a> {
    uuid: uuid::Uuid,
    collection_id: uuid::Uuid,
    user_id: i64,
    kind: &'a str,
    status: &'a str,
    task_id: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    config: &'a Value,
    meta: &'a Value,
    created_at: Timestamp,
}

/// The columns a transition writes; `None` leaves a column as it is.
#[derive(AsChangeset)]
#[diesel(table_name = operations)]
struct TransitionChanges<'a> {
    status: &'a str,
    started_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
    error_message: Option<&'a str>,
}

const ACTIVE: [&str; 2] = ["pending", "processing"];

fn one(row: Option<OperationRow>, uuid: OperationUuid) -> RepoResult<Operation> {
    row.ok_or_else(|| RepoError::not_found(Entity::Operation, uuid))?
        .into_domain()
}

fn many(rows: Vec<OperationRow>) -> RepoResult<Vec<Operation>> {
    rows.into_iter().map(OperationRow::into_domain).collect()
}

fn get(conn: &mut PgConnection, uuid: OperationUuid) -> RepoResult<Operation> {
    let row = operations::table
        .filter(operations::uuid.eq(uuid.0))
        .select(OperationRow::as_select())
        .first(conn)
        .optional()
        .db()?;
    one(row, uuid)
}

fn create(conn: &mut PgConnection, new: &NewOperation) -> RepoResult<Operation> {
    let op = new.prepare()?;
    let row = InsertOperation {
        uuid: op.uuid.0,
        collection_id: op.collection_id.0,
        user_id: op.user_id.0,
        kind: op.kind.as_str(),
        status: op.status.as_str(),
        task_id: op.task_id.as_deref(),
        idempotency_key: op.idempotency_key.as_deref(),
        config: &op.config,
        meta: &op.meta,
        created_at: op.created_at,
    };
    if let Some(key) = op.idempotency_key.as_deref() {
        // `ON CONFLICT DO NOTHING` without a target arbitrates on every unique index:
        // a racing creator with the same key waits for the first to commit, then
        // inserts nothing, and the re-read (a new statement, a new snapshot) finds the
        // first's row. An active operation with the same key is returned too, not the
        // `ActiveOperation` conflict. When the key is not there, the conflict was
        // another index: the plain insert below reports it.
        let inserted = diesel::insert_into(operations::table)
            .values(&row)
            .on_conflict_do_nothing()
            .returning(OperationRow::as_returning())
            .cached()
            .get_result(conn)
            .optional();
        if let Some(row) = missing_references(inserted, &op)? {
            return row.into_domain();
        }
        if let Some(existing) = by_idempotency_key(conn, op.collection_id, key)? {
            return existing.into_domain();
        }
    }
    // One statement. A second active operation on the collection violates the partial
    // unique index `operations_one_active_per_collection`: `Conflict { ActiveOperation
    // }`. A missing collection or user is the foreign-key violation of the insert,
    // checked in the order the columns are declared (collection first).
    let inserted = diesel::insert_into(operations::table)
        .values(&row)
        .returning(OperationRow::as_returning())
        .cached()
        .get_result(conn);
    missing_references(inserted, &op)?.into_domain()
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

fn by_idempotency_key(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    key: &str,
) -> RepoResult<Option<OperationRow>> {
    operations::table
        .filter(operations::collection_id.eq(collection_id.0))
        .filter(operations::idempotency_key.eq(key))
        .select(OperationRow::as_select())
        .first(conn)
        .optional()
        .db()
}

fn get_by_task_id(conn: &mut PgConnection, task_id: &str) -> RepoResult<Operation> {
    validate::text(Field::TaskId, task_id)?;
    operations::table
        .filter(operations::task_id.eq(task_id))
        .select(OperationRow::as_select())
        .order((operations::created_at.desc(), operations::id.desc()))
        .first(conn)
        .optional()
        .db()?
        .ok_or_else(|| RepoError::not_found(Entity::Operation, task_id))?
        .into_domain()
}

fn get_with_access(
    conn: &mut PgConnection,
    uuid: OperationUuid,
    principal: Principal,
    needed: AccessLevel,
) -> RepoResult<Operation> {
    let op = get(conn, uuid)?;
    let (collection, _, have) = collection_repo::with_access(conn, op.collection_id, principal)?;
    require_access(&collection, have, needed)?;
    Ok(op)
}

/// One conditional `UPDATE … WHERE uuid = ? AND status IN (predecessors)`; when no
/// row changes, a re-read tells `NotFound` from `InvalidState`.
fn transition(
    conn: &mut PgConnection,
    uuid: OperationUuid,
    to: OperationStatus,
    error_message: Option<&str>,
) -> RepoResult<Operation> {
    validate::opt_text(Field::ErrorMessage, error_message)?;
    let from: Vec<&str> = OperationStatus::predecessors(to)
        .into_iter()
        .map(OperationStatus::as_str)
        .collect();
    let at = now();
    let changes = TransitionChanges {
        status: to.as_str(),
        started_at: (to == OperationStatus::Processing).then_some(at),
        completed_at: to.is_terminal().then_some(at),
        error_message,
    };
    let row = diesel::update(
        operations::table
            .filter(operations::uuid.eq(uuid.0))
            .filter(operations::status.eq_any(from)),
    )
    .set(changes)
    .returning(OperationRow::as_returning())
    .cached()
    .get_result(conn)
    .optional()
    .db()?;
    match row {
        Some(row) => row.into_domain(),
        None => {
            let current = get(conn, uuid)?;
            Err(RepoError::invalid_state(current.status, to))
        }
    }
}

fn cancel(
    conn: &mut PgConnection,
    uuid: OperationUuid,
    principal: Principal,
) -> RepoResult<Operation> {
    let op = get(conn, uuid)?;
    let (collection, actor, have) =
        collection_repo::with_access(conn, op.collection_id, principal)?;
    if !actor.is_creator_of(op.user_id) {
        require_access(&collection, have, AccessLevel::Write)?;
    }
    transition(conn, uuid, OperationStatus::Cancelled, None)
}

fn set_task_id(
    conn: &mut PgConnection,
    uuid: OperationUuid,
    task_id: &str,
) -> RepoResult<Operation> {
    validate::text(Field::TaskId, task_id)?;
    let row = diesel::update(operations::table.filter(operations::uuid.eq(uuid.0)))
        .set(operations::task_id.eq(task_id))
        .returning(OperationRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?;
    one(row, uuid)
}

fn filtered(filter: &OperationFilter) -> operations::BoxedQuery<'static, Pg> {
    let mut q = operations::table.into_boxed();
    if !filter.statuses.is_empty() {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        q = q.filter(operations::status.eq_any(statuses));
    }
    if let Some(kind) = filter.kind {
        q = q.filter(operations::kind.eq(kind.as_str()));
    }
    q
}

fn list_page(
    conn: &mut PgConnection,
    scope: impl Fn(operations::BoxedQuery<'static, Pg>) -> operations::BoxedQuery<'static, Pg>,
    filter: &OperationFilter,
    page: PageRequest,
) -> RepoResult<Page<Operation>> {
    let rows = scope(filtered(filter))
        .select(OperationRow::as_select())
        .order((operations::created_at.desc(), operations::id.desc()))
        .limit(page.limit_i64())
        .offset(page.offset_i64())
        .load(conn)
        .db()?;
    let total: i64 = scope(filtered(filter)).count().get_result(conn).db()?;
    Ok(Page {
        items: many(rows)?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// The page of `base` (newest first) after `page.after`: keyset on `(created_at, id)`.
fn cursor_page(
    conn: &mut PgConnection,
    base: operations::BoxedQuery<'static, Pg>,
    page: &CursorRequest,
) -> RepoResult<CursorPage<Operation>> {
    let mut q = base;
    if let Some(after) = &page.after {
        let (at, id) = (after.created_at(), after.int_id()?);
        q = q.filter(
            operations::created_at
                .lt(at)
                .or(operations::created_at.eq(at).and(operations::id.lt(id))),
        );
    }
    let rows = q
        .select(OperationRow::as_select())
        .order((operations::created_at.desc(), operations::id.desc()))
        .limit(page.fetch_i64())
        .load(conn)
        .db()?;
    Ok(page.page(many(rows)?, Operation::cursor))
}

fn active_for_collection(conn: &mut PgConnection, id: CollectionId) -> RepoResult<Vec<Operation>> {
    let rows = operations::table
        .filter(operations::collection_id.eq(id.0))
        .filter(operations::status.eq_any(ACTIVE))
        .select(OperationRow::as_select())
        .order((operations::created_at.desc(), operations::id.desc()))
        .load(conn)
        .db()?;
    many(rows)
}

fn stuck(conn: &mut PgConnection, older_than: Timestamp) -> RepoResult<Vec<Operation>> {
    let rows = operations::table
        .filter(operations::status.eq_any(ACTIVE))
        .filter(operations::created_at.lt(older_than))
        .select(OperationRow::as_select())
        .order((operations::created_at.asc(), operations::id.asc()))
        .load(conn)
        .db()?;
    many(rows)
}

fn mark_failed_many(
    conn: &mut PgConnection,
    uuids: &[OperationUuid],
    message: &str,
) -> RepoResult<u64> {
    validate::text(Field::ErrorMessage, message)?;
    if uuids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = uuids.iter().map(|u| u.0).collect();
    let at = now();
    // `= ANY($1)`: one array parameter, whatever the number of ids.
    let n = diesel::update(
        operations::table
            .filter(operations::uuid.eq_any(ids))
            .filter(operations::status.eq_any(ACTIVE)),
    )
    .set((
        operations::status.eq(OperationStatus::Failed.as_str()),
        operations::completed_at.eq(at),
        operations::error_message.eq(message),
    ))
    .execute(conn)
    .db()?;
    Ok(n as u64)
}

fn merge_meta(
    conn: &mut PgConnection,
    uuid: OperationUuid,
    patch: &Value,
) -> RepoResult<Operation> {
    validate::json_object(Field::Meta, patch)?;
    let current: Option<Value> = operations::table
        .filter(operations::uuid.eq(uuid.0))
        .select(operations::meta)
        .for_update()
        .first(conn)
        .optional()
        .db()?;
    let mut meta = current.ok_or_else(|| RepoError::not_found(Entity::Operation, uuid))?;
    if !meta.is_object() {
        meta = Value::Object(Default::default());
    }
    if let (Some(target), Some(source)) = (meta.as_object_mut(), patch.as_object()) {
        for (k, v) in source {
            target.insert(k.clone(), v.clone());
        }
    }
    let row = diesel::update(operations::table.filter(operations::uuid.eq(uuid.0)))
        .set(operations::meta.eq(&meta))
        .returning(OperationRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?;
    one(row, uuid)
}

/// Operations over a [`ConnectionSource`].
pub(crate) struct PgOperations<S> {
    pub(crate) src: S,
}

impl<S: ConnectionSource> OperationRepository for PgOperations<S> {
    fn create(&self, new: &NewOperation) -> RepoResult<Operation> {
        self.src.run(|c| create(c, new))
    }

    fn get(&self, uuid: OperationUuid) -> RepoResult<Operation> {
        self.src.read(|c| get(c, uuid))
    }

    fn get_by_task_id(&self, task_id: &str) -> RepoResult<Operation> {
        self.src.read(|c| get_by_task_id(c, task_id))
    }

    fn get_with_access(
        &self,
        uuid: OperationUuid,
        principal: Principal,
        needed: AccessLevel,
    ) -> RepoResult<Operation> {
        self.src
            .read(|c| get_with_access(c, uuid, principal, needed))
    }

    fn transition(
        &self,
        uuid: OperationUuid,
        to: OperationStatus,
        error_message: Option<&str>,
    ) -> RepoResult<Operation> {
        self.src.run(|c| transition(c, uuid, to, error_message))
    }

    fn cancel(&self, uuid: OperationUuid, actor: Principal) -> RepoResult<Operation> {
        self.src.write(|c| cancel(c, uuid, actor))
    }

    fn set_task_id(&self, uuid: OperationUuid, task_id: &str) -> RepoResult<Operation> {
        self.src.run(|c| set_task_id(c, uuid, task_id))
    }

    fn list_for_collection(
        &self,
        collection_id: CollectionId,
        filter: &OperationFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Operation>> {
        self.src.read(|c| {
            list_page(
                c,
                |q| q.filter(operations::collection_id.eq(collection_id.0)),
                filter,
                page,
            )
        })
    }

    fn list_for_user(
        &self,
        user_id: UserId,
        filter: &OperationFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Operation>> {
        self.src.read(|c| {
            list_page(
                c,
                |q| q.filter(operations::user_id.eq(user_id.0)),
                filter,
                page,
            )
        })
    }

    fn list_for_collection_by_cursor(
        &self,
        collection_id: CollectionId,
        filter: &OperationFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Operation>> {
        self.src.read(|c| {
            let base = filtered(filter).filter(operations::collection_id.eq(collection_id.0));
            cursor_page(c, base, page)
        })
    }

    fn list_for_user_by_cursor(
        &self,
        user_id: UserId,
        filter: &OperationFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Operation>> {
        self.src.read(|c| {
            let base = filtered(filter).filter(operations::user_id.eq(user_id.0));
            cursor_page(c, base, page)
        })
    }

    fn active_for_collection(&self, collection_id: CollectionId) -> RepoResult<Vec<Operation>> {
        self.src.read(|c| active_for_collection(c, collection_id))
    }

    fn stuck(&self, older_than: Timestamp) -> RepoResult<Vec<Operation>> {
        self.src.read(|c| stuck(c, older_than))
    }

    fn mark_failed_many(&self, uuids: &[OperationUuid], message: &str) -> RepoResult<u64> {
        self.src.run(|c| mark_failed_many(c, uuids, message))
    }

    fn merge_meta(&self, uuid: OperationUuid, patch: &Value) -> RepoResult<Operation> {
        self.src.write(|c| merge_meta(c, uuid, patch))
    }
}
