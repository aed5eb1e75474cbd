//! Chunks: bulk insert and its all-or-nothing rules, listing by document, the
//! embedding queue, and deletion (directly, with the document, with the collection).

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{
    Chunk, CollectionId, DocumentId, Entity, Field, NewChunk, PageRequest, SearchQuery,
    MAX_CHUNK_BATCH,
};
use serde_json::json;

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __chunks_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            chunks::chunk_insert_many_ten_thousand,
            chunks::chunk_list_by_document_orders_by_index,
            chunks::chunk_index_is_unique_per_document,
            chunks::chunk_document_must_belong_to_the_collection,
            chunks::chunk_content_rules,
            chunks::chunk_without_embedding_and_set_embedding_ids,
            chunks::chunk_delete_by_document_and_collection_counts,
            chunks::chunk_collection_delete_removes_documents_and_chunks,
            chunks::chunk_bad_item_deep_in_a_large_batch_writes_nothing,
        }
    };
}

/// Every chunk of a document (at most 1,000), by `chunk_index`.
#[track_caller]
fn all_chunks(store: &dyn repo_core::Store, doc: DocumentId) -> Vec<Chunk> {
    let page = expect::ok(
        store
            .chunks()
            .list_by_document(doc, PageRequest::first(PageRequest::MAX_LIMIT)),
        "list_by_document",
    );
    assert_eq!(page.total, page.items.len() as u64);
    page.items
}

fn indexes(chunks: &[Chunk]) -> Vec<i32> {
    chunks.iter().map(|c| c.chunk_index).collect()
}

/// `insert_many` stores a full batch of 10,000 chunks in one call and returns 10,000; `count` and the listings agree; 10,001 is `Validation`.
pub fn chunk_insert_many_ten_thousand(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &u, "docs");
    let docs: Vec<DocumentId> = (0..4).map(|n| seed::document(&*s, c.id, n).id).collect();
    let batch: Vec<NewChunk> = (0..MAX_CHUNK_BATCH)
        .map(|i| {
            let mut chunk = NewChunk::new(
                docs[i % 4],
                (i / 4) as i32,
                format!("bulk chunk number {i} about topic{}", i % 50),
            );
            chunk.start_offset = Some(i as i32 * 10);
            chunk.end_offset = Some(i as i32 * 10 + 9);
            chunk.token_count = Some(6);
            chunk
        })
        .collect();
    assert_eq!(batch.len(), 10_000);
    assert_eq!(
        expect::ok(s.chunks().insert_many(c.id, &batch), "10,000 chunks"),
        10_000
    );
    assert_eq!(expect::ok(s.chunks().count(c.id), "count"), 10_000);
    let page = expect::ok(
        s.chunks()
            .list_by_document(docs[1], PageRequest::new(2400, 1000)),
        "last page of one document",
    );
    assert_eq!(page.total, 2500);
    assert_eq!(indexes(&page.items), (2400..2500).collect::<Vec<i32>>());
    let last = &page.items[99];
    assert_eq!(last.content, "bulk chunk number 9997 about topic47");
    assert_eq!(
        (last.start_offset, last.end_offset, last.token_count),
        (Some(99_970), Some(99_979), Some(6))
    );
    let hits = expect::ok(
        s.chunks()
            .search(c.id, &SearchQuery::parse("topic7"), PageRequest::first(1)),
        "search the bulk",
    );
    assert_eq!(hits.total, 200, "every inserted chunk is searchable");

    let too_many: Vec<NewChunk> = (0..=MAX_CHUNK_BATCH)
        .map(|i| NewChunk::new(docs[0], 10_000 + i as i32, "x"))
        .collect();
    expect::validation(
        s.chunks().insert_many(c.id, &too_many),
        Field::Chunks,
        "10,001 chunks",
    );
    assert_eq!(expect::ok(s.chunks().count(c.id), "count"), 10_000);
    assert_eq!(
        expect::ok(s.chunks().insert_many(c.id, &[]), "empty batch"),
        0
    );
}

