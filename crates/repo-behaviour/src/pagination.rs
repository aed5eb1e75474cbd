//! Page requests as every listing applies them.

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{OperationFilter, PageRequest, UserFilter};

/// A page request's limit is clamped to `1..=MAX_LIMIT` even when built by hand: limit 0 returns one row.
pub fn pagination_limit_is_clamped(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    seed::user(&*s, "bob");
    seed::user(&*s, "carl");
    let zero = PageRequest {
        offset: 0,
        limit: 0,
    };
    let page = expect::ok(s.users().list(UserFilter::default(), zero), "limit 0");
    assert_eq!((page.items.len(), page.total), (1, 3));
    let huge = PageRequest {
        offset: 0,
        limit: u32::MAX,
    };
    let page = expect::ok(
        s.users().list(UserFilter::default(), huge),
        "limit u32::MAX",
    );
    assert_eq!((page.items.len(), page.total), (3, 3));
    let c = seed::collection(&*s, &u, "c");
    let page = expect::ok(
        s.collections().list_visible(u.id.into(), zero),
        "collections limit 0",
    );
    assert_eq!((page.items.len(), page.total), (1, 1));
    let page = expect::ok(
        s.operations()
            .list_for_collection(c.id, &OperationFilter::default(), zero),
        "operations limit 0",
    );
    assert_eq!((page.items.len(), page.total), (0, 0));
}

/// An offset past the end returns no rows and still the full total, on every listing.
pub fn pagination_offset_past_end_is_empty_with_total(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dora");
    let c = seed::collection(&*s, &u, "c");
    seed::operation(&*s, &c, &u, repo_core::OperationKind::Index);
    let far = PageRequest::new(u64::MAX, 10);
    let users = expect::ok(s.users().list(UserFilter::default(), far), "users");
    assert_eq!((users.items.len(), users.total), (0, 1));
    let cols = expect::ok(
        s.collections().list_visible(u.id.into(), far),
        "collections",
    );
    assert_eq!((cols.items.len(), cols.total), (0, 1));
    let filter = OperationFilter::default();
    let ops = expect::ok(
        s.operations().list_for_collection(c.id, &filter, far),
        "ops",
    );
    assert_eq!((ops.items.len(), ops.total), (0, 1));
    let mine = expect::ok(s.operations().list_for_user(u.id, &filter, far), "mine");
    assert_eq!((mine.items.len(), mine.total), (0, 1));
}
