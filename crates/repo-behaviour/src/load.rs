//! Reliability under load: many threads at once, units of work failing under load,
//! writers on separate pools, and a pool with more callers than connections. Every
//! behaviour is bounded in time (every race gives up after a deadline) so a deadlock fails it.

use crate::expect;
use crate::race::{race, RACE_DEADLINE};
use crate::seed::{self, HASH};
use crate::Harness;
use repo_core::{
    Attempt, Collection, Entity, Field, NewChunk, NewCollection, NewOperation, NewUser,
    OperationKind, OperationStatus, PageRequest, PoolConfig, RepoError, RepoResult, State, Store,
    StoreConfig, UnavailableReason, User, UserFilter,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __load_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            load::load_sixteen_collection_creators_count_exactly,
            load::load_racing_transitions_on_many_operations_one_winner_each,
            load::load_rolled_back_units_of_work_leave_nothing,
            load::load_eight_writers_on_separate_pools_lose_nothing,
            load::load_callers_beyond_the_pool_get_pool_exhausted_then_recover,
        }
    };
}

/// Sixteen threads create collections at once: each thread's own name succeeds, each name contested by four owners has exactly one winner and `AlreadyExists { name }` for the rest, and the counts are exact.
pub fn load_sixteen_collection_creators_count_exactly(h: &dyn Harness) {
    const THREADS: usize = 16;
    const CONTESTED: usize = 4;
    let s = h.store();
    let owners: Vec<User> = (0..CONTESTED)
        .map(|i| seed::user(&*s, &format!("owner{i}")))
        .collect();
    let store = Arc::clone(&s);
    let owner_ids: Vec<_> = owners.iter().map(|u| u.id).collect();
    let results = race(THREADS, move |i| {
        let owner = owner_ids[i % CONTESTED];
        let own = store
            .collections()
            .create(&NewCollection::new(format!("own-{i}"), owner));
        // The contenders for one name have different owners: names are unique
        // across owners, not per owner.
        let contested = store.collections().create(&NewCollection::new(
            format!("shared-{}", i % CONTESTED),
            owner_ids[(i / CONTESTED) % CONTESTED],
        ));
        (own, contested)
    });

    let (owns, contested): (Vec<_>, Vec<_>) = results.into_iter().unzip();
    let mut created: Vec<Collection> = owns
        .into_iter()
        .enumerate()
        .map(|(i, r)| expect::ok(r, &format!("own collection {i}")))
        .collect();
    for name in 0..CONTESTED {
        let contenders: Vec<&RepoResult<Collection>> =
            contested.iter().skip(name).step_by(CONTESTED).collect();
        let winners: Vec<&Collection> = contenders.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one creator of shared-{name} must win: {contenders:?}"
        );
        for r in &contenders {
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        RepoError::AlreadyExists {
                            entity: Entity::Collection,
                            field: Field::Name
                        }
                    ),
                    "a losing creator of shared-{name} must get AlreadyExists {{ name }}, got {e:?}"
                );
            }
        }
        created.push(winners[0].clone());
    }

    assert_eq!(created.len(), THREADS + CONTESTED);
    let ids: BTreeSet<_> = created.iter().map(|c| c.id).collect();
    let stores: BTreeSet<_> = created
        .iter()
        .map(|c| c.vector_store_name.clone())
        .collect();
    assert_eq!(ids.len(), created.len(), "collection ids are unique");
    assert_eq!(stores.len(), created.len(), "vector store names are unique");
    let mut visible = 0;
    for owner in &owners {
        let page = expect::ok(
            s.collections()
                .list_visible(owner.id.into(), PageRequest::first(PageRequest::MAX_LIMIT)),
            "list visible",
        );
        assert!(page.items.iter().all(|c| c.owner_id == owner.id));
        visible += page.total;
    }
    assert_eq!(
        visible,
        (THREADS + CONTESTED) as u64,
        "every created collection, and no other, is stored"
    );
    for c in &created {
        assert_eq!(&expect::ok(s.collections().get(c.id), "read back"), c);
    }
}

