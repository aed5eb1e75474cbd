//! The error contract seen from outside: classification, pool exhaustion, the handle.

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{
    Attempt, CollectionId, ConflictReason, Entity, Field, NewChunk, NewCollection, NewOperation,
    NewUser, OperationKind, OperationStatus, PoolConfig, RepoError, State, StoreConfig,
    UnavailableReason, UserFilter,
};
use std::time::{Duration, Instant};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __errors_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            errors::error_is_retryable_classification,
            errors::error_pool_exhaustion_is_unavailable_and_retryable,
            errors::store_reports_backend_and_health,
            errors::error_already_exists_names_entity_and_field,
            errors::error_bulk_item_index_is_a_field,
            errors::error_invalid_state_names_the_states,
            errors::error_codes_and_statuses_of_repository_errors,
        }
    };
}

/// Errors the repositories return are classified by `is_retryable`: `Conflict { ActiveOperation }`, `NotFound`, `AlreadyExists`, `Validation`, `InvalidState` are not retryable.
pub fn error_is_retryable_classification(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &u, "c");
    seed::operation(&*s, &c, &u, repo_core::OperationKind::Index);
    let conflict = expect::err(
        s.operations().create(&NewOperation::new(
            c.id,
            u.id,
            OperationKind::Append,
            seed::config(),
        )),
        "second active operation",
    );
    assert!(expect::is_conflict(
        &conflict,
        ConflictReason::ActiveOperation
    ));
    let not_found = expect::err(s.collections().get(CollectionId::new()), "unknown");
    let exists = expect::err(
        s.users()
            .create(&NewUser::new("alice", "other@example.com", seed::HASH)),
        "duplicate",
    );
    let invalid = expect::err(
        s.collections()
            .update_status(c.id, repo_core::CollectionStatus::Ready, None),
        "pending -> ready",
    );
    let validation = expect::err(s.api_keys().verify("short"), "malformed");
    for e in [&conflict, &not_found, &exists, &invalid, &validation] {
        assert!(!e.is_retryable(), "{e:?} must not be retryable");
        assert!(
            !e.is_transient_conflict(),
            "{e:?} must not be a transient conflict"
        );
    }
    assert!(matches!(not_found, RepoError::NotFound { .. }));
    assert!(matches!(exists, RepoError::AlreadyExists { .. }));
    assert!(matches!(invalid, RepoError::InvalidState { .. }));
}

/// With every pooled connection held, a checkout fails within the pool timeout as `Unavailable { PoolExhausted }`, which is retryable (code `unavailable`, HTTP 503 with a retry hint).
pub fn error_pool_exhaustion_is_unavailable_and_retryable(h: &dyn Harness) {
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 0,
            connection_timeout: Duration::from_millis(300),
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    let tiny = h.open_with(config);
    let holding = std::sync::Arc::clone(&tiny);
    // A unit of work on another thread holds the only connection meanwhile (on its
    // own thread a call on the store is refused outright, not queued).
    let (held_tx, held) = std::sync::mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let (outcome, waited) = std::thread::scope(|scope| {
        let holder = scope.spawn(move || {
            holding.transaction(|_tx| {
                let _ = held_tx.send(());
                let _ = release.recv();
                Ok(())
            })
        });
        held.recv().unwrap_or_else(|_| {
            panic!(
                "the holding unit of work did not start: {:?}",
                holder.join()
            )
        });
        let started = Instant::now();
        let outcome = tiny.users().count(UserFilter::default());
        let waited = started.elapsed();
        let _ = release_tx.send(());
        (outcome, waited)
    });
    let e = expect::err(outcome, "checkout from an exhausted pool");
    match &e {
        RepoError::Unavailable {
            reason: UnavailableReason::PoolExhausted,
            ..
        } => {}
        other => panic!("expected Unavailable {{ PoolExhausted }}, got {other:?}"),
    }
    assert!(e.is_retryable(), "pool exhaustion must be retryable");
    assert_eq!((e.code(), e.http_status()), ("unavailable", 503));
    assert!(e.retry_after().is_some(), "a 503 carries a retry hint");
    assert!(
        waited < Duration::from_secs(10),
        "checkout must give up after the pool timeout, waited {waited:?}"
    );
    expect::ok(
        tiny.users().count(UserFilter::default()),
        "pool usable again",
    );
}

