//! [`ApiKeyRepository`](repo_core::ApiKeyRepository) on SQLite: the rows, queries and
//! impl shared with PostgreSQL come from [`repo_diesel::api_key_repository!`]; the
//! rules (usable key, verify decision, restamp, key limit) from `repo_core::api_key`.
//! Only verify, the hot path, is written here.

use crate::codec::{ts, uuid, SqliteCodec};
use crate::connection::{write_tx, ConnectionSource, SqliteApiKeys};
use crate::error::map_diesel_error;
use crate::schema::{api_keys, users};
use crate::users::{self as user_repo, UserRow};
use diesel::sqlite::{Sqlite, SqliteConnection};
use repo_core::{now, ApiKeyPolicy, ApiKeySecret, RepoResult, VerifiedKey};

repo_diesel::api_key_repository! {
    backend: Sqlite,
    connection: SqliteConnection,
    codec: SqliteCodec,
    map_error: map_diesel_error,
    impl for SqliteApiKeys<S> where S: ConnectionSource,
    policy(repos) => repos.config().api_keys,
    // Every call on one connection; `create` opens its own transaction.
    read(repos, f) => repos.run(f),
    run(repos, f) => repos.run(f),
    write(repos, f) => repos.run(f),
    atomic: write_tx,
    // `BEGIN IMMEDIATE` already serialises the creators: the user need only exist.
    lock_user: user_repo::ensure_exists,
}

/// One read of the facts (the key with this hash and its user), the core's decision
/// ([`VerifiedKey::decide`]); then, only when [`ApiKeyPolicy::restamp_due`], one
/// conditional `UPDATE` in autocommit (the restamp condition repeated, so that of
/// racing verifies one stamps; `is_active` repeated, so that a racing revoke wins). A
/// verify of a recently used key takes no write lock.
fn verify(
    conn: &mut SqliteConnection,
    secret: &ApiKeySecret,
    policy: &ApiKeyPolicy,
) -> RepoResult<Option<VerifiedKey>> {
    let at = now();
    let found: Option<(ApiKeyRow, UserRow)> = api_keys::table
        .inner_join(users::table)
        .filter(api_keys::key_hash.eq(secret.hash()))
        .select((ApiKeyRow::as_select(), UserRow::as_select()))
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    let Some((key, user)) = found else {
        return Ok(None);
    };
    let Some(mut verified) = VerifiedKey::decide(key.into_domain()?, user.into_domain()?, at)
    else {
        return Ok(None);
    };
    if policy.restamp_due(verified.key.last_used_at, at) {
        let restamp = ts(policy.restamp_at_or_before(at));
        let stamped = diesel::update(
            api_keys::table
                .filter(api_keys::id.eq(uuid(verified.key.id.0)))
                .filter(api_keys::is_active.eq(true))
                .filter(
                    api_keys::last_used_at
                        .is_null()
                        .or(api_keys::last_used_at.le(restamp))
                        .assume_not_null(),
                ),
        )
        .set(api_keys::last_used_at.eq(ts(at)))
        .execute(conn)
        .map_err(map_diesel_error)?;
        if stamped == 1 {
            verified.key.last_used_at = Some(at);
        }
    }
    Ok(Some(verified))
}
