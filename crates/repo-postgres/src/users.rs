//! [`UserRepository`] on PostgreSQL: the queries are `repo_diesel::user_queries!`;
//! this file adds PostgreSQL's row lock and the prefixed user row that API key
//! verification reads beside the key.

use crate::codec::PgCodec;
use crate::connection::ConnectionSource;
use crate::error::map_diesel_error;
use crate::schema::{collections, users};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use repo_core::{RepoError, RepoResult, UserId};

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
