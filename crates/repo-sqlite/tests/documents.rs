//! Smoke tests of documents and chunks on SQLite: the bulk paths, batch atomicity,
//! FTS5 upkeep and metadata filters. The cross-backend behaviours live in
//! `repo-behaviour`.

use diesel::sql_types::BigInt;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use repo_core::SchemaAdmin;
use repo_core::{
    CollectionId, DocumentFilter, DocumentStatus, DocumentStatusUpdate, Entity, ErrorCategory,
    Field, NewChunk, NewCollection, NewDocument, NewUser, PageRequest, RepoError, Repositories,
    SearchQuery, Store, StoreConfig, UserId,
};
use repo_sqlite::SqliteStore;
use serde_json::json;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn file_store() -> (tempfile::TempDir, String, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir
        .path()
        .join("documents.db")
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let store = SqliteStore::connect(&path, &StoreConfig::default()).expect("connect");
    (dir, path, store)
}

fn owner(store: &dyn Store) -> UserId {
    store
        .users()
        .create(&NewUser::new("owner", "owner@example.com", HASH))
        .expect("user")
        .id
}

fn collection(store: &dyn Store, owner: UserId, name: &str) -> CollectionId {
    store
        .collections()
        .create(&NewCollection::new(name, owner))
        .expect("collection")
        .id
}

/// A valid content hash: `n` as 64 lowercase hex digits.
fn hash(n: u64) -> String {
    format!("{n:064x}")
}

