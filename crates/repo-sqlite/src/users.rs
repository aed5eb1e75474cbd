//! Users.

use crate::codec::{count, read_opt_ts, read_ts, ts};
use crate::connection::{read_tx, write_tx, ConnectionSource, SqliteUsers};
use crate::error::map_diesel_error;
use crate::schema::{collections, users};
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use repo_core::{
    now, Attempt, CursorPage, CursorRequest, DeleteMode, Entity, Field, NewUser, Page, PageRequest,
    RepoError, RepoResult, State, User, UserFilter, UserId, UserPatch, UserRepository,
};

/// A `users` row as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Sqlite))]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    email: String,
    full_name: Option<String>,
    hashed_password: String,
    is_active: bool,
    is_superuser: bool,
    created_at: String,
    updated_at: String,
    last_login: Option<String>,
}

impl UserRow {
    pub(crate) fn into_domain(self) -> RepoResult<User> {
        Ok(User {
            id: UserId(self.id),
            created_at: read_ts("users", "created_at", &self.created_at)?,
            updated_at: read_ts("users", "updated_at", &self.updated_at)?,
            last_login: read_opt_ts("users", "last_login", self.last_login.as_deref())?,
            username: self.username,
            email: self.email,
            full_name: self.full_name,
            hashed_password: self.hashed_password,
            is_active: self.is_active,
            is_superuser: self.is_superuser,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = users, treat_none_as_default_value = false)]
struct InsertUser<'a> {
    username: &'a str,
    email: &'a str,
    full_name: Option<&'a str>,
    hashed_password: &'a str,
    is_active: bool,
    is_superuser: bool,
    created_at: String,
    updated_at: String,
    last_login: Option<String>,
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChanges<'a> {
    username: Option<&'a str>,
    email: Option<&'a str>,
    full_name: Option<Option<&'a str>>,
    hashed_password: Option<&'a str>,
    is_active: Option<bool>,
    is_superuser: Option<bool>,
    updated_at: String,
}

fn not_found(id: UserId) -> RepoError {
    RepoError::not_found(Entity::User, id)
}

/// Inserts a validated user.
pub(crate) fn create(conn: &mut SqliteConnection, new: &NewUser) -> RepoResult<User> {
    let new = new.validated()?;
    let at = ts(now());
    diesel::insert_into(users::table)
        .values(InsertUser {
            username: &new.username,
            email: &new.email,
            full_name: new.full_name.as_deref(),
            hashed_password: &new.hashed_password,
            is_active: new.is_active,
            is_superuser: new.is_superuser,
            created_at: at.clone(),
            updated_at: at,
            last_login: None,
        })
        .returning(UserRow::as_returning())
        .get_result(conn)
        .map_err(map_diesel_error)
        .map_err(|e| username_first(conn, e, Some(&new.username), None))?
        .into_domain()
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

/// The user with this id, if any.
pub(crate) fn find(conn: &mut SqliteConnection, id: UserId) -> RepoResult<Option<User>> {
    users::table
        .find(id.0)
        .select(UserRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .map(UserRow::into_domain)
        .transpose()
}

/// The user with this id, or `NotFound { entity: Entity::User }`.
pub(crate) fn get(conn: &mut SqliteConnection, id: UserId) -> RepoResult<User> {
    find(conn, id)?.ok_or_else(|| not_found(id))
}

/// `NotFound { entity: Entity::User }` unless the user exists.
pub(crate) fn ensure_exists(conn: &mut SqliteConnection, id: UserId) -> RepoResult<()> {
    let exists: bool = diesel::select(diesel::dsl::exists(users::table.find(id.0)))
        .get_result(conn)
        .map_err(map_diesel_error)?;
    if exists {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

fn get_by_username(conn: &mut SqliteConnection, username: &str) -> RepoResult<User> {
    repo_core::validate::text(Field::Username, username)?;
    users::table
        .filter(users::username.eq(username))
        .select(UserRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| RepoError::not_found(Entity::User, username))?
        .into_domain()
}

fn get_by_email(conn: &mut SqliteConnection, email: &str) -> RepoResult<User> {
    repo_core::validate::text(Field::Email, email)?;
    // Normalised as `validate::email` stores it, so the address given at creation
    // finds its user.
    let email = email.trim().to_lowercase();
    users::table
        .filter(users::email.eq(&email))
        .select(UserRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| RepoError::not_found(Entity::User, &email))?
        .into_domain()
}

fn update(conn: &mut SqliteConnection, id: UserId, patch: &UserPatch) -> RepoResult<User> {
    let patch = patch.validated()?;
    if patch.is_empty() {
        return get(conn, id);
    }
    diesel::update(users::table.find(id.0))
        .set(UserChanges {
            username: patch.username.as_deref(),
            email: patch.email.as_deref(),
            full_name: patch.full_name.as_ref().map(|n| n.as_deref()),
            hashed_password: patch.hashed_password.as_deref(),
            is_active: patch.is_active,
            is_superuser: patch.is_superuser,
            updated_at: ts(now()),
        })
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)
        .map_err(|e| username_first(conn, e, patch.username.as_deref(), Some(id)))?
        .ok_or_else(|| not_found(id))?
        .into_domain()
}

fn delete(conn: &mut SqliteConnection, id: UserId, mode: DeleteMode) -> RepoResult<()> {
    write_tx(conn, |c| {
        ensure_exists(c, id)?;
        let owned: i64 = collections::table
            .filter(collections::owner_id.eq(id.0))
            .count()
            .get_result(c)
            .map_err(map_diesel_error)?;
        if owned > 0 {
            match mode {
                DeleteMode::Restrict => {
                    return Err(RepoError::invalid_state(
                        State::OwnsCollections,
                        Attempt::Delete,
                    ))
                }
                // Operations, grants (and documents) of the collections go by
                // ON DELETE CASCADE.
                DeleteMode::Cascade => {
                    diesel::delete(collections::table.filter(collections::owner_id.eq(id.0)))
                        .execute(c)
                        .map_err(map_diesel_error)?;
                }
            }
        }
        // API keys, grants and the user's operations go by ON DELETE CASCADE.
        diesel::delete(users::table.find(id.0))
            .execute(c)
            .map_err(map_diesel_error)?;
        Ok(())
    })
}

fn filtered(filter: UserFilter) -> users::BoxedQuery<'static, Sqlite> {
    let mut query = users::table.into_boxed();
    if let Some(active) = filter.is_active {
        query = query.filter(users::is_active.eq(active));
    }
    if let Some(superuser) = filter.is_superuser {
        query = query.filter(users::is_superuser.eq(superuser));
    }
    query
}

fn count_users(conn: &mut SqliteConnection, filter: UserFilter) -> RepoResult<u64> {
    filtered(filter)
        .count()
        .get_result::<i64>(conn)
        .map(count)
        .map_err(map_diesel_error)
}

fn list(
    conn: &mut SqliteConnection,
    filter: UserFilter,
    page: PageRequest,
) -> RepoResult<Page<User>> {
    read_tx(conn, |c| {
        let rows: Vec<UserRow> = filtered(filter)
            .select(UserRow::as_select())
            .order((users::created_at.desc(), users::id.desc()))
            .limit(page.limit_i64())
            .offset(page.offset_i64())
            .load(c)
            .map_err(map_diesel_error)?;
        let items = rows
            .into_iter()
            .map(UserRow::into_domain)
            .collect::<RepoResult<_>>()?;
        Ok(Page {
            items,
            total: count_users(c, filter)?,
        })
    })
}

fn list_by_cursor(
    conn: &mut SqliteConnection,
    filter: UserFilter,
    page: &CursorRequest,
) -> RepoResult<CursorPage<User>> {
    let mut query = filtered(filter);
    if let Some(after) = &page.after {
        let (at, id) = (ts(after.created_at()), after.int_id()?);
        query = query.filter(
            users::created_at
                .lt(at.clone())
                .or(users::created_at.eq(at).and(users::id.lt(id))),
        );
    }
    let rows: Vec<UserRow> = query
        .select(UserRow::as_select())
        .order((users::created_at.desc(), users::id.desc()))
        .limit(page.fetch_i64())
        .load(conn)
        .map_err(map_diesel_error)?;
    let items = rows
        .into_iter()
        .map(UserRow::into_domain)
        .collect::<RepoResult<_>>()?;
    Ok(page.page(items, User::cursor))
}

fn record_login(conn: &mut SqliteConnection, id: UserId) -> RepoResult<User> {
    diesel::update(users::table.find(id.0))
        .set(users::last_login.eq(ts(now())))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| not_found(id))?
        .into_domain()
}

impl<S: ConnectionSource> UserRepository for SqliteUsers<S> {
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
        self.run(|c| delete(c, id, mode))
    }

    fn list(&self, filter: UserFilter, page: PageRequest) -> RepoResult<Page<User>> {
        self.run(|c| list(c, filter, page))
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
