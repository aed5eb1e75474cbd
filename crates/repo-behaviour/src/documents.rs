//! Documents: registration deduplicated by content hash (alone, in bulk and under
//! racing callers), URIs, validation, listings, metadata filters, state changes,
//! staleness, statistics and deletion.

use crate::expect;
use crate::race::race;
use crate::seed;
use crate::Harness;
use repo_core::{
    CollectionId, Document, DocumentFilter, DocumentId, DocumentStatus, DocumentStatusUpdate,
    Entity, ErrorCategory, Field, NewChunk, NewDocument, PageRequest, RepoError, RepoResult, Store,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __documents_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            documents::document_register_applies_defaults,
            documents::document_register_is_idempotent_on_hash,
            documents::document_same_hash_in_another_collection_is_new,
            documents::document_uri_is_unique_per_collection,
            documents::document_register_is_validated,
            documents::document_register_in_unknown_collection_is_not_found,
            documents::document_racing_registrations_create_each_hash_once,
            documents::document_racing_registrations_with_a_uri_are_idempotent,
            documents::document_register_many_dedupes_in_input_order,
            documents::document_register_many_bad_item_writes_nothing,
            documents::document_repeated_hash_ignores_its_new_uri,
            documents::document_lookups,
            documents::document_list_is_failed_first_then_newest,
            documents::document_find_by_meta_matches_containment,
            documents::document_find_by_meta_stays_in_its_collection,
            documents::document_find_by_meta_hostile_keys_and_values,
            documents::document_update_status_single_and_many,
            documents::document_reset_failed_for_retry,
            documents::document_mark_seen_and_unseen_stale,
            documents::document_stats_by_status_bytes_and_chunks,
            documents::document_delete_removes_its_chunks,
            documents::document_register_many_bad_item_deep_in_a_large_batch_writes_nothing,
            documents::document_bulk_calls_in_a_unit_of_work,
        }
    };
}

/// Makes one field of a valid document invalid.
type Spoil = fn(&mut NewDocument);

/// How the listings order documents of equal rank: `created_at DESC, id DESC`.
fn newest_first(docs: &mut [Document]) {
    docs.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
}

/// Ids of a page, in order.
fn ids(docs: &[Document]) -> Vec<DocumentId> {
    docs.iter().map(|d| d.id).collect()
}

/// Every document of `c` (at most 1,000), as `list_by_collection` orders them.
#[track_caller]
fn list_all(store: &dyn Store, c: CollectionId, filter: &DocumentFilter) -> Vec<Document> {
    let page = expect::ok(
        store
            .documents()
            .list_by_collection(c, filter, PageRequest::first(PageRequest::MAX_LIMIT)),
        "list_by_collection",
    );
    assert_eq!(
        page.total,
        page.items.len() as u64,
        "total of a full listing"
    );
    page.items
}

/// How many documents `c` holds, by its statistics.
#[track_caller]
fn total(store: &dyn Store, c: CollectionId) -> u64 {
    expect::ok(store.documents().stats(c), "stats").total
}

/// Registering applies the defaults: pending, retry 0, chunk_count 0, no error, fresh, seen now, and reads back equal.
pub fn document_register_applies_defaults(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &u, "docs");
    let new = seed::new_document(c.id, 7);
    let before = repo_core::now();
    let r = expect::ok(s.documents().register(&new), "register");
    let after = repo_core::now();
    assert!(r.created, "a new document is created");
    let d = &r.document;
    assert_eq!(d.collection_id, c.id);
    assert_eq!(
        (d.file_path.as_str(), d.file_name.as_str(), d.file_size),
        ("/data/doc-7.txt", "doc-7.txt", 7)
    );
    assert_eq!(d.content_hash, seed::content_hash(7));
    assert_eq!((d.mime_type.as_deref(), d.uri.as_deref()), (None, None));
    assert_eq!(d.status, DocumentStatus::Pending);
    assert_eq!((d.error_message.as_deref(), d.error_category), (None, None));
    assert_eq!((d.retry_count, d.chunk_count), (0, 0));
    assert_eq!(d.meta, json!({}), "meta defaults to an empty object");
    assert!(!d.is_stale, "a new document is not stale");
    assert!(
        before <= d.created_at && d.created_at <= after,
        "created_at within the call"
    );
    assert_eq!(d.updated_at, d.created_at);
    assert_eq!(
        d.last_seen_at,
        Some(d.created_at),
        "registering counts as seeing"
    );
    assert_eq!(
        expect::ok(s.documents().get(d.id), "get"),
        *d,
        "reads back equal"
    );

    let mut full = seed::new_document(c.id, 8);
    full.mime_type = Some("text/markdown".into());
    full.uri = Some("https://example.com/ünï/doc-8.md?q=1&r=%20".into());
    full.meta = json!({"lang": "en", "pages": 3, "ratio": 0.5, "tags": ["a", "b"], "n": null});
    let r = expect::ok(s.documents().register(&full), "register with every field");
    assert_eq!(r.document.mime_type, full.mime_type);
    assert_eq!(r.document.uri, full.uri);
    assert_eq!(r.document.meta, full.meta);
    assert_eq!(
        expect::ok(s.documents().get(r.document.id), "get"),
        r.document
    );
}

/// Registering a known (collection, content_hash) returns the stored document unchanged, with `created: false` and the same id.
pub fn document_register_is_idempotent_on_hash(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bob");
    let c = seed::collection(&*s, &u, "docs");
    let mut first = seed::new_document(c.id, 1);
    first.uri = Some("file:///one".into());
    first.meta = json!({"v": 1});
    let created = expect::ok(s.documents().register(&first), "first register");
    assert!(created.created);
    let again = expect::ok(s.documents().register(&first), "same input again");
    assert!(!again.created, "the second registration creates nothing");
    assert_eq!(again.document, created.document);

    let mut changed = NewDocument::new(
        c.id,
        "/elsewhere/x.pdf",
        "x.pdf",
        999,
        seed::content_hash(1),
    );
    changed.uri = Some("file:///another-uri".into());
    changed.mime_type = Some("application/pdf".into());
    changed.meta = json!({"v": 2});
    let again = expect::ok(s.documents().register(&changed), "same hash, new values");
    assert!(!again.created);
    assert_eq!(
        again.document, created.document,
        "the stored document comes back unchanged, whatever the new values were"
    );
    assert_eq!(
        expect::ok(s.documents().get(created.document.id), "get"),
        created.document
    );
    assert_eq!(total(&*s, c.id), 1);
}

/// The same content hash registered in another collection is another document.
pub fn document_same_hash_in_another_collection_is_new(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "carol");
    let c1 = seed::collection(&*s, &u, "one");
    let c2 = seed::collection(&*s, &u, "two");
    let mut new = seed::new_document(c1.id, 5);
    new.uri = Some("s3://bucket/five".into());
    let a = expect::ok(s.documents().register(&new), "in c1");
    new.collection_id = c2.id;
    let b = expect::ok(s.documents().register(&new), "same hash and uri in c2");
    assert!(a.created && b.created, "both are new");
    assert_ne!(a.document.id, b.document.id);
    assert_eq!(b.document.collection_id, c2.id);
    let hash = seed::content_hash(5);
    let by_hash = |c| expect::ok(s.documents().get_by_hash(c, &hash), "get_by_hash");
    assert_eq!(by_hash(c1.id).id, a.document.id);
    assert_eq!(by_hash(c2.id).id, b.document.id);
    assert_eq!((total(&*s, c1.id), total(&*s, c2.id)), (1, 1));
}

