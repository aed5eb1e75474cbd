//! Operations: creation, the status machine (also under concurrent callers), one
//! active operation per collection, cancel rights, listings, bulk failure, metadata.

use crate::expect;
use crate::race::race;
use crate::seed;
use crate::Harness;
use repo_core::{
    AccessLevel, Attempt, Collection, ConflictReason, Entity, Field, NewOperation, Operation,
    OperationFilter, OperationKind, OperationStatus, OperationUuid, PageRequest, RepoError,
    RepoResult, State, Store, User, UserId,
};
use serde_json::json;
use std::sync::Arc;

use OperationStatus::{Cancelled, Completed, Failed, Pending, Processing};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __operations_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            operations::operation_create_is_pending,
            operations::operation_every_kind_round_trips,
            operations::operation_config_is_validated,
            operations::operation_create_for_unknown_refs_is_not_found,
            operations::operation_allowed_transitions_set_timestamps,
            operations::operation_transition_stores_error_message,
            operations::operation_forbidden_transitions_are_invalid_state,
            operations::operation_transition_from_terminal_is_invalid_state,
            operations::operation_transition_unknown_is_not_found,
            operations::operation_one_active_per_collection,
            operations::operation_new_allowed_after_previous_terminal,
            operations::operation_racing_creators_exactly_one_wins,
            operations::operation_racing_transitions_exactly_one_wins,
            operations::operation_cancel_rights,
            operations::operation_cancel_terminal_is_invalid_state,
            operations::operation_list_for_collection_filters,
            operations::operation_list_for_user_filters,
            operations::operation_active_for_collection,
            operations::operation_stuck_lists_old_active_oldest_first,
            operations::operation_mark_failed_many_counts_only_active,
            operations::operation_merge_meta_is_top_level,
            operations::operation_set_task_id,
            operations::operation_get_with_access,
            operations::operation_concurrent_merge_meta_loses_no_key,
            operations::operation_writes_refuse_nul,
            operations::operation_mark_failed_many_accepts_any_number_of_ids,
            operations::operation_idempotency_key_returns_existing,
            operations::operation_idempotency_key_is_validated,
            operations::operation_racing_creators_same_key_get_one,
            operations::operation_get_by_task_id,
            operations::operation_idempotency_key_in_unit_of_work,
        }
    };
}

fn transition(s: &dyn Store, op: &Operation, to: OperationStatus) -> Operation {
    expect::ok(
        s.operations().transition(op.uuid, to, None),
        &format!("{} -> {to}", op.status),
    )
}

/// Creates an operation and drives it to `status` through allowed transitions.
fn op_in(s: &dyn Store, c: &Collection, u: &User, status: OperationStatus) -> Operation {
    let op = seed::operation(s, c, u, OperationKind::Index);
    match status {
        Pending => op,
        Processing | Completed => {
            let op = transition(s, &op, Processing);
            if status == Completed {
                transition(s, &op, Completed)
            } else {
                op
            }
        }
        Failed | Cancelled => transition(s, &op, status),
    }
}

/// A new operation is pending with no timestamps but `created_at`, and reads back equal to the microsecond.
pub fn operation_create_is_pending(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &u, "c");
    let before = repo_core::now();
    let op = expect::ok(
        s.operations().create(&NewOperation::new(
            c.id,
            u.id,
            OperationKind::Reindex,
            json!({"model": "x", "batch": 32}),
        )),
        "create",
    );
    let after = repo_core::now();
    assert!(op.id > 0, "internal id is generated");
    assert_eq!(op.status, Pending);
    assert_eq!(op.kind, OperationKind::Reindex);
    assert_eq!((op.collection_id, op.user_id), (c.id, u.id));
    assert_eq!(op.config, json!({"model": "x", "batch": 32}));
    assert_eq!(op.meta, json!({}));
    assert_eq!(op.task_id, None);
    assert_eq!(op.error_message, None);
    assert_eq!((op.started_at, op.completed_at), (None, None));
    assert!(before <= op.created_at && op.created_at <= after);
    assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), op);
}

/// Every kind, with meta and task id given at creation, reads back equal.
pub fn operation_every_kind_round_trips(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bob");
    for kind in OperationKind::ALL {
        let c = seed::collection(&*s, &u, kind.as_str());
        let mut new = NewOperation::new(c.id, u.id, *kind, json!({"k": kind.as_str()}));
        new.meta = json!({"attempt": 1, "tags": ["a"]});
        new.task_id = Some(format!("task-{kind}"));
        let op = expect::ok(s.operations().create(&new), kind.as_str());
        assert_eq!(op.kind, *kind);
        assert_eq!(op.meta, new.meta);
        assert_eq!(op.task_id, new.task_id);
        assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), op);
    }
}

