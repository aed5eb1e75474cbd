//! [`ChunkRepository`] on PostgreSQL: bulk insert through `COPY`, embedding
//! bookkeeping, and full-text search over `search_tokens`.
//!
//! Every write stores [`index_text`] of the content in `search_tokens` (tokens
//! computed in Rust, as on SQLite). Search decides each phrase by a substring test
//! of its [`Phrase::pattern`](repo_core::search::Phrase::pattern) on that text, after
//! a prefilter through the GIN index on the generated `search_tsv` vector; chunks too
//! large for a vector (NULL `search_tsv`) skip the prefilter and are read through the
//! partial index `chunks_search_unindexed_idx`.
//!
//! `chunks` is hash-partitioned by `collection_id`, and its indexes all lead with
//! that column, so every query here names the collection: PostgreSQL then touches one
//! partition only.

use crate::collections as collection_repo;
use crate::connection::{ConnectionSource, QueryResultExt};
use crate::documents::{self as document_repo, BulkStrategy, PG_MAX_BINDS};
use crate::schema::{chunks, documents};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Int8, Text, Uuid as SqlUuid};
use repo_core::chunk::{last_embedding_per_chunk, prepare_batch};
use repo_core::search::index_text;
use repo_core::{
    Chunk, ChunkRepository, CollectionId, DocumentId, Field, NewChunk, Page, PageRequest,
    RepoError, RepoResult, SearchHit, SearchQuery, Timestamp,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// A `chunks` row (without `search_tokens` and the generated `search_tsv`).
#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = chunks, check_for_backend(Pg))]
struct ChunkRow {
    id: i64,
    collection_id: uuid::Uuid,
    document_id: uuid::Uuid,
    chunk_index: i32,
    content: String,
    start_offset: Option<i32>,
    end_offset: Option<i32>,
    token_count: Option<i32>,
    embedding_vector_id: Option<String>,
    meta: Value,
    created_at: Timestamp,
}

impl ChunkRow {
    fn into_domain(self) -> Chunk {
        Chunk {
            id: self.id,
            collection_id: CollectionId(self.collection_id),
            document_id: DocumentId(self.document_id),
            chunk_index: self.chunk_index,
            content: self.content,
            start_offset: self.start_offset,
            end_offset: self.end_offset,
            token_count: self.token_count,
            embedding_vector_id: self.embedding_vector_id,
            meta: self.meta,
            created_at: self.created_at,
        }
    }
}

/// A new chunk: every column but `id` (from `chunks_id_seq`) and `search_tsv`
/// (generated). `None` is NULL, never DEFAULT, as binary `COPY` requires.
#[derive(Insertable)]
#[diesel(table_name = chunks, treat_none_as_default_value = false)]
pub(crate) struct InsertChunk<'a> {
    collection_id: uuid::Uuid,
    document_id: uuid::Uuid,
    chunk_index: i32,
    content: &'a str,
    start_offset: Option<i32>,
    end_offset: Option<i32>,
    token_count: Option<i32>,
    embedding_vector_id: Option<&'a str>,
    meta: &'a Value,
    created_at: Timestamp,
    search_tokens: String,
}

impl<'a> From<&'a Chunk> for InsertChunk<'a> {
    fn from(c: &'a Chunk) -> Self {
        Self {
            collection_id: c.collection_id.0,
            document_id: c.document_id.0,
            chunk_index: c.chunk_index,
            content: &c.content,
            start_offset: c.start_offset,
            end_offset: c.end_offset,
            token_count: c.token_count,
            embedding_vector_id: c.embedding_vector_id.as_deref(),
            meta: &c.meta,
            created_at: c.created_at,
            search_tokens: index_text(&c.content),
        }
    }
}

/// The strategy of [`ChunkRepository::insert_many`]: `COPY` straight into `chunks`
/// (every rule is checked before), measured against multi-row `INSERT` in the
/// `bulk_strategies` test of `documents.rs`.
pub(crate) const INSERT_STRATEGY: BulkStrategy = BulkStrategy::Copy;

