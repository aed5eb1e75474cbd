//! Chunks: bulk insert, embedding bookkeeping and FTS5 full-text search.
//!
//! `chunks_fts` is an external-content FTS5 table (`ascii` tokenizer) over the view
//! `chunks_fts_content` (rowid = `chunks.id`): the collection id as one token
//! (`collection_token`) and `chunks.search_tokens`, the tokens computed in Rust by
//! [`repo_core::search::index_text`] when a chunk is written. The triggers of the
//! migrations keep it in step, so inserts, deletes and cascades need no code here.
//! A search matches the collection's token AND the query, so FTS5 reads the
//! intersection of their posting lists, ranks on the FTS5 table alone and joins only
//! the page's rows to `chunks`. Diesel has no DSL for virtual tables: search runs as
//! raw SQL whose every value is a bound parameter.

use crate::bulk::{in_list_len, rows_per_statement};
use crate::codec::{affected, count, json, read_json, read_ts, read_uuid, ts, uuid};
use crate::collections;
use crate::connection::{read_tx, write_tx, ConnectionSource, SqliteChunks};
use crate::documents;
use crate::error::map_diesel_error;
use crate::schema::{chunks, documents as documents_table};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use diesel::sqlite::Sqlite;
use repo_core::chunk::{last_embedding_per_chunk, prepare_batch};
use repo_core::search::index_text;
use repo_core::{
    Chunk, ChunkRepository, CollectionId, DocumentId, Entity, Field, NewChunk, Page, PageRequest,
    RepoError, RepoResult, SearchCursor, SearchHit, SearchPage, SearchQuery,
};
use std::collections::{HashMap, HashSet};

/// A `chunks` row as stored.
#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = chunks, check_for_backend(Sqlite))]
struct ChunkRow {
    id: i64,
    collection_id: String,
    document_id: String,
    chunk_index: i32,
    content: String,
    start_offset: Option<i32>,
    end_offset: Option<i32>,
    token_count: Option<i32>,
    embedding_vector_id: Option<String>,
    meta: String,
    created_at: String,
}

impl ChunkRow {
    fn into_domain(self) -> RepoResult<Chunk> {
        const T: &str = "chunks";
        Ok(Chunk {
            id: self.id,
            collection_id: CollectionId(read_uuid(T, "collection_id", &self.collection_id)?),
            document_id: DocumentId(read_uuid(T, "document_id", &self.document_id)?),
            chunk_index: self.chunk_index,
            content: self.content,
            start_offset: self.start_offset,
            end_offset: self.end_offset,
            token_count: self.token_count,
            embedding_vector_id: self.embedding_vector_id,
            meta: read_json(T, "meta", &self.meta)?,
            created_at: read_ts(T, "created_at", &self.created_at)?,
        })
    }
}

fn many(rows: Vec<ChunkRow>) -> RepoResult<Vec<Chunk>> {
    rows.into_iter().map(ChunkRow::into_domain).collect()
}

/// Bound columns of [`InsertChunk`], for sizing multi-row inserts.
const INSERT_COLUMNS: usize = 11;

/// A chunk to insert; every column bound so that a slice is one multi-row `INSERT`.
#[derive(Insertable)]
#[diesel(table_name = chunks, treat_none_as_default_value = false)]
struct InsertChunk<'a> {
    collection_id: &'a str,
    document_id: &'a str,
    chunk_index: i32,
    content: &'a str,
    start_offset: Option<i32>,
    end_offset: Option<i32>,
    token_count: Option<i32>,
    embedding_vector_id: Option<&'a str>,
    meta: String,
    created_at: String,
    search_tokens: String,
}

/// A search hit as selected: the chunk's columns and `-bm25(chunks_fts)`.
#[derive(QueryableByName)]
struct HitRow {
    #[diesel(embed)]
    chunk: ChunkRow,
    #[diesel(sql_type = Double)]
    score: f64,
}

