//! [`ChunkRepository`] on PostgreSQL: bulk insert through `COPY`, embedding
//! bookkeeping, and full-text search over `search_tokens`.
//!
//! Every write stores [`index_text`] of the content in `search_tokens` (tokens
//! computed in Rust, as on SQLite). Search decides each phrase by a substring test
//! of its [`Phrase::pattern`](repo_core::search::Phrase::pattern) on that text, after
//! a prefilter through the GIN index on `(collection_id, search_tsv)` (btree_gin), the
//! generated vector of the tokens; chunks too large for a vector (NULL `search_tsv`)
//! skip the prefilter and are read through the partial index
//! `chunks_search_unindexed_idx`, in a second `UNION ALL` branch. The newest
//! `SEARCH_RANK_CAP` matches are scored (each branch limited on its own, so that a
//! common word walks `(collection_id, id)` backwards and stops at the cap); the page's
//! hits are ranked on `(score, id)` alone and joined back to `chunks` for the page's
//! rows only; the total is counted up to `SEARCH_TOTAL_CAP + 1` matches. A bulk
//! `insert_many` flushes the GIN pending list and refreshes the partition's
//! statistics ([`after_bulk_write`]).
//!
//! `chunks` is hash-partitioned by `collection_id`, and its indexes all lead with
//! that column, so every query here names the collection: PostgreSQL then touches one
//! partition only.
//!
//! Row types, the checks of a bulk insert (the core's rules over facts read alike on
//! both backends), the plain statements and the trait forwarding are expanded from
//! `repo_diesel`'s macros.

use crate::codec::PgCodec;
use crate::collections as collection_repo;
use crate::connection::{ConnectionSource, QueryResultExt};
use crate::documents::{self as document_repo, BulkStrategy, PG_MAX_BINDS};
use crate::error::map_diesel_error;
use crate::schema::{chunks, documents};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Int8, Nullable, Text, Uuid as SqlUuid};
use repo_core::chunk::{
    last_embedding_per_chunk, prepare_batch, statistics_stale, BULK_MAINTENANCE_MIN_ROWS,
};
use repo_core::search::index_text;
use repo_core::{
    Chunk, CollectionId, DocumentId, NewChunk, Page, PageRequest, RepoError, RepoResult,
    SearchPage, SearchQuery, SearchStart, Timestamp,
};
use repo_diesel::chunks::SearchTotal;
use serde_json::Value;
use std::collections::HashSet;

repo_diesel::chunk_row!(
    backend: Pg,
    codec: PgCodec,
    uuid: uuid::Uuid,
    timestamp: Timestamp,
    json: Value,
);

// Every column but `id` (from `chunks_id_seq`) and `search_tsv` (generated).
repo_diesel::insert_chunk!(codec: PgCodec, uuid: uuid::Uuid, timestamp: Timestamp);

repo_diesel::chunk_statements!(
    conn: PgConnection,
    codec: PgCodec,
    uuid: uuid::Uuid,
    map_err: map_diesel_error,
    // `= ANY($1)`: one array parameter, whatever the number of documents.
    ids_per_statement: usize::MAX,
);

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
    let values = InsertChunk::from_domain_all(rows)?;
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
    collection_repo::ensure_exists(conn, collection_id)?;
    if rows.is_empty() {
        return Ok(0);
    }
    check_batch(conn, collection_id, &rows)?;
    let written = write_chunks(conn, &rows, strategy)?;
    after_bulk_write(conn, collection_id, written)?;
    Ok(written)
}

fn insert_many(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    batch: &[NewChunk],
) -> RepoResult<u64> {
    insert_many_with(conn, collection_id, batch, INSERT_STRATEGY)
}

