//! The unit of work: several repositories in one transaction, all or nothing.

use crate::expect;
use crate::race::race;
use crate::seed::{self, HASH};
use crate::Harness;
use repo_core::{
    Attempt, CollectionId, CollectionStatus, ConflictReason, Entity, Field, NewCollection,
    NewOperation, NewUser, Operation, OperationKind, RepoError, RepoResult, State, Store,
    Transaction, UserFilter, UserId,
};
use serde_json::json;
use std::sync::Arc;

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __transactions_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            transactions::unit_of_work_commits_every_write,
            transactions::unit_of_work_failing_part_way_leaves_nothing,
            transactions::unit_of_work_repository_error_rolls_back,
            transactions::unit_of_work_returns_its_value,
            transactions::unit_of_work_lock_unknown_is_not_found,
            transactions::unit_of_work_racing_starts_exactly_one_wins,
            transactions::unit_of_work_continues_after_a_handled_error,
            transactions::unit_of_work_deadlock_or_busy_is_rerun_and_commits,
            transactions::unit_of_work_conflict_surfaces_when_attempts_run_out,
            transactions::unit_of_work_refuses_calls_on_its_own_store,
        }
    };
}

/// The unit of work of docs/domain.md: lock the collection, refuse if it has an active
/// operation, create one, set the collection processing.
fn start_operation(
    tx: &dyn Transaction,
    collection: CollectionId,
    user: UserId,
) -> RepoResult<Operation> {
    let locked = tx.lock_collection(collection)?;
    if !tx.operations().active_for_collection(locked.id)?.is_empty() {
        return Err(RepoError::invalid_state(
            State::HasActiveOperation,
            Attempt::StartOperation,
        ));
    }
    let op = tx.operations().create(&NewOperation::new(
        locked.id,
        user,
        OperationKind::Index,
        json!({"source": "/docs"}),
    ))?;
    tx.collections()
        .update_status(locked.id, CollectionStatus::Processing, Some("indexing"))?;
    Ok(op)
}

/// Lock, check, create an operation and set the collection processing in one unit of work: all of it is committed.
pub fn unit_of_work_commits_every_write(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &u, "c");
    let op = expect::ok(
        s.transaction(|tx| start_operation(tx, c.id, u.id)),
        "unit of work",
    );
    assert_eq!(
        expect::ok(s.operations().get(op.uuid), "operation committed"),
        op
    );
    let after = expect::ok(s.collections().get(c.id), "collection");
    assert_eq!(after.status, CollectionStatus::Processing);
    assert_eq!(after.status_message.as_deref(), Some("indexing"));
    assert_eq!(
        expect::ok(s.operations().active_for_collection(c.id), "active"),
        vec![op]
    );
    // A second start sees the committed operation and refuses.
    expect::invalid_state(
        s.transaction(|tx| start_operation(tx, c.id, u.id)),
        State::HasActiveOperation,
        Attempt::StartOperation,
        "second start",
    );
}

/// A unit of work that returns an error after several writes leaves none of them behind and returns that error.
pub fn unit_of_work_failing_part_way_leaves_nothing(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bob");
    let c = seed::collection(&*s, &u, "c");
    let users_before = expect::ok(s.users().count(UserFilter::default()), "count");
    let r: RepoResult<()> = s.transaction(|tx| {
        let nu = tx
            .users()
            .create(&NewUser::new("temp", "temp@example.com", HASH))?;
        tx.collections()
            .create(&NewCollection::new("temp-c", nu.id))?;
        start_operation(tx, c.id, u.id)?;
        tx.collections().rename(c.id, "renamed")?;
        Err(RepoError::validation(Field::Value, "stop after the writes"))
    });
    match r {
        Err(RepoError::Validation {
            field: Field::Value,
            ..
        }) => {}
        other => panic!("the unit of work must return its own error, got {other:?}"),
    }
    expect::not_found(
        s.users().get_by_username("temp"),
        Entity::User,
        "user rolled back",
    );
    expect::not_found(
        s.collections().get_by_name("temp-c"),
        Entity::Collection,
        "rolled back",
    );
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        users_before
    );
    assert_eq!(
        expect::ok(s.collections().get(c.id), "collection unchanged"),
        c
    );
    assert!(expect::ok(s.operations().active_for_collection(c.id), "ops").is_empty());
}

