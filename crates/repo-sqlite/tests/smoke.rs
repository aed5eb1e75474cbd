//! Smoke tests of the SQLite store. The cross-backend behaviour suite lives in
//! `repo-behaviour`; these check the SQLite-specific wiring.

use repo_core::SchemaAdmin;
use repo_core::{
    AccessLevel, CollectionStatus, ConflictReason, Entity, Field, NewApiKey, NewCollection,
    NewOperation, NewUser, OperationKind, RepoError, Repositories, Store, StoreConfig, UserId,
};
use repo_sqlite::SqliteStore;
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::thread;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn file_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("smoke.db");
    let store = SqliteStore::connect(path.to_str().expect("utf-8 path"), &StoreConfig::default())
        .expect("connect");
    (dir, store)
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
    let (_dir, store) = file_store();
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
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("migrations.db");
    let store = SqliteStore::connect_for_migrations(path.to_str().expect("utf-8"), &config)
        .expect("connect");
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
fn one_create_and_get_per_repository() {
    let (_dir, store) = file_store();
    let owner = user(&store, "owner");
    assert_eq!(
        store
            .users()
            .get_by_email("OWNER@example.com")
            .expect("by email")
            .id,
        owner
    );

    let created = store
        .api_keys()
        .create(&NewApiKey::new(owner, "ci"))
        .expect("api key");
    assert_eq!(
        store.api_keys().get(created.key.id).expect("get key"),
        created.key
    );
    let verified = store
        .api_keys()
        .verify(created.secret.expose())
        .expect("verify")
        .expect("valid key");
    assert_eq!(verified.user.id, owner);
    assert!(verified.key.last_used_at.is_some());

    let collection = store
        .collections()
        .create(&NewCollection::new("docs", owner))
        .expect("collection");
    assert_eq!(
        store
            .collections()
            .get(collection.id)
            .expect("get collection"),
        collection
    );
    assert_eq!(
        store
            .collections()
            .access_level(collection.id, owner.into())
            .expect("access"),
        Some(AccessLevel::Admin)
    );

    let op = store
        .operations()
        .create(&NewOperation::new(
            collection.id,
            owner,
            OperationKind::Index,
            json!({"source": "/docs"}),
        ))
        .expect("operation");
    assert_eq!(store.operations().get(op.uuid).expect("get op"), op);
}

#[test]
fn unique_violation_names_the_field() {
    let (_dir, store) = file_store();
    user(&store, "dup");
    let err = store
        .users()
        .create(&NewUser::new("dup", "other@example.com", HASH))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::AlreadyExists {
                entity: Entity::User,
                field: Field::Username
            }
        ),
        "{err:?}"
    );
    let err = store
        .users()
        .create(&NewUser::new("other", "DUP@example.com", HASH))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::AlreadyExists {
                entity: Entity::User,
                field: Field::Email
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unit_of_work_rolls_back() {
    let (_dir, store) = file_store();
    let store: &dyn Store = &store;
    let owner = user(store, "owner");
    let err = store
        .transaction(|tx| {
            // A multi-statement write inside the unit of work becomes a savepoint.
            let c = tx
                .collections()
                .create(&NewCollection::new("doomed", owner))?;
            tx.lock_collection(c.id)?;
            tx.collections()
                .update_status(c.id, CollectionStatus::Processing, None)?;
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
        store.collections().get_by_name("doomed"),
        Err(RepoError::NotFound { .. })
    ));

    let kept = store
        .transaction(|tx| {
            let c = tx
                .collections()
                .create(&NewCollection::new("kept", owner))?;
            // A failing call inside the unit of work rolls back only its savepoint.
            let dup = tx.collections().create(&NewCollection::new("kept", owner));
            assert!(matches!(
                dup,
                Err(RepoError::AlreadyExists {
                    field: Field::Name,
                    ..
                })
            ));
            tx.collections()
                .update_status(c.id, CollectionStatus::Processing, None)
        })
        .expect("commit");
    assert_eq!(
        store.collections().get(kept.id).expect("get").status,
        CollectionStatus::Processing
    );
}

#[test]
fn concurrent_user_creation_on_one_file_is_never_locked() {
    let (_dir, store) = file_store();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..25 {
                    let name = format!("u{t}_{i}");
                    store
                        .users()
                        .create(&NewUser::new(&name, format!("{name}@example.com"), HASH))
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("no busy error");
    }
    assert_eq!(store.users().count(Default::default()).expect("count"), 200);
}

#[test]
fn racing_operation_creators_get_one_success() {
    let (_dir, store) = file_store();
    let owner = user(&store, "owner");
    let collection = store
        .collections()
        .create(&NewCollection::new("race", owner))
        .expect("collection")
        .id;
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                store.operations().create(&NewOperation::new(
                    collection,
                    owner,
                    OperationKind::Index,
                    json!({"n": 1}),
                ))
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(RepoError::Conflict {
                    reason: ConflictReason::ActiveOperation,
                    ..
                })
            )
        })
        .count();
    assert_eq!((ok, conflicts), (1, 15), "{results:?}");
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