/// Three operations, each raced by twelve threads at once (36 callers), first to `processing` and then to a terminal state: every operation has exactly one winner per step and every loser gets `InvalidState` naming the winner's state.
pub fn load_racing_transitions_on_many_operations_one_winner_each(h: &dyn Harness) {
    const OPS: usize = 3;
    const PER_OP: usize = 12;
    let s = h.store();
    let u = seed::user(&*s, "ray");
    let ops: Vec<_> = (0..OPS)
        .map(|i| {
            let c = seed::collection(&*s, &u, &format!("c{i}"));
            seed::operation(&*s, &c, &u, OperationKind::Index).uuid
        })
        .collect();
    let terminal = [
        OperationStatus::Completed,
        OperationStatus::Failed,
        OperationStatus::Cancelled,
    ];
    for step in 0..2 {
        let store = Arc::clone(&s);
        let uuids = ops.clone();
        let results = race(OPS * PER_OP, move |i| {
            let to = if step == 0 {
                OperationStatus::Processing
            } else {
                terminal[i % terminal.len()]
            };
            (
                i % OPS,
                to,
                store.operations().transition(uuids[i % OPS], to, None),
            )
        });
        for (op, uuid) in ops.iter().enumerate() {
            let mine: Vec<_> = results.iter().filter(|(o, _, _)| *o == op).collect();
            let winners: Vec<_> = mine
                .iter()
                .filter_map(|(_, _, r)| r.as_ref().ok())
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "step {step}: exactly one transition of operation {op} must win: {mine:?}"
            );
            let won = winners[0].status;
            for (_, to, r) in &mine {
                if let Err(e) = r {
                    match e {
                        RepoError::InvalidState { current, attempted }
                            if *current == State::Operation(won)
                                && *attempted == Attempt::Operation(*to) => {}
                        other => panic!(
                            "step {step}: a losing {to} must be InvalidState {{ current: {won} }}, \
                             got {other:?}"
                        ),
                    }
                }
            }
            assert_eq!(
                expect::ok(s.operations().get(*uuid), "read back"),
                *winners[0]
            );
        }
    }
}

/// Sixteen threads run four units of work each; half commit, half write (a user, a collection, a document) and then fail, by returning an error or by a duplicate: only the committed writes are left, counted exactly.
pub fn load_rolled_back_units_of_work_leave_nothing(h: &dyn Harness) {
    const THREADS: usize = 16;
    const UNITS: usize = 4;
    let s = h.store();
    let owner = seed::user(&*s, "owner");
    let shared = seed::collection(&*s, &owner, "shared");
    let users_before = expect::ok(s.users().count(UserFilter::default()), "count");
    let store = Arc::clone(&s);
    let shared_id = shared.id;
    // Which failing units abort through a repository error instead of their own.
    fn duplicates(k: usize) -> bool {
        k % 4 == 1
    }
    let results = race(THREADS, move |i| {
        (0..UNITS)
            .map(|k| {
                let n = (i * UNITS + k) as u64;
                let name = format!("u{i}x{k}");
                let outcome = store.transaction(|tx| {
                    let u = tx.users().create(&NewUser::new(
                        &name,
                        format!("{name}@example.com"),
                        HASH,
                    ))?;
                    tx.documents().register(&seed::new_document(shared_id, n))?;
                    if (i + k) % 2 == 0 {
                        return Ok(u);
                    }
                    tx.collections()
                        .create(&NewCollection::new(format!("rb-{name}"), u.id))?;
                    if duplicates(k) {
                        // A repository error (a taken username) aborts the unit.
                        tx.users()
                            .create(&NewUser::new("owner", "x@example.com", HASH))?;
                    }
                    Err(RepoError::validation(Field::Value, "roll back on purpose"))
                });
                (name, n, (i + k) % 2 == 0, duplicates(k), outcome)
            })
            .collect::<Vec<_>>()
    });

    let mut committed = 0u64;
    for (name, n, commits, duplicate, outcome) in results.into_iter().flatten() {
        if commits {
            let u = expect::ok(outcome, &format!("committing unit {name}"));
            assert_eq!(expect::ok(s.users().get_by_username(&name), "kept"), u);
            expect::ok(
                s.documents().get_by_hash(shared_id, &seed::content_hash(n)),
                "committed document",
            );
            committed += 1;
            continue;
        }
        match outcome {
            Err(RepoError::Validation {
                field: Field::Value,
                ..
            }) if !duplicate => {}
            Err(RepoError::AlreadyExists {
                entity: Entity::User,
                field: Field::Username,
            }) if duplicate => {}
            other => panic!("unit {name} must fail with its own error, got {other:?}"),
        }
        expect::not_found(
            s.users().get_by_username(&name),
            Entity::User,
            "rolled back",
        );
        expect::not_found(
            s.collections().get_by_name(&format!("rb-{name}")),
            Entity::Collection,
            "rolled back",
        );
        expect::not_found(
            s.documents().get_by_hash(shared_id, &seed::content_hash(n)),
            Entity::Document,
            "rolled back",
        );
    }
    assert_eq!(committed, (THREADS * UNITS / 2) as u64);
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        users_before + committed,
        "only committed users are left"
    );
    assert_eq!(
        expect::ok(s.documents().stats(shared_id), "stats").total,
        committed,
        "only committed documents are left"
    );
}

