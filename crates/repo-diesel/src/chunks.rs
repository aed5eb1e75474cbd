//! What both backends share for the `chunks` repository: the row types with their
//! conversions, the checks of a bulk insert and the statements both run the same
//! way. As in [`crate::documents`], items over Diesel's table types are macros each
//! backend expands in its `chunks` module (which must have its schema's `chunks` and
//! `documents` table modules in scope); search SQL stays in the backends (FTS5 on
//! SQLite, a tsvector prefilter on PostgreSQL).

/// The count of a search's matches (`SELECT count(*) AS total …`, counted up to
/// `SEARCH_TOTAL_CAP + 1`).
#[derive(diesel::QueryableByName)]
pub struct SearchTotal {
    /// The matches counted.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub total: i64,
}

/// Defines `ChunkRow` (a `chunks` row as read, without `search_tokens`) with
/// `into_domain`, `many` (rows into chunks), `HitRow` (a search hit as selected: the
/// chunk's columns and its `score`) and `search_page` (the [`SearchPage`] of hit
/// rows read with one row more than `limit`, and the counted matches).
///
/// Arguments as for [`document_row!`](crate::document_row).
///
/// [`SearchPage`]: repo_core::SearchPage
#[macro_export]
macro_rules! chunk_row {
    (backend: $backend:ty, codec: $codec:ty, uuid: $uuid:ty, timestamp: $ts:ty, json: $json:ty $(,)?) => {
        /// A `chunks` row as stored (without `search_tokens`).
        #[derive(::diesel::Queryable, ::diesel::QueryableByName, ::diesel::Selectable)]
        #[diesel(table_name = chunks, check_for_backend($backend))]
        struct ChunkRow {
            id: i64,
            collection_id: $uuid,
            document_id: $uuid,
            chunk_index: i32,
            content: String,
            start_offset: Option<i32>,
            end_offset: Option<i32>,
            token_count: Option<i32>,
            embedding_vector_id: Option<String>,
            meta: $json,
            created_at: $ts,
        }

        impl ChunkRow {
            /// The chunk of this row; a value the codec cannot read is a corrupt row.
            fn into_domain(self) -> ::repo_core::RepoResult<::repo_core::Chunk> {
                use $crate::codec::Codec as _;
                type C = $codec;
                const T: &str = "chunks";
                Ok(::repo_core::Chunk {
                    id: self.id,
                    collection_id: ::repo_core::CollectionId(C::read_uuid(
                        T,
                        "collection_id",
                        self.collection_id,
                    )?),
                    document_id: ::repo_core::DocumentId(C::read_uuid(
                        T,
                        "document_id",
                        self.document_id,
                    )?),
                    chunk_index: self.chunk_index,
                    content: self.content,
                    start_offset: self.start_offset,
                    end_offset: self.end_offset,
                    token_count: self.token_count,
                    embedding_vector_id: self.embedding_vector_id,
                    meta: C::read_json(T, "meta", self.meta)?,
                    created_at: C::read_timestamp(T, "created_at", self.created_at)?,
                })
            }
        }

        /// The chunks of `rows`.
        fn many(rows: Vec<ChunkRow>) -> ::repo_core::RepoResult<Vec<::repo_core::Chunk>> {
            rows.into_iter().map(ChunkRow::into_domain).collect()
        }

        /// A search hit as selected: the chunk's columns and its score.
        #[derive(::diesel::QueryableByName)]
        struct HitRow {
            #[diesel(embed)]
            chunk: ChunkRow,
            #[diesel(sql_type = ::diesel::sql_types::Double)]
            score: f64,
        }

        /// The page of `rows` (read with one row more than `limit`, which tells
        /// whether a next page exists) starting at `start`, with `counted` matches.
        fn search_page(
            rows: Vec<HitRow>,
            counted: $crate::chunks::SearchTotal,
            start: ::repo_core::SearchStart,
            limit: i64,
        ) -> ::repo_core::RepoResult<::repo_core::SearchPage> {
            let hits = rows
                .into_iter()
                .map(|r| {
                    Ok(::repo_core::SearchHit {
                        chunk: r.chunk.into_domain()?,
                        score: r.score,
                    })
                })
                .collect::<::repo_core::RepoResult<Vec<_>>>()?;
            Ok(::repo_core::SearchPage::assemble(
                hits,
                limit,
                start.skipped(),
                $crate::codec::count(counted.total),
            ))
        }
    };
}

