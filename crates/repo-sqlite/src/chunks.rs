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
//!
//! Row types, the checks of a bulk insert (the core's rules over facts read alike on
//! both backends), the plain statements and the trait forwarding are expanded from
//! `repo_diesel`'s macros.

use crate::bulk::{in_list_len, rows_per_statement};
use crate::codec::{uuid, SqliteCodec};
use crate::collections;
use crate::connection::{write_tx, ConnectionSource, SqliteChunks};
use crate::documents as document_repo;
use crate::error::map_diesel_error;
use crate::schema::{chunks, documents};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text};
use diesel::sqlite::Sqlite;
use repo_core::chunk::{last_embedding_per_chunk, prepare_batch};
use repo_core::search::index_text;
use repo_core::{
    Chunk, CollectionId, DocumentId, NewChunk, Page, PageRequest, RepoResult, SearchPage,
    SearchQuery, SearchStart,
};
use repo_diesel::chunks::SearchTotal;
use repo_diesel::codec::affected;

repo_diesel::chunk_row!(
    backend: Sqlite,
    codec: SqliteCodec,
    uuid: String,
    timestamp: String,
    json: String,
);

repo_diesel::insert_chunk!(codec: SqliteCodec, uuid: String, timestamp: String);

/// Bound columns of [`InsertChunk`], for sizing multi-row inserts.
const INSERT_COLUMNS: usize = 11;

repo_diesel::chunk_statements!(
    conn: SqliteConnection,
    codec: SqliteCodec,
    uuid: String,
    map_err: map_diesel_error,
    ids_per_statement: in_list_len(3),
);