/// A repository error inside a unit of work (here a duplicate) propagates and rolls back the earlier writes; the store stays usable.
pub fn unit_of_work_repository_error_rolls_back(h: &dyn Harness) {
    let s = h.store();
    seed::user(&*s, "carol");
    let r = s.transaction(|tx| {
        tx.users()
            .create(&NewUser::new("dave", "dave@example.com", HASH))?;
        tx.users()
            .create(&NewUser::new("carol", "carol2@example.com", HASH))
    });
    expect::already_exists(
        r,
        Entity::User,
        Field::Username,
        "duplicate inside the unit of work",
    );
    expect::not_found(
        s.users().get_by_username("dave"),
        Entity::User,
        "earlier write rolled back",
    );
    // The same connection(s) work afterwards.
    let ok = expect::ok(
        s.transaction(|tx| {
            tx.users()
                .create(&NewUser::new("dave", "dave@example.com", HASH))
        }),
        "next unit of work",
    );
    assert_eq!(expect::ok(s.users().get_by_username("dave"), "get"), ok);
}

/// `transaction` returns the value of its closure, and the closure reads its own writes.
pub fn unit_of_work_returns_its_value(h: &dyn Harness) {
    let s = h.store();
    let (user, seen, answer) = expect::ok(
        s.transaction(|tx| {
            let u = tx
                .users()
                .create(&NewUser::new("erin", "erin@example.com", HASH))?;
            let seen = tx.users().get(u.id)?;
            Ok((u, seen, 42))
        }),
        "transaction",
    );
    assert_eq!(answer, 42);
    assert_eq!(seen, user, "reads inside see earlier writes");
    assert_eq!(expect::ok(s.users().get(user.id), "committed"), user);
}

/// Locking an unknown collection inside a unit of work is `NotFound { collection }`.
pub fn unit_of_work_lock_unknown_is_not_found(h: &dyn Harness) {
    let s = h.store();
    expect::not_found(
        s.transaction(|tx| tx.lock_collection(CollectionId::new())),
        Entity::Collection,
        "lock unknown",
    );
}

/// Eight units of work racing to start an operation on one collection: exactly one commits, the others are refused.
pub fn unit_of_work_racing_starts_exactly_one_wins(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "fay");
    let c = seed::collection(&*s, &u, "c");
    let store: Arc<dyn Store> = Arc::clone(&s);
    let (cid, uid) = (c.id, u.id);
    let results = race(8, move |_| {
        store.transaction(|tx| start_operation(tx, cid, uid))
    });
    let winners: Vec<&Operation> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one unit of work must commit: {results:?}"
    );
    for r in &results {
        match r {
            Ok(_) => {}
            Err(RepoError::InvalidState {
                current: State::HasActiveOperation,
                ..
            }) => {}
            Err(e) if expect::is_conflict(e, ConflictReason::ActiveOperation) => {}
            Err(e) => panic!("a losing unit of work failed unexpectedly: {e:?}"),
        }
    }
    assert_eq!(
        expect::ok(s.operations().active_for_collection(c.id), "active"),
        vec![winners[0].clone()]
    );
    assert_eq!(
        expect::ok(s.collections().get(c.id), "collection").status,
        CollectionStatus::Processing
    );
}

/// An error handled inside a unit of work (a duplicate, an active-operation conflict) leaves it usable: later writes commit.
pub fn unit_of_work_continues_after_a_handled_error(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "gil");
    let c = seed::collection(&*s, &u, "c");
    seed::operation(&*s, &c, &u, OperationKind::Index);
    let created = expect::ok(
        s.transaction(|tx| {
            let dup = tx
                .users()
                .create(&NewUser::new("gil", "gil2@example.com", HASH));
            if !matches!(dup, Err(RepoError::AlreadyExists { .. })) {
                return Err(RepoError::validation(
                    Field::Value,
                    format!("expected a duplicate: {dup:?}"),
                ));
            }
            let second = tx.operations().create(&NewOperation::new(
                c.id,
                u.id,
                OperationKind::Append,
                json!({"a": 1}),
            ));
            match second {
                Err(e) if expect::is_conflict(&e, ConflictReason::ActiveOperation) => {}
                other => {
                    return Err(RepoError::validation(
                        Field::Value,
                        format!("expected a conflict: {other:?}"),
                    ))
                }
            }
            tx.users()
                .create(&NewUser::new("hal", "hal@example.com", HASH))
        }),
        "unit of work after handled errors",
    );
    assert_eq!(
        expect::ok(s.users().get_by_username("hal"), "committed"),
        created
    );
    assert_eq!(expect::ok(s.users().get_by_username("gil"), "kept"), u);
    assert_eq!(
        expect::ok(s.operations().active_for_collection(c.id), "active").len(),
        1
    );
}

