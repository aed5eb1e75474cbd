//! [`UserRepository`] on SQLite: the queries are `repo_diesel::user_queries!`; this
//! file adds SQLite's row lock (none: writes run in `BEGIN IMMEDIATE`) and its report
//! of a taken username.

use crate::codec::SqliteCodec;
use crate::error::map_diesel_error;
use crate::schema::{collections, users};
use crate::unit_of_work::{read_tx, write_tx, ConnectionSource, SqliteRepos};
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

/// Read and write transactions of a [`ConnectionSource`] (`read_tx`, `write_tx`),
/// under the names PostgreSQL's source gives them, for the repository macros.
pub(crate) trait Transactions: ConnectionSource {
    /// Runs `f` in a read transaction (one consistent snapshot).
    fn read<T>(&self, f: impl Fn(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.run(|c| read_tx(c, &f))
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`, or a savepoint).
    fn write<T>(&self, f: impl Fn(&mut SqliteConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.run(|c| write_tx(c, &f))
    }
}

impl<S: ConnectionSource> Transactions for S {}

repo_diesel::user_repository!(SqliteRepos<S: ConnectionSource>.0 {
    lookup: run,
    listing: read,
    statement: run,
    transaction: write,
});
