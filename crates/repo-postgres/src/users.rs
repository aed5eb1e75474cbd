//! [`UserRepository`] on PostgreSQL: the queries are `repo_diesel::user_queries!`;
//! this file adds PostgreSQL's row lock and the prefixed user row that API key
//! verification reads beside the key.

use crate::codec::PgCodec;
use crate::connection::ConnectionSource;
use crate::error::map_diesel_error;
use crate::schema::{collections, users};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use repo_core::{RepoError, RepoResult, Timestamp, User, UserId};

repo_diesel::user_queries!(backend: Pg, conn: PgConnection, codec: PgCodec);

/// Locks the user row (`FOR UPDATE`) or reports `NotFound { entity: Entity::User }`.
/// Locking the row blocks concurrent inserts that reference it (they take
/// `FOR KEY SHARE`), so a check of what the user owns cannot go stale.
pub(crate) fn lock(conn: &mut PgConnection, id: UserId) -> RepoResult<()> {
    users::table
        .find(id.0)
        .select(users::id)
        .for_update()
        .first::<i64>(conn)
        .optional()
        .map_err(map_diesel_error)?
        .map(|_| ())
        .ok_or_else(|| not_found(id))
}

/// PostgreSQL checks unique indexes in creation order, so a username and email both
/// taken already report the username: the error stays as it is.
fn username_first(
    _: &mut PgConnection,
    error: RepoError,
    _: Option<&str>,
    _: Option<UserId>,
) -> RepoError {
    error
}

/// A `users` row read back under `u_`-prefixed column names (`u.id AS u_id`, …), for
/// statements that return it beside another table's row with the same column names.
#[derive(QueryableByName)]
pub(crate) struct PrefixedUserRow {
    #[diesel(sql_type = BigInt, column_name = u_id)]
    id: i64,
    #[diesel(sql_type = Text, column_name = u_username)]
    username: String,
    #[diesel(sql_type = Text, column_name = u_email)]
    email: String,
    #[diesel(sql_type = Nullable<Text>, column_name = u_full_name)]
    full_name: Option<String>,
    #[diesel(sql_type = Text, column_name = u_hashed_password)]
    hashed_password: String,
    #[diesel(sql_type = Bool, column_name = u_is_active)]
    is_active: bool,
    #[diesel(sql_type = Bool, column_name = u_is_superuser)]
    is_superuser: bool,
    #[diesel(sql_type = Timestamptz, column_name = u_created_at)]
    created_at: Timestamp,
    #[diesel(sql_type = Timestamptz, column_name = u_updated_at)]
    updated_at: Timestamp,
    #[diesel(sql_type = Nullable<Timestamptz>, column_name = u_last_login)]
    last_login: Option<Timestamp>,
}

/// The select list that [`PrefixedUserRow`] reads, for a `users` table aliased `u`.
pub(crate) const PREFIXED_USER_COLUMNS: &str = "u.id AS u_id, u.username AS u_username, \
     u.email AS u_email, u.full_name AS u_full_name, u.hashed_password AS u_hashed_password, \
     u.is_active AS u_is_active, u.is_superuser AS u_is_superuser, \
     u.created_at AS u_created_at, u.updated_at AS u_updated_at, u.last_login AS u_last_login";

impl From<PrefixedUserRow> for User {
    fn from(r: PrefixedUserRow) -> Self {
        User {
            id: UserId(r.id),
            username: r.username,
            email: r.email,
            full_name: r.full_name,
            hashed_password: r.hashed_password,
            is_active: r.is_active,
            is_superuser: r.is_superuser,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_login: r.last_login,
        }
    }
}

/// Users over a [`ConnectionSource`].
pub(crate) struct PgUsers<S> {
    pub(crate) src: S,
}

repo_diesel::user_repository!(PgUsers<S: ConnectionSource>.src {
    lookup: read,
    listing: read,
    statement: run,
    transaction: write,
});
