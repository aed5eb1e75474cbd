//! What both backends share for the `documents` repository: the row types with their
//! conversions, and the statements both run the same way.
//!
//! Diesel's table types differ between the backends (each has its own `schema`
//! module, and stores UUIDs, timestamps and JSON in other SQL types), so these items
//! are written once as macros that each backend expands in its `documents` module,
//! with the backend's [`Codec`](crate::codec::Codec) and stored types.
//! The expanding module must have its schema's `documents` table module in scope.

use repo_core::document::{
    batch_lookups, prepare_batch, InsertedDocuments, RegistrationPlan, StoredDocuments,
};
use repo_core::{CollectionId, Document, DocumentStats, NewDocument, Registered, RepoResult};

/// Defines `DocumentRow` (a `documents` row as read: `Queryable`, `QueryableByName`,
/// `Selectable`) with `into_domain`, and `many` (rows into documents).
///
/// `backend` is Diesel's backend type, `codec` the backend's
/// [`Codec`](crate::codec::Codec); `uuid`, `timestamp` and `json` are
/// its stored types (the codec's `Uuid`, `Timestamp` and `Json`).
#[macro_export]
macro_rules! document_row {
    (backend: $backend:ty, codec: $codec:ty, uuid: $uuid:ty, timestamp: $ts:ty, json: $json:ty $(,)?) => {
        /// A `documents` row as stored.
        #[derive(::diesel::Queryable, ::diesel::QueryableByName, ::diesel::Selectable)]
        #[diesel(table_name = documents, check_for_backend($backend))]
        pub(crate) struct DocumentRow {
            id: $uuid,
            collection_id: $uuid,
            file_path: String,
            file_name: String,
            file_size: i64,
            mime_type: Option<String>,
            content_hash: String,
            uri: Option<String>,
            status: String,
            error_message: Option<String>,
            error_category: Option<String>,
            retry_count: i32,
            chunk_count: i32,
            meta: $json,
            last_seen_at: Option<$ts>,
            is_stale: bool,
            created_at: $ts,
            updated_at: $ts,
        }

        impl DocumentRow {
            /// The document of this row; a value the codec cannot read is a corrupt row.
            pub(crate) fn into_domain(self) -> ::repo_core::RepoResult<::repo_core::Document> {
                use $crate::codec::Codec as _;
                type C = $codec;
                const T: &str = "documents";
                Ok(::repo_core::Document {
                    id: ::repo_core::DocumentId(C::read_uuid(T, "id", self.id)?),
                    collection_id: ::repo_core::CollectionId(C::read_uuid(
                        T,
                        "collection_id",
                        self.collection_id,
                    )?),
                    file_path: self.file_path,
                    file_name: self.file_name,
                    file_size: self.file_size,
                    mime_type: self.mime_type,
                    content_hash: self.content_hash,
                    uri: self.uri,
                    status: C::read_enum(T, "status", &self.status)?,
                    error_message: self.error_message,
                    error_category: C::read_opt_enum(
                        T,
                        "error_category",
                        self.error_category.as_deref(),
                    )?,
                    retry_count: self.retry_count,
                    chunk_count: self.chunk_count,
                    meta: C::read_json(T, "meta", self.meta)?,
                    last_seen_at: C::read_opt_timestamp(T, "last_seen_at", self.last_seen_at)?,
                    is_stale: self.is_stale,
                    created_at: C::read_timestamp(T, "created_at", self.created_at)?,
                    updated_at: C::read_timestamp(T, "updated_at", self.updated_at)?,
                })
            }
        }

        /// The documents of `rows`.
        fn many(rows: Vec<DocumentRow>) -> ::repo_core::RepoResult<Vec<::repo_core::Document>> {
            rows.into_iter().map(DocumentRow::into_domain).collect()
        }
    };
}