/// `config` must be a non-empty JSON object and `meta` an object, both free of NUL: else `Validation` naming the field.
pub fn operation_config_is_validated(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "carol");
    let c = seed::collection(&*s, &u, "c");
    for (config, what) in [
        (json!({}), "empty object"),
        (json!([1]), "array"),
        (json!("text"), "string"),
        (json!(null), "null"),
        (json!({"path": "a\u{0}b"}), "NUL inside"),
    ] {
        expect::validation(
            s.operations()
                .create(&NewOperation::new(c.id, u.id, OperationKind::Index, config)),
            Field::Config,
            what,
        );
    }
    let mut new = NewOperation::new(c.id, u.id, OperationKind::Index, seed::config());
    new.meta = json!([]);
    expect::validation(s.operations().create(&new), Field::Meta, "array meta");
    let mut new = NewOperation::new(c.id, u.id, OperationKind::Index, seed::config());
    new.task_id = Some("t\0".into());
    expect::validation(s.operations().create(&new), Field::TaskId, "NUL in task_id");
    assert!(expect::ok(s.operations().active_for_collection(c.id), "active").is_empty());
}

/// An operation on an unknown collection or by an unknown user is `NotFound` naming it.
pub fn operation_create_for_unknown_refs_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dan");
    let c = seed::collection(&*s, &u, "c");
    expect::not_found(
        s.operations().create(&NewOperation::new(
            repo_core::CollectionId::new(),
            u.id,
            OperationKind::Index,
            seed::config(),
        )),
        Entity::Collection,
        "unknown collection",
    );
    expect::not_found(
        s.operations().create(&NewOperation::new(
            c.id,
            UserId(u.id.0 + 1000),
            OperationKind::Index,
            seed::config(),
        )),
        Entity::User,
        "unknown user",
    );
    expect::not_found(
        s.operations().get(OperationUuid::new()),
        Entity::Operation,
        "get unknown",
    );
}

/// Each allowed transition succeeds: entering processing sets `started_at`, entering a terminal state sets `completed_at`.
pub fn operation_allowed_transitions_set_timestamps(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "eve");
    let c = seed::collection(&*s, &u, "c");
    let paths: [&[OperationStatus]; 6] = [
        &[Processing],
        &[Failed],
        &[Cancelled],
        &[Processing, Completed],
        &[Processing, Failed],
        &[Processing, Cancelled],
    ];
    for path in paths {
        let mut op = seed::operation(&*s, &c, &u, OperationKind::Append);
        for to in path {
            let before = repo_core::now();
            let next = transition(&*s, &op, *to);
            let after = repo_core::now();
            let within =
                |t: Option<repo_core::Timestamp>| t.is_some_and(|t| before <= t && t <= after);
            assert_eq!(next.status, *to);
            if *to == Processing {
                assert!(
                    within(next.started_at),
                    "started_at set on entering processing"
                );
                assert_eq!(next.completed_at, None);
            } else {
                assert!(
                    within(next.completed_at),
                    "completed_at set on entering {to}"
                );
                assert_eq!(
                    next.started_at, op.started_at,
                    "started_at kept on entering {to}"
                );
            }
            assert_eq!(next.created_at, op.created_at);
            assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), next);
            op = next;
        }
        if !op.status.is_terminal() {
            transition(&*s, &op, Cancelled);
        }
    }
}

/// A transition given an error message stores it.
pub fn operation_transition_stores_error_message(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "fred");
    let c = seed::collection(&*s, &u, "c");
    let op = op_in(&*s, &c, &u, Processing);
    let failed = expect::ok(
        s.operations()
            .transition(op.uuid, Failed, Some("embedding service timed out")),
        "fail",
    );
    assert_eq!(
        failed.error_message.as_deref(),
        Some("embedding service timed out")
    );
    assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), failed);
    let op = op_in(&*s, &c, &u, Pending);
    expect::validation(
        s.operations()
            .transition(op.uuid, Failed, Some("bad\0text")),
        Field::ErrorMessage,
        "NUL in error_message",
    );
}

/// From pending or processing, every transition the machine forbids is `InvalidState { current, attempted }` and changes nothing.
pub fn operation_forbidden_transitions_are_invalid_state(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "gwen");
    let c = seed::collection(&*s, &u, "c");
    let op = op_in(&*s, &c, &u, Pending);
    for to in [Pending, Completed] {
        expect::invalid_state(
            s.operations().transition(op.uuid, to, None),
            OperationStatus::Pending,
            to,
            &format!("pending -> {to}"),
        );
    }
    assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), op);
    let op = transition(&*s, &op, Processing);
    for to in [Pending, Processing] {
        expect::invalid_state(
            s.operations().transition(op.uuid, to, None),
            OperationStatus::Processing,
            to,
            &format!("processing -> {to}"),
        );
    }
    assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), op);
}