/// Eight writer threads, each with its own pool on the same database (as separate processes would be), write users, collections, documents, chunks and units of work at once: every write succeeds (no busy or locked error reaches a caller) and the counts are exact.
pub fn load_eight_writers_on_separate_pools_lose_nothing(h: &dyn Harness) {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 6;
    let s = h.store();
    let owner = seed::user(&*s, "owner");
    let shared = seed::collection(&*s, &owner, "shared");
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 1,
            ..PoolConfig::default()
        },
        run_migrations: false,
        ..StoreConfig::default()
    };
    let stores: Vec<Arc<dyn Store>> = (0..WRITERS).map(|_| h.open_with(config.clone())).collect();
    let (owner_id, shared_id) = (owner.id, shared.id);
    let results = race(WRITERS, move |w| -> RepoResult<()> {
        let st = &stores[w];
        for r in 0..ROUNDS {
            let name = format!("w{w}r{r}");
            let u = st
                .users()
                .create(&NewUser::new(&name, format!("{name}@example.com"), HASH))?;
            let n = (w * ROUNDS + r) as u64;
            let doc = st
                .documents()
                .register(&seed::new_document(shared_id, n))?
                .document;
            let chunks: Vec<NewChunk> = (0..5)
                .map(|i| NewChunk::new(doc.id, i, format!("writer {w} round {r} chunk {i}")))
                .collect();
            st.chunks().insert_many(shared_id, &chunks)?;
            st.transaction(|tx| {
                let c = tx
                    .collections()
                    .create(&NewCollection::new(format!("c-{name}"), u.id))?;
                let locked = tx.lock_collection(c.id)?;
                tx.operations().create(&NewOperation::new(
                    locked.id,
                    owner_id,
                    OperationKind::Index,
                    json!({"writer": w, "round": r}),
                ))?;
                tx.collections().update_status(
                    locked.id,
                    repo_core::CollectionStatus::Processing,
                    None,
                )
            })?;
        }
        Ok(())
    });
    for (w, r) in results.into_iter().enumerate() {
        if let Err(e) = r {
            panic!("writer {w}: every write must succeed under contention, got {e:?} ({e})");
        }
    }
    let writes = (WRITERS * ROUNDS) as u64;
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "users"),
        writes + 1
    );
    assert_eq!(
        expect::ok(s.documents().stats(shared_id), "documents").total,
        writes
    );
    assert_eq!(
        expect::ok(s.chunks().count(shared_id), "chunks"),
        writes * 5
    );
    for w in 0..WRITERS {
        for r in 0..ROUNDS {
            let c = expect::ok(
                s.collections().get_by_name(&format!("c-w{w}r{r}")),
                "collection",
            );
            assert_eq!(
                expect::ok(s.operations().active_for_collection(c.id), "ops").len(),
                1
            );
        }
    }
}