fn doc(collection: CollectionId, n: u64) -> NewDocument {
    NewDocument::new(
        collection,
        format!("/src/{n}.txt"),
        format!("{n}.txt"),
        100,
        hash(n),
    )
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn scalar(path: &str, sql: &str) -> i64 {
    let mut conn = SqliteConnection::establish(path).expect("raw connection");
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .expect("scalar")
        .n
}

#[test]
fn register_is_idempotent_and_uri_is_unique() {
    let (_dir, _path, store) = file_store();
    let c = collection(&store, owner(&store), "docs");
    let mut new = doc(c, 1);
    new.uri = Some("https://example.com/1".into());
    let first = store.documents().register(&new).expect("register");
    assert!(first.created);
    assert_eq!(first.document.status, DocumentStatus::Pending);
    assert_eq!(
        store.documents().get(first.document.id).expect("get"),
        first.document
    );

    // Same hash, other values: the stored document comes back unchanged.
    let mut again = doc(c, 1);
    again.file_name = "renamed.txt".into();
    let second = store.documents().register(&again).expect("again");
    assert!(!second.created);
    assert_eq!(second.document, first.document);

    // Another hash with a taken URI.
    let mut clash = doc(c, 2);
    clash.uri = new.uri.clone();
    assert!(matches!(
        store.documents().register(&clash),
        Err(RepoError::AlreadyExists {
            entity: Entity::Document,
            field: Field::Uri
        })
    ));
    // A stored hash wins over a taken URI (the conflict target is checked first), as
    // with PostgreSQL's arbiter index.
    let mut third = doc(c, 3);
    third.uri = Some("https://example.com/3".into());
    store.documents().register(&third).expect("third");
    let mut both = doc(c, 1);
    both.uri = third.uri.clone();
    let same = store.documents().register(&both).expect("both");
    assert!(!same.created);
    assert_eq!(same.document, first.document);

    // Inside a unit of work the registration goes with the rollback.
    let dyn_store: &dyn Store = &store;
    let rolled_back = dyn_store.transaction(|tx| {
        let created = tx.documents().register_many(&[doc(c, 10), doc(c, 11)])?;
        assert!(created.iter().all(|r| r.created));
        assert_eq!(
            tx.documents().get_by_hash(c, &hash(11))?.file_name,
            "11.txt"
        );
        Err::<(), _>(RepoError::validation(Field::Value, "roll back"))
    });
    assert!(rolled_back.is_err());
    assert!(matches!(
        store.documents().get_by_hash(c, &hash(10)),
        Err(RepoError::NotFound { .. })
    ));

    assert!(matches!(
        store
            .documents()
            .register(&doc(CollectionId(uuid::Uuid::new_v4()), 9)),
        Err(RepoError::NotFound {
            entity: Entity::Collection,
            ..
        })
    ));
}

#[test]
fn register_many_ten_thousand_with_overlap() {
    let (_dir, path, store) = file_store();
    let c = collection(&store, owner(&store), "bulk");
    // 2,000 stored beforehand: hashes 0..2000.
    let stored: Vec<NewDocument> = (0..2_000).map(|n| doc(c, n)).collect();
    let before = store.documents().register_many(&stored).expect("seed");
    assert!(before.iter().all(|r| r.created));

    // 10,000 items: hashes 1000..10000 plus 1,000 repeats of 5000..6000 at the end.
    let mut batch: Vec<NewDocument> = (1_000..10_000).map(|n| doc(c, n)).collect();
    batch.extend((5_000..6_000).map(|n| doc(c, n)));
    assert_eq!(batch.len(), 10_000);
    let out = store.documents().register_many(&batch).expect("bulk");
    assert_eq!(out.len(), batch.len());
    for (item, r) in batch.iter().zip(&out) {
        assert_eq!(
            r.document.content_hash, item.content_hash,
            "input order kept"
        );
    }
    let created = out.iter().filter(|r| r.created).count();
    assert_eq!(created, 8_000, "hashes 2000..10000 are new");
    assert!(
        out[..1_000].iter().all(|r| !r.created),
        "stored ones come back"
    );
    for (i, r) in out[..1_000].iter().enumerate() {
        assert_eq!(r.document.id, before[1_000 + i].document.id);
    }
    for i in 9_000..10_000 {
        let first = &out[i - 9_000 + 4_000];
        assert!(first.created);
        assert!(!out[i].created, "a repeat within the batch is not created");
        assert_eq!(out[i].document, first.document);
    }
    assert_eq!(scalar(&path, "SELECT count(*) AS n FROM documents"), 10_000);
    let stats = store.documents().stats(c).expect("stats");
    assert_eq!(stats.total, 10_000);
    assert_eq!(stats.by_status.get("pending"), Some(&10_000));
    assert_eq!(stats.total_bytes, 1_000_000);

    // Rows read back equal what register_many returned.
    let got = store.documents().get(out[9_999].document.id).expect("get");
    assert_eq!(got, out[9_999].document);
}

#[test]
fn a_bad_item_fails_the_whole_batch() {
    let (_dir, path, store) = file_store();
    let c = collection(&store, owner(&store), "atomic");
    let mut with_uri = doc(c, 1);
    with_uri.uri = Some("u1".into());
    store.documents().register(&with_uri).expect("stored");

    let batch = |bad: NewDocument| {
        let mut b: Vec<NewDocument> = (100..3_100).map(|n| doc(c, n)).collect();
        b[2_500] = bad;
        b
    };
    let mut malformed = doc(c, 5);
    malformed.content_hash = "not-a-hash".into();
    let err = store
        .documents()
        .register_many(&batch(malformed))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::ContentHash,
                item: Some(2500),
                ..
            }
        ),
        "{err:?}"
    );

    // A URI already stored under another hash.
    let mut taken = doc(c, 7);
    taken.uri = Some("u1".into());
    let err = store.documents().register_many(&batch(taken)).unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::Uri,
                item: Some(2500),
                ..
            }
        ),
        "{err:?}"
    );

    // Two hashes with one URI inside the batch.
    let mut b = batch(doc(c, 8));
    b[10].uri = Some("twice".into());
    b[20].uri = Some("twice".into());
    let err = store.documents().register_many(&b).unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::Uri,
                item: Some(20),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(scalar(&path, "SELECT count(*) AS n FROM documents"), 1);

    // Chunks: an unknown document and a stored chunk index write nothing either.
    let d = store.documents().get_by_uri(c, "u1").expect("by uri").id;
    store
        .chunks()
        .insert_many(c, &[NewChunk::new(d, 0, "zero")])
        .expect("first chunk");
    let mut chunks: Vec<NewChunk> = (1..500).map(|i| NewChunk::new(d, i, "text")).collect();
    chunks.push(NewChunk::new(repo_core::DocumentId::new(), 0, "orphan"));
    let err = store.chunks().insert_many(c, &chunks).unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::DocumentId,
                item: Some(499),
                ..
            }
        ),
        "{err:?}"
    );
    chunks.pop();
    chunks.push(NewChunk::new(d, 0, "again"));
    let err = store.chunks().insert_many(c, &chunks).unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::ChunkIndex,
                item: Some(499),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.chunks().count(c).expect("count"), 1);
}

