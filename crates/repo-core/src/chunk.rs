//! Chunks: the pieces of documents that are embedded and searched.

use crate::error::{Field, RepoError, RepoResult};
use crate::ids::{CollectionId, DocumentId};
use crate::page::{Page, PageRequest};
use crate::search::SearchQuery;
use crate::time::{self, Timestamp};
use crate::validate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest batch accepted by [`ChunkRepository::insert_many`].
pub const MAX_CHUNK_BATCH: usize = 10_000;

/// A piece of a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk {
    /// Generated id.
    pub id: i64,
    /// Collection (the document's).
    pub collection_id: CollectionId,
    /// Document.
    pub document_id: DocumentId,
    /// Position in the document; unique per document.
    pub chunk_index: i32,
    /// Text (≤ 1,000,000 characters).
    pub content: String,
    /// Start offset in the document.
    pub start_offset: Option<i32>,
    /// End offset in the document.
    pub end_offset: Option<i32>,
    /// Tokens in `content`.
    pub token_count: Option<i32>,
    /// Id of the vector in the vector store.
    pub embedding_vector_id: Option<String>,
    /// Free-form metadata object.
    pub meta: Value,
    /// Creation time.
    pub created_at: Timestamp,
}

/// Input for [`ChunkRepository::insert_many`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChunk {
    /// Document (must belong to the collection of the call).
    pub document_id: DocumentId,
    /// Position in the document (≥ 0).
    pub chunk_index: i32,
    /// Text.
    pub content: String,
    /// Start offset.
    #[serde(default)]
    pub start_offset: Option<i32>,
    /// End offset.
    #[serde(default)]
    pub end_offset: Option<i32>,
    /// Token count.
    #[serde(default)]
    pub token_count: Option<i32>,
    /// Defaults to `{}`.
    #[serde(default = "crate::serde_fields::empty_object")]
    pub meta: Value,
}

impl NewChunk {
    /// A chunk with no offsets, token count or metadata.
    pub fn new(document_id: DocumentId, chunk_index: i32, content: impl Into<String>) -> Self {
        Self {
            document_id,
            chunk_index,
            content: content.into(),
            start_offset: None,
            end_offset: None,
            token_count: None,
            meta: Value::Object(Default::default()),
        }
    }

    fn validate(&self) -> RepoResult<()> {
        if self.chunk_index < 0 {
            return Err(RepoError::validation(
                Field::ChunkIndex,
                "must not be negative",
            ));
        }
        validate::text(Field::Content, &self.content)?;
        for (field, v) in [
            (Field::StartOffset, self.start_offset),
            (Field::EndOffset, self.end_offset),
            (Field::TokenCount, self.token_count),
        ] {
            if let Some(v) = v {
                validate::non_negative(field, i64::from(v))?;
            }
        }
        if let (Some(s), Some(e)) = (self.start_offset, self.end_offset) {
            if e < s {
                return Err(RepoError::validation(
                    Field::EndOffset,
                    "must not be before start_offset",
                ));
            }
        }
        validate::json_object(Field::Meta, &self.meta)
    }
}

/// Validates a batch for `collection_id` and builds its rows (`id` 0 until stored).
/// Duplicate (document, chunk_index) pairs inside the batch are refused. The error
/// names the first offending item (`item N: …`, 0-based).
pub fn prepare_batch(collection_id: CollectionId, batch: &[NewChunk]) -> RepoResult<Vec<Chunk>> {
    if batch.len() > MAX_CHUNK_BATCH {
        return Err(RepoError::validation(
            Field::Chunks,
            format!("a batch holds at most {MAX_CHUNK_BATCH} chunks"),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let now = time::now();
    batch
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.validate().map_err(|e| e.for_item(i))?;
            if !seen.insert((c.document_id, c.chunk_index)) {
                return Err(RepoError::validation(
                    Field::ChunkIndex,
                    "appears twice for the same document in this batch",
                )
                .for_item(i));
            }
            Ok(Chunk {
                id: 0,
                collection_id,
                document_id: c.document_id,
                chunk_index: c.chunk_index,
                content: c.content.clone(),
                start_offset: c.start_offset,
                end_offset: c.end_offset,
                token_count: c.token_count,
                embedding_vector_id: None,
                meta: c.meta.clone(),
                created_at: now,
            })
        })
        .collect()
}

/// Validates `(chunk id, vector id)` pairs and keeps the last vector id given for each
/// chunk id, in first-seen order; the error names the offending item.
pub fn last_embedding_per_chunk(pairs: &[(i64, String)]) -> RepoResult<Vec<(i64, &str)>> {
    let mut position: std::collections::HashMap<i64, usize> =
        std::collections::HashMap::with_capacity(pairs.len());
    let mut unique: Vec<(i64, &str)> = Vec::with_capacity(pairs.len());
    for (i, (id, vector_id)) in pairs.iter().enumerate() {
        validate::text(Field::EmbeddingVectorId, vector_id).map_err(|e| e.for_item(i))?;
        match position.get(id) {
            Some(&at) => unique[at].1 = vector_id.as_str(),
            None => {
                position.insert(*id, unique.len());
                unique.push((*id, vector_id.as_str()));
            }
        }
    }
    Ok(unique)
}

/// A search hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The matching chunk.
    pub chunk: Chunk,
    /// Relevance, higher is better. Comparable within one result only: SQLite uses
    /// BM25, PostgreSQL `ts_rank`, so the same query ranks alike but scores differ.
    pub score: f64,
}

/// Chunks of documents.
pub trait ChunkRepository: Send + Sync {
    /// Inserts up to [`MAX_CHUNK_BATCH`] chunks of one collection in one transaction;
    /// returns how many. A rule broken by any item (unknown document or one of another
    /// collection, duplicate chunk_index, NUL in text) fails the whole batch and writes
    /// nothing.
    fn insert_many(&self, collection_id: CollectionId, batch: &[NewChunk]) -> RepoResult<u64>;
    /// A document's chunks by `chunk_index`.
    fn list_by_document(
        &self,
        document_id: DocumentId,
        page: PageRequest,
    ) -> RepoResult<Page<Chunk>>;
    /// Chunks of a collection that have no embedding yet, by id.
    fn without_embedding(&self, collection_id: CollectionId, limit: u32) -> RepoResult<Vec<Chunk>>;
    /// Sets `embedding_vector_id` per chunk id, for chunks of `collection_id` only
    /// (ids of other collections change nothing); the last value given for an id wins.
    /// Returns how many rows changed.
    fn set_embedding_ids(
        &self,
        collection_id: CollectionId,
        pairs: &[(i64, String)],
    ) -> RepoResult<u64>;
    /// Deletes a document's chunks; returns how many.
    fn delete_by_document(&self, document_id: DocumentId) -> RepoResult<u64>;
    /// Deletes a collection's chunks; returns how many.
    fn delete_by_collection(&self, collection_id: CollectionId) -> RepoResult<u64>;
    /// Chunks in a collection.
    fn count(&self, collection_id: CollectionId) -> RepoResult<u64>;
    /// Full-text search within a collection, best first (ties by id), with the total
    /// number of hits. See [`SearchQuery`] for the syntax; an empty query is no hits.
    fn search(
        &self,
        collection_id: CollectionId,
        query: &SearchQuery,
        page: PageRequest,
    ) -> RepoResult<Page<SearchHit>>;
}
