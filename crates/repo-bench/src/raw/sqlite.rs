//! The raw-Diesel baseline on SQLite: the statements `repo-sqlite` runs for each
//! point operation, written with the Diesel DSL on a connection the benchmark holds.
//! Rows are loaded into plain structs of the stored types (text timestamps, UUIDs
//! and JSON): what a hand-written Diesel application reads, without the layer's
//! conversion into domain types.

use super::{Floor, PointBaseline};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use diesel::upsert::excluded;
use repo_core::time::to_text;
use repo_core::{
    effective_access, now, AccessLevel, ApiKeyPolicy, ApiKeySecret, CollectionId, OperationStatus,
    OperationUuid, SqliteConfig, UserId,
};
use repo_sqlite::schema::{
    api_keys, collection_permissions as grants, collections, operations, users,
};
use std::hint::black_box;

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Sqlite))]
#[allow(dead_code)] // read by Diesel, handed to black_box
struct UserRow {
    id: i64,
    username: String,
    email: String,
    full_name: Option<String>,
    hashed_password: String,
    is_active: bool,
    is_superuser: bool,
    created_at: String,
    updated_at: String,
    last_login: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(Sqlite))]
#[allow(dead_code)]
struct ApiKeyRow {
    id: String,
    user_id: i64,
    name: String,
    key_prefix: String,
    permissions: Option<String>,
    is_active: bool,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    created_at: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = collections, check_for_backend(Sqlite))]
#[allow(dead_code)]
struct CollectionRow {
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

#[derive(Queryable, Selectable)]
#[diesel(table_name = grants, check_for_backend(Sqlite))]
#[allow(dead_code)]
struct GrantRow {
    collection_id: String,
    user_id: Option<i64>,
    api_key_id: Option<String>,
    permission: String,
    created_at: String,
}

#[derive(Insertable)]
#[diesel(table_name = grants, treat_none_as_default_value = false)]
struct NewGrantRow {
    collection_id: String,
    user_id: Option<i64>,
    api_key_id: Option<String>,
    permission: &'static str,
    created_at: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = operations, check_for_backend(Sqlite))]
#[allow(dead_code)]
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

#[derive(Insertable)]
#[diesel(table_name = operations, treat_none_as_default_value = false)]
struct NewOperationRow<'a> {
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

#[derive(AsChangeset)]
#[diesel(table_name = operations)]
struct TransitionChangeset<'a> {
    status: &'static str,
    started_at: Option<String>,
    completed_at: Option<String>,
    error_message: Option<&'a str>,
}

fn uuid_text(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

/// The PRAGMAs `repo-sqlite` sets on every pooled connection, one statement each, so
/// that the baseline connection runs under the same durability and checks.
pub(crate) fn apply_pragmas(conn: &mut SqliteConnection, config: &SqliteConfig) -> QueryResult<()> {
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {}",
        config.busy_timeout.as_millis()
    ))?;
    conn.batch_execute("PRAGMA journal_mode = WAL")?;
    conn.batch_execute("PRAGMA synchronous = NORMAL")?;
    conn.batch_execute("PRAGMA foreign_keys = ON")
}

/// `SELECT EXISTS (…)`, as `ensure_exists` in `repo-sqlite`.
fn collection_exists(conn: &mut SqliteConnection, id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(collections::table.find(id))).get_result(conn)
}

fn user_exists(conn: &mut SqliteConnection, id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(users::table.find(id))).get_result(conn)
}

fn get_user(conn: &mut SqliteConnection, id: i64) -> QueryResult<UserRow> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .get_result(conn)
}

fn missing() -> diesel::result::Error {
    diesel::result::Error::NotFound
}

impl PointBaseline for SqliteConnection {
    fn get_user(&mut self, id: UserId) -> QueryResult<()> {
        black_box(get_user(self, id.0)?);
        Ok(())
    }

    fn collection_with_access(&mut self, id: CollectionId, user: UserId) -> QueryResult<bool> {
        self.transaction(|c| {
            let collection = collections::table
                .find(uuid_text(id.0))
                .select(CollectionRow::as_select())
                .get_result(c)?;
            let user = get_user(c, user.0)?;
            let grant: Option<String> = grants::table
                .filter(grants::collection_id.eq(uuid_text(id.0)))
                .filter(grants::user_id.eq(user.id))
                .select(grants::permission)
                .get_result(c)
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
        })
    }