/// How long the first attempt of each unit of work of [`opposite_order_units`] waits
/// for the other to hold its first lock.
const RENDEZVOUS: std::time::Duration = std::time::Duration::from_secs(2);

/// The documents unit `i` of [`opposite_order_units`] registers: `(collection index, n)`.
fn unit_documents(i: usize) -> [(usize, u64); 2] {
    [(0, 700 + i as u64 * 10), (1, 701 + i as u64 * 10)]
}

/// Two units of work on `store`, run at once: unit 0 locks collection `cs[0]` then
/// `cs[1]`, unit 1 the other way round; each registers one document in both
/// collections ([`unit_documents`]). On its first attempt each unit, holding its first
/// lock, waits (at most [`RENDEZVOUS`]) for the other to hold its own: on PostgreSQL
/// the two then deadlock (40P01) for real; on SQLite the first unit's write
/// transaction keeps the other out (busy). Returns each unit's result and attempts.
fn opposite_order_units(
    store: &Arc<dyn Store>,
    cs: [CollectionId; 2],
) -> Vec<(RepoResult<()>, u32)> {
    use std::sync::{Condvar, Mutex};
    let meet = Arc::new((Mutex::new(0u32), Condvar::new()));
    let store = Arc::clone(store);
    race(2, move |i| {
        let (first, second) = if i == 0 {
            (cs[0], cs[1])
        } else {
            (cs[1], cs[0])
        };
        let mut attempts = 0;
        let result = store.transaction(|tx| {
            attempts += 1;
            tx.lock_collection(first)?;
            if attempts == 1 {
                let (count, cv) = &*meet;
                let mut n = count.lock().unwrap_or_else(|e| e.into_inner());
                *n += 1;
                cv.notify_all();
                let _ = cv
                    .wait_timeout_while(n, RENDEZVOUS, |n| *n < 2)
                    .unwrap_or_else(|e| e.into_inner());
            }
            tx.lock_collection(second)?;
            for (c, n) in unit_documents(i) {
                tx.documents().register(&seed::new_document(cs[c], n))?;
            }
            Ok(())
        });
        (result, attempts)
    })
}

/// A store whose SQLite busy timeout is short (so that a held write lock shows as
/// busy quickly) and whose units of work get `attempts` attempts.
fn contended_store(h: &dyn Harness, attempts: u32) -> Arc<dyn Store> {
    let mut config = repo_core::StoreConfig::default();
    config.sqlite.busy_timeout = std::time::Duration::from_millis(50);
    config.retry.max_attempts = attempts;
    h.open_with(config)
}

/// Two units of work locking two collections in opposite order (a real deadlock on PostgreSQL, a held write lock on SQLite): the one that hits the conflict is re-run and both commit, each write once.
pub fn unit_of_work_deadlock_or_busy_is_rerun_and_commits(h: &dyn Harness) {
    let s = contended_store(h, 20);
    let u = seed::user(&*s, "dee");
    let cs = [
        seed::collection(&*s, &u, "left").id,
        seed::collection(&*s, &u, "right").id,
    ];
    let results = opposite_order_units(&s, cs);
    assert!(
        results.iter().all(|(r, _)| r.is_ok()),
        "both units of work must commit: {results:?}"
    );
    // PostgreSQL: the deadlock victim's closure ran twice. SQLite: the busy wait
    // (50 ms) is far shorter than the other unit's hold (RENDEZVOUS), so committing at
    // all took re-runs (they fail at BEGIN IMMEDIATE, before the closure); with one
    // attempt the same race is a Conflict (the next behaviour).
    if h.backend() == repo_core::BackendKind::Postgres {
        let attempts: u32 = results.iter().map(|(_, a)| a).sum();
        assert_eq!(
            attempts, 3,
            "the deadlock victim must have been re-run once: {results:?}"
        );
    }
    for i in 0..2 {
        for (c, n) in unit_documents(i) {
            expect::ok(
                s.documents().get_by_hash(cs[c], &seed::content_hash(n)),
                "every write of both units is committed",
            );
        }
    }
}

