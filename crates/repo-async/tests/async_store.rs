//! The async handle on both backends: async open, concurrency past the pool size,
//! dropped futures, and the caller's span on the blocking thread.

use repo_async::AsyncStore;
use repo_core::{NewUser, RepoError, RepoResult, StoreConfig};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// Fails the test instead of hanging when something deadlocks.
const DEADLINE: Duration = Duration::from_secs(120);

fn new_user(name: &str) -> NewUser {
    NewUser::new(name, format!("{name}@example.com"), HASH)
}

/// A small pool (max 2 connections) so that a test can go past it.
fn small_pool() -> StoreConfig {
    let mut config = StoreConfig::default();
    config.pool.pool_size = 1;
    config.pool.max_overflow = 1;
    config
}

/// Waits (asynchronously) until every slot is free again: every blocking call ended.
async fn settled(db: &AsyncStore) {
    tokio::time::timeout(DEADLINE, async {
        while db.available() < db.limit() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a blocking call never ended");
}

fn exists(result: RepoResult<repo_core::User>) -> bool {
    match result {
        Ok(_) => true,
        Err(RepoError::NotFound { .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

/// Opens asynchronously (migrations off the runtime) and runs more calls at once
/// than the pool has connections: every one completes, never more than the pool's
/// size run at once, and each repository is reachable.
pub async fn concurrency_past_the_pool_is_bounded(url: String) {
    let db = AsyncStore::open(&url, &small_pool()).await.unwrap();
    assert_eq!(db.limit(), 2, "sized to the pool");
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (db, running, most) = (db.clone(), Arc::clone(&running), Arc::clone(&most));
        tasks.push(tokio::spawn(async move {
            let (r, m) = (Arc::clone(&running), Arc::clone(&most));
            let user = db
                .run(move |store| {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    let status = store.pool_status();
                    assert!(status.in_use <= status.max, "{status:?}");
                    std::thread::sleep(Duration::from_millis(5));
                    let user = store.users().create(&new_user(&format!("u{i}")));
                    r.fetch_sub(1, Ordering::SeqCst);
                    user
                })
                .await?;
            // A unit of work and a typed repository call, also past the pool size.
            db.transaction(move |tx| tx.users().record_login(user.id))
                .await?;
            db.users(move |users| users.get(user.id)).await
        }));
    }
    let all = tokio::time::timeout(DEADLINE, async {
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap().unwrap());
        }
        done
    })
    .await
    .expect("deadlock: the calls did not finish");
    assert_eq!(all.len(), 24);
    assert!(all.iter().all(|u| u.last_login.is_some()));
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 2, "{most} calls ran at once on a pool of 2");
    settled(&db).await;
    let count = db
        .users(|users| users.count(Default::default()))
        .await
        .unwrap();
    assert_eq!(count, 24);
    let nowhere = repo_core::CollectionId(uuid::Uuid::new_v4());
    let absent = |r: RepoResult<()>| match r {
        Ok(()) | Err(RepoError::NotFound { .. }) => {}
        Err(e) => panic!("{e}"),
    };
    absent(db.api_keys(|k| k.purge_expired().map(|_| ())).await);
    absent(db.collections(move |c| c.get(nowhere).map(|_| ())).await);
    absent(
        db.operations(|o| o.stuck(repo_core::now()).map(|_| ()))
            .await,
    );
    absent(
        db.documents(move |d| d.get_by_hash(nowhere, "x").map(|_| ()))
            .await,
    );
    absent(db.chunks(move |c| c.count(nowhere).map(|_| ())).await);
    db.health().await.unwrap();
}

/// A future dropped while its unit of work runs: the unit of work still commits or
/// rolls back as a whole, and nothing of it is visible before then.
pub async fn dropped_future_mid_unit_of_work_leaves_nothing_half_written(url: String) {
    let db = AsyncStore::open(&url, &StoreConfig::default())
        .await
        .unwrap();
    for (commit, prefix) in [(true, "kept"), (false, "gone")] {
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let go_rx = Mutex::new(go_rx);
        let (a, b) = (format!("{prefix}_a"), format!("{prefix}_b"));
        let call = {
            let db = db.clone();
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                db.transaction(move |tx| {
                    tx.users().create(&new_user(&a))?;
                    let _ = started_tx.send(());
                    let commit = go_rx.lock().unwrap().recv().unwrap_or(false);
                    tx.users().create(&new_user(&b))?;
                    if commit {
                        Ok(())
                    } else {
                        Err(RepoError::config("the caller's closure failed"))
                    }
                })
                .await
            })
        };
        started_rx.recv().await.expect("the unit of work started");
        // Drop the future mid-way (what a client hanging up does to a handler).
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        // Half-way: the first write is not visible outside the transaction.
        let seen = a.clone();
        let half = db
            .users(move |u| Ok(exists(u.get_by_username(&seen))))
            .await;
        assert!(!half.unwrap(), "half of a unit of work is visible");
        go_tx.send(commit).unwrap();
        settled(&db).await;
        let (ra, rb) = (a.clone(), b.clone());
        let (has_a, has_b) = db
            .users(move |u| {
                Ok((
                    exists(u.get_by_username(&ra)),
                    exists(u.get_by_username(&rb)),
                ))
            })
            .await
            .unwrap();
        assert_eq!(has_a, has_b, "half-written: {a}={has_a}, {b}={has_b}");
        assert_eq!(
            has_a, commit,
            "committed as a whole iff the closure succeeded"
        );
    }
}

