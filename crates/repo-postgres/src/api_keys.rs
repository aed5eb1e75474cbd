//! [`ApiKeyRepository`] on PostgreSQL. Hashes are written and matched, never read back.

use crate::connection::{ConnectionSource, QueryResultExt};
use crate::prepared::CacheDsl;
use crate::schema::api_keys;
use crate::users as user_repo;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use repo_core::{
    now, ApiKey, ApiKeyId, ApiKeyPolicy, ApiKeyRepository, ApiKeySecret, CreatedApiKey, Entity,
    Field, NewApiKey, RepoError, RepoResult, Timestamp, UserId, VerifiedKey,
};
use serde_json::Value;
use std::sync::LazyLock;

/// The public columns of an `api_keys` row (no hash, no folded name).
#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = api_keys, check_for_backend(Pg))]
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

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            id: ApiKeyId(r.id),
            user_id: UserId(r.user_id),
            name: r.name,
            key_prefix: r.key_prefix,
            permissions: r.permissions,
            is_active: r.is_active,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = api_keys)]
struct InsertApiKey<'a> {
    id: uuid::Uuid,
    user_id: i64,
    name: &'a str,
    name_folded: &'a str,
    key_prefix: &'a str,
    key_hash: &'a str,
    permissions: Option<&'a Value>,
    is_active: bool,
    expires_at: Option<Timestamp>,
    created_at: Timestamp,
}

fn count_active_at(conn: &mut PgConnection, user_id: UserId, at: Timestamp) -> RepoResult<u64> {
    let n: i64 = api_keys::table
        .filter(api_keys::user_id.eq(user_id.0))
        .filter(api_keys::is_active.eq(true))
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(at)),
        )
        .count()
        .get_result(conn)
        .db()?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn create(
    conn: &mut PgConnection,
    new: &NewApiKey,
    policy: &ApiKeyPolicy,
) -> RepoResult<CreatedApiKey> {
    let prepared = new.prepare(policy)?;
    // Serialises creators per user, so the count below cannot be raced past the limit.
    user_repo::lock(conn, new.user_id)?;
    let active = count_active_at(conn, new.user_id, now())?;
    if active >= u64::from(policy.max_active_per_user) {
        return Err(RepoError::validation(
            Field::ApiKeys,
            format!(
                "a user may hold at most {} active API keys",
                policy.max_active_per_user
            ),
        ));
    }
    let k = &prepared.key;
    let stored = diesel::insert_into(api_keys::table)
        .values(InsertApiKey {
            id: k.id.0,
            user_id: k.user_id.0,
            name: &k.name,
            name_folded: &prepared.name_folded,
            key_prefix: &k.key_prefix,
            key_hash: &prepared.key_hash,
            permissions: k.permissions.as_ref(),
            is_active: k.is_active,
            expires_at: k.expires_at,
            created_at: k.created_at,
        })
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .db()?;
    Ok(CreatedApiKey {
        key: stored.into(),
        secret: prepared.secret,
    })
}

fn get(conn: &mut PgConnection, id: ApiKeyId) -> RepoResult<ApiKey> {
    api_keys::table
        .find(id.0)
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()
        .db()?
        .map(ApiKey::from)
        .ok_or_else(|| RepoError::not_found(Entity::ApiKey, id))
}

fn list_for_user(conn: &mut PgConnection, user_id: UserId) -> RepoResult<Vec<ApiKey>> {
    Ok(api_keys::table
        .filter(api_keys::user_id.eq(user_id.0))
        .select(ApiKeyRow::as_select())
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .load(conn)
        .db()?
        .into_iter()
        .map(ApiKey::from)
        .collect())
}

/// A verified key and its user, as [`VERIFY`] returns them.
#[derive(QueryableByName)]
struct VerifiedRow {
    #[diesel(embed)]
    key: ApiKeyRow,
    #[diesel(embed)]
    user: user_repo::PrefixedUserRow,
}