/// A URI is unique per collection (`AlreadyExists { field: Field::Uri }`); documents without a URI never clash.
pub fn document_uri_is_unique_per_collection(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dave");
    let c = seed::collection(&*s, &u, "docs");
    let other = seed::collection(&*s, &u, "other");
    let with_uri = |c: CollectionId, n: u64, uri: &str| {
        let mut new = seed::new_document(c, n);
        new.uri = Some(uri.to_owned());
        new
    };
    expect::ok(
        s.documents().register(&with_uri(c.id, 1, "https://x/a")),
        "first",
    );
    expect::already_exists(
        s.documents().register(&with_uri(c.id, 2, "https://x/a")),
        Entity::Document,
        Field::Uri,
        "another hash with a taken uri",
    );
    expect::ok(
        s.documents().register(&with_uri(c.id, 3, "https://x/A")),
        "uris compare exactly",
    );
    expect::ok(
        s.documents()
            .register(&with_uri(other.id, 2, "https://x/a")),
        "the same uri in another collection",
    );
    for n in 10..15 {
        expect::ok(
            s.documents().register(&seed::new_document(c.id, n)),
            "documents without uri",
        );
    }
    assert_eq!(total(&*s, c.id), 7, "the refused document was not stored");
    expect::not_found(
        s.documents().get_by_hash(c.id, &seed::content_hash(2)),
        Entity::Document,
        "the refused document",
    );
}

/// Bad input (hash not 64 lowercase hex, negative size, NUL in text, meta not an object, empty path) is `Validation` naming the field, and nothing is stored.
pub fn document_register_is_validated(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "erin");
    let c = seed::collection(&*s, &u, "docs");
    let base = seed::new_document(c.id, 1);
    let cases: Vec<(Field, Spoil)> = vec![
        (Field::ContentHash, |d| d.content_hash = "A".repeat(64)),
        (Field::ContentHash, |d| {
            d.content_hash = d.content_hash.replace('0', "A")
        }),
        (Field::ContentHash, |d| d.content_hash.truncate(63)),
        (Field::ContentHash, |d| d.content_hash.push('0')),
        (Field::ContentHash, |d| {
            d.content_hash.replace_range(0..1, "g")
        }),
        (Field::ContentHash, |d| {
            d.content_hash.replace_range(0..1, " ")
        }),
        (Field::ContentHash, |d| {
            d.content_hash.replace_range(0..2, "é")
        }),
        (Field::ContentHash, |d| d.content_hash.clear()),
        (Field::FileSize, |d| d.file_size = -1),
        (Field::FilePath, |d| d.file_path = "/a\0b".into()),
        (Field::FilePath, |d| d.file_path = "  ".into()),
        (Field::FileName, |d| d.file_name = "x\0".into()),
        (Field::MimeType, |d| d.mime_type = Some("text/\0".into())),
        (Field::Uri, |d| d.uri = Some("s3://\0".into())),
        (Field::Meta, |d| d.meta = json!([1, 2])),
        (Field::Meta, |d| d.meta = json!("text")),
        (Field::Meta, |d| d.meta = Value::Null),
        (Field::Meta, |d| d.meta = json!({"k": "v\0"})),
        (Field::Meta, |d| d.meta = json!({"k\0": 1})),
    ];
    for (i, (field, spoil)) in cases.iter().enumerate() {
        let mut new = base.clone();
        spoil(&mut new);
        let what = format!("case {i} ({field})");
        expect::validation(s.documents().register(&new), *field, &what);
        expect::validation(s.documents().register_many(&[new]), *field, &what);
    }
    assert_eq!(total(&*s, c.id), 0, "nothing was stored");
    let mut zero = base.clone();
    zero.file_size = 0;
    expect::ok(s.documents().register(&zero), "an empty file is fine");
}

/// Registering (alone or in bulk, naming the first item) in an unknown collection, or its stats, is `NotFound { entity: Entity::Collection }`; listing it is empty.
pub fn document_register_in_unknown_collection_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let missing = CollectionId::new();
    expect::not_found(
        s.documents().register(&seed::new_document(missing, 1)),
        Entity::Collection,
        "register",
    );
    let batch: Vec<NewDocument> = (0..3).map(|n| seed::new_document(missing, n)).collect();
    match expect::err(s.documents().register_many(&batch), "register_many") {
        e @ RepoError::NotFound {
            entity: Entity::Collection,
            item: Some(0),
            ..
        } => assert_eq!(
            e.to_string(),
            format!("collection not found: item 0: {missing}"),
            "the first item names it"
        ),
        other => panic!("register_many: expected NotFound {{ collection }}, got {other:?}"),
    }
    expect::not_found(s.documents().stats(missing), Entity::Collection, "stats");
    let listed = expect::ok(
        s.documents().list_by_collection(
            missing,
            &DocumentFilter::default(),
            PageRequest::default(),
        ),
        "list_by_collection of an unknown collection",
    );
    assert_eq!((listed.items.len(), listed.total), (0, 0));
    let empty = expect::ok(s.documents().register_many(&[]), "an empty batch");
    assert!(empty.is_empty());
}

/// Eight threads registering 1,024 overlapping hashes at once (batches in both orders and with shifted boundaries, and singles) see no error, and each hash is created exactly once with one id.
pub fn document_racing_registrations_create_each_hash_once(h: &dyn Harness) {
    const DISTINCT: u64 = 1024;
    let s = h.store();
    let u = seed::user(&*s, "fay");
    let c = seed::collection(&*s, &u, "race");
    let store = Arc::clone(&s);
    let cid = c.id;
    let results = race(8, move |i| -> RepoResult<Vec<(String, bool, DocumentId)>> {
        let k = i as u64 / 2;
        let mut out = Vec::new();
        let mut record = |r: repo_core::Registered| {
            out.push((r.document.content_hash, r.created, r.document.id));
        };
        if i % 2 == 0 {
            // Every hash, in batches of 128 (shifted by 64 for k odd), ascending for
            // k < 2 and descending otherwise, each batch repeating its first item.
            let mut ns: Vec<u64> = (0..DISTINCT).collect();
            if k >= 2 {
                ns.reverse();
            }
            let first = if k % 2 == 1 { 64 } else { 128 };
            let (head, tail) = ns.split_at(first);
            for part in std::iter::once(head).chain(tail.chunks(128)) {
                let mut batch: Vec<NewDocument> =
                    part.iter().map(|&n| seed::new_document(cid, n)).collect();
                batch.push(batch[0].clone());
                store
                    .documents()
                    .register_many(&batch)?
                    .into_iter()
                    .for_each(&mut record);
            }
        } else {
            // 96 singles straddling the batch boundaries, in both orders.
            let start = 80 + 256 * k;
            let mut ns: Vec<u64> = (start..start + 96).collect();
            if k % 2 == 1 {
                ns.reverse();
            }
            for n in ns {
                record(store.documents().register(&seed::new_document(cid, n))?);
            }
        }
        Ok(out)
    });
    let mut ids: HashMap<String, DocumentId> = HashMap::new();
    let mut creations: HashMap<String, u32> = HashMap::new();
    let mut created_total = 0u64;
    for (i, r) in results.into_iter().enumerate() {
        let rows = r.unwrap_or_else(|e| panic!("racer {i} got an error: {e:?} ({e})"));
        for (hash, created, id) in rows {
            let first = *ids.entry(hash.clone()).or_insert(id);
            assert_eq!(first, id, "hash {hash} came back with two ids");
            if created {
                created_total += 1;
                *creations.entry(hash).or_default() += 1;
            }
        }
    }
    assert_eq!(ids.len() as u64, DISTINCT, "distinct hashes seen");
    assert!(
        creations.values().all(|&n| n == 1),
        "a hash was created twice"
    );
    assert_eq!(
        created_total, DISTINCT,
        "`created` is true exactly once per distinct hash across all callers"
    );
    let stats = expect::ok(s.documents().stats(c.id), "stats");
    assert_eq!(stats.total, DISTINCT, "no duplicate rows");
    let page = expect::ok(
        s.documents()
            .list_by_collection(c.id, &DocumentFilter::default(), PageRequest::first(1)),
        "list",
    );
    assert_eq!(page.total, DISTINCT);
    for n in [0, 599, DISTINCT - 1] {
        let hash = seed::content_hash(n);
        let d = expect::ok(s.documents().get_by_hash(c.id, &hash), "get_by_hash");
        assert_eq!(Some(&d.id), ids.get(&hash));
    }
}

