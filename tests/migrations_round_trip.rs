//! Migrations go all the way up, all the way down (leaving no table), and up again,
//! on both backends; the schema after up, down, up is the same and usable (users,
//! collections, documents, chunks and full-text search).

use repo_core::{
    NewChunk, NewCollection, NewDocument, NewUser, PageRequest, Repositories, SchemaSnapshot,
    SearchQuery, StoreConfig, UserId,
};
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// The tables the migrations create (the FTS5 table of SQLite is not in snapshots).
const TABLES: [&str; 7] = [
    "api_keys",
    "chunks",
    "collection_permissions",
    "collections",
    "documents",
    "operations",
    "users",
];

/// Stores a collection of `owner` with one document and one chunk, and finds the
/// chunk by full-text search: the second migration's tables and FTS index work.
fn use_documents_and_chunks(backend: &str, repos: &dyn Repositories, owner: UserId) {
    let fail = |what: &str, e: repo_core::RepoError| -> ! {
        panic!("{backend}: {what} on the migrated schema failed: {e}")
    };
    let c = repos
        .collections()
        .create(&NewCollection::new("docs", owner))
        .unwrap_or_else(|e| fail("creating a collection", e));
    let doc = repos
        .documents()
        .register(&NewDocument::new(
            c.id,
            "/a.txt",
            "a.txt",
            3,
            "a".repeat(64),
        ))
        .unwrap_or_else(|e| fail("registering a document", e))
        .document;
    repos
        .chunks()
        .insert_many(c.id, &[NewChunk::new(doc.id, 0, "migrated schemas search")])
        .unwrap_or_else(|e| fail("inserting a chunk", e));
    let hits = repos
        .chunks()
        .search(
            c.id,
            &SearchQuery::parse("migrated"),
            PageRequest::default(),
        )
        .unwrap_or_else(|e| fail("searching", e));
    assert_eq!(hits.total, 1, "{backend}: the full-text index works");
}

/// What the round trip needs from a backend's store.
trait Migrator {
    fn run_pending(&self) -> Vec<String>;
    fn revert_all(&self) -> Vec<String>;
    fn revert_last(&self) -> String;
    fn applied(&self) -> Vec<String>;
    fn pending(&self) -> Vec<String>;
    fn snapshot(&self) -> SchemaSnapshot;
    fn repos(&self) -> &dyn Repositories;
}

macro_rules! migrator {
    ($store:ty) => {
        impl Migrator for $store {
            fn run_pending(&self) -> Vec<String> {
                self.run_pending_migrations()
                    .unwrap_or_else(|e| panic!("running migrations failed: {e}"))
            }
            fn revert_all(&self) -> Vec<String> {
                self.revert_all_migrations()
                    .unwrap_or_else(|e| panic!("reverting migrations failed: {e}"))
            }
            fn revert_last(&self) -> String {
                self.revert_last_migration()
                    .unwrap_or_else(|e| panic!("revert last: {e}"))
            }
            fn applied(&self) -> Vec<String> {
                self.applied_migrations()
                    .unwrap_or_else(|e| panic!("listing applied migrations failed: {e}"))
            }
            fn pending(&self) -> Vec<String> {
                self.pending_migrations()
                    .unwrap_or_else(|e| panic!("listing pending migrations failed: {e}"))
            }
            fn snapshot(&self) -> SchemaSnapshot {
                self.schema_snapshot()
                    .unwrap_or_else(|e| panic!("schema snapshot failed: {e}"))
            }
            fn repos(&self) -> &dyn Repositories {
                self
            }
        }
    };
}

migrator!(SqliteStore);
migrator!(PostgresStore);

fn no_migrations() -> StoreConfig {
    StoreConfig {
        run_migrations: false,
        ..StoreConfig::default()
    }
}