/// `list_by_document` orders by `chunk_index` whatever the insert order, paginates with the total, reads every field back, and is `NotFound` for an unknown document.
pub fn chunk_list_by_document_orders_by_index(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bob");
    let c = seed::collection(&*s, &u, "docs");
    let d = seed::document(&*s, c.id, 1);
    let other = seed::document(&*s, c.id, 2);
    seed::chunks(&*s, c.id, other.id, &[0, 1, 2]);
    let order = [5, 2, 9, 0, 7, 1, 8, 3, 6, 4, 100, 11];
    let batch: Vec<NewChunk> = order
        .iter()
        .map(|&i| {
            let mut chunk =
                NewChunk::new(d.id, i, format!("Ünïcode «chunk» {i}\n\ttab 'q' \"dq\""));
            chunk.meta = json!({"page": i, "heading": ["A", "B"], "score": 0.25});
            chunk.token_count = Some(i);
            chunk.start_offset = Some(0);
            chunk.end_offset = (i % 2 == 0).then_some(i * 100);
            chunk
        })
        .collect();
    let before = repo_core::now();
    expect::ok(s.chunks().insert_many(c.id, &batch), "insert");
    let after = repo_core::now();
    let all = all_chunks(&*s, d.id);
    let mut sorted = order.to_vec();
    sorted.sort_unstable();
    assert_eq!(indexes(&all), sorted, "ordered by chunk_index");
    for got in &all {
        let new = batch
            .iter()
            .find(|b| b.chunk_index == got.chunk_index)
            .unwrap_or_else(|| panic!("chunk {} was never inserted", got.chunk_index));
        assert!(got.id > 0, "ids are generated");
        assert_eq!((got.collection_id, got.document_id), (c.id, d.id));
        assert_eq!(got.content, new.content);
        assert_eq!(got.meta, new.meta);
        assert_eq!(
            (got.start_offset, got.end_offset, got.token_count),
            (new.start_offset, new.end_offset, new.token_count)
        );
        assert_eq!(got.embedding_vector_id, None);
        assert!(before <= got.created_at && got.created_at <= after);
    }
    let mut ids: Vec<i64> = all.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "ids are unique");
    let mut paged = Vec::new();
    for offset in (0..12).step_by(5) {
        let page = expect::ok(
            s.chunks()
                .list_by_document(d.id, PageRequest::new(offset, 5)),
            "page",
        );
        assert_eq!(page.total, 12);
        paged.extend(page.items);
    }
    assert_eq!(paged, all, "pages concatenate to the listing");
    let past = expect::ok(
        s.chunks().list_by_document(d.id, PageRequest::new(12, 5)),
        "past the end",
    );
    assert_eq!((past.items.len(), past.total), (0, 12));
    expect::not_found(
        s.chunks()
            .list_by_document(DocumentId::new(), PageRequest::default()),
        Entity::Document,
        "unknown document",
    );
    let empty = seed::document(&*s, c.id, 3);
    let page = expect::ok(
        s.chunks()
            .list_by_document(empty.id, PageRequest::default()),
        "a document without chunks",
    );
    assert_eq!((page.items.len(), page.total), (0, 0));
}

/// `chunk_index` is unique per document: a stored or repeated (document, index) is `Validation { field: Field::ChunkIndex }` naming the item, and nothing is written; other documents may reuse the index.
pub fn chunk_index_is_unique_per_document(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "carol");
    let c = seed::collection(&*s, &u, "docs");
    let d = seed::document(&*s, c.id, 1);
    let e = seed::document(&*s, c.id, 2);
    seed::chunks(&*s, c.id, d.id, &[0, 1, 2]);
    let stored_dup = vec![
        NewChunk::new(d.id, 3, "new"),
        NewChunk::new(e.id, 1, "other document"),
        NewChunk::new(d.id, 4, "new"),
        NewChunk::new(d.id, 1, "already stored"),
        NewChunk::new(d.id, 5, "new"),
    ];
    expect::item_validation(
        s.chunks().insert_many(c.id, &stored_dup),
        Field::ChunkIndex,
        3,
        "index 1 is stored",
    );
    let in_batch_dup = vec![
        NewChunk::new(d.id, 3, "new"),
        NewChunk::new(e.id, 7, "new"),
        NewChunk::new(d.id, 4, "new"),
        NewChunk::new(e.id, 7, "twice in this batch"),
    ];
    expect::item_validation(
        s.chunks().insert_many(c.id, &in_batch_dup),
        Field::ChunkIndex,
        3,
        "index 7 twice",
    );
    let negative = vec![NewChunk::new(d.id, 3, "new"), NewChunk::new(d.id, -1, "x")];
    expect::item_validation(
        s.chunks().insert_many(c.id, &negative),
        Field::ChunkIndex,
        1,
        "negative index",
    );
    assert_eq!(
        expect::ok(s.chunks().count(c.id), "count"),
        3,
        "nothing written"
    );
    assert_eq!(indexes(&all_chunks(&*s, d.id)), vec![0, 1, 2]);
    assert_eq!(
        expect::ok(
            s.chunks().insert_many(
                c.id,
                &[NewChunk::new(e.id, 0, "a"), NewChunk::new(e.id, 1, "b")]
            ),
            "the same indexes for another document",
        ),
        2
    );
}