/// `register(new)`, or `register_many(&[new])` when `bulk`.
fn register_alone_or_in_bulk(
    store: &dyn Store,
    new: &NewDocument,
    bulk: bool,
) -> RepoResult<repo_core::Registered> {
    if bulk {
        store
            .documents()
            .register_many(std::slice::from_ref(new))
            .map(|mut v| v.remove(0))
    } else {
        store.documents().register(new)
    }
}

/// Callers racing to register one document (same hash and URI), alone and in bulk, all get it back, created once, never `AlreadyExists { uri }`; racing with one URI and different hashes, one wins and the others are told the URI is taken.
pub fn document_racing_registrations_with_a_uri_are_idempotent(h: &dyn Harness) {
    const ROUNDS: u64 = 40;
    const RACERS: usize = 8;
    let s = h.store();
    let u = seed::user(&*s, "gus");
    let c = seed::collection(&*s, &u, "uri race");
    let cid = c.id;
    let with_uri = move |n: u64| {
        let mut new = seed::new_document(cid, n);
        new.uri = Some(format!("https://example.com/doc/{n}"));
        new
    };
    let store = Arc::clone(&s);
    let barrier = Arc::new(std::sync::Barrier::new(RACERS));
    // Every racer takes part in every round (no early return), so the barrier never
    // waits for a racer that gave up.
    let results = race(RACERS, move |i| -> Vec<RepoResult<repo_core::Registered>> {
        (0..ROUNDS)
            .map(|round| {
                let new = with_uri(round);
                barrier.wait();
                register_alone_or_in_bulk(&*store, &new, i % 2 == 1)
            })
            .collect()
    });
    let mut created = vec![0u32; ROUNDS as usize];
    let mut ids: HashMap<u64, DocumentId> = HashMap::new();
    for (i, rounds) in results.into_iter().enumerate() {
        for (round, r) in rounds.into_iter().enumerate() {
            let r = r.unwrap_or_else(|e| {
                panic!("racer {i}, round {round}: registering the same document: {e:?}")
            });
            let first = *ids.entry(round as u64).or_insert(r.document.id);
            assert_eq!(first, r.document.id, "round {round}: two documents");
            created[round] += u32::from(r.created);
        }
    }
    assert!(
        created.iter().all(|&n| n == 1),
        "each document is created exactly once: {created:?}"
    );
    assert_eq!(total(&*s, c.id), ROUNDS);
    // Racers with one URI and different hashes: one document wins each round, every
    // other caller is told the URI is taken (never a conflict or a backend error).
    let store = Arc::clone(&s);
    let barrier = Arc::new(std::sync::Barrier::new(RACERS));
    let results = race(RACERS, move |i| -> Vec<RepoResult<repo_core::Registered>> {
        (0..ROUNDS / 2)
            .map(|round| {
                let mut new = seed::new_document(cid, 1_000 * (round + 1) + i as u64);
                new.uri = Some(format!("https://example.com/contested/{round}"));
                barrier.wait();
                register_alone_or_in_bulk(&*store, &new, i % 2 == 1)
            })
            .collect()
    });
    let mut winners = vec![0u32; (ROUNDS / 2) as usize];
    for (i, rounds) in results.into_iter().enumerate() {
        for (round, r) in rounds.into_iter().enumerate() {
            match (i % 2, r) {
                (_, Ok(r)) => {
                    assert!(r.created, "racer {i}, round {round}: a new hash");
                    winners[round] += 1;
                }
                (
                    0,
                    Err(RepoError::AlreadyExists {
                        entity: Entity::Document,
                        field: Field::Uri,
                    }),
                ) => {}
                (
                    1,
                    Err(RepoError::Validation {
                        field: Field::Uri,
                        item: Some(0),
                        ..
                    }),
                ) => {}
                (_, Err(e)) => panic!("racer {i}, round {round}: a contested URI: {e:?}"),
            }
        }
    }
    assert!(
        winners.iter().all(|&n| n == 1),
        "one document per contested URI: {winners:?}"
    );
    let mut taken = seed::new_document(c.id, ROUNDS + 1);
    taken.uri = Some("https://example.com/doc/0".into());
    expect::already_exists(
        s.documents().register(&taken),
        Entity::Document,
        Field::Uri,
        "another hash with a URI a raced document holds",
    );
    expect::item_validation(
        s.documents().register_many(std::slice::from_ref(&taken)),
        Field::Uri,
        0,
        "another hash with a URI a raced document holds, in bulk",
    );
}

/// `register_many` of 10,000 items, some already stored and some repeated within the batch, returns one result per item in input order with the right `created` flags and ids.
pub fn document_register_many_dedupes_in_input_order(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "gus");
    let c = seed::collection(&*s, &u, "bulk");
    // Stored first: the even n below 2,000.
    let stored_batch: Vec<NewDocument> = (0..2000)
        .step_by(2)
        .map(|n| seed::new_document(c.id, n))
        .collect();
    let stored = expect::ok(s.documents().register_many(&stored_batch), "first batch");
    assert!(stored.iter().all(|r| r.created));
    let stored: HashMap<String, Document> = stored
        .into_iter()
        .map(|r| (r.document.content_hash.clone(), r.document))
        .collect();
    assert_eq!(stored.len(), 1000);

    // Item i is document i, except that every i ≡ 9 (mod 10) repeats item i − 5.
    let batch: Vec<NewDocument> = (0..10_000u64)
        .map(|i| {
            let n = if i % 10 == 9 { i - 5 } else { i };
            let mut d = seed::new_document(c.id, n);
            d.file_path = format!("/batch/{i}");
            d
        })
        .collect();
    let results = expect::ok(s.documents().register_many(&batch), "10,000 items");
    assert_eq!(results.len(), batch.len(), "one result per item");
    let mut created = 0;
    for (i, (r, item)) in results.iter().zip(&batch).enumerate() {
        assert_eq!(
            r.document.content_hash, item.content_hash,
            "result {i} is not for item {i}"
        );
        let i = i as u64;
        if i % 10 == 9 {
            assert!(!r.created, "item {i} repeats an earlier item");
            assert_eq!(r.document, results[i as usize - 5].document, "item {i}");
        } else if let Some(before) = stored.get(&item.content_hash) {
            assert!(!r.created, "item {i} was stored before");
            assert_eq!(&r.document, before, "item {i} comes back unchanged");
        } else {
            assert!(r.created, "item {i} is new");
            assert_eq!(r.document.file_path, format!("/batch/{i}"));
            assert_eq!(r.document.status, DocumentStatus::Pending);
            created += 1;
        }
    }
    assert_eq!(created, 8000);
    assert_eq!(total(&*s, c.id), 9000, "stored rows");
    let last = expect::ok(
        s.documents().get_by_hash(c.id, &seed::content_hash(9998)),
        "get",
    );
    assert_eq!(last, results[9998].document);
}

