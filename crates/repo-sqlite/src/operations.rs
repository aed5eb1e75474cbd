//! Operations and their state machine.

use crate::codec::{
    affected, count, json, read_enum, read_json, read_opt_ts, read_ts, read_uuid, ts, uuid,
};
use crate::collections;
use crate::connection::{read_tx, write_tx, ConnectionSource, SqliteOperations};
use crate::error::map_diesel_error;
use crate::schema::operations;
use crate::users as user_repo;
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use repo_core::{
    now, require_access, validate, AccessLevel, CollectionId, CursorPage, CursorRequest, Entity,
    Field, NewOperation, Operation, OperationFilter, OperationRepository, OperationStatus,
    OperationUuid, Page, PageRequest, Principal, RepoError, RepoResult, Timestamp, UserId,
};
use serde_json::Value;

/// Bind parameters per statement when a list of ids is expanded into `IN (…)`; well
/// below SQLite's limit (32,766 in the bundled build).
const IN_CHUNK: usize = 10_000;

/// An `operations` row as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = operations, check_for_backend(Sqlite))]
struct OperationRow {
    id: i64,
    uuid: String,
    collection_id: String,
    user_id: i64,
    kind: String,
    status: String,
    task_id: Option<String>,
    idempotency_key: Option<String>,
    config: String,
    error_message: Option<String>,
    meta: String,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
}

impl OperationRow {
    fn into_domain(self) -> RepoResult<Operation> {
        const T: &str = "operations";
        Ok(Operation {
            id: self.id,
            uuid: OperationUuid(read_uuid(T, "uuid", &self.uuid)?),
            collection_id: CollectionId(read_uuid(T, "collection_id", &self.collection_id)?),
            user_id: UserId(self.user_id),
            kind: read_enum(T, "kind", &self.kind)?,
            status: read_enum(T, "status", &self.status)?,
            task_id: self.task_id,
            idempotency_key: self.idempotency_key,
            config: read_json(T, "config", &self.config)?,
            error_message: self.error_message,
            meta: read_json(T, "meta", &self.meta)?,
            created_at: read_ts(T, "created_at", &self.created_at)?,
            started_at: read_opt_ts(T, "started_at", self.started_at.as_deref())?,
            completed_at: read_opt_ts(T, "completed_at", self.completed_at.as_deref())?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = operations, treat_none_as_default_value = false)]
struct InsertOperation<'a> {
    uuid: String,
    collection_id: String,
    user_id: i64,
    kind: &'static str,
    status: &'static str,
    task_id: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    config: String,
    error_message: Option<&'a str>,
    meta: String,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
}

/// The columns a transition sets; `None` leaves a column as it is.
#[derive(AsChangeset)]
#[diesel(table_name = operations)]
struct TransitionChanges<'a> {
    status: &'static str,
    started_at: Option<String>,
    completed_at: Option<String>,
    error_message: Option<&'a str>,
}

fn not_found(id: OperationUuid) -> RepoError {
    RepoError::not_found(Entity::Operation, id)
}

fn one(row: Option<OperationRow>, id: OperationUuid) -> RepoResult<Operation> {
    row.ok_or_else(|| not_found(id))?.into_domain()
}

fn many(rows: Vec<OperationRow>) -> RepoResult<Vec<Operation>> {
    rows.into_iter().map(OperationRow::into_domain).collect()
}

fn active_statuses() -> [&'static str; 2] {
    [
        OperationStatus::Pending.as_str(),
        OperationStatus::Processing.as_str(),
    ]
}

