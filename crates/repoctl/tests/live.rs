//! Online migration (`repoctl live`) while writers keep using the library's store:
//! SQLite → PostgreSQL and back, the maintenance pause, a failed verification that
//! lifts the pause, abort, and a replay killed with SIGKILL. Throwaway PostgreSQL
//! databases on `TEST_DATABASE_URL` (set by scripts/test.sh).

use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use repo_core::{
    CollectionId, NewChunk, NewCollection, NewDocument, NewUser, RepoError, Store, StoreConfig,
    UnavailableReason, UserPatch,
};
use repo_postgres::testing::TempDatabase;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::{demo, expect_code, path_in, pg, repoctl, text, BIN};

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

fn open(url: &str) -> Arc<dyn Store> {
    repo_factory::open(url, &StoreConfig::default()).expect("open store")
}

/// A SQLite source filled by `demo-data`, in a temporary directory (kept alive by the
/// first value), and an empty PostgreSQL target.
fn sqlite_source(scale: &str, chunks: &str) -> (tempfile::TempDir, String, TempDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let src = path_in(dir.path(), "app.db");
    demo(&src, scale, chunks);
    (dir, src, pg())
}

/// `repoctl live start` from `old` to `new`, expected to succeed.
fn live_start(old: &str, new: &str) {
    expect_code(
        &repoctl(&["live", "start", "--from", old, "--to", new, "--no-progress"]),
        0,
    );
}

/// `repoctl live cutover` from `old` to `new`.
fn cutover(old: &str, new: &str) -> std::process::Output {
    repoctl(&[
        "live",
        "cutover",
        "--from",
        old,
        "--to",
        new,
        "--no-progress",
    ])
}

fn is_maintenance(e: &RepoError) -> bool {
    matches!(
        e,
        RepoError::Unavailable {
            reason: UnavailableReason::Maintenance,
            ..
        }
    )
}

/// What one writer saw acknowledged: its users (full name, or `None` once deleted)
/// and its documents with their chunk count.
#[derive(Default, Debug)]
struct Acked {
    users: HashMap<String, Option<String>>,
    documents: Vec<(repo_core::DocumentId, u64)>,
    /// Writes refused with `Unavailable { Maintenance }`.
    paused: u64,
    /// Writes acknowledged by the new database.
    after_switch: u64,
}

/// Writers that use the store of `old` until a write gets `Maintenance` after
/// `switched` is set, then the store of `new`: how an application behaves when its
/// `DATABASE_URL` is switched.
struct Writers {
    stop: Arc<AtomicBool>,
    switched: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    handles: Vec<std::thread::JoinHandle<Acked>>,
}

impl Writers {
    fn spawn(old: &str, new: &str, collection: CollectionId, n: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let switched = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let handles = (0..n)
            .map(|w| {
                let (stop, switched, ops) = (stop.clone(), switched.clone(), ops.clone());
                let (old, new) = (old.to_string(), new.to_string());
                std::thread::spawn(move || {
                    write_loop(w, &old, &new, collection, &stop, &switched, &ops)
                })
            })
            .collect();
        Writers {
            stop,
            switched,
            ops,
            handles,
        }
    }