/// A batch with one bad item (bad hash, NUL, another collection, a taken or repeated URI) fails naming `item k` and writes nothing.
pub fn document_register_many_bad_item_writes_nothing(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "hal");
    let c = seed::collection(&*s, &u, "docs");
    let mut taken = seed::new_document(c.id, 1_000_000);
    taken.uri = Some("https://x/taken".into());
    expect::ok(s.documents().register(&taken), "stored document");
    let batch = || -> Vec<NewDocument> { (0..12).map(|n| seed::new_document(c.id, n)).collect() };
    let check = |b: Vec<NewDocument>, field: Field, k: usize, what: &str| {
        expect::item_validation(s.documents().register_many(&b), field, k, what);
        assert_eq!(total(&*s, c.id), 1, "{what}: nothing was written");
        expect::not_found(
            s.documents().get_by_hash(c.id, &seed::content_hash(0)),
            Entity::Document,
            what,
        );
    };

    let mut b = batch();
    b[7].content_hash = "F".repeat(64);
    check(b, Field::ContentHash, 7, "upper-case hash at 7");
    let mut b = batch();
    b[0].content_hash.pop();
    check(b, Field::ContentHash, 0, "short hash at 0");
    let mut b = batch();
    b[11].file_name = "a\0b".into();
    check(b, Field::FileName, 11, "NUL at 11");
    let mut b = batch();
    b[5].meta = json!(["x"]);
    check(b, Field::Meta, 5, "array meta at 5");
    let mut b = batch();
    b[7].uri = Some("https://x/taken".into());
    check(b, Field::Uri, 7, "uri of a stored document at 7");
    let mut b = batch();
    b[3].uri = Some("https://x/twice".into());
    b[9].uri = Some("https://x/twice".into());
    check(b, Field::Uri, 9, "one uri for two hashes at 3 and 9");

    // An unknown collection at k: `NotFound` with the item's index and the id as key.
    let mut b = batch();
    let missing = CollectionId::new();
    b[7].collection_id = missing;
    match expect::err(s.documents().register_many(&b), "unknown collection at 7") {
        RepoError::NotFound {
            entity: Entity::Collection,
            key,
            item: Some(7),
        } => assert_eq!(key, missing.to_string()),
        other => panic!("unknown collection at 7: expected NotFound naming item 7, got {other:?}"),
    }
    assert_eq!(
        total(&*s, c.id),
        1,
        "unknown collection: nothing was written"
    );

    // Not errors: the same hash twice with one URI, or a stored hash with another URI.
    let mut b = batch();
    b[2].uri = Some("https://x/same".into());
    b[8] = b[2].clone();
    b[10] = taken.clone();
    b[10].uri = Some("https://x/new-uri-for-a-known-hash".into());
    let r = expect::ok(s.documents().register_many(&b), "legal repeats");
    assert!(!r[8].created && r[8].document == r[2].document);
    assert!(!r[10].created);
    assert_eq!(r[10].document.uri.as_deref(), Some("https://x/taken"));
    assert_eq!(total(&*s, c.id), 11);
}

/// A repeated hash (stored, or earlier in the batch) returns that document unchanged and its new URI is ignored: it never clashes, alone or in a batch.
pub fn document_repeated_hash_ignores_its_new_uri(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "hana");
    let c = seed::collection(&*s, &u, "docs");
    let with_uri = |n: u64, uri: &str| {
        let mut new = seed::new_document(c.id, n);
        new.uri = Some(uri.to_owned());
        new
    };
    let a = expect::ok(s.documents().register(&with_uri(1, "u/a")), "a").document;
    expect::ok(s.documents().register(&with_uri(2, "u/b")), "b");
    let again = expect::ok(
        s.documents().register(&with_uri(1, "u/b")),
        "stored hash with the uri of another document",
    );
    assert!(!again.created);
    assert_eq!(again.document, a, "unchanged, whatever the new values were");

    let batch = [
        with_uri(1, "u/b"), // stored hash, uri of another document: ignored
        with_uri(3, "u/c"), // new
        with_uri(3, "u/d"), // repeats item 1: its uri is ignored
        with_uri(4, "u/d"), // new: "u/d" is nobody's uri
    ];
    let r = expect::ok(s.documents().register_many(&batch), "batch with repeats");
    let created: Vec<bool> = r.iter().map(|x| x.created).collect();
    assert_eq!(created, vec![false, true, false, true]);
    assert_eq!(r[0].document, a);
    assert_eq!(r[2].document, r[1].document);
    assert_eq!(r[1].document.uri.as_deref(), Some("u/c"));
    assert_eq!(r[3].document.uri.as_deref(), Some("u/d"));
    let by_uri = expect::ok(s.documents().get_by_uri(c.id, "u/b"), "u/b");
    assert_eq!(
        by_uri.content_hash,
        seed::content_hash(2),
        "u/b keeps its owner"
    );
    assert_eq!(total(&*s, c.id), 4);
}

/// `get`, `get_by_hash` and `get_by_uri` find a document only in its own collection; anything else is `NotFound`, NUL is `Validation`.
pub fn document_lookups(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "ida");
    let c = seed::collection(&*s, &u, "docs");
    let other = seed::collection(&*s, &u, "other");
    let mut new = seed::new_document(c.id, 3);
    new.uri = Some("https://example.com/a b/ç?x=1".into());
    let d = expect::ok(s.documents().register(&new), "register").document;
    let docs = s.documents();
    assert_eq!(expect::ok(docs.get(d.id), "get"), d);
    assert_eq!(
        expect::ok(docs.get_by_hash(c.id, &d.content_hash), "by hash"),
        d
    );
    let uri = "https://example.com/a b/ç?x=1";
    assert_eq!(expect::ok(docs.get_by_uri(c.id, uri), "by uri"), d);
    expect::not_found(docs.get(DocumentId::new()), Entity::Document, "unknown id");
    expect::not_found(
        docs.get_by_hash(c.id, &seed::content_hash(4)),
        Entity::Document,
        "unknown hash",
    );
    expect::not_found(
        docs.get_by_hash(other.id, &d.content_hash),
        Entity::Document,
        "hash of another collection",
    );
    expect::not_found(
        docs.get_by_uri(other.id, uri),
        Entity::Document,
        "uri of another collection",
    );
    expect::not_found(
        docs.get_by_uri(c.id, "https://example.com/A B/ç?x=1"),
        Entity::Document,
        "uri differing in case",
    );
    expect::any_validation(docs.get_by_uri(c.id, "a\0b"), "NUL in uri");
    expect::any_validation(docs.get_by_hash(c.id, "\0"), "NUL in hash");
}

