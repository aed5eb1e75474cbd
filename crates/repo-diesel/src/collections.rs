//! What both backends share for the `collections` repository: the SQL of the access
//! check, and macros that write the row types, the access statements, the listing of
//! visible collections and the queries once, expanded in each backend over its own
//! `schema` module, connection type and [`Codec`](crate::codec::Codec).
//!
//! The macros expect, in scope where they are expanded: the backend's table modules
//! `collections`, `collection_permissions` and `api_keys` (from its `schema`), its
//! `map_diesel_error` and `diesel::prelude::*`; and in the backend crate the modules
//! both backends name alike: `crate::prepared::CacheDsl` (for `.cached()`) and
//! `crate::users::ensure_exists`. Every rule they apply is `repo-core`'s; they only run
//! SQL.

/// The columns of a principal (the `PrincipalColumns` row of
/// [`collection_access!`](crate::collection_access)), over [`principal_joins`]. The
/// `CASE` keeps a user principal (no key) from running the grant probe at all.
pub const PRINCIPAL_COLUMNS: &str = "u.id AS principal_user_id, \
     u.is_active AS principal_user_is_active, \
     u.is_superuser AS principal_is_superuser, \
     k.is_active AS key_is_active, \
     k.expires_at AS key_expires_at, \
     k.permissions AS key_permissions, \
     CASE WHEN k.id IS NULL THEN FALSE ELSE EXISTS ( \
         SELECT 1 FROM collection_permissions kg_any WHERE kg_any.api_key_id = k.id \
     ) END AS key_has_grants";

/// The joins that resolve a principal: parameter 1 is the user id (NULL for a key),
/// parameter 2 the key id (NULL for a user); `u` is the acting user, `k` the key.
/// `sigil` starts a numbered parameter: `$` on PostgreSQL, `?` on SQLite.
pub fn principal_joins(sigil: char) -> String {
    format!(
        "LEFT JOIN api_keys k ON k.id = {sigil}2 \
         LEFT JOIN users u ON u.id = COALESCE(k.user_id, {sigil}1)"
    )
}

/// The statement that reads a principal alone (parameters: user id, key id).
pub fn actor_sql(sigil: char) -> String {
    format!(
        "SELECT {PRINCIPAL_COLUMNS} FROM (SELECT 1) AS one {}",
        principal_joins(sigil)
    )
}

/// The statement that reads a collection with its principal and the acting user's
/// and key's grants on it (parameters: user id, key id, collection id).
pub fn access_sql(sigil: char) -> String {
    format!(
        "SELECT c.*, {PRINCIPAL_COLUMNS}, ug.permission AS user_grant, kg.permission AS key_grant \
         FROM collections c {} \
         LEFT JOIN collection_permissions ug ON ug.collection_id = c.id AND ug.user_id = u.id \
         LEFT JOIN collection_permissions kg ON kg.collection_id = c.id AND kg.api_key_id = k.id \
         WHERE c.id = {sigil}3",
        principal_joins(sigil)
    )
}

/// How many collections a user sees: the union of the owned, public and granted ids
/// (parameter 1: the user id).
pub fn visible_count_sql(sigil: char) -> String {
    format!(
        "SELECT count(*) AS n FROM ( \
           SELECT id FROM collections WHERE owner_id = {sigil}1 \
           UNION SELECT id FROM collections WHERE is_public = TRUE \
           UNION SELECT collection_id FROM collection_permissions WHERE user_id = {sigil}1) AS v"
    )
}

