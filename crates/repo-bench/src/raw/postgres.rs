//! The raw-Diesel baseline on PostgreSQL: the statements `repo-postgres` runs for
//! each point operation, written with the Diesel DSL on a connection the benchmark
//! holds, loaded into plain structs of the native column types.

use super::PointBaseline;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::Text;
use repo_core::{
    effective_access, now, AccessLevel, ApiKeySecret, CollectionId, OperationStatus, OperationUuid,
    PostgresConfig, Timestamp, UserId,
};
use repo_postgres::schema::{
    api_keys, collection_permissions as perms, collections, operations, users,
};
use serde_json::Value;
use std::hint::black_box;

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
#[allow(dead_code)] // read by Diesel, handed to black_box
struct UserRow {
    id: i64,
    username: String,
    email: String,
    full_name: Option<String>,
    hashed_password: String,
    is_active: bool,
    is_superuser: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    last_login: Option<Timestamp>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(Pg))]
#[allow(dead_code)]
struct ApiKeyRow {
    id: uuid::Uuid,
    user_id: i64,
    name: String,
    key_prefix: String,
    permissions: Option<Value>,
    is_active: bool,
    expires_at: Option<Timestamp>,
    last_used_at: Option<Timestamp>,
    created_at: Timestamp,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = collections, check_for_backend(Pg))]
#[allow(dead_code)]
struct CollectionRow {
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

#[derive(Queryable, Selectable)]
#[diesel(table_name = perms, check_for_backend(Pg))]
#[allow(dead_code)]
struct PermissionRow {
    collection_id: uuid::Uuid,
    user_id: Option<i64>,
    api_key_id: Option<uuid::Uuid>,
    permission: String,
    created_at: Timestamp,
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

#[derive(Queryable, Selectable)]
#[diesel(table_name = operations, check_for_backend(Pg))]
#[allow(dead_code)]
struct OperationRow {
    id: i64,
    uuid: uuid::Uuid,
    collection_id: uuid::Uuid,
    user_id: i64,
    kind: String,
    status: String,
    task_id: Option<String>,
    config: Value,
    error_message: Option<String>,
    meta: Value,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
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
    config: &'a Value,
    meta: &'a Value,
    created_at: Timestamp,
}

#[derive(AsChangeset)]
#[diesel(table_name = operations)]
struct TransitionChanges<'a> {
    status: &'a str,
    started_at: Option<Timestamp>,
    completed_at: Option<Timestamp>,
    error_message: Option<&'a str>,
}

/// The session settings `repo-postgres` gives every pooled connection (one
/// `set_config` statement), so that the baseline runs under the same timeouts.
pub(crate) fn apply_session_settings(
    conn: &mut PgConnection,
    config: &PostgresConfig,
) -> QueryResult<()> {
    let ms = |d: std::time::Duration| d.as_millis().min(i32::MAX as u128).to_string();
    diesel::sql_query(
        "SELECT set_config('statement_timeout', $1, false), \
                set_config('lock_timeout', $2, false), \
                set_config('idle_in_transaction_session_timeout', $3, false), \
                set_config('application_name', $4, false), \
                set_config('TimeZone', $5, false)",
    )
    .bind::<Text, _>(ms(config.statement_timeout))
    .bind::<Text, _>(ms(config.lock_timeout))
    .bind::<Text, _>(ms(config.idle_in_transaction_timeout))
    .bind::<Text, _>(format!("{}-raw", config.application_name))
    .bind::<Text, _>("UTC")
    .execute(conn)
    .map(|_| ())
}

fn get_user(conn: &mut PgConnection, id: i64) -> QueryResult<UserRow> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
}

/// `SELECT id … LIMIT 1`, as `require` in `repo-postgres`.
fn require_collection(conn: &mut PgConnection, id: uuid::Uuid) -> QueryResult<uuid::Uuid> {
    collections::table
        .find(id)
        .select(collections::id)
        .first(conn)
}

fn require_user(conn: &mut PgConnection, id: i64) -> QueryResult<i64> {
    users::table.find(id).select(users::id).first(conn)
}

impl PointBaseline for PgConnection {
    fn get_user(&mut self, id: UserId) -> QueryResult<()> {
        black_box(get_user(self, id.0)?);
        Ok(())
    }

