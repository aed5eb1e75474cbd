//! A real network partition between the store and PostgreSQL: calls fail with
//! `Unavailable` within the bound that the URL's deadlines give
//! (docs/postgres.md, "Deadlines"), never hang, and succeed again once the network
//! is back.
//!
//! The store reaches the server of `TEST_DATABASE_URL` through a loopback TCP proxy
//! (`repo_postgres::testing::TcpProxy`). A proxy that merely stops copying bytes does
//! not partition TCP (its kernel keeps acknowledging and answering keepalives, and
//! libpq would wait forever), so the partition drops every packet to and from the
//! proxy's port with nftables (`nft`, as root). Only that port is affected: the
//! proxy's own connection to the server, and every other test, keep working.

use repo_core::{
    NewCollection, NewUser, PgHost, PoolConfig, PostgresConfig, PostgresUrl, RepoError, RepoResult,
    Repositories, Store, StoreConfig, UnavailableReason,
};
use repo_postgres::testing::{TcpProxy, TempDatabase};
use repo_postgres::PostgresStore;
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

/// Deadlines small enough for a test, written into the URL like any override.
const KEEPALIVES_IDLE_S: u64 = 1;
const KEEPALIVES_INTERVAL_S: u64 = 1;
const KEEPALIVES_COUNT: u64 = 2;
const TCP_USER_TIMEOUT_MS: u64 = 3000;
const CONNECT_TIMEOUT_S: u64 = 2;
/// The pool's checkout wait (`DB_POOL_TIMEOUT`).
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a dead peer takes to be noticed on an open connection: the documented
/// formula, max(tcp_user_timeout, keepalives_idle + keepalives_interval × count).
fn dead_peer_bound() -> Duration {
    Duration::from_millis(TCP_USER_TIMEOUT_MS).max(Duration::from_secs(
        KEEPALIVES_IDLE_S + KEEPALIVES_INTERVAL_S * KEEPALIVES_COUNT,
    ))
}

/// Scheduling and timer slack on a busy 2-core machine: a hang exceeds it by far.
const MARGIN: Duration = Duration::from_secs(4);

/// Drops every packet to and from a TCP port on this host while it lives (an nftables
/// table of its own, deleted on drop, also when the test panics).
struct Partition {
    table: String,
}

fn nft(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new("nft").args(args).output()
}