/// Writes the row types of the `collections` repository and their conversions:
/// `CollectionRow` (read, insert and whole-row update), `PermissionRow` (a grant as
/// read), `InsertPermission`, and the helpers `one` and `many`.
///
/// `backend` is the Diesel backend type (`Sqlite`, `Pg`) in scope; `codec` the
/// backend's codec, whose types the columns have.
#[macro_export]
macro_rules! collection_rows {
    (backend: $backend:ident, codec: $codec:ident $(,)?) => {
        // The codec's functions, called as `$codec::uuid(…)`.
        use $crate::codec::Codec as _;
        /// How this backend's codec stores a UUID (for the row types below).
        type StoredUuid = <$codec as $crate::codec::Codec>::Uuid;
        /// How this backend's codec stores a timestamp.
        type StoredTimestamp = <$codec as $crate::codec::Codec>::Timestamp;
        /// How this backend's codec stores a JSON document.
        type StoredJson = <$codec as $crate::codec::Codec>::Json;

        /// A whole `collections` row; also the insert and whole-row update shape.
        #[derive(Queryable, QueryableByName, Selectable, Insertable, AsChangeset)]
        #[diesel(table_name = collections, check_for_backend($backend))]
        #[diesel(treat_none_as_null = true, treat_none_as_default_value = false)]
        pub(crate) struct CollectionRow {
            id: StoredUuid,
            name: String,
            description: Option<String>,
            owner_id: i64,
            vector_store_name: String,
            embedding_model: String,
            quantization: String,
            chunk_size: i32,
            chunk_overlap: i32,
            chunking_strategy: Option<String>,
            chunking_config: Option<StoredJson>,
            is_public: bool,
            meta: StoredJson,
            status: String,
            status_message: Option<String>,
            document_count: i64,
            vector_count: i64,
            total_size_bytes: i64,
            sync_mode: String,
            sync_interval_minutes: Option<i32>,
            sync_paused_at: Option<StoredTimestamp>,
            sync_next_run_at: Option<StoredTimestamp>,
            sync_last_run_started_at: Option<StoredTimestamp>,
            sync_last_run_completed_at: Option<StoredTimestamp>,
            sync_last_run_status: Option<String>,
            sync_last_error: Option<String>,
            created_at: StoredTimestamp,
            updated_at: StoredTimestamp,
        }

        impl CollectionRow {
            /// The row that stores `c`.
            fn from_domain(c: &::repo_core::Collection) -> ::repo_core::RepoResult<Self> {
                Ok(Self {
                    id: $codec::uuid(c.id.0),
                    name: c.name.clone(),
                    description: c.description.clone(),
                    owner_id: c.owner_id.0,
                    vector_store_name: c.vector_store_name.clone(),
                    embedding_model: c.embedding_model.clone(),
                    quantization: c.quantization.as_str().to_owned(),
                    chunk_size: c.chunk_size,
                    chunk_overlap: c.chunk_overlap,
                    chunking_strategy: c.chunking_strategy.clone(),
                    chunking_config: $codec::opt_json(c.chunking_config.as_ref())?,
                    is_public: c.is_public,
                    meta: $codec::json(&c.meta)?,
                    status: c.status.as_str().to_owned(),
                    status_message: c.status_message.clone(),
                    document_count: c.document_count,
                    vector_count: c.vector_count,
                    total_size_bytes: c.total_size_bytes,
                    sync_mode: c.sync_mode.as_str().to_owned(),
                    sync_interval_minutes: c.sync_interval_minutes,
                    sync_paused_at: $codec::opt_timestamp(c.sync_paused_at),
                    sync_next_run_at: $codec::opt_timestamp(c.sync_next_run_at),
                    sync_last_run_started_at: $codec::opt_timestamp(c.sync_last_run_started_at),
                    sync_last_run_completed_at: $codec::opt_timestamp(c.sync_last_run_completed_at),
                    sync_last_run_status: c.sync_last_run_status.map(|s| s.as_str().to_owned()),
                    sync_last_error: c.sync_last_error.clone(),
                    created_at: $codec::timestamp(c.created_at),
                    updated_at: $codec::timestamp(c.updated_at),
                })
            }

            /// The collection this row stores.
            pub(crate) fn into_domain(self) -> ::repo_core::RepoResult<::repo_core::Collection> {
                const T: &str = "collections";
                Ok(::repo_core::Collection {
                    id: ::repo_core::CollectionId($codec::read_uuid(T, "id", self.id)?),
                    name: self.name,
                    description: self.description,
                    owner_id: ::repo_core::UserId(self.owner_id),
                    vector_store_name: self.vector_store_name,
                    embedding_model: self.embedding_model,
                    quantization: $codec::read_enum(T, "quantization", &self.quantization)?,
                    chunk_size: self.chunk_size,
                    chunk_overlap: self.chunk_overlap,
                    chunking_strategy: self.chunking_strategy,
                    chunking_config: $codec::read_opt_json(
                        T,
                        "chunking_config",
                        self.chunking_config,
                    )?,
                    is_public: self.is_public,
                    meta: $codec::read_json(T, "meta", self.meta)?,
                    status: $codec::read_enum(T, "status", &self.status)?,
                    status_message: self.status_message,
                    document_count: self.document_count,
                    vector_count: self.vector_count,
                    total_size_bytes: self.total_size_bytes,
                    sync_mode: $codec::read_enum(T, "sync_mode", &self.sync_mode)?,
                    sync_interval_minutes: self.sync_interval_minutes,
                    sync_paused_at: $codec::read_opt_timestamp(
                        T,
                        "sync_paused_at",
                        self.sync_paused_at,
                    )?,
                    sync_next_run_at: $codec::read_opt_timestamp(
                        T,
                        "sync_next_run_at",
                        self.sync_next_run_at,
                    )?,
                    sync_last_run_started_at: $codec::read_opt_timestamp(
                        T,
                        "sync_last_run_started_at",
                        self.sync_last_run_started_at,
                    )?,
                    sync_last_run_completed_at: $codec::read_opt_timestamp(
                        T,
                        "sync_last_run_completed_at",
                        self.sync_last_run_completed_at,
                    )?,
                    sync_last_run_status: $codec::read_opt_enum(
                        T,
                        "sync_last_run_status",
                        self.sync_last_run_status.as_deref(),
                    )?,
                    sync_last_error: self.sync_last_error,
                    created_at: $codec::read_timestamp(T, "created_at", self.created_at)?,
                    updated_at: $codec::read_timestamp(T, "updated_at", self.updated_at)?,
                })
            }
        }

        /// The collection of a row that an update or read may not have found.
        fn one(
            row: Option<CollectionRow>,
            id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            row.ok_or_else(|| {
                ::repo_core::RepoError::not_found(::repo_core::Entity::Collection, id)
            })?
            .into_domain()
        }

        /// The collections of rows.
        fn many(rows: Vec<CollectionRow>) -> ::repo_core::RepoResult<Vec<::repo_core::Collection>> {
            rows.into_iter().map(CollectionRow::into_domain).collect()
        }

        /// A `collection_permissions` row as read.
        #[derive(Queryable, Selectable)]
        #[diesel(table_name = collection_permissions, check_for_backend($backend))]
        struct PermissionRow {
            collection_id: StoredUuid,
            user_id: Option<i64>,
            api_key_id: Option<StoredUuid>,
            permission: String,
            created_at: StoredTimestamp,
        }

        impl PermissionRow {
            /// The grant this row stores.
            fn into_domain(self) -> ::repo_core::RepoResult<::repo_core::CollectionPermission> {
                const T: &str = "collection_permissions";
                let grantee = match (self.user_id, self.api_key_id) {
                    (Some(user), None) => ::repo_core::Grantee::User(::repo_core::UserId(user)),
                    (None, Some(key)) => ::repo_core::Grantee::ApiKey(::repo_core::ApiKeyId(
                        $codec::read_uuid(T, "api_key_id", key)?,
                    )),
                    _ => {
                        return Err($codec::corrupt(
                            T,
                            "user_id",
                            "a grant must name exactly one grantee".to_owned(),
                        ))
                    }
                };
                Ok(::repo_core::CollectionPermission {
                    collection_id: ::repo_core::CollectionId($codec::read_uuid(
                        T,
                        "collection_id",
                        self.collection_id,
                    )?),
                    grantee,
                    permission: $codec::read_enum(T, "permission", &self.permission)?,
                    created_at: $codec::read_timestamp(T, "created_at", self.created_at)?,
                })
            }
        }

        /// A grant to insert.
        #[derive(Insertable)]
        #[diesel(table_name = collection_permissions, treat_none_as_default_value = false)]
        struct InsertPermission {
            collection_id: StoredUuid,
            user_id: Option<i64>,
            api_key_id: Option<StoredUuid>,
            permission: &'static str,
            created_at: StoredTimestamp,
        }

        impl InsertPermission {
            /// The grant of `level` on `id` to `grantee`, created now.
            fn from_domain(
                id: ::repo_core::CollectionId,
                grantee: ::repo_core::Grantee,
                level: ::repo_core::AccessLevel,
            ) -> Self {
                let (user_id, api_key_id) = match grantee {
                    ::repo_core::Grantee::User(user) => (Some(user.0), None),
                    ::repo_core::Grantee::ApiKey(key) => (None, Some($codec::uuid(key.0))),
                };
                Self {
                    collection_id: $codec::uuid(id.0),
                    user_id,
                    api_key_id,
                    permission: level.as_str(),
                    created_at: $codec::timestamp(::repo_core::now()),
                }
            }
        }
    };
}

