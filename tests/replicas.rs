//! Read replicas on a real streaming standby (`TEST_PRIMARY_URL`, `TEST_STANDBY_URL`,
//! `TEST_STANDBY_CONTROL`, provisioned by `scripts/test.sh`; never skipped: without
//! them every test fails saying so).
//!
//! The tests share the one standby and some stop it or pause its replay, so they run
//! one at a time (a lock in this binary).

use diesel::{Connection, PgConnection, RunQueryDsl};
use repo_core::{
    NewUser, NodeHealth, NodeRole, ReplicaConfig, RepoError, Repositories, Store, StoreConfig,
    User, UserId,
};
use repo_postgres::testing::{wait_until_connectable, TempDatabase};
use repo_postgres::PostgresStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

static STANDBY: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    STANDBY.lock().unwrap_or_else(|p| p.into_inner())
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which provisions a streaming replica")
    })
}

/// A database on the primary, its URL on the replica, and a store using both.
struct Replicated {
    store: Arc<PostgresStore>,
    replica_url: String,
    _db: TempDatabase,
}

fn replicated(max_lag: Duration) -> Replicated {
    let db = TempDatabase::create_replicated(&env("TEST_PRIMARY_URL")).expect("temporary database");
    let replica_url = db
        .url_through(&env("TEST_STANDBY_URL"))
        .expect("replica URL");
    wait_until_connectable(&replica_url, Duration::from_secs(120)).expect("database on replica");
    let config = StoreConfig {
        replicas: ReplicaConfig {
            urls: vec![replica_url.clone()],
            max_lag,
        },
        ..StoreConfig::default()
    };
    let store = PostgresStore::connect(db.url(), &config).expect("connect with a replica");
    Replicated {
        store: Arc::new(store),
        replica_url,
        _db: db,
    }
}

fn new_user(repos: &(impl Repositories + ?Sized), name: &str) -> User {
    repos
        .users()
        .create(&NewUser::new(
            name,
            format!("{name}@example.com"),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        ))
        .expect("create user")
}

fn replica_reads(store: &dyn Store) -> u64 {
    let nodes = store.nodes();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert_eq!(nodes[1].role, NodeRole::Replica);
    nodes[1].routed_reads
}

fn replica_health(store: &dyn Store) -> NodeHealth {
    store.nodes()[1].health
}