#[derive(QueryableByName)]
struct Total {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The distinct values of `items`, in order of first appearance.
fn distinct<T: Copy + Eq + std::hash::Hash>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.filter(|v| seen.insert(*v)).collect()
}

fn insert_many(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    batch: &[NewChunk],
) -> RepoResult<u64> {
    let prepared = prepare_batch(collection_id, batch)?;
    let cid = uuid(collection_id.0);
    write_tx(conn, |c| {
        collections::ensure_exists(c, collection_id)?;
        if prepared.is_empty() {
            return Ok(0);
        }

        // Every document belongs to the collection.
        let doc_ids = distinct(prepared.iter().map(|ch| ch.document_id));
        let keys: HashMap<DocumentId, String> =
            doc_ids.iter().map(|id| (*id, uuid(id.0))).collect();
        let ordered_keys: Vec<&str> = doc_ids
            .iter()
            .filter_map(|id| keys.get(id))
            .map(String::as_str)
            .collect();
        let mut found: HashSet<String> = HashSet::with_capacity(doc_ids.len());
        for part in ordered_keys.chunks(in_list_len(1)) {
            let ids: Vec<String> = documents_table::table
                .filter(documents_table::collection_id.eq(&cid))
                .filter(documents_table::id.eq_any(part))
                .select(documents_table::id)
                .load(c)
                .map_err(map_diesel_error)?;
            found.extend(ids);
        }
        if let Some(i) = prepared
            .iter()
            .position(|ch| keys.get(&ch.document_id).is_none_or(|k| !found.contains(k)))
        {
            return Err(RepoError::validation(
                Field::DocumentId,
                format!(
                    "document {} does not exist in collection {collection_id}",
                    prepared[i].document_id
                ),
            )
            .for_item(i));
        }

        // No (document, chunk_index) is stored already. The index range narrows the
        // read to the batch's positions when a document already has many chunks.
        let lo = prepared.iter().map(|ch| ch.chunk_index).min().unwrap_or(0);
        let hi = prepared.iter().map(|ch| ch.chunk_index).max().unwrap_or(0);
        let mut stored: HashSet<(String, i32)> = HashSet::new();
        for part in ordered_keys.chunks(in_list_len(3)) {
            let pairs: Vec<(String, i32)> = chunks::table
                .filter(chunks::collection_id.eq(&cid))
                .filter(chunks::document_id.eq_any(part))
                .filter(chunks::chunk_index.between(lo, hi))
                .select((chunks::document_id, chunks::chunk_index))
                .load(c)
                .map_err(map_diesel_error)?;
            stored.extend(pairs);
        }
        if !stored.is_empty() {
            if let Some(i) = prepared.iter().position(|ch| {
                keys.get(&ch.document_id)
                    .is_some_and(|k| stored.contains(&(k.clone(), ch.chunk_index)))
            }) {
                return Err(RepoError::validation(
                    Field::ChunkIndex,
                    format!(
                        "chunk {} of document {} is already stored",
                        prepared[i].chunk_index, prepared[i].document_id
                    ),
                )
                .for_item(i));
            }
        }

        // One batch shares one creation time: format it once.
        let mut created: Option<(repo_core::Timestamp, String)> = None;
        let mut rows = Vec::with_capacity(prepared.len());
        for ch in &prepared {
            let created_at = match &created {
                Some((at, text)) if *at == ch.created_at => text.clone(),
                _ => {
                    let text = ts(ch.created_at);
                    created = Some((ch.created_at, text.clone()));
                    text
                }
            };
            let document_id = keys
                .get(&ch.document_id)
                .ok_or_else(|| RepoError::not_found(Entity::Document, ch.document_id))?;
            rows.push(InsertChunk {
                collection_id: &cid,
                document_id,
                chunk_index: ch.chunk_index,
                content: &ch.content,
                start_offset: ch.start_offset,
                end_offset: ch.end_offset,
                token_count: ch.token_count,
                embedding_vector_id: ch.embedding_vector_id.as_deref(),
                meta: json(&ch.meta)?,
                created_at,
                search_tokens: index_text(&ch.content),
            });
        }
        let mut inserted = 0;
        for part in rows.chunks(rows_per_statement(INSERT_COLUMNS)) {
            let n = diesel::insert_into(chunks::table)
                .values(part)
                .execute(c)
                .map_err(map_diesel_error)?;
            inserted += affected(n);
        }
        Ok(inserted)
    })
}

