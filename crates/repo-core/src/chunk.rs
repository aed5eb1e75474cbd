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

/// A bulk write of at least this many chunks is followed by upkeep of the storage
/// holding the collection's chunks (on PostgreSQL: the full-text index's pending list
/// merged, the partition analyzed when [`statistics_stale`]).
pub const BULK_MAINTENANCE_MIN_ROWS: u64 = 1_000;

/// Whether a table's planner statistics are stale after a bulk write of `written`
/// rows: the rows modified since its last analysis plus `written` reach a tenth of
/// `reltuples` (PostgreSQL's own autoanalyze rule, `autovacuum_analyze_scale_factor`
/// 0.1). A table never analyzed has `reltuples` -1, below any count, so it is always
/// stale. The rows written since the last analysis count, not one call's alone: a
/// large table growing in calls of a few thousand rows would otherwise never be
/// re-analyzed.
pub fn statistics_stale(reltuples: f64, modified_since_analyze: f64, written: u64) -> bool {
    modified_since_analyze + written as f64 >= reltuples / 10.0
}

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

/// What [`ChunkRepository::insert_many`] must read before writing a prepared batch:
/// the owner of every document it names, and the chunk indexes those documents
/// already hold within `lowest_index..=highest_index` (the batch's range, which narrows
/// the read when documents already hold many chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLookup {
    /// The distinct documents of the batch, sorted.
    pub document_ids: Vec<DocumentId>,
    /// The smallest chunk index of the batch.
    pub lowest_index: i32,
    /// The largest chunk index of the batch.
    pub highest_index: i32,
}

impl ChunkLookup {
    /// The lookup of `rows` (from [`prepare_batch`]).
    pub fn of(rows: &[Chunk]) -> Self {
        let mut document_ids: Vec<DocumentId> = rows.iter().map(|c| c.document_id).collect();
        document_ids.sort_unstable();
        document_ids.dedup();
        Self {
            document_ids,
            lowest_index: rows.iter().map(|c| c.chunk_index).min().unwrap_or(0),
            highest_index: rows.iter().map(|c| c.chunk_index).max().unwrap_or(0),
        }
    }
}

/// Checks a prepared batch for `collection_id` against what is stored: every
/// document first (it exists, `owners` giving its collection, and belongs to the
/// collection), then every chunk index (not in `stored`), each in input order, so the
/// error names the first item breaking the first rule.
pub fn check_stored(
    collection_id: CollectionId,
    rows: &[Chunk],
    owners: &std::collections::HashMap<DocumentId, CollectionId>,
    stored: &std::collections::HashSet<(DocumentId, i32)>,
) -> RepoResult<()> {
    for (i, c) in rows.iter().enumerate() {
        let refused = match owners.get(&c.document_id) {
            None => format!("document {} does not exist", c.document_id),
            Some(owner) if *owner != collection_id => {
                format!("document {} belongs to another collection", c.document_id)
            }
            Some(_) => continue,
        };
        return Err(RepoError::validation(Field::DocumentId, refused).for_item(i));
    }
    match rows
        .iter()
        .position(|c| stored.contains(&(c.document_id, c.chunk_index)))
    {
        Some(i) => Err(RepoError::validation(
            Field::ChunkIndex,
            format!(
                "chunk {} of document {} is already stored",
                rows[i].chunk_index, rows[i].document_id
            ),
        )
        .for_item(i)),
        None => Ok(()),
    }
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
    /// Relevance, higher is better: [`crate::search::score`], the same number on both
    /// backends for the same chunk and query.
    pub score: f64,
}

impl SearchHit {
    /// The position of this hit in its ranking, for [`ChunkRepository::search_after`].
    pub fn cursor(&self) -> SearchCursor {
        SearchCursor {
            score: self.score,
            id: self.chunk.id,
        }
    }
}

/// The most hits a search counts: [`SearchPage::total`] is exact up to this many and a
/// lower bound beyond ([`SearchPage::total_is_exact`] says which), so that counting
/// costs at most this many index entries however many chunks match.
pub const SEARCH_TOTAL_CAP: u64 = 1000;