/// No transition leaves a terminal state (completed, failed, cancelled): `InvalidState` and the row is unchanged.
pub fn operation_transition_from_terminal_is_invalid_state(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "hugo");
    let c = seed::collection(&*s, &u, "c");
    for terminal in [Completed, Failed, Cancelled] {
        let op = op_in(&*s, &c, &u, terminal);
        for to in OperationStatus::ALL {
            expect::invalid_state(
                s.operations().transition(op.uuid, *to, Some("again")),
                terminal,
                *to,
                &format!("{terminal} -> {to}"),
            );
        }
        assert_eq!(
            expect::ok(s.operations().get(op.uuid), "get"),
            op,
            "{terminal} changed"
        );
    }
}

/// A transition of an unknown operation is `NotFound { operation }`.
pub fn operation_transition_unknown_is_not_found(h: &dyn Harness) {
    let s = h.store();
    expect::not_found(
        s.operations()
            .transition(OperationUuid::new(), Processing, None),
        Entity::Operation,
        "transition unknown",
    );
}

/// While a collection has a pending or processing operation, creating another is `Conflict { ActiveOperation }`; other collections are free.
pub fn operation_one_active_per_collection(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "ida");
    let c = seed::collection(&*s, &u, "c");
    let other = seed::collection(&*s, &u, "other");
    let first = seed::operation(&*s, &c, &u, OperationKind::Index);
    let again = || {
        s.operations().create(&NewOperation::new(
            c.id,
            u.id,
            OperationKind::Append,
            seed::config(),
        ))
    };
    expect::conflict(
        again(),
        ConflictReason::ActiveOperation,
        "second while pending",
    );
    let first = transition(&*s, &first, Processing);
    expect::conflict(
        again(),
        ConflictReason::ActiveOperation,
        "second while processing",
    );
    seed::operation(&*s, &other, &u, OperationKind::Index);
    assert_eq!(
        expect::ok(s.operations().active_for_collection(c.id), "active"),
        vec![first]
    );
}

/// Once the active operation is terminal (cancelled, completed or failed) a new one may be created.
pub fn operation_new_allowed_after_previous_terminal(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "jade");
    let c = seed::collection(&*s, &u, "c");
    for terminal in [Cancelled, Completed, Failed] {
        let op = op_in(&*s, &c, &u, terminal);
        assert_eq!(op.status, terminal);
    }
    let last = seed::operation(&*s, &c, &u, OperationKind::Benchmark);
    let page = expect::ok(
        s.operations().list_for_collection(
            c.id,
            &OperationFilter::default(),
            PageRequest::default(),
        ),
        "list",
    );
    assert_eq!(page.total, 4);
    assert_eq!(page.items[0], last);
}

/// Of 16 threads creating an operation on one collection at once, exactly one succeeds and 15 get `Conflict { ActiveOperation }`.
pub fn operation_racing_creators_exactly_one_wins(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "kim");
    let c = seed::collection(&*s, &u, "c");
    let store: Arc<dyn Store> = Arc::clone(&s);
    let (cid, uid) = (c.id, u.id);
    let results = race(16, move |i| {
        store.operations().create(&NewOperation::new(
            cid,
            uid,
            OperationKind::Index,
            json!({"racer": i}),
        ))
    });
    let winners: Vec<&Operation> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one creator must win: {results:?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert!(
                expect::is_conflict(e, ConflictReason::ActiveOperation),
                "losers must get Conflict {{ ActiveOperation }}, got {e:?}"
            );
        }
    }
    assert_eq!(
        expect::ok(s.operations().active_for_collection(c.id), "active"),
        vec![winners[0].clone()]
    );
}

fn transition_race(
    s: &Arc<dyn Store>,
    uuid: OperationUuid,
    targets: &'static [OperationStatus],
    n: usize,
) -> Vec<(OperationStatus, RepoResult<Operation>)> {
    let store = Arc::clone(s);
    race(n, move |i| {
        let to = targets[i % targets.len()];
        (to, store.operations().transition(uuid, to, None))
    })
}

/// Of 12 threads moving the same operation at once, exactly one wins; the rest get `InvalidState` naming the winner's state.
pub fn operation_racing_transitions_exactly_one_wins(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "lou");
    let c = seed::collection(&*s, &u, "c");
    let op = seed::operation(&*s, &c, &u, OperationKind::Index);

    const START: &[OperationStatus] = &[Processing];
    const FINISH: &[OperationStatus] = &[Completed, Failed, Cancelled];
    for (targets, expected_start) in [(START, Pending), (FINISH, Processing)] {
        assert_eq!(
            expect::ok(s.operations().get(op.uuid), "get").status,
            expected_start
        );
        let results = transition_race(&s, op.uuid, targets, 12);
        let winners: Vec<&Operation> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one transition must win: {results:?}"
        );
        let won = winners[0].status;
        for (to, r) in &results {
            if let Err(e) = r {
                match e {
                    RepoError::InvalidState { current, attempted }
                        if *current == State::Operation(won)
                            && *attempted == Attempt::Operation(*to) => {}
                    other => panic!(
                        "a losing {to} must be InvalidState {{ current: {won}, attempted: {to} }}, \
                         got {other:?}"
                    ),
                }
            }
        }
        assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), *winners[0]);
    }
}