/// `list_by_collection` puts failed documents first, then newest first, paginates with totals, filters by status and staleness, and shows only its collection.
pub fn document_list_is_failed_first_then_newest(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "jan");
    let c = seed::collection(&*s, &u, "docs");
    let other = seed::collection(&*s, &u, "other");
    seed::document(&*s, other.id, 100);
    let mut docs: Vec<Document> = (0..7).map(|n| seed::document(&*s, c.id, n)).collect();
    // Two documents of one batch may share a timestamp: ids break the tie.
    let batch: Vec<NewDocument> = (7..10).map(|n| seed::new_document(c.id, n)).collect();
    docs.extend(
        expect::ok(s.documents().register_many(&batch), "batch")
            .into_iter()
            .map(|r| r.document),
    );
    let fail = DocumentStatusUpdate::failed("boom", ErrorCategory::Transient);
    for i in [1, 4, 8] {
        docs[i] = expect::ok(s.documents().update_status(docs[i].id, &fail), "fail");
    }
    docs[2] = expect::ok(
        s.documents().update_status(
            docs[2].id,
            &DocumentStatusUpdate::to(DocumentStatus::Completed),
        ),
        "complete",
    );
    let (mut failed, mut rest): (Vec<Document>, Vec<Document>) = docs
        .iter()
        .cloned()
        .partition(|d| d.status == DocumentStatus::Failed);
    newest_first(&mut failed);
    newest_first(&mut rest);
    let expected: Vec<Document> = failed.iter().chain(&rest).cloned().collect();

    let all = list_all(&*s, c.id, &DocumentFilter::default());
    assert_eq!(ids(&all), ids(&expected), "failed first, then newest");
    assert_eq!(all, expected, "listed documents read back equal");
    let mut paged = Vec::new();
    for offset in (0..10).step_by(3) {
        let page = expect::ok(
            s.documents().list_by_collection(
                c.id,
                &DocumentFilter::default(),
                PageRequest::new(offset, 3),
            ),
            "page",
        );
        assert_eq!(page.total, 10, "total on every page");
        paged.extend(page.items);
    }
    assert_eq!(
        ids(&paged),
        ids(&expected),
        "pages concatenate to the listing"
    );
    let past = expect::ok(
        s.documents()
            .list_by_collection(c.id, &DocumentFilter::default(), PageRequest::new(10, 5)),
        "past the end",
    );
    assert_eq!((past.items.len(), past.total), (0, 10));

    let only = |statuses: Vec<DocumentStatus>| {
        let filter = DocumentFilter {
            statuses,
            is_stale: None,
        };
        ids(&list_all(&*s, c.id, &filter))
    };
    assert_eq!(only(vec![DocumentStatus::Failed]), ids(&failed));
    let pending_or_done: Vec<DocumentId> = rest.iter().map(|d| d.id).collect();
    assert_eq!(
        only(vec![DocumentStatus::Pending, DocumentStatus::Completed]),
        pending_or_done
    );
    assert_eq!(only(vec![DocumentStatus::Deleted]), vec![]);

    // Staleness: everything registered so far was seen before `cutoff`.
    let cutoff = repo_core::now() + chrono::Duration::seconds(1);
    expect::ok(
        s.documents().mark_seen(&[docs[0].id, docs[8].id], cutoff),
        "mark seen",
    );
    expect::ok(s.documents().mark_unseen_stale(c.id, cutoff), "mark stale");
    let stale = |v| DocumentFilter {
        statuses: vec![],
        is_stale: Some(v),
    };
    let fresh: BTreeSet<DocumentId> = ids(&list_all(&*s, c.id, &stale(false)))
        .into_iter()
        .collect();
    assert_eq!(fresh, BTreeSet::from([docs[0].id, docs[8].id]));
    assert_eq!(list_all(&*s, c.id, &stale(true)).len(), 8);
    let failed_stale = DocumentFilter {
        statuses: vec![DocumentStatus::Failed],
        is_stale: Some(true),
    };
    let got: BTreeSet<DocumentId> = ids(&list_all(&*s, c.id, &failed_stale))
        .into_iter()
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([docs[1].id, docs[4].id]),
        "filters combine"
    );
}

/// Metadata containment
/// for `find_by_meta`: flat, nested and `{}` filters; numbers compare numerically, booleans and null by type, strings exactly; arrays are `Validation`.
pub fn document_find_by_meta_matches_containment(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "kim");
    let c = seed::collection(&*s, &u, "docs");
    let metas = [
        json!({"lang": "en", "n": 1, "flag": true, "nil": null, "s": "1",
               "nested": {"a": {"b": "x"}, "k": 2}, "f": 2.5}),
        json!({"lang": "de", "n": 1.0, "flag": false, "s": 1, "f": 2.50}),
        json!({"lang": "en", "n": 2, "nested": {"a": {"b": "y"}}, "tags": ["a", "b"]}),
        json!({}),
        json!({"lang": "EN", "n": "1", "flag": 1, "nested": "a string", "nil": "null"}),
        json!({"lang": "en ", "n": -1, "flag": "true", "nested": {"a": {"b": "x", "c": 1}}}),
    ];
    let docs: Vec<Document> = metas
        .iter()
        .enumerate()
        .map(|(i, meta)| {
            let mut new = seed::new_document(c.id, i as u64);
            new.meta = meta.clone();
            expect::ok(s.documents().register(&new), "register").document
        })
        .collect();
    let find = |filter: Value| -> Vec<usize> {
        let page = expect::ok(
            s.documents()
                .find_by_meta(c.id, &filter, PageRequest::first(100)),
            &format!("find_by_meta({filter})"),
        );
        assert_eq!(page.total, page.items.len() as u64, "total for {filter}");
        let mut expected_order = page.items.clone();
        newest_first(&mut expected_order);
        assert_eq!(
            ids(&page.items),
            ids(&expected_order),
            "newest first for {filter}"
        );
        let mut found: Vec<usize> = page
            .items
            .iter()
            .map(|d| {
                docs.iter()
                    .position(|x| x.id == d.id)
                    .unwrap_or_else(|| panic!("{filter} found a document of another test"))
            })
            .collect();
        found.sort_unstable();
        found
    };
    let table: Vec<(Value, Vec<usize>)> = vec![
        (json!({}), vec![0, 1, 2, 3, 4, 5]),
        (json!({"lang": "en"}), vec![0, 2]),
        (json!({"lang": "EN"}), vec![4]),
        (json!({"n": 1}), vec![0, 1]),
        (json!({"n": 1.0}), vec![0, 1]),
        (json!({"n": -1}), vec![5]),
        (json!({"n": "1"}), vec![4]),
        (json!({"f": 2.5}), vec![0, 1]),
        (json!({"s": "1"}), vec![0]),
        (json!({"s": 1}), vec![1]),
        (json!({"flag": true}), vec![0]),
        (json!({"flag": false}), vec![1]),
        (json!({"flag": 1}), vec![4]),
        (json!({"flag": "true"}), vec![5]),
        (json!({"nil": null}), vec![0]),
        (json!({"nil": "null"}), vec![4]),
        (json!({"nested": {"a": {"b": "x"}}}), vec![0, 5]),
        (json!({"nested": {"a": {"b": "x", "c": 1}}}), vec![5]),
        (json!({"nested": {"k": 2}}), vec![0]),
        (json!({"nested": {"k": 2.0}}), vec![0]),
        (json!({"nested": {}}), vec![0, 2, 5]),
        (json!({"nested": {"a": {}}}), vec![0, 2, 5]),
        (json!({"lang": "en", "n": 2}), vec![2]),
        (
            json!({"lang": "en", "n": 1, "flag": true, "nil": null}),
            vec![0],
        ),
        (json!({"tags": "a"}), vec![]),
        (json!({"tags": {}}), vec![]),
        (json!({"missing": "x"}), vec![]),
        (json!({"missing": null}), vec![]),
        (json!({"missing": {}}), vec![]),
        (json!({"lang": "en", "missing": 1}), vec![]),
    ];
    for (filter, expected) in table {
        assert_eq!(find(filter.clone()), expected, "find_by_meta({filter})");
    }
    for bad in [
        json!({"tags": ["a"]}),
        json!({"tags": []}),
        json!({"nested": {"a": [1]}}),
        json!([{"lang": "en"}]),
        json!("lang"),
        json!(1),
        Value::Null,
        json!({"": 1}),
        json!({"k": "nul\0"}),
    ] {
        expect::validation(
            s.documents()
                .find_by_meta(c.id, &bad, PageRequest::default()),
            Field::Meta,
            &format!("find_by_meta({bad})"),
        );
    }
    let page = expect::ok(
        s.documents()
            .find_by_meta(c.id, &json!({}), PageRequest::new(2, 3)),
        "paginated",
    );
    assert_eq!((page.items.len(), page.total), (3, 6));
}