/// Keeps plans independent of luck after a bulk write of at least
/// [`BULK_MAINTENANCE_MIN_ROWS`] chunks, on the partition holding `collection_id`:
///
/// - moves the GIN index's pending list (`fastupdate`, where `COPY` puts new entries)
///   into the index with `gin_clean_pending_list`: every search would otherwise read
///   the whole list, and the planner, costing it, prefers a B-tree or a sequential
///   scan of the collection to the full-text index;
/// - `ANALYZE`s the partition when its statistics are stale ([`statistics_stale`] with
///   `reltuples` and `pg_stat_get_mod_since_analyze`, plus this call's rows, not
///   counted there before the commit): PostgreSQL's own autoanalyze rule, applied at
///   once instead of up to a minute later, so that the planner knows how the
///   collection and the words are distributed.
///
/// Both run in the caller's transaction (ANALYZE counts the rows it wrote), only on
/// objects the current role owns (a runtime role that does not own the tables leaves
/// this to autovacuum), and ANALYZE with `SKIP_LOCKED`, so it never waits for an
/// ANALYZE or VACUUM already running. The partition's name comes from the catalog
/// (`regclass`, quoted by PostgreSQL), never from input.
fn after_bulk_write(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    written: u64,
) -> RepoResult<()> {
    #[derive(QueryableByName)]
    struct Partition {
        #[diesel(sql_type = BigInt)]
        oid: i64,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Double)]
        reltuples: f64,
        #[diesel(sql_type = Double)]
        modified: f64,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        owned: bool,
    }
    if written < BULK_MAINTENANCE_MIN_ROWS {
        return Ok(());
    }
    let partition: Option<Partition> = diesel::sql_query(
        "SELECT p.oid::int8 AS oid, p.oid::regclass::text AS name, \
                p.reltuples::float8 AS reltuples, \
                pg_stat_get_mod_since_analyze(p.oid)::float8 AS modified, \
                pg_has_role(p.relowner, 'USAGE') AS owned \
         FROM pg_class AS p \
         WHERE p.oid = (SELECT tableoid FROM chunks WHERE collection_id = $1 LIMIT 1)",
    )
    .bind::<SqlUuid, _>(collection_id.0)
    .get_result(conn)
    .optional()
    .db()?;
    let Some(partition) = partition else {
        return Ok(());
    };
    diesel::sql_query(
        "SELECT gin_clean_pending_list(i.indexrelid) \
         FROM pg_index AS i \
         JOIN pg_class AS ic ON ic.oid = i.indexrelid \
         JOIN pg_am AS am ON am.oid = ic.relam \
         WHERE i.indrelid = $1::int8::oid AND am.amname = 'gin' \
           AND pg_has_role(ic.relowner, 'USAGE')",
    )
    .bind::<BigInt, _>(partition.oid)
    .execute(conn)
    .db()?;
    if partition.owned && statistics_stale(partition.reltuples, partition.modified, written) {
        diesel::sql_query(format!("ANALYZE (SKIP_LOCKED) {}", partition.name))
            .execute(conn)
            .db()?;
    }
    Ok(())
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
        items: many(rows)?,
        total: repo_diesel::codec::count(total),
    })
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

/// The exact test of a search, built from the query's structure only: `$1` is the
/// text[] of phrase patterns. Returns the clause and the patterns to bind as `$1`.
fn search_filter(query: &SearchQuery) -> (String, Vec<String>) {
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
    (format!("({})", alternatives.join(" OR ")), patterns)
}

/// The score, [`repo_core::search::score`] written in SQL (SQLite calls the Rust
/// function itself; the behaviour suite checks that every hit's score equals it):
/// occurrences of the included phrases (non-overlapping, counted by `replace`),
/// over the logarithm of 2 plus the tokens' length. Positive for every hit.
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
    // float8 throughout: `ln` of a numeric costs a microsecond a row.
    format!(
        "({})::float8 / ln(2.0::float8 + length(c.search_tokens))",
        counts.join(" + ")
    )
}

