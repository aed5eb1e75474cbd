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

fn no_migrations() -> StoreConfig {
    StoreConfig {
        run_migrations: false,
        ..StoreConfig::default()
    }
}

/// Reverting the `search_tokens` migration with chunks stored (its down.sql on a
/// non-empty table) and applying it again (the upgrade of a database holding chunks)
/// leaves every chunk searchable: the store backfills the tokens after migrating.
fn upgrade_backfills_search_tokens<S>(backend: &str, store: &S) -> RepoResult<()>
where
    S: SchemaAdmin + Repositories,
{
    for (version, what) in [
        ("20261202000010", "the newest migration"),
        ("20261202000004", "the operation_idempotency migration"),
        ("20261122000003", "the search_tokens migration"),
    ] {
        assert_eq!(store.revert_last_migration()?, version, "{backend}: {what}");
    }
    assert_eq!(
        store.run_pending_migrations()?,
        ["20261122000003", "20261202000004", "20261202000010"],
        "{backend}: the reverted migrations again"
    );
    let c = store.collections().get_by_name("docs")?;
    let hits = store.chunks().search(
        c.id,
        &SearchQuery::parse("\"migrated schemas\""),
        PageRequest::default(),
    )?;
    assert_eq!(hits.total, 1, "{backend}: the stored chunk is found again");
    Ok(())
}

/// Up, down, up again through [`SchemaAdmin`], using the schema in between.
fn round_trip<S>(backend: &str, store: &S) -> RepoResult<()>
where
    S: SchemaAdmin + Repositories,
{
    assert!(
        store.applied_migrations()?.is_empty(),
        "{backend}: fresh database has migrations"
    );
    let all = store.pending_migrations()?;
    assert!(!all.is_empty(), "{backend}: no migrations are embedded");
    assert!(
        store.schema_snapshot()?.tables.is_empty(),
        "{backend}: fresh database has tables"
    );

    assert_eq!(
        store.run_pending_migrations()?,
        all,
        "{backend}: first run applies every migration"
    );
    assert_eq!(
        store.applied_migrations()?,
        all,
        "{backend}: applied after up"
    );
    assert!(
        store.pending_migrations()?.is_empty(),
        "{backend}: pending after up"
    );
    let migrated = store.schema_snapshot()?;
    let names: Vec<&str> = migrated.tables.keys().map(String::as_str).collect();
    assert_eq!(names, TABLES, "{backend}: tables after up");
    assert!(
        store.run_pending_migrations()?.is_empty(),
        "{backend}: a second run applies nothing"
    );

    let user = store
        .users()
        .create(&NewUser::new("alice", "alice@example.com", HASH))?;
    use_documents_and_chunks(backend, store, user.id);
    upgrade_backfills_search_tokens(backend, store)?;

    let mut reverted = store.revert_all_migrations()?;
    reverted.reverse();
    assert_eq!(reverted, all, "{backend}: down reverts every migration");
    assert!(
        store.applied_migrations()?.is_empty(),
        "{backend}: applied after down"
    );
    assert_eq!(
        store.pending_migrations()?,
        all,
        "{backend}: pending after down"
    );
    let left = store.schema_snapshot()?;
    assert!(
        left.tables.is_empty(),
        "{backend}: tables left after down: {:?}",
        left.tables.keys()
    );

    assert_eq!(store.run_pending_migrations()?, all, "{backend}: up again");
    assert_eq!(
        store.schema_snapshot()?,
        migrated,
        "{backend}: the schema after up, down, up"
    );
    assert!(
        store.users().get(user.id).is_err(),
        "{backend}: data survived a full down migration"
    );
    let user = store
        .users()
        .create(&NewUser::new("alice", "alice@example.com", HASH))?;
    use_documents_and_chunks(backend, store, user.id);
    Ok(())
}

#[test]
fn sqlite_migrations_round_trip() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let path = dir.path().join("migrations.db");
    let store = SqliteStore::connect_for_migrations(&path.to_string_lossy(), &no_migrations())
        .unwrap_or_else(|e| panic!("opening SQLite failed: {e}"));
    round_trip("sqlite", &store).unwrap_or_else(|e| panic!("sqlite: {e}"));
}

#[test]
fn postgres_migrations_round_trip() {
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let store = PostgresStore::connect_for_migrations(db.url(), &no_migrations())
        .unwrap_or_else(|e| panic!("opening PostgreSQL failed: {e}"));
    round_trip("postgres", &store).unwrap_or_else(|e| panic!("postgres: {e}"));
}

/// The factory opens either backend for administration from a URL, on a database
/// without a schema (a store opened with migrations off would refuse it), and lists
/// what each build embeds.
#[test]
fn the_factory_opens_an_admin_for_either_url() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
    let sqlite_url = format!("sqlite://{}", dir.path().join("admin.db").display());
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    for (kind, url) in [
        (BackendKind::Sqlite, sqlite_url.as_str()),
        (BackendKind::Postgres, db.url()),
    ] {
        let check = || -> RepoResult<()> {
            let embedded: Vec<String> = repo_factory::embedded_migrations(kind)?
                .into_iter()
                .map(|(version, _)| version)
                .collect();
            let admin = repo_factory::open_admin(url, &no_migrations())?;
            assert_eq!(admin.pending_migrations()?, embedded, "{kind}: pending");
            assert_eq!(admin.run_pending_migrations()?, embedded, "{kind}: applied");
            let names: Vec<String> = admin.schema_snapshot()?.tables.into_keys().collect();
            assert_eq!(names, TABLES, "{kind}: tables");
            Ok(())
        };
        check().unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
}

/// Both backends embed migrations of the same versions (one directory per version
/// under `migrations/sqlite` and `migrations/postgres`, with the same names).
#[test]
fn both_backends_embed_the_same_migrations() {
    let sqlite = repo_factory::embedded_migrations(BackendKind::Sqlite)
        .unwrap_or_else(|e| panic!("sqlite: {e}"));
    let postgres = repo_factory::embedded_migrations(BackendKind::Postgres)
        .unwrap_or_else(|e| panic!("postgres: {e}"));
    assert!(!sqlite.is_empty(), "no migrations are embedded");
    assert_eq!(sqlite, postgres);
}