/// Writes validated chunks; returns how many rows were written.
pub(crate) fn write_chunks(
    conn: &mut PgConnection,
    rows: &[Chunk],
    strategy: BulkStrategy,
) -> RepoResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let values: Vec<InsertChunk<'_>> = rows.iter().map(InsertChunk::from).collect();
    let n = match strategy {
        BulkStrategy::Copy => diesel::copy_from(chunks::table)
            .from_insertable(&values)
            .execute(conn)
            .db()?,
        BulkStrategy::MultiRowInsert => {
            const COLUMNS: usize = 11;
            let mut n = 0;
            for slice in values.chunks(PG_MAX_BINDS / COLUMNS) {
                n += diesel::insert_into(chunks::table)
                    .values(slice)
                    .execute(conn)
                    .db()?;
            }
            n
        }
    };
    Ok(n as u64)
}

/// `insert_many` with a chosen write strategy.
pub(crate) fn insert_many_with(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    batch: &[NewChunk],
    strategy: BulkStrategy,
) -> RepoResult<u64> {
    let rows = prepare_batch(collection_id, batch)?;
    collection_repo::require(conn, collection_id)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut doc_ids: Vec<uuid::Uuid> = rows.iter().map(|c| c.document_id.0).collect();
    doc_ids.sort_unstable();
    doc_ids.dedup();
    // The collection of every referenced document.
    let owners: HashMap<uuid::Uuid, uuid::Uuid> = documents::table
        .filter(documents::id.eq_any(&doc_ids))
        .select((documents::id, documents::collection_id))
        .load::<(uuid::Uuid, uuid::Uuid)>(conn)
        .db()?
        .into_iter()
        .collect();
    // Every document first, then every chunk index, each in input order (as on
    // SQLite), so the error names the first item breaking the first rule.
    for (i, c) in rows.iter().enumerate() {
        match owners.get(&c.document_id.0) {
            None => {
                return Err(RepoError::validation(
                    Field::DocumentId,
                    format!("document {} does not exist", c.document_id),
                )
                .for_item(i))
            }
            Some(owner) if *owner != collection_id.0 => {
                return Err(RepoError::validation(
                    Field::DocumentId,
                    format!("document {} belongs to another collection", c.document_id),
                )
                .for_item(i))
            }
            Some(_) => {}
        }
    }
    // The indexes those documents already hold, through the unique index of one
    // partition; the batch's range of indexes narrows the read when documents
    // already hold many chunks.
    let lo = rows.iter().map(|c| c.chunk_index).min().unwrap_or(0);
    let hi = rows.iter().map(|c| c.chunk_index).max().unwrap_or(0);
    let stored: HashSet<(uuid::Uuid, i32)> = chunks::table
        .filter(chunks::collection_id.eq(collection_id.0))
        .filter(chunks::document_id.eq_any(&doc_ids))
        .filter(chunks::chunk_index.between(lo, hi))
        .select((chunks::document_id, chunks::chunk_index))
        .load::<(uuid::Uuid, i32)>(conn)
        .db()?
        .into_iter()
        .collect();
    if let Some(i) = rows
        .iter()
        .position(|c| stored.contains(&(c.document_id.0, c.chunk_index)))
    {
        return Err(RepoError::validation(
            Field::ChunkIndex,
            format!(
                "chunk {} of document {} is already stored",
                rows[i].chunk_index, rows[i].document_id
            ),
        )
        .for_item(i));
    }
    write_chunks(conn, &rows, strategy)
}

fn list_by_document(
    conn: &mut PgConnection,
    document_id: DocumentId,
    page: PageRequest,
) -> RepoResult<Page<Chunk>> {
    let collection_id = document_repo::collection_of(conn, document_id)?;
    let of_document = || {
        chunks::table
            .filter(chunks::collection_id.eq(collection_id.0))
            .filter(chunks::document_id.eq(document_id.0))
    };
    let rows = of_document()
        .select(ChunkRow::as_select())
        .order(chunks::chunk_index.asc())
        .limit(page.limit_i64())
        .offset(page.offset_i64())
        .load(conn)
        .db()?;
    let total: i64 = of_document().count().get_result(conn).db()?;
    Ok(Page {
        items: rows.into_iter().map(ChunkRow::into_domain).collect(),
        total: u64::try_from(total).unwrap_or(0),
    })
}

