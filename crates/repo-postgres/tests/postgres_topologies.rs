//! PostgreSQL as it runs in production, on real servers: behind a transaction pooler
//! (PgBouncer in transaction mode at `TEST_PGBOUNCER_URL`), and beside a streaming
//! standby (`TEST_STANDBY_URL`, a standby of `TEST_PRIMARY_URL`).
//!
//! Every test creates its own database directly on the server (`TEST_DATABASE_URL`,
//! or the primary) and reaches it through PgBouncer under the same name. A variable
//! a test needs that is unset fails the test with a message saying how to set it.

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use repo_core::SchemaAdmin;
use repo_core::{
    NewUser, PoolConfig, PostgresConfig, RepoError, Repositories, Store, StoreConfig,
    UnavailableReason, UserFilter,
};
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn required_env(name: &str, what: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => panic!(
            "{name} is not set: it must name {what}; scripts/test.sh provisions it \
             (run the tests with scripts/test.sh)"
        ),
    }
}

fn temp_db() -> TempDatabase {
    TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"))
}

fn pooled_url(db: &TempDatabase) -> String {
    db.pgbouncer_url().unwrap_or_else(|e| panic!("{e}"))
}

/// A small pool; `pgbouncer` turns the transaction-pooler mode on.
fn config(pgbouncer: bool) -> StoreConfig {
    StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 1,
            connection_timeout: Duration::from_secs(10),
            ..PoolConfig::default()
        },
        postgres: PostgresConfig {
            pgbouncer,
            ..PostgresConfig::default()
        },
        ..StoreConfig::default()
    }
}

fn open(url: &str, config: &StoreConfig) -> PostgresStore {
    PostgresStore::connect(url, config).unwrap_or_else(|e| panic!("connect: {e}"))
}

fn new_user(name: &str) -> NewUser {
    NewUser::new(name, format!("{name}@example.com"), HASH)
}

fn raw(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| panic!("raw connection: {e}"))
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn show(conn: &mut PgConnection, name: &str) -> String {
    diesel::sql_query("SELECT current_setting($1) AS value")
        .bind::<Text, _>(name)
        .get_result::<Value>(conn)
        .unwrap_or_else(|e| panic!("current_setting({name}): {e}"))
        .value
}

/// Advisory locks held in database `name`, by anyone.
fn advisory_locks(admin: &mut PgConnection, name: &str) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND d.datname = $1",
    )
    .bind::<Text, _>(name)
    .get_result::<Count>(admin)
    .unwrap_or_else(|e| panic!("pg_locks: {e}"))
    .n
}

/// Host and port of a single-host URL, for building multi-host URLs and proxies.
fn host_port(url: &str) -> String {
    let parsed = repo_core::PostgresUrl::parse(url).unwrap_or_else(|e| panic!("{e}"));
    let host = parsed.hosts().into_iter().next().expect("a host");
    format!("{}:{}", host.host, host.port.unwrap_or(5432))
}

// ---------------------------------------------------------------------------------
// Transaction pooler: prepared statements
// ---------------------------------------------------------------------------------

/// What the count clients saw.
#[derive(Debug, Default)]
struct Outcomes {
    right: usize,
    wrong: usize,
    config_errors: usize,
    /// Errors that are not the pooler's `Config` error, with their text.
    other_errors: Vec<String>,
}

