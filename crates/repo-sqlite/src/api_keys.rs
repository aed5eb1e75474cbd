//! API keys: only the SHA-256 of a secret is stored; rows read back never hold it.

use crate::codec::{
    affected, count, opt_json, opt_ts, read_opt_json, read_opt_ts, read_ts, read_uuid, ts, uuid,
};
use crate::connection::{write_tx, ConnectionSource, SqliteApiKeys};
use crate::error::map_diesel_error;
use crate::schema::{api_keys, users};
use crate::users::{self as user_repo, UserRow};
use diesel::prelude::*;
use repo_core::{
    now, ApiKey, ApiKeyId, ApiKeyPolicy, ApiKeyRepository, ApiKeySecret, CreatedApiKey, Entity,
    Field, NewApiKey, RepoError, RepoResult, Timestamp, UserId, VerifiedKey,
};

/// An `api_keys` row without `name_folded` and `key_hash`.
#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::sqlite::Sqlite))]
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

impl ApiKeyRow {
    fn into_domain(self) -> RepoResult<ApiKey> {
        const T: &str = "api_keys";
        Ok(ApiKey {
            id: ApiKeyId(read_uuid(T, "id", &self.id)?),
            user_id: UserId(self.user_id),
            name: self.name,
            key_prefix: self.key_prefix,
            permissions: read_opt_json(T, "permissions", self.permissions.as_deref())?,
            is_active: self.is_active,
            expires_at: read_opt_ts(T, "expires_at", self.expires_at.as_deref())?,
            last_used_at: read_opt_ts(T, "last_used_at", self.last_used_at.as_deref())?,
            created_at: read_ts(T, "created_at", &self.created_at)?,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = api_keys, treat_none_as_default_value = false)]
struct InsertApiKey<'a> {
    id: String,
    user_id: i64,
    name: &'a str,
    name_folded: &'a str,
    key_prefix: &'a str,
    key_hash: &'a str,
    permissions: Option<String>,
    is_active: bool,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    created_at: String,
}

fn not_found(id: ApiKeyId) -> RepoError {
    RepoError::not_found(Entity::ApiKey, id)
}

/// `is_active AND (expires_at IS NULL OR expires_at > at)`, comparing fixed-width text.
fn usable_at(
    at: &str,
) -> Box<
    dyn BoxableExpression<
            api_keys::table,
            diesel::sqlite::Sqlite,
            SqlType = diesel::sql_types::Bool,
        > + '_,
> {
    Box::new(
        api_keys::is_active.eq(true).and(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(at))
                .assume_not_null(),
        ),
    )
}

fn count_active_at(conn: &mut SqliteConnection, user: UserId, at: Timestamp) -> RepoResult<u64> {
    let at = ts(at);
    api_keys::table
        .filter(api_keys::user_id.eq(user.0))
        .filter(usable_at(&at))
        .count()
        .get_result::<i64>(conn)
        .map(count)
        .map_err(map_diesel_error)
}

fn create(
    conn: &mut SqliteConnection,
    new: &NewApiKey,
    policy: &ApiKeyPolicy,
) -> RepoResult<CreatedApiKey> {
    let prepared = new.prepare(policy)?;
    let key = &prepared.key;
    let stored = write_tx(conn, |c| {
        user_repo::ensure_exists(c, key.user_id)?;
        let active = count_active_at(c, key.user_id, key.created_at)?;
        if active >= u64::from(policy.max_active_per_user) {
            return Err(RepoError::validation(
                Field::ApiKeys,
                format!(
                    "a user may hold at most {} active API keys",
                    policy.max_active_per_user
                ),
            ));
        }
        diesel::insert_into(api_keys::table)
            .values(InsertApiKey {
                id: uuid(key.id.0),
                user_id: key.user_id.0,
                name: &key.name,
                name_folded: &prepared.name_folded,
                key_prefix: &key.key_prefix,
                key_hash: &prepared.key_hash,
                permissions: opt_json(key.permissions.as_ref())?,
                is_active: key.is_active,
                expires_at: opt_ts(key.expires_at),
                last_used_at: None,
                created_at: ts(key.created_at),
            })
            .returning(ApiKeyRow::as_returning())
            .get_result(c)
            .map_err(map_diesel_error)?
            .into_domain()
    })?;
    Ok(CreatedApiKey {
        key: stored,
        secret: prepared.secret,
    })
}