    fn verify_key(&mut self, secret: &ApiKeySecret, policy: &ApiKeyPolicy) -> QueryResult<bool> {
        // One read in autocommit; the conditional stamp only when it is stale, as
        // repo-sqlite.
        let hash = secret.hash();
        let now = now();
        let at = to_text(now);
        let found: Option<(ApiKeyRow, UserRow)> = api_keys::table
            .inner_join(users::table)
            .filter(api_keys::key_hash.eq(&hash))
            .filter(
                api_keys::is_active.eq(true).and(
                    api_keys::expires_at
                        .is_null()
                        .or(api_keys::expires_at.gt(&at))
                        .assume_not_null(),
                ),
            )
            .filter(users::is_active.eq(true))
            .select((ApiKeyRow::as_select(), UserRow::as_select()))
            .get_result(self)
            .optional()?;
        let Some((key, user)) = found else {
            return Ok(false);
        };
        let restamp = to_text(policy.restamp_at_or_before(now));
        if key
            .last_used_at
            .as_deref()
            .is_none_or(|used| *used <= *restamp)
        {
            diesel::update(
                api_keys::table
                    .filter(api_keys::id.eq(&key.id))
                    .filter(api_keys::is_active.eq(true))
                    .filter(
                        api_keys::last_used_at
                            .is_null()
                            .or(api_keys::last_used_at.le(&restamp))
                            .assume_not_null(),
                    ),
            )
            .set(api_keys::last_used_at.eq(&at))
            .execute(self)?;
        }
        black_box((&key, &user));
        Ok(true)
    }

    fn create_operation(
        &mut self,
        collection: CollectionId,
        user: UserId,
        config: &serde_json::Value,
    ) -> QueryResult<OperationUuid> {
        let uuid = OperationUuid::new();
        let row = NewOperationRow {
            uuid: uuid_text(uuid.0),
            collection_id: uuid_text(collection.0),
            user_id: user.0,
            kind: "index",
            status: "pending",
            task_id: None,
            idempotency_key: None,
            config: config.to_string(),
            error_message: None,
            meta: "{}".to_owned(),
            created_at: to_text(now()),
            started_at: None,
            completed_at: None,
        };
        self.immediate_transaction(|c| {
            if !collection_exists(c, &row.collection_id)? || !user_exists(c, row.user_id)? {
                return Err(missing());
            }
            let stored = diesel::insert_into(operations::table)
                .values(&row)
                .returning(OperationRow::as_returning())
                .get_result(c)?;
            black_box(stored);
            Ok(uuid)
        })
    }

    fn transition(&mut self, id: OperationUuid, to: OperationStatus) -> QueryResult<()> {
        let from: Vec<&'static str> = OperationStatus::predecessors(to)
            .into_iter()
            .map(OperationStatus::as_str)
            .collect();
        let at = to_text(now());
        self.immediate_transaction(|c| {
            let row = diesel::update(
                operations::table
                    .filter(operations::uuid.eq(uuid_text(id.0)))
                    .filter(operations::status.eq_any(&from)),
            )
            .set(TransitionChangeset {
                status: to.as_str(),
                started_at: (to == OperationStatus::Processing).then(|| at.clone()),
                completed_at: to.is_terminal().then(|| at.clone()),
                error_message: None,
            })
            .returning(OperationRow::as_returning())
            .get_result(c)?;
            black_box(row);
            Ok(())
        })
    }

    fn grant(
        &mut self,
        collection: CollectionId,
        user: UserId,
        level: AccessLevel,
    ) -> QueryResult<()> {
        let collection_id = uuid_text(collection.0);
        self.immediate_transaction(|c| {
            if !collection_exists(c, &collection_id)? || !user_exists(c, user.0)? {
                return Err(missing());
            }
            let stored = diesel::insert_into(grants::table)
                .values(NewGrantRow {
                    collection_id: collection_id.clone(),
                    user_id: Some(user.0),
                    api_key_id: None,
                    permission: level.as_str(),
                    created_at: to_text(now()),
                })
                .on_conflict((grants::collection_id, grants::user_id))
                .do_update()
                .set(grants::permission.eq(excluded(grants::permission)))
                .returning(GrantRow::as_returning())
                .get_result(c)?;
            black_box(stored);
            Ok(())
        })
    }
}