    /// Waits until the writers have acknowledged `n` more writes.
    fn wait_ops(&self, n: u64) {
        let target = self.ops.load(Ordering::SeqCst) + n;
        let started = Instant::now();
        while self.ops.load(Ordering::SeqCst) < target {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "writers stalled"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::SeqCst);
        self.handles
            .into_iter()
            .map(|h| h.join().expect("writer panicked"))
            .collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn write_loop(
    w: usize,
    old: &str,
    new: &str,
    collection: CollectionId,
    stop: &AtomicBool,
    switched: &AtomicBool,
    ops: &AtomicU64,
) -> Acked {
    let mut store = open(old);
    let mut on_new = false;
    let mut acked = Acked::default();
    let mut mine: Vec<String> = Vec::new();
    let mut i = 0u64;
    // After the switch each writer does a few writes on the new database, then stops
    // with the others.
    loop {
        if stop.load(Ordering::SeqCst)
            && (!switched.load(Ordering::SeqCst) || (on_new && acked.after_switch >= 5))
        {
            break;
        }
        i += 1;
        let step = i % 5;
        let result: Result<(), RepoError> = (|| {
            match step {
                // Insert a user.
                0 | 1 => {
                    let name = format!("w{w}_{i}");
                    store.users().create(&NewUser::new(
                        &name,
                        format!("{name}@example.com"),
                        HASH,
                    ))?;
                    acked.users.insert(name.clone(), Some(String::new()));
                    mine.push(name);
                }
                // Update one of this writer's users.
                2 => {
                    if let Some(name) = mine.last() {
                        let u = store.users().get_by_username(name)?;
                        let full = format!("Full {w} {i}");
                        store.users().update(
                            u.id,
                            &UserPatch {
                                full_name: Some(Some(full.clone())),
                                ..UserPatch::default()
                            },
                        )?;
                        acked.users.insert(name.clone(), Some(full));
                    }
                }
                // Delete one of this writer's users.
                3 => {
                    if mine.len() > 2 {
                        let name = mine.remove(0);
                        let u = store.users().get_by_username(&name)?;
                        store
                            .users()
                            .delete(u.id, repo_core::DeleteMode::Restrict)?;
                        acked.users.insert(name, None);
                    }
                }
                // A unit of work: a document and its chunks, atomically.
                _ => {
                    let hash = format!("{:064x}", (w as u64) << 40 | i);
                    let doc = store.transaction(|tx| {
                        let d = tx
                            .documents()
                            .register(&NewDocument::new(
                                collection,
                                format!("/w{w}/{i}.txt"),
                                format!("{i}.txt"),
                                10,
                                hash.clone(),
                            ))?
                            .document;
                        let chunks: Vec<NewChunk> = (0..3)
                            .map(|k| NewChunk::new(d.id, k, format!("chunk {k} of {i} by {w}")))
                            .collect();
                        tx.chunks().insert_many(collection, &chunks)?;
                        Ok(d)
                    })?;
                    acked.documents.push((doc.id, 3));
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                ops.fetch_add(1, Ordering::SeqCst);
                if on_new {
                    acked.after_switch += 1;
                }
            }
            Err(e) if is_maintenance(&e) => {
                assert!(!on_new, "the new database refused a write: {e}");
                acked.paused += 1;
                if switched.load(Ordering::SeqCst) {
                    store = open(new);
                    on_new = true;
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Err(e) if e.is_retryable() => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("writer {w} step {step}: {e}"),
        }
    }
    acked
}

/// Every acknowledged write of every writer is in `store`.
fn assert_all_present(store: &Arc<dyn Store>, acked: &[Acked]) {
    let mut users = 0;
    for a in acked {
        for (name, full) in &a.users {
            match (store.users().get_by_username(name), full) {
                (Ok(u), Some(f)) => {
                    users += 1;
                    if !f.is_empty() {
                        assert_eq!(u.full_name.as_deref(), Some(f.as_str()), "{name}");
                    }
                }
                (Err(RepoError::NotFound { .. }), None) => {}
                (got, want) => panic!("user {name}: expected {want:?}, got {got:?}"),
            }
        }
        for (id, n) in &a.documents {
            let doc = store.documents().get(*id).expect("acknowledged document");
            let chunks = store
                .chunks()
                .list_by_document(doc.id, repo_core::PageRequest::new(0, 100))
                .expect("chunks");
            assert_eq!(chunks.items.len() as u64, *n, "chunks of {id}");
        }
    }
    assert!(users > 0, "the writers acknowledged no user");
}

/// A user and a collection for the writers.
fn seed(url: &str) -> CollectionId {
    let store = open(url);
    let owner = store
        .users()
        .create(&NewUser::new("live_owner", "live_owner@example.com", HASH))
        .expect("owner");
    let c = store
        .collections()
        .create(&NewCollection::new("live collection", owner.id))
        .expect("collection");
    c.id
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Every object of a SQLite database: type, name and SQL.
fn sqlite_schema(path: &str) -> Vec<String> {
    let mut c = SqliteConnection::establish(path).expect("open");
    diesel::sql_query(
        "SELECT type || ' ' || name || ' ' || coalesce(sql, '') AS name FROM sqlite_master \
         ORDER BY type, name",
    )
    .load::<Name>(&mut c)
    .expect("schema")
    .into_iter()
    .map(|r| r.name)
    .collect()
}

/// repoctl's objects (tables, triggers, functions) in a PostgreSQL database.
fn pg_repoctl_objects(url: &str) -> Vec<String> {
    let mut c = PgConnection::establish(url).expect("connect");
    diesel::sql_query(
        "SELECT relname::text AS name FROM pg_class WHERE relname LIKE '\\_repoctl%' \
         UNION ALL SELECT tgname::text FROM pg_trigger WHERE tgname LIKE '\\_repoctl%' \
         UNION ALL SELECT proname::text FROM pg_proc WHERE proname LIKE '\\_repoctl%'",
    )
    .load::<Name>(&mut c)
    .expect("catalog")
    .into_iter()
    .map(|r| r.name)
    .collect()
}

/// Runs a whole live migration from `old` to `new` with writers on, and checks what
/// the issue asks: acknowledged writes all in `new`, equal checksums, writes in the
/// pause refused with the retryable error and succeeding on `new` after the switch.
fn migrate_under_load(old: &str, new: &str) {
    let collection = seed(old);
    let writers = Writers::spawn(old, new, collection, 3);
    writers.wait_ops(30);
    live_start(old, new);
    writers.wait_ops(60);
    let out = repoctl(&["live", "sync", "--from", old, "--to", new]);
    expect_code(&out, 0);
    assert!(text(&out).contains("lag:"), "{}", text(&out));
    writers.wait_ops(60);
    let out = cutover(old, new);
    expect_code(&out, 0);
    let t = text(&out);
    assert!(t.contains("switch DATABASE_URL now"), "{t}");
    assert!(t.contains("write pause:"), "{t}");
    // Nobody writes to `new` yet and `old` is paused: both must be equal now.
    let out = repoctl(&["verify", "--from", old, "--to", new, "--no-progress"]);
    expect_code(&out, 0);
    let status = repoctl(&["live", "status", "--from", old]);
    assert!(text(&status).contains("paused"), "{}", text(&status));
    // The switch: each writer moves on at its next refused write.
    writers.switched.store(true, Ordering::SeqCst);
    writers.wait_ops(30);
    let acked = writers.finish();
    for (w, a) in acked.iter().enumerate() {
        assert!(a.paused > 0, "writer {w} never saw the maintenance error");
        assert!(
            a.after_switch > 0,
            "writer {w} wrote nothing after the switch"
        );
    }
    assert_all_present(&open(new), &acked);
    // Stragglers on the old URL still get the retryable error.
    let err = open(old)
        .users()
        .create(&NewUser::new("late", "late@example.com", HASH))
        .expect_err("the old database stays paused");
    assert!(is_maintenance(&err) && err.is_retryable(), "{err}");
}

#[test]
fn sqlite_to_postgres_under_writers() {
    let (_dir, src, db) = sqlite_source("2", "10");
    migrate_under_load(&src, db.url());
    // Capture is gone from the old database; only the pause triggers stay.
    let schema = sqlite_schema(&src);
    assert!(!schema.iter().any(|s| s.contains("_repoctl_capture")));
    assert!(!schema.iter().any(|s| s.contains("_repoctl_changes")));
    assert!(schema.iter().any(|s| s.contains("_repoctl_pause")));
    // Abort on the old database lifts the pause: it takes writes again.
    expect_code(&repoctl(&["live", "abort", "--from", &src]), 0);
    assert!(!sqlite_schema(&src).iter().any(|s| s.contains("_repoctl")));
    open(&src)
        .users()
        .create(&NewUser::new("back", "back@example.com", HASH))
        .expect("writes resume after abort");
}

#[test]
fn postgres_to_sqlite_fallback_under_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = pg();
    demo(db.url(), "1", "10");
    let back = path_in(dir.path(), "back.db");
    migrate_under_load(db.url(), &back);
    let objects = pg_repoctl_objects(db.url());
    assert!(
        objects.iter().all(|o| o.starts_with("_repoctl_pause")),
        "{objects:?}"
    );
    expect_code(&repoctl(&["live", "abort", "--from", db.url()]), 0);
    assert_eq!(pg_repoctl_objects(db.url()), Vec::<String>::new());
}

#[test]
fn abort_leaves_the_source_as_it_was_apart_from_written_rows() {
    let (_dir, src, db) = sqlite_source("1", "5");
    let before = sqlite_schema(&src);
    let collection = seed(&src);
    let writers = Writers::spawn(&src, db.url(), collection, 2);
    live_start(&src, db.url());
    writers.wait_ops(40);
    let during = sqlite_schema(&src);
    assert!(during.iter().any(|s| s.contains("_repoctl_changes")));
    let out = repoctl(&["live", "abort", "--from", &src]);
    expect_code(&out, 0);
    assert!(text(&out).contains("removed"), "{}", text(&out));
    writers.wait_ops(20);
    let acked = writers.finish();
    assert_eq!(sqlite_schema(&src), before);
    // Writes went on undisturbed, into the source.
    assert_all_present(&open(&src), &acked);
    assert!(acked.iter().all(|a| a.paused == 0));
    // Nothing to abort a second time; sync without start is a clear error.
    let out = repoctl(&["live", "abort", "--from", &src]);
    expect_code(&out, 0);
    assert!(text(&out).contains("nothing"), "{}", text(&out));
    let out = repoctl(&["live", "sync", "--from", &src, "--to", db.url()]);
    expect_code(&out, 6);
    assert!(text(&out).contains("live start"), "{}", text(&out));
}

#[test]
fn a_failed_verification_lifts_the_pause_and_loses_nothing() {
    let (_dir, src, db) = sqlite_source("1", "5");
    live_start(&src, db.url());
    // Someone writes into the target behind repoctl's back.
    open(db.url())
        .users()
        .create(&NewUser::new("intruder", "intruder@example.com", HASH))
        .expect("write to target");
    let out = cutover(&src, db.url());
    expect_code(&out, 5);
    let t = text(&out);
    assert!(
        t.contains("cutover abandoned") && t.contains("MISMATCH"),
        "{t}"
    );
    assert!(!t.contains("switch DATABASE_URL now"), "{t}");
    // Writes go on with the source, and are still captured.
    let store = open(&src);
    store
        .users()
        .create(&NewUser::new("after", "after@example.com", HASH))
        .expect("the pause was lifted");
    let status = text(&repoctl(&["live", "status", "--from", &src]));
    assert!(
        status.contains("writes: allowed") && status.contains("capture: on"),
        "{status}"
    );
    // Repair the target, then the cutover succeeds with the write made in between.
    let mut c = PgConnection::establish(db.url()).unwrap();
    diesel::sql_query("DELETE FROM users WHERE username = 'intruder'")
        .execute(&mut c)
        .unwrap();
    expect_code(&cutover(&src, db.url()), 0);
    open(db.url())
        .users()
        .get_by_username("after")
        .expect("the write made after the failed cutover");
}

#[test]
fn sync_killed_with_sigkill_then_resumed_loses_nothing() {
    let (_dir, src, db) = sqlite_source("1", "5");
    let collection = seed(&src);
    live_start(&src, db.url());
    // Many changes after the snapshot: chunks, updates, deletes.
    let store = open(&src);
    for d in 0..40 {
        let doc = store
            .documents()
            .register(&NewDocument::new(
                collection,
                format!("/k/{d}"),
                format!("{d}"),
                1,
                format!("{:064x}", 0xabc000 + d),
            ))
            .unwrap()
            .document;
        let chunks: Vec<NewChunk> = (0..100)
            .map(|k| NewChunk::new(doc.id, k, format!("text {d} {k}")))
            .collect();
        store.chunks().insert_many(collection, &chunks).unwrap();
        if d % 4 == 0 {
            store.documents().delete(doc.id).unwrap();
        }
    }
    let pending = || {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = SqliteConnection::establish(&src).unwrap();
        diesel::sql_query("SELECT count(*) AS n FROM _repoctl_changes")
            .load::<N>(&mut c)
            .unwrap()[0]
            .n
    };
    let initial = pending();
    assert!(initial > 4000, "{initial}");
    let mut child = Command::new(BIN)
        .args([
            "live",
            "sync",
            "--from",
            &src,
            "--to",
            db.url(),
            "--batch-size",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while pending() > initial - 200 {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        assert!(child.try_wait().unwrap().is_none(), "sync ended too early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let left = pending();
    assert!(
        left > 0 && left < initial,
        "killed mid-way: {left} of {initial}"
    );
    let out = repoctl(&["live", "sync", "--from", &src, "--to", db.url()]);
    expect_code(&out, 0);
    let out = cutover(&src, db.url());
    expect_code(&out, 0);
    assert!(text(&out).contains("equal"), "{}", text(&out));
}

#[test]
fn start_dry_run_installs_nothing_and_a_second_start_is_refused() {
    let (_dir, src, db) = sqlite_source("1", "2");
    let before = sqlite_schema(&src);
    let out = repoctl(&[
        "live",
        "start",
        "--from",
        &src,
        "--to",
        db.url(),
        "--dry-run",
    ]);
    expect_code(&out, 0);
    assert!(
        text(&out).contains("would install change capture"),
        "{}",
        text(&out)
    );
    assert_eq!(sqlite_schema(&src), before);
    live_start(&src, db.url());
    let out = repoctl(&[
        "live",
        "start",
        "--from",
        &src,
        "--to",
        db.url(),
        "--truncate",
    ]);
    expect_code(&out, 6);
    assert!(text(&out).contains("already running"), "{}", text(&out));
}