/// The matching chunks of a search as `SELECT {columns} FROM chunks AS c WHERE …`
/// branches, each served by its own index: the chunks with a vector through the GIN
/// index on `(collection_id, search_tsv)` (`$4` is the prefilter tsquery), and the
/// chunks without one through the partial index `chunks_search_unindexed_idx`. Two
/// branches (joined by `UNION ALL`) instead of an `OR`, so that the plan uses the
/// full-text index whether or not the partition has statistics. Without a prefilter
/// (a query with an alternative made only of over-long tokens) every chunk of the
/// collection is tested, in one branch.
fn search_branches(columns: &str, filter: &str, prefilter: Prefilter) -> Vec<String> {
    if let Prefilter::Index { exact } = prefilter {
        // An exact prefilter needs no substring test in the indexed branch.
        let indexed_filter = if exact { "TRUE" } else { filter };
        vec![
            format!(
                "SELECT {columns} FROM chunks AS c \
                 WHERE c.collection_id = $2 AND c.search_tsv @@ $4::tsquery \
                   AND {indexed_filter}"
            ),
            format!(
                "SELECT {columns} FROM chunks AS c \
                 WHERE c.collection_id = $2 AND c.search_tsv IS NULL \
                   AND c.search_tokens IS NOT NULL AND {filter}"
            ),
        ]
    } else {
        vec![format!(
            "SELECT {columns} FROM chunks AS c \
             WHERE c.collection_id = $2 AND c.search_tokens IS NOT NULL AND {filter}"
        )]
    }
}

/// How the chunks with a vector are found.
#[derive(Debug, Clone, Copy)]
enum Prefilter {
    /// Every chunk of the collection is tested (some alternative has no lexeme).
    None,
    /// Through the GIN index (`$4`), then the substring test unless `exact`
    /// ([`SearchQuery::prefilter_is_exact`]).
    Index { exact: bool },
}

impl Prefilter {
    fn of(query: &SearchQuery, tsquery: Option<&String>) -> Self {
        match tsquery {
            Some(_) => Self::Index {
                exact: query.prefilter_is_exact(),
            },
            None => Self::None,
        }
    }
}

/// The ranked set of a search: the newest `SEARCH_RANK_CAP` matches with their
/// scores. Each branch is limited on its own, so that the planner can walk
/// `(collection_id, id)` backwards and stop once it has the cap (a common word: the
/// score is computed for the cap's rows only, not for every match), or take the
/// full-text index and sort (a rare word); the union is limited again. The cap is a
/// literal so that the plan knows it.
fn ranked_matches(columns: &str, filter: &str, prefilter: Prefilter) -> String {
    let cap = SearchPage::rank_limit_i64();
    let limited: Vec<String> = search_branches(columns, filter, prefilter)
        .into_iter()
        .map(|branch| format!("{branch} ORDER BY c.id DESC LIMIT {cap}"))
        .collect();
    match limited.as_slice() {
        [one] => one.clone(),
        several => format!(
            "({}) ORDER BY id DESC LIMIT {cap}",
            several.join(") UNION ALL (")
        ),
    }
}

/// The search statements of one query, with every value to bind.
struct SearchStatements {
    /// `$1`: the phrase patterns.
    patterns: Vec<String>,
    /// `$4`: the prefilter tsquery, when there is one.
    prefilter: Option<String>,
    /// The page: `(score, id)` of the page's hits ranked on the index alone, limited
    /// to `$3` rows, then joined to `chunks` for the page's rows only.
    page_sql: String,
    /// The matches counted up to `$3`.
    count_sql: String,
}

impl SearchStatements {
    fn new(query: &SearchQuery, start: SearchStart) -> Self {
        // Only the shape of the SQL (how many phrases, in which alternatives) comes
        // from the query; every token is bound, as text[] `$1` and tsquery text `$4`.
        let prefilter = query.prefilter_tsquery();
        let (filter, patterns) = search_filter(query);
        let score = search_score(query, &patterns);
        let how = Prefilter::of(query, prefilter.as_ref());
        let ranked = ranked_matches(&format!("c.id, {score} AS score"), &filter, how);
        let window = match start {
            SearchStart::Offset(_) => "ORDER BY score DESC, id LIMIT $3 OFFSET $5",
            SearchStart::After(_) => {
                "WHERE score < $5 OR (score = $5 AND id > $6) \
                 ORDER BY score DESC, id LIMIT $3"
            }
        };
        // The page's rows are fetched one by one through the primary key (a LATERAL
        // subquery that `LIMIT 1` keeps from being flattened into a join): with a
        // partition's statistics older than a collection's growth, the planner
        // expected one ranked row and read the whole collection once per hit of
        // the page (1 s for a page of 21 in a 100,000-chunk collection).
        let page_sql = format!(
            "SELECT r.id, c.collection_id, c.document_id, c.chunk_index, c.content, \
                    c.start_offset, c.end_offset, c.token_count, c.embedding_vector_id, \
                    c.meta, c.created_at, r.score \
             FROM (SELECT id, score FROM ({ranked}) AS m {window}) AS r \
             CROSS JOIN LATERAL (SELECT c.collection_id, c.document_id, c.chunk_index, \
                    c.content, c.start_offset, c.end_offset, c.token_count, \
                    c.embedding_vector_id, c.meta, c.created_at \
                  FROM chunks AS c WHERE c.collection_id = $2 AND c.id = r.id LIMIT 1) AS c \
             ORDER BY r.score DESC, r.id"
        );
        let count_sql = format!(
            "SELECT count(*) AS total FROM ({} LIMIT $3) AS m",
            search_branches("1", &filter, how).join(" UNION ALL ")
        );
        Self {
            patterns,
            prefilter,
            page_sql,
            count_sql,
        }
    }

