//! What both backends share for the `api_keys` repository:
//! [`api_key_repository!`](crate::api_key_repository) writes the row types, every query
//! both backends run alike and the `ApiKeyRepository` impl once; each backend expands
//! it in its `api_keys.rs` over its own `schema::api_keys`, connection type and
//! [`Codec`](crate::codec::Codec).
//!
//! The rules are repo-core's (`repo_core::api_key`): the usable-key rule
//! (`UsableKeyCondition`), the verify decision (`VerifiedKey::decide`), when verify
//! stamps `last_used_at` (`ApiKeyPolicy::restamp_due`) and the key limit
//! (`ApiKeyPolicy::check_active_limit`). `verify`, the hot path, is one read of the
//! facts and, only when the stamp is due, one conditional `UPDATE`, on both backends.

/// Writes, in the module that expands it, the `api_keys` row types (`ApiKeyRow`,
/// `InsertApiKey`), the query functions both backends share and `impl
/// ApiKeyRepository for $repo`.
///
/// A macro because the two backends' Diesel types differ (their own `schema`
/// module, connection type and column types) while the code is the same text; the
/// body is plain Diesel.
///
/// The expanding module must have in scope the `api_keys` and `users` schema modules.
///
/// Arguments:
/// - `backend`, `connection`, `codec`, `map_error`: the Diesel backend type, the
///   connection type, the backend's `Codec` and its Diesel error mapping;
/// - `impl for Repo<S> where S: Source`: the repository type and its source trait;
/// - `policy(s) => …`: the store's `ApiKeyPolicy`, from the repository `s`;
/// - `read(s, f) => …`, `run(s, f) => …`, `write(s, f) => …`: how the impl runs the
///   closure `f` on the repository `s`, for reads (a replica may serve), single
///   statements and multi-statement writes;
/// - `atomic`: runs the creation (lock the user, count, insert) in a transaction
///   (SQLite's `BEGIN IMMEDIATE`), or as it is where `write` already gave one
///   ([`as_is`](crate::codec::as_is));
/// - `lock_user`: `(conn, UserId) -> RepoResult<()>`: `NotFound` for an unknown user,
///   and serialises the creators of one user's keys until the transaction ends, so
///   that the count cannot be raced past the limit;
/// - `user_row`: the backend's `users` row type (`Selectable`, with
///   `into_domain(self) -> RepoResult<User>`).
#[macro_export]
macro_rules! api_key_repository {
    (
        backend: $db:ident,
        connection: $conn:ty,
        codec: $codec:ident,
        map_error: $map_err:path,
        impl for $repo:ty where S: $source:path,
        policy($ps:ident) => $policy:expr,
        read($rs:ident, $rf:ident) => $read:expr,
        run($us:ident, $uf:ident) => $run:expr,
        write($ws:ident, $wf:ident) => $write:expr,
        atomic: $atomic:path,
        lock_user: $lock_user:path,
        user_row: $user_row:ty $(,)?
    ) => {
        use ::diesel::prelude::*;
        use $crate::codec::Codec as _;

        type StoredUuid = <$codec as $crate::codec::Codec>::Uuid;
        type StoredTs = <$codec as $crate::codec::Codec>::Timestamp;
        type StoredJson = <$codec as $crate::codec::Codec>::Json;
        type KeyResult = ::repo_core::RepoResult<::repo_core::ApiKey>;

        /// An `api_keys` row without `name_folded` and `key_hash`: a hash is written
        /// and matched, never read back.
        #[derive(::diesel::Queryable, ::diesel::Selectable, ::diesel::QueryableByName)]
        #[diesel(table_name = api_keys, check_for_backend($db))]
        struct ApiKeyRow {
            id: StoredUuid,
            user_id: i64,
            name: String,
            key_prefix: String,
            permissions: Option<StoredJson>,
            is_active: bool,
            expires_at: Option<StoredTs>,
            last_used_at: Option<StoredTs>,
            created_at: StoredTs,
        }

        impl ApiKeyRow {
            fn into_domain(self) -> KeyResult {
                const T: &str = "api_keys";
                Ok(::repo_core::ApiKey {
                    id: ::repo_core::ApiKeyId($codec::read_uuid(T, "id", self.id)?),
                    user_id: ::repo_core::UserId(self.user_id),
                    name: self.name,
                    key_prefix: self.key_prefix,
                    permissions: $codec::read_opt_json(T, "permissions", self.permissions)?,
                    is_active: self.is_active,
                    expires_at: $codec::read_opt_timestamp(T, "expires_at", self.expires_at)?,
                    last_used_at: $codec::read_opt_timestamp(T, "last_used_at", self.last_used_at)?,
                    created_at: $codec::read_timestamp(T, "created_at", self.created_at)?,
                })
            }
        }

        /// A new `api_keys` row (every column given: one statement shape).
        #[derive(::diesel::Insertable)]
        #[diesel(table_name = api_keys, treat_none_as_default_value = false)]
        struct InsertApiKey<'a> {
            id: StoredUuid,
            user_id: i64,
            name: &'a str,
            name_folded: &'a str,
            key_prefix: &'a str,
            key_hash: &'a str,
            permissions: Option<StoredJson>,
            is_active: bool,
            expires_at: Option<StoredTs>,
            last_used_at: Option<StoredTs>,
            created_at: StoredTs,
        }

        impl<'a> InsertApiKey<'a> {
            fn from_domain(
                prepared: &'a ::repo_core::api_key::PreparedApiKey,
            ) -> ::repo_core::RepoResult<Self> {
                let key = &prepared.key;
                Ok(Self {
                    id: $codec::uuid(key.id.0),
                    user_id: key.user_id.0,
                    name: &key.name,
                    name_folded: &prepared.name_folded,
                    key_prefix: &key.key_prefix,
                    key_hash: &prepared.key_hash,
                    permissions: $codec::opt_json(key.permissions.as_ref())?,
                    is_active: key.is_active,
                    expires_at: $codec::opt_timestamp(key.expires_at),
                    last_used_at: $codec::opt_timestamp(key.last_used_at),
                    created_at: $codec::timestamp(key.created_at),
                })
            }
        }

        type KeyCondition = Box<
            dyn ::diesel::BoxableExpression<
                api_keys::table,
                $db,
                SqlType = ::diesel::sql_types::Bool,
            >,
        >;

        /// The conditions of the usable-key rule that read only the key
        /// (`UsableKeyCondition::reads_only_the_key`) as one SQL condition at `at`.
        /// One arm per condition and no catch-all: a condition added to the core
        /// fails to compile here until it has its SQL.
        fn key_usable_at(at: ::repo_core::Timestamp) -> KeyCondition {
            use ::repo_core::api_key::UsableKeyCondition as Rule;
            Rule::ALL
                .into_iter()
                .filter(|rule| rule.reads_only_the_key())
                .filter_map(|rule| -> Option<KeyCondition> {
                    match rule {
                        Rule::KeyActive => Some(Box::new(api_keys::is_active.eq(true))),
                        Rule::KeyUnexpired => Some(Box::new(
                            api_keys::expires_at
                                .is_null()
                                .or(api_keys::expires_at.gt($codec::timestamp(at)))
                                .assume_not_null(),
                        )),
                        // Not a column of `api_keys`: verify checks it on the join.
                        Rule::UserActive => None,
                    }
                })
                .reduce(|all, next| Box::new(all.and(next)))
                .unwrap_or_else(|| {
                    Box::new(::diesel::dsl::sql::<::diesel::sql_types::Bool>("1 = 1"))
                })
        }

        /// One read of the facts (the key with this hash and its user), the core's
        /// decision ([`VerifiedKey::decide`](::repo_core::VerifiedKey::decide)); then,
        /// only when [`ApiKeyPolicy::restamp_due`](::repo_core::ApiKeyPolicy::restamp_due),
        /// one conditional `UPDATE` in autocommit (the restamp condition repeated, so
        /// that of racing verifies one stamps; `is_active` repeated, so that a racing
        /// revoke wins). A verify of a recently used key is one prepared `SELECT`: it
        /// takes no write lock (SQLite) and writes no row version (PostgreSQL).
        fn verify(
            conn: &mut $conn,
            secret: &::repo_core::ApiKeySecret,
            policy: &::repo_core::ApiKeyPolicy,
        ) -> ::repo_core::RepoResult<Option<::repo_core::VerifiedKey>> {
            let at = ::repo_core::now();
            let found: Option<(ApiKeyRow, $user_row)> = api_keys::table
                .inner_join(users::table)
                .filter(api_keys::key_hash.eq(secret.hash()))
                .select((ApiKeyRow::as_select(), <$user_row>::as_select()))
                .get_result(conn)
                .optional()
                .map_err($map_err)?;
            let Some((key, user)) = found else {
                return Ok(None);
            };
            let Some(mut verified) =
                ::repo_core::VerifiedKey::decide(key.into_domain()?, user.into_domain()?, at)
            else {
                return Ok(None);
            };
            if policy.restamp_due(verified.key.last_used_at, at) {
                let restamp = $codec::timestamp(policy.restamp_at_or_before(at));
                let stamped = ::diesel::update(
                    api_keys::table
                        .filter(api_keys::id.eq($codec::uuid(verified.key.id.0)))
                        .filter(api_keys::is_active.eq(true))
                        .filter(
                            api_keys::last_used_at
                                .is_null()
                                .or(api_keys::last_used_at.le(restamp))
                                .assume_not_null(),
                        ),
                )
                .set(api_keys::last_used_at.eq($codec::timestamp(at)))
                .execute(conn)
                .map_err($map_err)?;
                if stamped == 1 {
                    verified.key.last_used_at = Some(at);
                }
            }
            Ok(Some(verified))
        }

        fn not_found(id: ::repo_core::ApiKeyId) -> ::repo_core::RepoError {
            ::repo_core::RepoError::not_found(::repo_core::Entity::ApiKey, id)
        }

        fn count_active_at(
            conn: &mut $conn,
            user: ::repo_core::UserId,
            at: ::repo_core::Timestamp,
        ) -> ::repo_core::RepoResult<u64> {
            api_keys::table
                .filter(api_keys::user_id.eq(user.0))
                .filter(key_usable_at(at))
                .count()
                .get_result::<i64>(conn)
                .map($crate::codec::count)
                .map_err($map_err)
        }

        /// Locks the user, applies the key limit to its active keys, inserts.
        fn create(
            conn: &mut $conn,
            prepared: &::repo_core::api_key::PreparedApiKey,
            row: &InsertApiKey<'_>,
            policy: &::repo_core::ApiKeyPolicy,
        ) -> KeyResult {
            let key = &prepared.key;
            $atomic(conn, |c| {
                $lock_user(c, key.user_id)?;
                policy.check_active_limit(count_active_at(c, key.user_id, key.created_at)?)?;
                ::diesel::insert_into(api_keys::table)
                    .values(row)
                    .returning(ApiKeyRow::as_returning())
                    .get_result(c)
                    .map_err($map_err)?
                    .into_domain()
            })
        }

        fn get(conn: &mut $conn, id: ::repo_core::ApiKeyId) -> KeyResult {
            api_keys::table
                .find($codec::uuid(id.0))
                .select(ApiKeyRow::as_select())
                .first(conn)
                .optional()
                .map_err($map_err)?
                .ok_or_else(|| not_found(id))?
                .into_domain()
        }

        fn list_for_user(
            conn: &mut $conn,
            user: ::repo_core::UserId,
        ) -> ::repo_core::RepoResult<Vec<::repo_core::ApiKey>> {
            api_keys::table
                .filter(api_keys::user_id.eq(user.0))
                .select(ApiKeyRow::as_select())
                .order((api_keys::created_at.desc(), api_keys::id.desc()))
                .load(conn)
                .map_err($map_err)?
                .into_iter()
                .map(ApiKeyRow::into_domain)
                .collect()
        }

        fn revoke(conn: &mut $conn, id: ::repo_core::ApiKeyId) -> KeyResult {
            ::diesel::update(api_keys::table.find($codec::uuid(id.0)))
                .set(api_keys::is_active.eq(false))
                .returning(ApiKeyRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err($map_err)?
                .ok_or_else(|| not_found(id))?
                .into_domain()
        }

        fn delete(conn: &mut $conn, id: ::repo_core::ApiKeyId) -> ::repo_core::RepoResult<()> {
            let n = ::diesel::delete(api_keys::table.find($codec::uuid(id.0)))
                .execute(conn)
                .map_err($map_err)?;
            if n == 0 {
                return Err(not_found(id));
            }
            Ok(())
        }

        fn purge_expired(conn: &mut $conn) -> ::repo_core::RepoResult<u64> {
            ::diesel::delete(
                api_keys::table
                    .filter(api_keys::expires_at.is_not_null())
                    .filter(api_keys::expires_at.le($codec::timestamp(::repo_core::now()))),
            )
            .execute(conn)
            .map($crate::codec::affected)
            .map_err($map_err)
        }

        impl<S: $source> ::repo_core::ApiKeyRepository for $repo {
            fn create(
                &self,
                new: &::repo_core::NewApiKey,
            ) -> ::repo_core::RepoResult<::repo_core::CreatedApiKey> {
                let $ps = self;
                let policy = $policy;
                let prepared = new.prepare(&policy)?;
                let key = {
                    let row = InsertApiKey::from_domain(&prepared)?;
                    let ($ws, $wf) = (self, |c: &mut $conn| create(c, &prepared, &row, &policy));
                    $write
                }?;
                Ok(::repo_core::CreatedApiKey {
                    key,
                    secret: prepared.secret,
                })
            }

            fn get(&self, id: ::repo_core::ApiKeyId) -> KeyResult {
                let ($rs, $rf) = (self, |c: &mut $conn| get(c, id));
                $read
            }

            fn list_for_user(
                &self,
                user_id: ::repo_core::UserId,
            ) -> ::repo_core::RepoResult<Vec<::repo_core::ApiKey>> {
                let ($rs, $rf) = (self, |c: &mut $conn| list_for_user(c, user_id));
                $read
            }

            fn verify(
                &self,
                secret: &str,
            ) -> ::repo_core::RepoResult<Option<::repo_core::VerifiedKey>> {
                // Malformed secrets are refused before any query.
                let secret = ::repo_core::ApiKeySecret::parse(secret)?;
                let $ps = self;
                let policy = $policy;
                let ($us, $uf) = (self, |c: &mut $conn| verify(c, &secret, &policy));
                $run
            }

            fn revoke(&self, id: ::repo_core::ApiKeyId) -> KeyResult {
                let ($us, $uf) = (self, |c: &mut $conn| revoke(c, id));
                $run
            }

            fn delete(&self, id: ::repo_core::ApiKeyId) -> ::repo_core::RepoResult<()> {
                let ($us, $uf) = (self, |c: &mut $conn| delete(c, id));
                $run
            }

            fn purge_expired(&self) -> ::repo_core::RepoResult<u64> {
                let ($us, $uf) = (self, |c: &mut $conn| purge_expired(c));
                $run
            }

            fn count_active(&self, user_id: ::repo_core::UserId) -> ::repo_core::RepoResult<u64> {
                let ($rs, $rf) = (self, |c: &mut $conn| {
                    count_active_at(c, user_id, ::repo_core::now())
                });
                $read
            }
        }
    };
}