/// Rows filled per transaction by [`backfill_search_tokens`]: short write
/// transactions, so other writers wait little while a large table is backfilled.
const BACKFILL_BATCH: i64 = 500;

/// Fills `search_tokens` of every chunk that has none (rows stored before the
/// `search_tokens` migration, or written by another tool), in batches of
/// [`BACKFILL_BATCH`] rows, each its own immediate transaction. Idempotent: only NULL
/// rows are read and written, so concurrent or repeated runs do no harm. Returns the
/// number of rows filled.
pub(crate) fn backfill_search_tokens(conn: &mut SqliteConnection) -> RepoResult<u64> {
    let mut filled = 0;
    loop {
        // Read outside any write transaction (served by the partial index
        // `chunks_search_tokens_missing_idx`), so that a store opening a database with
        // nothing to fill never takes the write lock.
        let rows: Vec<(i64, String)> = chunks::table
            .filter(chunks::search_tokens.is_null())
            .select((chunks::id, chunks::content))
            .order(chunks::id.asc())
            .limit(BACKFILL_BATCH)
            .load(conn)
            .map_err(map_diesel_error)?;
        if rows.is_empty() {
            return Ok(filled);
        }
        let tokens: Vec<String> = rows
            .iter()
            .map(|(_, content)| index_text(content))
            .collect();
        filled += write_tx(conn, |c| {
            let mut n = 0;
            for ((id, _), tokens) in rows.iter().zip(&tokens) {
                // A row filled meanwhile (another store's backfill) is left alone.
                n += diesel::update(
                    chunks::table
                        .filter(chunks::id.eq(id))
                        .filter(chunks::search_tokens.is_null()),
                )
                .set(chunks::search_tokens.eq(tokens))
                .execute(c)
                .map_err(map_diesel_error)?;
            }
            Ok(affected(n))
        })?;
    }
}

fn list_by_document(
    conn: &mut SqliteConnection,
    document_id: DocumentId,
    page: PageRequest,
) -> RepoResult<Page<Chunk>> {
    let key = uuid(document_id.0);
    read_tx(conn, |c| {
        documents::ensure_exists(c, document_id)?;
        let rows = chunks::table
            .filter(chunks::document_id.eq(&key))
            .select(ChunkRow::as_select())
            .order((chunks::chunk_index.asc(), chunks::id.asc()))
            .limit(page.limit_i64())
            .offset(page.offset_i64())
            .load(c)
            .map_err(map_diesel_error)?;
        let total: i64 = chunks::table
            .filter(chunks::document_id.eq(&key))
            .count()
            .get_result(c)
            .map_err(map_diesel_error)?;
        Ok(Page {
            items: many(rows)?,
            total: count(total),
        })
    })
}

fn without_embedding(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    limit: u32,
) -> RepoResult<Vec<Chunk>> {
    let rows = chunks::table
        .filter(chunks::collection_id.eq(uuid(collection_id.0)))
        .filter(chunks::embedding_vector_id.is_null())
        .select(ChunkRow::as_select())
        .order(chunks::id.asc())
        .limit(i64::from(limit))
        .load(conn)
        .map_err(map_diesel_error)?;
    many(rows)
}

/// `UPDATE … FROM (VALUES (?, ?), …)` for `rows` pairs: only the number of
/// placeholders varies, every id and value is bound.
fn set_embedding_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(96 + rows * 8);
    sql.push_str("UPDATE chunks SET embedding_vector_id = v.column2 FROM (VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?)");
    }
    sql.push_str(") AS v WHERE chunks.id = v.column1 AND chunks.collection_id = ?");
    sql
}