/// Defines `InsertChunk<'a>`, a chunk to insert: every column but `id` (from the
/// table's sequence or rowid), with `search_tokens` computed by
/// [`repo_core::search::index_text`]. Every column is bound, `None` as NULL, never
/// DEFAULT: a slice is one multi-row `INSERT`, and binary `COPY` gets every column.
/// `from_domain_all` converts a batch, converting a collection, document or instant
/// equal to the previous row's once.
///
/// Arguments as for [`insert_document!`](crate::insert_document).
#[macro_export]
macro_rules! insert_chunk {
    (codec: $codec:ty, uuid: $uuid:ty, timestamp: $ts:ty $(,)?) => {
        /// A chunk to insert.
        #[derive(::diesel::Insertable)]
        #[diesel(table_name = chunks, treat_none_as_default_value = false)]
        pub(crate) struct InsertChunk<'a> {
            collection_id: $uuid,
            document_id: $uuid,
            chunk_index: i32,
            content: &'a str,
            start_offset: Option<i32>,
            end_offset: Option<i32>,
            token_count: Option<i32>,
            embedding_vector_id: Option<&'a str>,
            meta: <$codec as $crate::codec::Codec>::JsonIn<'a>,
            created_at: $ts,
            search_tokens: String,
        }

        impl<'a> InsertChunk<'a> {
            /// The rows of `chunks`.
            pub(crate) fn from_domain_all(
                chunks: &'a [::repo_core::Chunk],
            ) -> ::repo_core::RepoResult<Vec<Self>> {
                use $crate::codec::Codec as _;
                type C = $codec;
                let mut rows: Vec<Self> = Vec::with_capacity(chunks.len());
                let mut previous: Option<&'a ::repo_core::Chunk> = None;
                for c in chunks {
                    let last = previous.zip(rows.last());
                    let same = |f: fn(&::repo_core::Chunk) -> ::uuid::Uuid| {
                        last.filter(|(p, _)| f(p) == f(c)).map(|(_, r)| r)
                    };
                    let collection_id = match same(|c| c.collection_id.0) {
                        Some(r) => r.collection_id.clone(),
                        None => C::uuid(c.collection_id.0),
                    };
                    let document_id = match same(|c| c.document_id.0) {
                        Some(r) => r.document_id.clone(),
                        None => C::uuid(c.document_id.0),
                    };
                    let created_at = match last.filter(|(p, _)| p.created_at == c.created_at) {
                        Some((_, r)) => r.created_at.clone(),
                        None => C::timestamp(c.created_at),
                    };
                    rows.push(Self {
                        collection_id,
                        document_id,
                        chunk_index: c.chunk_index,
                        content: &c.content,
                        start_offset: c.start_offset,
                        end_offset: c.end_offset,
                        token_count: c.token_count,
                        embedding_vector_id: c.embedding_vector_id.as_deref(),
                        meta: C::json_in(&c.meta)?,
                        created_at,
                        search_tokens: ::repo_core::search::index_text(&c.content),
                    });
                    previous = Some(c);
                }
                Ok(rows)
            }
        }
    };
}