/// The handle reports its backend and answers `health`.
pub fn store_reports_backend_and_health(h: &dyn Harness) {
    let s = h.store();
    assert_eq!(s.backend(), h.backend());
    expect::ok(s.health(), "health");
    let again = h.open_with(StoreConfig::default());
    assert_eq!(again.backend(), h.backend());
    let u = seed::user(&*s, "bob");
    assert_eq!(
        expect::ok(
            again.users().get(u.id),
            "a second handle sees the same database"
        ),
        u
    );
}

/// A duplicate email is `AlreadyExists { entity: Entity::User, field: Field::Email }` and a duplicate collection name `AlreadyExists { entity: Entity::Collection, field: Field::Name }`, both with code `already_exists` and HTTP status 409.
pub fn error_already_exists_names_entity_and_field(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let e = expect::err(
        s.users()
            .create(&NewUser::new("alice2", "ALICE@example.com", seed::HASH)),
        "duplicate email",
    );
    assert!(
        matches!(
            e,
            RepoError::AlreadyExists {
                entity: Entity::User,
                field: Field::Email,
            }
        ),
        "duplicate email: {e:?}"
    );
    assert_eq!((e.code(), e.http_status()), ("already_exists", 409));
    assert_eq!(e.to_string(), "user already exists with this email");
    seed::collection(&*s, &u, "manuals");
    let e = expect::err(
        s.collections()
            .create(&NewCollection::new(" manuals ", u.id)),
        "duplicate collection name",
    );
    assert!(
        matches!(
            e,
            RepoError::AlreadyExists {
                entity: Entity::Collection,
                field: Field::Name,
            }
        ),
        "duplicate collection name: {e:?}"
    );
    assert_eq!((e.code(), e.http_status()), ("already_exists", 409));
}

/// A bulk call that refuses item k reports k as the error's `item` (and in the message), with the field, code `validation_failed` and HTTP status 422; an unknown collection in a document batch is `NotFound { entity: Entity::Collection, item: Some(k) }` (404).
pub fn error_bulk_item_index_is_a_field(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bob");
    let c = seed::collection(&*s, &u, "c");
    let mut docs: Vec<_> = (0..6).map(|n| seed::new_document(c.id, n)).collect();
    docs[4].content_hash = "not a hash".into();
    let e = expect::err(s.documents().register_many(&docs), "bad hash at 4");
    assert!(
        matches!(
            e,
            RepoError::Validation {
                field: Field::ContentHash,
                item: Some(4),
                ..
            }
        ),
        "bad hash at 4: {e:?}"
    );
    assert_eq!(e.item(), Some(4));
    assert_eq!((e.code(), e.http_status()), ("validation_failed", 422));
    assert!(e.to_string().contains("item 4: "), "{e}");

    let missing = CollectionId::new();
    let mut docs: Vec<_> = (10..15).map(|n| seed::new_document(c.id, n)).collect();
    docs[2].collection_id = missing;
    let e = expect::err(
        s.documents().register_many(&docs),
        "unknown collection at 2",
    );
    match &e {
        RepoError::NotFound {
            entity: Entity::Collection,
            key,
            item: Some(2),
        } => assert_eq!(key, &missing.to_string()),
        other => panic!("unknown collection at 2: {other:?}"),
    }
    assert_eq!((e.code(), e.http_status()), ("not_found", 404));

    let d = seed::document(&*s, c.id, 100);
    let chunks = vec![
        NewChunk::new(d.id, 0, "zero"),
        NewChunk::new(d.id, 1, "one"),
        NewChunk::new(d.id, 2, "two\0"),
    ];
    let e = expect::err(s.chunks().insert_many(c.id, &chunks), "NUL at 2");
    assert!(
        matches!(
            e,
            RepoError::Validation {
                field: Field::Content,
                item: Some(2),
                ..
            }
        ),
        "NUL at 2: {e:?}"
    );
    assert_eq!(
        expect::ok(s.chunks().count(c.id), "nothing written"),
        0,
        "a refused batch writes nothing"
    );
    // Outside a batch there is no item.
    let e = expect::err(
        s.users()
            .create(&NewUser::new("", "x@example.com", seed::HASH)),
        "empty username",
    );
    assert!(
        matches!(
            e,
            RepoError::Validation {
                field: Field::Username,
                item: None,
                ..
            }
        ),
        "{e:?}"
    );
}