/// With both connections of a two-connection pool held by running units of work, six more callers each get `Unavailable { PoolExhausted }` saying so within the checkout timeout; once the holders finish, the same pool serves eight callers at once.
pub fn load_callers_beyond_the_pool_get_pool_exhausted_then_recover(h: &dyn Harness) {
    let mut config = StoreConfig {
        pool: PoolConfig {
            pool_size: 2,
            max_overflow: 0,
            connection_timeout: Duration::from_millis(250),
            ..PoolConfig::default()
        },
        run_migrations: false,
        ..StoreConfig::default()
    };
    // On SQLite the second holder waits inside BEGIN IMMEDIATE for the first one's
    // write lock, holding its connection: that wait must outlast the whole check.
    config.sqlite.busy_timeout = RACE_DEADLINE;
    let tiny = h.open_with(config);
    let users_before = expect::ok(tiny.users().count(UserFilter::default()), "count");
    let release = Arc::new(AtomicBool::new(false));
    let holders: Vec<_> = (0..2)
        .map(|i| {
            let (store, release) = (Arc::clone(&tiny), Arc::clone(&release));
            std::thread::Builder::new()
                .name(format!("holder-{i}"))
                .spawn(move || {
                    store.transaction(|tx| {
                        tx.users().count(UserFilter::default())?;
                        wait_for(&release, "the release of the holders");
                        Ok(())
                    })
                })
                .unwrap_or_else(|e| panic!("spawning holder {i} failed: {e}"))
        })
        .collect();

    // Both holders have their connection once a checkout finds the pool exhausted.
    let deadline = Instant::now() + RACE_DEADLINE;
    loop {
        match tiny.users().count(UserFilter::default()) {
            Err(RepoError::Unavailable {
                reason: UnavailableReason::PoolExhausted,
                ..
            }) => break,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            other => panic!("waiting for the holders to take both connections: {other:?}"),
        }
    }

    let store = Arc::clone(&tiny);
    let refused = race(6, move |_| {
        let started = Instant::now();
        (
            store.users().count(UserFilter::default()),
            started.elapsed(),
        )
    });
    release.store(true, Ordering::SeqCst);
    for (i, (r, waited)) in refused.into_iter().enumerate() {
        let e = expect::err(r, &format!("caller {i} beyond the pool"));
        assert!(
            matches!(
                e,
                RepoError::Unavailable {
                    reason: UnavailableReason::PoolExhausted,
                    ..
                }
            ),
            "caller {i}: expected Unavailable {{ PoolExhausted }}, got {e:?}"
        );
        assert!(e.is_retryable(), "pool exhaustion is retryable");
        assert!(
            e.to_string().contains("pool exhausted"),
            "the message must say the pool is exhausted: {e}"
        );
        assert!(
            waited < Duration::from_secs(10),
            "caller {i} waited {waited:?}: checkout must give up after its timeout"
        );
    }
    for (i, holder) in holders.into_iter().enumerate() {
        let deadline = Instant::now() + RACE_DEADLINE;
        while !holder.is_finished() {
            assert!(Instant::now() < deadline, "holder {i} did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
        match holder.join() {
            Ok(r) => expect::ok(r, &format!("holder {i}")),
            Err(_) => panic!("holder {i} panicked"),
        }
    }

    let store = Arc::clone(&tiny);
    let served = race(8, move |i| {
        let name = format!("after{i}");
        store
            .users()
            .create(&NewUser::new(&name, format!("{name}@example.com"), HASH))
    });
    for (i, r) in served.into_iter().enumerate() {
        expect::ok(r, &format!("caller {i} after the holders finished"));
    }
    assert_eq!(
        expect::ok(tiny.users().count(UserFilter::default()), "count"),
        users_before + 8
    );
}

/// Sleeps in short steps until `flag` is set; panics after [`RACE_DEADLINE`].
fn wait_for(flag: &AtomicBool, what: &str) {
    let deadline = Instant::now() + RACE_DEADLINE;
    while !flag.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
