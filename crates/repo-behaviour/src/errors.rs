//! The error contract seen from outside: classification, pool exhaustion, the handle.

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{
    CollectionId, ConflictReason, NewOperation, NewUser, OperationKind, PoolConfig, RepoError,
    StoreConfig, UnavailableReason, UserFilter,
};
use std::time::{Duration, Instant};

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

/// With every pooled connection held, a checkout fails within the pool timeout as `Unavailable { PoolExhausted }`, which is retryable.
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