/// Writes the access statements of the `collections` repository: the
/// `PrincipalColumns` and `AccessColumns` rows and the functions `actor` (how a
/// principal may act, `repo_core::access`) and `access` (a collection, its actor and
/// the level it holds, in one statement).
///
/// `conn` is the backend's connection type; `codec` its codec (whose types key ids,
/// `expires_at` and `permissions` have); `sigil` the start of a numbered parameter
/// (`'$'` or `'?'`). Expects [`collection_rows!`](crate::collection_rows) expanded
/// beside it.
// `crate::` names the backend that expands the macro, on purpose: both backends
// spell these modules alike.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! collection_access {
    (conn: $conn:ty, codec: $codec:ident, sigil: $sigil:literal $(,)?) => {
        // The codec's functions, called as `$codec::uuid(…)`.
        use $crate::codec::Codec as _;

        /// What one access statement reads about the principal.
        #[derive(QueryableByName)]
        struct PrincipalColumns {
            #[diesel(sql_type = ::diesel::sql_types::Nullable<::diesel::sql_types::BigInt>)]
            principal_user_id: Option<i64>,
            #[diesel(sql_type = ::diesel::sql_types::Nullable<::diesel::sql_types::Bool>)]
            principal_user_is_active: Option<bool>,
            #[diesel(sql_type = ::diesel::sql_types::Nullable<::diesel::sql_types::Bool>)]
            principal_is_superuser: Option<bool>,
            #[diesel(sql_type = ::diesel::sql_types::Nullable<::diesel::sql_types::Bool>)]
            key_is_active: Option<bool>,
            #[diesel(sql_type = ::diesel::sql_types::Nullable<<$codec as $crate::codec::Codec>::TimestampSql>)]
            key_expires_at: Option<StoredTimestamp>,
            #[diesel(sql_type = ::diesel::sql_types::Nullable<<$codec as $crate::codec::Codec>::JsonSql>)]
            key_permissions: Option<StoredJson>,
            #[diesel(sql_type = ::diesel::sql_types::Bool)]
            key_has_grants: bool,
        }

        impl PrincipalColumns {
            /// The facts, or `NotFound` for a principal that does not exist.
            fn into_facts(
                self,
                principal: ::repo_core::Principal,
            ) -> ::repo_core::RepoResult<::repo_core::PrincipalFacts> {
                const T: &str = "api_keys";
                let user_id = self
                    .principal_user_id
                    .ok_or_else(|| principal.not_found())?;
                let key = match principal.api_key_id() {
                    None => None,
                    Some(_) => Some(::repo_core::KeyFacts {
                        is_active: self.key_is_active.unwrap_or(false),
                        expires_at: $codec::read_opt_timestamp(
                            T,
                            "expires_at",
                            self.key_expires_at,
                        )?,
                        permissions: $codec::read_opt_json(T, "permissions", self.key_permissions)?,
                        has_grants: self.key_has_grants,
                    }),
                };
                Ok(::repo_core::PrincipalFacts {
                    user_id: ::repo_core::UserId(user_id),
                    user_is_active: self.principal_user_is_active.unwrap_or(false),
                    is_superuser: self.principal_is_superuser.unwrap_or(false),
                    key,
                })
            }
        }

        /// A collection with its principal and the acting user's and key's grants on it.
        #[derive(QueryableByName)]
        struct AccessColumns {
            #[diesel(embed)]
            collection: CollectionRow,
            #[diesel(embed)]
            principal: PrincipalColumns,
            #[diesel(sql_type = ::diesel::sql_types::Nullable<::diesel::sql_types::Text>)]
            user_grant: Option<String>,
            #[diesel(sql_type = ::diesel::sql_types::Nullable<::diesel::sql_types::Text>)]
            key_grant: Option<String>,
        }

        /// A stored grant level.
        fn parse_grant(
            grant: Option<String>,
        ) -> ::repo_core::RepoResult<Option<::repo_core::AccessLevel>> {
            $codec::read_opt_enum("collection_permissions", "permission", grant.as_deref())
        }

        /// How `principal` may act (`repo_core::access`), in one statement; an unknown
        /// user or key is `NotFound { entity: Entity::User | Entity::ApiKey }`.
        pub(crate) fn actor(
            conn: &mut $conn,
            principal: ::repo_core::Principal,
        ) -> ::repo_core::RepoResult<::repo_core::Actor> {
            use crate::prepared::CacheDsl as _;
            static SQL: ::std::sync::LazyLock<String> =
                ::std::sync::LazyLock::new(|| $crate::collections::actor_sql($sigil));
            let row: PrincipalColumns = ::diesel::sql_query(SQL.as_str())
                .bind::<::diesel::sql_types::Nullable<::diesel::sql_types::BigInt>, _>(
                    principal.user_id().map(|u| u.0),
                )
                .bind::<::diesel::sql_types::Nullable<<$codec as $crate::codec::Codec>::UuidSql>, _>(
                    principal.api_key_id().map(|k| $codec::uuid(k.0)),
                )
                .cached()
                .get_result(conn)
                .map_err(map_diesel_error)?;
            Ok(row.into_facts(principal)?.actor(::repo_core::now()))
        }

        /// The collection, how `principal` may act, and the level it holds on the
        /// collection, in one statement (the collection row left-joined to the principal
        /// and to both grants). No row: `NotFound { entity: Entity::Collection }`; then an
        /// unknown user or key is `NotFound { entity: Entity::User | Entity::ApiKey }`.
        pub(crate) fn access(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            principal: ::repo_core::Principal,
        ) -> ::repo_core::RepoResult<(
            ::repo_core::Collection,
            ::repo_core::Actor,
            Option<::repo_core::AccessLevel>,
        )> {
            use crate::prepared::CacheDsl as _;
            static SQL: ::std::sync::LazyLock<String> =
                ::std::sync::LazyLock::new(|| $crate::collections::access_sql($sigil));
            let row: Option<AccessColumns> = ::diesel::sql_query(SQL.as_str())
                .bind::<::diesel::sql_types::Nullable<::diesel::sql_types::BigInt>, _>(
                    principal.user_id().map(|u| u.0),
                )
                .bind::<::diesel::sql_types::Nullable<<$codec as $crate::codec::Codec>::UuidSql>, _>(
                    principal.api_key_id().map(|k| $codec::uuid(k.0)),
                )
                .bind::<<$codec as $crate::codec::Codec>::UuidSql, _>($codec::uuid(id.0))
                .cached()
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?;
            let row = row.ok_or_else(|| {
                ::repo_core::RepoError::not_found(::repo_core::Entity::Collection, id)
            })?;
            let actor = row
                .principal
                .into_facts(principal)?
                .actor(::repo_core::now());
            let collection = row.collection.into_domain()?;
            let level = actor.level(
                collection.ownership(),
                parse_grant(row.user_grant)?,
                parse_grant(row.key_grant)?,
            );
            Ok((collection, actor, level))
        }
    };
}