/// The creator, the owner, a write grant or a superuser may cancel; a read grant or stranger gets `AccessDenied`.
pub fn operation_cancel_rights(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "mae");
    let creator = seed::user(&*s, "ned");
    let writer = seed::user(&*s, "ora");
    let reader = seed::user(&*s, "pat");
    let stranger = seed::user(&*s, "quo");
    let root = seed::superuser(&*s, "root");
    let c = seed::public_collection(&*s, &owner, "c");
    seed::grant(&*s, &c, &creator, AccessLevel::Write);
    seed::grant(&*s, &c, &writer, AccessLevel::Write);
    seed::grant(&*s, &c, &reader, AccessLevel::Read);

    let first = seed::operation(&*s, &c, &creator, OperationKind::Index);
    expect::access_denied(
        s.operations().cancel(first.uuid, reader.id.into()),
        "read grant",
    );
    expect::access_denied(
        s.operations().cancel(first.uuid, stranger.id.into()),
        "stranger",
    );
    assert_eq!(expect::ok(s.operations().get(first.uuid), "get"), first);

    for (i, actor) in [&creator, &owner, &writer, &root].into_iter().enumerate() {
        let op = if i == 0 {
            first.clone()
        } else {
            seed::operation(&*s, &c, &creator, OperationKind::Index)
        };
        let op = transition(&*s, &op, Processing);
        let cancelled = expect::ok(
            s.operations().cancel(op.uuid, actor.id.into()),
            &format!("cancel by {}", actor.username),
        );
        assert_eq!(cancelled.status, Cancelled);
        assert!(
            cancelled.completed_at.is_some(),
            "completed_at set by cancel"
        );
        assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), cancelled);
    }
    // The creator needs no grant: a reader cancels their own operation.
    let own = seed::operation(&*s, &c, &reader, OperationKind::Index);
    expect::ok(
        s.operations().cancel(own.uuid, reader.id.into()),
        "creator with read grant",
    );
}

/// Cancelling a terminal operation is `InvalidState { current, cancelled }`; an unknown one is `NotFound`.
pub fn operation_cancel_terminal_is_invalid_state(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "rae");
    let c = seed::collection(&*s, &u, "c");
    for terminal in [Completed, Failed, Cancelled] {
        let op = op_in(&*s, &c, &u, terminal);
        expect::invalid_state(
            s.operations().cancel(op.uuid, u.id.into()),
            terminal,
            OperationStatus::Cancelled,
            &format!("cancel {terminal}"),
        );
    }
    expect::not_found(
        s.operations().cancel(OperationUuid::new(), u.id.into()),
        Entity::Operation,
        "cancel unknown",
    );
}

fn uuids(ops: &[Operation]) -> Vec<OperationUuid> {
    ops.iter().map(|o| o.uuid).collect()
}

/// `list_for_collection` is newest first, filters on a status set and on kind, and totals every match.
pub fn operation_list_for_collection_filters(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "sid");
    let c = seed::collection(&*s, &u, "c");
    let other = seed::collection(&*s, &u, "other");
    let make = |kind, status| {
        let op = seed::operation(&*s, &c, &u, kind);
        match status {
            Completed => transition(&*s, &transition(&*s, &op, Processing), Completed),
            Pending => op,
            st => transition(&*s, &op, st),
        }
    };
    let o1 = make(OperationKind::Index, Completed);
    let o2 = make(OperationKind::Append, Failed);
    let o3 = make(OperationKind::Reindex, Cancelled);
    let o4 = make(OperationKind::Index, Completed);
    let o5 = make(OperationKind::Append, Pending);
    seed::operation(&*s, &other, &u, OperationKind::Index);

    let list = |statuses: Vec<OperationStatus>, kind, page| {
        let filter = OperationFilter { statuses, kind };
        expect::ok(
            s.operations().list_for_collection(c.id, &filter, page),
            "list",
        )
    };
    let all = list(vec![], None, PageRequest::default());
    assert_eq!(all.total, 5);
    assert_eq!(
        all.items,
        vec![o5.clone(), o4.clone(), o3.clone(), o2.clone(), o1.clone()],
        "newest first, rows equal to what was returned"
    );
    let p = list(vec![Completed], None, PageRequest::default());
    assert_eq!((uuids(&p.items), p.total), (vec![o4.uuid, o1.uuid], 2));
    let p = list(vec![Failed, Cancelled], None, PageRequest::default());
    assert_eq!((uuids(&p.items), p.total), (vec![o3.uuid, o2.uuid], 2));
    let p = list(vec![], Some(OperationKind::Index), PageRequest::default());
    assert_eq!((uuids(&p.items), p.total), (vec![o4.uuid, o1.uuid], 2));
    let p = list(
        vec![Pending, Processing],
        Some(OperationKind::Append),
        PageRequest::default(),
    );
    assert_eq!((uuids(&p.items), p.total), (vec![o5.uuid], 1));
    let p = list(vec![Processing], None, PageRequest::default());
    assert_eq!((p.items.len(), p.total), (0, 0));
    let p = list(vec![], None, PageRequest::new(1, 2));
    assert_eq!((uuids(&p.items), p.total), (vec![o4.uuid, o3.uuid], 5));
    let p = list(vec![], None, PageRequest::new(4, 2));
    assert_eq!((uuids(&p.items), p.total), (vec![o1.uuid], 5));
}

