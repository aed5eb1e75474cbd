//! What a store tells about itself: pool counts and a bounded health check.

use crate::expect;
use crate::Harness;
use repo_core::{PoolConfig, RepoError, StoreConfig, UnavailableReason, UserFilter};
use std::time::{Duration, Instant};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __observability_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            observability::pool_status_counts_connections_in_use,
            observability::health_reports_an_exhausted_pool_as_such,
        }
    };
}

/// `pool_status` reports the configured maximum and counts a connection held by a unit of work as in use, and as idle again afterwards.
pub fn pool_status_counts_connections_in_use(h: &dyn Harness) {
    let store = h.open_with(StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 3,
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    });
    expect::ok(store.users().count(UserFilter::default()), "warm up");
    let before = store.pool_status();
    assert_eq!(before.max, 4, "{before:?}");
    assert_eq!(before.in_use, 0, "nothing held between calls: {before:?}");
    assert!(before.open >= 1 && before.open <= before.max, "{before:?}");
    assert_eq!(before.idle + before.in_use, before.open, "{before:?}");
    let during = expect::ok(
        store.transaction(|_| Ok(store.pool_status())),
        "status inside a unit of work",
    );
    assert_eq!(during.in_use, 1, "the unit of work holds one: {during:?}");
    assert_eq!(during.idle + during.in_use, during.open, "{during:?}");
    let after = store.pool_status();
    assert_eq!(
        after.in_use, 0,
        "released after the unit of work: {after:?}"
    );
}

/// `health` reports a failure that comes before its timeout as itself (`Unavailable { PoolExhausted }` while a unit of work holds the only connection), not as a timeout, and answers again afterwards.
pub fn health_reports_an_exhausted_pool_as_such(h: &dyn Harness) {
    let store = h.open_with(StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 0,
            connection_timeout: Duration::from_millis(300),
            ..PoolConfig::default()
        },
        health_timeout: Duration::from_secs(20),
        ..StoreConfig::default()
    });
    let started = Instant::now();
    let held = store.transaction(|_| Ok(store.health()));
    let result = expect::ok(held, "outer unit of work");
    match &result {
        Err(RepoError::Unavailable {
            reason: UnavailableReason::PoolExhausted,
            ..
        }) => {}
        other => panic!("expected Unavailable {{ PoolExhausted }}, got {other:?}"),
    }
    // Generous bound against a hang (the health timeout is 20 s).
    assert!(started.elapsed() < Duration::from_secs(10));
    expect::ok(store.health(), "healthy once the connection is back");
}
