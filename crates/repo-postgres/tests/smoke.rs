//! The PostgreSQL store's own wiring against a live server (each test in its own
//! temporary database): migrations, lock timeouts, connection failures and URLs
//! (multi-host, secrets, `pgbouncer=`), the test harness itself. Everything both
//! backends must do alike is in the behaviour suite (`repo-behaviour`).

use repo_core::*;
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn temp_db() -> TempDatabase {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    TempDatabase::create(&admin).expect("create a temporary database")
}

fn config() -> StoreConfig {
    StoreConfig {
        pool: PoolConfig {
            pool_size: 2,
            max_overflow: 6,
            connection_timeout: Duration::from_secs(5),
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    }
}

fn open(db: &TempDatabase, config: &StoreConfig) -> PostgresStore {
    PostgresStore::connect(db.url(), config).expect("connect")
}

fn user(store: &dyn Store, name: &str) -> User {
    store
        .users()
        .create(&NewUser::new(name, format!("{name}@example.com"), HASH))
        .expect("create user")
}

#[test]
fn migrations_round_trip_down_up_down() {
    let db = temp_db();
    let store = open(&db, &config());
    let applied = store.applied_migrations().unwrap();
    assert_eq!(applied.len(), 5);
    assert!(store.pending_migrations().unwrap().is_empty());
    assert!(store.run_pending_migrations().unwrap().is_empty());

    let snapshot = store.schema_snapshot().unwrap();
    let tables: Vec<&str> = snapshot.tables.keys().map(String::as_str).collect();
    assert_eq!(
        tables,
        [
            "api_keys",
            "chunks",
            "collection_permissions",
            "collections",
            "documents",
            "operations",
            "users"
        ]
    );
    // The partitioned parent and its partitioned indexes; no partition.
    let chunks = &snapshot.tables["chunks"];
    assert!(chunks.columns.contains_key("search_tsv"));
    assert_eq!(
        chunks.indexes["chunks_document_chunk_index_key"].columns,
        ["collection_id", "document_id", "chunk_index"]
    );
    assert!(chunks.indexes.contains_key("chunks_search_tsv_idx"));
    assert!(snapshot.tables["documents"]
        .indexes
        .contains_key("documents_meta_idx"));
    let ops = &snapshot.tables["operations"];
    let active = &ops.indexes["operations_one_active_per_collection"];
    assert!(active.unique && active.partial);
    assert_eq!(active.columns, ["collection_id"]);
    assert!(!ops.indexes.keys().any(|k| k.ends_with("_pkey")));
    assert_eq!(ops.columns.get("task_id"), Some(&true));
    assert_eq!(ops.columns.get("config"), Some(&false));

    // Reverted newest first.
    let newest_first: Vec<String> = applied.iter().rev().cloned().collect();
    assert_eq!(store.revert_all_migrations().unwrap(), newest_first);
    assert!(store.schema_snapshot().unwrap().tables.is_empty());
    assert_eq!(store.pending_migrations().unwrap(), applied);
    assert_eq!(store.run_pending_migrations().unwrap(), applied);
    assert_eq!(store.schema_snapshot().unwrap(), snapshot);
    assert_eq!(store.revert_all_migrations().unwrap(), newest_first);
    assert!(store.applied_migrations().unwrap().is_empty());
}

#[test]
fn connect_for_migrations_leaves_them_pending() {
    let db = temp_db();
    let store = PostgresStore::connect_for_migrations(db.url(), &config()).expect("connect");
    assert_eq!(store.pending_migrations().unwrap().len(), 5);
    store.health().unwrap();
    assert_eq!(store.backend(), BackendKind::Postgres);
}

#[test]
fn lock_timeout_is_a_concurrent_update_conflict() {
    let db = temp_db();
    let store = open(&db, &config());
    let alice = user(&store, "alice");
    let col = store
        .collections()
        .create(&NewCollection::new("docs", alice.id))
        .unwrap();
    let impatient = open(
        &db,
        &StoreConfig {
            postgres: PostgresConfig {
                lock_timeout: Duration::from_millis(100),
                ..PostgresConfig::default()
            },
            ..config()
        },
    );

    let locked = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let holder = {
        let (store, locked, done) = (store.clone(), locked.clone(), done.clone());
        std::thread::spawn(move || {
            let s: &dyn Store = &store;
            s.transaction(|tx| {
                tx.lock_collection(col.id)?;
                locked.wait();
                done.wait();
                Ok(())
            })
        })
    };
    locked.wait();
    let s: &dyn Store = &impatient;
    let err = s.transaction(|tx| tx.lock_collection(col.id)).unwrap_err();
    done.wait();
    holder.join().expect("thread").unwrap();
    assert!(
        matches!(
            err,
            RepoError::Conflict {
                reason: ConflictReason::ConcurrentUpdate,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn closed_port_is_connection_failed_quickly() {
    let started = Instant::now();
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/x", &config()).unwrap_err();
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
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn errors_never_show_the_url_password() {
    let url = "postgres://postgres:Sup3rS3cretPw@127.0.0.1:1/x?password=Sup3rS3cretPw";
    let err = PostgresStore::connect(url, &config()).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("Sup3rS3cretPw"), "{shown}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        assert!(!s.to_string().contains("Sup3rS3cretPw"));
        source = s.source();
    }

    let err =
        PostgresStore::connect("mysql://root:Sup3rS3cretPw@localhost/x", &config()).unwrap_err();
    assert!(matches!(err, RepoError::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("Sup3rS3cretPw"));
}

#[test]
fn temp_database_is_dropped_with_its_guard() {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    let db = TempDatabase::create(&admin).unwrap();
    let name = db.name().to_owned();
    let url = repo_core::PostgresUrl::parse(db.url()).unwrap();
    assert_eq!(url.database(), Some(name.as_str()));
    let store = open(&db, &config());
    store.health().unwrap();
    drop(store);
    drop(db);
    let admin_store = PostgresStore::connect_for_migrations(&admin, &config()).unwrap();
    // Reconnecting to the dropped database must fail.
    let gone = url.to_url();
    let err = PostgresStore::connect(&gone, &config()).unwrap_err();
    assert!(matches!(err, RepoError::Unavailable { .. }), "{err:?}");
    admin_store.health().unwrap();
}

#[test]
fn concurrent_connects_migrate_once() {
    let db = temp_db();
    let url = db.url().to_owned();
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PostgresStore::connect(&url, &config()).map(|s| s.applied_migrations())
            })
        })
        .collect();
    for h in handles {
        let applied = h
            .join()
            .expect("thread")
            .expect("connect")
            .expect("applied");
        assert_eq!(applied.len(), 5);
    }
}

#[test]
fn zero_pool_timeout_is_a_config_error() {
    let db = temp_db();
    let cfg = StoreConfig {
        pool: PoolConfig {
            connection_timeout: Duration::ZERO,
            max_lifetime: Some(Duration::ZERO),
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    let err = PostgresStore::connect(db.url(), &cfg).unwrap_err();
    assert!(matches!(err, RepoError::Config { .. }), "{err:?}");
}

fn admin_url() -> PostgresUrl {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    PostgresUrl::parse(&admin).expect("TEST_DATABASE_URL parses")
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn closed_host() -> PgHost {
    PgHost {
        host: "127.0.0.1".into(),
        port: Some(closed_port()),
    }
}

/// A multi-host URL whose first hosts refuse: the temporary database, the store and
/// its `Debug` all take the host list (libpq tries the hosts in order).
#[test]
fn multi_host_url_reaches_the_server_after_closed_ports() {
    let admin = admin_url();
    let mut hosts = vec![closed_host(), closed_host()];
    hosts.extend(admin.hosts());
    let multi = admin.with_hosts(&hosts).to_url();
    let db = TempDatabase::create(&multi).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(PostgresUrl::parse(db.url()).unwrap().hosts(), hosts);
    let store = open(&db, &config());
    store.health().unwrap();
    user(&store, "multi");
    let shown = format!("{store:?}");
    assert!(
        shown.contains(&format!("127.0.0.1:{}", hosts[0].port.unwrap())),
        "{shown}"
    );
}

/// The password of a multi-host URL is scrubbed from a failed connect's error, while
/// the URL, redacted, stays in the message. The server's refusal names the database,
/// here named like the (decoded) password, so without scrubbing the message would
/// show it.
#[test]
fn multi_host_password_is_scrubbed_from_connect_errors() {
    let admin = admin_url();
    let mut hosts = vec![closed_host(), closed_host()];
    hosts.extend(admin.hosts());
    let password = "Zq9@pw,x/y:z";
    // Lowercase escapes in the password, uppercase in the database name: the raw
    // password differs from the path, the decoded one is the same text.
    let url = admin
        .with_hosts(&hosts)
        .with_database(password)
        .with_password(Some("PLACEHOLDER"))
        .to_url()
        .replace("PLACEHOLDER", "Zq9%40pw%2cx%2fy%3az");
    let redacted = PostgresUrl::parse(&url).unwrap().redacted();
    assert!(redacted.contains(":***@127.0.0.1:"), "{redacted}");
    let err = PostgresStore::connect(&url, &config()).unwrap_err();
    assert!(matches!(err, RepoError::Unavailable { .. }), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains("Zq9%40pw%2cx%2fy%3az"), "{shown}");
    }
    assert!(err.to_string().contains(&redacted), "{err}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        assert!(!s.to_string().contains(password), "{s}");
        source = s.source();
    }
}

/// `pgbouncer=` is not a libpq parameter (libpq refuses unknown ones): the store takes
/// it out before connecting, and keeps it in what it shows.
#[test]
fn pgbouncer_parameter_never_reaches_libpq() {
    let db = temp_db();
    let url = db.url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}pgbouncer=false");
    let store = PostgresStore::connect(&url, &config()).unwrap_or_else(|e| panic!("{e}"));
    store.health().unwrap();
    assert!(format!("{store:?}").contains("pgbouncer=false"));
}
