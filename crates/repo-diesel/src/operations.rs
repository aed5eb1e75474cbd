//! What both backends share for the `operations` repository:
//! [`operation_repository!`](crate::operation_repository) writes the row types, every
//! query both backends run alike and the `OperationRepository` impl once; each backend
//! expands it in its `operations.rs` over its own `schema::operations`, connection type
//! and [`Codec`](crate::codec::Codec).
//!
//! The rules are repo-core's (`repo_core::operation`): the status machine and what a
//! transition writes (`TransitionPlan`), cancel rights (`Operation::check_cancel`), the
//! meta merge. What differs stays in the backend: `create` (SQLite reads the
//! idempotency key inside `BEGIN IMMEDIATE`; PostgreSQL arbitrates with `ON CONFLICT DO
//! NOTHING` and maps foreign-key violations) and `locked_meta` (PostgreSQL's `FOR
//! UPDATE`).

/// Writes, in the module that expands it, the `operations` row types
/// (`OperationRow`, `InsertOperation`, `TransitionChanges`), the query functions both
/// backends share and `impl OperationRepository for $repo`.
///
/// A macro because the two backends' Diesel types differ (their own `schema`
/// module, connection type and column types) while the code is the same text; the
/// body is plain Diesel.
///
/// The expanding module must have in scope: the `operations` schema module, the
/// backend's `CacheDsl` (`.cached()`), and two functions of its own,
/// `create(&mut Conn, &Operation, &InsertOperation) -> RepoResult<Operation>` (stores
/// the prepared operation; the shared `insert` and `by_idempotency_key` help) and
/// `locked_meta(&mut Conn, OperationUuid) -> RepoResult<Value>` (the current `meta`,
/// locked until the end of the transaction; `NotFound` when there is none).
///
/// Arguments:
/// - `backend`, `connection`, `codec`, `map_error`: the Diesel backend type, the
///   connection type, the backend's `Codec` and its Diesel error mapping;
/// - `impl for Repo<S> where S: Source`: the repository type and its source trait;
/// - `read(s, f) => …`, `run(s, f) => …`, `write(s, f) => …`: how the impl runs the
///   closure `f` on the repository `s`, for reads (a replica may serve), single
///   statements and multi-statement writes;
/// - `atomic`: runs a function that must be atomic in a transaction (SQLite's
///   `BEGIN IMMEDIATE`), or as it is where the source already gave one or one
///   statement suffices ([`as_is`](crate::codec::as_is));
/// - `snapshot`: the same for reads that must see one snapshot (a page and its total);
/// - `access`: `(conn, CollectionId, Principal) -> RepoResult<(Collection, Actor,
///   Option<AccessLevel>)>`, the backend's access check;
/// - `ids_per_statement`: how many ids one `IN (…)` may bind (`usize::MAX` where a
///   list is one array parameter).
#[macro_export]
macro_rules! operation_repository {
    (
        backend: $db:ident,
        connection: $conn:ty,
        codec: $codec:ident,
        map_error: $map_err:path,
        impl for $repo:ty where S: $source:path,
        read($rs:ident, $rf:ident) => $read:expr,
        run($us:ident, $uf:ident) => $run:expr,
        write($ws:ident, $wf:ident) => $write:expr,
        atomic: $atomic:path,
        snapshot: $snapshot:path,
        access: $access:path,
        ids_per_statement: $in_chunk:expr $(,)?
    ) => {
        use ::diesel::prelude::*;
        use ::repo_core::operation::TransitionPlan;
        use $crate::codec::Codec as _;

        type StoredUuid = <$codec as $crate::codec::Codec>::Uuid;
        type StoredTs = <$codec as $crate::codec::Codec>::Timestamp;
        type StoredJson = <$codec as $crate::codec::Codec>::Json;
        type Op = ::repo_core::Operation;
        type OpResult = ::repo_core::RepoResult<::repo_core::Operation>;

        /// An `operations` row as stored.
        #[derive(::diesel::Queryable, ::diesel::Selectable)]
        #[diesel(table_name = operations, check_for_backend($db))]
        struct OperationRow {
            id: i64,
            uuid: StoredUuid,
            collection_id: StoredUuid,
            user_id: i64,
            kind: String,
            status: String,
            task_id: Option<String>,
            idempotency_key: Option<String>,
            config: StoredJson,
            error_message: Option<String>,
            meta: StoredJson,
            created_at: StoredTs,
            started_at: Option<StoredTs>,
            completed_at: Option<StoredTs>,
        }

        impl OperationRow {
            fn into_domain(self) -> OpResult {
                const T: &str = "operations";
                Ok(::repo_core::Operation {
                    id: self.id,
                    uuid: ::repo_core::OperationUuid($codec::read_uuid(T, "uuid", self.uuid)?),
                    collection_id: ::repo_core::CollectionId($codec::read_uuid(
                        T,
                        "collection_id",
                        self.collection_id,
                    )?),
                    user_id: ::repo_core::UserId(self.user_id),
                    kind: $codec::read_enum(T, "kind", &self.kind)?,
                    status: $codec::read_enum(T, "status", &self.status)?,
                    task_id: self.task_id,
                    idempotency_key: self.idempotency_key,
                    config: $codec::read_json(T, "config", self.config)?,
                    error_message: self.error_message,
                    meta: $codec::read_json(T, "meta", self.meta)?,
                    created_at: $codec::read_timestamp(T, "created_at", self.created_at)?,
                    started_at: $codec::read_opt_timestamp(T, "started_at", self.started_at)?,
                    completed_at: $codec::read_opt_timestamp(T, "completed_at", self.completed_at)?,
                })
            }
        }

        /// A new `operations` row (every column given: one statement shape).
        #[derive(::diesel::Insertable)]
        #[diesel(table_name = operations, treat_none_as_default_value = false)]
        struct InsertOperation<'a> {
            uuid: StoredUuid,
            collection_id: StoredUuid,
            user_id: i64,
            kind: &'static str,
            status: &'static str,
            task_id: Option<&'a str>,
            idempotency_key: Option<&'a str>,
            config: <$codec as $crate::codec::Codec>::JsonIn<'a>,
            error_message: Option<&'a str>,
            meta: <$codec as $crate::codec::Codec>::JsonIn<'a>,
            created_at: StoredTs,
            started_at: Option<StoredTs>,
            completed_at: Option<StoredTs>,
        }

        impl<'a> InsertOperation<'a> {
            fn from_domain(op: &'a Op) -> ::repo_core::RepoResult<Self> {
                Ok(Self {
                    uuid: $codec::uuid(op.uuid.0),
                    collection_id: $codec::uuid(op.collection_id.0),
                    user_id: op.user_id.0,
                    kind: op.kind.as_str(),
                    status: op.status.as_str(),
                    task_id: op.task_id.as_deref(),
                    idempotency_key: op.idempotency_key.as_deref(),
                    config: $codec::json_in(&op.config)?,
                    error_message: op.error_message.as_deref(),
                    meta: $codec::json_in(&op.meta)?,
                    created_at: $codec::timestamp(op.created_at),
                    started_at: $codec::opt_timestamp(op.started_at),
                    completed_at: $codec::opt_timestamp(op.completed_at),
                })
            }
        }

        /// The columns a [`TransitionPlan`] sets; `None` leaves a column as it is.
        #[derive(::diesel::AsChangeset)]
        #[diesel(table_name = operations)]
        struct TransitionChanges<'a> {
            status: &'static str,
            started_at: Option<StoredTs>,
            completed_at: Option<StoredTs>,
            error_message: Option<&'a str>,
        }

        impl<'a> TransitionChanges<'a> {
            fn from_domain(plan: &TransitionPlan<'a>) -> Self {
                Self {
                    status: plan.to.as_str(),
                    started_at: $codec::opt_timestamp(plan.started_at),
                    completed_at: $codec::opt_timestamp(plan.completed_at),
                    error_message: plan.error_message,
                }
            }
        }

        fn one(row: Option<OperationRow>, id: ::repo_core::OperationUuid) -> OpResult {
            row.ok_or_else(|| {
                ::repo_core::RepoError::not_found(::repo_core::Entity::Operation, id)
            })?
            .into_domain()
        }

        fn many(rows: Vec<OperationRow>) -> ::repo_core::RepoResult<Vec<Op>> {
            rows.into_iter().map(OperationRow::into_domain).collect()
        }

        fn active_names() -> Vec<&'static str> {
            ::repo_core::OperationStatus::active()
                .into_iter()
                .map(::repo_core::OperationStatus::as_str)
                .collect()
        }

        fn get(conn: &mut $conn, id: ::repo_core::OperationUuid) -> OpResult {
            let row = operations::table
                .filter(operations::uuid.eq($codec::uuid(id.0)))
                .select(OperationRow::as_select())
                .first(conn)
                .optional()
                .map_err($map_err)?;
            one(row, id)
        }

        /// The operation of `op`'s collection that carries `op`'s idempotency key, if
        /// `op` has one.
        fn by_idempotency_key(conn: &mut $conn, op: &Op) -> ::repo_core::RepoResult<Option<Op>> {
            let Some(key) = op.idempotency_key.as_deref() else {
                return Ok(None);
            };
            operations::table
                .filter(operations::collection_id.eq($codec::uuid(op.collection_id.0)))
                .filter(operations::idempotency_key.eq(key))
                .select(OperationRow::as_select())
                .first(conn)
                .optional()
                .map_err($map_err)?
                .map(OperationRow::into_domain)
                .transpose()
        }

        /// Inserts `row`; the caller maps the error (a foreign-key or unique violation).
        fn insert(
            conn: &mut $conn,
            row: &InsertOperation<'_>,
        ) -> ::diesel::QueryResult<OperationRow> {
            ::diesel::insert_into(operations::table)
                .values(row)
                .returning(OperationRow::as_returning())
                .cached()
                .get_result(conn)
        }

        fn get_by_task_id(conn: &mut $conn, task_id: &str) -> OpResult {
            ::repo_core::validate::text(::repo_core::Field::TaskId, task_id)?;
            operations::table
                .filter(operations::task_id.eq(task_id))
                .select(OperationRow::as_select())
                .order((operations::created_at.desc(), operations::id.desc()))
                .first(conn)
                .optional()
                .map_err($map_err)?
                .ok_or_else(|| {
                    ::repo_core::RepoError::not_found(::repo_core::Entity::Operation, task_id)
                })?
                .into_domain()
        }

        fn get_with_access(
            conn: &mut $conn,
            id: ::repo_core::OperationUuid,
            principal: ::repo_core::Principal,
            needed: ::repo_core::AccessLevel,
        ) -> OpResult {
            $snapshot(conn, |c| {
                let op = get(c, id)?;
                let (collection, _, level) = $access(c, op.collection_id, principal)?;
                ::repo_core::require_access(collection.id, level, needed)?;
                Ok(op)
            })
        }

        /// One conditional `UPDATE … WHERE uuid = ? AND status IN (plan.from)`; when
        /// no row changes, a re-read tells `NotFound` from the plan's refusal (inside
        /// the transaction of `atomic`, it reads the state that refused the update).
        fn apply_transition(
            conn: &mut $conn,
            id: ::repo_core::OperationUuid,
            plan: &TransitionPlan<'_>,
        ) -> OpResult {
            let row = if plan.is_possible() {
                ::diesel::update(
                    operations::table
                        .filter(operations::uuid.eq($codec::uuid(id.0)))
                        .filter(operations::status.eq_any(plan.from_names())),
                )
                .set(TransitionChanges::from_domain(plan))
                .returning(OperationRow::as_returning())
                .cached()
                .get_result(conn)
                .optional()
                .map_err($map_err)?
            } else {
                None
            };
            match row {
                Some(row) => row.into_domain(),
                None => Err(plan.refused(get(conn, id)?.status)),
            }
        }

        fn transition(
            conn: &mut $conn,
            id: ::repo_core::OperationUuid,
            to: ::repo_core::OperationStatus,
            error_message: Option<&str>,
        ) -> OpResult {
            let plan = TransitionPlan::new(to, error_message, ::repo_core::now())?;
            $atomic(conn, |c| apply_transition(c, id, &plan))
        }

        fn cancel(
            conn: &mut $conn,
            id: ::repo_core::OperationUuid,
            principal: ::repo_core::Principal,
        ) -> OpResult {
            $atomic(conn, |c| {
                let op = get(c, id)?;
                let (collection, actor, level) = $access(c, op.collection_id, principal)?;
                op.check_cancel(&actor, &collection, level)?;
                let to = ::repo_core::OperationStatus::Cancelled;
                apply_transition(c, id, &TransitionPlan::new(to, None, ::repo_core::now())?)
            })
        }

        fn set_task_id(
            conn: &mut $conn,
            id: ::repo_core::OperationUuid,
            task_id: &str,
        ) -> OpResult {
            ::repo_core::validate::text(::repo_core::Field::TaskId, task_id)?;
            let row =
                ::diesel::update(operations::table.filter(operations::uuid.eq($codec::uuid(id.0))))
                    .set(operations::task_id.eq(task_id))
                    .returning(OperationRow::as_returning())
                    .get_result(conn)
                    .optional()
                    .map_err($map_err)?;
            one(row, id)
        }

        fn filtered(filter: &::repo_core::OperationFilter) -> operations::BoxedQuery<'static, $db> {
            let mut query = operations::table.into_boxed();
            if !filter.statuses.is_empty() {
                let statuses: Vec<&'static str> =
                    filter.statuses.iter().map(|s| s.as_str()).collect();
                query = query.filter(operations::status.eq_any(statuses));
            }
            if let Some(kind) = filter.kind {
                query = query.filter(operations::kind.eq(kind.as_str()));
            }
            query
        }

        /// A page of `base` (newest first) and the total.
        fn page_of(
            conn: &mut $conn,
            base: impl Fn() -> operations::BoxedQuery<'static, $db>,
            page: ::repo_core::PageRequest,
        ) -> ::repo_core::RepoResult<::repo_core::Page<Op>> {
            $snapshot(conn, |c| {
                let rows = base()
                    .select(OperationRow::as_select())
                    .order((operations::created_at.desc(), operations::id.desc()))
                    .limit(page.limit_i64())
                    .offset(page.offset_i64())
                    .load(c)
                    .map_err($map_err)?;
                let total: i64 = base().count().get_result(c).map_err($map_err)?;
                Ok(::repo_core::Page {
                    items: many(rows)?,
                    total: $crate::codec::count(total),
                })
            })
        }

        /// The page of `base` (newest first) after `page.after`: keyset on
        /// `(created_at, id)`.
        fn cursor_page_of(
            conn: &mut $conn,
            base: operations::BoxedQuery<'static, $db>,
            page: &::repo_core::CursorRequest,
        ) -> ::repo_core::RepoResult<::repo_core::CursorPage<Op>> {
            let mut query = base;
            if let Some(after) = &page.after {
                let (at, id) = (after.created_at(), after.int_id()?);
                query = query.filter(
                    operations::created_at
                        .lt($codec::timestamp(at))
                        .or(operations::created_at
                            .eq($codec::timestamp(at))
                            .and(operations::id.lt(id))),
                );
            }
            let rows = query
                .select(OperationRow::as_select())
                .order((operations::created_at.desc(), operations::id.desc()))
                .limit(page.fetch_i64())
                .load(conn)
                .map_err($map_err)?;
            Ok(page.page(many(rows)?, ::repo_core::Operation::cursor))
        }

        fn active_for_collection(
            conn: &mut $conn,
            id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<Vec<Op>> {
            let rows = operations::table
                .filter(operations::collection_id.eq($codec::uuid(id.0)))
                .filter(operations::status.eq_any(active_names()))
                .select(OperationRow::as_select())
                .order((operations::created_at.desc(), operations::id.desc()))
                .load(conn)
                .map_err($map_err)?;
            many(rows)
        }

        fn stuck(
            conn: &mut $conn,
            older_than: ::repo_core::Timestamp,
        ) -> ::repo_core::RepoResult<Vec<Op>> {
            let rows = operations::table
                .filter(operations::status.eq_any(active_names()))
                .filter(operations::created_at.lt($codec::timestamp(older_than)))
                .select(OperationRow::as_select())
                .order((operations::created_at.asc(), operations::id.asc()))
                .load(conn)
                .map_err($map_err)?;
            many(rows)
        }

        /// The `failed` transition's plan applied to every listed operation still in
        /// one of its `from` states (the active ones).
        fn mark_failed_many(
            conn: &mut $conn,
            ids: &[::repo_core::OperationUuid],
            message: &str,
        ) -> ::repo_core::RepoResult<u64> {
            let to = ::repo_core::OperationStatus::Failed;
            let plan = TransitionPlan::new(to, Some(message), ::repo_core::now())?;
            if ids.is_empty() {
                return Ok(0);
            }
            $atomic(conn, |c| {
                let mut moved = 0;
                for chunk in ids.chunks($in_chunk) {
                    let uuids: Vec<StoredUuid> =
                        chunk.iter().map(|id| $codec::uuid(id.0)).collect();
                    let n = ::diesel::update(
                        operations::table
                            .filter(operations::uuid.eq_any(uuids))
                            .filter(operations::status.eq_any(plan.from_names())),
                    )
                    .set(TransitionChanges::from_domain(&plan))
                    .execute(c)
                    .map_err($map_err)?;
                    moved += $crate::codec::affected(n);
                }
                Ok(moved)
            })
        }

        fn merge_meta(
            conn: &mut $conn,
            id: ::repo_core::OperationUuid,
            patch: &::serde_json::Value,
        ) -> OpResult {
            ::repo_core::validate::json_object(::repo_core::Field::Meta, patch)?;
            $atomic(conn, |c| {
                let meta = ::repo_core::operation::merge_meta(locked_meta(c, id)?, patch);
                let row = ::diesel::update(
                    operations::table.filter(operations::uuid.eq($codec::uuid(id.0))),
                )
                .set(operations::meta.eq($codec::json(&meta)?))
                .returning(OperationRow::as_returning())
                .get_result(c)
                .optional()
                .map_err($map_err)?;
                one(row, id)
            })
        }

        impl<S: $source> ::repo_core::OperationRepository for $repo {
            fn create(&self, new: &::repo_core::NewOperation) -> OpResult {
                let op = new.prepare()?;
                let row = InsertOperation::from_domain(&op)?;
                let ($us, $uf) = (self, |c: &mut $conn| create(c, &op, &row));
                $run
            }

            fn get(&self, uuid: ::repo_core::OperationUuid) -> OpResult {
                let ($rs, $rf) = (self, |c: &mut $conn| get(c, uuid));
                $read
            }

            fn get_by_task_id(&self, task_id: &str) -> OpResult {
                let ($rs, $rf) = (self, |c: &mut $conn| get_by_task_id(c, task_id));
                $read
            }

            fn get_with_access(
                &self,
                uuid: ::repo_core::OperationUuid,
                principal: ::repo_core::Principal,
                needed: ::repo_core::AccessLevel,
            ) -> OpResult {
                let ($rs, $rf) = (self, |c: &mut $conn| {
                    get_with_access(c, uuid, principal, needed)
                });
                $read
            }

            fn transition(
                &self,
                uuid: ::repo_core::OperationUuid,
                to: ::repo_core::OperationStatus,
                error_message: Option<&str>,
            ) -> OpResult {
                let ($us, $uf) = (self, |c: &mut $conn| transition(c, uuid, to, error_message));
                $run
            }

            fn cancel(
                &self,
                uuid: ::repo_core::OperationUuid,
                actor: ::repo_core::Principal,
            ) -> OpResult {
                let ($ws, $wf) = (self, |c: &mut $conn| cancel(c, uuid, actor));
                $write
            }

            fn set_task_id(&self, uuid: ::repo_core::OperationUuid, task_id: &str) -> OpResult {
                let ($us, $uf) = (self, |c: &mut $conn| set_task_id(c, uuid, task_id));
                $run
            }

            fn list_for_collection(
                &self,
                collection_id: ::repo_core::CollectionId,
                filter: &::repo_core::OperationFilter,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::Page<Op>> {
                let id = collection_id.0;
                let base =
                    || filtered(filter).filter(operations::collection_id.eq($codec::uuid(id)));
                let ($rs, $rf) = (self, |c: &mut $conn| page_of(c, base, page));
                $read
            }

            fn list_for_user(
                &self,
                user_id: ::repo_core::UserId,
                filter: &::repo_core::OperationFilter,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::Page<Op>> {
                let base = || filtered(filter).filter(operations::user_id.eq(user_id.0));
                let ($rs, $rf) = (self, |c: &mut $conn| page_of(c, base, page));
                $read
            }

            fn list_for_collection_by_cursor(
                &self,
                collection_id: ::repo_core::CollectionId,
                filter: &::repo_core::OperationFilter,
                page: &::repo_core::CursorRequest,
            ) -> ::repo_core::RepoResult<::repo_core::CursorPage<Op>> {
                let id = collection_id.0;
                let base =
                    || filtered(filter).filter(operations::collection_id.eq($codec::uuid(id)));
                let ($rs, $rf) = (self, |c: &mut $conn| cursor_page_of(c, base(), page));
                $read
            }

            fn list_for_user_by_cursor(
                &self,
                user_id: ::repo_core::UserId,
                filter: &::repo_core::OperationFilter,
                page: &::repo_core::CursorRequest,
            ) -> ::repo_core::RepoResult<::repo_core::CursorPage<Op>> {
                let base = || filtered(filter).filter(operations::user_id.eq(user_id.0));
                let ($rs, $rf) = (self, |c: &mut $conn| cursor_page_of(c, base(), page));
                $read
            }

            fn active_for_collection(
                &self,
                collection_id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<Vec<Op>> {
                let ($rs, $rf) = (self, |c: &mut $conn| {
                    active_for_collection(c, collection_id)
                });
                $read
            }

            fn stuck(
                &self,
                older_than: ::repo_core::Timestamp,
            ) -> ::repo_core::RepoResult<Vec<Op>> {
                let ($rs, $rf) = (self, |c: &mut $conn| stuck(c, older_than));
                $read
            }

            fn mark_failed_many(
                &self,
                uuids: &[::repo_core::OperationUuid],
                message: &str,
            ) -> ::repo_core::RepoResult<u64> {
                let ($us, $uf) = (self, |c: &mut $conn| mark_failed_many(c, uuids, message));
                $run
            }

            fn merge_meta(
                &self,
                uuid: ::repo_core::OperationUuid,
                patch: &::serde_json::Value,
            ) -> OpResult {
                let ($ws, $wf) = (self, |c: &mut $conn| merge_meta(c, uuid, patch));
                $write
            }
        }
    };
}