/// Checks the key with this hash (active, unexpired, its user active) and returns it
/// with its user, in one statement: `found` reads the key and the user; `stamped`
/// writes `last_used_at` only when the stored stamp is `NULL` or not after `$3` (now
/// minus the granularity), so a verify of a recently used key writes nothing (no row
/// version, no WAL, no transaction id). A racing verify that stamped first makes the
/// update's re-check fail, so one stamp per granularity window. `$1`: now, `$2`: the
/// hash, `$3`: [`ApiKeyPolicy::restamp_at_or_before`].
static VERIFY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH found AS (SELECT k.id, k.user_id, k.name, k.key_prefix, k.permissions, \
         k.is_active, k.expires_at, k.last_used_at AS stored_last_used_at, k.created_at, {} \
         FROM api_keys AS k JOIN users AS u ON u.id = k.user_id \
         WHERE k.key_hash = $2 AND k.is_active AND u.is_active \
         AND (k.expires_at IS NULL OR k.expires_at > $1)), \
         stamped AS (UPDATE api_keys AS s SET last_used_at = $1 FROM found \
         WHERE s.id = found.id AND s.is_active \
         AND (s.last_used_at IS NULL OR s.last_used_at <= $3) RETURNING s.id, s.last_used_at) \
         SELECT found.*, COALESCE(stamped.last_used_at, found.stored_last_used_at) AS last_used_at \
         FROM found LEFT JOIN stamped ON stamped.id = found.id",
        user_repo::PREFIXED_USER_COLUMNS
    )
});

fn verify(
    conn: &mut PgConnection,
    secret: &ApiKeySecret,
    policy: &ApiKeyPolicy,
) -> RepoResult<Option<VerifiedKey>> {
    let at = now();
    let row: Option<VerifiedRow> = diesel::sql_query(VERIFY.as_str())
        .bind::<diesel::sql_types::Timestamptz, _>(at)
        .bind::<diesel::sql_types::Text, _>(secret.hash())
        .bind::<diesel::sql_types::Timestamptz, _>(policy.restamp_at_or_before(at))
        .cached()
        .get_result(conn)
        .optional()
        .db()?;
    Ok(row.map(|r| VerifiedKey {
        key: r.key.into(),
        user: r.user.into(),
    }))
}

fn revoke(conn: &mut PgConnection, id: ApiKeyId) -> RepoResult<ApiKey> {
    diesel::update(api_keys::table.find(id.0))
        .set(api_keys::is_active.eq(false))
        .returning(ApiKeyRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?
        .map(ApiKey::from)
        .ok_or_else(|| RepoError::not_found(Entity::ApiKey, id))
}

fn delete(conn: &mut PgConnection, id: ApiKeyId) -> RepoResult<()> {
    let n = diesel::delete(api_keys::table.find(id.0))
        .execute(conn)
        .db()?;
    if n == 0 {
        return Err(RepoError::not_found(Entity::ApiKey, id));
    }
    Ok(())
}

fn purge_expired(conn: &mut PgConnection) -> RepoResult<u64> {
    let n = diesel::delete(api_keys::table.filter(api_keys::expires_at.le(now())))
        .execute(conn)
        .db()?;
    Ok(n as u64)
}

/// API keys over a [`ConnectionSource`].
pub(crate) struct PgApiKeys<S> {
    pub(crate) src: S,
}

impl<S: ConnectionSource> ApiKeyRepository for PgApiKeys<S> {
    fn create(&self, new: &NewApiKey) -> RepoResult<CreatedApiKey> {
        let policy = *self.src.api_key_policy();
        self.src.write(|c| create(c, new, &policy))
    }

    fn get(&self, id: ApiKeyId) -> RepoResult<ApiKey> {
        self.src.read(|c| get(c, id))
    }

    fn list_for_user(&self, user_id: UserId) -> RepoResult<Vec<ApiKey>> {
        self.src.read(|c| list_for_user(c, user_id))
    }

    fn verify(&self, secret: &str) -> RepoResult<Option<VerifiedKey>> {
        let secret = ApiKeySecret::parse(secret)?;
        let policy = *self.src.api_key_policy();
        self.src.run(|c| verify(c, &secret, &policy))
    }

    fn revoke(&self, id: ApiKeyId) -> RepoResult<ApiKey> {
        self.src.run(|c| revoke(c, id))
    }

    fn delete(&self, id: ApiKeyId) -> RepoResult<()> {
        self.src.run(|c| delete(c, id))
    }

    fn purge_expired(&self) -> RepoResult<u64> {
        self.src.run(purge_expired)
    }

    fn count_active(&self, user_id: UserId) -> RepoResult<u64> {
        self.src.read(|c| count_active_at(c, user_id, now()))
    }
}