/// A chunk whose document is unknown or belongs to another collection is `Validation { field: Field::DocumentId }` naming the item (documents are checked before chunk indexes); an unknown collection is `NotFound`; nothing is written.
pub fn chunk_document_must_belong_to_the_collection(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dave");
    let c = seed::collection(&*s, &u, "mine");
    let other = seed::collection(&*s, &u, "theirs");
    let d = seed::document(&*s, c.id, 1);
    let foreign = seed::document(&*s, other.id, 2);
    let batch = |bad: DocumentId| {
        vec![
            NewChunk::new(d.id, 0, "fine"),
            NewChunk::new(d.id, 1, "fine"),
            NewChunk::new(bad, 0, "bad"),
            NewChunk::new(d.id, 2, "fine"),
        ]
    };
    expect::item_validation(
        s.chunks().insert_many(c.id, &batch(foreign.id)),
        Field::DocumentId,
        2,
        "document of another collection",
    );
    expect::item_validation(
        s.chunks().insert_many(c.id, &batch(DocumentId::new())),
        Field::DocumentId,
        2,
        "unknown document",
    );
    expect::not_found(
        s.chunks()
            .insert_many(CollectionId::new(), &[NewChunk::new(d.id, 0, "x")]),
        Entity::Collection,
        "unknown collection",
    );
    // Every document is checked before any chunk index: the foreign document at 3 is
    // reported, not the stored index at 1.
    expect::ok(
        s.chunks()
            .insert_many(c.id, &[NewChunk::new(d.id, 5, "stored")]),
        "stored chunk",
    );
    let both = vec![
        NewChunk::new(d.id, 0, "fine"),
        NewChunk::new(d.id, 5, "stored index"),
        NewChunk::new(d.id, 6, "fine"),
        NewChunk::new(foreign.id, 0, "foreign document"),
    ];
    expect::item_validation(
        s.chunks().insert_many(c.id, &both),
        Field::DocumentId,
        3,
        "documents are checked before chunk indexes",
    );
    assert_eq!(expect::ok(s.chunks().count(c.id), "count"), 1);
    assert_eq!(expect::ok(s.chunks().count(other.id), "count"), 0);
    assert_eq!(
        expect::ok(
            s.chunks()
                .insert_many(other.id, &[NewChunk::new(foreign.id, 0, "x")]),
            "into its own collection",
        ),
        1
    );
}

/// Chunk content may hold 1,000,000 characters (multi-byte counted as one) but not 1,000,001; NUL, negative numbers, end before start and non-object meta are `Validation` naming the item.
pub fn chunk_content_rules(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "erin");
    let c = seed::collection(&*s, &u, "docs");
    let d = seed::document(&*s, c.id, 1);
    let words = "Ünïcode wörds ça 日本語 text ";
    let big: String = words.chars().cycle().take(1_000_000).collect();
    assert!(big.len() > 1_000_000, "more bytes than characters");
    let too_big: String = words.chars().cycle().take(1_000_001).collect();
    let bad = |i: usize, chunk: NewChunk, field: Field, what: &str| {
        let mut batch: Vec<NewChunk> = (0..4)
            .map(|k| NewChunk::new(d.id, 10 + k, "fine"))
            .collect();
        batch.insert(i, chunk);
        expect::item_validation(s.chunks().insert_many(c.id, &batch), field, i, what);
    };
    bad(
        0,
        NewChunk::new(d.id, 0, too_big),
        Field::Content,
        "1,000,001 characters",
    );
    bad(
        2,
        NewChunk::new(d.id, 0, "nul\0inside"),
        Field::Content,
        "NUL",
    );
    let mut chunk = NewChunk::new(d.id, 0, "x");
    chunk.meta = json!([1]);
    bad(3, chunk, Field::Meta, "array meta");
    let mut chunk = NewChunk::new(d.id, 0, "x");
    chunk.meta = json!({"k": "\0"});
    bad(1, chunk, Field::Meta, "NUL in meta");
    let mut chunk = NewChunk::new(d.id, 0, "x");
    chunk.token_count = Some(-1);
    bad(4, chunk, Field::TokenCount, "negative token count");
    let mut chunk = NewChunk::new(d.id, 0, "x");
    chunk.start_offset = Some(10);
    chunk.end_offset = Some(9);
    bad(1, chunk, Field::EndOffset, "end before start");
    assert_eq!(expect::ok(s.chunks().count(c.id), "count"), 0);

    let ok = expect::ok(
        s.chunks().insert_many(
            c.id,
            &[
                NewChunk::new(d.id, 0, big.clone()),
                NewChunk::new(d.id, 1, ""),
            ],
        ),
        "1,000,000 characters and an empty chunk",
    );
    assert_eq!(ok, 2);
    let back = all_chunks(&*s, d.id);
    assert_eq!(back[0].content.chars().count(), 1_000_000);
    assert!(back[0].content == big, "the big chunk reads back equal");
    assert_eq!(back[1].content, "");
    let hits = expect::ok(
        s.chunks().search(
            c.id,
            &SearchQuery::parse("日本語 wörds"),
            PageRequest::default(),
        ),
        "search the big chunk",
    );
    assert_eq!(hits.total, 1);
}