/// `list_for_user` returns only that user's operations across collections, newest first, filtered, with totals.
pub fn operation_list_for_user_filters(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "tia");
    let v = seed::user(&*s, "ulf");
    let a = seed::collection(&*s, &u, "a");
    let b = seed::collection(&*s, &v, "b");
    let x = seed::collection(&*s, &v, "x");
    let u1 = op_in(&*s, &a, &u, Completed);
    let u2 = op_in(&*s, &b, &u, Pending);
    let v1 = op_in(&*s, &x, &v, Pending);
    let u3 = op_in(&*s, &a, &u, Failed);

    let list = |user: UserId, statuses, kind| {
        let filter = OperationFilter { statuses, kind };
        expect::ok(
            s.operations()
                .list_for_user(user, &filter, PageRequest::default()),
            "list_for_user",
        )
    };
    let p = list(u.id, vec![], None);
    assert_eq!(
        (uuids(&p.items), p.total),
        (vec![u3.uuid, u2.uuid, u1.uuid], 3)
    );
    let p = list(u.id, vec![Pending, Processing], None);
    assert_eq!((uuids(&p.items), p.total), (vec![u2.uuid], 1));
    let p = list(u.id, vec![], Some(OperationKind::Index));
    assert_eq!(p.total, 3);
    let p = list(u.id, vec![], Some(OperationKind::Delete));
    assert_eq!((p.items.len(), p.total), (0, 0));
    let p = list(v.id, vec![], None);
    assert_eq!(p.items, vec![v1]);
    let page = expect::ok(
        s.operations()
            .list_for_user(u.id, &OperationFilter::default(), PageRequest::new(2, 1)),
        "page",
    );
    assert_eq!((uuids(&page.items), page.total), (vec![u1.uuid], 3));
}

/// `active_for_collection` lists the pending or processing operation, and nothing once it is terminal.
pub fn operation_active_for_collection(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "vera");
    let c = seed::collection(&*s, &u, "c");
    let active = || expect::ok(s.operations().active_for_collection(c.id), "active");
    assert!(active().is_empty());
    let op = seed::operation(&*s, &c, &u, OperationKind::Index);
    assert_eq!(active(), vec![op.clone()]);
    let op = transition(&*s, &op, Processing);
    assert_eq!(active(), vec![op.clone()]);
    transition(&*s, &op, Completed);
    assert!(active().is_empty());
}

/// `stuck(t)` lists active operations created before `t`, oldest first, and no terminal ones.
pub fn operation_stuck_lists_old_active_oldest_first(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "wes");
    let cs: Vec<Collection> = (0..4)
        .map(|i| seed::collection(&*s, &u, &format!("c{i}")))
        .collect();
    let start = repo_core::now();
    let old_processing = op_in(&*s, &cs[0], &u, Processing);
    let old_pending = op_in(&*s, &cs[1], &u, Pending);
    op_in(&*s, &cs[2], &u, Completed);
    let cut = repo_core::now();
    op_in(&*s, &cs[3], &u, Pending);

    let stuck = expect::ok(s.operations().stuck(cut), "stuck");
    assert_eq!(uuids(&stuck), vec![old_processing.uuid, old_pending.uuid]);
    assert_eq!(stuck[0], old_processing);
    assert!(expect::ok(s.operations().stuck(start), "stuck before any").is_empty());
}