fn without_embedding(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    limit: u32,
) -> RepoResult<Vec<Chunk>> {
    // Served by the partial index `chunks_collection_embedding_idx`.
    let rows = chunks::table
        .filter(chunks::collection_id.eq(collection_id.0))
        .filter(chunks::embedding_vector_id.is_null())
        .select(ChunkRow::as_select())
        .order(chunks::id.asc())
        .limit(i64::from(limit))
        .load(conn)
        .db()?;
    Ok(rows.into_iter().map(ChunkRow::into_domain).collect())
}

fn set_embedding_ids(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    pairs: &[(i64, String)],
) -> RepoResult<u64> {
    let unique = last_embedding_per_chunk(pairs)?;
    if unique.is_empty() {
        return Ok(0);
    }
    let (ids, vector_ids): (Vec<i64>, Vec<&str>) = unique.into_iter().unzip();
    // One statement for the whole list; the collection names the one partition to
    // touch, through the (collection_id, id) primary key.
    let n = diesel::sql_query(
        "UPDATE chunks AS c SET embedding_vector_id = v.vector_id \
         FROM unnest($1::int8[], $2::text[]) AS v(id, vector_id) \
         WHERE c.collection_id = $3 AND c.id = v.id",
    )
    .bind::<Array<Int8>, _>(&ids)
    .bind::<Array<Text>, _>(&vector_ids)
    .bind::<SqlUuid, _>(collection_id.0)
    .execute(conn)
    .db()?;
    Ok(n as u64)
}

