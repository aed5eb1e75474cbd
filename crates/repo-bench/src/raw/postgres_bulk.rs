//! The bulk baseline on PostgreSQL: one binary `COPY … FROM STDIN` of every row in
//! one read-committed transaction, on the benchmark's plain connection; and the same
//! `COPY` per call-sized slice followed by the upkeep `repo-postgres` does after a
//! bulk call (the GIN pending list flushed, the partition analyzed when stale), to
//! tell the cost of `COPY` from the cost of keeping search plans right.

use super::BulkBaseline;
use diesel::prelude::*;
use diesel::ExecuteCopyFromDsl;
use repo_core::chunk::{statistics_stale, BULK_MAINTENANCE_MIN_ROWS};
use repo_core::search::index_text;
use repo_core::{Chunk, Document, Timestamp};
use repo_postgres::schema::{chunks, documents};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One document row in PostgreSQL's column types. `None` is NULL, never DEFAULT, as
/// binary `COPY` needs every column.
#[derive(Insertable)]
#[diesel(table_name = documents, treat_none_as_default_value = false)]
struct RawDocument<'a> {
    id: uuid::Uuid,
    collection_id: uuid::Uuid,
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
    meta: &'a Value,
    last_seen_at: Option<Timestamp>,
    is_stale: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// One chunk row (`id` from `chunks_id_seq`, `search_tsv` generated).
#[derive(Insertable)]
#[diesel(table_name = chunks, treat_none_as_default_value = false)]
struct RawChunk<'a> {
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

impl BulkBaseline for PgConnection {
    fn insert_documents(&mut self, rows: &[Document]) -> QueryResult<Duration> {
        let rows: Vec<RawDocument<'_>> = rows
            .iter()
            .map(|d| RawDocument {
                id: d.id.0,
                collection_id: d.collection_id.0,
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
                meta: &d.meta,
                last_seen_at: d.last_seen_at,
                is_stale: d.is_stale,
                created_at: d.created_at,
                updated_at: d.updated_at,
            })
            .collect();
        let start = Instant::now();
        self.transaction(|conn| {
            diesel::copy_from(documents::table)
                .from_insertable(&rows)
                .execute(conn)
        })?;
        Ok(start.elapsed())
    }

    fn insert_chunks(&mut self, rows: &[Chunk]) -> QueryResult<Duration> {
        let rows = raw_chunks(rows);
        let start = Instant::now();
        self.transaction(|conn| {
            diesel::copy_from(chunks::table)
                .from_insertable(&rows)
                .execute(conn)
        })?;
        Ok(start.elapsed())
    }

    fn insert_chunks_with_upkeep(
        &mut self,
        rows: &[Chunk],
        call: usize,
    ) -> QueryResult<Option<Duration>> {
        let Some(collection_id) = rows.first().map(|c| c.collection_id.0) else {
            return Ok(Some(Duration::ZERO));
        };
        let rows = raw_chunks(rows);
        let start = Instant::now();
        for slice in rows.chunks(call.max(1)) {
            self.transaction(|conn| {
                let written = diesel::copy_from(chunks::table)
                    .from_insertable(slice)
                    .execute(conn)?;
                upkeep(conn, collection_id, written)
            })?;
        }
        Ok(Some(start.elapsed()))
    }
}

/// The statements `repo-postgres` runs after a bulk call of at least
/// [`BULK_MAINTENANCE_MIN_ROWS`] chunks (`after_bulk_write`): the partition's GIN
/// pending list moved into the index, and an `ANALYZE` of the partition when
/// [`statistics_stale`] (the core's rule, not repeated here).
fn upkeep(conn: &mut PgConnection, collection_id: uuid::Uuid, written: usize) -> QueryResult<()> {
    #[derive(QueryableByName)]
    struct Partition {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        oid: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Double)]
        reltuples: f64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        modified: f64,
    }
    if (written as u64) < BULK_MAINTENANCE_MIN_ROWS {
        return Ok(());
    }
    let partition: Partition = diesel::sql_query(
        "SELECT p.oid::int8 AS oid, p.oid::regclass::text AS name, \
                p.reltuples::float8 AS reltuples, \
                pg_stat_get_mod_since_analyze(p.oid)::float8 AS modified \
         FROM pg_class AS p \
         WHERE p.oid = (SELECT tableoid FROM chunks WHERE collection_id = $1 LIMIT 1)",
    )
    .bind::<diesel::sql_types::Uuid, _>(collection_id)
    .get_result(conn)?;
    diesel::sql_query(
        "SELECT gin_clean_pending_list(i.indexrelid) \
         FROM pg_index AS i \
         JOIN pg_class AS ic ON ic.oid = i.indexrelid \
         JOIN pg_am AS am ON am.oid = ic.relam \
         WHERE i.indrelid = $1::int8::oid AND am.amname = 'gin'",
    )
    .bind::<diesel::sql_types::BigInt, _>(partition.oid)
    .execute(conn)?;
    if statistics_stale(partition.reltuples, partition.modified, written as u64) {
        diesel::sql_query(format!("ANALYZE (SKIP_LOCKED) {}", partition.name)).execute(conn)?;
    }
    Ok(())
}

fn raw_chunks(rows: &[Chunk]) -> Vec<RawChunk<'_>> {
    rows.iter()
        .map(|c| RawChunk {
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
        })
        .collect()
}