/// The same conflict with one attempt allowed (`DB_TX_MAX_ATTEMPTS=1`): one unit of work commits, the other is a retryable `Conflict` (deadlock on PostgreSQL, busy on SQLite) and leaves nothing behind.
pub fn unit_of_work_conflict_surfaces_when_attempts_run_out(h: &dyn Harness) {
    let s = contended_store(h, 1);
    let u = seed::user(&*s, "eve");
    let cs = [
        seed::collection(&*s, &u, "left").id,
        seed::collection(&*s, &u, "right").id,
    ];
    let results = opposite_order_units(&s, cs);
    let winners: Vec<usize> = (0..2).filter(|&i| results[i].0.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one unit commits: {results:?}");
    let loser = 1 - winners[0];
    let Err(err) = &results[loser].0 else {
        unreachable!("one of two failed")
    };
    let reason = match h.backend() {
        repo_core::BackendKind::Postgres => ConflictReason::Deadlock,
        repo_core::BackendKind::Sqlite => ConflictReason::Busy,
    };
    assert!(
        expect::is_conflict(err, reason) && err.is_retryable(),
        "the loser's error must be a retryable Conflict({reason}): {err:?}"
    );
    assert!(results[loser].1 <= 1, "one attempt only: {results:?}");
    for (c, n) in unit_documents(winners[0]) {
        expect::ok(
            s.documents().get_by_hash(cs[c], &seed::content_hash(n)),
            "the winner's writes are committed",
        );
    }
    for (c, n) in unit_documents(loser) {
        assert!(
            s.documents()
                .get_by_hash(cs[c], &seed::content_hash(n))
                .is_err(),
            "the loser left nothing behind"
        );
    }
}

/// Inside a unit of work, a call on the store itself (a closure that captured it) is refused at once with `InvalidState` pointing at the `tx` handle, nothing of it runs, the unit of work carries on, and another store stays usable.
pub fn unit_of_work_refuses_calls_on_its_own_store(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "olga");
    let other = h.open_with(repo_core::StoreConfig::default());
    let outer = Arc::clone(&s);
    let created = expect::ok(
        s.transaction(|tx| {
            let refused = [
                outer.users().count(UserFilter::default()).map(|_| ()),
                outer
                    .users()
                    .create(&NewUser::new("outside", "outside@example.com", HASH))
                    .map(|_| ()),
                outer.transaction(|_| Ok(())),
            ];
            for (i, r) in refused.into_iter().enumerate() {
                match r {
                    Err(
                        e @ RepoError::InvalidState {
                            current: State::InUnitOfWork,
                            attempted: Attempt::StoreCall,
                        },
                    ) => {
                        assert!(
                            e.to_string().contains("`tx`"),
                            "call {i}: the error points at the tx handle: {e}"
                        );
                        assert!(e.to_string().contains("unit of work"), "call {i}: {e}");
                    }
                    other => {
                        panic!("call {i} on the outer store inside its unit of work: {other:?}")
                    }
                }
            }
            // A different store (another pool) is not this unit of work's store.
            expect::ok(
                other.users().get(u.id),
                "another store inside the unit of work",
            );
            tx.users()
                .create(&NewUser::new("inside", "inside@example.com", HASH))
        }),
        "the unit of work goes on after the refused calls",
    );
    expect::not_found(
        s.users().get_by_username("outside"),
        Entity::User,
        "the refused create wrote nothing",
    );
    assert_eq!(
        expect::ok(s.users().get_by_username("inside"), "committed").id,
        created.id
    );
    // After the unit of work the store is usable again on this thread.
    expect::ok(
        s.users().count(UserFilter::default()),
        "after the unit of work",
    );
}