/// `find_by_meta` never returns documents of another collection.
pub fn document_find_by_meta_stays_in_its_collection(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "lea");
    let c1 = seed::collection(&*s, &u, "one");
    let c2 = seed::collection(&*s, &u, "two");
    let mut mine = Vec::new();
    for (i, c) in [c1.id, c2.id, c1.id, c2.id].into_iter().enumerate() {
        let mut new = seed::new_document(c, i as u64);
        new.meta = json!({"team": "search"});
        let d = expect::ok(s.documents().register(&new), "register").document;
        if c == c1.id {
            mine.push(d.id);
        }
    }
    for filter in [json!({"team": "search"}), json!({})] {
        let page = expect::ok(
            s.documents()
                .find_by_meta(c1.id, &filter, PageRequest::default()),
            "find",
        );
        assert_eq!(page.total, 2, "{filter}");
        let got: BTreeSet<DocumentId> = ids(&page.items).into_iter().collect();
        assert_eq!(got, mine.iter().copied().collect(), "{filter}");
        assert!(page.items.iter().all(|d| d.collection_id == c1.id));
    }
    let page = expect::ok(
        s.documents()
            .find_by_meta(CollectionId::new(), &json!({}), PageRequest::default()),
        "unknown collection",
    );
    assert_eq!(page.total, 0);
}

/// Hostile metadata keys and values (quotes, `%`, `_`, backslash, dots, `$`, brackets, SQL) match literally on both backends; keys with `"` or `\` are `Validation`.
pub fn document_find_by_meta_hostile_keys_and_values(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "max");
    let c = seed::collection(&*s, &u, "docs");
    let metas = [
        json!({"it's": "o'k", "100%": "50%_off", "a_b": "x\\y", "a.b": 1, "a": {"b": 2},
               "sp ace": "\"quoted\"", "[0]": "bracket", "$": "dollar", "$.a": "path",
               "ünï": "ç", "*": "star", "sql": "'); DROP TABLE documents; --"}),
        json!({"it's": "ok", "100%": "50%Xoff", "aXb": "x\\y", "a": {"b": 1},
               "100": "50%_off", "a_b": "x/y", "sp ace": "quoted", "ünï": "c", "sql": "%"}),
    ];
    let docs: Vec<DocumentId> = metas
        .iter()
        .enumerate()
        .map(|(i, meta)| {
            let mut new = seed::new_document(c.id, i as u64);
            new.meta = meta.clone();
            expect::ok(s.documents().register(&new), "register")
                .document
                .id
        })
        .collect();
    let find = |filter: &Value| -> BTreeSet<usize> {
        let page = expect::ok(
            s.documents()
                .find_by_meta(c.id, filter, PageRequest::default()),
            &format!("find_by_meta({filter})"),
        );
        page.items
            .iter()
            .filter_map(|d| docs.iter().position(|x| *x == d.id))
            .collect()
    };
    let table: Vec<(Value, Vec<usize>)> = vec![
        (json!({"it's": "o'k"}), vec![0]),
        (json!({"it's": "ok"}), vec![1]),
        (json!({"100%": "50%_off"}), vec![0]),
        (json!({"100%": "50%"}), vec![]),
        (json!({"100%": "%"}), vec![]),
        (json!({"100": "50%_off"}), vec![1]),
        (json!({"a_b": "x\\y"}), vec![0]),
        (json!({"a_b": "x_y"}), vec![]),
        (json!({"a.b": 1}), vec![0]),
        (json!({"a": {"b": 1}}), vec![1]),
        (json!({"a": {"b": 2}}), vec![0]),
        (json!({"sp ace": "\"quoted\""}), vec![0]),
        (json!({"sp ace": "quoted"}), vec![1]),
        (json!({"[0]": "bracket"}), vec![0]),
        (json!({"$": "dollar"}), vec![0]),
        (json!({"$.a": "path"}), vec![0]),
        (json!({"ünï": "ç"}), vec![0]),
        (json!({"ünï": "c"}), vec![1]),
        (json!({"*": "star"}), vec![0]),
        (json!({"sql": "'); DROP TABLE documents; --"}), vec![0]),
        (json!({"sql": "%"}), vec![1]),
        (json!({"sql": "_"}), vec![]),
        (json!({"'); DROP TABLE documents; --": 1}), vec![]),
        (json!({"%": "%"}), vec![]),
        (json!({"_": "_"}), vec![]),
    ];
    for (filter, expected) in table {
        let expected: BTreeSet<usize> = expected.into_iter().collect();
        assert_eq!(find(&filter), expected, "find_by_meta({filter})");
    }
    for key in ["say \"hi\"", "back\\slash", "\\", "\""] {
        let mut map = serde_json::Map::new();
        map.insert(key.to_owned(), json!(1));
        let filter = Value::Object(map);
        expect::validation(
            s.documents()
                .find_by_meta(c.id, &filter, PageRequest::default()),
            Field::Meta,
            &format!("key {key:?}"),
        );
    }
    assert_eq!(total(&*s, c.id), 2, "the documents table is intact");
}

