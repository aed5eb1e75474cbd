//! [`UserRepository`] on SQLite: the queries are `repo_diesel::user_queries!`; this
//! file adds SQLite's row lock (none: writes run in `BEGIN IMMEDIATE`) and its report
//! of a taken username.

use crate::codec::SqliteCodec;
use crate::connection::{ConnectionSource, SqliteUsers};
use crate::error::map_diesel_error;
use crate::schema::{collections, users};
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use repo_core::{Entity, Field, RepoError, RepoResult, UserId};

repo_diesel::user_queries!(backend: Sqlite, conn: SqliteConnection, codec: SqliteCodec);

/// The user row for a write: SQLite has no row locks (the write transaction holds
/// the database), so this only checks that the user exists.
fn lock(conn: &mut SqliteConnection, id: UserId) -> RepoResult<()> {
    ensure_exists(conn, id)
}

/// When both the username and the email are taken, SQLite reports the email (it
/// checks the newest unique index first) while PostgreSQL reports the username (it
/// checks them in creation order). The error path asks whether the username is
/// taken too, so both backends name the username.
fn username_first(
    conn: &mut SqliteConnection,
    error: RepoError,
    username: Option<&str>,
    except: Option<UserId>,
) -> RepoError {
    let (
        RepoError::AlreadyExists {
            entity: Entity::User,
            field: Field::Email,
        },
        Some(username),
    ) = (&error, username)
    else {
        return error;
    };
    let taken = users::table
        .filter(users::username.eq(username))
        .filter(users::id.ne(except.map_or(0, |id| id.0)))
        .count()
        .get_result::<i64>(conn);
    match taken {
        Ok(n) if n > 0 => RepoError::AlreadyExists {
            entity: Entity::User,
            field: Field::Username,
        },
        _ => error,
    }
}

repo_diesel::user_repository!(SqliteUsers<S: ConnectionSource>.src {
    lookup: run,
    listing: read,
    statement: run,
    transaction: write,
});