/// `mark_failed_many` moves only still-active operations to failed with the message and returns how many moved.
pub fn operation_mark_failed_many_counts_only_active(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "xia");
    let cs: Vec<Collection> = (0..4)
        .map(|i| seed::collection(&*s, &u, &format!("c{i}")))
        .collect();
    let pending = op_in(&*s, &cs[0], &u, Pending);
    let processing = op_in(&*s, &cs[1], &u, Processing);
    let completed = op_in(&*s, &cs[2], &u, Completed);
    let cancelled = op_in(&*s, &cs[3], &u, Cancelled);
    let all = [
        pending.uuid,
        processing.uuid,
        completed.uuid,
        cancelled.uuid,
        OperationUuid::new(),
    ];
    assert_eq!(
        expect::ok(s.operations().mark_failed_many(&[], "x"), "empty"),
        0
    );
    assert_eq!(
        expect::ok(s.operations().mark_failed_many(&all, "worker lost"), "mark"),
        2
    );
    for op in [&pending, &processing] {
        let now = expect::ok(s.operations().get(op.uuid), "get");
        assert_eq!(now.status, Failed);
        assert_eq!(now.error_message.as_deref(), Some("worker lost"));
        assert!(now.completed_at.is_some(), "completed_at set on failing");
        assert_eq!(now.started_at, op.started_at);
    }
    assert_eq!(
        expect::ok(s.operations().get(completed.uuid), "get"),
        completed
    );
    assert_eq!(
        expect::ok(s.operations().get(cancelled.uuid), "get"),
        cancelled
    );
    assert_eq!(
        expect::ok(s.operations().mark_failed_many(&all, "again"), "again"),
        0,
        "nothing active is left"
    );
}

/// `merge_meta` merges the patch's top-level keys into `meta` (replacing nested values whole) and reads back equal.
pub fn operation_merge_meta_is_top_level(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "yan");
    let c = seed::collection(&*s, &u, "c");
    let mut new = NewOperation::new(c.id, u.id, OperationKind::Index, seed::config());
    new.meta = json!({"a": 1, "b": {"x": 1, "y": 2}, "keep": "me"});
    let op = expect::ok(s.operations().create(&new), "create");
    let merged = expect::ok(
        s.operations()
            .merge_meta(op.uuid, &json!({"b": {"z": 3}, "c": [1, 2], "a": null})),
        "merge",
    );
    assert_eq!(
        merged.meta,
        json!({"a": null, "b": {"z": 3}, "c": [1, 2], "keep": "me"})
    );
    assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), merged);
    expect::any_validation(
        s.operations().merge_meta(op.uuid, &json!([1])),
        "non-object patch",
    );
    expect::any_validation(
        s.operations().merge_meta(op.uuid, &json!({"k": "\u{0}"})),
        "NUL in patch",
    );
    assert_eq!(expect::ok(s.operations().get(op.uuid), "unchanged"), merged);
    expect::not_found(
        s.operations()
            .merge_meta(OperationUuid::new(), &json!({"a": 1})),
        Entity::Operation,
        "merge into unknown",
    );
}

/// `set_task_id` stores the task id; an unknown operation is `NotFound`.
pub fn operation_set_task_id(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "zed");
    let c = seed::collection(&*s, &u, "c");
    let op = seed::operation(&*s, &c, &u, OperationKind::Index);
    let set = expect::ok(s.operations().set_task_id(op.uuid, "celery-7f3a"), "set");
    assert_eq!(set.task_id.as_deref(), Some("celery-7f3a"));
    assert_eq!(set.status, op.status);
    assert_eq!(expect::ok(s.operations().get(op.uuid), "get"), set);
    expect::not_found(
        s.operations().set_task_id(OperationUuid::new(), "t"),
        Entity::Operation,
        "unknown",
    );
}

/// `get_with_access` applies the collection's access rule to the operation: `NotFound` when missing, `AccessDenied` when refused.
pub fn operation_get_with_access(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "abe");
    let reader = seed::user(&*s, "bea");
    let stranger = seed::user(&*s, "cy");
    let private = seed::collection(&*s, &owner, "private");
    let public = seed::public_collection(&*s, &owner, "public");
    seed::grant(&*s, &private, &reader, AccessLevel::Read);
    let op = seed::operation(&*s, &private, &owner, OperationKind::Index);
    let pub_op = seed::operation(&*s, &public, &owner, OperationKind::Index);
    let ops = s.operations();
    assert_eq!(
        expect::ok(
            ops.get_with_access(op.uuid, owner.id.into(), AccessLevel::Admin),
            "owner"
        ),
        op
    );
    assert_eq!(
        expect::ok(
            ops.get_with_access(op.uuid, reader.id.into(), AccessLevel::Read),
            "read"
        ),
        op
    );
    expect::access_denied(
        ops.get_with_access(op.uuid, reader.id.into(), AccessLevel::Write),
        "write",
    );
    expect::access_denied(
        ops.get_with_access(op.uuid, stranger.id.into(), AccessLevel::Read),
        "stranger",
    );
    expect::ok(
        ops.get_with_access(pub_op.uuid, stranger.id.into(), AccessLevel::Read),
        "public",
    );
    expect::not_found(
        ops.get_with_access(OperationUuid::new(), owner.id.into(), AccessLevel::Read),
        Entity::Operation,
        "unknown operation",
    );
}