/// The most matches a search ranks. A query that matches more chunks of a collection
/// than this (a very common word) is ranked over the newest `SEARCH_RANK_CAP` of its
/// matches (the highest chunk ids), on both backends alike: its pages hold the best
/// of those, and older matches are on no page, though [`SearchPage::total`] still
/// counts them (as a lower bound: the cap is above [`SEARCH_TOTAL_CAP`], so
/// [`SearchPage::total_is_exact`] is false whenever this cap applies). A narrower
/// query (a phrase, a second word, an exclusion) brings them back into the ranking.
///
/// Ranking every match would cost a score per match: 420,000 of them for a word in
/// 42 % of a 1,000,000-chunk collection, seconds on either backend. Ranking a bounded
/// set keeps a page of any query at the cost of at most this many scores, and taking
/// the newest matches keeps what was written last findable.
pub const SEARCH_RANK_CAP: u64 = 10_000;

/// A position in a search ranking: the `(score, chunk id)` of the last hit a page
/// returned. The next page holds the hits strictly after it in the order
/// `score DESC, id ASC`, found by the database without skipping rows, so a deep page
/// costs what the first one does.
///
/// A score depends on its chunk and the query only ([`crate::search::score`]), so a
/// cursor stays valid while other chunks are written; chunks written between two
/// pages join the ranking where their score puts them (and, beyond
/// [`SEARCH_RANK_CAP`] matches, the newest matches are the ranked ones). Opaque to callers: [`encode`](Self::encode)
/// gives a short URL-safe string and [`decode`](Self::decode) reads it back; a string
/// it did not write is `Validation { field: Field::Cursor }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchCursor {
    score: f64,
    id: i64,
}

impl SearchCursor {
    /// The score of the hit the cursor points after.
    pub fn score(&self) -> f64 {
        self.score
    }

    /// The chunk id of the hit the cursor points after.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The short string form: `s`, the score's IEEE 754 bits and the id, in hex.
    pub fn encode(&self) -> String {
        format!("s{:x}.{:x}", self.score.to_bits(), self.id as u64)
    }

    /// Reads the form [`encode`](Self::encode) writes; anything else (including a
    /// score that is not a finite number) is `Validation { field: Field::Cursor }`.
    pub fn decode(text: &str) -> RepoResult<Self> {
        let bad = || {
            RepoError::validation(
                crate::Field::Cursor,
                "the cursor is not a search cursor this library wrote",
            )
        };
        let rest = text.strip_prefix('s').ok_or_else(bad)?;
        let (score, id) = rest.split_once('.').ok_or_else(bad)?;
        let hex =
            |s: &str| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(score) || !hex(id) {
            return Err(bad());
        }
        let score = f64::from_bits(u64::from_str_radix(score, 16).map_err(|_| bad())?);
        let id = u64::from_str_radix(id, 16).map_err(|_| bad())? as i64;
        if !score.is_finite() {
            return Err(bad());
        }
        Ok(Self { score, id })
    }
}

impl std::fmt::Display for SearchCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encode())
    }
}

impl std::str::FromStr for SearchCursor {
    type Err = RepoError;

    fn from_str(s: &str) -> RepoResult<Self> {
        Self::decode(s)
    }
}

impl Serialize for SearchCursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for SearchCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a search page starts in the ranking: the plan both backends' search
/// statements take ([`ChunkRepository::search`] pages by offset,
/// [`ChunkRepository::search_after`] after a cursor).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SearchStart {
    /// After this many hits.
    Offset(i64),
    /// After this position (score, then id).
    After(SearchCursor),
}

impl SearchStart {
    /// The start of a page by offset.
    pub fn of_page(page: PageRequest) -> Self {
        Self::Offset(page.offset_i64())
    }

    /// The start after `after`, or the first hit.
    pub fn after(after: Option<SearchCursor>) -> Self {
        after.map_or(Self::Offset(0), Self::After)
    }