/// Four stores through PgBouncer, two counting active users (3) and two counting
/// superusers (1), concurrently. Both counts are prepared as the same Diesel statement
/// number on their own client connections (`__diesel_stmt_N`), so without the
/// pooler mode PgBouncer can run one client's EXECUTE on a server connection where
/// the other client prepared its statement under that name.
fn count_concurrently(db: &TempDatabase, pgbouncer: bool, iterations: usize) -> Outcomes {
    // Schema and data directly, so only the counting goes through the pooler.
    let direct = open(db.url(), &config(false));
    for name in ["alice", "bob"] {
        direct.users().create(&new_user(name)).expect("user");
    }
    let mut root = new_user("root");
    root.is_superuser = true;
    direct.users().create(&root).expect("superuser");
    drop(direct);

    let url = pooled_url(db);
    let mut cfg = config(pgbouncer);
    cfg.run_migrations = false;
    cfg.pool.max_overflow = 0;
    let start = Arc::new(Barrier::new(4));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let store = open(&url, &cfg);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let (filter, expected) = if i % 2 == 0 {
                    (
                        UserFilter {
                            is_active: Some(true),
                            ..UserFilter::default()
                        },
                        3,
                    )
                } else {
                    (
                        UserFilter {
                            is_superuser: Some(true),
                            ..UserFilter::default()
                        },
                        1,
                    )
                };
                let mut seen = Outcomes::default();
                start.wait();
                for _ in 0..iterations {
                    match store.users().count(filter) {
                        Ok(n) if n == expected => seen.right += 1,
                        Ok(_) => seen.wrong += 1,
                        Err(RepoError::Config { message })
                            if message.contains("pgbouncer=true") =>
                        {
                            seen.config_errors += 1
                        }
                        Err(other) => seen.other_errors.push(other.to_string()),
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Outcomes::default();
    for client in clients {
        let seen = client.join().expect("client thread");
        all.right += seen.right;
        all.wrong += seen.wrong;
        all.config_errors += seen.config_errors;
        all.other_errors.extend(seen.other_errors);
    }
    all
}

/// Without the pooler mode, a transaction pooler mixes up Diesel's named prepared
/// statements between clients. What the server reports (`prepared statement ... does
/// not exist / already exists`, `bind message supplies ...`) is now a `Config` error
/// that says to set `pgbouncer=true`/`DB_PGBOUNCER=true`.
///
/// Honest limit: when the other client's statement under the same name has the same
/// parameter types and result shape (as here: `is_active = $1` against
/// `is_superuser = $1`), the server runs it without complaint and the count is
/// wrong; no client-side mapping can see that. Such wrong answers are counted below
/// and allowed; only the pooler mode (next test) removes them, which is why the
/// mode exists and why docs/postgres.md says to turn it on behind any transaction
/// pooler.
#[test]
fn without_the_mode_a_transaction_pooler_gives_errors_or_wrong_rows() {
    let db = temp_db();
    let seen = count_concurrently(&db, false, 300);
    eprintln!("without the pooler mode: {seen:?}");
    assert!(
        seen.wrong + seen.config_errors + seen.other_errors.len() > 0,
        "PgBouncer in transaction mode mixed nothing up in 1200 calls: {seen:?}"
    );
    // Every statement mix-up the server reported is the Config error.
    let unmapped: Vec<_> = seen
        .other_errors
        .iter()
        .filter(|e| e.contains("prepared statement") || e.contains("bind message"))
        .collect();
    assert!(unmapped.is_empty(), "not mapped to Config: {unmapped:?}");
}

/// With the pooler mode the same concurrent clients get every count right, with no
/// error.
#[test]
fn with_the_mode_a_transaction_pooler_gives_every_row_right() {
    let db = temp_db();
    let seen = count_concurrently(&db, true, 300);
    assert_eq!(
        (
            seen.right,
            seen.wrong,
            seen.config_errors,
            seen.other_errors.len()
        ),
        (1200, 0, 0, 0),
        "{seen:?}"
    );
}

// ---------------------------------------------------------------------------------
// Transaction pooler: timeouts per statement, no session state
// ---------------------------------------------------------------------------------

/// Makes every INSERT and UPDATE on `users` sleep `seconds` (a trigger), and returns
/// a direct connection to the database.
fn slow_user_writes(db: &TempDatabase, seconds: f64) -> PgConnection {
    let mut conn = raw(db.url());
    conn.batch_execute(&format!(
        "CREATE FUNCTION slow_user() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$; \
         CREATE TRIGGER slow_user BEFORE INSERT OR UPDATE ON users \
         FOR EACH ROW EXECUTE FUNCTION slow_user()"
    ))
    .expect("slow trigger");
    conn
}

/// Through the pooler with the mode, `statement_timeout` holds for each statement
/// the library sends (a write transaction, and a single call), although nothing is
/// set on the session; and the server connections behind the pooler keep their
/// defaults afterwards: no setting leaks to other clients.
#[test]
fn through_the_pooler_the_timeouts_hold_per_statement_and_do_not_leak() {
    let db = temp_db();
    let url = pooled_url(&db);
    let mut cfg = config(true);
    cfg.postgres.statement_timeout = Duration::from_millis(300);
    cfg.postgres.lock_timeout = Duration::from_millis(200);
    cfg.postgres.idle_in_transaction_timeout = Duration::from_secs(7);
    let store = open(&url, &cfg);
    let alice = store.users().create(&new_user("alice")).expect("alice");
    let _direct = slow_user_writes(&db, 2.0);

    let expect_statement_timeout = |what: &str, result: Result<(), RepoError>| {
        assert!(
            matches!(
                result,
                Err(RepoError::Unavailable {
                    reason: UnavailableReason::StatementTimeout,
                    ..
                })
            ),
            "{what}: {result:?}"
        );
    };
    let started = Instant::now();
    // `create` is a write transaction; `record_login` a single call.
    expect_statement_timeout("create", store.users().create(&new_user("bob")).map(|_| ()));
    expect_statement_timeout(
        "record_login",
        store.users().record_login(alice.id).map(|_| ()),
    );
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "the 2 s sleeps were cut short: {:?}",
        started.elapsed()
    );

    // lock_timeout too: a row lock held elsewhere makes an update give up quickly.
    let mut holder = raw(db.url());
    holder
        .batch_execute("DROP TRIGGER slow_user ON users")
        .expect("drop trigger");
    holder.batch_execute("BEGIN").expect("begin");
    diesel::sql_query("SELECT 1 AS n FROM users WHERE id = $1 FOR UPDATE")
        .bind::<BigInt, _>(alice.id.0)
        .execute(&mut holder)
        .expect("lock alice");
    let locked = store.users().record_login(alice.id);
    assert!(
        matches!(locked, Err(RepoError::Conflict { .. })),
        "{locked:?}"
    );
    holder.batch_execute("ROLLBACK").expect("rollback");

    // The server's defaults, as a fresh direct connection sees them.
    let mut fresh = raw(db.url());
    let names = [
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "TimeZone",
    ];
    let defaults: Vec<String> = names.iter().map(|n| show(&mut fresh, n)).collect();
    assert_ne!(
        defaults[0], "300ms",
        "the test needs a server default other than ours"
    );
    // Several clients at once through the pooler, outside any transaction of ours:
    // they land on the server connections the store used, and see the defaults.
    let mut clients: Vec<PgConnection> = (0..4).map(|_| raw(&url)).collect();
    for _ in 0..5 {
        for client in &mut clients {
            let seen: Vec<String> = names.iter().map(|n| show(client, n)).collect();
            assert_eq!(seen, defaults, "a setting leaked to another pooler client");
        }
    }
}

// ---------------------------------------------------------------------------------
// Migrations: transaction-scoped lock, concurrent migrators, DATABASE_MIGRATION_URL
// ---------------------------------------------------------------------------------

fn all_migrations_applied(store: &PostgresStore) {
    let pending = store.pending_migrations().expect("pending");
    assert!(pending.is_empty(), "pending: {pending:?}");
    assert_eq!(store.applied_migrations().expect("applied").len(), 5);
}

/// Migrating through the pooler (mode on) and directly leaves no advisory lock.
#[test]
fn migrating_leaves_no_advisory_lock() {
    let db = temp_db();
    let mut admin = raw(db.url());
    let pooled = open(&pooled_url(&db), &config(true));
    all_migrations_applied(&pooled);
    assert_eq!(
        advisory_locks(&mut admin, db.name()),
        0,
        "through the pooler"
    );
    // Revert and re-apply, directly this time.
    let direct = open(db.url(), &config(false));
    assert_eq!(direct.revert_all_migrations().expect("revert").len(), 5);
    assert_eq!(direct.run_pending_migrations().expect("migrate").len(), 5);
    assert_eq!(advisory_locks(&mut admin, db.name()), 0, "directly");
    // And through the pooler again, after a revert through it.
    assert!(pooled.revert_last_migration().is_ok());
    assert_eq!(pooled.run_pending_migrations().expect("migrate").len(), 1);
    assert_eq!(advisory_locks(&mut admin, db.name()), 0, "pooler, again");
}

/// Two processes opening a fresh database at once both finish, one after the other
/// (without the lock, one of them fails creating a table that the other created).
fn concurrent_migrators(db: &TempDatabase, urls: [(String, bool); 2]) {
    let start = Arc::new(Barrier::new(2));
    let migrators: Vec<_> = urls
        .into_iter()
        .map(|(url, pgbouncer)| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                PostgresStore::connect(&url, &config(pgbouncer))
            })
        })
        .collect();
    for migrator in migrators {
        let store = migrator
            .join()
            .expect("migrator thread")
            .unwrap_or_else(|e| panic!("a concurrent migrator failed: {e}"));
        all_migrations_applied(&store);
    }
    assert_eq!(advisory_locks(&mut raw(db.url()), db.name()), 0);
}