fn create(conn: &mut SqliteConnection, new: &NewOperation) -> RepoResult<Operation> {
    let op = new.prepare()?;
    let row = InsertOperation {
        uuid: uuid(op.uuid.0),
        collection_id: uuid(op.collection_id.0),
        user_id: op.user_id.0,
        kind: op.kind.as_str(),
        status: op.status.as_str(),
        task_id: op.task_id.as_deref(),
        idempotency_key: op.idempotency_key.as_deref(),
        config: json(&op.config)?,
        error_message: None,
        meta: json(&op.meta)?,
        created_at: ts(op.created_at),
        started_at: None,
        completed_at: None,
    };
    write_tx(conn, |c| {
        collections::ensure_exists(c, op.collection_id)?;
        user_repo::ensure_exists(c, op.user_id)?;
        // The write transaction is immediate: creators with the same key run one after
        // the other, so the second finds the first's row here.
        if let Some(key) = op.idempotency_key.as_deref() {
            let existing = operations::table
                .filter(operations::collection_id.eq(uuid(op.collection_id.0)))
                .filter(operations::idempotency_key.eq(key))
                .select(OperationRow::as_select())
                .first(c)
                .optional()
                .map_err(map_diesel_error)?;
            if let Some(existing) = existing {
                return existing.into_domain();
            }
        }
        // A second active operation on the collection fails on the partial unique
        // index `operations_one_active_per_collection` → Conflict(ActiveOperation).
        diesel::insert_into(operations::table)
            .values(&row)
            .returning(OperationRow::as_returning())
            .get_result(c)
            .map_err(map_diesel_error)?
            .into_domain()
    })
}

fn get_by_task_id(conn: &mut SqliteConnection, task_id: &str) -> RepoResult<Operation> {
    validate::text(Field::TaskId, task_id)?;
    operations::table
        .filter(operations::task_id.eq(task_id))
        .select(OperationRow::as_select())
        .order((operations::created_at.desc(), operations::id.desc()))
        .first(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| RepoError::not_found(Entity::Operation, task_id))?
        .into_domain()
}