#[test]
fn chunks_bulk_insert_search_and_cascade() {
    let (_dir, path, store) = file_store();
    let owner = owner(&store);
    let c = collection(&store, owner, "fts");
    let other = collection(&store, owner, "other");
    let docs: Vec<_> = store
        .documents()
        .register_many(&(0..10).map(|n| doc(c, n)).collect::<Vec<_>>())
        .expect("documents")
        .into_iter()
        .map(|r| r.document.id)
        .collect();
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit ".repeat(9);
    let batch: Vec<NewChunk> = (0..10_000)
        .map(|i| {
            let word = if i % 1_000 == 0 { "needle" } else { "hay" };
            let mut ch =
                NewChunk::new(docs[i % 10], (i / 10) as i32, format!("{filler}{word} {i}"));
            ch.token_count = Some(100);
            ch
        })
        .collect();
    assert_eq!(
        store.chunks().insert_many(c, &batch).expect("insert"),
        10_000
    );
    assert_eq!(store.chunks().count(c).expect("count"), 10_000);

    let other_doc = store
        .documents()
        .register(&doc(other, 1))
        .expect("doc")
        .document
        .id;
    store
        .chunks()
        .insert_many(other, &[NewChunk::new(other_doc, 0, "needle elsewhere")])
        .expect("other chunk");

    let hits = store
        .chunks()
        .search(c, &SearchQuery::parse("needle"), PageRequest::first(3))
        .expect("search");
    assert_eq!(hits.total, 10, "only this collection's needles");
    assert_eq!(hits.items.len(), 3);
    assert!(hits
        .items
        .iter()
        .all(|h| h.chunk.collection_id == c && h.score > 0.0));
    assert!(hits.items.windows(2).all(|w| w[0].score >= w[1].score));
    let none = store
        .chunks()
        .search(c, &SearchQuery::parse("-needle"), PageRequest::first(3))
        .expect("empty query");
    assert_eq!((none.items.len(), none.total), (0, 0));
    let hostile = store
        .chunks()
        .search(
            c,
            &SearchQuery::parse("needle* ; -- ^"),
            PageRequest::first(3),
        )
        .expect("hostile input is plain words");
    assert_eq!(hostile.total, 10);

    let page = store
        .chunks()
        .list_by_document(docs[3], PageRequest::new(10, 5))
        .expect("list");
    assert_eq!(page.total, 1_000);
    assert_eq!(
        page.items
            .iter()
            .map(|ch| ch.chunk_index)
            .collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 14]
    );
    let pending = store.chunks().without_embedding(c, 4).expect("pending");
    let pairs: Vec<(i64, String)> = pending
        .iter()
        .map(|ch| (ch.id, format!("v{}", ch.id)))
        .collect();
    assert_eq!(store.chunks().set_embedding_ids(c, &pairs).expect("set"), 4);
    assert_eq!(
        store.chunks().without_embedding(c, 1).expect("next")[0].id,
        pending[3].id + 1
    );

    // Deleting the collection removes its chunks and their FTS rows (cascade + trigger).
    let fts_rows = "SELECT count(*) AS n FROM chunks_fts_docsize";
    assert_eq!(scalar(&path, fts_rows), 10_001);
    store
        .collections()
        .delete(c, owner.into())
        .expect("delete collection");
    assert_eq!(store.chunks().count(c).expect("count"), 0);
    assert_eq!(scalar(&path, "SELECT count(*) AS n FROM chunks"), 1);
    assert_eq!(scalar(&path, fts_rows), 1);
    assert_eq!(
        scalar(
            &path,
            "SELECT count(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'needle'"
        ),
        1
    );
    let mut conn = SqliteConnection::establish(&path).expect("raw");
    diesel::sql_query("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
        .execute(&mut conn)
        .expect("FTS index matches its content table");

    let snapshot = store.schema_snapshot().expect("snapshot");
    assert!(snapshot.tables.contains_key("chunks"));
    assert!(
        !snapshot.tables.keys().any(|t| t.starts_with("chunks_fts")),
        "virtual and shadow tables are left out"
    );
}

