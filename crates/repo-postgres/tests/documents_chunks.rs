//! Documents and chunks on PostgreSQL, where only PostgreSQL can be checked: the
//! chunk partitions and the search-token backfill, read with raw SQL (each test in its
//! own temporary database). Everything both backends must do alike is in the
//! behaviour suite (`repo-behaviour`).

use diesel::{Connection, RunQueryDsl};
use repo_core::*;
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
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

/// Chunks live in the hash partitions of `chunks`: deletes by document and by
/// collection take them out of their partition and leave the neighbour's alone. What
/// search finds is the behaviour suite's.
#[test]
fn deletes_empty_the_partitions() {
    let fx = Fixture::new();
    let c = fx.collection("partitioned").id;
    let other = fx.collection("neighbour").id;
    let ids: Vec<DocumentId> = fx
        .store
        .documents()
        .register_many(&(0..100).map(|n| doc(c, n)).collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .map(|r| r.document.id)
        .collect();
    let batch: Vec<NewChunk> = ids
        .iter()
        .flat_map(|id| (0..20).map(move |i| NewChunk::new(*id, i, format!("chunk {i}"))))
        .collect();
    assert_eq!(fx.store.chunks().insert_many(c, &batch).unwrap(), 2_000);
    let neighbour_doc = fx
        .store
        .documents()
        .register(&doc(other, 1))
        .unwrap()
        .document
        .id;
    fx.store
        .chunks()
        .insert_many(other, &[NewChunk::new(neighbour_doc, 0, "elsewhere")])
        .unwrap();

    fx.store.documents().delete(ids[99]).unwrap();
    assert_eq!(fx.store.chunks().delete_by_document(ids[98]).unwrap(), 20);
    let partition_rows =
        format!("SELECT count(*)::bigint AS n FROM chunks WHERE collection_id = '{c}'");
    assert_eq!(fx.sql_count(&partition_rows), 1_960);
    fx.store
        .collections()
        .delete(c, fx.owner.id.into())
        .unwrap();
    let every_partition = (0..16)
        .map(|p| format!("(SELECT count(*) FROM chunks_p{p:02})"))
        .collect::<Vec<_>>()
        .join(" + ");
    assert_eq!(
        fx.sql_count(&format!("SELECT {every_partition} AS n")),
        1,
        "only the neighbour's chunk is left in the partitions"
    );
    assert_eq!(fx.store.chunks().count(other).unwrap(), 1);
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