/// `without_embedding` lists the collection's chunks lacking an embedding by id up to the limit; `set_embedding_ids` sets them within its collection only and counts changed rows.
pub fn chunk_without_embedding_and_set_embedding_ids(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "fay");
    let c = seed::collection(&*s, &u, "docs");
    let other = seed::collection(&*s, &u, "other");
    let d = seed::document(&*s, c.id, 1);
    let e = seed::document(&*s, c.id, 2);
    let o = seed::document(&*s, other.id, 3);
    seed::chunks(&*s, c.id, d.id, &[3, 1, 2]);
    seed::chunks(&*s, c.id, e.id, &[0, 1]);
    seed::chunks(&*s, other.id, o.id, &[0, 1]);
    let chunks = s.chunks();
    let waiting = expect::ok(chunks.without_embedding(c.id, 100), "all");
    assert_eq!(waiting.len(), 5);
    let ids: Vec<i64> = waiting.iter().map(|c| c.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "ordered by id");
    assert!(waiting.iter().all(|x| x.collection_id == c.id));
    let two = expect::ok(chunks.without_embedding(c.id, 2), "limit 2");
    assert_eq!(two, waiting[..2].to_vec());

    let foreign = expect::ok(chunks.without_embedding(other.id, 1), "other collection")[0].id;
    let pairs = vec![
        (ids[0], "vec-0".to_owned()),
        (ids[3], "vec-3 ünï".to_owned()),
        (i64::MAX, "no such chunk".to_owned()),
        (foreign, "another collection's chunk".to_owned()),
    ];
    assert_eq!(
        expect::ok(chunks.set_embedding_ids(c.id, &pairs), "set"),
        2,
        "unknown chunk ids and other collections' chunks change nothing"
    );
    assert_eq!(
        expect::ok(chunks.without_embedding(other.id, 100), "other untouched").len(),
        2
    );
    let left: Vec<i64> = expect::ok(chunks.without_embedding(c.id, 100), "left")
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, vec![ids[1], ids[2], ids[4]]);
    let all: Vec<Chunk> = [d.id, e.id]
        .iter()
        .flat_map(|doc| all_chunks(&*s, *doc))
        .collect();
    let vector = |id: i64| {
        all.iter()
            .find(|c| c.id == id)
            .and_then(|c| c.embedding_vector_id.clone())
    };
    assert_eq!(vector(ids[0]).as_deref(), Some("vec-0"));
    assert_eq!(vector(ids[3]).as_deref(), Some("vec-3 ünï"));
    assert_eq!(vector(ids[1]), None);
    assert_eq!(expect::ok(chunks.set_embedding_ids(c.id, &[]), "none"), 0);
    expect::any_validation(
        chunks.set_embedding_ids(c.id, &[(ids[1], "nul\0".to_owned())]),
        "NUL in a vector id",
    );
    assert_eq!(
        expect::ok(chunks.without_embedding(other.id, 100), "other").len(),
        2
    );
    assert!(expect::ok(chunks.without_embedding(CollectionId::new(), 10), "unknown").is_empty());
}