/// Ten threads merging different keys into one operation's meta at once lose none of them.
pub fn operation_concurrent_merge_meta_loses_no_key(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "val");
    let c = seed::collection(&*s, &u, "c");
    let op = seed::operation(&*s, &c, &u, OperationKind::Index);
    let store = Arc::clone(&s);
    let uuid = op.uuid;
    let results = race(10, move |i| {
        store
            .operations()
            .merge_meta(uuid, &json!({ format!("k{i}"): i }))
    });
    for r in results {
        expect::ok(r, "concurrent merge");
    }
    let meta = expect::ok(s.operations().get(op.uuid), "get").meta;
    let expected: serde_json::Map<String, serde_json::Value> =
        (0..10).map(|i| (format!("k{i}"), json!(i))).collect();
    assert_eq!(
        meta,
        serde_json::Value::Object(expected),
        "a merge was lost"
    );
}

/// Every operation write refuses NUL (task id, bulk failure message) with `Validation`, changing nothing.
pub fn operation_writes_refuse_nul(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "wyn");
    let c = seed::collection(&*s, &u, "c");
    let op = seed::operation(&*s, &c, &u, OperationKind::Index);
    expect::validation(
        s.operations().set_task_id(op.uuid, "t\0"),
        Field::TaskId,
        "task id",
    );
    expect::any_validation(
        s.operations().mark_failed_many(&[op.uuid], "lost\0"),
        "bulk failure message",
    );
    assert_eq!(expect::ok(s.operations().get(op.uuid), "unchanged"), op);
}

/// `mark_failed_many` takes any number of ids (70,000, beyond every bind-parameter limit) and counts duplicates once.
pub fn operation_mark_failed_many_accepts_any_number_of_ids(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "xan");
    let a = seed::collection(&*s, &u, "a");
    let b = seed::collection(&*s, &u, "b");
    let op_a = seed::operation(&*s, &a, &u, OperationKind::Index);
    let op_b = op_in(&*s, &b, &u, Processing);
    let mut ids: Vec<OperationUuid> = (0..70_000).map(|_| OperationUuid::new()).collect();
    ids.insert(12_345, op_a.uuid);
    ids.push(op_b.uuid);
    ids.push(op_a.uuid);
    assert_eq!(
        expect::ok(
            s.operations().mark_failed_many(&ids, "node lost"),
            "70,000 ids"
        ),
        2
    );
    for op in [&op_a, &op_b] {
        assert_eq!(
            expect::ok(s.operations().get(op.uuid), "get").status,
            Failed
        );
    }
}

fn keyed(c: &Collection, u: &User, key: &str, config: serde_json::Value) -> NewOperation {
    NewOperation::new(c.id, u.id, OperationKind::Index, config).with_idempotency_key(key)
}

/// A create with an idempotency key already used in the collection returns that operation as it is now (active or terminal), never `Conflict`; keys are per collection.
pub fn operation_idempotency_key_returns_existing(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "ivy");
    let c = seed::collection(&*s, &u, "c");
    let other = seed::collection(&*s, &u, "other");
    let first = expect::ok(
        s.operations()
            .create(&keyed(&c, &u, "job-1", json!({"n": 1}))),
        "first",
    );
    assert_eq!(first.idempotency_key.as_deref(), Some("job-1"));
    // A retry while the first is active: the first, not Conflict { ActiveOperation }.
    let retry = expect::ok(
        s.operations()
            .create(&keyed(&c, &u, "job-1", json!({"n": 2}))),
        "retry while active",
    );
    assert_eq!(
        retry, first,
        "the retry returns the first operation unchanged"
    );
    // Another key while the first is active: the collection's rule still holds.
    expect::conflict(
        s.operations()
            .create(&keyed(&c, &u, "job-2", json!({"n": 3}))),
        ConflictReason::ActiveOperation,
        "another key while active",
    );
    let done = transition(&*s, &first, Processing);
    let done = transition(&*s, &done, Completed);
    let again = expect::ok(
        s.operations()
            .create(&keyed(&c, &u, "job-1", json!({"n": 4}))),
        "retry after completion",
    );
    assert_eq!(
        again, done,
        "a terminal operation is returned, not re-created"
    );
    let second = expect::ok(
        s.operations()
            .create(&keyed(&c, &u, "job-2", json!({"n": 5}))),
        "new key",
    );
    assert_ne!(second.uuid, first.uuid);
    let elsewhere = expect::ok(
        s.operations()
            .create(&keyed(&other, &u, "job-1", json!({"n": 6}))),
        "same key in another collection",
    );
    assert_ne!(elsewhere.uuid, first.uuid, "keys are unique per collection");
    let listed = expect::ok(
        s.operations().list_for_collection(
            c.id,
            &OperationFilter::default(),
            PageRequest::first(10),
        ),
        "list",
    );
    assert_eq!(listed.total, 2, "retries inserted nothing: {listed:?}");
    assert_eq!(expect::ok(s.operations().get(first.uuid), "get"), done);
}

