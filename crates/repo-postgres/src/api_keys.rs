//! [`ApiKeyRepository`](repo_core::ApiKeyRepository) on PostgreSQL: the rows, queries
//! and impl shared with SQLite come from [`repo_diesel::api_key_repository!`]; the
//! rules (usable key, verify decision, restamp, key limit) from `repo_core::api_key`.
//! Only verify, the hot path, is written here: one statement.

use crate::codec::PgCodec;
use crate::connection::ConnectionSource;
use crate::error::map_diesel_error;
use crate::prepared::CacheDsl;
use crate::schema::api_keys;
use crate::users as user_repo;
use diesel::pg::{Pg, PgConnection};
use repo_core::api_key::UsableKeyCondition;
use repo_core::{now, ApiKeyPolicy, ApiKeySecret, RepoResult, VerifiedKey};
use repo_diesel::codec::as_is;
use std::sync::LazyLock;

repo_diesel::api_key_repository! {
    backend: Pg,
    connection: PgConnection,
    codec: PgCodec,
    map_error: map_diesel_error,
    impl for PgApiKeys<S> where S: ConnectionSource,
    policy(this) => *this.src.api_key_policy(),
    // Reads may go to a replica; `create` gets one transaction from `write`.
    read(this, f) => this.src.read(f),
    run(this, f) => this.src.run(f),
    write(this, f) => this.src.write(f),
    atomic: as_is,
    // `FOR UPDATE` on the user row: creators of one user's keys queue up.
    lock_user: user_repo::lock,
}

/// API keys over a [`ConnectionSource`].
pub(crate) struct PgApiKeys<S> {
    pub(crate) src: S,
}

/// A key and its user, as [`VERIFY`] returns them.
#[derive(QueryableByName)]
struct VerifiedRow {
    #[diesel(embed)]
    key: ApiKeyRow,
    #[diesel(embed)]
    user: user_repo::PrefixedUserRow,
}

/// The usable-key rule ([`UsableKeyCondition::ALL`]) as the SQL condition of the stamp
/// in [`VERIFY`], over the key row `s` and the `found` facts (`$1`: now). One arm per
/// condition and no catch-all: a condition added to the core fails to compile here
/// until it has its SQL.
fn usable_key_sql() -> String {
    UsableKeyCondition::ALL
        .iter()
        .map(|condition| match condition {
            UsableKeyCondition::KeyActive => "s.is_active",
            UsableKeyCondition::KeyUnexpired => "(s.expires_at IS NULL OR s.expires_at > $1)",
            UsableKeyCondition::UserActive => "found.u_is_active",
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Verify in one statement (one round trip, kept prepared: the hot path, see
/// docs/PERFORMANCE.md). `found` fetches the facts, the key with this hash and its
/// user, whatever their state: whether they make a usable key is decided in Rust by
/// the core ([`VerifiedKey::decide`]) on the row returned. The stamp must be decided
/// inside the statement, before Rust sees the facts, so `stamped` applies the same
/// rule as SQL generated from the core's list of conditions ([`usable_key_sql`]) and
/// writes `last_used_at` only when the stored stamp is also `NULL` or not after `$3`
/// (the core's [`ApiKeyPolicy::restamp_at_or_before`]): a verify of a recently used key
/// writes nothing (no row version, no WAL, no transaction id), and of racing
/// verifies, the first to stamp makes the others' re-check fail. `$1`: now, `$2`: the
/// hash, `$3`: the restamp bound.
static VERIFY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH found AS (SELECT k.id, k.user_id, k.name, k.key_prefix, k.permissions, \
         k.is_active, k.expires_at, k.last_used_at AS stored_last_used_at, k.created_at, {} \
         FROM api_keys AS k JOIN users AS u ON u.id = k.user_id WHERE k.key_hash = $2), \
         stamped AS (UPDATE api_keys AS s SET last_used_at = $1 FROM found \
         WHERE s.id = found.id AND {} \
         AND (s.last_used_at IS NULL OR s.last_used_at <= $3) RETURNING s.id, s.last_used_at) \
         SELECT found.*, COALESCE(stamped.last_used_at, found.stored_last_used_at) AS last_used_at \
         FROM found LEFT JOIN stamped ON stamped.id = found.id",
        user_repo::PREFIXED_USER_COLUMNS,
        usable_key_sql(),
    )
});

fn verify(
    conn: &mut PgConnection,
    secret: &ApiKeySecret,
    policy: &ApiKeyPolicy,
) -> RepoResult<Option<VerifiedKey>> {
    let at = now();
    let found: Option<VerifiedRow> = diesel::sql_query(VERIFY.as_str())
        .bind::<diesel::sql_types::Timestamptz, _>(at)
        .bind::<diesel::sql_types::Text, _>(secret.hash())
        .bind::<diesel::sql_types::Timestamptz, _>(policy.restamp_at_or_before(at))
        .cached()
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    match found {
        Some(row) => Ok(VerifiedKey::decide(
            row.key.into_domain()?,
            row.user.into(),
            at,
        )),
        None => Ok(None),
    }
}