    /// `sql` (prefixed with `prefix`, e.g. `EXPLAIN`) with `$1` to `$4` bound.
    fn bind_common(
        &self,
        prefix: &str,
        sql: &str,
        collection_id: CollectionId,
        limit: i64,
    ) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
        diesel::sql_query(format!("{prefix}{sql}"))
            .into_boxed::<Pg>()
            .bind::<Array<Text>, _>(self.patterns.clone())
            .bind::<SqlUuid, _>(collection_id.0)
            .bind::<BigInt, _>(limit)
            .bind::<Nullable<Text>, _>(self.prefilter.clone())
    }

    /// The page statement, fetching `limit` rows.
    fn page(
        &self,
        prefix: &str,
        collection_id: CollectionId,
        start: SearchStart,
        limit: i64,
    ) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
        let query = self.bind_common(prefix, &self.page_sql, collection_id, limit);
        match start {
            SearchStart::Offset(offset) => query.bind::<BigInt, _>(offset),
            SearchStart::After(after) => query
                .bind::<Double, _>(after.score())
                .bind::<BigInt, _>(after.id()),
        }
    }

    /// The count statement.
    fn count(
        &self,
        collection_id: CollectionId,
    ) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
        self.bind_common(
            "",
            &self.count_sql,
            collection_id,
            SearchPage::count_limit_i64(),
        )
    }
}

