//! The SQLite store's own wiring: targets (files, `:memory:`, URIs), migrations, and
//! how pool, open and lock failures are classified. Everything both backends must do
//! alike is in the behaviour suite (`repo-behaviour`).

use repo_core::SchemaAdmin;
use repo_core::{ConflictReason, NewUser, RepoError, Repositories, Store, StoreConfig, UserId};
use repo_sqlite::testing::TempDatabase;
use repo_sqlite::SqliteStore;
use std::sync::Arc;
use std::thread;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn file_store() -> (TempDatabase, SqliteStore) {
    let db = TempDatabase::create("smoke.db").expect("temporary database");
    let store = SqliteStore::connect(db.url(), &StoreConfig::default()).expect("connect");
    (db, store)
}

fn user(store: &dyn Store, name: &str) -> UserId {
    store
        .users()
        .create(&NewUser::new(name, format!("{name}@example.com"), HASH))
        .expect("create user")
        .id
}

#[test]
fn connects_to_a_file_and_to_memory() {
    let (_db, store) = file_store();
    assert_eq!(store.backend(), repo_core::BackendKind::Sqlite);
    store.health().expect("health");
    assert!(!store.is_in_memory());

    let mem = SqliteStore::connect(":memory:", &StoreConfig::default()).expect("memory");
    assert!(mem.is_in_memory());
    // One database across the pool: a row written by one call is seen by the next.
    let id = user(&mem, "mem");
    assert_eq!(mem.users().get(id).expect("get").username, "mem");
    // Concurrent callers share the single connection.
    let mem = Arc::new(mem);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let mem = Arc::clone(&mem);
            thread::spawn(move || user(&*mem, &format!("mem{i}")))
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(
        mem.users().count(Default::default()).expect("count"),
        5,
        "every thread wrote to the same in-memory database"
    );

    // A `file:` URI naming a file, and a named in-memory URI.
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = format!("file:{}?mode=rwc", dir.path().join("uri.db").display());
    let by_uri = SqliteStore::connect(&uri, &StoreConfig::default()).expect("file: URI");
    assert!(!by_uri.is_in_memory());
    user(&by_uri, "by_uri");
    assert!(dir.path().join("uri.db").exists());
    let named = SqliteStore::connect(
        "file:smoke_mem?mode=memory&cache=shared",
        &StoreConfig::default(),
    )
    .expect("memory URI");
    assert!(named.is_in_memory());
    user(&named, "named");

    let err = SqliteStore::connect("", &StoreConfig::default()).unwrap_err();
    assert!(matches!(err, RepoError::Config { .. }));
}

#[test]
fn migrations_round_trip() {
    let config = StoreConfig {
        run_migrations: false,
        ..StoreConfig::default()
    };
    let db = TempDatabase::create("migrations.db").expect("temporary database");
    let store = SqliteStore::connect_for_migrations(db.url(), &config).expect("connect");
    let all = store.pending_migrations().expect("pending");
    assert!(!all.is_empty());
    assert_eq!(store.run_pending_migrations().expect("up"), all);
    assert_eq!(store.applied_migrations().expect("applied"), all);
    assert!(store.pending_migrations().expect("pending").is_empty());
    let snapshot = store.schema_snapshot().expect("snapshot");
    let users = &snapshot.tables["users"];
    assert!(!users.columns["id"], "INTEGER PRIMARY KEY is not nullable");
    assert!(users.columns["full_name"]);
    let active = &snapshot.tables["operations"].indexes["operations_one_active_per_collection"];
    assert!(active.unique && active.partial);
    assert_eq!(active.columns, vec!["collection_id".to_owned()]);
    assert!(!snapshot.tables.contains_key("__diesel_schema_migrations"));

    let mut reverted = store.revert_all_migrations().expect("down");
    reverted.reverse();
    assert_eq!(reverted, all);
    assert!(store.schema_snapshot().expect("snapshot").tables.is_empty());
    assert_eq!(store.run_pending_migrations().expect("up again"), all);
    assert_eq!(store.schema_snapshot().expect("snapshot"), snapshot);
    store.revert_all_migrations().expect("down again");
    assert!(store.applied_migrations().expect("applied").is_empty());
}

#[test]
fn pool_and_lock_failures_are_classified() {
    use repo_core::{PoolConfig, RetryPolicy, SqliteConfig, UnavailableReason};
    use std::time::Duration;

    // A pool of one (in memory) held by a unit of work on another thread: a checkout
    // times out with every connection in use. (On the unit of work's own thread a
    // call on the store is refused outright.)
    let quick = StoreConfig {
        pool: PoolConfig {
            connection_timeout: Duration::from_millis(100),
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    let mem = SqliteStore::connect(":memory:", &quick).expect("memory");
    let store: &dyn Store = &mem;
    let (held_tx, held) = std::sync::mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let err = thread::scope(|scope| {
        scope.spawn(move || {
            store.transaction(|_tx| {
                held_tx.send(()).expect("main thread waits");
                release.recv().expect("main thread releases");
                Ok(())
            })
        });
        held.recv().expect("the unit of work started");
        let err = store.users().count(Default::default()).unwrap_err();
        release_tx.send(()).expect("holder waits");
        err
    });
    assert!(
        matches!(
            err,
            RepoError::Unavailable {
                reason: UnavailableReason::PoolExhausted,
                ..
            }
        ),
        "{err:?}"
    );

    // A directory that does not exist cannot be opened.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no/such/dir/x.db");
    let err = SqliteStore::connect(missing.to_str().expect("utf-8"), &quick).unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::Unavailable {
                reason: UnavailableReason::ConnectionFailed,
                ..
            }
        ),
        "{err:?}"
    );

    // A writer blocked past busy_timeout (and the retries) gets Conflict(Busy).
    let path = dir.path().join("busy.db");
    let path = path.to_str().expect("utf-8");
    let holder = SqliteStore::connect(path, &StoreConfig::default()).expect("holder");
    let impatient = SqliteStore::connect(
        path,
        &StoreConfig {
            sqlite: SqliteConfig {
                busy_timeout: Duration::from_millis(50),
            },
            retry: RetryPolicy {
                max_attempts: 2,
                base_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
            ..StoreConfig::default()
        },
    )
    .expect("impatient");
    let holder: &dyn Store = &holder;
    holder
        .transaction(|tx| {
            tx.users()
                .create(&NewUser::new("holder", "holder@example.com", HASH))?;
            let err = impatient
                .users()
                .create(&NewUser::new("blocked", "blocked@example.com", HASH))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    RepoError::Conflict {
                        reason: ConflictReason::Busy,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.is_retryable());
            Ok(())
        })
        .expect("holder commits");
}