    /// How many hits of the ranking come before the page (0 after a cursor), for
    /// [`SearchPage::assemble`].
    pub fn skipped(&self) -> u64 {
        match self {
            Self::Offset(offset) => u64::try_from(*offset).unwrap_or(0),
            Self::After(_) => 0,
        }
    }
}

/// One page of search hits, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchPage {
    /// The hits of this page.
    pub items: Vec<SearchHit>,
    /// How many chunks match: exact when [`total_is_exact`](Self::total_is_exact),
    /// otherwise a lower bound (more than [`SEARCH_TOTAL_CAP`] match, and at least
    /// this many).
    pub total: u64,
    /// Whether [`total`](Self::total) is the exact number of matching chunks (true
    /// whenever at most [`SEARCH_TOTAL_CAP`] match).
    pub total_is_exact: bool,
    /// Where the next page starts ([`ChunkRepository::search_after`]); `None` on the
    /// last page.
    pub next: Option<SearchCursor>,
}

impl SearchPage {
    /// No hits.
    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            total: 0,
            total_is_exact: true,
            next: None,
        }
    }

    /// The page a backend read, written once for both: `rows` are up to `limit + 1`
    /// hits in ranking order starting `skipped` hits into the ranking (the offset, or
    /// 0 after a cursor), and `counted` is the number of matches counted with a limit
    /// of `SEARCH_TOTAL_CAP + 1`.
    pub fn assemble(mut rows: Vec<SearchHit>, limit: i64, skipped: u64, counted: u64) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(SearchHit::cursor)
        } else {
            None
        };
        let total_is_exact = counted <= SEARCH_TOTAL_CAP;
        let seen = skipped
            .saturating_add(rows.len() as u64)
            .saturating_add(u64::from(more));
        let total = if total_is_exact {
            counted
        } else {
            seen.max(SEARCH_TOTAL_CAP)
        };
        Self {
            items: rows,
            total,
            total_is_exact,
            next,
        }
    }

    /// `SEARCH_TOTAL_CAP + 1` as an `i64` for the SQL `LIMIT` of the count.
    pub fn count_limit_i64() -> i64 {
        i64::try_from(SEARCH_TOTAL_CAP + 1).unwrap_or(i64::MAX)
    }

    /// [`SEARCH_RANK_CAP`] as an `i64` for the SQL `LIMIT` of the ranked matches.
    pub fn rank_limit_i64() -> i64 {
        i64::try_from(SEARCH_RANK_CAP).unwrap_or(i64::MAX)
    }
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
    /// Full-text search within a collection, best first (ties by id), the page at
    /// `page.offset`. See [`SearchQuery`] for the syntax; an empty query is no hits.
    /// The total is exact up to [`SEARCH_TOTAL_CAP`] hits and a flagged lower bound
    /// beyond ([`SearchPage`]); the work done follows the page (offset + limit hits
    /// ranked, content read for the page only), not the number of matches counted.
    /// A query matching more than [`SEARCH_RANK_CAP`] chunks is ranked over the newest
    /// `SEARCH_RANK_CAP` of them.
    fn search(
        &self,
        collection_id: CollectionId,
        query: &SearchQuery,
        page: PageRequest,
    ) -> RepoResult<SearchPage>;
    /// The same ranking as [`search`](Self::search), `limit` hits (clamped to
    /// `1..=`[`PageRequest::MAX_LIMIT`]) after `after` (the first page when `None`),
    /// so that deep pages cost what the first one does.
    fn search_after(
        &self,
        collection_id: CollectionId,
        query: &SearchQuery,
        after: Option<SearchCursor>,
        limit: u32,
    ) -> RepoResult<SearchPage>;
}

#[cfg(test)]
mod new_chunk_tests {
    use super::*;

    fn with_offsets(start: i32, end: i32) -> NewChunk {
        NewChunk {
            start_offset: Some(start),
            end_offset: Some(end),
            ..NewChunk::new(DocumentId::new(), 0, "text")
        }
    }