fn set_embedding_ids(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    pairs: &[(i64, String)],
) -> RepoResult<u64> {
    let unique = last_embedding_per_chunk(pairs)?;
    if unique.is_empty() {
        return Ok(0);
    }
    let collection = uuid(collection_id.0);
    write_tx(conn, |c| {
        let mut changed = 0;
        // One bind for the collection, two per pair.
        for part in unique.chunks(rows_per_statement(2) - 1) {
            let mut query = diesel::sql_query(set_embedding_sql(part.len())).into_boxed();
            for (id, vector_id) in part {
                query = query.bind::<BigInt, _>(*id).bind::<Text, _>(*vector_id);
            }
            query = query.bind::<Text, _>(&collection);
            changed += affected(query.execute(c).map_err(map_diesel_error)?);
        }
        Ok(changed)
    })
}

fn delete_by_document(conn: &mut SqliteConnection, document_id: DocumentId) -> RepoResult<u64> {
    let n = diesel::delete(chunks::table.filter(chunks::document_id.eq(uuid(document_id.0))))
        .execute(conn)
        .map_err(map_diesel_error)?;
    Ok(affected(n))
}

fn delete_by_collection(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
) -> RepoResult<u64> {
    let n = diesel::delete(chunks::table.filter(chunks::collection_id.eq(uuid(collection_id.0))))
        .execute(conn)
        .map_err(map_diesel_error)?;
    Ok(affected(n))
}

fn count_chunks(conn: &mut SqliteConnection, collection_id: CollectionId) -> RepoResult<u64> {
    let n: i64 = chunks::table
        .filter(chunks::collection_id.eq(uuid(collection_id.0)))
        .count()
        .get_result(conn)
        .map_err(map_diesel_error)?;
    Ok(count(n))
}

/// The page of a search: the ranking is computed on the FTS5 table alone (rowid and
/// score), limited to the page, and only the page's rows are joined to `chunks` for
/// their content. `-bm25(chunks_fts, 0.0, 1.0)`: the collection column weighs
/// nothing, so the score is BM25 over `search_tokens` only.
const SEARCH_SQL: &str = "SELECT c.id, c.collection_id, c.document_id, c.chunk_index, \
     c.content, c.start_offset, c.end_offset, c.token_count, c.embedding_vector_id, \
     c.meta, c.created_at, r.score AS score \
     FROM (SELECT rowid AS id, -bm25(chunks_fts, 0.0, 1.0) AS score \
           FROM chunks_fts WHERE chunks_fts MATCH ?1 \
           ORDER BY score DESC, rowid LIMIT ?2 OFFSET ?3) AS r \
     JOIN chunks c ON c.id = r.id \
     ORDER BY r.score DESC, r.id";

/// [`SEARCH_SQL`] after a cursor: the hits ranked strictly after `(?3, ?4)`.
const SEARCH_AFTER_SQL: &str = "SELECT c.id, c.collection_id, c.document_id, c.chunk_index, \
     c.content, c.start_offset, c.end_offset, c.token_count, c.embedding_vector_id, \
     c.meta, c.created_at, r.score AS score \
     FROM (SELECT id, score FROM \
             (SELECT rowid AS id, -bm25(chunks_fts, 0.0, 1.0) AS score \
              FROM chunks_fts WHERE chunks_fts MATCH ?1) \
           WHERE score < ?3 OR (score = ?3 AND id > ?4) \
           ORDER BY score DESC, id LIMIT ?2) AS r \
     JOIN chunks c ON c.id = r.id \
     ORDER BY r.score DESC, r.id";

/// The matches counted up to a limit (`SEARCH_TOTAL_CAP + 1`), on the FTS5 table
/// alone.
const SEARCH_COUNT_SQL: &str = "SELECT COUNT(*) AS n \
     FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ?1 LIMIT ?2)";

/// The FTS5 expression of `query` within one collection: the collection's token in
/// `collection_token` AND the query over `search_tokens` only, so that FTS5 intersects
/// the posting lists and a user's words never match the collection column.
fn collection_match(collection_id: CollectionId, query: &SearchQuery) -> Option<String> {
    let expression = query.to_fts5()?;
    Some(format!(
        "collection_token : \"{}\" AND search_tokens : ({expression})",
        collection_id.0.simple()
    ))
}

