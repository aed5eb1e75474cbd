//! Migrations go all the way up, all the way down (leaving no table), and up again,
//! on both backends; the schema after up, down, up is the same and usable (users,
//! collections, documents, chunks and full-text search).

use repo_core::{
    BackendKind, NewChunk, NewCollection, NewDocument, NewUser, PageRequest, RepoResult,
    Repositories, SchemaAdmin, SearchQuery, StoreConfig, UserId,
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
fn use_documents_and_chunks<R: Repositories + ?Sized>(backend: &str, repos: &R, owner: UserId) {
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

/// A backend's store, administered through the trait both stores implement.
trait Migrated: SchemaAdmin + Repositories {}

impl<S: SchemaAdmin + Repositories> Migrated for S {}

/// `result`'s value, or a panic naming the backend and the step.
fn ok<T>(backend: &str, what: &str, result: RepoResult<T>) -> T {
    result.unwrap_or_else(|e| panic!("{backend}: {what} failed: {e}"))
}

fn no_migrations() -> StoreConfig {
    StoreConfig {
        run_migrations: false,
        ..StoreConfig::default()
    }
}

/// Reverting the `search_tokens` migration with chunks stored (its down.sql on a
/// non-empty table) and applying it again (the upgrade of a database holding chunks)
/// leaves every chunk searchable: the store backfills the tokens after migrating.
fn upgrade_backfills_search_tokens(backend: &str, store: &dyn Migrated) {
    assert_eq!(
        ok(backend, "revert last", store.revert_last_migration()),
        "20261202000010",
        "{backend}: the newest migration"
    );
    assert_eq!(
        ok(backend, "revert last", store.revert_last_migration()),
        "20261202000004",
        "{backend}: the operation_idempotency migration"
    );
    assert_eq!(
        ok(backend, "revert last", store.revert_last_migration()),
        "20261122000003",
        "{backend}: the search_tokens migration"
    );
    assert_eq!(
        ok(
            backend,
            "running migrations",
            store.run_pending_migrations()
        ),
        vec![
            "20261122000003".to_owned(),
            "20261202000004".to_owned(),
            "20261202000010".to_owned()
        ]
    );
    let c = store
        .collections()
        .get_by_name("docs")
        .unwrap_or_else(|e| panic!("{backend}: collection after the upgrade: {e}"));
    let hits = store
        .chunks()
        .search(
            c.id,
            &SearchQuery::parse("\"migrated schemas\""),
            PageRequest::default(),
        )
        .unwrap_or_else(|e| panic!("{backend}: search after the upgrade: {e}"));
    assert_eq!(hits.total, 1, "{backend}: the stored chunk is found again");
}

fn round_trip(backend: &str, store: &dyn Migrated) {
    assert!(
        ok(
            backend,
            "listing applied migrations",
            store.applied_migrations()
        )
        .is_empty(),
        "{backend}: fresh database has migrations"
    );
    let all = ok(
        backend,
        "listing pending migrations",
        store.pending_migrations(),
    );
    assert!(!all.is_empty(), "{backend}: no migrations are embedded");
    assert!(
        ok(backend, "schema snapshot", store.schema_snapshot())
            .tables
            .is_empty(),
        "{backend}: fresh database has tables"
    );

    assert_eq!(
        ok(
            backend,
            "running migrations",
            store.run_pending_migrations()
        ),
        all,
        "{backend}: first run applies every migration"
    );
    assert_eq!(
        ok(
            backend,
            "listing applied migrations",
            store.applied_migrations()
        ),
        all,
        "{backend}: applied after up"
    );
    assert!(
        ok(
            backend,
            "listing pending migrations",
            store.pending_migrations()
        )
        .is_empty(),
        "{backend}: pending after up"
    );
    let migrated = ok(backend, "schema snapshot", store.schema_snapshot());
    let names: Vec<&str> = migrated.tables.keys().map(String::as_str).collect();
    assert_eq!(names, TABLES, "{backend}: tables after up");
    assert!(
        ok(
            backend,
            "running migrations",
            store.run_pending_migrations()
        )
        .is_empty(),
        "{backend}: a second run applies nothing"
    );

    let user = store
        .users()
        .create(&NewUser::new("alice", "alice@example.com", HASH))
        .unwrap_or_else(|e| panic!("{backend}: the migrated schema is unusable: {e}"));
    use_documents_and_chunks(backend, store, user.id);
    upgrade_backfills_search_tokens(backend, store);

    let mut reverted = ok(
        backend,
        "reverting migrations",
        store.revert_all_migrations(),
    );
    reverted.reverse();
    assert_eq!(reverted, all, "{backend}: down reverts every migration");
    assert!(
        ok(
            backend,
            "listing applied migrations",
            store.applied_migrations()
        )
        .is_empty(),
        "{backend}: applied after down"
    );
    assert_eq!(
        ok(
            backend,
            "listing pending migrations",
            store.pending_migrations()
        ),
        all,
        "{backend}: pending after down"
    );
    let left = ok(backend, "schema snapshot", store.schema_snapshot());
    assert!(
        left.tables.is_empty(),
        "{backend}: tables left after down: {:?}",
        left.tables.keys()
    );

    assert_eq!(
        ok(
            backend,
            "running migrations",
            store.run_pending_migrations()
        ),
        all,
        "{backend}: up again"
    );
    assert_eq!(
        ok(backend, "schema snapshot", store.schema_snapshot()),
        migrated,
        "{backend}: the schema after up, down, up"
    );
    let users = store.users();
    assert!(
        users.get(user.id).is_err(),
        "{backend}: data survived a full down migration"
    );
    let user = users
        .create(&NewUser::new("alice", "alice@example.com", HASH))
        .unwrap_or_else(|e| panic!("{backend}: the re-migrated schema is unusable: {e}"));
    use_documents_and_chunks(backend, store, user.id);
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

/// The factory opens either backend for administration from a URL, on a database
/// without a schema (a store opened with migrations off would refuse it), and lists
/// what each build embeds.
#[test]
fn the_factory_opens_an_admin_for_either_url() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let sqlite_url = format!("sqlite://{}", dir.path().join("admin.db").display());
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    for (backend, kind, url) in [
        ("sqlite", BackendKind::Sqlite, sqlite_url.as_str()),
        ("postgres", BackendKind::Postgres, db.url()),
    ] {
        let embedded: Vec<String> = ok(
            backend,
            "listing embedded migrations",
            repo_factory::embedded_migrations(kind),
        )
        .into_iter()
        .map(|(version, _)| version)
        .collect();
        let admin = ok(
            backend,
            "opening for administration",
            repo_factory::open_admin(url, &no_migrations()),
        );
        let pending = ok(backend, "listing pending", admin.pending_migrations());
        assert_eq!(pending, embedded, "{backend}: pending on a fresh database");
        let applied = ok(backend, "migrating", admin.run_pending_migrations());
        assert_eq!(applied, embedded, "{backend}: applied");
        let names: Vec<String> = ok(backend, "snapshot", admin.schema_snapshot())
            .tables
            .into_keys()
            .collect();
        assert_eq!(names, TABLES, "{backend}: tables");
    }
}