/// `update_status` sets the state, error and chunk count (clearing the error when none is given) and `updated_at`; `update_status_many` returns how many rows changed.
pub fn document_update_status_single_and_many(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "ned");
    let c = seed::collection(&*s, &u, "docs");
    let d = seed::document(&*s, c.id, 1);
    let docs = s.documents();
    let p = expect::ok(
        docs.update_status(d.id, &DocumentStatusUpdate::to(DocumentStatus::Processing)),
        "processing",
    );
    assert_eq!(p.status, DocumentStatus::Processing);
    assert!(p.updated_at >= d.updated_at);
    assert_eq!(p.created_at, d.created_at);
    let f = expect::ok(
        docs.update_status(
            d.id,
            &DocumentStatusUpdate::failed("parser crashed: ü", ErrorCategory::Permanent),
        ),
        "failed",
    );
    assert_eq!(f.status, DocumentStatus::Failed);
    assert_eq!(f.error_message.as_deref(), Some("parser crashed: ü"));
    assert_eq!(f.error_category, Some(ErrorCategory::Permanent));
    assert_eq!(
        expect::ok(docs.get(d.id), "get"),
        f,
        "the update reads back"
    );
    let mut done = DocumentStatusUpdate::to(DocumentStatus::Completed);
    done.chunk_count = Some(12);
    let ok = expect::ok(docs.update_status(d.id, &done), "completed");
    assert_eq!((ok.status, ok.chunk_count), (DocumentStatus::Completed, 12));
    assert_eq!(
        (ok.error_message.as_deref(), ok.error_category),
        (None, None),
        "the error is cleared"
    );
    let again = expect::ok(
        docs.update_status(d.id, &DocumentStatusUpdate::to(DocumentStatus::Deleted)),
        "deleted",
    );
    assert_eq!(again.chunk_count, 12, "chunk_count is kept when not given");
    expect::not_found(
        docs.update_status(DocumentId::new(), &done),
        Entity::Document,
        "unknown id",
    );
    let mut bad = DocumentStatusUpdate::failed("nul\0", ErrorCategory::Unknown);
    expect::validation(docs.update_status(d.id, &bad), Field::ErrorMessage, "NUL");
    bad = DocumentStatusUpdate::to(DocumentStatus::Completed);
    bad.chunk_count = Some(-1);
    expect::validation(
        docs.update_status(d.id, &bad),
        Field::ChunkCount,
        "negative",
    );

    let many: Vec<DocumentId> = (10..15).map(|n| seed::document(&*s, c.id, n).id).collect();
    let mut targets = many[..3].to_vec();
    targets.push(DocumentId::new());
    let fail = DocumentStatusUpdate::failed("timeout", ErrorCategory::Transient);
    assert_eq!(
        expect::ok(docs.update_status_many(&targets, &fail), "many"),
        3,
        "unknown ids change nothing"
    );
    for (i, id) in many.iter().enumerate() {
        let got = expect::ok(docs.get(*id), "get");
        if i < 3 {
            assert_eq!(got.status, DocumentStatus::Failed);
            assert_eq!(got.error_message.as_deref(), Some("timeout"));
            assert_eq!(got.error_category, Some(ErrorCategory::Transient));
        } else {
            assert_eq!(got.status, DocumentStatus::Pending, "untouched");
        }
    }
    assert_eq!(expect::ok(docs.update_status_many(&[], &fail), "none"), 0);
    expect::validation(
        docs.update_status_many(
            &many,
            &DocumentStatusUpdate::failed("\0", ErrorCategory::Unknown),
        ),
        Field::ErrorMessage,
        "NUL in many",
    );
    let stats = expect::ok(docs.stats(c.id), "stats");
    assert_eq!(stats.by_status.get("failed"), Some(&3));
}

/// `reset_failed_for_retry` moves only the collection's failed documents to pending, increments `retry_count`, clears the error and sets `updated_at`.
pub fn document_reset_failed_for_retry(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "ola");
    let c = seed::collection(&*s, &u, "docs");
    let other = seed::collection(&*s, &u, "other");
    let docs = s.documents();
    let d: Vec<Document> = (0..4).map(|n| seed::document(&*s, c.id, n)).collect();
    let elsewhere = seed::document(&*s, other.id, 9);
    let fail = DocumentStatusUpdate::failed("boom", ErrorCategory::Transient);
    expect::ok(
        docs.update_status_many(&[d[0].id, d[1].id, elsewhere.id], &fail),
        "fail",
    );
    expect::ok(
        docs.update_status(
            d[2].id,
            &DocumentStatusUpdate::to(DocumentStatus::Completed),
        ),
        "complete",
    );
    let failed_at = expect::ok(docs.get(d[0].id), "failed").updated_at;
    assert_eq!(expect::ok(docs.reset_failed_for_retry(c.id), "reset"), 2);
    for x in &d[..2] {
        let got = expect::ok(docs.get(x.id), "get");
        assert!(got.updated_at > failed_at, "reset sets updated_at");
        assert_eq!(got.status, DocumentStatus::Pending);
        assert_eq!(got.retry_count, 1);
        assert_eq!((got.error_message, got.error_category), (None, None));
    }
    assert_eq!(
        expect::ok(docs.get(d[2].id), "completed").status,
        DocumentStatus::Completed
    );
    assert_eq!(expect::ok(docs.get(d[3].id), "pending").retry_count, 0);
    let e = expect::ok(docs.get(elsewhere.id), "other collection");
    assert_eq!((e.status, e.retry_count), (DocumentStatus::Failed, 0));
    assert_eq!(expect::ok(docs.reset_failed_for_retry(c.id), "again"), 0);
    expect::ok(docs.update_status(d[0].id, &fail), "fail again");
    assert_eq!(expect::ok(docs.reset_failed_for_retry(c.id), "reset"), 1);
    assert_eq!(expect::ok(docs.get(d[0].id), "get").retry_count, 2);
    assert_eq!(
        expect::ok(docs.reset_failed_for_retry(CollectionId::new()), "unknown"),
        0
    );
}

/// `mark_seen` refreshes `last_seen_at` and clears staleness; `mark_unseen_stale` marks only the collection's not-yet-stale documents seen before the cutoff (or never) and counts them; neither touches `updated_at`.
pub fn document_mark_seen_and_unseen_stale(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "pia");
    let c = seed::collection(&*s, &u, "docs");
    let other = seed::collection(&*s, &u, "other");
    let docs = s.documents();
    let d: Vec<Document> = (0..4).map(|n| seed::document(&*s, c.id, n)).collect();
    let elsewhere = seed::document(&*s, other.id, 9);
    let cutoff = repo_core::now() + chrono::Duration::milliseconds(10);
    let later = cutoff + chrono::Duration::seconds(5);
    assert_eq!(
        expect::ok(
            docs.mark_seen(&[d[0].id, DocumentId::new()], cutoff),
            "seen"
        ),
        1,
        "only existing documents count"
    );
    let seen = expect::ok(docs.get(d[0].id), "get");
    assert_eq!(seen.last_seen_at, Some(cutoff));
    assert_eq!(
        seen.updated_at, d[0].updated_at,
        "mark_seen keeps updated_at"
    );
    assert_eq!(
        expect::ok(docs.mark_unseen_stale(c.id, cutoff), "stale"),
        3,
        "seen before the cutoff"
    );
    for x in &d[1..] {
        let got = expect::ok(docs.get(x.id), "get");
        assert!(got.is_stale);
        assert_eq!(
            got.updated_at, x.updated_at,
            "mark_unseen_stale keeps updated_at"
        );
    }
    assert!(!expect::ok(docs.get(d[0].id), "seen at the cutoff").is_stale);
    assert!(!expect::ok(docs.get(elsewhere.id), "other collection").is_stale);
    assert_eq!(
        expect::ok(docs.mark_unseen_stale(c.id, cutoff), "again"),
        0,
        "stale documents are not counted twice"
    );
    assert_eq!(
        expect::ok(docs.mark_seen(&[d[1].id, d[2].id], later), "seen again"),
        2
    );
    let back = expect::ok(docs.get(d[1].id), "get");
    assert!(!back.is_stale && back.last_seen_at == Some(later));
    assert_eq!(
        expect::ok(docs.mark_unseen_stale(c.id, later), "stale at later"),
        1,
        "only d0 (seen at the cutoff) is left to go stale"
    );
    assert_eq!(expect::ok(docs.mark_seen(&[], later), "none"), 0);
    let stats = expect::ok(docs.stats(c.id), "stats");
    assert_eq!(stats.total, 4, "staleness removes nothing");
}