/// A refused operation transition is `InvalidState` whose `current` and `attempted` are the operation statuses (`State::Operation(Completed)`, `Attempt::Operation(Processing)`), code `invalid_state`, HTTP status 409; so is cancelling a terminal operation and a restricting delete of an owner (`State::OwnsCollections`, `Attempt::Delete`).
pub fn error_invalid_state_names_the_states(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "carol");
    let c = seed::collection(&*s, &u, "c");
    let op = seed::operation(&*s, &c, &u, OperationKind::Index);
    expect::ok(
        s.operations()
            .transition(op.uuid, OperationStatus::Processing, None),
        "pending -> processing",
    );
    expect::ok(
        s.operations()
            .transition(op.uuid, OperationStatus::Completed, None),
        "processing -> completed",
    );
    let e = expect::err(
        s.operations()
            .transition(op.uuid, OperationStatus::Processing, None),
        "completed -> processing",
    );
    assert!(
        matches!(
            e,
            RepoError::InvalidState {
                current: State::Operation(OperationStatus::Completed),
                attempted: Attempt::Operation(OperationStatus::Processing),
            }
        ),
        "completed -> processing: {e:?}"
    );
    assert_eq!((e.code(), e.http_status()), ("invalid_state", 409));
    assert_eq!(e.to_string(), "cannot move from completed to processing");
    let e = expect::err(
        s.operations().cancel(op.uuid, u.id.into()),
        "cancel completed",
    );
    assert!(
        matches!(
            e,
            RepoError::InvalidState {
                current: State::Operation(OperationStatus::Completed),
                attempted: Attempt::Operation(OperationStatus::Cancelled),
            }
        ),
        "cancel completed: {e:?}"
    );
    let e = expect::err(
        s.users().delete(u.id, repo_core::DeleteMode::Restrict),
        "delete an owner",
    );
    assert!(
        matches!(
            e,
            RepoError::InvalidState {
                current: State::OwnsCollections,
                attempted: Attempt::Delete,
            }
        ),
        "delete an owner: {e:?}"
    );
    assert!(!e.is_retryable());
}

/// An unknown record is `NotFound` naming its entity (`Entity::Collection`, `Entity::Operation`, `Entity::User`) with code `not_found`, HTTP status 404, no item and no retry hint; a second active operation is `Conflict` with code `conflict` and 409, without a retry hint.
pub fn error_codes_and_statuses_of_repository_errors(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dave");
    let c = seed::collection(&*s, &u, "c");
    for (e, entity) in [
        (
            expect::err(s.collections().get(CollectionId::new()), "collection"),
            Entity::Collection,
        ),
        (
            expect::err(
                s.operations().get(repo_core::OperationUuid::new()),
                "operation",
            ),
            Entity::Operation,
        ),
        (
            expect::err(s.users().get(repo_core::UserId(i64::MAX)), "user"),
            Entity::User,
        ),
    ] {
        match &e {
            RepoError::NotFound {
                entity: found,
                item: None,
                ..
            } if *found == entity => {}
            other => panic!("expected NotFound {{ {entity} }}, got {other:?}"),
        }
        assert_eq!((e.code(), e.http_status()), ("not_found", 404));
        assert_eq!(e.retry_after(), None);
    }
    seed::operation(&*s, &c, &u, OperationKind::Index);
    let e = expect::err(
        s.operations().create(&NewOperation::new(
            c.id,
            u.id,
            OperationKind::Append,
            seed::config(),
        )),
        "second active operation",
    );
    assert!(expect::is_conflict(&e, ConflictReason::ActiveOperation));
    assert_eq!((e.code(), e.http_status()), ("conflict", 409));
    assert_eq!(e.retry_after(), None);
}