fn delete_by_document(conn: &mut PgConnection, document_id: DocumentId) -> RepoResult<u64> {
    let collection_id = match document_repo::collection_of(conn, document_id) {
        Ok(c) => c,
        Err(RepoError::NotFound { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    let n = diesel::delete(
        chunks::table
            .filter(chunks::collection_id.eq(collection_id.0))
            .filter(chunks::document_id.eq(document_id.0)),
    )
    .execute(conn)
    .db()?;
    Ok(n as u64)
}

fn delete_by_collection(conn: &mut PgConnection, collection_id: CollectionId) -> RepoResult<u64> {
    let n = diesel::delete(chunks::table.filter(chunks::collection_id.eq(collection_id.0)))
        .execute(conn)
        .db()?;
    Ok(n as u64)
}

fn count(conn: &mut PgConnection, collection_id: CollectionId) -> RepoResult<u64> {
    let n: i64 = chunks::table
        .filter(chunks::collection_id.eq(collection_id.0))
        .count()
        .get_result(conn)
        .db()?;
    Ok(u64::try_from(n).unwrap_or(0))
}

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
    total: i64,
}

/// The WHERE clause of a search (after the collection), built from the query's
/// structure only: `$1` is the text[] of phrase patterns, `$5` the prefilter tsquery
/// when there is one. Returns the clause and the patterns to bind as `$1`.
fn search_filter(query: &SearchQuery, prefilter: bool) -> (String, Vec<String>) {
    let mut patterns: Vec<String> = Vec::new();
    let mut slot = |pattern: String| {
        let i = patterns
            .iter()
            .position(|p| *p == pattern)
            .unwrap_or_else(|| {
                patterns.push(pattern);
                patterns.len() - 1
            });
        // SQL arrays are 1-based.
        i + 1
    };
    let mut alternatives = Vec::with_capacity(query.any_of.len());
    for c in &query.any_of {
        let mut tests = Vec::with_capacity(c.include.len() + c.exclude.len());
        for p in &c.include {
            tests.push(format!(
                "strpos(c.search_tokens, $1[{}]) > 0",
                slot(p.pattern())
            ));
        }
        for p in &c.exclude {
            tests.push(format!(
                "strpos(c.search_tokens, $1[{}]) = 0",
                slot(p.pattern())
            ));
        }
        alternatives.push(format!("({})", tests.join(" AND ")));
    }
    let mut clause = format!("({})", alternatives.join(" OR "));
    if prefilter {
        clause.push_str(
            " AND (c.search_tsv @@ $5::tsquery \
             OR (c.search_tsv IS NULL AND c.search_tokens IS NOT NULL))",
        );
    }
    (clause, patterns)
}

/// The score: occurrences of the included phrases (non-overlapping, counted by
/// `replace`), damped by the logarithm of the tokens' length, like `ts_rank`'s
/// length normalisation. Positive for every hit.
fn search_score(query: &SearchQuery, patterns: &[String]) -> String {
    let included: HashSet<String> = query
        .any_of
        .iter()
        .flat_map(|c| c.include.iter().map(|p| p.pattern()))
        .collect();
    let counts: Vec<String> = patterns
        .iter()
        .enumerate()
        .filter(|(_, p)| included.contains(*p))
        .map(|(i, _)| {
            format!(
                "(length(c.search_tokens) - length(replace(c.search_tokens, $1[{n}], ''))) \
                 / length($1[{n}])",
                n = i + 1
            )
        })
        .collect();
    format!(
        "({})::float8 / ln(2.0 + length(c.search_tokens))::float8",
        counts.join(" + ")
    )
}

fn search(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    query: &SearchQuery,
    page: PageRequest,
) -> RepoResult<Page<SearchHit>> {
    if query.is_empty() {
        return Ok(Page {
            items: Vec::new(),
            total: 0,
        });
    }
    // Only the shape of the SQL (how many phrases, in which alternatives) comes from
    // the query; every token is bound, as text[] `$1` and tsquery text `$5`.
    let prefilter = query.prefilter_tsquery();
    let (filter, patterns) = search_filter(query, prefilter.is_some());
    let score = search_score(query, &patterns);
    let mut rows_query = diesel::sql_query(format!(
        "SELECT c.id, c.collection_id, c.document_id, c.chunk_index, c.content, \
                c.start_offset, c.end_offset, c.token_count, c.embedding_vector_id, \
                c.meta, c.created_at, {score} AS score \
         FROM chunks AS c \
         WHERE c.collection_id = $2 AND {filter} \
         ORDER BY score DESC, c.id \
         LIMIT $3 OFFSET $4"
    ))
    .into_boxed::<Pg>()
    .bind::<Array<Text>, _>(&patterns)
    .bind::<SqlUuid, _>(collection_id.0)
    .bind::<BigInt, _>(page.limit_i64())
    .bind::<BigInt, _>(page.offset_i64());
    // The count names $3 and $4 too, so that one parameter list serves both.
    let mut total_query = diesel::sql_query(format!(
        "SELECT count(*) AS total FROM chunks AS c \
         WHERE c.collection_id = $2 AND $3::int8 IS NOT NULL AND $4::int8 IS NOT NULL \
           AND {filter}"
    ))
    .into_boxed::<Pg>()
    .bind::<Array<Text>, _>(&patterns)
    .bind::<SqlUuid, _>(collection_id.0)
    .bind::<BigInt, _>(page.limit_i64())
    .bind::<BigInt, _>(page.offset_i64());
    if let Some(tsquery) = &prefilter {
        rows_query = rows_query.bind::<Text, _>(tsquery.clone());
        total_query = total_query.bind::<Text, _>(tsquery.clone());
    }
    let rows: Vec<HitRow> = rows_query.load(conn).db()?;
    let total: Total = total_query.get_result(conn).db()?;
    Ok(Page {
        items: rows
            .into_iter()
            .map(|r| SearchHit {
                chunk: r.chunk.into_domain(),
                score: r.score,
            })
            .collect(),
        total: u64::try_from(total.total).unwrap_or(0),
    })
}

/// Rows filled per statement by [`backfill_search_tokens`].
const BACKFILL_BATCH: i64 = 500;

/// Fills `search_tokens` of every chunk that has none (rows stored before the
/// `search_tokens` migration, or written by another tool), [`BACKFILL_BATCH`] rows
/// per statement. Idempotent: only NULL rows are read and written, so concurrent or
/// repeated runs do no harm. Returns the number of rows filled.
pub(crate) fn backfill_search_tokens(conn: &mut PgConnection) -> RepoResult<u64> {
    let mut filled = 0;
    loop {
        // Served by the partial index `chunks_search_tokens_missing_idx`.
        let rows: Vec<(uuid::Uuid, i64, String)> = chunks::table
            .filter(chunks::search_tokens.is_null())
            .select((chunks::collection_id, chunks::id, chunks::content))
            .order(chunks::id.asc())
            .limit(BACKFILL_BATCH)
            .load(conn)
            .db()?;
        if rows.is_empty() {
            return Ok(filled);
        }
        let collections: Vec<uuid::Uuid> = rows.iter().map(|r| r.0).collect();
        let ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
        let tokens: Vec<String> = rows.iter().map(|r| index_text(&r.2)).collect();
        let n = diesel::sql_query(
            "UPDATE chunks AS c SET search_tokens = v.tokens \
             FROM unnest($1::uuid[], $2::int8[], $3::text[]) AS v(collection_id, id, tokens) \
             WHERE c.collection_id = v.collection_id AND c.id = v.id \
               AND c.search_tokens IS NULL",
        )
        .bind::<Array<SqlUuid>, _>(&collections)
        .bind::<Array<Int8>, _>(&ids)
        .bind::<Array<Text>, _>(&tokens)
        .execute(conn)
        .db()?;
        filled += n as u64;
    }
}

/// Chunks over a [`ConnectionSource`].
pub(crate) struct PgChunks<S> {
    pub(crate) src: S,
}

impl<S: ConnectionSource> ChunkRepository for PgChunks<S> {
    fn insert_many(&self, collection_id: CollectionId, batch: &[NewChunk]) -> RepoResult<u64> {
        self.src
            .write(|c| insert_many_with(c, collection_id, batch, INSERT_STRATEGY))
    }

    fn list_by_document(
        &self,
        document_id: DocumentId,
        page: PageRequest,
    ) -> RepoResult<Page<Chunk>> {
        self.src.read(|c| list_by_document(c, document_id, page))
    }

    fn without_embedding(&self, collection_id: CollectionId, limit: u32) -> RepoResult<Vec<Chunk>> {
        self.src
            .read(|c| without_embedding(c, collection_id, limit))
    }

    fn set_embedding_ids(
        &self,
        collection_id: CollectionId,
        pairs: &[(i64, String)],
    ) -> RepoResult<u64> {
        self.src.run(|c| set_embedding_ids(c, collection_id, pairs))
    }

    fn delete_by_document(&self, document_id: DocumentId) -> RepoResult<u64> {
        self.src.write(|c| delete_by_document(c, document_id))
    }

    fn delete_by_collection(&self, collection_id: CollectionId) -> RepoResult<u64> {
        self.src.run(|c| delete_by_collection(c, collection_id))
    }

    fn count(&self, collection_id: CollectionId) -> RepoResult<u64> {
        self.src.read(|c| count(c, collection_id))
    }

    fn search(
        &self,
        collection_id: CollectionId,
        query: &SearchQuery,
        page: PageRequest,
    ) -> RepoResult<Page<SearchHit>> {
        self.src.read(|c| search(c, collection_id, query, page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::read_committed;
    use crate::testing::TempDatabase;
    use diesel::Connection;
    use repo_core::{NewCollection, NewDocument, NewUser, Repositories, StoreConfig};

    /// A unique violation raised inside `COPY` maps like one raised by `INSERT`, and
    /// the connection stays usable afterwards.
    #[test]
    fn copy_unique_violation_is_already_exists() {
        let admin = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db = TempDatabase::create(&admin).expect("temp database");
        let store =
            crate::PostgresStore::connect(db.url(), &StoreConfig::default()).expect("connect");
        let owner = store
            .users()
            .create(&NewUser::new(
                "o",
                "o@example.com",
                "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            ))
            .expect("user");
        let c = store
            .collections()
            .create(&NewCollection::new("c", owner.id))
            .expect("collection")
            .id;
        let d = store
            .documents()
            .register(&NewDocument::new(c, "/a", "a", 1, "a".repeat(64)))
            .expect("document")
            .document
            .id;
        let rows =
            prepare_batch(c, &[NewChunk::new(d, 0, "x"), NewChunk::new(d, 1, "y")]).expect("valid");
        let mut conn = PgConnection::establish(db.url()).expect("connection");
        let first = read_committed(&mut conn, |c| {
            write_chunks(c, &rows[..1], BulkStrategy::Copy)
        });
        assert_eq!(first.unwrap(), 1);
        for strategy in [BulkStrategy::Copy, BulkStrategy::MultiRowInsert] {
            let err = read_committed(&mut conn, |c| write_chunks(c, &rows, strategy)).unwrap_err();
            assert!(
                matches!(
                    err,
                    RepoError::AlreadyExists {
                        entity: repo_core::Entity::Chunk,
                        field: Field::ChunkIndex
                    }
                ),
                "{strategy:?}: {err:?}"
            );
            assert_eq!(count(&mut conn, c).unwrap(), 1, "{strategy:?}");
        }
    }
}