/// `stats` counts documents by status and sums bytes and chunk counts; an empty collection is all zeros.
pub fn document_stats_by_status_bytes_and_chunks(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "quy");
    let c = seed::collection(&*s, &u, "docs");
    let empty = expect::ok(s.documents().stats(c.id), "empty");
    assert_eq!(empty, repo_core::DocumentStats::default());
    let docs = s.documents();
    let d: Vec<Document> = [10u64, 20, 30, 40, 1_000_000_000_000]
        .iter()
        .map(|&n| seed::document(&*s, c.id, n))
        .collect();
    let done = |chunks| DocumentStatusUpdate {
        chunk_count: Some(chunks),
        ..DocumentStatusUpdate::to(DocumentStatus::Completed)
    };
    expect::ok(docs.update_status(d[0].id, &done(3)), "done");
    expect::ok(docs.update_status(d[1].id, &done(4)), "done");
    expect::ok(
        docs.update_status(
            d[2].id,
            &DocumentStatusUpdate::failed("x", ErrorCategory::Unknown),
        ),
        "failed",
    );
    let other = seed::collection(&*s, &u, "other");
    seed::document(&*s, other.id, 5);
    let stats = expect::ok(docs.stats(c.id), "stats");
    let by_status: BTreeMap<String, u64> = [("completed", 2), ("failed", 1), ("pending", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(stats.by_status, by_status, "states with none are absent");
    assert_eq!(stats.total, 5);
    assert_eq!(stats.total_bytes, 1_000_000_000_100);
    assert_eq!(stats.total_chunks, 7);
}

/// Deleting a document removes it and its chunks, and nothing else; deleting it again is `NotFound`.
pub fn document_delete_removes_its_chunks(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "ray");
    let c = seed::collection(&*s, &u, "docs");
    let gone = seed::document(&*s, c.id, 1);
    let kept = seed::document(&*s, c.id, 2);
    seed::chunks(&*s, c.id, gone.id, &[0, 1, 2]);
    seed::chunks(&*s, c.id, kept.id, &[0, 1]);
    assert_eq!(expect::ok(s.chunks().count(c.id), "count"), 5);
    expect::ok(s.documents().delete(gone.id), "delete");
    expect::not_found(s.documents().get(gone.id), Entity::Document, "deleted");
    expect::not_found(
        s.chunks().list_by_document(gone.id, PageRequest::default()),
        Entity::Document,
        "chunks of a deleted document",
    );
    assert_eq!(
        expect::ok(s.chunks().count(c.id), "count"),
        2,
        "its chunks went with it"
    );
    let left = expect::ok(
        s.chunks().list_by_document(kept.id, PageRequest::default()),
        "other document",
    );
    assert_eq!(left.total, 2);
    let hits = expect::ok(
        s.chunks().search(
            c.id,
            &repo_core::SearchQuery::parse("chunk"),
            PageRequest::default(),
        ),
        "search",
    );
    assert!(
        hits.items.iter().all(|h| h.chunk.document_id == kept.id) && hits.total == 2,
        "search forgets the deleted chunks: {hits:?}"
    );
    expect::not_found(
        s.documents().delete(gone.id),
        Entity::Document,
        "delete twice",
    );
    assert_eq!(total(&*s, c.id), 1);
}

/// A bad item deep in a large batch (past the first statement of a batch split by the bind-parameter limit) fails the batch naming it, and nothing of the batch is written.
pub fn document_register_many_bad_item_deep_in_a_large_batch_writes_nothing(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "deep");
    let c = seed::collection(&*s, &u, "deep");
    let mut taken = seed::new_document(c.id, 1_000_000);
    taken.uri = Some("https://x/taken".into());
    expect::ok(s.documents().register(&taken), "stored document");
    let batch =
        || -> Vec<NewDocument> { (0..3_000).map(|n| seed::new_document(c.id, n)).collect() };
    let check = |b: Vec<NewDocument>, field: Field, k: usize, what: &str| {
        expect::item_validation(s.documents().register_many(&b), field, k, what);
        assert_eq!(total(&*s, c.id), 1, "{what}: nothing was written");
    };

    let mut b = batch();
    b[2_500].content_hash = "not-a-hash".into();
    check(b, Field::ContentHash, 2_500, "malformed hash at 2500");
    let mut b = batch();
    b[1_234].file_name = "nul\0".into();
    check(b, Field::FileName, 1_234, "NUL at 1234");
    let mut b = batch();
    b[2_500].uri = Some("https://x/taken".into());
    check(b, Field::Uri, 2_500, "uri of a stored document at 2500");
    let mut b = batch();
    b[10].uri = Some("https://x/twice".into());
    b[2_900].uri = Some("https://x/twice".into());
    check(
        b,
        Field::Uri,
        2_900,
        "one uri for two hashes at 10 and 2900",
    );
}

/// Inside a unit of work, bulk registrations and chunk inserts see the unit's own writes; a failed bulk call is undone alone and the unit of work goes on and commits; a unit of work that fails undoes its bulk writes.
pub fn document_bulk_calls_in_a_unit_of_work(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bulk");
    let c = seed::collection(&*s, &u, "bulk");
    let docs = |range: std::ops::Range<u64>| -> Vec<NewDocument> {
        range.map(|n| seed::new_document(c.id, n)).collect()
    };
    let committed = s.transaction(|tx| {
        let a = tx.documents().register_many(&docs(0..50))?;
        assert_eq!(
            tx.documents()
                .get_by_hash(c.id, &seed::content_hash(11))?
                .id,
            a[11].document.id,
            "the unit of work reads its own registration"
        );
        // A bulk call that fails (one URI under two hashes) is undone alone.
        let mut bad = docs(60..62);
        bad[0].uri = Some("https://x/once".into());
        bad[1].uri = Some("https://x/once".into());
        expect::item_validation(
            tx.documents().register_many(&bad),
            Field::Uri,
            1,
            "one uri for two hashes inside the unit of work",
        );
        let b = tx.documents().register_many(&docs(40..80))?;
        let n = tx.chunks().insert_many(
            c.id,
            &[
                NewChunk::new(a[0].document.id, 0, "one"),
                NewChunk::new(b[39].document.id, 0, "two"),
            ],
        )?;
        Ok((a.len(), b.iter().filter(|r| r.created).count(), n))
    });
    assert_eq!(
        expect::ok(committed, "unit of work with bulk calls"),
        (50, 30, 2),
        "50 registered, then 30 of 40 new (60 and 61 were undone), then 2 chunks"
    );
    assert_eq!(total(&*s, c.id), 80);
    assert_eq!(expect::ok(s.chunks().count(c.id), "chunk count"), 2);

    let failed = s.transaction(|tx| {
        tx.documents().register_many(&docs(100..110))?;
        Err::<(), _>(RepoError::validation(Field::Value, "roll back"))
    });
    expect::validation(failed, Field::Value, "the unit of work's own error");
    expect::not_found(
        s.documents().get_by_hash(c.id, &seed::content_hash(100)),
        Entity::Document,
        "a bulk registration of a failed unit of work",
    );
    assert_eq!(total(&*s, c.id), 80);
}