    #[test]
    fn the_end_offset_may_equal_but_not_precede_the_start() {
        assert!(with_offsets(3, 3).validate().is_ok());
        assert!(with_offsets(3, 4).validate().is_ok());
        assert!(matches!(
            with_offsets(4, 3).validate(),
            Err(RepoError::Validation {
                field: Field::EndOffset,
                ..
            })
        ));
    }

    #[test]
    fn a_batch_holds_at_most_max_chunk_batch_chunks() {
        let document = DocumentId::new();
        let batch: Vec<NewChunk> = (0..MAX_CHUNK_BATCH as i32)
            .map(|i| NewChunk::new(document, i, "text"))
            .collect();
        let collection = CollectionId::new();
        assert_eq!(
            prepare_batch(collection, &batch).unwrap().len(),
            MAX_CHUNK_BATCH
        );
        let mut over = batch;
        over.push(NewChunk::new(document, MAX_CHUNK_BATCH as i32, "text"));
        assert!(matches!(
            prepare_batch(collection, &over),
            Err(RepoError::Validation {
                field: Field::Chunks,
                ..
            })
        ));
    }
}

#[cfg(test)]
mod search_page_tests {
    use super::*;

    fn hit(id: i64, score: f64) -> SearchHit {
        SearchHit {
            chunk: Chunk {
                id,
                collection_id: CollectionId::new(),
                document_id: DocumentId::new(),
                chunk_index: 0,
                content: String::new(),
                start_offset: None,
                end_offset: None,
                token_count: None,
                embedding_vector_id: None,
                meta: Value::Null,
                created_at: time::now(),
            },
            score,
        }
    }