/// Defines the statements both backends run alike on `chunks`, as functions over
/// `&mut $conn` (none opens a transaction: the caller chooses):
///
/// - `check_batch`: reads what [`repo_core::chunk::ChunkLookup`] names (the owner
///   of every document of a prepared batch, the chunk indexes they hold in the
///   batch's range) and checks the batch with [`repo_core::chunk::check_stored`];
/// - `without_embedding`, `delete_by_collection`, `count`.
///
/// `ids_per_statement` is how many document ids one statement of `check_batch`
/// takes; the rest as for [`document_statements!`](crate::document_statements).
/// [`chunk_row!`] must be expanded in the same module.
#[macro_export]
macro_rules! chunk_statements {
    (
        conn: $conn:ty,
        codec: $codec:ty,
        uuid: $uuid:ty,
        map_err: $map_err:path,
        ids_per_statement: $ids_per_statement:expr $(,)?
    ) => {
        /// Checks a prepared batch of `collection_id` against what is stored.
        fn check_batch(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            rows: &[::repo_core::Chunk],
        ) -> ::repo_core::RepoResult<()> {
            use ::repo_core::{CollectionId, DocumentId};
            use $crate::codec::Codec as _;
            type C = $codec;
            const T: &str = "chunks";
            let lookup = ::repo_core::chunk::ChunkLookup::of(rows);
            let keys: Vec<$uuid> = lookup.document_ids.iter().map(|d| C::uuid(d.0)).collect();
            let (lo, hi) = (lookup.lowest_index, lookup.highest_index);
            let mut owners = ::std::collections::HashMap::with_capacity(keys.len());
            let mut stored = ::std::collections::HashSet::new();
            for part in keys.chunks(($ids_per_statement).max(1)) {
                let found: Vec<($uuid, $uuid)> = documents::table
                    .filter(documents::id.eq_any(part))
                    .select((documents::id, documents::collection_id))
                    .load(conn)
                    .map_err($map_err)?;
                for (id, owner) in found {
                    let id = DocumentId(C::read_uuid("documents", "id", id)?);
                    let owner = CollectionId(C::read_uuid("documents", "collection_id", owner)?);
                    owners.insert(id, owner);
                }
                // Through the unique index on (collection, document, index) of one
                // partition; the range narrows the read when documents hold many chunks.
                let held: Vec<($uuid, i32)> = chunks::table
                    .filter(chunks::collection_id.eq(C::uuid(collection_id.0)))
                    .filter(chunks::document_id.eq_any(part))
                    .filter(chunks::chunk_index.between(lo, hi))
                    .select((chunks::document_id, chunks::chunk_index))
                    .load(conn)
                    .map_err($map_err)?;
                for (document_id, index) in held {
                    stored.insert((
                        DocumentId(C::read_uuid(T, "document_id", document_id)?),
                        index,
                    ));
                }
            }
            ::repo_core::chunk::check_stored(collection_id, rows, &owners, &stored)
        }

        /// Up to `limit` chunks of the collection without an embedding, oldest first
        /// (the partial index `chunks_collection_embedding_idx`).
        fn without_embedding(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
            limit: u32,
        ) -> ::repo_core::RepoResult<Vec<::repo_core::Chunk>> {
            use $crate::codec::Codec as _;
            let rows = chunks::table
                .filter(chunks::collection_id.eq(<$codec>::uuid(collection_id.0)))
                .filter(chunks::embedding_vector_id.is_null())
                .select(ChunkRow::as_select())
                .order(chunks::id.asc())
                .limit(i64::from(limit))
                .load(conn)
                .map_err($map_err)?;
            many(rows)
        }

        fn delete_by_collection(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<u64> {
            use $crate::codec::Codec as _;
            let n = ::diesel::delete(
                chunks::table.filter(chunks::collection_id.eq(<$codec>::uuid(collection_id.0))),
            )
            .execute(conn)
            .map_err($map_err)?;
            Ok($crate::codec::affected(n))
        }

        fn count(
            conn: &mut $conn,
            collection_id: ::repo_core::CollectionId,
        ) -> ::repo_core::RepoResult<u64> {
            use $crate::codec::Codec as _;
            let n: i64 = chunks::table
                .filter(chunks::collection_id.eq(<$codec>::uuid(collection_id.0)))
                .count()
                .get_result(conn)
                .map_err($map_err)?;
            Ok($crate::codec::count(n))
        }
    };
}

/// Defines `impl ChunkRepository for $ty`, each method a call of the function of the
/// same name in the expanding module through `self.$src` with the method named for
/// it, as [`document_repository!`](crate::document_repository) does: `search` and
/// `search_after` call `search(c, collection_id, query, start, limit)` with the
/// [`SearchStart`](repo_core::SearchStart) of the page or cursor.
#[macro_export]
macro_rules! chunk_repository {
    (
        impl<$s:ident: $bound:path> for $ty:ty, source: $src:tt;
        insert_many: $insert_many:ident,
        list_by_document: $list_by_document:ident,
        without_embedding: $without_embedding:ident,
        set_embedding_ids: $set_embedding_ids:ident,
        delete_by_document: $delete_by_document:ident,
        delete_by_collection: $delete_by_collection:ident,
        count: $count:ident,
        search: $search:ident,
        search_after: $search_after:ident $(,)?
    ) => {
        impl<$s: $bound> ::repo_core::ChunkRepository for $ty {
            fn insert_many(
                &self,
                collection_id: ::repo_core::CollectionId,
                batch: &[::repo_core::NewChunk],
            ) -> ::repo_core::RepoResult<u64> {
                self.$src
                    .$insert_many(|c| insert_many(c, collection_id, batch))
            }

            fn list_by_document(
                &self,
                document_id: ::repo_core::DocumentId,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::Page<::repo_core::Chunk>> {
                self.$src
                    .$list_by_document(|c| list_by_document(c, document_id, page))
            }

            fn without_embedding(
                &self,
                collection_id: ::repo_core::CollectionId,
                limit: u32,
            ) -> ::repo_core::RepoResult<Vec<::repo_core::Chunk>> {
                self.$src
                    .$without_embedding(|c| without_embedding(c, collection_id, limit))
            }

            fn set_embedding_ids(
                &self,
                collection_id: ::repo_core::CollectionId,
                pairs: &[(i64, String)],
            ) -> ::repo_core::RepoResult<u64> {
                self.$src
                    .$set_embedding_ids(|c| set_embedding_ids(c, collection_id, pairs))
            }

            fn delete_by_document(
                &self,
                document_id: ::repo_core::DocumentId,
            ) -> ::repo_core::RepoResult<u64> {
                self.$src
                    .$delete_by_document(|c| delete_by_document(c, document_id))
            }

            fn delete_by_collection(
                &self,
                collection_id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<u64> {
                self.$src
                    .$delete_by_collection(|c| delete_by_collection(c, collection_id))
            }

            fn count(
                &self,
                collection_id: ::repo_core::CollectionId,
            ) -> ::repo_core::RepoResult<u64> {
                self.$src.$count(|c| count(c, collection_id))
            }

            fn search(
                &self,
                collection_id: ::repo_core::CollectionId,
                query: &::repo_core::SearchQuery,
                page: ::repo_core::PageRequest,
            ) -> ::repo_core::RepoResult<::repo_core::SearchPage> {
                let start = ::repo_core::SearchStart::of_page(page);
                self.$src
                    .$search(|c| search(c, collection_id, query, start, page.limit_i64()))
            }

            fn search_after(
                &self,
                collection_id: ::repo_core::CollectionId,
                query: &::repo_core::SearchQuery,
                after: Option<::repo_core::SearchCursor>,
                limit: u32,
            ) -> ::repo_core::RepoResult<::repo_core::SearchPage> {
                let start = ::repo_core::SearchStart::after(after);
                let limit = ::repo_core::PageRequest::first(limit).limit_i64();
                self.$src
                    .$search_after(|c| search(c, collection_id, query, start, limit))
            }
        }
    };
}
