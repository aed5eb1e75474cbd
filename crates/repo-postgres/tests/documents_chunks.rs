//! Smoke tests of documents and chunks on PostgreSQL (each test in its own temporary
//! database). The cross-backend behaviours live in the behaviour suite.

use diesel::{Connection, RunQueryDsl};
use repo_core::*;
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn temp_db() -> TempDatabase {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    TempDatabase::create(&admin).expect("create a temporary database")
}

fn open(db: &TempDatabase) -> PostgresStore {
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: 4,
            max_overflow: 8,
            connection_timeout: Duration::from_secs(10),
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    PostgresStore::connect(db.url(), &config).expect("connect")
}

struct Fixture {
    db: TempDatabase,
    store: PostgresStore,
    owner: User,
}

impl Fixture {
    fn new() -> Self {
        let db = temp_db();
        let store = open(&db);
        let owner = store
            .users()
            .create(&NewUser::new("owner", "owner@example.com", HASH))
            .expect("user");
        Self { db, store, owner }
    }

    fn collection(&self, name: &str) -> Collection {
        self.store
            .collections()
            .create(&NewCollection::new(name, self.owner.id))
            .expect("collection")
    }

    fn sql_count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = diesel::PgConnection::establish(self.db.url()).expect("connection");
        diesel::sql_query(sql)
            .get_result::<N>(&mut conn)
            .expect("count")
            .n
    }
}

fn hash(n: u64) -> String {
    format!("{n:064x}")
}

fn doc(c: CollectionId, n: u64) -> NewDocument {
    let mut d = NewDocument::new(c, format!("/src/{n}.txt"), format!("{n}.txt"), 100, hash(n));
    d.uri = Some(format!("file:///src/{n}.txt"));
    d
}