impl Partition {
    fn start(port: u16) -> Partition {
        let table = format!("smtk_partition_{port}");
        let rules = format!(
            "table inet {table} {{\n\
               chain out {{\n\
                 type filter hook output priority 0; policy accept;\n\
                 tcp dport {port} drop\n\
                 tcp sport {port} drop\n\
               }}\n\
             }}\n"
        );
        let file = std::env::temp_dir().join(format!("{table}.nft"));
        std::fs::write(&file, rules).unwrap_or_else(|e| panic!("writing {file:?}: {e}"));
        let path = file.to_string_lossy().into_owned();
        let out = match nft(&["-f", &path]) {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("the partition test needs nftables (`nft`): apt-get install nftables")
            }
            Err(e) => panic!("running nft: {e}"),
        };
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "nft could not add the partition (the test runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Partition { table }
    }

    fn exists(table: &str) -> bool {
        nft(&["list", "table", "inet", table]).is_ok_and(|o| o.status.success())
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Ok(out) = nft(&["delete", "table", "inet", &self.table]) {
            if !out.status.success() {
                eprintln!(
                    "could not delete nft table {}: {}",
                    self.table,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// Runs `call` on its own thread; returns its result and duration, or `None` if it
/// has not returned after `limit` (it hangs: the thread is left behind).
fn timed<T: Send + 'static>(
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> impl FnOnce() -> Option<(T, Duration)> {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let out = call();
        let _ = tx.send((out, started.elapsed()));
    });
    move || {
        rx.recv_timeout(limit.saturating_sub(started.elapsed()))
            .ok()
    }
}

fn assert_unavailable<T: std::fmt::Debug>(
    what: &str,
    outcome: Option<(RepoResult<T>, Duration)>,
    bound: Duration,
    expected: Option<UnavailableReason>,
) {
    let Some((result, took)) = outcome else {
        panic!("{what} still had not returned after {bound:?} + margin: it hangs");
    };
    match &result {
        Err(RepoError::Unavailable { reason, .. }) => {
            eprintln!("{what}: {reason} after {took:?}");
            if let Some(expected) = expected {
                assert_eq!(*reason, expected, "{what}: {result:?}");
            }
        }
        other => panic!("{what}: expected Unavailable, got {other:?} after {took:?}"),
    }
    assert!(result.as_ref().is_err_and(RepoError::is_retryable));
    assert!(
        took <= bound + MARGIN,
        "{what} took {took:?}, bound {bound:?}"
    );
}

#[test]
fn partition_fails_calls_within_the_deadline_bound_then_recovers() {
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let parsed = PostgresUrl::parse(db.url()).unwrap_or_else(|e| panic!("{e}"));
    let server = parsed.hosts().remove(0);
    let upstream = format!("{}:{}", server.host, server.port.unwrap_or(5432));
    let proxy = TcpProxy::start(&upstream).unwrap_or_else(|e| panic!("proxy: {e}"));
    let port = proxy.address().port();
    let url = parsed
        .clone()
        .with_hosts(&[PgHost {
            host: "127.0.0.1".into(),
            port: Some(port),
        }])
        .with_param("sslmode", "disable")
        .with_param("keepalives_idle", &KEEPALIVES_IDLE_S.to_string())
        .with_param("keepalives_interval", &KEEPALIVES_INTERVAL_S.to_string())
        .with_param("keepalives_count", &KEEPALIVES_COUNT.to_string())
        .with_param("tcp_user_timeout", &TCP_USER_TIMEOUT_MS.to_string())
        .with_param("connect_timeout", &CONNECT_TIMEOUT_S.to_string())
        .to_url();
    let config = StoreConfig {
        pool: PoolConfig {
            // Several idle connections: none may add its own wait to a new call's
            // (their keepalives notice the dead peer; a failed test condemns the rest).
            pool_size: 6,
            max_overflow: 2,
            connection_timeout: POOL_TIMEOUT,
            ..PoolConfig::default()
        },
        // Long server-side limits: only the client-side deadlines may end the calls.
        postgres: PostgresConfig {
            statement_timeout: Duration::from_secs(120),
            lock_timeout: Duration::from_secs(120),
            ..PostgresConfig::default()
        },
        ..StoreConfig::default()
    };
    let store = PostgresStore::connect(&url, &config).unwrap_or_else(|e| panic!("{e}"));
    store
        .users()
        .create(&NewUser::new("before", "before@example.com", HASH))
        .unwrap_or_else(|e| panic!("{e}"));

    let store: Arc<dyn Store> = Arc::new(store);
    let owner = store
        .users()
        .create(&NewUser::new("owner", "owner@example.com", HASH))
        .unwrap_or_else(|e| panic!("{e}"));
    let collection = store
        .collections()
        .create(&NewCollection::new("docs", owner.id))
        .unwrap_or_else(|e| panic!("{e}"))
        .id;

    // A call in flight when the network goes: it waits on the server for a row lock
    // that a unit of work on a direct connection (not through the proxy) holds.
    let direct: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(
            db.url(),
            &StoreConfig {
                run_migrations: false,
                ..config.clone()
            },
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        direct.transaction(|tx| {
            tx.lock_collection(collection)?;
            let _ = locked_tx.send(());
            let _ = release_rx.recv_timeout(Duration::from_secs(50));
            Ok(())
        })
    });
    locked_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("the direct unit of work did not take the lock: {e}"));
    let in_flight_store = Arc::clone(&store);
    let in_flight = timed(
        dead_peer_bound() + Duration::from_secs(1) + MARGIN,
        move || in_flight_store.transaction(|tx| tx.lock_collection(collection).map(|c| c.id)),
    );
    // Let it reach the server and wait there.
    std::thread::sleep(Duration::from_secs(1));

    let partition = Partition::start(port);
    assert!(Partition::exists(&partition.table));
    let new_store = Arc::clone(&store);
    let new_call_bound = POOL_TIMEOUT + dead_peer_bound();
    let new_call = timed(new_call_bound + MARGIN, move || {
        new_store.users().count(Default::default())
    });
    // The in-flight call was last heard from just before the partition (it was sent
    // and acknowledged a second earlier), so its bound counts from there.
    assert_unavailable(
        "the call in flight",
        in_flight(),
        dead_peer_bound() + Duration::from_secs(1),
        // "could not receive data from server: Connection timed out"
        Some(UnavailableReason::Timeout),
    );
    // Depending on where the deadline strikes: a timed-out pre-ping then no
    // connection within the pool's wait, a timeout, or a closed connection.
    assert_unavailable("a new call", new_call(), new_call_bound, None);

    let _ = release_tx.send(());
    locker
        .join()
        .expect("locker thread")
        .unwrap_or_else(|e| panic!("the direct unit of work: {e}"));
    let table = partition.table.clone();
    drop(partition);
    assert!(!Partition::exists(&table), "the nft table is removed");

    // The pool replaces the dead connections: calls succeed again.
    let healed = Instant::now();
    let mut last = None;
    while healed.elapsed() < Duration::from_secs(20) {
        match store.users().count(Default::default()) {
            Ok(n) => {
                last = Some(Ok(n));
                break;
            }
            Err(e) => {
                last = Some(Err(e));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    match last {
        Some(Ok(2)) => {}
        other => panic!("no recovery within 20 s after the partition: {other:?}"),
    }
    for _ in 0..5 {
        assert_eq!(store.users().count(Default::default()).unwrap(), 2);
    }
}