/// Reverting the `search_tokens` migration with chunks stored (its down.sql on a
/// non-empty table) and applying it again (the upgrade of a database holding chunks)
/// leaves every chunk searchable: the store backfills the tokens after migrating.
fn upgrade_backfills_search_tokens(backend: &str, store: &dyn Migrator) {
    assert_eq!(
        store.revert_last(),
        "20261202000010",
        "{backend}: the newest migration"
    );
    assert_eq!(
        store.revert_last(),
        "20261202000004",
        "{backend}: the operation_idempotency migration"
    );
    assert_eq!(
        store.revert_last(),
        "20261122000003",
        "{backend}: the search_tokens migration"
    );
    assert_eq!(
        store.run_pending(),
        vec![
            "20261122000003".to_owned(),
            "20261202000004".to_owned(),
            "20261202000010".to_owned()
        ]
    );
    let c = store
        .repos()
        .collections()
        .get_by_name("docs")
        .unwrap_or_else(|e| panic!("{backend}: collection after the upgrade: {e}"));
    let hits = store
        .repos()
        .chunks()
        .search(
            c.id,
            &SearchQuery::parse("\"migrated schemas\""),
            PageRequest::default(),
        )
        .unwrap_or_else(|e| panic!("{backend}: search after the upgrade: {e}"));
    assert_eq!(hits.total, 1, "{backend}: the stored chunk is found again");
}

fn round_trip(backend: &str, store: &dyn Migrator) {
    assert!(
        store.applied().is_empty(),
        "{backend}: fresh database has migrations"
    );
    let all = store.pending();
    assert!(!all.is_empty(), "{backend}: no migrations are embedded");
    assert!(
        store.snapshot().tables.is_empty(),
        "{backend}: fresh database has tables"
    );

    assert_eq!(
        store.run_pending(),
        all,
        "{backend}: first run applies every migration"
    );
    assert_eq!(store.applied(), all, "{backend}: applied after up");
    assert!(store.pending().is_empty(), "{backend}: pending after up");
    let migrated = store.snapshot();
    let names: Vec<&str> = migrated.tables.keys().map(String::as_str).collect();
    assert_eq!(names, TABLES, "{backend}: tables after up");
    assert!(
        store.run_pending().is_empty(),
        "{backend}: a second run applies nothing"
    );

    let user = store
        .repos()
        .users()
        .create(&NewUser::new("alice", "alice@example.com", HASH))
        .unwrap_or_else(|e| panic!("{backend}: the migrated schema is unusable: {e}"));
    use_documents_and_chunks(backend, store.repos(), user.id);
    upgrade_backfills_search_tokens(backend, store);

    let mut reverted = store.revert_all();
    reverted.reverse();
    assert_eq!(reverted, all, "{backend}: down reverts every migration");
    assert!(store.applied().is_empty(), "{backend}: applied after down");
    assert_eq!(store.pending(), all, "{backend}: pending after down");
    let left = store.snapshot();
    assert!(
        left.tables.is_empty(),
        "{backend}: tables left after down: {:?}",
        left.tables.keys()
    );

    assert_eq!(store.run_pending(), all, "{backend}: up again");
    assert_eq!(
        store.snapshot(),
        migrated,
        "{backend}: the schema after up, down, up"
    );
    let users = store.repos().users();
    assert!(
        users.get(user.id).is_err(),
        "{backend}: data survived a full down migration"
    );
    let user = users
        .create(&NewUser::new("alice", "alice@example.com", HASH))
        .unwrap_or_else(|e| panic!("{backend}: the re-migrated schema is unusable: {e}"));
    use_documents_and_chunks(backend, store.repos(), user.id);
}

#[test]
fn sqlite_migrations_round_trip() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let path = dir.path().join("migrations.db");
    let store = SqliteStore::connect_for_migrations(&path.to_string_lossy(), &no_migrations())
        .unwrap_or_else(|e| panic!("opening SQLite failed: {e}"));
    round_trip("sqlite", &store);
}

#[test]
fn postgres_migrations_round_trip() {
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresStore::connect_for_migrations(db.url(), &no_migrations())
        .unwrap_or_else(|e| panic!("opening PostgreSQL failed: {e}"));
    round_trip("postgres", &store);
}
