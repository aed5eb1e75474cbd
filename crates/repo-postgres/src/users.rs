//! [`UserRepository`] on PostgreSQL.

use crate::connection::{ConnectionSource, QueryResultExt};
use crate::schema::{collections, users};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use repo_core::{
    now, Attempt, CursorPage, CursorRequest, DeleteMode, Entity, Field, NewUser, Page, PageRequest,
    RepoError, RepoResult, State, Timestamp, User, UserFilter, UserId, UserPatch, UserRepository,
};

/// A `users` row.
#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Pg))]
pub(crate) struct UserRow {
    id: i64,
    username: String,
    email: String,
    full_name: Option<String>,
    hashed_password: String,
    is_active: bool,
    is_superuser: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    last_login: Option<Timestamp>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
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

/// A `users` row read back under `u_`-prefixed column names (`u.id AS u_id`, …), for
/// statements that return it beside another table's row with the same column names.
#[derive(QueryableByName)]
pub(crate) struct PrefixedUserRow {
    #[diesel(sql_type = diesel::sql_types::BigInt, column_name = u_id)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text, column_name = u_username)]
    username: String,
    #[diesel(sql_type = diesel::sql_types::Text, column_name = u_email)]
    email: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>, column_name = u_full_name)]
    full_name: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Text, column_name = u_hashed_password)]
    hashed_password: String,
    #[diesel(sql_type = diesel::sql_types::Bool, column_name = u_is_active)]
    is_active: bool,
    #[diesel(sql_type = diesel::sql_types::Bool, column_name = u_is_superuser)]
    is_superuser: bool,
    #[diesel(sql_type = diesel::sql_types::Timestamptz, column_name = u_created_at)]
    created_at: Timestamp,
    #[diesel(sql_type = diesel::sql_types::Timestamptz, column_name = u_updated_at)]
    updated_at: Timestamp,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>, column_name = u_last_login)]
    last_login: Option<Timestamp>,
}

/// The select list that [`PrefixedUserRow`] reads, for a `users` table aliased `u`.
pub(crate) const PREFIXED_USER_COLUMNS: &str = "u.id AS u_id, u.username AS u_username, \
     u.email AS u_email, u.full_name AS u_full_name, u.hashed_password AS u_hashed_password, \
     u.is_active AS u_is_active, u.is_superuser AS u_is_superuser, \
     u.created_at AS u_created_at, u.updated_at AS u_updated_at, u.last_login AS u_last_login";