/// `delete_by_document` and `delete_by_collection` remove exactly those chunks and return how many (0 for unknown ones); documents stay.
pub fn chunk_delete_by_document_and_collection_counts(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "gus");
    let c = seed::collection(&*s, &u, "docs");
    let other = seed::collection(&*s, &u, "other");
    let d = seed::document(&*s, c.id, 1);
    let e = seed::document(&*s, c.id, 2);
    let o = seed::document(&*s, other.id, 3);
    seed::chunks(&*s, c.id, d.id, &[0, 1, 2]);
    seed::chunks(&*s, c.id, e.id, &[0, 1]);
    seed::chunks(&*s, other.id, o.id, &[0, 1, 2, 3]);
    let chunks = s.chunks();
    assert_eq!(
        expect::ok(chunks.delete_by_document(d.id), "by document"),
        3
    );
    assert_eq!(expect::ok(chunks.delete_by_document(d.id), "again"), 0);
    assert_eq!(expect::ok(chunks.count(c.id), "count"), 2);
    assert!(all_chunks(&*s, d.id).is_empty());
    assert_eq!(all_chunks(&*s, e.id).len(), 2);
    assert_eq!(
        expect::ok(chunks.delete_by_collection(c.id), "by collection"),
        2
    );
    assert_eq!(expect::ok(chunks.delete_by_collection(c.id), "again"), 0);
    assert_eq!(expect::ok(chunks.count(c.id), "count"), 0);
    assert_eq!(expect::ok(chunks.count(other.id), "other"), 4);
    expect::ok(s.documents().get(d.id), "documents stay");
    expect::ok(s.documents().get(e.id), "documents stay");
    let hits = expect::ok(
        chunks.search(c.id, &SearchQuery::parse("chunk"), PageRequest::default()),
        "search",
    );
    assert_eq!(hits.total, 0, "deleted chunks are not found");
    seed::chunks(&*s, c.id, d.id, &[0, 1]);
    assert_eq!(expect::ok(chunks.count(c.id), "indexes are free again"), 2);
    let (unknown_doc, unknown_collection) = (DocumentId::new(), CollectionId::new());
    assert_eq!(
        expect::ok(chunks.delete_by_document(unknown_doc), "unknown"),
        0
    );
    assert_eq!(
        expect::ok(chunks.delete_by_collection(unknown_collection), "unknown"),
        0
    );
    assert_eq!(expect::ok(chunks.count(unknown_collection), "unknown"), 0);
}

/// Deleting a collection removes its documents and their chunks, and nothing of other collections.
pub fn chunk_collection_delete_removes_documents_and_chunks(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "hal");
    let c = seed::collection(&*s, &u, "gone");
    let other = seed::collection(&*s, &u, "kept");
    let d = seed::document(&*s, c.id, 1);
    let o = seed::document(&*s, other.id, 1);
    seed::chunks(&*s, c.id, d.id, &[0, 1, 2]);
    seed::chunks(&*s, other.id, o.id, &[0, 1]);
    expect::ok(
        s.collections().delete(c.id, u.id.into()),
        "delete collection",
    );
    expect::not_found(s.documents().get(d.id), Entity::Document, "its document");
    expect::not_found(
        s.chunks().list_by_document(d.id, PageRequest::default()),
        Entity::Document,
        "its chunks",
    );
    assert_eq!(expect::ok(s.chunks().count(c.id), "its chunk count"), 0);
    assert_eq!(expect::ok(s.chunks().count(other.id), "other"), 2);
    assert_eq!(expect::ok(s.documents().get(o.id), "other document"), o);
    let hits = expect::ok(
        s.chunks().search(
            other.id,
            &SearchQuery::parse("chunk"),
            PageRequest::default(),
        ),
        "search",
    );
    assert_eq!(hits.total, 2);
}

/// A bad chunk deep in a large batch (an unknown document, another collection's document, a stored index) fails the batch naming it, and nothing of the batch is written.
pub fn chunk_bad_item_deep_in_a_large_batch_writes_nothing(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "deep");
    let c = seed::collection(&*s, &u, "deep");
    let other = seed::collection(&*s, &u, "other");
    let mine = seed::document(&*s, c.id, 1);
    let theirs = seed::document(&*s, other.id, 1);
    seed::chunks(&*s, c.id, mine.id, &[0]);
    let batch = || -> Vec<NewChunk> {
        (1..3_000)
            .map(|i| NewChunk::new(mine.id, i, "text"))
            .collect()
    };
    let check = |b: Vec<NewChunk>, field: Field, k: usize, what: &str| {
        expect::item_validation(s.chunks().insert_many(c.id, &b), field, k, what);
        assert_eq!(
            expect::ok(s.chunks().count(c.id), "chunk count"),
            1,
            "{what}: nothing was written"
        );
    };

    let mut b = batch();
    b[2_500] = NewChunk::new(DocumentId::new(), 0, "orphan");
    check(b, Field::DocumentId, 2_500, "unknown document at 2500");
    let mut b = batch();
    b[40] = NewChunk::new(theirs.id, 0, "foreign");
    check(
        b,
        Field::DocumentId,
        40,
        "another collection's document at 40",
    );
    let mut b = batch();
    b[2_600] = NewChunk::new(mine.id, 0, "again");
    check(b, Field::ChunkIndex, 2_600, "stored chunk index at 2600");
}