/// `insert_many`, in the caller's write transaction: the batch is checked against
/// what is stored, then written as multi-row inserts.
fn insert_many(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    batch: &[NewChunk],
) -> RepoResult<u64> {
    let prepared = prepare_batch(collection_id, batch)?;
    collections::ensure_exists(conn, collection_id)?;
    if prepared.is_empty() {
        return Ok(0);
    }
    check_batch(conn, collection_id, &prepared)?;
    let rows = InsertChunk::from_domain_all(&prepared)?;
    let mut inserted = 0;
    for part in rows.chunks(rows_per_statement(INSERT_COLUMNS)) {
        let n = diesel::insert_into(chunks::table)
            .values(part)
            .execute(conn)
            .map_err(map_diesel_error)?;
        inserted += affected(n);
    }
    Ok(inserted)
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
    document_repo::ensure_exists(conn, document_id)?;
    let rows = chunks::table
        .filter(chunks::document_id.eq(&key))
        .select(ChunkRow::as_select())
        .order((chunks::chunk_index.asc(), chunks::id.asc()))
        .limit(page.limit_i64())
        .offset(page.offset_i64())
        .load(conn)
        .map_err(map_diesel_error)?;
    let total: i64 = chunks::table
        .filter(chunks::document_id.eq(&key))
        .count()
        .get_result(conn)
        .map_err(map_diesel_error)?;
    Ok(Page {
        items: many(rows)?,
        total: repo_diesel::codec::count(total),
    })
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

/// The page of a search. FTS5 finds the newest `?4` (`SEARCH_RANK_CAP`) matches,
/// walking the posting lists backwards by rowid and stopping there; each is scored by
/// `search_score` ([`repo_core::search::score`], the same number PostgreSQL computes)
/// from its `search_tokens` and the query's patterns (`?5`); the page is ranked on
/// `(score, id)` and only the page's rows are joined to `chunks` for their content.
/// FTS5's own `bm25()` is not used: it counts, on every query, the rows holding each
/// phrase of the expression in the whole table (the collection's token included),
/// so a page would cost what the collection and the database hold.
const SEARCH_SQL: &str = "SELECT c.id, c.collection_id, c.document_id, c.chunk_index, \
     c.content, c.start_offset, c.end_offset, c.token_count, c.embedding_vector_id, \
     c.meta, c.created_at, r.score AS score \
     FROM (SELECT m.id AS id, search_score(t.search_tokens, ?5) AS score \
           FROM (SELECT rowid AS id FROM chunks_fts WHERE chunks_fts MATCH ?1 \
                 ORDER BY rowid DESC LIMIT ?4) AS m \
           JOIN chunks t ON t.id = m.id \
           ORDER BY score DESC, id LIMIT ?2 OFFSET ?3) AS r \
     JOIN chunks c ON c.id = r.id \
     ORDER BY r.score DESC, r.id";

/// [`SEARCH_SQL`] after a cursor: the hits ranked strictly after `(?3, ?4)`, among
/// the newest `?5` matches, scored with the patterns `?6`.
const SEARCH_AFTER_SQL: &str = "SELECT c.id, c.collection_id, c.document_id, c.chunk_index, \
     c.content, c.start_offset, c.end_offset, c.token_count, c.embedding_vector_id, \
     c.meta, c.created_at, r.score AS score \
     FROM (SELECT id, score FROM \
             (SELECT m.id AS id, search_score(t.search_tokens, ?6) AS score \
              FROM (SELECT rowid AS id FROM chunks_fts WHERE chunks_fts MATCH ?1 \
                    ORDER BY rowid DESC LIMIT ?5) AS m \
              JOIN chunks t ON t.id = m.id) \
           WHERE score < ?3 OR (score = ?3 AND id > ?4) \
           ORDER BY score DESC, id LIMIT ?2) AS r \
     JOIN chunks c ON c.id = r.id \
     ORDER BY r.score DESC, r.id";

/// The matches counted up to a limit (`SEARCH_TOTAL_CAP + 1`), on the FTS5 table
/// alone.
const SEARCH_COUNT_SQL: &str = "SELECT COUNT(*) AS total \
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
    start: SearchStart,
    limit: i64,
) -> RepoResult<SearchPage> {
    // `to_fts5` builds the expression from alphanumeric tokens only and the
    // collection token is hex; it is bound all the same.
    let Some(expression) = collection_match(collection_id, query) else {
        return Ok(SearchPage::empty());
    };
    let patterns = query
        .scored_patterns()
        .join(&repo_core::search::SCORE_PATTERN_SEPARATOR.to_string());
    // One row more than the page tells whether a next page exists.
    let rows: Vec<HitRow> = match start {
        SearchStart::Offset(offset) => diesel::sql_query(SEARCH_SQL)
            .bind::<Text, _>(&expression)
            .bind::<BigInt, _>(limit + 1)
            .bind::<BigInt, _>(offset)
            .bind::<BigInt, _>(SearchPage::rank_limit_i64())
            .bind::<Text, _>(&patterns)
            .load(conn),
        SearchStart::After(after) => diesel::sql_query(SEARCH_AFTER_SQL)
            .bind::<Text, _>(&expression)
            .bind::<BigInt, _>(limit + 1)
            .bind::<Double, _>(after.score())
            .bind::<BigInt, _>(after.id())
            .bind::<BigInt, _>(SearchPage::rank_limit_i64())
            .bind::<Text, _>(&patterns)
            .load(conn),
    }
    .map_err(map_diesel_error)?;
    let counted: SearchTotal = diesel::sql_query(SEARCH_COUNT_SQL)
        .bind::<Text, _>(&expression)
        .bind::<BigInt, _>(SearchPage::count_limit_i64())
        .get_result(conn)
        .map_err(map_diesel_error)?;
    search_page(rows, counted, start, limit)
}

repo_diesel::chunk_repository!(
    impl<S: ConnectionSource> for SqliteChunks<S>, source: src;
    insert_many: write,
    list_by_document: read,
    without_embedding: run,
    set_embedding_ids: run,
    delete_by_document: run,
    delete_by_collection: run,
    count: run,
    search: read,
    search_after: read,
);
