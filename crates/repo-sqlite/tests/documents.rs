//! Documents and chunks on SQLite, where only SQLite can be checked: the FTS5 index
//! and the search-token backfill, read with raw SQL. Everything both backends must do
//! alike (bulk paths, batch atomicity, metadata filters, search) is in the behaviour
//! suite (`repo-behaviour`).

use diesel::sql_types::BigInt;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use repo_core::SchemaAdmin;
use repo_core::{
    CollectionId, NewChunk, NewCollection, NewDocument, NewUser, PageRequest, Repositories,
    SearchQuery, Store, StoreConfig, UserId,
};
use repo_sqlite::testing::TempDatabase;
use repo_sqlite::SqliteStore;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn file_store() -> (TempDatabase, String, SqliteStore) {
    let db = TempDatabase::create("documents.db").expect("temporary database");
    let path = db.url().to_owned();
    let store = SqliteStore::connect(&path, &StoreConfig::default()).expect("connect");
    (db, path, store)
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

/// The FTS5 index follows the chunks table through bulk inserts (several statements
/// a batch), document and collection deletes (cascade and triggers), and stays out of
/// the schema snapshot. What search finds is the behaviour suite's.
#[test]
fn fts_index_follows_bulk_inserts_and_cascading_deletes() {
    let (_db, path, store) = file_store();
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
    let batch: Vec<NewChunk> = (0..5_000)
        .map(|i| {
            let word = if i % 1_000 == 0 { "needle" } else { "hay" };
            NewChunk::new(docs[i % 10], (i / 10) as i32, format!("{word} {i}"))
        })
        .collect();
    assert_eq!(
        store.chunks().insert_many(c, &batch).expect("insert"),
        5_000
    );
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
    let fts_rows = "SELECT count(*) AS n FROM chunks_fts_docsize";
    assert_eq!(scalar(&path, fts_rows), 5_001);
    let needles = "SELECT count(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'needle'";
    assert_eq!(scalar(&path, needles), 6);

    store.documents().delete(docs[0]).expect("delete document");
    assert_eq!(scalar(&path, fts_rows), 4_501);
    assert_eq!(
        scalar(&path, needles),
        1,
        "the needles were all in document 0"
    );
    store
        .collections()
        .delete(c, owner.into())
        .expect("delete collection");
    assert_eq!(scalar(&path, "SELECT count(*) AS n FROM chunks"), 1);
    assert_eq!(scalar(&path, fts_rows), 1);
    assert_eq!(scalar(&path, needles), 1);
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

/// A chunk written without `search_tokens` (by another tool, or before the
/// `search_tokens` migration) is not searchable until the store's backfill, which
/// reopening the store runs; the backfill is idempotent and keeps FTS5 consistent.
#[test]
fn reopening_backfills_missing_search_tokens() {
    let (_db, path, store) = file_store();
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