fn get(conn: &mut SqliteConnection, id: OperationUuid) -> RepoResult<Operation> {
    let row = operations::table
        .filter(operations::uuid.eq(uuid(id.0)))
        .select(OperationRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

/// One conditional update `WHERE uuid = ? AND status IN (predecessors)`; when no row
/// changes, `NotFound` or `InvalidState { current, attempted }`. Call inside a write
/// transaction so that the re-read sees the state that refused the update.
fn transition_in_tx(
    conn: &mut SqliteConnection,
    id: OperationUuid,
    to: OperationStatus,
    error_message: Option<&str>,
) -> RepoResult<Operation> {
    let from: Vec<&'static str> = OperationStatus::predecessors(to)
        .into_iter()
        .map(OperationStatus::as_str)
        .collect();
    let row = if from.is_empty() {
        None
    } else {
        let at = ts(now());
        diesel::update(
            operations::table
                .filter(operations::uuid.eq(uuid(id.0)))
                .filter(operations::status.eq_any(&from)),
        )
        .set(TransitionChanges {
            status: to.as_str(),
            started_at: (to == OperationStatus::Processing).then(|| at.clone()),
            completed_at: to.is_terminal().then_some(at),
            error_message,
        })
        .returning(OperationRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
    };
    match row {
        Some(row) => row.into_domain(),
        None => {
            let current = get(conn, id)?;
            Err(RepoError::invalid_state(current.status, to))
        }
    }
}

fn transition(
    conn: &mut SqliteConnection,
    id: OperationUuid,
    to: OperationStatus,
    error_message: Option<&str>,
) -> RepoResult<Operation> {
    validate::opt_text(Field::ErrorMessage, error_message)?;
    write_tx(conn, |c| transition_in_tx(c, id, to, error_message))
}

fn get_with_access(
    conn: &mut SqliteConnection,
    id: OperationUuid,
    principal: Principal,
    needed: AccessLevel,
) -> RepoResult<Operation> {
    read_tx(conn, |c| {
        let op = get(c, id)?;
        let (collection, _, level) = collections::access(c, op.collection_id, principal)?;
        require_access(&collection, level, needed)?;
        Ok(op)
    })
}

fn cancel(
    conn: &mut SqliteConnection,
    id: OperationUuid,
    principal: Principal,
) -> RepoResult<Operation> {
    write_tx(conn, |c| {
        let op = get(c, id)?;
        let (collection, actor, level) = collections::access(c, op.collection_id, principal)?;
        if !actor.is_creator_of(op.user_id) {
            require_access(&collection, level, AccessLevel::Write)?;
        }
        transition_in_tx(c, id, OperationStatus::Cancelled, None)
    })
}

fn set_task_id(
    conn: &mut SqliteConnection,
    id: OperationUuid,
    task_id: &str,
) -> RepoResult<Operation> {
    validate::text(Field::TaskId, task_id)?;
    let row = diesel::update(operations::table.filter(operations::uuid.eq(uuid(id.0))))
        .set(operations::task_id.eq(task_id))
        .returning(OperationRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

fn filtered(filter: &OperationFilter) -> operations::BoxedQuery<'static, Sqlite> {
    let mut query = operations::table.into_boxed();
    if !filter.statuses.is_empty() {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query = query.filter(operations::status.eq_any(statuses));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(operations::kind.eq(kind.as_str()));
    }
    query
}

/// The page of `base` (newest first) after `page.after`: keyset on `(created_at, id)`.
fn cursor_page_of(
    conn: &mut SqliteConnection,
    base: operations::BoxedQuery<'static, Sqlite>,
    page: &CursorRequest,
) -> RepoResult<CursorPage<Operation>> {
    let mut query = base;
    if let Some(after) = &page.after {
        let (at, id) = (ts(after.created_at()), after.int_id()?);
        query = query.filter(
            operations::created_at
                .lt(at.clone())
                .or(operations::created_at.eq(at).and(operations::id.lt(id))),
        );
    }
    let rows = query
        .select(OperationRow::as_select())
        .order((operations::created_at.desc(), operations::id.desc()))
        .limit(page.fetch_i64())
        .load(conn)
        .map_err(map_diesel_error)?;
    Ok(page.page(many(rows)?, Operation::cursor))
}

/// A page of `base` (newest first) and the total, from one snapshot.
fn page_of(
    conn: &mut SqliteConnection,
    base: impl Fn() -> operations::BoxedQuery<'static, Sqlite>,
    page: PageRequest,
) -> RepoResult<Page<Operation>> {
    read_tx(conn, |c| {
        let rows = base()
            .select(OperationRow::as_select())
            .order((operations::created_at.desc(), operations::id.desc()))
            .limit(page.limit_i64())
            .offset(page.offset_i64())
            .load(c)
            .map_err(map_diesel_error)?;
        let total: i64 = base().count().get_result(c).map_err(map_diesel_error)?;
        Ok(Page {
            items: many(rows)?,
            total: count(total),
        })
    })
}

fn active_for_collection(
    conn: &mut SqliteConnection,
    id: CollectionId,
) -> RepoResult<Vec<Operation>> {
    let rows = operations::table
        .filter(operations::collection_id.eq(uuid(id.0)))
        .filter(operations::status.eq_any(active_statuses()))
        .select(OperationRow::as_select())
        .order((operations::created_at.desc(), operations::id.desc()))
        .load(conn)
        .map_err(map_diesel_error)?;
    many(rows)
}

fn stuck(conn: &mut SqliteConnection, older_than: Timestamp) -> RepoResult<Vec<Operation>> {
    let rows = operations::table
        .filter(operations::status.eq_any(active_statuses()))
        .filter(operations::created_at.lt(ts(older_than)))
        .select(OperationRow::as_select())
        .order((operations::created_at.asc(), operations::id.asc()))
        .load(conn)
        .map_err(map_diesel_error)?;
    many(rows)
}

fn mark_failed_many(
    conn: &mut SqliteConnection,
    ids: &[OperationUuid],
    message: &str,
) -> RepoResult<u64> {
    validate::text(Field::ErrorMessage, message)?;
    if ids.is_empty() {
        return Ok(0);
    }
    write_tx(conn, |c| {
        let at = ts(now());
        let mut moved = 0;
        for chunk in ids.chunks(IN_CHUNK) {
            let uuids: Vec<String> = chunk.iter().map(|id| uuid(id.0)).collect();
            let n = diesel::update(
                operations::table
                    .filter(operations::uuid.eq_any(&uuids))
                    .filter(operations::status.eq_any(active_statuses())),
            )
            .set((
                operations::status.eq(OperationStatus::Failed.as_str()),
                operations::completed_at.eq(&at),
                operations::error_message.eq(message),
            ))
            .execute(c)
            .map_err(map_diesel_error)?;
            moved += affected(n);
        }
        Ok(moved)
    })
}

fn merge_meta(
    conn: &mut SqliteConnection,
    id: OperationUuid,
    patch: &Value,
) -> RepoResult<Operation> {
    validate::json_object(Field::Meta, patch)?;
    write_tx(conn, |c| {
        let current = get(c, id)?;
        let mut meta = match current.meta {
            Value::Object(map) => map,
            _ => Default::default(),
        };
        if let Value::Object(extra) = patch {
            for (key, value) in extra {
                meta.insert(key.clone(), value.clone());
            }
        }
        let row = diesel::update(operations::table.filter(operations::uuid.eq(uuid(id.0))))
            .set(operations::meta.eq(json(&Value::Object(meta))?))
            .returning(OperationRow::as_returning())
            .get_result(c)
            .optional()
            .map_err(map_diesel_error)?;
        one(row, id)
    })
}

impl<S: ConnectionSource> OperationRepository for SqliteOperations<S> {
    fn create(&self, new: &NewOperation) -> RepoResult<Operation> {
        self.run(|c| create(c, new))
    }

    fn get(&self, uuid: OperationUuid) -> RepoResult<Operation> {
        self.run(|c| get(c, uuid))
    }

    fn get_by_task_id(&self, task_id: &str) -> RepoResult<Operation> {
        self.run(|c| get_by_task_id(c, task_id))
    }

    fn get_with_access(
        &self,
        uuid: OperationUuid,
        principal: Principal,
        needed: AccessLevel,
    ) -> RepoResult<Operation> {
        self.run(|c| get_with_access(c, uuid, principal, needed))
    }

    fn transition(
        &self,
        uuid: OperationUuid,
        to: OperationStatus,
        error_message: Option<&str>,
    ) -> RepoResult<Operation> {
        self.run(|c| transition(c, uuid, to, error_message))
    }

    fn cancel(&self, uuid: OperationUuid, actor: Principal) -> RepoResult<Operation> {
        self.run(|c| cancel(c, uuid, actor))
    }

    fn set_task_id(&self, uuid: OperationUuid, task_id: &str) -> RepoResult<Operation> {
        self.run(|c| set_task_id(c, uuid, task_id))
    }

    fn list_for_collection(
        &self,
        collection_id: CollectionId,
        filter: &OperationFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Operation>> {
        let id = uuid(collection_id.0);
        self.run(|c| {
            page_of(
                c,
                || filtered(filter).filter(operations::collection_id.eq(id.clone())),
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
        self.run(|c| {
            page_of(
                c,
                || filtered(filter).filter(operations::user_id.eq(user_id.0)),
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
        let id = uuid(collection_id.0);
        self.run(|c| {
            cursor_page_of(
                c,
                filtered(filter).filter(operations::collection_id.eq(id.clone())),
                page,
            )
        })
    }

    fn list_for_user_by_cursor(
        &self,
        user_id: UserId,
        filter: &OperationFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Operation>> {
        self.run(|c| {
            cursor_page_of(
                c,
                filtered(filter).filter(operations::user_id.eq(user_id.0)),
                page,
            )
        })
    }

    fn active_for_collection(&self, collection_id: CollectionId) -> RepoResult<Vec<Operation>> {
        self.run(|c| active_for_collection(c, collection_id))
    }

    fn stuck(&self, older_than: Timestamp) -> RepoResult<Vec<Operation>> {
        self.run(|c| stuck(c, older_than))
    }

    fn mark_failed_many(&self, uuids: &[OperationUuid], message: &str) -> RepoResult<u64> {
        self.run(|c| mark_failed_many(c, uuids, message))
    }

    fn merge_meta(&self, uuid: OperationUuid, patch: &Value) -> RepoResult<Operation> {
        self.run(|c| merge_meta(c, uuid, patch))
    }
}
