//! The raw-Diesel baseline on PostgreSQL: the statements `repo-postgres` runs for
//! each point operation, written with the Diesel DSL on a connection the benchmark
//! holds, loaded into plain structs of the native column types.

use super::{Floor, PointBaseline};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::Text;
use repo_core::{
    effective_access, now, AccessLevel, ApiKeyPolicy, ApiKeySecret, CollectionId, OperationStatus,
    OperationUuid, PostgresConfig, Timestamp, UserId,
};
use repo_postgres::prepared::CacheDsl;
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

#[derive(Queryable, Selectable, QueryableByName)]
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
    idempotency_key: Option<String>,
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
    idempotency_key: Option<&'a str>,
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

impl PointBaseline for PgConnection {
    fn get_user(&mut self, id: UserId) -> QueryResult<()> {
        black_box(get_user(self, id.0)?);
        Ok(())
    }

    fn collection_with_access(&mut self, id: CollectionId, user: UserId) -> QueryResult<bool> {
        // repo-postgres reads the collection, the user's superuser flag and the grant
        // in one statement.
        let (collection, is_superuser, grant): (CollectionRow, Option<bool>, Option<String>) =
            collections::table
                .left_join(users::table.on(users::id.eq(user.0)))
                .left_join(
                    perms::table.on(perms::collection_id
                        .eq(collections::id)
                        .and(perms::user_id.eq(user.0))),
                )
                .filter(collections::id.eq(id.0))
                .select((
                    CollectionRow::as_select(),
                    users::is_superuser.nullable(),
                    perms::permission.nullable(),
                ))
                .get_result(self)?;
        let is_superuser = is_superuser.ok_or(diesel::result::Error::NotFound)?;
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
        // As repo-postgres: one read, then a stamp only when it is due.
        verify_then_stamp(self, secret, policy)
    }

    fn create_operation(
        &mut self,
        collection: CollectionId,
        user: UserId,
        config: &Value,
    ) -> QueryResult<OperationUuid> {
        Writes {
            conn: self,
            prepared: false,
        }
        .create_operation(collection, user, config)
    }

    fn transition(&mut self, id: OperationUuid, to: OperationStatus) -> QueryResult<()> {
        Writes {
            conn: self,
            prepared: false,
        }
        .transition(id, to)
    }

    fn grant(
        &mut self,
        collection: CollectionId,
        user: UserId,
        level: AccessLevel,
    ) -> QueryResult<()> {
        Writes {
            conn: self,
            prepared: false,
        }
        .grant(collection, user, level)
    }
}

/// The writes of the baseline (`prepared: false`: as Diesel sends them, re-prepared
/// on every call, because Diesel 2.3 never caches an `UPDATE`, an `ON CONFLICT … DO
/// UPDATE` or an `INSERT` with an optional column) and of the floor (`prepared: true`:
/// the same statements kept by the statement cache).
struct Writes<'a> {
    conn: &'a mut PgConnection,
    prepared: bool,
}

impl Writes<'_> {
    fn create_operation(
        &mut self,
        collection: CollectionId,
        user: UserId,
        config: &Value,
    ) -> QueryResult<OperationUuid> {
        // One INSERT … RETURNING in autocommit: repo-postgres lets the foreign keys
        // report a missing collection or user.
        let uuid = OperationUuid::new();
        let meta = Value::Object(Default::default());
        let stored = diesel::insert_into(operations::table)
            .values(InsertOperation {
                uuid: uuid.0,
                collection_id: collection.0,
                user_id: user.0,
                kind: "index",
                status: "pending",
                task_id: None,
                idempotency_key: None,
                config,
                meta: &meta,
                created_at: now(),
            })
            .returning(OperationRow::as_returning());
        let stored = if self.prepared {
            stored.cached().get_result(self.conn)?
        } else {
            stored.get_result(self.conn)?
        };
        black_box(stored);
        Ok(uuid)
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
        .returning(OperationRow::as_returning());
        let row = if self.prepared {
            row.cached().get_result(self.conn)?
        } else {
            row.get_result(self.conn)?
        };
        black_box(row);
        Ok(())
    }

    fn grant(
        &mut self,
        collection: CollectionId,
        user: UserId,
        level: AccessLevel,
    ) -> QueryResult<()> {
        // One upsert in autocommit, as repo-postgres.
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
            .returning(PermissionRow::as_returning());
        let stored = if self.prepared {
            stored.cached().get_result(self.conn)?
        } else {
            stored.get_result(self.conn)?
        };
        black_box(stored);
        Ok(())
    }
}

/// The floor on PostgreSQL. The repository's create, transition, grant and access
/// check already are one statement each, as an expert writes them, so the floor runs
/// the baseline's statements for them, prepared once ([`Writes`] with `prepared`); it differs on the get (no bound
/// `LIMIT`); verify is [`verify_then_stamp`], as the repository and the baseline.
impl PointBaseline for Floor<PgConnection> {
    fn get_user(&mut self, id: UserId) -> QueryResult<()> {
        let row: UserRow = users::table
            .find(id.0)
            .select(UserRow::as_select())
            .get_result(&mut self.0)?;
        black_box(row);
        Ok(())
    }

    fn collection_with_access(&mut self, id: CollectionId, user: UserId) -> QueryResult<bool> {
        self.0.collection_with_access(id, user)
    }

    fn verify_key(&mut self, secret: &ApiKeySecret, policy: &ApiKeyPolicy) -> QueryResult<bool> {
        verify_then_stamp(&mut self.0, secret, policy)
    }

    fn create_operation(
        &mut self,
        collection: CollectionId,
        user: UserId,
        config: &Value,
    ) -> QueryResult<OperationUuid> {
        Writes {
            conn: &mut self.0,
            prepared: true,
        }
        .create_operation(collection, user, config)
    }

    fn transition(&mut self, id: OperationUuid, to: OperationStatus) -> QueryResult<()> {
        Writes {
            conn: &mut self.0,
            prepared: true,
        }
        .transition(id, to)
    }

    fn grant(
        &mut self,
        collection: CollectionId,
        user: UserId,
        level: AccessLevel,
    ) -> QueryResult<()> {
        Writes {
            conn: &mut self.0,
            prepared: true,
        }
        .grant(collection, user, level)
    }
}

/// Verify as an expert writes it, and as `repo-postgres` now does: a plain `SELECT` of
/// the key and its user, then an `UPDATE` only when the stamp is stale (never in the
/// steady state of the benchmark).
fn verify_then_stamp(
    conn: &mut PgConnection,
    secret: &ApiKeySecret,
    policy: &ApiKeyPolicy,
) -> QueryResult<bool> {
    let at = now();
    let found: Option<(ApiKeyRow, UserRow)> = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(secret.hash()))
        .filter(api_keys::is_active)
        .filter(users::is_active)
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(at)),
        )
        .select((ApiKeyRow::as_select(), UserRow::as_select()))
        .get_result(conn)
        .optional()?;
    let Some((key, user)) = found else {
        return Ok(false);
    };
    let restamp = policy.restamp_at_or_before(at);
    if key.last_used_at.is_none_or(|used| used <= restamp) {
        diesel::update(
            api_keys::table
                .filter(api_keys::id.eq(key.id))
                .filter(api_keys::is_active)
                .filter(
                    api_keys::last_used_at
                        .is_null()
                        .or(api_keys::last_used_at.le(restamp)),
                ),
        )
        .set(api_keys::last_used_at.eq(at))
        .execute(conn)?;
    }
    black_box((key, user));
    Ok(true)
}
