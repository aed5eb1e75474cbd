//! The behaviour suite of `repo-behaviour`, run once per backend.
//!
//! Every test gets its own database: a temporary SQLite file, or a throwaway
//! PostgreSQL database created on the server named by `TEST_DATABASE_URL` (set by
//! `scripts/test.sh`). PostgreSQL is never skipped: without `TEST_DATABASE_URL` its
//! tests fail and say how to run them.

mod sqlite {
    use repo_behaviour::Harness;
    use repo_core::{BackendKind, Store, StoreConfig};
    use repo_sqlite::testing::TempDatabase;
    use repo_sqlite::SqliteStore;
    use std::sync::Arc;

    /// One test's SQLite database: a file in a temporary directory that lives as long
    /// as the harness (fields drop in order: the store before the directory).
    pub struct SqliteHarness {
        store: Arc<dyn Store>,
        db: TempDatabase,
    }

    impl Harness for SqliteHarness {
        fn store(&self) -> Arc<dyn Store> {
            Arc::clone(&self.store)
        }

        fn open_with(&self, config: StoreConfig) -> Arc<dyn Store> {
            match SqliteStore::connect(self.db.url(), &config) {
                Ok(store) => Arc::new(store),
                Err(e) => panic!("reopening the SQLite test database failed: {e}"),
            }
        }

        fn backend(&self) -> BackendKind {
            BackendKind::Sqlite
        }
    }

    #[rstest::fixture]
    fn harness() -> SqliteHarness {
        let db = TempDatabase::create("behaviour.db").unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::connect(db.url(), &StoreConfig::default())
            .unwrap_or_else(|e| panic!("opening the SQLite test database failed: {e}"));
        SqliteHarness {
            store: Arc::new(store),
            db,
        }
    }

    repo_behaviour::behaviour_tests!(harness);
}

mod postgres {
    use repo_behaviour::Harness;
    use repo_core::{BackendKind, Store, StoreConfig};
    use repo_postgres::testing::TempDatabase;
    use repo_postgres::PostgresStore;
    use std::sync::Arc;

    /// One test's PostgreSQL database, dropped (with `FORCE`) after the store.
    pub struct PostgresHarness {
        store: Arc<dyn Store>,
        db: TempDatabase,
    }

    impl Harness for PostgresHarness {
        fn store(&self) -> Arc<dyn Store> {
            Arc::clone(&self.store)
        }

        fn open_with(&self, config: StoreConfig) -> Arc<dyn Store> {
            match PostgresStore::connect(self.db.url(), &config) {
                Ok(store) => Arc::new(store),
                Err(e) => panic!("reopening the PostgreSQL test database failed: {e}"),
            }
        }

        fn backend(&self) -> BackendKind {
            BackendKind::Postgres
        }
    }

    #[rstest::fixture]
    fn harness() -> PostgresHarness {
        let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
        let store = PostgresStore::connect(db.url(), &StoreConfig::default())
            .unwrap_or_else(|e| panic!("opening PostgreSQL test database {}: {e}", db.name()));
        PostgresHarness {
            store: Arc::new(store),
            db,
        }
    }

    repo_behaviour::behaviour_tests!(harness);
}

/// The behaviour suite on a PostgreSQL store with a streaming replica configured
/// (`TEST_PRIMARY_URL`, `TEST_STANDBY_URL`, provisioned by `scripts/test.sh`): code
/// that does not opt in to the read views must behave exactly as without replicas.
mod replica {
    use repo_behaviour::Harness;
    use repo_core::{BackendKind, ReplicaConfig, Store, StoreConfig};
    use repo_postgres::testing::{wait_until_connectable, TempDatabase};
    use repo_postgres::PostgresStore;
    use std::sync::Arc;
    use std::time::Duration;

    /// One test's database on the primary, with its replica configured.
    pub struct ReplicaHarness {
        store: Arc<dyn Store>,
        replica_url: String,
        db: TempDatabase,
    }

    fn env(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the tests with scripts/test.sh, which provisions a streaming replica")
        })
    }

    fn with_replica(mut config: StoreConfig, replica_url: &str) -> StoreConfig {
        config.replicas = ReplicaConfig {
            urls: vec![replica_url.to_owned()],
            ..config.replicas
        };
        config
    }

    impl Harness for ReplicaHarness {
        fn store(&self) -> Arc<dyn Store> {
            Arc::clone(&self.store)
        }

        fn open_with(&self, config: StoreConfig) -> Arc<dyn Store> {
            match PostgresStore::connect(self.db.url(), &with_replica(config, &self.replica_url)) {
                Ok(store) => Arc::new(store),
                Err(e) => panic!("reopening the replicated test database failed: {e}"),
            }
        }

        fn backend(&self) -> BackendKind {
            BackendKind::Postgres
        }
    }

    #[rstest::fixture]
    fn harness() -> ReplicaHarness {
        let db = TempDatabase::create_replicated(&env("TEST_PRIMARY_URL"))
            .unwrap_or_else(|e| panic!("{e}"));
        let replica_url = db
            .url_through(&env("TEST_STANDBY_URL"))
            .unwrap_or_else(|e| panic!("{e}"));
        wait_until_connectable(&replica_url, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("the replica never showed database {}: {e}", db.name()));
        let config = with_replica(StoreConfig::default(), &replica_url);
        let store = PostgresStore::connect(db.url(), &config)
            .unwrap_or_else(|e| panic!("opening replicated test database {}: {e}", db.name()));
        ReplicaHarness {
            store: Arc::new(store),
            replica_url,
            db,
        }
    }

    repo_behaviour::behaviour_tests!(harness);
}

mod pgbouncer {
    use repo_behaviour::Harness;
    use repo_core::{BackendKind, Store, StoreConfig};
    use repo_postgres::testing::TempDatabase;
    use repo_postgres::PostgresStore;
    use std::sync::Arc;

    /// One test's PostgreSQL database, created directly and used through PgBouncer.
    pub struct PgBouncerHarness {
        store: Arc<dyn Store>,
        pooled_url: String,
        _db: TempDatabase,
    }

    /// `config` with the transaction-pooler mode on.
    fn pooler_mode(mut config: StoreConfig) -> StoreConfig {
        config.postgres.pgbouncer = true;
        config
    }

    impl Harness for PgBouncerHarness {
        fn store(&self) -> Arc<dyn Store> {
            Arc::clone(&self.store)
        }

        fn open_with(&self, config: StoreConfig) -> Arc<dyn Store> {
            match PostgresStore::connect(&self.pooled_url, &pooler_mode(config)) {
                Ok(store) => Arc::new(store),
                Err(e) => panic!("reopening the test database through PgBouncer failed: {e}"),
            }
        }

        fn backend(&self) -> BackendKind {
            BackendKind::Postgres
        }
    }

    #[rstest::fixture]
    fn harness() -> PgBouncerHarness {
        let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
        let pooled_url = db.pgbouncer_url().unwrap_or_else(|e| panic!("{e}"));
        let store = PostgresStore::connect(&pooled_url, &pooler_mode(StoreConfig::default()))
            .unwrap_or_else(|e| {
                panic!("opening test database {} through PgBouncer: {e}", db.name())
            });
        PgBouncerHarness {
            store: Arc::new(store),
            pooled_url,
            _db: db,
        }
    }

    repo_behaviour::behaviour_tests!(harness);
}
