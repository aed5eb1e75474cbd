//! The bulk baseline on SQLite: one prepared single-row `INSERT` per row (a fixed
//! column list has a static query id, so Diesel prepares it once and reuses it) in
//! one `BEGIN IMMEDIATE` transaction, on the benchmark's plain connection (same
//! schema, triggers and PRAGMAs as the store's pool).

use super::BulkBaseline;
use diesel::prelude::*;
use repo_core::search::index_text;
use repo_core::time::to_text;
use repo_core::{Chunk, Document};
use repo_sqlite::schema::{chunks, documents};
use std::time::{Duration, Instant};

/// One document row in SQLite's column types.
#[derive(Insertable)]
#[diesel(table_name = documents, treat_none_as_default_value = false)]
struct RawDocument<'a> {
    id: String,
    collection_id: String,
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
    meta: String,
    last_seen_at: Option<String>,
    is_stale: bool,
    created_at: String,
    updated_at: String,
}

/// One chunk row in SQLite's column types (`id` from the rowid).
#[derive(Insertable)]
#[diesel(table_name = chunks, treat_none_as_default_value = false)]
struct RawChunk<'a> {
    collection_id: String,
    document_id: String,
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

impl BulkBaseline for SqliteConnection {
    fn insert_documents(&mut self, rows: &[Document]) -> QueryResult<Duration> {
        let rows: Vec<RawDocument<'_>> = rows
            .iter()
            .map(|d| RawDocument {
                id: d.id.0.hyphenated().to_string(),
                collection_id: d.collection_id.0.hyphenated().to_string(),
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
                meta: d.meta.to_string(),
                last_seen_at: d.last_seen_at.map(to_text),
                is_stale: d.is_stale,
                created_at: to_text(d.created_at),
                updated_at: to_text(d.updated_at),
            })
            .collect();
        let start = Instant::now();
        self.immediate_transaction(|conn| {
            rows.iter().try_for_each(|row| {
                diesel::insert_into(documents::table)
                    .values(row)
                    .execute(conn)
                    .map(drop)
            })
        })?;
        Ok(start.elapsed())
    }

    fn insert_chunks(&mut self, rows: &[Chunk]) -> QueryResult<Duration> {
        let rows: Vec<RawChunk<'_>> = rows
            .iter()
            .map(|c| RawChunk {
                collection_id: c.collection_id.0.hyphenated().to_string(),
                document_id: c.document_id.0.hyphenated().to_string(),
                chunk_index: c.chunk_index,
                content: &c.content,
                start_offset: c.start_offset,
                end_offset: c.end_offset,
                token_count: c.token_count,
                embedding_vector_id: c.embedding_vector_id.as_deref(),
                meta: c.meta.to_string(),
                created_at: to_text(c.created_at),
                search_tokens: index_text(&c.content),
            })
            .collect();
        let start = Instant::now();
        self.immediate_transaction(|conn| {
            rows.iter().try_for_each(|row| {
                diesel::insert_into(chunks::table)
                    .values(row)
                    .execute(conn)
                    .map(drop)
            })
        })?;
        Ok(start.elapsed())
    }
}