    fn collection_with_access(&mut self, id: CollectionId, user: UserId) -> QueryResult<bool> {
        // repo-postgres runs these three statements outside a transaction.
        let collection = collections::table
            .find(id.0)
            .select(CollectionRow::as_select())
            .first(self)?;
        let user = get_user(self, user.0)?;
        let grant: Option<String> = perms::table
            .filter(perms::collection_id.eq(collection.id))
            .filter(perms::user_id.eq(user.id))
            .select(perms::permission)
            .first(self)
            .optional()?;
        let grant = grant.and_then(|g| g.parse::<AccessLevel>().ok());
        let level = effective_access(
            collection.owner_id == user.id,
            user.is_superuser,
            collection.is_public,
            grant,
        );
        black_box((&collection, &user));
        Ok(level.is_some_and(|l| l.allows(AccessLevel::Read)))
    }

    fn verify_key(&mut self, secret: &ApiKeySecret) -> QueryResult<bool> {
        let hash = secret.hash();
        let at = now();
        self.build_transaction().read_committed().run(|c| {
            let active_users = users::table
                .filter(users::is_active.eq(true))
                .select(users::id);
            let key: Option<ApiKeyRow> = diesel::update(
                api_keys::table
                    .filter(api_keys::key_hash.eq(hash))
                    .filter(api_keys::is_active.eq(true))
                    .filter(
                        api_keys::expires_at
                            .is_null()
                            .or(api_keys::expires_at.gt(at)),
                    )
                    .filter(api_keys::user_id.eq_any(active_users)),
            )
            .set(api_keys::last_used_at.eq(at))
            .returning(ApiKeyRow::as_returning())
            .get_result(c)
            .optional()?;
            let Some(key) = key else {
                return Ok(false);
            };
            let user = get_user(c, key.user_id)?;
            black_box((&key, &user));
            Ok(true)
        })
    }

    fn create_operation(
        &mut self,
        collection: CollectionId,
        user: UserId,
        config: &Value,
    ) -> QueryResult<OperationUuid> {
        let uuid = OperationUuid::new();
        let meta = Value::Object(Default::default());
        let created_at = now();
        self.build_transaction().read_committed().run(|c| {
            require_collection(c, collection.0)?;
            require_user(c, user.0)?;
            let stored = diesel::insert_into(operations::table)
                .values(InsertOperation {
                    uuid: uuid.0,
                    collection_id: collection.0,
                    user_id: user.0,
                    kind: "index",
                    status: "pending",
                    task_id: None,
                    config,
                    meta: &meta,
                    created_at,
                })
                .returning(OperationRow::as_returning())
                .get_result(c)?;
            black_box(stored);
            Ok(uuid)
        })
    }

    fn transition(&mut self, id: OperationUuid, to: OperationStatus) -> QueryResult<()> {
        // repo-postgres runs the conditional update outside a transaction.
        let from: Vec<&str> = OperationStatus::predecessors(to)
            .into_iter()
            .map(OperationStatus::as_str)
            .collect();
        let at = now();
        let row = diesel::update(
            operations::table
                .filter(operations::uuid.eq(id.0))
                .filter(operations::status.eq_any(from)),
        )
        .set(TransitionChanges {
            status: to.as_str(),
            started_at: (to == OperationStatus::Processing).then_some(at),
            completed_at: to.is_terminal().then_some(at),
            error_message: None,
        })
        .returning(OperationRow::as_returning())
        .get_result(self)?;
        black_box(row);
        Ok(())
    }

    fn grant(
        &mut self,
        collection: CollectionId,
        user: UserId,
        level: AccessLevel,
    ) -> QueryResult<()> {
        self.build_transaction().read_committed().run(|c| {
            require_collection(c, collection.0)?;
            require_user(c, user.0)?;
            let row = InsertPermission {
                collection_id: collection.0,
                user_id: Some(user.0),
                api_key_id: None,
                permission: level.as_str(),
                created_at: now(),
            };
            let stored = diesel::insert_into(perms::table)
                .values(&row)
                .on_conflict((perms::collection_id, perms::user_id))
                .do_update()
                .set(perms::permission.eq(diesel::upsert::excluded(perms::permission)))
                .returning(PermissionRow::as_returning())
                .get_result(c)?;
            black_box(stored);
            Ok(())
        })
    }
}