/// The floor on SQLite: every write is one statement in autocommit (SQLite makes a
/// single statement atomic; the foreign keys, `PRAGMA foreign_keys = ON`, refuse a
/// missing collection or user, which an expert would then look up only on that error
/// path), and the access check is one `LEFT JOIN` read. The get and verify run the
/// raw baseline's statements, which already are the floor.
impl PointBaseline for Floor<SqliteConnection> {
    fn get_user(&mut self, id: UserId) -> QueryResult<()> {
        self.0.get_user(id)
    }

    fn collection_with_access(&mut self, id: CollectionId, user: UserId) -> QueryResult<bool> {
        let (collection, is_superuser, grant): (CollectionRow, Option<bool>, Option<String>) =
            collections::table
                .left_join(users::table.on(users::id.eq(user.0)))
                .left_join(
                    grants::table.on(grants::collection_id
                        .eq(collections::id)
                        .and(grants::user_id.eq(user.0))),
                )
                .filter(collections::id.eq(uuid_text(id.0)))
                .select((
                    CollectionRow::as_select(),
                    users::is_superuser.nullable(),
                    grants::permission.nullable(),
                ))
                .get_result(&mut self.0)?;
        let is_superuser = is_superuser.ok_or_else(missing)?;
        let grant = grant.and_then(|g| g.parse::<AccessLevel>().ok());
        let level = effective_access(
            collection.owner_id == user.0,
            is_superuser,
            collection.is_public,
            grant,
        );
        black_box(&collection);
        Ok(level.is_some_and(|l| l.allows(AccessLevel::Read)))
    }

    fn verify_key(&mut self, secret: &ApiKeySecret, policy: &ApiKeyPolicy) -> QueryResult<bool> {
        self.0.verify_key(secret, policy)
    }

    fn create_operation(
        &mut self,
        collection: CollectionId,
        user: UserId,
        config: &serde_json::Value,
    ) -> QueryResult<OperationUuid> {
        let uuid = OperationUuid::new();
        let stored = diesel::insert_into(operations::table)
            .values(NewOperationRow {
                uuid: uuid_text(uuid.0),
                collection_id: uuid_text(collection.0),
                user_id: user.0,
                kind: "index",
                status: "pending",
                task_id: None,
                idempotency_key: None,
                config: config.to_string(),
                error_message: None,
                meta: "{}".to_owned(),
                created_at: to_text(now()),
                started_at: None,
                completed_at: None,
            })
            .returning(OperationRow::as_returning())
            .get_result(&mut self.0)?;
        black_box(stored);
        Ok(uuid)
    }

    fn transition(&mut self, id: OperationUuid, to: OperationStatus) -> QueryResult<()> {
        let from: Vec<&'static str> = OperationStatus::predecessors(to)
            .into_iter()
            .map(OperationStatus::as_str)
            .collect();
        let at = to_text(now());
        let row = diesel::update(
            operations::table
                .filter(operations::uuid.eq(uuid_text(id.0)))
                .filter(operations::status.eq_any(&from)),
        )
        .set(TransitionChangeset {
            status: to.as_str(),
            started_at: (to == OperationStatus::Processing).then(|| at.clone()),
            completed_at: to.is_terminal().then(|| at.clone()),
            error_message: None,
        })
        .returning(OperationRow::as_returning())
        .get_result(&mut self.0)?;
        black_box(row);
        Ok(())
    }

    fn grant(
        &mut self,
        collection: CollectionId,
        user: UserId,
        level: AccessLevel,
    ) -> QueryResult<()> {
        let stored = diesel::insert_into(grants::table)
            .values(NewGrantRow {
                collection_id: uuid_text(collection.0),
                user_id: Some(user.0),
                api_key_id: None,
                permission: level.as_str(),
                created_at: to_text(now()),
            })
            .on_conflict((grants::collection_id, grants::user_id))
            .do_update()
            .set(grants::permission.eq(excluded(grants::permission)))
            .returning(GrantRow::as_returning())
            .get_result(&mut self.0)?;
        black_box(stored);
        Ok(())
    }
}