/// Writes the listing of the collections a principal sees (`visible_to`,
/// `visible_branches`, `visible_rows`, `visible_count`) and the two listing functions
/// `list_visible` and `list_visible_by_cursor` (the caller picks the transaction).
///
/// `backend` is the Diesel backend type in scope; `conn` the connection type; `codec`
/// the codec; `sigil` the start of a numbered parameter. Expects
/// [`collection_access!`](crate::collection_access) expanded beside it.
#[macro_export]
macro_rules! visible_collections {
    (backend: $backend:ident, conn: $conn:ty, codec: $codec:ident, sigil: $sigil:literal $(,)?) => {
        // The codec's functions, called as `$codec::uuid(…)`.
        use $crate::codec::Codec as _;

        /// A boxed query over `collections`.
        type CollectionQuery = collections::BoxedQuery<'static, $backend>;

        /// Collections a user can reach: owned, public, or granted to the user.
        fn user_reach(
            user: ::repo_core::UserId,
        ) -> Box<
            dyn BoxableExpression<
                collections::table,
                $backend,
                SqlType = ::diesel::sql_types::Bool,
            >,
        > {
            let granted = collection_permissions::table
                .filter(collection_permissions::user_id.eq(user.0))
                .select(collection_permissions::collection_id);
            Box::new(
                collections::owner_id
                    .eq(user.0)
                    .or(collections::is_public.eq(true))
                    .or(collections::id.eq_any(granted)),
            )
        }

        /// The collections `actor` (resolved from `principal`) lists, as
        /// `repo_core::access` decides.
        fn visible_to(
            actor: ::repo_core::Actor,
            principal: ::repo_core::Principal,
        ) -> CollectionQuery {
            use ::repo_core::Actor;
            let all = collections::table.into_boxed();
            match actor {
                Actor::Denied => all.filter(collections::id.ne(collections::id)),
                Actor::User { user, .. } => all.filter(user_reach(user)),
                Actor::Scoped {
                    user,
                    is_superuser,
                    read_public,
                } => {
                    let key_granted = collection_permissions::table
                        .filter(
                            collection_permissions::api_key_id
                                .eq(principal.api_key_id().map(|k| $codec::uuid(k.0))),
                        )
                        .select(collection_permissions::collection_id);
                    let scoped = if is_superuser {
                        all.filter(collections::id.eq_any(key_granted))
                    } else {
                        all.filter(collections::id.eq_any(key_granted).and(user_reach(user)))
                    };
                    if read_public {
                        scoped.or_filter(collections::is_public.eq(true))
                    } else {
                        scoped
                    }
                }
            }
        }

        /// A user's reach as indexed branches (`Actor::User`): owned
        /// (`collections_owner_id_idx`), public (`collections_public_created_at_idx`) and
        /// granted (`collection_permissions_user_id_idx`, then the primary key), each
        /// read newest first, instead of one `OR` that scans every collection. Other
        /// actors (scoped API keys) keep one query.
        fn visible_branches(
            actor: ::repo_core::Actor,
            principal: ::repo_core::Principal,
        ) -> Vec<CollectionQuery> {
            match actor {
                ::repo_core::Actor::User { user, .. } => {
                    let granted = collection_permissions::table
                        .filter(collection_permissions::user_id.eq(user.0))
                        .select(collection_permissions::collection_id);
                    vec![
                        collections::table
                            .filter(collections::owner_id.eq(user.0))
                            .into_boxed(),
                        collections::table
                            .filter(collections::is_public.eq(true))
                            .into_boxed(),
                        collections::table
                            .filter(collections::id.eq_any(granted))
                            .into_boxed(),
                    ]
                }
                _ => vec![visible_to(actor, principal)],
            }
        }

        /// Rows `skip..skip + take` of the newest-first listing of what `actor` sees,
        /// after the cursor position `after` when given: `skip + take` rows of each
        /// branch, merged.
        fn visible_rows(
            conn: &mut $conn,
            actor: ::repo_core::Actor,
            principal: ::repo_core::Principal,
            after: Option<&::repo_core::Cursor>,
            skip: i64,
            take: i64,
        ) -> ::repo_core::RepoResult<Vec<::repo_core::Collection>> {
            let mut branches = Vec::new();
            for mut query in visible_branches(actor, principal) {
                if let Some(after) = after {
                    let at = $codec::timestamp(after.created_at());
                    let id = $codec::uuid(after.uuid_id()?);
                    query = query.filter(
                        collections::created_at
                            .lt(at.clone())
                            .or(collections::created_at.eq(at).and(collections::id.lt(id))),
                    );
                }
                let rows = query
                    .select(CollectionRow::as_select())
                    .order((collections::created_at.desc(), collections::id.desc()))
                    .limit(skip.saturating_add(take))
                    .load(conn)
                    .map_err(map_diesel_error)?;
                branches.push(many(rows)?);
            }
            let index = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
            Ok(::repo_core::merge_newest_first(
                branches,
                index(skip),
                index(take),
            ))
        }

        /// One count.
        #[derive(QueryableByName)]
        struct Counted {
            #[diesel(sql_type = ::diesel::sql_types::BigInt)]
            n: i64,
        }

        /// How many collections `actor` sees: for a user, the union of the branches' ids.
        fn visible_count(
            conn: &mut $conn,
            actor: ::repo_core::Actor,
            principal: ::repo_core::Principal,
        ) -> ::repo_core::RepoResult<u64> {
            static SQL: ::std::sync::LazyLock<String> =
                ::std::sync::LazyLock::new(|| $crate::collections::visible_count_sql($sigil));
            let n = match actor {
                ::repo_core::Actor::User { user, .. } => {
                    ::diesel::sql_query(SQL.as_str())
                        .bind::<::diesel::sql_types::BigInt, _>(user.0)
                        .get_result::<Counted>(conn)
                        .map_err(map_diesel_error)?
                        .n
                }
                _ => visible_to(actor, principal)
                    .count()
                    .get_result(conn)
                    .map_err(map_diesel_error)?,
            };
            Ok(u64::try_from(n).unwrap_or(0))
        }

        /// A page of the collections `principal` sees, with their total.
        fn list_visible(
            conn: &mut $conn,
            principal: ::repo_core::Principal,
            page: ::repo_core::PageRequest,
        ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Collection>> {
            let actor = actor(conn, principal)?;
            actor.require_usable()?;
            let items = visible_rows(
                conn,
                actor,
                principal,
                None,
                page.offset_i64(),
                page.limit_i64(),
            )?;
            let total = visible_count(conn, actor, principal)?;
            Ok(::repo_core::Page { items, total })
        }

        /// A cursor page of the collections `principal` sees.
        fn list_visible_by_cursor(
            conn: &mut $conn,
            principal: ::repo_core::Principal,
            page: &::repo_core::CursorRequest,
        ) -> ::repo_core::RepoResult<::repo_core::CursorPage<::repo_core::Collection>> {
            let actor = actor(conn, principal)?;
            actor.require_usable()?;
            let rows = visible_rows(
                conn,
                actor,
                principal,
                page.after.as_ref(),
                0,
                page.fetch_i64(),
            )?;
            Ok(page.page(rows, ::repo_core::Collection::cursor))
        }
    };
}

/// Writes the queries of the `collections` repository that both backends run alike
/// (the caller picks the transaction): `get`, `ensure_exists`, `get_by_name`,
/// `create`, `store` (whole-row write), `update`, `rename`, `update_status`,
/// `update_stats`, `delete`, `due_for_sync`, `pause_sync`, `resume_sync`,
/// `record_sync_run`, `upsert_grant`, `grant`, `mark_key_scoped`, `revoke_grant`
/// and `list_grants`. Each write that needs the
/// current row reads it with the backend's own `lock` (`FOR UPDATE` where the database
/// has it) and asks `repo-core` for the next row.
///
/// `conn` is the connection type; `codec` the codec. Expects
/// [`collection_access!`](crate::collection_access) expanded beside it, `lock` defined
/// `key_permissions` (an API key's stored permissions), `grant_references` and
/// `key_grant_transaction` defined beside it.
// `crate::` names the backend that expands the macro, on purpose: both backends
// spell these modules alike.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
macro_rules! collection_queries {
    (conn: $conn:ty, codec: $codec:ident $(,)?) => {
        // The codec's functions, called as `$codec::uuid(…)`.
        use $crate::codec::Codec as _;

        /// The collection with this id, or `NotFound { entity: Entity::Collection }`.
        pub(crate) fn get(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let row = collections::table
                .find($codec::uuid(id.0))
                .select(CollectionRow::as_select())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?;
            one(row, id)
        }

        /// `NotFound { entity: Entity::Collection }` unless the collection exists.
        pub(crate) fn ensure_exists(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<()> {
            let exists: bool = ::diesel::select(::diesel::dsl::exists(
                collections::table.find($codec::uuid(id.0)),
            ))
            .get_result(conn)
            .map_err(map_diesel_error)?;
            if exists {
                Ok(())
            } else {
                Err(::repo_core::RepoError::not_found(
                    ::repo_core::Entity::Collection,
                    id,
                ))
            }
        }

        /// The collection with this exact name, or `NotFound`.
        fn get_by_name(
            conn: &mut $conn,
            name: &str,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            ::repo_core::validate::text(::repo_core::Field::Name, name)?;
            collections::table
                .filter(collections::name.eq(name))
                .select(CollectionRow::as_select())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?
                .ok_or_else(|| {
                    ::repo_core::RepoError::not_found(::repo_core::Entity::Collection, name)
                })?
                .into_domain()
        }

        /// Inserts the collection `repo_core` prepares from `new`.
        fn create(
            conn: &mut $conn,
            new: &::repo_core::NewCollection,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let collection = new.prepare()?;
            crate::users::ensure_exists(conn, collection.owner_id)?;
            ::diesel::insert_into(collections::table)
                .values(CollectionRow::from_domain(&collection)?)
                .returning(CollectionRow::as_returning())
                .get_result(conn)
                .map_err(map_diesel_error)?
                .into_domain()
        }

        /// Writes every column of `next` (read by the caller with `lock`).
        fn store(
            conn: &mut $conn,
            next: &::repo_core::Collection,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let row = ::diesel::update(collections::table.find($codec::uuid(next.id.0)))
                .set(CollectionRow::from_domain(next)?)
                .returning(CollectionRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?;
            one(row, next.id)
        }

        /// Applies the patch (`CollectionPatch::apply_to`).
        fn update(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            patch: &::repo_core::CollectionPatch,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let current = lock(conn, id)?;
            store(conn, &patch.apply_to(&current)?)
        }

        /// Renames the collection.
        fn rename(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            new_name: &str,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let name = ::repo_core::validate::collection_name(new_name)?;
            let row = ::diesel::update(collections::table.find($codec::uuid(id.0)))
                .set((
                    collections::name.eq(name),
                    collections::updated_at.eq($codec::timestamp(::repo_core::now())),
                ))
                .returning(CollectionRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?;
            one(row, id)
        }

        /// One conditional update from the states `Collection::status_sources` allows;
        /// when no row changes, `InvalidState` from the current state (or `NotFound`).
        fn update_status(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            status: ::repo_core::CollectionStatus,
            message: Option<&str>,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let from = ::repo_core::Collection::status_sources(status, message)?;
            let row = if from.is_empty() {
                None
            } else {
                ::diesel::update(
                    collections::table
                        .find($codec::uuid(id.0))
                        .filter(collections::status.eq_any(from)),
                )
                .set((
                    collections::status.eq(status.as_str()),
                    collections::status_message.eq(message),
                    collections::updated_at.eq($codec::timestamp(::repo_core::now())),
                ))
                .returning(CollectionRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?
            };
            match row {
                Some(row) => row.into_domain(),
                None => {
                    let current = get(conn, id)?;
                    Err(::repo_core::RepoError::invalid_state(
                        current.status,
                        status,
                    ))
                }
            }
        }

        /// Sets the counters.
        fn update_stats(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            stats: ::repo_core::CollectionStats,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            stats.validate()?;
            let row = ::diesel::update(collections::table.find($codec::uuid(id.0)))
                .set((
                    collections::document_count.eq(stats.document_count),
                    collections::vector_count.eq(stats.vector_count),
                    collections::total_size_bytes.eq(stats.total_size_bytes),
                    collections::updated_at.eq($codec::timestamp(::repo_core::now())),
                ))
                .returning(CollectionRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err(map_diesel_error)?;
            one(row, id)
        }

        /// Deletes the collection if `principal` may (`Collection::require_delete_rights`).
        fn delete(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            principal: ::repo_core::Principal,
        ) -> ::repo_core::RepoResult<()> {
            lock(conn, id)?;
            let (collection, _, level) = access(conn, id, principal)?;
            collection.require_delete_rights(level)?;
            // Operations, grants, documents and chunks go by ON DELETE CASCADE.
            ::diesel::delete(collections::table.find($codec::uuid(id.0)))
                .execute(conn)
                .map_err(map_diesel_error)?;
            Ok(())
        }

        /// Continuous, unpaused, ready collections due at `at`, oldest due first.
        fn due_for_sync(
            conn: &mut $conn,
            at: ::repo_core::Timestamp,
            limit: u32,
        ) -> ::repo_core::RepoResult<Vec<::repo_core::Collection>> {
            let rows = collections::table
                .filter(collections::sync_mode.eq(::repo_core::SyncMode::Continuous.as_str()))
                .filter(collections::sync_paused_at.is_null())
                .filter(collections::sync_next_run_at.le($codec::timestamp(at)))
                .filter(collections::status.eq(::repo_core::CollectionStatus::Ready.as_str()))
                .select(CollectionRow::as_select())
                .order((collections::sync_next_run_at.asc(), collections::id.asc()))
                .limit(i64::from(limit))
                .load(conn)
                .map_err(map_diesel_error)?;
            many(rows)
        }

        /// Pauses sync (`Collection::paused`).
        fn pause_sync(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let current = lock(conn, id)?;
            match current.paused(::repo_core::now())? {
                Some(next) => store(conn, &next),
                None => Ok(current),
            }
        }

        /// Resumes sync (`Collection::resumed`).
        fn resume_sync(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            next_run_at: ::repo_core::Timestamp,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            let current = lock(conn, id)?;
            store(conn, &current.resumed(next_run_at, ::repo_core::now())?)
        }

        /// Records a sync run (`Collection::with_sync_run`).
        fn record_sync_run(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            run: &::repo_core::SyncRun,
        ) -> ::repo_core::RepoResult<::repo_core::Collection> {
            ::repo_core::validate::opt_text(
                ::repo_core::Field::SyncLastError,
                run.error.as_deref(),
            )?;
            let current = lock(conn, id)?;
            store(conn, &current.with_sync_run(run, ::repo_core::now())?)
        }

        /// The one statement of a grant: inserts it, or changes the level of the
        /// grantee's grant (`created_at` keeps the first grant). Diesel's result, so
        /// that the backend maps a missing collection or grantee its own way.
        fn upsert_grant(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            grantee: ::repo_core::Grantee,
            level: ::repo_core::AccessLevel,
        ) -> ::diesel::QueryResult<PermissionRow> {
            use crate::prepared::CacheDsl as _;
            let insert = ::diesel::insert_into(collection_permissions::table)
                .values(InsertPermission::from_domain(id, grantee, level));
            let changes = collection_permissions::permission.eq(::diesel::upsert::excluded(
                collection_permissions::permission,
            ));
            match grantee {
                ::repo_core::Grantee::User(_) => insert
                    .on_conflict((
                        collection_permissions::collection_id,
                        collection_permissions::user_id,
                    ))
                    .do_update()
                    .set(changes)
                    .returning(PermissionRow::as_returning())
                    .cached()
                    .get_result(conn),
                ::repo_core::Grantee::ApiKey(_) => insert
                    .on_conflict((
                        collection_permissions::collection_id,
                        collection_permissions::api_key_id,
                    ))
                    .do_update()
                    .set(changes)
                    .returning(PermissionRow::as_returning())
                    .cached()
                    .get_result(conn),
            }
        }

        /// Grants (or changes) access by [`upsert_grant`], through the backend's
        /// `grant_references` (which checks the collection and the grantee before the
        /// upsert, or maps the foreign-key violation after it). A grant to an API key
        /// also marks the key scoped, in the backend's `key_grant_transaction`.
        fn grant(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            grantee: ::repo_core::Grantee,
            level: ::repo_core::AccessLevel,
        ) -> ::repo_core::RepoResult<::repo_core::CollectionPermission> {
            let upsert = |c: &mut $conn| {
                grant_references(c, id, grantee, |c| upsert_grant(c, id, grantee, level))?
                    .into_domain()
            };
            match grantee {
                ::repo_core::Grantee::User(_) => upsert(conn),
                ::repo_core::Grantee::ApiKey(key) => key_grant_transaction(conn, |c| {
                    let stored = upsert(c)?;
                    mark_key_scoped(c, key)?;
                    Ok(stored)
                }),
            }
        }

        /// Marks a key scoped once it holds a grant (`repo_core::access::mark_scoped`),
        /// so that revoking its last grant does not hand it back all of its user's
        /// rights. Reads the key with the backend's `key_permissions` (locked where
        /// the database can).
        fn mark_key_scoped(
            conn: &mut $conn,
            key: ::repo_core::ApiKeyId,
        ) -> ::repo_core::RepoResult<()> {
            let stored = key_permissions(conn, key).map_err(map_diesel_error)?;
            let current = $codec::read_opt_json("api_keys", "permissions", stored)?;
            if let Some(next) = ::repo_core::access::mark_scoped(current.as_ref())? {
                ::diesel::update(api_keys::table.find($codec::uuid(key.0)))
                    .set(api_keys::permissions.eq($codec::json(&next)?))
                    .execute(conn)
                    .map_err(map_diesel_error)?;
            }
            Ok(())
        }

        /// Removes a grant; `true` if one existed.
        fn revoke_grant(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
            grantee: ::repo_core::Grantee,
        ) -> ::repo_core::RepoResult<bool> {
            let of_collection = collection_permissions::table
                .filter(collection_permissions::collection_id.eq($codec::uuid(id.0)));
            let n = match grantee {
                ::repo_core::Grantee::User(user) => ::diesel::delete(
                    of_collection.filter(collection_permissions::user_id.eq(user.0)),
                )
                .execute(conn),
                ::repo_core::Grantee::ApiKey(key) => ::diesel::delete(
                    of_collection
                        .filter(collection_permissions::api_key_id.eq($codec::uuid(key.0))),
                )
                .execute(conn),
            }
            .map_err(map_diesel_error)?;
            Ok(n > 0)
        }

        /// Every grant on the collection, newest first.
        fn list_grants(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<Vec<::repo_core::CollectionPermission>> {
            ensure_exists(conn, id)?;
            collection_permissions::table
                .filter(collection_permissions::collection_id.eq($codec::uuid(id.0)))
                .select(PermissionRow::as_select())
                .order((
                    collection_permissions::created_at.desc(),
                    collection_permissions::id.desc(),
                ))
                .load(conn)
                .map_err(map_diesel_error)?
                .into_iter()
                .map(PermissionRow::into_domain)
                .collect()
        }
    };
}

/// Writes `impl CollectionRepository for $repo<S>` over the functions of the macros
/// above. Each method runs its function through the source in field `$field` of the
/// repository, by the source method (`run`, `read`, `write`) the backend names for the
/// kind of call it is:
/// - `lookup`: one statement that reads (`get`, `get_by_name`, `get_with_access`,
///   `access_level`, `due_for_sync`);
/// - `listing`: reads that must agree with each other (a page and its total:
///   `list_visible`, `list_visible_by_cursor`, `list_grants`);
/// - `statement`: one statement that writes (`rename`, `update_stats`, `revoke_grant`);
/// - `transaction`: a read and the write that depends on it (`create`, `update`,
///   `delete`, `pause_sync`, `resume_sync`, `record_sync_run`);
/// - `transition`: `update_status`, one conditional update, then a read when it
///   changed nothing;
/// - `grant`: `grant`, whose statements differ per backend.
#[macro_export]
macro_rules! collection_repository {
    (
        $repo:ident<S: $bound:path>.$field:tt {
            lookup: $lookup:ident,
            listing: $listing:ident,
            statement: $statement:ident,
            transaction: $transaction:ident,
            transition: $transition:ident,
            grant: $grant:ident $(,)?
        }
    ) => {
        impl<S: $bound> ::repo_core::CollectionRepository for $repo<S> {
            fn create(
                &self,
                new: &::repo_core::NewCollection,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$transaction(|c| create(c, new))
            }

            fn get(
                &self,
                id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$lookup(|c| get(c, id))
            }

            fn get_by_name(&self, name: &str) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$lookup(|c| get_by_name(c, name))
            }

            fn get_with_access(
                &self,
                id: ::repo_core::CollectionId,
                principal: ::repo_core::Principal,
                needed: ::repo_core::AccessLevel,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$lookup(|c| {
                    let (collection, _, level) = access(c, id, principal)?;
                    ::repo_core::require_access(collection.id, level, needed)?;
                    Ok(collection)
                })
            }

            fn access_level(
                &self,
                id: ::repo_core::CollectionId,
                principal: ::repo_core::Principal,
            ) -> ::repo_core::RepoResult<Option<::repo_core::AccessLevel>> {
                self.$field
                    .$lookup(|c| access(c, id, principal).map(|(_, _, level)| level))
            }

            fn list_visible(
                &self,
                principal: ::repo_core::Principal,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Collection>> {
                self.$field.$listing(|c| list_visible(c, principal, page))
            }

            fn list_visible_by_cursor(
                &self,
                principal: ::repo_core::Principal,
                page: &::repo_core::CursorRequest,
            ) -> ::repo_core::RepoResult<::repo_core::CursorPage<::repo_core::Collection>> {
                self.$field
                    .$listing(|c| list_visible_by_cursor(c, principal, page))
            }

            fn update(
                &self,
                id: ::repo_core::CollectionId,
                patch: &::repo_core::CollectionPatch,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$transaction(|c| update(c, id, patch))
            }

            fn rename(
                &self,
                id: ::repo_core::CollectionId,
                new_name: &str,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$statement(|c| rename(c, id, new_name))
            }

            fn update_status(
                &self,
                id: ::repo_core::CollectionId,
                status: ::repo_core::CollectionStatus,
                message: Option<&str>,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field
                    .$transition(|c| update_status(c, id, status, message))
            }

            fn update_stats(
                &self,
                id: ::repo_core::CollectionId,
                stats: ::repo_core::CollectionStats,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$statement(|c| update_stats(c, id, stats))
            }

            fn delete(
                &self,
                id: ::repo_core::CollectionId,
                actor: ::repo_core::Principal,
            ) -> ::repo_core::RepoResult<()> {
                self.$field.$transaction(|c| delete(c, id, actor))
            }

            fn due_for_sync(
                &self,
                now: ::repo_core::Timestamp,
                limit: u32,
            ) -> ::repo_core::RepoResult<Vec<::repo_core::Collection>> {
                self.$field.$lookup(|c| due_for_sync(c, now, limit))
            }

            fn pause_sync(
                &self,
                id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$transaction(|c| pause_sync(c, id))
            }

            fn resume_sync(
                &self,
                id: ::repo_core::CollectionId,
                next_run_at: ::repo_core::Timestamp,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field
                    .$transaction(|c| resume_sync(c, id, next_run_at))
            }

            fn record_sync_run(
                &self,
                id: ::repo_core::CollectionId,
                run: &::repo_core::SyncRun,
            ) -> ::repo_core::RepoResult<::repo_core::Collection> {
                self.$field.$transaction(|c| record_sync_run(c, id, run))
            }

            fn grant(
                &self,
                id: ::repo_core::CollectionId,
                grantee: ::repo_core::Grantee,
                level: ::repo_core::AccessLevel,
            ) -> ::repo_core::RepoResult<::repo_core::CollectionPermission> {
                self.$field.$grant(|c| grant(c, id, grantee, level))
            }

            fn revoke_grant(
                &self,
                id: ::repo_core::CollectionId,
                grantee: ::repo_core::Grantee,
            ) -> ::repo_core::RepoResult<bool> {
                self.$field.$statement(|c| revoke_grant(c, id, grantee))
            }

            fn list_grants(
                &self,
                id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<Vec<::repo_core::CollectionPermission>> {
                self.$field.$listing(|c| list_grants(c, id))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_their_parameters_with_the_backend_sigil() {
        for (sigil, other) in [('$', '?'), ('?', '$')] {
            for sql in [
                actor_sql(sigil),
                access_sql(sigil),
                visible_count_sql(sigil),
            ] {
                assert!(!sql.contains(other), "{sql}");
            }
        }
        assert!(actor_sql('?').contains("k.id = ?2"));
        assert!(actor_sql('?').contains("COALESCE(k.user_id, ?1)"));
        assert!(access_sql('$').ends_with("WHERE c.id = $3"));
        assert!(visible_count_sql('$').contains("owner_id = $1"));
    }
}