#[test]
fn document_state_and_meta_filters() {
    let (_dir, _path, store) = file_store();
    let c = collection(&store, owner(&store), "meta");
    let metas = [
        json!({"lang": "en", "n": 1, "flags": {"draft": true, "x": null}}),
        json!({"lang": "en", "n": 1.0, "flags": {}}),
        json!({"lang": "de", "n": "1", "tags": ["a"]}),
        json!({"a.b": {"ü [x]": "dotted"}}),
    ];
    let ids: Vec<_> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut d = doc(c, i as u64);
            d.meta = m.clone();
            store
                .documents()
                .register(&d)
                .expect("register")
                .document
                .id
        })
        .collect();
    let find = |filter: serde_json::Value| {
        let mut found: Vec<usize> = store
            .documents()
            .find_by_meta(c, &filter, PageRequest::first(50))
            .expect("find")
            .items
            .iter()
            .map(|d| ids.iter().position(|id| *id == d.id).expect("known"))
            .collect();
        found.sort_unstable();
        found
    };
    assert_eq!(find(json!({})), vec![0, 1, 2, 3]);
    assert_eq!(
        find(json!({"a.b": {"ü [x]": "dotted"}})),
        vec![3],
        "keys are quoted"
    );
    assert_eq!(find(json!({"a": {"b": {}}})), Vec::<usize>::new());
    assert_eq!(find(json!({"lang": "en"})), vec![0, 1]);
    assert_eq!(
        find(json!({"n": 1})),
        vec![0, 1],
        "numbers compare numerically"
    );
    assert_eq!(find(json!({"n": 1.0})), vec![0, 1]);
    assert_eq!(find(json!({"n": "1"})), vec![2], "a string is not a number");
    assert_eq!(find(json!({"flags": {}})), vec![0, 1]);
    assert_eq!(find(json!({"flags": {"draft": true}})), vec![0]);
    assert_eq!(find(json!({"flags": {"x": null}})), vec![0]);
    assert_eq!(
        find(json!({"flags": {"draft": false}})),
        Vec::<usize>::new()
    );
    assert_eq!(
        find(json!({"lang": "en", "flags": {"draft": true}})),
        vec![0]
    );
    assert_eq!(find(json!({"tags": "a"})), Vec::<usize>::new());
    assert!(matches!(
        store
            .documents()
            .find_by_meta(c, &json!({"tags": ["a"]}), PageRequest::first(5)),
        Err(RepoError::Validation {
            field: Field::Meta,
            ..
        })
    ));

    let failed = store
        .documents()
        .update_status(
            ids[2],
            &DocumentStatusUpdate::failed("boom", ErrorCategory::Transient),
        )
        .expect("fail");
    assert_eq!(failed.error_category, Some(ErrorCategory::Transient));
    let listed = store
        .documents()
        .list_by_collection(c, &DocumentFilter::default(), PageRequest::first(10))
        .expect("list");
    assert_eq!(listed.items[0].id, ids[2], "failed first");
    assert_eq!(listed.items[1].id, ids[3], "then newest");
    assert_eq!(
        store.documents().reset_failed_for_retry(c).expect("reset"),
        1
    );
    let retried = store.documents().get(ids[2]).expect("get");
    assert_eq!(
        (retried.status, retried.retry_count),
        (DocumentStatus::Pending, 1)
    );
    assert_eq!(retried.error_message, None);
    assert_eq!(
        store
            .documents()
            .update_status_many(&ids, &DocumentStatusUpdate::to(DocumentStatus::Completed))
            .expect("many"),
        4
    );
    let later = repo_core::now() + chrono::Duration::seconds(1);
    assert_eq!(
        store.documents().mark_seen(&ids[..1], later).expect("seen"),
        1
    );
    assert_eq!(
        store
            .documents()
            .mark_unseen_stale(c, later)
            .expect("stale"),
        3
    );
    store.documents().delete(ids[0]).expect("delete");
    assert!(matches!(
        store.documents().get(ids[0]),
        Err(RepoError::NotFound {
            entity: Entity::Document,
            ..
        })
    ));
}

/// A chunk written without `search_tokens` (by another tool, or before the
/// `search_tokens` migration) is not searchable until the store's backfill, which
/// reopening the store runs; the backfill is idempotent and keeps FTS5 consistent.
#[test]
fn reopening_backfills_missing_search_tokens() {
    let (_dir, path, store) = file_store();
    let c = collection(&store, owner(&store), "backfill");
    let d = store
        .documents()
        .register(&doc(c, 1))
        .expect("document")
        .document
        .id;
    let mut conn = SqliteConnection::establish(&path).expect("raw");
    diesel::sql_query(
        "INSERT INTO chunks (collection_id, document_id, chunk_index, content, meta, created_at) \
         VALUES (?, ?, 0, 'Written by ANOTHER tool: ΟΔΟΣ', '{}', '2026-01-01T00:00:00.000000Z')",
    )
    .bind::<diesel::sql_types::Text, _>(c.to_string())
    .bind::<diesel::sql_types::Text, _>(d.to_string())
    .execute(&mut conn)
    .expect("raw insert");
    let search = |store: &SqliteStore, q: &str| {
        store
            .chunks()
            .search(c, &SearchQuery::parse(q), PageRequest::default())
            .expect("search")
            .total
    };
    assert_eq!(
        search(&store, "another"),
        0,
        "not indexed before the backfill"
    );
    drop(store);

    let store = SqliteStore::connect(&path, &StoreConfig::default()).expect("reopen");
    assert_eq!(search(&store, "another"), 1);
    assert_eq!(search(&store, "\"another tool οδος\""), 1);
    assert_eq!(
        scalar(
            &path,
            "SELECT count(*) AS n FROM chunks WHERE search_tokens IS NULL"
        ),
        0
    );
    assert_eq!(
        store.backfill_search_tokens().expect("again"),
        0,
        "idempotent"
    );
    diesel::sql_query("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
        .execute(&mut conn)
        .expect("FTS index matches its content table");
}
