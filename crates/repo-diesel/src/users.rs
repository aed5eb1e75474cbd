//! What both backends share for the `users` repository: a macro that writes the row
//! types and the queries once, expanded in each backend over its own `schema` module,
//! connection type and [`Codec`](crate::codec::Codec).

/// Writes the `users` repository's row types (`UserRow`, `InsertUser`,
/// `UserChanges`) and the queries both backends run alike (the caller picks the
/// transaction): `find`, `get`, `ensure_exists`, `get_by_username`, `get_by_email`,
/// `create`, `update`, `delete`, `filtered`, `count_users`, `list`,
/// `list_by_cursor`, `record_login`. The rules are `repo-core`'s (`NewUser::validated`,
/// `UserPatch::validated`, `DeleteMode::deletes_owned_collections`).
///
/// `backend` is the Diesel backend type in scope; `conn` the connection type; `codec`
/// the codec (whose type the timestamps have). Expects in
/// scope: the table modules `users` and `collections`, `map_diesel_error`,
/// `diesel::prelude::*`, and beside it the backend's
/// `lock` (the user row, locked where the database can) and `username_first` (how a
/// unique violation on both username and email is reported).
#[macro_export]
macro_rules! user_queries {
    (backend: $backend:ident, conn: $conn:ty, codec: $codec:ident $(,)?) => {
        // The codec's functions, called as `$codec::uuid(…)`.
        use $crate::codec::Codec as _;
        /// How this backend's codec stores a timestamp (for the row types below).
        type StoredTimestamp = <$codec as $crate::codec::Codec>::Timestamp;

        /// A `users` row as read.
        #[derive(Queryable, Selectable)]
        #[diesel(table_name = users, check_for_backend($backend))]
        pub(crate) struct UserRow {
            id: i64,
            username: String,
            email: String,
            full_name: Option<String>,
            hashed_password: String,
            is_active: bool,
            is_superuser: bool,
            created_at: StoredTimestamp,
            updated_at: StoredTimestamp,
            last_login: Option<StoredTimestamp>,
        }

        impl UserRow {
            /// The user this row stores.
            pub(crate) fn into_domain(self) -> ::repo_core::RepoResult<::repo_core::User> {
                const T: &str = "users";
                Ok(::repo_core::User {
                    id: ::repo_core::UserId(self.id),
                    created_at: $codec::read_timestamp(T, "created_at", self.created_at)?,
                    updated_at: $codec::read_timestamp(T, "updated_at", self.updated_at)?,
                    last_login: $codec::read_opt_timestamp(T, "last_login", self.last_login)?,
                    username: self.username,
                    email: self.email,
                    full_name: self.full_name,
                    hashed_password: self.hashed_password,
                    is_active: self.is_active,
                    is_superuser: self.is_superuser,
                })
            }
        }

        /// A user to insert.
        #[derive(Insertable)]
        #[diesel(table_name = users, treat_none_as_default_value = false)]
        struct InsertUser<'a> {
            username: &'a str,
            email: &'a str,
            full_name: Option<&'a str>,
            hashed_password: &'a str,
            is_active: bool,
            is_superuser: bool,
            created_at: StoredTimestamp,
            updated_at: StoredTimestamp,
            last_login: Option<StoredTimestamp>,
        }

        /// The columns a `UserPatch` changes (`None`: unchanged).
        #[derive(AsChangeset)]
        #[diesel(table_name = users)]
        struct UserChanges<'a> {
            username: Option<&'a str>,
            email: Option<&'a str>,
            full_name: Option<Option<&'a str>>,
            hashed_password: Option<&'a str>,
            is_active: Option<bool>,
            is_superuser: Option<bool>,
            updated_at: StoredTimestamp,
        }

        /// `NotFound { entity: Entity::User }`.
        fn not_found(id: ::repo_core::UserId) -> ::repo_core::RepoError {
            ::repo_core::RepoError::not_found(::repo_core::Entity::User, id)
        }

        /// Inserts a validated user.
        fn create(
            conn: &mut $conn,
            new: &::repo_core::NewUser,
        ) -> ::repo_core::RepoResult<::repo_core::User> {
            let new = new.validated()?;
            let at = $codec::timestamp(::repo_core::now());
            ::diesel::insert_into(users::table)
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

        /// The user with this id, if any.
        pub(crate) fn find(
            conn: &mut $conn,
            id: ::repo_core::UserId,
        ) -> ::repo_core::RepoResult<Option<::repo_core::User>> {
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
        pub(crate) fn get(
            conn: &mut $conn,
            id: ::repo_core::UserId,
        ) -> ::repo_core::RepoResult<::repo_core::User> {
            find(conn, id)?.ok_or_else(|| not_found(id))
        }

        /// `NotFound { entity: Entity::User }` unless the user exists.
        pub(crate) fn ensure_exists(
            conn: &mut $conn,
            id: ::repo_core::UserId,
        ) -> ::repo_core::RepoResult<()> {
            let exists: bool = ::diesel::select(::diesel::dsl::exists(users::table.find(id.0)))
                .get_result(conn)
                .map_err(map_diesel_error)?;
            if exists {
                Ok(())
            } else {
                Err(not_found(id))
            }
        }

        /// The user with this username (exact), or `NotFound`.
        fn get_by_username(
            conn: &mut $conn,
            username: &str,
        ) -> ::repo_core::RepoResult<::repo_core::User> {
            ::repo_core::validate::text(::repo_core::Field::Username, username)?;
            users::table
                .filter(users::username.eq(username))
                .select(UserRow::as_select())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?
                .ok_or_else(|| {
                    ::repo_core::RepoError::not_found(::repo_core::Entity::User, username)
                })?
                .into_domain()
        }

        /// The user with this email (normalised as `validate::email` stores it, so the
        /// address given at creation finds its user), or `NotFound`.
        fn get_by_email(
            conn: &mut $conn,
            email: &str,
        ) -> ::repo_core::RepoResult<::repo_core::User> {
            ::repo_core::validate::text(::repo_core::Field::Email, email)?;
            let email = email.trim().to_lowercase();
            users::table
                .filter(users::email.eq(&email))
                .select(UserRow::as_select())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?
                .ok_or_else(|| {
                    ::repo_core::RepoError::not_found(::repo_core::Entity::User, &email)
                })?
                .into_domain()
        }

        /// Applies the validated patch; an empty patch reads the user.
        fn update(
            conn: &mut $conn,
            id: ::repo_core::UserId,
            patch: &::repo_core::UserPatch,
        ) -> ::repo_core::RepoResult<::repo_core::User> {
            let patch = patch.validated()?;
            if patch.is_empty() {
                return get(conn, id);
            }
            ::diesel::update(users::table.find(id.0))
                .set(UserChanges {
                    username: patch.username.as_deref(),
                    email: patch.email.as_deref(),
                    full_name: patch.full_name.as_ref().map(|n| n.as_deref()),
                    hashed_password: patch.hashed_password.as_deref(),
                    is_active: patch.is_active,
                    is_superuser: patch.is_superuser,
                    updated_at: $codec::timestamp(::repo_core::now()),
                })
                .returning(UserRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)
                .map_err(|e| username_first(conn, e, patch.username.as_deref(), Some(id)))?
                .ok_or_else(|| not_found(id))?
                .into_domain()
        }

        /// Deletes the user (API keys, grants and operations go by ON DELETE CASCADE);
        /// `DeleteMode::deletes_owned_collections` decides about owned collections. The
        /// user row is read with `lock` first, so the ownership check cannot go stale.
        fn delete(
            conn: &mut $conn,
            id: ::repo_core::UserId,
            mode: ::repo_core::DeleteMode,
        ) -> ::repo_core::RepoResult<()> {
            lock(conn, id)?;
            let owned = || collections::table.filter(collections::owner_id.eq(id.0));
            let cascade = mode.deletes_owned_collections(|| {
                owned()
                    .count()
                    .get_result::<i64>(conn)
                    .map_err(map_diesel_error)
            })?;
            if cascade {
                // Their operations, grants, documents and chunks go by cascade too.
                ::diesel::delete(owned())
                    .execute(conn)
                    .map_err(map_diesel_error)?;
            }
            ::diesel::delete(users::table.find(id.0))
                .execute(conn)
                .map_err(map_diesel_error)?;
            Ok(())
        }

        /// The users matching `filter`.
        fn filtered(filter: ::repo_core::UserFilter) -> users::BoxedQuery<'static, $backend> {
            let mut query = users::table.into_boxed();
            if let Some(active) = filter.is_active {
                query = query.filter(users::is_active.eq(active));
            }
            if let Some(superuser) = filter.is_superuser {
                query = query.filter(users::is_superuser.eq(superuser));
            }
            query
        }

        /// How many users match `filter`.
        fn count_users(
            conn: &mut $conn,
            filter: ::repo_core::UserFilter,
        ) -> ::repo_core::RepoResult<u64> {
            let n: i64 = filtered(filter)
                .count()
                .get_result(conn)
                .map_err(map_diesel_error)?;
            Ok(u64::try_from(n).unwrap_or(0))
        }

        /// A page of the users matching `filter`, newest first, with their total.
        fn list(
            conn: &mut $conn,
            filter: ::repo_core::UserFilter,
            page: ::repo_core::PageRequest,
        ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::User>> {
            let items = filtered(filter)
                .select(UserRow::as_select())
                .order((users::created_at.desc(), users::id.desc()))
                .limit(page.limit_i64())
                .offset(page.offset_i64())
                .load(conn)
                .map_err(map_diesel_error)?
                .into_iter()
                .map(UserRow::into_domain)
                .collect::<::repo_core::RepoResult<_>>()?;
            Ok(::repo_core::Page {
                items,
                total: count_users(conn, filter)?,
            })
        }

        /// A cursor page of the users matching `filter`, newest first.
        fn list_by_cursor(
            conn: &mut $conn,
            filter: ::repo_core::UserFilter,
            page: &::repo_core::CursorRequest,
        ) -> ::repo_core::RepoResult<::repo_core::CursorPage<::repo_core::User>> {
            let mut query = filtered(filter);
            if let Some(after) = &page.after {
                let (at, id) = ($codec::timestamp(after.created_at()), after.int_id()?);
                query = query.filter(
                    users::created_at
                        .lt(at.clone())
                        .or(users::created_at.eq(at).and(users::id.lt(id))),
                );
            }
            let items = query
                .select(UserRow::as_select())
                .order((users::created_at.desc(), users::id.desc()))
                .limit(page.fetch_i64())
                .load(conn)
                .map_err(map_diesel_error)?
                .into_iter()
                .map(UserRow::into_domain)
                .collect::<::repo_core::RepoResult<_>>()?;
            Ok(page.page(items, ::repo_core::User::cursor))
        }

        /// Sets `last_login` to now.
        fn record_login(
            conn: &mut $conn,
            id: ::repo_core::UserId,
        ) -> ::repo_core::RepoResult<::repo_core::User> {
            ::diesel::update(users::table.find(id.0))
                .set(users::last_login.eq($codec::timestamp(::repo_core::now())))
                .returning(UserRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?
                .ok_or_else(|| not_found(id))?
                .into_domain()
        }
    };
}

/// Writes `impl UserRepository for $repo<S>` over the functions of
/// [`user_queries!`](crate::user_queries). Each method runs its function through the
/// source in field `$field` of the repository, by the source method (`run`, `read`,
/// `write`) the backend names for the kind of call it is:
/// - `lookup`: one statement that reads (`get`, `get_by_username`, `get_by_email`,
///   `list_by_cursor`, `count`);
/// - `listing`: reads that must agree with each other (`list`: a page and its total);
/// - `statement`: one statement that writes (`create`, `update`, `record_login`; a
///   unique violation may add a read on the error path);
/// - `transaction`: a read and the writes that depend on it (`delete`).
#[macro_export]
macro_rules! user_repository {
    (
        $repo:ident<S: $bound:path>.$field:tt {
            lookup: $lookup:ident,
            listing: $listing:ident,
            statement: $statement:ident,
            transaction: $transaction:ident $(,)?
        }
    ) => {
        impl<S: $bound> ::repo_core::UserRepository for $repo<S> {
            fn create(
                &self,
                new: &::repo_core::NewUser,
            ) -> ::repo_core::RepoResult<::repo_core::User> {
                self.$field.$statement(|c| create(c, new))
            }

            fn get(&self, id: ::repo_core::UserId) -> ::repo_core::RepoResult<::repo_core::User> {
                self.$field.$lookup(|c| get(c, id))
            }

            fn get_by_username(
                &self,
                username: &str,
            ) -> ::repo_core::RepoResult<::repo_core::User> {
                self.$field.$lookup(|c| get_by_username(c, username))
            }

            fn get_by_email(&self, email: &str) -> ::repo_core::RepoResult<::repo_core::User> {
                self.$field.$lookup(|c| get_by_email(c, email))
            }

            fn update(
                &self,
                id: ::repo_core::UserId,
                patch: &::repo_core::UserPatch,
            ) -> ::repo_core::RepoResult<::repo_core::User> {
                self.$field.$statement(|c| update(c, id, patch))
            }

            fn delete(
                &self,
                id: ::repo_core::UserId,
                mode: ::repo_core::DeleteMode,
            ) -> ::repo_core::RepoResult<()> {
                self.$field.$transaction(|c| delete(c, id, mode))
            }

            fn list(
                &self,
                filter: ::repo_core::UserFilter,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::User>> {
                self.$field.$listing(|c| list(c, filter, page))
            }

            fn list_by_cursor(
                &self,
                filter: ::repo_core::UserFilter,
                page: &::repo_core::CursorRequest,
            ) -> ::repo_core::RepoResult<::repo_core::CursorPage<::repo_core::User>> {
                self.$field.$lookup(|c| list_by_cursor(c, filter, page))
            }

            fn count(&self, filter: ::repo_core::UserFilter) -> ::repo_core::RepoResult<u64> {
                self.$field.$lookup(|c| count_users(c, filter))
            }

            fn record_login(
                &self,
                id: ::repo_core::UserId,
            ) -> ::repo_core::RepoResult<::repo_core::User> {
                self.$field.$statement(|c| record_login(c, id))
            }
        }
    };
}