/// Waits until `check` holds, at most `timeout`.
fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a stale-tolerant read of `user` is served by the replica (the primary
/// answers while the replica has not replayed it, or lags).
fn served_by_the_replica(store: &dyn Store, user: UserId) {
    eventually(Duration::from_secs(60), "the replica serves reads", || {
        let before = replica_reads(store);
        store.replica().users().get(user).is_ok() && replica_reads(store) > before
    });
}

/// Reads through the stale-tolerant view are served by the replica; writes, units of
/// work and plain reads by the primary; a replica URL that names a primary is refused.
#[test]
fn stale_tolerant_reads_go_to_the_replica_and_writes_to_the_primary() {
    let _serial = one_at_a_time();
    // A generous lag bound: this test is about where reads go, not about lag.
    let r = replicated(Duration::from_secs(10));
    let store: &dyn Store = &*r.store;
    let user = new_user(store, "alice");
    served_by_the_replica(store, user.id);
    let before = replica_reads(store);
    for _ in 0..20 {
        assert_eq!(store.replica().users().get(user.id).unwrap().id, user.id);
    }
    assert_eq!(
        replica_reads(store),
        before + 20,
        "every view read on the replica"
    );

    // A write through the view, a unit of work and plain reads: none on the replica.
    let before = replica_reads(store);
    let bob = new_user(&*store.replica(), "bob");
    store
        .transaction(|tx| tx.users().record_login(bob.id))
        .expect("unit of work");
    store.users().get(bob.id).expect("plain read");
    store
        .replica()
        .users()
        .record_login(bob.id)
        .expect("write through the view");
    assert_eq!(
        replica_reads(store),
        before,
        "a write or plain read hit the replica"
    );

    // The replica really is a standby: connecting to it shows recovery.
    let mut direct = PgConnection::establish(&r.replica_url).expect("replica connection");
    #[derive(diesel::QueryableByName)]
    struct Recovery {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        r: bool,
    }
    let recovery: Recovery = diesel::sql_query("SELECT pg_is_in_recovery() AS r")
        .get_result(&mut direct)
        .unwrap();
    assert!(recovery.r);

    // A "replica" URL that points at a primary is a configuration error.
    let wrong = StoreConfig {
        replicas: ReplicaConfig {
            urls: vec![env("TEST_PRIMARY_URL")],
            ..ReplicaConfig::default()
        },
        ..StoreConfig::default()
    };
    let err = PostgresStore::connect(&env("TEST_PRIMARY_URL"), &wrong).unwrap_err();
    assert!(
        matches!(&err, RepoError::Config { message } if message.contains("points at a primary")),
        "{err:?}"
    );
}

/// Read-your-writes under load: threads each write and take the position; every
/// round reads the newest write and three older ones (as later requests carrying their
/// tokens would) through `read_after`: never a miss in 10,000 reads, while a share of
/// them is served by the replica. The same fresh reads through the stale-tolerant view
/// do miss, which shows the test exercises replication lag and not luck.
#[test]
fn read_after_never_misses_a_covered_write_under_load() {
    let _serial = one_at_a_time();
    let r = replicated(Duration::from_secs(5));
    const THREADS: usize = 4;
    const ROUNDS: usize = 625;
    const READS_PER_ROUND: usize = 4; // 4 × 625 × 4 = 10,000 reads
    let misses = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    let before = replica_reads(&*r.store);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (store, misses, reads) = (&r.store, &misses, &reads);
            scope.spawn(move || {
                let store: &dyn Store = &**store;
                // (user, position as text) of this thread's writes.
                let mut written: Vec<(UserId, String)> = Vec::new();
                for round in 0..ROUNDS {
                    let user = new_user(store, &format!("u{t}x{round}"));
                    let position = store.write_position().expect("position");
                    written.push((user.id, position.to_string()));
                    let picks = (0..READS_PER_ROUND).map(|i| {
                        if i == 0 {
                            written.len() - 1
                        } else {
                            rand::random_range(0..written.len())
                        }
                    });
                    for pick in picks {
                        let (id, token) = &written[pick];
                        let position = token.parse().expect("parse position");
                        match store.read_after(&position).users().get(*id) {
                            Ok(u) => assert_eq!(u.id, *id),
                            Err(RepoError::NotFound { .. }) => {
                                misses.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("read_after failed: {e}"),
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let routed = replica_reads(&*r.store) - before;
    let reads = reads.load(Ordering::Relaxed);
    assert_eq!(reads, 10_000);
    assert_eq!(
        misses.load(Ordering::Relaxed),
        0,
        "read_after missed a covered write"
    );
    assert!(
        routed >= 1_000,
        "only {routed} of the read_after reads were served by the replica: the test did not exercise it"
    );

    // The stale-tolerant view straight after a write: misses happen.
    let mut stale_misses = 0;
    for round in 0..200 {
        let user = new_user(&*r.store, &format!("s{round}"));
        if let Err(RepoError::NotFound { .. }) = r.store.replica().users().get(user.id) {
            stale_misses += 1;
        }
    }
    assert!(
        stale_misses > 0,
        "no stale-view read missed a fresh write: the test did not exercise replication lag"
    );
    eprintln!(
        "read_after: {reads} reads, 0 misses, {routed} served by the replica; \
         stale view: {stale_misses} misses of 200 reads straight after a write"
    );
}

/// Runs the standby control script (`stop` or `start`).
fn control(action: &str) {
    let script = env("TEST_STANDBY_CONTROL");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(action)
        .status()
        .unwrap_or_else(|e| panic!("{script} {action}: {e}"));
    assert!(status.success(), "{script} {action}: {status}");
}

/// Restarts the standby when dropped, so a failing test leaves it running.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        control("start");
    }
}

/// The replica stopped mid-run: reads through both views fall back to the primary
/// with no error; once it is back, it serves reads again.
#[test]
fn a_stopped_replica_falls_back_to_the_primary_and_is_used_again() {
    let _serial = one_at_a_time();
    let r = replicated(Duration::from_secs(1));
    let store: &dyn Store = &*r.store;
    let user = new_user(store, "alice");
    served_by_the_replica(store, user.id);
    let restart = StartOnDrop;
    control("stop");
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let got = store.replica().users().get(user.id);
        assert_eq!(got.expect("stale view with the replica down").id, user.id);
        let position = store.write_position().expect("position");
        let got = store.read_after(&position).users().get(user.id);
        assert_eq!(got.expect("read_after with the replica down").id, user.id);
        reads += 2;
    }
    assert!(reads > 10);
    assert_eq!(
        replica_health(store),
        NodeHealth::Down,
        "{:?}",
        store.nodes()
    );
    let down_reads = replica_reads(store);
    drop(restart); // starts it again
    eventually(
        Duration::from_secs(40),
        "the restarted replica serves reads again",
        || {
            let _ = store.replica().users().get(user.id).expect("read");
            replica_reads(store) > down_reads
        },
    );
}

/// Resumes replay on the standby when dropped.
struct ResumeOnDrop(String);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.0) {
            let _ = diesel::sql_query("SELECT pg_wal_replay_resume()").execute(&mut conn);
        }
    }
}

/// Replay paused (lag grows past the bound): the stale-tolerant view skips the replica,
/// and `read_after` a new write goes to the primary and sees it.
#[test]
fn a_lagging_replica_is_skipped() {
    let _serial = one_at_a_time();
    let r = replicated(Duration::from_millis(300));
    let store: &dyn Store = &*r.store;
    let user = new_user(store, "alice");
    served_by_the_replica(store, user.id);
    let mut standby = PgConnection::establish(&r.replica_url).expect("standby connection");
    diesel::sql_query("SELECT pg_wal_replay_pause()")
        .execute(&mut standby)
        .expect("pause replay");
    let _resume = ResumeOnDrop(r.replica_url.clone());
    // Keep writing so WAL waits for replay and the lag grows past the bound.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut written = 0;
    let newest = loop {
        written += 1;
        let u = new_user(store, &format!("w{written}"));
        std::thread::sleep(Duration::from_millis(50));
        let _ = store.replica().users().get(user.id);
        if replica_health(store) == NodeHealth::Lagging {
            break u.id;
        }
        assert!(
            Instant::now() < deadline,
            "the paused replica never counted as lagging: {:?}",
            store.nodes()
        );
    };
    let before = replica_reads(store);
    for _ in 0..20 {
        store
            .replica()
            .users()
            .get(user.id)
            .expect("stale view read");
    }
    assert_eq!(
        replica_reads(store),
        before,
        "the lagging replica still got reads"
    );
    let position = store.write_position().expect("position");
    let read = store.read_after(&position).users().get(newest);
    assert_eq!(
        read.expect("read_after a write the replica has not replayed")
            .id,
        newest
    );
    assert_eq!(
        replica_reads(store),
        before,
        "read_after used a replica that is behind"
    );
}