/// An idempotency key is 1-128 ASCII letters, digits or `-_.:`; anything else is `Validation { idempotency_key }`.
pub fn operation_idempotency_key_is_validated(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "val");
    let c = seed::collection(&*s, &u, "c");
    let long = "k".repeat(129);
    for bad in ["", "has space", " lead", "é", "nul\0", long.as_str()] {
        expect::validation(
            s.operations().create(&keyed(&c, &u, bad, seed::config())),
            Field::IdempotencyKey,
            &format!("key {bad:?}"),
        );
    }
    let longest = "k".repeat(128);
    let op = expect::ok(
        s.operations()
            .create(&keyed(&c, &u, &longest, seed::config())),
        "128 characters",
    );
    assert_eq!(op.idempotency_key.as_deref(), Some(longest.as_str()));
}

/// Creators racing with the same idempotency key all get the same operation, and one row exists.
pub fn operation_racing_creators_same_key_get_one(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "rae");
    let c = seed::collection(&*s, &u, "c");
    let store: Arc<dyn Store> = Arc::clone(&s);
    let (cid, uid) = (c.id, u.id);
    let results = race(16, move |i| {
        store.operations().create(
            &NewOperation::new(cid, uid, OperationKind::Index, json!({"racer": i}))
                .with_idempotency_key("same-key"),
        )
    });
    let ops: Vec<Operation> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| expect::ok(r, &format!("racer {i}")))
        .collect();
    for op in &ops {
        assert_eq!(op.uuid, ops[0].uuid, "every racer gets the same operation");
    }
    let listed = expect::ok(
        s.operations().list_for_collection(
            c.id,
            &OperationFilter::default(),
            PageRequest::first(50),
        ),
        "list",
    );
    assert_eq!(listed.total, 1, "one row: {listed:?}");
}

/// `get_by_task_id` finds the newest operation with that task-queue id; an unknown one is `NotFound`.
pub fn operation_get_by_task_id(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "tia");
    let c = seed::collection(&*s, &u, "c");
    let old = seed::operation(&*s, &c, &u, OperationKind::Index);
    let old = expect::ok(s.operations().set_task_id(old.uuid, "task-1"), "set old");
    assert_eq!(
        expect::ok(s.operations().get_by_task_id("task-1"), "by task id"),
        old
    );
    transition(&*s, &old, Cancelled);
    let new = seed::operation(&*s, &c, &u, OperationKind::Append);
    let new = expect::ok(s.operations().set_task_id(new.uuid, "task-1"), "set new");
    assert_eq!(
        expect::ok(s.operations().get_by_task_id("task-1"), "newest"),
        new
    );
    expect::not_found(
        s.operations().get_by_task_id("task-unknown"),
        Entity::Operation,
        "unknown task id",
    );
    expect::validation(
        s.operations().get_by_task_id("t\0"),
        Field::TaskId,
        "NUL in task id",
    );
}

/// Inside a unit of work a create with a key the transaction already used returns that operation, and after a rollback the key is free again.
pub fn operation_idempotency_key_in_unit_of_work(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "uow");
    let c = seed::collection(&*s, &u, "c");
    let rolled_back: RepoResult<()> = s.transaction(|tx| {
        let first = tx
            .operations()
            .create(&keyed(&c, &u, "k1", json!({"n": 1})))?;
        let retry = tx
            .operations()
            .create(&keyed(&c, &u, "k1", json!({"n": 2})))?;
        assert_eq!(retry, first, "the retry inside the unit of work");
        Err(RepoError::validation(Field::Value, "roll back"))
    });
    expect::validation(rolled_back, Field::Value, "the unit of work's own error");
    let committed = expect::ok(
        s.transaction(|tx| {
            let first = tx
                .operations()
                .create(&keyed(&c, &u, "k1", json!({"n": 3})))?;
            let retry = tx
                .operations()
                .create(&keyed(&c, &u, "k1", json!({"n": 4})))?;
            assert_eq!(retry, first);
            Ok(first)
        }),
        "commit",
    );
    assert_eq!(
        committed.config,
        json!({"n": 3}),
        "a new row after the rollback"
    );
    let retry = expect::ok(
        s.operations().create(&keyed(&c, &u, "k1", json!({"n": 5}))),
        "retry after commit",
    );
    assert_eq!(retry, committed);
}