#[test]
fn two_pooled_migrators_serialize_and_both_finish() {
    let db = temp_db();
    let url = pooled_url(&db);
    concurrent_migrators(&db, [(url.clone(), true), (url, true)]);
}

#[test]
fn a_pooled_and_a_direct_migrator_serialize_and_both_finish() {
    let db = temp_db();
    concurrent_migrators(&db, [(pooled_url(&db), true), (db.url().to_owned(), false)]);
}

/// With `DATABASE_MIGRATION_URL`, migrations run over one direct connection to it
/// (here the very server behind the pooler), not through the pool.
#[test]
fn migrations_run_over_the_migration_url() {
    let db = temp_db();
    let mut admin = raw(db.url());
    let mut cfg = config(true);
    cfg.migration_url = Some(db.url().to_owned());
    cfg.postgres.application_name = "topologies-migrator".into();
    let store = open(&pooled_url(&db), &cfg);
    all_migrations_applied(&store);
    assert_eq!(advisory_locks(&mut admin, db.name()), 0);
    // A migration URL that is not PostgreSQL is refused before anything runs.
    cfg.migration_url = Some("mysql://app:s3cret@db/x".into());
    let refused = PostgresStore::connect(&pooled_url(&db), &cfg).expect_err("mysql");
    let text = refused.to_string();
    assert!(matches!(refused, RepoError::Config { .. }), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

// ---------------------------------------------------------------------------------
// Standby and failover
// ---------------------------------------------------------------------------------

fn primary_url() -> String {
    required_env(
        "TEST_PRIMARY_URL",
        "a PostgreSQL primary with a streaming standby (TEST_STANDBY_URL)",
    )
}

fn standby_url() -> String {
    required_env(
        "TEST_STANDBY_URL",
        "a streaming standby of TEST_PRIMARY_URL (pg_basebackup -R)",
    )
}

/// A database created on the primary, once the standby has replayed its creation.
/// Waits until the standby at `standby` has replayed past `position`.
fn wait_for_replay(standby: &str, position: repo_core::WritePosition) {
    #[derive(diesel::QueryableByName)]
    struct Replayed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        done: bool,
    }
    let mut conn = PgConnection::establish(standby).expect("standby connection");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replayed: Replayed =
            diesel::sql_query("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done")
                .bind::<Text, _>(position.to_string())
                .get_result(&mut conn)
                .expect("replay position");
        if replayed.done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not replay {position} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn replicated_db() -> (TempDatabase, String) {
    let db = TempDatabase::create_replicated(&primary_url()).unwrap_or_else(|e| panic!("{e}"));
    let on_standby = db.url_through(&standby_url()).expect("standby URL");
    let deadline = Instant::now() + Duration::from_secs(30);
    while PgConnection::establish(&on_standby).is_err() {
        assert!(
            Instant::now() < deadline,
            "the standby did not replay CREATE DATABASE {} within 30 s",
            db.name()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (db, on_standby)
}

/// Opening a store against a standby fails at once with a `Config` error that says
/// so, with or without migrations.
#[test]
fn opening_against_a_standby_is_a_config_error() {
    let (_db, on_standby) = replicated_db();
    for run_migrations in [true, false] {
        let cfg = StoreConfig {
            run_migrations,
            ..config(false)
        };
        let started = Instant::now();
        let error = PostgresStore::connect(&on_standby, &cfg).expect_err("a standby");
        assert!(
            matches!(&error, RepoError::Config { message } if message.contains("standby")),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// A `DATABASE_MIGRATION_URL` pointing at a standby is refused before migrating.
#[test]
fn a_migration_url_on_a_standby_is_a_config_error() {
    let (db, on_standby) = replicated_db();
    let cfg = StoreConfig {
        migration_url: Some(on_standby),
        ..config(false)
    };
    let error = PostgresStore::connect(db.url(), &cfg).expect_err("a standby");
    assert!(
        matches!(&error, RepoError::Config { message } if message.contains("standby")),
        "{error:?}"
    );
}

/// A multi-host URL listing the standby first reaches the primary with
/// `target_session_attrs=read-write` (libpq tries the hosts in turn).
#[test]
fn a_multi_host_url_with_the_standby_first_reaches_the_primary() {
    let (db, _on_standby) = replicated_db();
    let url = format!(
        "postgres://postgres@{},{}/{}?target_session_attrs=read-write",
        host_port(&standby_url()),
        host_port(&primary_url()),
        db.name()
    );
    let store = open(&url, &config(false));
    let alice = store.users().create(&new_user("alice")).expect("a write");
    assert_eq!(store.users().get(alice.id).expect("read").username, "alice");
}

/// A failover as a client sees it: the address the store uses moves from the primary
/// to a standby (as a virtual IP or a DNS name does). A write on a connection that
/// lands on the standby is `Unavailable { ReadOnly }`, retryable, and that connection
/// is dropped: once the address leads to a primary again the next write succeeds,
/// instead of failing forever on the connection to the demoted server.
#[test]
fn a_write_on_a_standby_is_read_only_and_the_connection_is_dropped() {
    let (db, _on_standby) = replicated_db();
    let primary = host_port(&primary_url());
    let standby = host_port(&standby_url());
    let proxy = switch::Proxy::start(&primary);
    let url = db
        .url_through(&format!("postgres://postgres@{}/postgres", proxy.address))
        .expect("url");
    // One connection at most, opened on demand only (none kept idle): r2d2 would
    // otherwise replace a dropped connection at once, through whatever the address
    // leads to at that moment.
    let cfg = StoreConfig {
        pool: PoolConfig {
            pool_size: 0,
            max_overflow: 1,
            pre_ping_idle: Duration::from_secs(3600),
            connection_timeout: Duration::from_secs(5),
            ..PoolConfig::default()
        },
        ..config(false)
    };
    let store = open(&url, &cfg);
    store
        .users()
        .create(&new_user("alice"))
        .expect("on the primary");
    // The standby must have the schema before the address moves to it (with
    // asynchronous commit the primary sends WAL only once its writer flushes it).
    let position = store.write_position().expect("write position");
    wait_for_replay(&standby_url(), position);

    // The address moves: connections to the old server are cut, new ones reach the
    // standby. The first call may see its connection cut; a later one lands on the
    // standby.
    proxy.switch_to(&standby, true);
    let mut read_only = None;
    for i in 0..5 {
        match store.users().create(&new_user(&format!("bob{i}"))) {
            Err(
                e @ RepoError::Unavailable {
                    reason: UnavailableReason::ReadOnly,
                    ..
                },
            ) => {
                read_only = Some(e);
                break;
            }
            Err(RepoError::Unavailable { .. }) => continue,
            other => panic!("a write through the standby: {other:?}"),
        }
    }
    let read_only = read_only.expect("a write on the standby is Unavailable { ReadOnly }");
    assert!(read_only.is_retryable());
    assert_eq!(
        store.pool_status().open,
        0,
        "the standby's connection was dropped"
    );

    // The address leads to the primary again; existing connections are left alone
    // (none should remain): the next write succeeds at once.
    proxy.switch_to(&primary, false);
    store
        .users()
        .create(&new_user("carol"))
        .expect("a write after the failover, on a fresh connection");
}

/// A TCP forwarder whose upstream the test switches, like a virtual IP moving between
/// servers.
mod switch {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    pub struct Proxy {
        pub address: String,
        upstream: Arc<Mutex<String>>,
        open: Arc<Mutex<Vec<TcpStream>>>,
    }

    impl Proxy {
        pub fn start(upstream: &str) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
            let address = listener.local_addr().expect("proxy address").to_string();
            let upstream = Arc::new(Mutex::new(upstream.to_owned()));
            let open = Arc::new(Mutex::new(Vec::new()));
            let (up, streams) = (Arc::clone(&upstream), Arc::clone(&open));
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let target = up.lock().expect("upstream").clone();
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    for (from, to) in [(&client, &server), (&server, &client)] {
                        if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                            std::thread::spawn(move || forward(from, to));
                        }
                    }
                    let mut held = streams.lock().expect("streams");
                    held.push(client);
                    held.push(server);
                }
            });
            Proxy {
                address,
                upstream,
                open,
            }
        }

        /// New connections go to `upstream` from now on; with `cut`, the open ones
        /// are closed (the old server is gone from this address).
        pub fn switch_to(&self, upstream: &str, cut: bool) {
            *self.upstream.lock().expect("upstream") = upstream.to_owned();
            if cut {
                for stream in self.open.lock().expect("streams").drain(..) {
                    let _ = stream.shutdown(Shutdown::Both);
                }
            }
        }
    }

    fn forward(mut from: TcpStream, mut to: TcpStream) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    }
}