fn search(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    query: &SearchQuery,
    start: SearchStart,
    limit: i64,
) -> RepoResult<SearchPage> {
    if query.is_empty() {
        return Ok(SearchPage::empty());
    }
    let statements = SearchStatements::new(query, start);
    // One row more than the page tells whether a next page exists.
    let rows: Vec<HitRow> = statements
        .page("", collection_id, start, limit + 1)
        .load(conn)
        .db()?;
    let counted: SearchTotal = statements.count(collection_id).get_result(conn).db()?;
    search_page(rows, counted, start, limit)
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

repo_diesel::chunk_repository!(
    impl<S: ConnectionSource> for PgChunks<S>, source: src;
    insert_many: write,
    list_by_document: read,
    without_embedding: read,
    set_embedding_ids: run,
    delete_by_document: write,
    delete_by_collection: run,
    count: read,
    search: read,
    search_after: read,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::read_committed;
    use crate::testing::TempDatabase;
    use diesel::Connection;
    use repo_core::{NewCollection, NewDocument, NewUser, Repositories, StoreConfig};

    /// A temporary database and a store on it, with one collection holding one
    /// document.
    fn fixture() -> (TempDatabase, crate::PostgresStore, CollectionId, DocumentId) {
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
        (db, store, c, d)
    }

    /// A unique violation raised inside `COPY` maps like one raised by `INSERT`, and
    /// the connection stays usable afterwards.
    #[test]
    fn copy_unique_violation_is_already_exists() {
        let (db, _store, c, d) = fixture();
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
                        field: repo_core::Field::ChunkIndex
                    }
                ),
                "{strategy:?}: {err:?}"
            );
            assert_eq!(count(&mut conn, c).unwrap(), 1, "{strategy:?}");
        }
    }

    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        plan: String,
    }

    /// Every `(node type, relation or index name)` of a JSON plan.
    fn plan_nodes(node: &Value, out: &mut Vec<(String, String)>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(kind)) = map.get("Node Type") {
                    let name = map
                        .get("Index Name")
                        .or_else(|| map.get("Relation Name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.push((kind.clone(), name.to_owned()));
                }
                map.values().for_each(|v| plan_nodes(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| plan_nodes(v, out)),
            _ => {}
        }
    }

    /// `reltuples` of the partition holding the collection's chunks (-1: never
    /// analyzed or vacuumed).
    fn partition_reltuples(conn: &mut PgConnection, c: CollectionId) -> f64 {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Double)]
            reltuples: f64,
        }
        diesel::sql_query(
            "SELECT reltuples::float8 AS reltuples FROM pg_class \
             WHERE oid = (SELECT tableoid FROM chunks WHERE collection_id = $1 LIMIT 1)",
        )
        .bind::<SqlUuid, _>(c.0)
        .get_result::<Row>(conn)
        .expect("reltuples")
        .reltuples
    }

    /// A bulk `insert_many` analyzes its partition; and a rare word in a freshly loaded
    /// collection whose partition has no statistics is still searched through the
    /// full-text index (`EXPLAIN (FORMAT JSON)` of the search statement: a bitmap scan
    /// of the GIN index on `(collection_id, search_tsv)`, no sequential scan), and
    /// finds its chunks.
    #[test]
    fn rare_word_search_uses_the_full_text_index_without_statistics() {
        let (db, store, c, d) = fixture();
        let mut conn = PgConnection::establish(db.url()).expect("connection");
        // No autovacuum may analyze a partition while the test looks at its plans.
        diesel::sql_query(
            "DO $$ DECLARE p regclass; BEGIN \
               FOR p IN SELECT inhrelid::regclass FROM pg_inherits \
                        WHERE inhparent = 'chunks'::regclass LOOP \
                 EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', p); \
               END LOOP; END $$",
        )
        .execute(&mut conn)
        .expect("autovacuum off");
        // 20,000 chunks in two bulk calls; the rare word is in 5 of them.
        for part in 0..2 {
            let batch: Vec<NewChunk> = (0..10_000)
                .map(|i| {
                    let n = part * 10_000 + i;
                    let rare = if n % 4_000 == 7 { " zyzzyva" } else { "" };
                    NewChunk::new(
                        d,
                        n,
                        format!("common filler text number {n} with words{rare}"),
                    )
                })
                .collect();
            store.chunks().insert_many(c, &batch).expect("load");
        }
        assert!(
            partition_reltuples(&mut conn, c) >= 20_000.0,
            "insert_many analyzed the partition"
        );
        // Then the statistics are taken away: the partition is as a bulk load leaves
        // it before any ANALYZE (by another tool, or with statistics reset).
        diesel::sql_query(
            "WITH p AS (SELECT tableoid AS oid FROM chunks WHERE collection_id = $1 LIMIT 1), \
                  gone AS (DELETE FROM pg_statistic WHERE starelid = (SELECT oid FROM p)) \
             UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = (SELECT oid FROM p)",
        )
        .bind::<SqlUuid, _>(c.0)
        .execute(&mut conn)
        .expect("statistics removed");
        assert!(
            partition_reltuples(&mut conn, c) < 0.0,
            "the premise: the partition has no statistics"
        );
        let query = SearchQuery::parse("zyzzyva");
        let start = SearchStart::Offset(0);
        let statements = SearchStatements::new(&query, start);
        let plan: Plan = statements
            .page("EXPLAIN (FORMAT JSON) ", c, start, 21)
            .get_result(&mut conn)
            .expect("explain");
        let plan: Value = serde_json::from_str(&plan.plan).expect("plan JSON");
        let mut nodes = Vec::new();
        plan_nodes(&plan, &mut nodes);
        assert!(
            nodes
                .iter()
                .any(|(kind, name)| kind == "Bitmap Index Scan" && name.contains("search_tsv")),
            "the full-text index is in the plan: {nodes:?}"
        );
        assert!(
            !nodes.iter().any(|(kind, _)| kind == "Seq Scan"),
            "no sequential scan: {nodes:?}"
        );
        let page = store
            .chunks()
            .search(c, &query, PageRequest::first(20))
            .expect("search");
        assert_eq!((page.items.len(), page.total), (5, 5));
    }
}