fn search(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    query: &SearchQuery,
    offset: i64,
    after: Option<SearchCursor>,
    limit: i64,
) -> RepoResult<SearchPage> {
    // `to_fts5` builds the expression from alphanumeric tokens only and the
    // collection token is hex; it is bound all the same.
    let Some(expression) = collection_match(collection_id, query) else {
        return Ok(SearchPage::empty());
    };
    read_tx(conn, |c| {
        // One row more than the page tells whether a next page exists.
        let rows: Vec<HitRow> = match after {
            None => diesel::sql_query(SEARCH_SQL)
                .bind::<Text, _>(&expression)
                .bind::<BigInt, _>(limit + 1)
                .bind::<BigInt, _>(offset)
                .load(c),
            Some(after) => diesel::sql_query(SEARCH_AFTER_SQL)
                .bind::<Text, _>(&expression)
                .bind::<BigInt, _>(limit + 1)
                .bind::<Double, _>(after.score())
                .bind::<BigInt, _>(after.id())
                .load(c),
        }
        .map_err(map_diesel_error)?;
        let counted: Total = diesel::sql_query(SEARCH_COUNT_SQL)
            .bind::<Text, _>(&expression)
            .bind::<BigInt, _>(SearchPage::count_limit_i64())
            .get_result(c)
            .map_err(map_diesel_error)?;
        let hits = rows
            .into_iter()
            .map(|r| {
                Ok(SearchHit {
                    chunk: r.chunk.into_domain()?,
                    score: r.score,
                })
            })
            .collect::<RepoResult<Vec<_>>>()?;
        Ok(SearchPage::assemble(
            hits,
            limit,
            u64::try_from(offset).unwrap_or(0),
            count(counted.n),
        ))
    })
}

impl<S: ConnectionSource> ChunkRepository for SqliteChunks<S> {
    fn insert_many(&self, collection_id: CollectionId, batch: &[NewChunk]) -> RepoResult<u64> {
        self.run(|c| insert_many(c, collection_id, batch))
    }

    fn list_by_document(
        &self,
        document_id: DocumentId,
        page: PageRequest,
    ) -> RepoResult<Page<Chunk>> {
        self.run(|c| list_by_document(c, document_id, page))
    }

    fn without_embedding(&self, collection_id: CollectionId, limit: u32) -> RepoResult<Vec<Chunk>> {
        self.run(|c| without_embedding(c, collection_id, limit))
    }

    fn set_embedding_ids(
        &self,
        collection_id: CollectionId,
        pairs: &[(i64, String)],
    ) -> RepoResult<u64> {
        self.run(|c| set_embedding_ids(c, collection_id, pairs))
    }

    fn delete_by_document(&self, document_id: DocumentId) -> RepoResult<u64> {
        self.run(|c| delete_by_document(c, document_id))
    }

    fn delete_by_collection(&self, collection_id: CollectionId) -> RepoResult<u64> {
        self.run(|c| delete_by_collection(c, collection_id))
    }

    fn count(&self, collection_id: CollectionId) -> RepoResult<u64> {
        self.run(|c| count_chunks(c, collection_id))
    }

    fn search(
        &self,
        collection_id: CollectionId,
        query: &SearchQuery,
        page: PageRequest,
    ) -> RepoResult<SearchPage> {
        self.run(|c| {
            search(
                c,
                collection_id,
                query,
                page.offset_i64(),
                None,
                page.limit_i64(),
            )
        })
    }

    fn search_after(
        &self,
        collection_id: CollectionId,
        query: &SearchQuery,
        after: Option<SearchCursor>,
        limit: u32,
    ) -> RepoResult<SearchPage> {
        let limit = PageRequest::first(limit).limit_i64();
        self.run(|c| search(c, collection_id, query, 0, after, limit))
    }
}