/// A future dropped while it waits for a slot never runs its call.
pub async fn dropped_while_waiting_for_a_slot_never_runs(url: String) {
    let store = AsyncStore::open(&url, &StoreConfig::default())
        .await
        .unwrap();
    let db = AsyncStore::with_limit(Arc::clone(store.store()), 1);
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let holder = {
        let db = db.clone();
        tokio::spawn(async move {
            db.run(move |_| {
                let _ = started_tx.send(());
                let _ = hold_rx.recv();
                Ok(())
            })
            .await
        })
    };
    started_rx.recv().await.unwrap();
    assert_eq!(db.available(), 0);
    let ran = Arc::new(AtomicBool::new(false));
    let waiting = {
        let (db, ran) = (db.clone(), Arc::clone(&ran));
        tokio::spawn(async move {
            db.users(move |users| {
                ran.store(true, Ordering::SeqCst);
                users.create(&new_user("never"))
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    hold_tx.send(()).unwrap();
    holder.await.unwrap().unwrap();
    settled(&db).await;
    assert!(!ran.load(Ordering::SeqCst), "a dropped waiting call ran");
    let never = db.users(|u| Ok(exists(u.get_by_username("never"))));
    assert!(!never.await.unwrap());
}

/// The caller's span is the current span on the blocking thread, for plain calls and
/// for units of work.
pub async fn spans_cross_the_boundary(url: String) {
    use tracing::Instrument;
    // A subscriber that records spans, so that they have ids (set once per process).
    static SUBSCRIBER: std::sync::Once = std::sync::Once::new();
    SUBSCRIBER.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let db = AsyncStore::open(&url, &StoreConfig::default())
        .await
        .unwrap();
    let span = tracing::info_span!("request", route = "/users");
    let expected = span.id().expect("the span is recorded");
    let seen = db
        .run(|_| Ok(tracing::Span::current().id()))
        .instrument(span.clone())
        .await
        .unwrap();
    assert_eq!(
        seen,
        Some(expected),
        "a plain call runs in the caller's span"
    );
    // The store's unit-of-work span nests under the caller's.
    let scope = db
        .transaction(|tx| {
            tx.users().count(Default::default())?;
            Ok(current_scope())
        })
        .instrument(span)
        .await
        .unwrap();
    assert!(scope.contains(&"request"), "{scope:?}");
    // Outside any span, the caller's span is not entered on the blocking thread.
    let scope = db.run(|_| Ok(current_scope())).await.unwrap();
    assert!(!scope.contains(&"request"), "{scope:?}");
}

/// The names of the current span and its ancestors, innermost first.
fn current_scope() -> Vec<&'static str> {
    use tracing_subscriber::registry::LookupSpan;
    let Some(id) = tracing::Span::current().id() else {
        return Vec::new();
    };
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .expect("the test's registry is the subscriber");
        registry
            .span(&id)
            .map(|span| span.scope().map(|s| s.name()).collect())
            .unwrap_or_default()
    })
}

macro_rules! async_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("async.db").display());
                    super::$name(url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = repo_postgres::testing::TempDatabase::from_env()
                        .unwrap_or_else(|e| panic!("{e}"));
                    super::$name(db.url().to_owned()).await;
                }
            )*
        }
    };
}

async_tests!(
    concurrency_past_the_pool_is_bounded,
    dropped_future_mid_unit_of_work_leaves_nothing_half_written,
    dropped_while_waiting_for_a_slot_never_runs,
    spans_cross_the_boundary,
);