impl From<PrefixedUserRow> for User {
    fn from(r: PrefixedUserRow) -> Self {
        UserRow {
            id: r.id,
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
        .into()
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct InsertUser<'a> {
    username: &'a str,
    email: &'a str,
    full_name: Option<&'a str>,
    hashed_password: &'a str,
    is_active: bool,
    is_superuser: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
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
    updated_at: Timestamp,
}

/// The user with this id, if any.
pub(crate) fn find(conn: &mut PgConnection, id: UserId) -> RepoResult<Option<User>> {
    users::table
        .find(id.0)
        .select(UserRow::as_select())
        .first(conn)
        .optional()
        .db()
        .map(|r| r.map(User::from))
}

/// The user with this id, or `NotFound { entity: Entity::User }`.
pub(crate) fn get(conn: &mut PgConnection, id: UserId) -> RepoResult<User> {
    find(conn, id)?.ok_or_else(|| RepoError::not_found(Entity::User, id))
}

/// Locks the user row (`FOR UPDATE`) or reports `NotFound { entity: Entity::User }`.
pub(crate) fn lock(conn: &mut PgConnection, id: UserId) -> RepoResult<()> {
    users::table
        .find(id.0)
        .select(users::id)
        .for_update()
        .first::<i64>(conn)
        .optional()
        .db()?
        .map(|_| ())
        .ok_or_else(|| RepoError::not_found(Entity::User, id))
}

/// Checks that the user exists, or reports `NotFound { entity: Entity::User }`.
pub(crate) fn require(conn: &mut PgConnection, id: UserId) -> RepoResult<()> {
    let found: Option<i64> = users::table
        .find(id.0)
        .select(users::id)
        .first(conn)
        .optional()
        .db()?;
    found
        .map(|_| ())
        .ok_or_else(|| RepoError::not_found(Entity::User, id))
}

fn create(conn: &mut PgConnection, new: &NewUser) -> RepoResult<User> {
    let v = new.validated()?;
    let at = now();
    diesel::insert_into(users::table)
        .values(InsertUser {
            username: &v.username,
            email: &v.email,
            full_name: v.full_name.as_deref(),
            hashed_password: &v.hashed_password,
            is_active: v.is_active,
            is_superuser: v.is_superuser,
            created_at: at,
            updated_at: at,
        })
        .returning(UserRow::as_returning())
        .get_result(conn)
        .db()
        .map(User::from)
}

fn get_by_username(conn: &mut PgConnection, username: &str) -> RepoResult<User> {
    repo_core::validate::text(Field::Username, username)?;
    users::table
        .filter(users::username.eq(username))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
        .db()?
        .map(User::from)
        .ok_or_else(|| RepoError::not_found(Entity::User, username))
}

fn get_by_email(conn: &mut PgConnection, email: &str) -> RepoResult<User> {
    repo_core::validate::text(Field::Email, email)?;
    // Normalised as `validate::email` stores it, so the address given at creation
    // finds its user.
    let email = email.trim().to_lowercase();
    users::table
        .filter(users::email.eq(&email))
        .select(UserRow::as_select())
        .first(conn)
        .optional()
        .db()?
        .map(User::from)
        .ok_or_else(|| RepoError::not_found(Entity::User, email))
}

fn update(conn: &mut PgConnection, id: UserId, patch: &UserPatch) -> RepoResult<User> {
    let p = patch.validated()?;
    if p.is_empty() {
        return get(conn, id);
    }
    let changes = UserChanges {
        username: p.username.as_deref(),
        email: p.email.as_deref(),
        full_name: p.full_name.as_ref().map(|n| n.as_deref()),
        hashed_password: p.hashed_password.as_deref(),
        is_active: p.is_active,
        is_superuser: p.is_superuser,
        updated_at: now(),
    };
    diesel::update(users::table.find(id.0))
        .set(changes)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?
        .map(User::from)
        .ok_or_else(|| RepoError::not_found(Entity::User, id))
}

fn delete(conn: &mut PgConnection, id: UserId, mode: DeleteMode) -> RepoResult<()> {
    // Locking the user row blocks concurrent inserts that reference it (they take
    // FOR KEY SHARE), so the ownership check below cannot go stale.
    lock(conn, id)?;
    match mode {
        DeleteMode::Restrict => {
            let owned: i64 = collections::table
                .filter(collections::owner_id.eq(id.0))
                .count()
                .get_result(conn)
                .db()?;
            if owned > 0 {
                return Err(RepoError::invalid_state(
                    State::OwnsCollections,
                    Attempt::Delete,
                ));
            }
        }
        DeleteMode::Cascade => {
            // Operations and grants of these collections go by foreign-key cascade.
            diesel::delete(collections::table.filter(collections::owner_id.eq(id.0)))
                .execute(conn)
                .db()?;
        }
    }
    diesel::delete(users::table.find(id.0)).execute(conn).db()?;
    Ok(())
}

fn filtered(filter: UserFilter) -> users::BoxedQuery<'static, Pg> {
    let mut q = users::table.into_boxed();
    if let Some(active) = filter.is_active {
        q = q.filter(users::is_active.eq(active));
    }
    if let Some(superuser) = filter.is_superuser {
        q = q.filter(users::is_superuser.eq(superuser));
    }
    q
}

fn count(conn: &mut PgConnection, filter: UserFilter) -> RepoResult<u64> {
    let n: i64 = filtered(filter).count().get_result(conn).db()?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn list(conn: &mut PgConnection, filter: UserFilter, page: PageRequest) -> RepoResult<Page<User>> {
    let items = filtered(filter)
        .select(UserRow::as_select())
        .order((users::created_at.desc(), users::id.desc()))
        .limit(page.limit_i64())
        .offset(page.offset_i64())
        .load(conn)
        .db()?
        .into_iter()
        .map(User::from)
        .collect();
    Ok(Page {
        items,
        total: count(conn, filter)?,
    })
}

fn list_by_cursor(
    conn: &mut PgConnection,
    filter: UserFilter,
    page: &CursorRequest,
) -> RepoResult<CursorPage<User>> {
    let mut q = filtered(filter);
    if let Some(after) = &page.after {
        let (at, id) = (after.created_at(), after.int_id()?);
        q = q.filter(
            users::created_at
                .lt(at)
                .or(users::created_at.eq(at).and(users::id.lt(id))),
        );
    }
    let items = q
        .select(UserRow::as_select())
        .order((users::created_at.desc(), users::id.desc()))
        .limit(page.fetch_i64())
        .load(conn)
        .db()?
        .into_iter()
        .map(User::from)
        .collect();
    Ok(page.page(items, User::cursor))
}

fn record_login(conn: &mut PgConnection, id: UserId) -> RepoResult<User> {
    diesel::update(users::table.find(id.0))
        .set(users::last_login.eq(now()))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?
        .map(User::from)
        .ok_or_else(|| RepoError::not_found(Entity::User, id))
}

/// Users over a [`ConnectionSource`].
pub(crate) struct PgUsers<S> {
    pub(crate) src: S,
}

impl<S: ConnectionSource> UserRepository for PgUsers<S> {
    fn create(&self, new: &NewUser) -> RepoResult<User> {
        self.src.run(|c| create(c, new))
    }

    fn get(&self, id: UserId) -> RepoResult<User> {
        self.src.read(|c| get(c, id))
    }

    fn get_by_username(&self, username: &str) -> RepoResult<User> {
        self.src.read(|c| get_by_username(c, username))
    }

    fn get_by_email(&self, email: &str) -> RepoResult<User> {
        self.src.read(|c| get_by_email(c, email))
    }

    fn update(&self, id: UserId, patch: &UserPatch) -> RepoResult<User> {
        self.src.run(|c| update(c, id, patch))
    }

    fn delete(&self, id: UserId, mode: DeleteMode) -> RepoResult<()> {
        self.src.write(|c| delete(c, id, mode))
    }

    fn list(&self, filter: UserFilter, page: PageRequest) -> RepoResult<Page<User>> {
        self.src.read(|c| list(c, filter, page))
    }

    fn list_by_cursor(
        &self,
        filter: UserFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<User>> {
        self.src.read(|c| list_by_cursor(c, filter, page))
    }

    fn count(&self, filter: UserFilter) -> RepoResult<u64> {
        self.src.read(|c| count(c, filter))
    }

    fn record_login(&self, id: UserId) -> RepoResult<User> {
        self.src.run(|c| record_login(c, id))
    }
}
