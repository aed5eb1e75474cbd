//! [`UserRepository`] on SQLite: the queries are `repo_diesel::user_queries!`; this
//! file adds SQLite's row lock (none: writes run in `BEGIN IMMEDIATE`) and its report
//! of a taken username.

use crate::codec::SqliteCodec;
use crate::error::map_diesel_error;
use crate::schema::{collections, users};
use crate::unit_of_work::{read_tx, write_tx, ConnectionSource, SqliteRepos};
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use repo_core::{
    CursorPage, CursorRequest, DeleteMode, Entity, Field, NewUser, Page, PageRequest, RepoError,
    RepoResult, User, UserFilter, UserId, UserPatch, UserRepository,
};
use repo_diesel::codec::Codec as _;

repo_diesel::user_queries!(backend: Sqlite, conn: SqliteConnection, codec: SqliteCodec, timestamp: String);

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

impl<S: ConnectionSource> UserRepository for SqliteRepos<S> {
    fn create(&self, new: &NewUser) -> RepoResult<User> {
        self.run(|c| create(c, new))
    }

    fn get(&self, id: UserId) -> RepoResult<User> {
        self.run(|c| get(c, id))
    }

    fn get_by_username(&self, username: &str) -> RepoResult<User> {
        self.run(|c| get_by_username(c, username))
    }

    fn get_by_email(&self, email: &str) -> RepoResult<User> {
        self.run(|c| get_by_email(c, email))
    }

    fn update(&self, id: UserId, patch: &UserPatch) -> RepoResult<User> {
        self.run(|c| update(c, id, patch))
    }

    fn delete(&self, id: UserId, mode: DeleteMode) -> RepoResult<()> {
        self.run(|c| write_tx(c, |c| delete(c, id, mode)))
    }

    fn list(&self, filter: UserFilter, page: PageRequest) -> RepoResult<Page<User>> {
        self.run(|c| read_tx(c, |c| list(c, filter, page)))
    }

    fn list_by_cursor(
        &self,
        filter: UserFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<User>> {
        self.run(|c| list_by_cursor(c, filter, page))
    }

    fn count(&self, filter: UserFilter) -> RepoResult<u64> {
        self.run(|c| count_users(c, filter))
    }

    fn record_login(&self, id: UserId) -> RepoResult<User> {
        self.run(|c| record_login(c, id))
    }
}