/// Defines `$name<'a>`, a document to insert into `$table` (a table with the columns
/// of `documents`), with `from_domain`. Every column is bound, `None` as NULL, never
/// DEFAULT (`treat_none_as_default_value = false`): a slice of rows is then one
/// multi-row `INSERT`, and PostgreSQL's binary `COPY` gets every column.
///
/// `codec`, `uuid` and `timestamp` as for [`document_row!`].
#[macro_export]
macro_rules! insert_document {
    ($(#[$meta:meta])* $name:ident, table: $table:ident, codec: $codec:ty, uuid: $uuid:ty, timestamp: $ts:ty $(,)?) => {
        $(#[$meta])*
        #[derive(::diesel::Insertable)]
        #[diesel(table_name = $table, treat_none_as_default_value = false)]
        pub(crate) struct $name<'a> {
            id: $uuid,
            collection_id: $uuid,
            file_path: &'a str,
            file_name: &'a str,
            file_size: i64,
            mime_type: Option<&'a str>,
            content_hash: &'a str,
            uri: Option<&'a str>,
            status: &'static str,
            error_message: Option<&'a str>,
            error_category: Option<&'static str>,
            retry_count: i32,
            chunk_count: i32,
            meta: <$codec as $crate::codec::Codec>::JsonIn<'a>,
            last_seen_at: Option<$ts>,
            is_stale: bool,
            created_at: $ts,
            updated_at: $ts,
        }

        impl<'a> $name<'a> {
            /// The rows of `docs`.
            pub(crate) fn from_domain_all(
                docs: &[&'a ::repo_core::Document],
            ) -> ::repo_core::RepoResult<Vec<Self>> {
                docs.iter().map(|d| Self::from_domain(d)).collect()
            }

            /// The row of `d`.
            pub(crate) fn from_domain(d: &'a ::repo_core::Document) -> ::repo_core::RepoResult<Self> {
                use $crate::codec::Codec as _;
                type C = $codec;
                // A prepared document carries one instant three times: convert it once.
                let created_at = C::timestamp(d.created_at);
                let same = |t: ::repo_core::Timestamp| {
                    if t == d.created_at {
                        created_at.clone()
                    } else {
                        C::timestamp(t)
                    }
                };
                Ok(Self {
                    id: C::uuid(d.id.0),
                    collection_id: C::uuid(d.collection_id.0),
                    file_path: &d.file_path,
                    file_name: &d.file_name,
                    file_size: d.file_size,
                    mime_type: d.mime_type.as_deref(),
                    content_hash: &d.content_hash,
                    uri: d.uri.as_deref(),
                    status: d.status.as_str(),
                    error_message: d.error_message.as_deref(),
                    error_category: d.error_category.map(|c| c.as_str()),
                    retry_count: d.retry_count,
                    chunk_count: d.chunk_count,
                    meta: C::json_in(&d.meta)?,
                    last_seen_at: d.last_seen_at.map(same),
                    is_stale: d.is_stale,
                    updated_at: same(d.updated_at),
                    created_at,
                })
            }
        }
    };
}

/// Defines the statements both backends run alike on `documents`, as functions over
/// `&mut $conn` (none opens a transaction: the caller chooses):
///
/// - `StatusChanges` (the `SET` of a status change), `update_status`,
///   `update_status_many`;
/// - `one`, `get`, `find_by_hash`, `get_by_hash`, `get_by_uri`, `uri_is_taken`;
/// - `list_by_collection` (failed first, then newest), `find_by_meta` and
///   `newest_page`;
/// - `reset_failed_for_retry`, `mark_seen`, `mark_unseen_stale`, `stats`, `delete`.
///
/// `map_err` maps a Diesel error; `ids_per_statement` is how many ids one statement
/// of `update_status_many` and `mark_seen` takes (`IN (…)` under SQLite's bind limit,
/// or a single `= ANY($1)` array on PostgreSQL); `ids_transaction` runs those
/// statements once the list is known not to be empty (a write transaction where there
/// may be several, [`without_transaction`] where there is one). The rest as for [`document_row!`], which must be expanded in the same
/// module. `stats` runs `stats_sql` (the per-state [`StatusTotals`] of the
/// collection bound as `uuid_sql`) after `require_collection`; `find_by_meta` pages
/// the query of the backend's own `meta_query(collection_id, filter)` (a
/// `RepoResult<documents::BoxedQuery<'q, backend>>` of the collection's documents
/// matching the checked filter).
#[macro_export]
macro_rules! document_statements {
    (
        backend: $backend:ty,
        conn: $conn:ty,
        codec: $codec:ty,
        uuid: $uuid:ty,
        timestamp: $ts:ty,
        map_err: $map_err:path,
        ids_per_statement: $ids_per_statement:expr,
        ids_transaction: $ids_transaction:path,
        uuid_sql: $uuid_sql:ty,
        require_collection: $require_collection:path,
        stats_sql: $stats_sql:expr $(,)?
    ) => {
        /// The columns a status change sets: `error_message` and `error_category` are
        /// always written (`Some(None)` clears them), `chunk_count` only when given.
        #[derive(::diesel::AsChangeset)]
        #[diesel(table_name = documents)]
        pub(crate) struct StatusChanges<'a> {
            status: &'static str,
            error_message: Option<Option<&'a str>>,
            error_category: Option<Option<&'static str>>,
            chunk_count: Option<i32>,
            updated_at: $ts,
        }

        impl<'a> StatusChanges<'a> {
            /// Bind parameters of the `SET` clause at most.
            #[allow(dead_code)]
            const BINDS: usize = 5;

            /// The changes of a valid `update`.
            fn new(update: &'a ::repo_core::DocumentStatusUpdate) -> ::repo_core::RepoResult<Self> {
                use $crate::codec::Codec as _;
                update.validate()?;
                Ok(Self {
                    status: update.status.as_str(),
                    error_message: Some(update.error_message.as_deref()),
                    error_category: Some(update.error_category.map(|c| c.as_str())),
                    chunk_count: update.chunk_count,
                    updated_at: <$codec>::timestamp(::repo_core::now()),
                })
            }
        }

        /// The document of `row`, or `NotFound { entity: Entity::Document, key }`.
        fn one(
            row: Option<DocumentRow>,
            key: impl ::std::fmt::Display,
        ) -> ::repo_core::RepoResult<::repo_core::Document> {
            row.ok_or_else(|| {
                ::repo_core::RepoError::not_found(::repo_core::Entity::Document, key)
            })?
            .into_domain()
        }

        /// The document with this id, or `NotFound { entity: Entity::Document }`.
        pub(crate) fn get(
            conn: &mut $conn,
            id: ::repo_core::DocumentId,
        ) -> ::repo_core::RepoResult<::repo_core::Document> {
            use $crate::codec::Codec as _;
            let row = documents::table
                .find(<$codec>::uuid(id.0))
                .select(DocumentRow::as_select())
                .get_result(conn)
                .optional()
                .map_err($map_err)?;
            one(row, id)
        }

        /// The row of the collection with this content hash, if any.
        fn find_by_hash(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            content_hash: &str,
        ) -> ::repo_core::RepoResult<Option<DocumentRow>> {
            use $crate::codec::Codec as _;
            documents::table
                .filter(documents::collection_id.eq(<$codec>::uuid(collection_id.0)))
                .filter(documents::content_hash.eq(content_hash))
                .select(DocumentRow::as_select())
                .get_result(conn)
                .optional()
                .map_err($map_err)
        }

        fn get_by_hash(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            content_hash: &str,
        ) -> ::repo_core::RepoResult<::repo_core::Document> {
            ::repo_core::validate::text(::repo_core::Field::ContentHash, content_hash)?;
            let row = find_by_hash(conn, collection_id, content_hash)?;
            one(row, content_hash)
        }

        fn get_by_uri(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            uri: &str,
        ) -> ::repo_core::RepoResult<::repo_core::Document> {
            use $crate::codec::Codec as _;
            ::repo_core::validate::text(::repo_core::Field::Uri, uri)?;
            let row = documents::table
                .filter(documents::collection_id.eq(<$codec>::uuid(collection_id.0)))
                .filter(documents::uri.eq(uri))
                .select(DocumentRow::as_select())
                .get_result(conn)
                .optional()
                .map_err($map_err)?;
            one(row, uri)
        }

        /// The documents of a collection that pass `filter`.
        fn filtered(
            collection_id: ::repo_core::CollectionId,
            filter: &::repo_core::DocumentFilter,
        ) -> documents::BoxedQuery<'static, $backend> {
            use $crate::codec::Codec as _;
            let mut query = documents::table
                .filter(documents::collection_id.eq(<$codec>::uuid(collection_id.0)))
                .into_boxed();
            if !filter.statuses.is_empty() {
                let statuses: Vec<&'static str> =
                    filter.statuses.iter().map(|s| s.as_str()).collect();
                query = query.filter(documents::status.eq_any(statuses));
            }
            if let Some(stale) = filter.is_stale {
                query = query.filter(documents::is_stale.eq(stale));
            }
            query
        }

        /// The documents listing, failed first, then newest: two parts read in order
        /// from their indexes (`documents_collection_status_idx` for the failed
        /// documents, `documents_collection_created_at_idx` for the others), so a page
        /// reads its own rows instead of sorting the collection.
        fn list_by_collection(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            filter: &::repo_core::DocumentFilter,
            page: ::repo_core::PageRequest,
        ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Document>> {
            use $crate::codec::count;
            let failed = ::repo_core::DocumentStatus::Failed.as_str();
            let part = |is_failed: bool| {
                let query = filtered(collection_id, filter);
                if is_failed {
                    query.filter(documents::status.eq(failed))
                } else {
                    query.filter(documents::status.ne(failed))
                }
            };
            let failed_total: i64 = part(true).count().get_result(conn).map_err($map_err)?;
            let others_total: i64 = part(false).count().get_result(conn).map_err($map_err)?;
            let (first, second) = page.split(count(failed_total));
            let mut rows = Vec::new();
            for (is_failed, slice) in [(true, first), (false, second)] {
                let Some(slice) = slice else { continue };
                rows.extend(
                    part(is_failed)
                        .select(DocumentRow::as_select())
                        .order((documents::created_at.desc(), documents::id.desc()))
                        .limit(slice.limit_i64())
                        .offset(slice.offset_i64())
                        .load(conn)
                        .map_err($map_err)?,
                );
            }
            Ok(::repo_core::Page {
                items: many(rows)?,
                total: count(failed_total) + count(others_total),
            })
        }

        /// A page of the documents `query()` selects, newest first, and their total.
        fn newest_page<'q>(
            conn: &mut $conn,
            query: impl Fn() -> ::repo_core::RepoResult<documents::BoxedQuery<'q, $backend>>,
            page: ::repo_core::PageRequest,
        ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Document>> {
            let rows = query()?
                .select(DocumentRow::as_select())
                .order((documents::created_at.desc(), documents::id.desc()))
                .limit(page.limit_i64())
                .offset(page.offset_i64())
                .load(conn)
                .map_err($map_err)?;
            let total: i64 = query()?.count().get_result(conn).map_err($map_err)?;
            Ok(::repo_core::Page {
                items: many(rows)?,
                total: $crate::codec::count(total),
            })
        }

        /// The documents whose `meta` matches `filter` (checked by
        /// [`repo_core::document::meta_filter`]), newest first.
        fn find_by_meta(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            filter: &::serde_json::Value,
            page: ::repo_core::PageRequest,
        ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Document>> {
            ::repo_core::document::meta_filter(filter)?;
            newest_page(conn, || meta_query(collection_id, filter), page)
        }

        /// Counts by state, bytes and chunks of a collection.
        fn stats(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<::repo_core::DocumentStats> {
            use $crate::codec::Codec as _;
            $require_collection(conn, collection_id)?;
            let rows: Vec<$crate::documents::StatusTotals> = ::diesel::sql_query($stats_sql)
                .bind::<$uuid_sql, _>(<$codec>::uuid(collection_id.0))
                .load(conn)
                .map_err($map_err)?;
            Ok($crate::documents::document_stats(rows))
        }

        fn update_status(
            conn: &mut $conn,
            id: ::repo_core::DocumentId,
            update: &::repo_core::DocumentStatusUpdate,
        ) -> ::repo_core::RepoResult<::repo_core::Document> {
            use $crate::codec::Codec as _;
            let changes = StatusChanges::new(update)?;
            let row = ::diesel::update(documents::table.find(<$codec>::uuid(id.0)))
                .set(&changes)
                .returning(DocumentRow::as_returning())
                .get_result(conn)
                .optional()
                .map_err($map_err)?;
            one(row, id)
        }

        /// Changes the state of the listed documents; returns how many rows changed.
        fn update_status_many(
            conn: &mut $conn,
            ids: &[::repo_core::DocumentId],
            update: &::repo_core::DocumentStatusUpdate,
        ) -> ::repo_core::RepoResult<u64> {
            use $crate::codec::Codec as _;
            let changes = StatusChanges::new(update)?;
            if ids.is_empty() {
                return Ok(0);
            }
            $ids_transaction(conn, |conn| {
                let mut changed = 0;
                for part in ids.chunks(($ids_per_statement).max(1)) {
                    let keys: Vec<$uuid> = part.iter().map(|id| <$codec>::uuid(id.0)).collect();
                    let n = ::diesel::update(documents::table.filter(documents::id.eq_any(&keys)))
                        .set(&changes)
                        .execute(conn)
                        .map_err($map_err)?;
                    changed += $crate::codec::affected(n);
                }
                Ok(changed)
            })
        }

        fn reset_failed_for_retry(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<u64> {
            use ::repo_core::DocumentStatus;
            use $crate::codec::Codec as _;
            let n = ::diesel::update(
                documents::table
                    .filter(documents::collection_id.eq(<$codec>::uuid(collection_id.0)))
                    .filter(documents::status.eq(DocumentStatus::Failed.as_str())),
            )
            .set((
                documents::status.eq(DocumentStatus::Pending.as_str()),
                documents::retry_count.eq(documents::retry_count + 1),
                documents::error_message.eq(None::<String>),
                documents::error_category.eq(None::<String>),
                documents::updated_at.eq(<$codec>::timestamp(::repo_core::now())),
            ))
            .execute(conn)
            .map_err($map_err)?;
            Ok($crate::codec::affected(n))
        }

        /// Sets `last_seen_at = at` and `is_stale = false` on the listed documents.
        fn mark_seen(
            conn: &mut $conn,
            ids: &[::repo_core::DocumentId],
            at: ::repo_core::Timestamp,
        ) -> ::repo_core::RepoResult<u64> {
            use $crate::codec::Codec as _;
            if ids.is_empty() {
                return Ok(0);
            }
            let at = <$codec>::timestamp(at);
            $ids_transaction(conn, |conn| {
                let mut changed = 0;
                for part in ids.chunks(($ids_per_statement).max(1)) {
                    let keys: Vec<$uuid> = part.iter().map(|id| <$codec>::uuid(id.0)).collect();
                    let n = ::diesel::update(documents::table.filter(documents::id.eq_any(&keys)))
                        .set((
                            documents::last_seen_at.eq(&at),
                            documents::is_stale.eq(false),
                        ))
                        .execute(conn)
                        .map_err($map_err)?;
                    changed += $crate::codec::affected(n);
                }
                Ok(changed)
            })
        }

        /// Whether a document of the collection has this URI.
        fn uri_is_taken(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            uri: &str,
        ) -> ::repo_core::RepoResult<bool> {
            use $crate::codec::Codec as _;
            ::diesel::select(::diesel::dsl::exists(
                documents::table
                    .filter(documents::collection_id.eq(<$codec>::uuid(collection_id.0)))
                    .filter(documents::uri.eq(uri)),
            ))
            .get_result(conn)
            .map_err($map_err)
        }

        /// Marks stale the fresh documents of the collection last seen before
        /// `seen_before`, or never (SQLite's fixed-width timestamp text sorts as time).
        fn mark_unseen_stale(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            seen_before: ::repo_core::Timestamp,
        ) -> ::repo_core::RepoResult<u64> {
            use $crate::codec::Codec as _;
            let n = ::diesel::update(
                documents::table
                    .filter(documents::collection_id.eq(<$codec>::uuid(collection_id.0)))
                    .filter(documents::is_stale.eq(false))
                    .filter(
                        documents::last_seen_at
                            .is_null()
                            .or(documents::last_seen_at.lt(<$codec>::timestamp(seen_before))),
                    ),
            )
            .set(documents::is_stale.eq(true))
            .execute(conn)
            .map_err($map_err)?;
            Ok($crate::codec::affected(n))
        }

        /// Deletes a document; its chunks go by the foreign key's `ON DELETE CASCADE`.
        fn delete(conn: &mut $conn, id: ::repo_core::DocumentId) -> ::repo_core::RepoResult<()> {
            use $crate::codec::Codec as _;
            let n = ::diesel::delete(documents::table.find(<$codec>::uuid(id.0)))
                .execute(conn)
                .map_err($map_err)?;
            if n == 0 {
                return Err(::repo_core::RepoError::not_found(
                    ::repo_core::Entity::Document,
                    id,
                ));
            }
            Ok(())
        }
    };
}

/// Defines `impl DocumentRepository for $ty`, each method a call of the function of
/// the same name and arguments in the expanding module (those of
/// [`document_statements!`] and the backend's own), run through the connection source
/// `self.$src` with the method named for it: `register: write` runs
/// `self.$src.write(|c| register(c, new))`. The backend chooses, per method, how it
/// runs (a plain call, a read or a write transaction).
#[macro_export]
macro_rules! document_repository {
    (
        impl<$s:ident: $bound:path> for $ty:ty, source: $src:tt;
        register: $register:ident,
        register_many: $register_many:ident,
        get: $get:ident,
        get_by_hash: $get_by_hash:ident,
        get_by_uri: $get_by_uri:ident,
        list_by_collection: $list_by_collection:ident,
        find_by_meta: $find_by_meta:ident,
        update_status: $update_status:ident,
        update_status_many: $update_status_many:ident,
        reset_failed_for_retry: $reset_failed_for_retry:ident,
        mark_seen: $mark_seen:ident,
        mark_unseen_stale: $mark_unseen_stale:ident,
        stats: $stats:ident,
        delete: $delete:ident $(,)?
    ) => {
        impl<$s: $bound> ::repo_core::DocumentRepository for $ty {
            fn register(
                &self,
                new: &::repo_core::NewDocument,
            ) -> ::repo_core::RepoResult<::repo_core::Registered> {
                self.$src.$register(|c| register(c, new))
            }

            fn register_many(
                &self,
                batch: &[::repo_core::NewDocument],
            ) -> ::repo_core::RepoResult<Vec<::repo_core::Registered>> {
                self.$src.$register_many(|c| register_many(c, batch))
            }

            fn get(
                &self,
                id: ::repo_core::DocumentId,
            ) -> ::repo_core::RepoResult<::repo_core::Document> {
                self.$src.$get(|c| get(c, id))
            }

            fn get_by_hash(
                &self,
                collection_id: ::repo_core::CollectionId,
                content_hash: &str,
            ) -> ::repo_core::RepoResult<::repo_core::Document> {
                self.$src
                    .$get_by_hash(|c| get_by_hash(c, collection_id, content_hash))
            }

            fn get_by_uri(
                &self,
                collection_id: ::repo_core::CollectionId,
                uri: &str,
            ) -> ::repo_core::RepoResult<::repo_core::Document> {
                self.$src.$get_by_uri(|c| get_by_uri(c, collection_id, uri))
            }

            fn list_by_collection(
                &self,
                collection_id: ::repo_core::CollectionId,
                filter: &::repo_core::DocumentFilter,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Document>> {
                self.$src
                    .$list_by_collection(|c| list_by_collection(c, collection_id, filter, page))
            }

            fn find_by_meta(
                &self,
                collection_id: ::repo_core::CollectionId,
                filter: &::serde_json::Value,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Document>> {
                self.$src
                    .$find_by_meta(|c| find_by_meta(c, collection_id, filter, page))
            }

            fn update_status(
                &self,
                id: ::repo_core::DocumentId,
                update: &::repo_core::DocumentStatusUpdate,
            ) -> ::repo_core::RepoResult<::repo_core::Document> {
                self.$src.$update_status(|c| update_status(c, id, update))
            }

            fn update_status_many(
                &self,
                ids: &[::repo_core::DocumentId],
                update: &::repo_core::DocumentStatusUpdate,
            ) -> ::repo_core::RepoResult<u64> {
                self.$src
                    .$update_status_many(|c| update_status_many(c, ids, update))
            }

            fn reset_failed_for_retry(
                &self,
                collection_id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<u64> {
                self.$src
                    .$reset_failed_for_retry(|c| reset_failed_for_retry(c, collection_id))
            }

            fn mark_seen(
                &self,
                ids: &[::repo_core::DocumentId],
                at: ::repo_core::Timestamp,
            ) -> ::repo_core::RepoResult<u64> {
                self.$src.$mark_seen(|c| mark_seen(c, ids, at))
            }

            fn mark_unseen_stale(
                &self,
                collection_id: ::repo_core::CollectionId,
                seen_before: ::repo_core::Timestamp,
            ) -> ::repo_core::RepoResult<u64> {
                self.$src
                    .$mark_unseen_stale(|c| mark_unseen_stale(c, collection_id, seen_before))
            }

            fn stats(
                &self,
                collection_id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<::repo_core::DocumentStats> {
                self.$src.$stats(|c| stats(c, collection_id))
            }

            fn delete(&self, id: ::repo_core::DocumentId) -> ::repo_core::RepoResult<()> {
                self.$src.$delete(|c| delete(c, id))
            }
        }
    };
}

/// `register_many`, the same on both backends: what the core
/// plans on is read (every collection must exist, a missing one reported at its first
/// item; then the stored documents with a hash or URI of the batch), the plan's new
/// rows are written, rows another transaction inserted meanwhile are read back, and
/// the core answers one [`Registered`] per item. The backend gives the statements:
///
/// - `require_collection`: `NotFound { entity: Entity::Collection }` unless it exists;
/// - `read_stored`: adds to the stored documents those of one collection with one of
///   the hashes or (given) URIs;
/// - `insert`: writes the new documents, skipping any whose hash is stored
///   meanwhile, and says which it wrote;
/// - `uri_is_taken`: whether a document of the collection has the URI.
pub fn register_batch<C>(
    conn: &mut C,
    batch: &[NewDocument],
    mut require_collection: impl FnMut(&mut C, CollectionId) -> RepoResult<()>,
    mut read_stored: impl FnMut(
        &mut C,
        CollectionId,
        &[&str],
        &[&str],
        &mut StoredDocuments,
    ) -> RepoResult<()>,
    insert: impl FnOnce(&mut C, &[&Document]) -> RepoResult<InsertedDocuments>,
    uri_is_taken: impl FnOnce(&mut C, CollectionId, &str) -> RepoResult<bool>,
) -> RepoResult<Vec<Registered>> {
    let docs = prepare_batch(batch)?;
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let lookups = batch_lookups(&docs);
    for lookup in &lookups {
        require_collection(conn, lookup.collection_id)
            .map_err(|e| e.for_item(lookup.first_item))?;
    }
    let mut stored = StoredDocuments::default();
    for lookup in &lookups {
        let (hashes, uris) = (&lookup.hashes, &lookup.uris);
        read_stored(conn, lookup.collection_id, hashes, uris, &mut stored)?;
    }
    let plan = RegistrationPlan::new(&docs, &stored)?;
    let to_insert: Vec<&Document> = plan.to_insert(&docs).collect();
    let inserted = insert(conn, &to_insert)?;
    for (collection_id, hashes) in plan.lost(&docs, &inserted) {
        read_stored(conn, collection_id, &hashes, &[], &mut stored)?;
    }
    plan.registered(docs, &stored, inserted)
        .or_else(|vanished| {
            let uri_taken = match vanished.uri.as_deref() {
                Some(uri) => uri_is_taken(conn, vanished.collection_id, uri)?,
                None => false,
            };
            Err(vanished.into_error(uri_taken))
        })
}

/// Runs `f` on `conn` as it is, in whatever transaction the caller opened: for
/// statements that are one statement on a backend.
pub fn without_transaction<C, T>(
    conn: &mut C,
    f: impl FnOnce(&mut C) -> RepoResult<T>,
) -> RepoResult<T> {
    f(conn)
}

/// One row of the per-state totals behind [`DocumentRepository::stats`]
/// (`SELECT status, <count> AS documents, <sum of file_size> AS bytes, <sum of
/// chunk_count> AS chunks … GROUP BY status`).
///
/// [`DocumentRepository::stats`]: repo_core::DocumentRepository::stats
#[derive(diesel::QueryableByName)]
pub struct StatusTotals {
    /// The state.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    /// Documents in that state.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub documents: i64,
    /// Sum of their `file_size`.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub bytes: i64,
    /// Sum of their `chunk_count`.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub chunks: i64,
}

/// The statistics of a collection from its per-state totals.
pub fn document_stats(rows: Vec<StatusTotals>) -> DocumentStats {
    let mut stats = DocumentStats::default();
    for row in rows {
        let n = crate::codec::count(row.documents);
        stats.total += n;
        stats.total_bytes += row.bytes;
        stats.total_chunks += row.chunks;
        stats.by_status.insert(row.status, n);
    }
    stats
}