    #[test]
    fn search_cursor_round_trips_and_rejects_other_text() {
        for (score, id) in [
            (1.5, 7),
            (-0.25, i64::MAX),
            (0.0, 0),
            (f64::MIN_POSITIVE, -1),
        ] {
            let c = SearchCursor { score, id };
            assert_eq!(SearchCursor::decode(&c.encode()).unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<SearchCursor>(&json).unwrap(), c);
        }
        let nan = format!("s{:x}.1", f64::NAN.to_bits());
        for bad in [
            "",
            "s",
            "s1",
            "s.1",
            "s1.",
            "i1.1",
            "s1.zz",
            "s11111111111111111.1",
            &nan,
        ] {
            assert!(
                matches!(
                    SearchCursor::decode(bad),
                    Err(RepoError::Validation {
                        field: crate::Field::Cursor,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn search_cursor_rejects_what_the_hex_parser_alone_would_take() {
        // `u64::from_str_radix` takes a leading `+` and any number of leading zeros:
        // the cursor's own check refuses both (and an empty part).
        let zeros = "0".repeat(17);
        for bad in [
            "s+1.1".to_string(),
            "s1.+1".to_string(),
            format!("s{zeros}.1"),
            format!("s1.{zeros}"),
            "s.".to_string(),
        ] {
            assert!(SearchCursor::decode(&bad).is_err(), "{bad:?}");
        }
        let sixteen = format!("s{}.{}", "0".repeat(15) + "1", "0".repeat(16));
        assert_eq!(
            SearchCursor::decode(&sixteen).unwrap(),
            SearchCursor {
                score: f64::from_bits(1),
                id: 0
            }
        );
        let c = SearchCursor { score: 2.5, id: 42 };
        assert_eq!(c.to_string(), c.encode());
        assert_eq!(c.encode().parse::<SearchCursor>().unwrap(), c);
        assert_eq!((c.score(), c.id()), (2.5, 42));
    }

    #[test]
    fn a_full_page_without_more_rows_has_no_next_cursor() {
        let rows = vec![hit(1, 3.0), hit(2, 2.0)];
        let page = SearchPage::assemble(rows, 2, 0, 2);
        assert_eq!((page.items.len(), page.next), (2, None));
        assert_eq!((page.total, page.total_is_exact), (2, true));
        let at_cap = SearchPage::assemble(vec![hit(1, 1.0)], 2, 0, SEARCH_TOTAL_CAP);
        assert_eq!(
            (at_cap.total, at_cap.total_is_exact),
            (SEARCH_TOTAL_CAP, true)
        );
    }

    #[test]
    fn the_sql_limits_are_the_caps() {
        assert_eq!(SearchPage::count_limit_i64(), SEARCH_TOTAL_CAP as i64 + 1);
        assert_eq!(SearchPage::rank_limit_i64(), SEARCH_RANK_CAP as i64);
    }

    #[test]
    fn statistics_are_stale_when_never_analyzed_or_a_tenth_was_written_since() {
        assert!(statistics_stale(-1.0, 0.0, 0));
        // Analyzed while empty: any write makes it stale.
        assert!(statistics_stale(0.0, 0.0, 1));
        // A tenth of 100,000 rows: 10,000.
        assert!(!statistics_stale(100_000.0, 0.0, 9_999));
        assert!(statistics_stale(100_000.0, 0.0, 10_000));
        // Rows written since the last analysis count with this call's.
        assert!(!statistics_stale(100_000.0, 8_999.0, 1_000));
        assert!(statistics_stale(100_000.0, 9_000.0, 1_000));
        assert!(statistics_stale(1_000_000.0, 99_000.0, 1_000));
        assert!(!statistics_stale(1_000_000.0, 0.0, 10_000));
    }

    #[test]
    fn assemble_caps_the_total_and_sets_the_cursor() {
        let rows = vec![hit(1, 3.0), hit(2, 2.0), hit(3, 1.0)];
        let page = SearchPage::assemble(rows.clone(), 2, 0, 3);
        assert_eq!(page.items.len(), 2);
        assert_eq!((page.total, page.total_is_exact), (3, true));
        assert_eq!(page.next, Some(SearchCursor { score: 2.0, id: 2 }));
        let last = SearchPage::assemble(rows[2..].to_vec(), 2, 2, 3);
        assert_eq!((last.items.len(), last.next), (1, None));
        let capped = SearchPage::assemble(rows.clone(), 2, 0, SEARCH_TOTAL_CAP + 1);
        assert_eq!(
            (capped.total, capped.total_is_exact),
            (SEARCH_TOTAL_CAP, false)
        );
        let deep = SearchPage::assemble(rows, 2, 5_000, SEARCH_TOTAL_CAP + 1);
        assert_eq!((deep.total, deep.total_is_exact), (5_003, false));
    }
}

#[cfg(test)]
mod check_stored_tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn documents_first_then_indexes_in_input_order() {
        let (c, other) = (CollectionId::new(), CollectionId::new());
        let (d, e) = (DocumentId::new(), DocumentId::new());
        let rows = prepare_batch(
            c,
            &[
                NewChunk::new(d, 3, "x"),
                NewChunk::new(e, 0, "y"),
                NewChunk::new(d, 1, "z"),
            ],
        )
        .expect("valid");
        let lookup = ChunkLookup::of(&rows);
        assert_eq!((lookup.lowest_index, lookup.highest_index), (0, 3));
        assert_eq!(lookup.document_ids.len(), 2);

        let mut owners = HashMap::from([(d, c)]);
        let stored = HashSet::from([(d, 1)]);
        let item = |r: RepoResult<()>| match r {
            Err(RepoError::Validation { field, item, .. }) => (field, item),
            other => panic!("{other:?}"),
        };
        // A missing document (item 1) is reported before a stored index (item 2).
        assert_eq!(
            item(check_stored(c, &rows, &owners, &stored)),
            (Field::DocumentId, Some(1))
        );
        owners.insert(e, other);
        assert_eq!(
            item(check_stored(c, &rows, &owners, &stored)),
            (Field::DocumentId, Some(1))
        );
        owners.insert(e, c);
        assert_eq!(
            item(check_stored(c, &rows, &owners, &stored)),
            (Field::ChunkIndex, Some(2))
        );
        assert!(check_stored(c, &rows, &owners, &HashSet::new()).is_ok());
    }

    #[test]
    fn search_start_skips_the_offset_only() {
        assert_eq!(SearchStart::of_page(PageRequest::new(40, 20)).skipped(), 40);
        assert_eq!(SearchStart::after(None).skipped(), 0);
    }
}