fn get(conn: &mut SqliteConnection, id: ApiKeyId) -> RepoResult<ApiKey> {
    api_keys::table
        .find(uuid(id.0))
        .select(ApiKeyRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| not_found(id))?
        .into_domain()
}

fn list_for_user(conn: &mut SqliteConnection, user: UserId) -> RepoResult<Vec<ApiKey>> {
    api_keys::table
        .filter(api_keys::user_id.eq(user.0))
        .select(ApiKeyRow::as_select())
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .load(conn)
        .map_err(map_diesel_error)?
        .into_iter()
        .map(ApiKeyRow::into_domain)
        .collect()
}

/// One read of the key and its user (active, unexpired, user active); then, only when
/// the stored `last_used_at` is `NULL` or not after `policy.restamp_at_or_before(now)`,
/// one conditional `UPDATE` in autocommit (the condition repeated, so that of racing
/// verifies one stamps). A verify of a recently used key takes no write lock.
fn verify(
    conn: &mut SqliteConnection,
    secret: &ApiKeySecret,
    policy: &ApiKeyPolicy,
) -> RepoResult<Option<VerifiedKey>> {
    let hash = secret.hash();
    let now = now();
    let at = ts(now);
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
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    let Some((mut key, user)) = found else {
        return Ok(None);
    };
    let restamp = ts(policy.restamp_at_or_before(now));
    if key
        .last_used_at
        .as_deref()
        .is_none_or(|used| *used <= *restamp)
    {
        let stamped = diesel::update(
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
        .execute(conn)
        .map_err(map_diesel_error)?;
        if stamped == 1 {
            key.last_used_at = Some(at);
        }
    }
    Ok(Some(VerifiedKey {
        key: key.into_domain()?,
        user: user.into_domain()?,
    }))
}

fn revoke(conn: &mut SqliteConnection, id: ApiKeyId) -> RepoResult<ApiKey> {
    diesel::update(api_keys::table.find(uuid(id.0)))
        .set(api_keys::is_active.eq(false))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| not_found(id))?
        .into_domain()
}

fn delete(conn: &mut SqliteConnection, id: ApiKeyId) -> RepoResult<()> {
    let n = diesel::delete(api_keys::table.find(uuid(id.0)))
        .execute(conn)
        .map_err(map_diesel_error)?;
    if n == 0 {
        return Err(not_found(id));
    }
    Ok(())
}

fn purge_expired(conn: &mut SqliteConnection) -> RepoResult<u64> {
    let at = ts(now());
    diesel::delete(
        api_keys::table
            .filter(api_keys::expires_at.is_not_null())
            .filter(api_keys::expires_at.le(&at)),
    )
    .execute(conn)
    .map(affected)
    .map_err(map_diesel_error)
}

impl<S: ConnectionSource> ApiKeyRepository for SqliteApiKeys<S> {
    fn create(&self, new: &NewApiKey) -> RepoResult<CreatedApiKey> {
        let policy = self.config().api_keys;
        self.run(|c| create(c, new, &policy))
    }

    fn get(&self, id: ApiKeyId) -> RepoResult<ApiKey> {
        self.run(|c| get(c, id))
    }

    fn list_for_user(&self, user_id: UserId) -> RepoResult<Vec<ApiKey>> {
        self.run(|c| list_for_user(c, user_id))
    }

    fn verify(&self, secret: &str) -> RepoResult<Option<VerifiedKey>> {
        // Malformed secrets are refused before any query.
        let secret = ApiKeySecret::parse(secret)?;
        let policy = self.config().api_keys;
        self.run(|c| verify(c, &secret, &policy))
    }

    fn revoke(&self, id: ApiKeyId) -> RepoResult<ApiKey> {
        self.run(|c| revoke(c, id))
    }

    fn delete(&self, id: ApiKeyId) -> RepoResult<()> {
        self.run(|c| delete(c, id))
    }

    fn purge_expired(&self) -> RepoResult<u64> {
        self.run(purge_expired)
    }

    fn count_active(&self, user_id: UserId) -> RepoResult<u64> {
        self.run(|c| count_active_at(c, user_id, now()))
    }
}