#[test]
fn register_is_idempotent_and_keeps_the_first_values() {
    let fx = Fixture::new();
    let c = fx.collection("docs").id;
    let first = fx.store.documents().register(&doc(c, 1)).unwrap();
    assert!(first.created);
    assert_eq!(first.document.status, DocumentStatus::Pending);
    assert_eq!(
        fx.store.documents().get(first.document.id).unwrap(),
        first.document
    );

    let mut again = doc(c, 1);
    again.file_name = "renamed.txt".into();
    again.uri = Some("file:///elsewhere".into());
    let second = fx.store.documents().register(&again).unwrap();
    assert!(!second.created);
    assert_eq!(second.document, first.document);

    // Another hash on a taken URI.
    let mut clash = doc(c, 2);
    clash.uri = first.document.uri.clone();
    let err = fx.store.documents().register(&clash).unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::AlreadyExists {
                entity: Entity::Document,
                field: Field::Uri
            }
        ),
        "{err:?}"
    );
    let err = fx
        .store
        .documents()
        .register(&doc(CollectionId::new(), 3))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::NotFound {
                entity: Entity::Collection,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn eight_threads_racing_the_same_hashes_create_each_once() {
    let fx = Arc::new(Fixture::new());
    let c = fx.collection("race").id;
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let (fx, barrier) = (Arc::clone(&fx), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                // Each thread walks the same 40 hashes from a different start.
                (0..40u64)
                    .map(|i| {
                        let n = (i + t * 5) % 40;
                        fx.store.documents().register(&doc(c, n)).map(|r| (n, r))
                    })
                    .collect::<RepoResult<Vec<_>>>()
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::HashMap::new();
    for h in handles {
        for (n, r) in h.join().expect("thread").expect("register") {
            created += usize::from(r.created);
            let id = *ids.entry(n).or_insert(r.document.id);
            assert_eq!(id, r.document.id, "hash {n} came back as two documents");
        }
    }
    assert_eq!(created, 40);
    assert_eq!(ids.len(), 40);
    let page = fx
        .store
        .documents()
        .list_by_collection(c, &DocumentFilter::default(), PageRequest::first(100))
        .unwrap();
    assert_eq!(page.total, 40);
}

#[test]
fn racing_bulk_registrations_of_overlapping_hashes() {
    let fx = Arc::new(Fixture::new());
    let c = fx.collection("bulk race").id;
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let (fx, barrier) = (Arc::clone(&fx), Arc::clone(&barrier));
            std::thread::spawn(move || {
                // The same 2,000 hashes in a different order per thread, plus 500 own.
                let mut batch: Vec<NewDocument> = (0..2_000u64)
                    .map(|i| doc(c, (i * (2 * t + 1)) % 2_000))
                    .collect();
                batch.extend((0..500).map(|i| doc(c, 10_000 * (t + 1) + i)));
                barrier.wait();
                fx.store.documents().register_many(&batch)
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::HashMap::new();
    for h in handles {
        for r in h.join().expect("thread").expect("register_many") {
            created += usize::from(r.created);
            let id = *ids
                .entry(r.document.content_hash.clone())
                .or_insert(r.document.id);
            assert_eq!(id, r.document.id);
        }
    }
    assert_eq!(created, 2_000 + 4 * 500);
    assert_eq!(fx.store.documents().stats(c).unwrap().total, 4_000);
}

#[test]
fn register_many_ten_thousand_with_overlap() {
    let fx = Fixture::new();
    let c = fx.collection("bulk").id;
    // 4,000 already stored.
    let stored: Vec<NewDocument> = (0..4_000).map(|n| doc(c, n)).collect();
    let first = fx.store.documents().register_many(&stored).unwrap();
    assert!(first.iter().all(|r| r.created));

    // 10,000 items: 2,000 stored hashes, 7,000 new, 1,000 repeats within the batch.
    let mut batch: Vec<NewDocument> = (2_000..11_000).map(|n| doc(c, n)).collect();
    batch.extend((5_000..6_000).map(|n| doc(c, n)));
    assert_eq!(batch.len(), 10_000);
    let out = fx.store.documents().register_many(&batch).unwrap();
    assert_eq!(out.len(), batch.len());
    assert_eq!(out.iter().filter(|r| r.created).count(), 7_000);
    for (item, r) in batch.iter().zip(&out) {
        assert_eq!(r.document.content_hash, item.content_hash, "input order");
    }
    for (i, r) in out.iter().enumerate().take(2_000) {
        assert!(!r.created);
        assert_eq!(r.document, first[i + 2_000].document);
    }
    for (k, r) in out[9_000..].iter().enumerate() {
        assert!(!r.created);
        assert_eq!(r.document, out[3_000 + k].document);
    }
    let stats = fx.store.documents().stats(c).unwrap();
    assert_eq!(stats.total, 11_000);
    assert_eq!(stats.total_bytes, 1_100_000);
    assert_eq!(stats.by_status.get("pending"), Some(&11_000));
}

#[test]
fn a_bad_item_fails_the_batch_and_writes_nothing() {
    let fx = Fixture::new();
    let c = fx.collection("bad").id;
    fx.store.documents().register(&doc(c, 1)).unwrap();
    let total = |fx: &Fixture| {
        fx.store
            .documents()
            .list_by_collection(c, &DocumentFilter::default(), PageRequest::first(1))
            .unwrap()
            .total
    };

    let mut batch: Vec<NewDocument> = (10..3_010).map(|n| doc(c, n)).collect();
    batch[1_234].file_name = "nul\0".into();
    let err = fx.store.documents().register_many(&batch).unwrap_err();
    match err {
        RepoError::Validation { field, item, .. } => {
            assert_eq!(field, Field::FileName);
            assert_eq!(item, Some(1234));
        }
        other => panic!("{other:?}"),
    }

    // A URI stored for another hash.
    let mut batch: Vec<NewDocument> = (10..3_010).map(|n| doc(c, n)).collect();
    batch[2_500].uri = Some("file:///src/1.txt".into());
    let err = fx.store.documents().register_many(&batch).unwrap_err();
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

    // One URI under two hashes of the batch.
    let mut batch: Vec<NewDocument> = (10..3_010).map(|n| doc(c, n)).collect();
    batch[7].uri = batch[3].uri.clone();
    let err = fx.store.documents().register_many(&batch).unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::Uri,
                item: Some(7),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(total(&fx), 1);

    // Chunks: a document of another collection, then a chunk index already stored.
    let other = fx.collection("other").id;
    let mine = fx
        .store
        .documents()
        .register(&doc(c, 50))
        .unwrap()
        .document
        .id;
    let theirs = fx
        .store
        .documents()
        .register(&doc(other, 50))
        .unwrap()
        .document
        .id;
    fx.store
        .chunks()
        .insert_many(c, &[NewChunk::new(mine, 0, "zero")])
        .unwrap();
    let mut chunks: Vec<NewChunk> = (1..100).map(|i| NewChunk::new(mine, i, "text")).collect();
    chunks[40] = NewChunk::new(theirs, 0, "foreign");
    let err = fx.store.chunks().insert_many(c, &chunks).unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::DocumentId,
                item: Some(40),
                ..
            }
        ),
        "{err:?}"
    );
    let mut chunks: Vec<NewChunk> = (1..100).map(|i| NewChunk::new(mine, i, "text")).collect();
    chunks[60] = NewChunk::new(mine, 0, "again");
    let err = fx.store.chunks().insert_many(c, &chunks).unwrap_err();
    assert!(
        matches!(
            &err,
            RepoError::Validation {
                field: Field::ChunkIndex,
                item: Some(60),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fx.store.chunks().count(c).unwrap(), 1);
}

#[test]
fn chunks_insert_search_and_collection_delete() {
    let fx = Fixture::new();
    let col = fx.collection("search");
    let c = col.id;
    let other = fx.collection("neighbour").id;
    let docs: Vec<NewDocument> = (0..100).map(|n| doc(c, n)).collect();
    let ids: Vec<DocumentId> = fx
        .store
        .documents()
        .register_many(&docs)
        .unwrap()
        .into_iter()
        .map(|r| r.document.id)
        .collect();
    let mut batch = Vec::with_capacity(10_000);
    for (d, id) in ids.iter().enumerate() {
        for i in 0..100 {
            let content = match (d, i) {
                (0, 0) => "Rust async runtime: Tokio".to_owned(),
                (1, 5) => "the async runtime of Rust, again rust".to_owned(),
                (2, 7) => "Größe café naïve".to_owned(),
                _ => format!("filler text number {d} {i}"),
            };
            batch.push(NewChunk::new(*id, i, content));
        }
    }
    assert_eq!(fx.store.chunks().insert_many(c, &batch).unwrap(), 10_000);
    assert_eq!(fx.store.chunks().count(c).unwrap(), 10_000);
    let neighbour_doc = fx
        .store
        .documents()
        .register(&doc(other, 1))
        .unwrap()
        .document
        .id;
    fx.store
        .chunks()
        .insert_many(other, &[NewChunk::new(neighbour_doc, 0, "rust elsewhere")])
        .unwrap();

    let search = |q: &str| {
        fx.store
            .chunks()
            .search(c, &SearchQuery::parse(q), PageRequest::first(10))
            .unwrap()
    };
    let hits = search("rust");
    assert_eq!(hits.total, 2);
    // Two occurrences rank first.
    assert_eq!(
        hits.items[0].chunk.content,
        "the async runtime of Rust, again rust"
    );
    assert!(hits.items[0].score >= hits.items[1].score);
    assert_eq!(search(r#""async runtime" -tokio"#).total, 1);
    assert_eq!(search("tokio OR größe").total, 2);
    assert_eq!(search("GRÖSSE").total, 0, "no folding beyond lowercase");
    assert_eq!(search("größe").items[0].chunk.content, "Größe café naïve");
    // 9,997 match: the total is the counting cap, flagged as a lower bound.
    let many = search("filler number");
    assert_eq!((many.total, many.total_is_exact), (SEARCH_TOTAL_CAP, false));
    assert_eq!(search("'; DROP TABLE chunks; --").total, 0);
    assert_eq!(search("").total, 0);
    let page = fx
        .store
        .chunks()
        .search(
            c,
            &SearchQuery::parse("filler"),
            PageRequest::new(9_990, 50),
        )
        .unwrap();
    // A page past the cap proves the total it reached.
    assert_eq!(
        (page.items.len(), page.total, page.total_is_exact),
        (7, 9_997, false)
    );

    let listed = fx
        .store
        .chunks()
        .list_by_document(ids[1], PageRequest::new(5, 3))
        .unwrap();
    assert_eq!(listed.total, 100);
    let indexes: Vec<i32> = listed.items.iter().map(|c| c.chunk_index).collect();
    assert_eq!(indexes, [5, 6, 7]);

    // Embeddings.
    let pending = fx.store.chunks().without_embedding(c, 3).unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending.windows(2).all(|w| w[0].id < w[1].id));
    let pairs: Vec<(i64, String)> = pending
        .iter()
        .map(|ch| (ch.id, format!("v{}", ch.id)))
        .collect();
    assert_eq!(fx.store.chunks().set_embedding_ids(c, &pairs).unwrap(), 3);
    let next = fx.store.chunks().without_embedding(c, 1).unwrap();
    assert!(next[0].id > pending[2].id);

    // Deleting a document takes its chunks; deleting the collection takes the rest
    // out of its partition, and leaves the neighbour alone.
    fx.store.documents().delete(ids[99]).unwrap();
    assert_eq!(fx.store.chunks().count(c).unwrap(), 9_900);
    assert_eq!(fx.store.chunks().delete_by_document(ids[98]).unwrap(), 100);
    let partition_rows = format!(
        "SELECT count(*)::bigint AS n FROM chunks WHERE collection_id = '{}'",
        c
    );
    assert_eq!(fx.sql_count(&partition_rows), 9_800);
    fx.store
        .collections()
        .delete(c, fx.owner.id.into())
        .unwrap();
    assert_eq!(fx.store.chunks().count(c).unwrap(), 0);
    assert_eq!(
        fx.sql_count(
            "SELECT (SELECT count(*) FROM chunks_p00) + (SELECT count(*) FROM chunks_p01) \
             + (SELECT count(*) FROM chunks_p02) + (SELECT count(*) FROM chunks_p03) \
             + (SELECT count(*) FROM chunks_p04) + (SELECT count(*) FROM chunks_p05) \
             + (SELECT count(*) FROM chunks_p06) + (SELECT count(*) FROM chunks_p07) \
             + (SELECT count(*) FROM chunks_p08) + (SELECT count(*) FROM chunks_p09) \
             + (SELECT count(*) FROM chunks_p10) + (SELECT count(*) FROM chunks_p11) \
             + (SELECT count(*) FROM chunks_p12) + (SELECT count(*) FROM chunks_p13) \
             + (SELECT count(*) FROM chunks_p14) + (SELECT count(*) FROM chunks_p15) AS n"
        ),
        1,
        "only the neighbour's chunk is left in the partitions"
    );
    assert_eq!(fx.store.chunks().count(other).unwrap(), 1);
}

#[test]
fn listing_meta_filters_and_state_changes() {
    let fx = Fixture::new();
    let c = fx.collection("states").id;
    let mut items: Vec<NewDocument> = (0..6).map(|n| doc(c, n)).collect();
    items[0].meta = json!({"lang": "en", "pages": 1.0, "tags": {"a": true}});
    items[1].meta = json!({"lang": "en", "pages": 2});
    items[2].meta = json!({"lang": "de", "pages": 1, "draft": null});
    let docs: Vec<Document> = items
        .iter()
        .map(|d| fx.store.documents().register(d).unwrap().document)
        .collect();

    let find = |filter: serde_json::Value| {
        let page = fx
            .store
            .documents()
            .find_by_meta(c, &filter, PageRequest::first(10))
            .unwrap();
        let hashes: HashSet<String> = page.items.iter().map(|d| d.content_hash.clone()).collect();
        assert_eq!(page.total as usize, hashes.len());
        hashes
    };
    assert_eq!(find(json!({"lang": "en"})).len(), 2);
    assert_eq!(find(json!({"pages": 1})), find(json!({"pages": 1.0})));
    assert_eq!(find(json!({"pages": 1})).len(), 2);
    assert_eq!(find(json!({"tags": {}})).len(), 1);
    assert_eq!(find(json!({"draft": null})).len(), 1);
    assert_eq!(find(json!({})).len(), 6);
    let err = fx
        .store
        .documents()
        .find_by_meta(c, &json!({"tags": ["a"]}), PageRequest::first(1))
        .unwrap_err();
    assert!(matches!(
        err,
        RepoError::Validation {
            field: Field::Meta,
            ..
        }
    ));

    let failed = fx
        .store
        .documents()
        .update_status(
            docs[3].id,
            &DocumentStatusUpdate::failed("boom", ErrorCategory::Transient),
        )
        .unwrap();
    assert_eq!(failed.error_category, Some(ErrorCategory::Transient));
    let listed = fx
        .store
        .documents()
        .list_by_collection(c, &DocumentFilter::default(), PageRequest::first(10))
        .unwrap();
    assert_eq!(listed.items[0].id, docs[3].id, "failed first");
    assert_eq!(listed.items[1].id, docs[5].id, "then newest");

    let moved = fx
        .store
        .documents()
        .update_status_many(
            &[docs[0].id, docs[1].id, DocumentId::new()],
            &DocumentStatusUpdate {
                chunk_count: Some(7),
                ..DocumentStatusUpdate::to(DocumentStatus::Completed)
            },
        )
        .unwrap();
    assert_eq!(moved, 2);
    assert_eq!(fx.store.documents().get(docs[0].id).unwrap().chunk_count, 7);
    assert_eq!(fx.store.documents().reset_failed_for_retry(c).unwrap(), 1);
    let retried = fx.store.documents().get(docs[3].id).unwrap();
    assert_eq!(
        (retried.status, retried.retry_count, retried.error_message),
        (DocumentStatus::Pending, 1, None)
    );

    let later = now() + chrono::Duration::seconds(10);
    assert_eq!(
        fx.store
            .documents()
            .mark_seen(&[docs[0].id, docs[1].id], later)
            .unwrap(),
        2
    );
    assert_eq!(
        fx.store
            .documents()
            .mark_unseen_stale(c, later - chrono::Duration::seconds(1))
            .unwrap(),
        4
    );
    let stale = fx
        .store
        .documents()
        .list_by_collection(
            c,
            &DocumentFilter {
                is_stale: Some(true),
                ..Default::default()
            },
            PageRequest::first(10),
        )
        .unwrap();
    assert_eq!(stale.total, 4);
    assert_eq!(
        fx.store
            .documents()
            .get_by_uri(c, "file:///src/2.txt")
            .unwrap()
            .id,
        docs[2].id
    );
    assert_eq!(
        fx.store.documents().get_by_hash(c, &hash(4)).unwrap().id,
        docs[4].id
    );
    assert!(matches!(
        fx.store.documents().get_by_uri(c, "nul\0").unwrap_err(),
        RepoError::Validation {
            field: Field::Uri,
            ..
        }
    ));
    assert!(matches!(
        fx.store.documents().delete(DocumentId::new()).unwrap_err(),
        RepoError::NotFound {
            entity: Entity::Document,
            ..
        }
    ));
    assert!(matches!(
        fx.store.documents().stats(CollectionId::new()).unwrap_err(),
        RepoError::NotFound {
            entity: Entity::Collection,
            ..
        }
    ));
}

#[test]
fn bulk_calls_inside_one_unit_of_work() {
    let fx = Fixture::new();
    let c = fx.collection("uow").id;
    let store: &dyn Store = &fx.store;
    let out = store
        .transaction(|tx| {
            let a = tx
                .documents()
                .register_many(&(0..50).map(|n| doc(c, n)).collect::<Vec<_>>())?;
            // A second bulk call in the same transaction (the staging table again),
            // after a failed one that was rolled back to its savepoint.
            let bad = tx.documents().register_many(&[doc(c, 60), {
                let mut d = doc(c, 61);
                d.uri = Some("file:///src/60.txt".into());
                d
            }]);
            assert!(bad.is_err());
            let b = tx
                .documents()
                .register_many(&(40..80).map(|n| doc(c, n)).collect::<Vec<_>>())?;
            let n = tx.chunks().insert_many(
                c,
                &[
                    NewChunk::new(a[0].document.id, 0, "one"),
                    NewChunk::new(b[39].document.id, 0, "two"),
                ],
            )?;
            Ok((a.len(), b.iter().filter(|r| r.created).count(), n))
        })
        .unwrap();
    assert_eq!(out, (50, 30, 2));
    assert_eq!(fx.store.chunks().count(c).unwrap(), 2);

    // Rolled back as a whole.
    let err = store
        .transaction(|tx| {
            tx.documents().register_many(&[doc(c, 100)])?;
            Err::<(), _>(RepoError::validation(Field::Value, "roll back"))
        })
        .unwrap_err();
    assert!(matches!(
        err,
        RepoError::Validation {
            field: Field::Value,
            ..
        }
    ));
    assert!(matches!(
        fx.store.documents().get_by_hash(c, &hash(100)).unwrap_err(),
        RepoError::NotFound { .. }
    ));
}

/// A chunk written without `search_tokens` (by another tool, or before the
/// `search_tokens` migration) is not searchable until the store's backfill, which
/// reopening the store runs; the backfill is idempotent.
#[test]
fn reopening_backfills_missing_search_tokens() {
    let f = Fixture::new();
    let c = f.collection("backfill").id;
    let d = f
        .store
        .documents()
        .register(&doc(c, 1))
        .expect("document")
        .document
        .id;
    let mut conn = diesel::PgConnection::establish(f.db.url()).expect("connection");
    diesel::sql_query(
        "INSERT INTO chunks (collection_id, document_id, chunk_index, content, meta, created_at) \
         VALUES ($1, $2, 0, 'Written by ANOTHER tool: ΟΔΟΣ', '{}', now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(c.0)
    .bind::<diesel::sql_types::Uuid, _>(d.0)
    .execute(&mut conn)
    .expect("raw insert");
    let search = |store: &PostgresStore, q: &str| {
        store
            .chunks()
            .search(c, &SearchQuery::parse(q), PageRequest::default())
            .expect("search")
            .total
    };
    assert_eq!(
        search(&f.store, "another"),
        0,
        "not searchable before the backfill"
    );

    let store = open(&f.db);
    assert_eq!(search(&store, "another"), 1);
    assert_eq!(search(&store, "\"another tool οδος\""), 1);
    assert_eq!(
        f.sql_count(
            "SELECT count(*) AS n FROM chunks \
             WHERE search_tokens IS NULL OR search_tsv IS NULL"
        ),
        0
    );
    assert_eq!(
        store.backfill_search_tokens().expect("again"),
        0,
        "idempotent"
    );
}
