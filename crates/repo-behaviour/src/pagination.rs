//! Page requests as every listing applies them.

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{
    Cursor, CursorPage, CursorRequest, Field, OperationFilter, OperationKind, PageRequest,
    RepoResult, UserFilter,
};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __pagination_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            pagination::pagination_limit_is_clamped,
            pagination::pagination_offset_past_end_is_empty_with_total,
            pagination::pagination_cursor_is_stable_under_inserts,
            pagination::pagination_cursor_malformed_is_validation,
        }
    };
}

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

/// Walks a cursor listing `limit` rows at a time, calling `between` after every page;
/// returns the ids in order and the number of pages.
fn walk<T, K: Clone>(
    limit: u32,
    fetch: impl Fn(&CursorRequest) -> RepoResult<CursorPage<T>>,
    key: impl Fn(&T) -> K,
    mut between: impl FnMut(),
) -> (Vec<K>, usize) {
    let mut request = CursorRequest::first(limit);
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let page = expect::ok(fetch(&request), &format!("page {pages}"));
        pages += 1;
        assert!(page.items.len() <= limit as usize, "page over the limit");
        seen.extend(page.items.iter().map(&key));
        between();
        match page.next {
            Some(next) => {
                // The cursor travels as its string, as it would through an HTTP client.
                let next = expect::ok(Cursor::decode(&next.encode()), "decode the cursor");
                request = CursorRequest::after(next, limit);
            }
            None => return (seen, pages),
        }
        assert!(pages < 100, "the cursor walk does not end");
    }
}

/// Cursor pages of users, visible collections and operations (newest first) return every row that existed at the start exactly once, in order, while rows are inserted between the fetches; the page that ends the listing has no next cursor.
pub fn pagination_cursor_is_stable_under_inserts(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "walker");
    for i in 0..5 {
        seed::user(&*s, &format!("u{i}"));
    }
    let all = |s: &dyn repo_core::Store| {
        expect::ok(
            s.users()
                .list(UserFilter::default(), PageRequest::first(1000)),
            "offset list",
        )
        .items
        .iter()
        .map(|u| u.id)
        .collect::<Vec<_>>()
    };
    let before = all(&*s);
    assert_eq!(before.len(), 6);
    let mut n = 0;
    let (walked, pages) = walk(
        3,
        |r| s.users().list_by_cursor(UserFilter::default(), r),
        |u| u.id,
        || {
            n += 1;
            seed::user(&*s, &format!("late{n}"));
        },
    );
    assert_eq!(walked, before, "no user skipped or repeated");
    assert_eq!(
        pages, 2,
        "6 rows in pages of 3: the second page has no next cursor"
    );

    for i in 0..5 {
        seed::collection(&*s, &u, &format!("c{i}"));
    }
    let before: Vec<_> = expect::ok(
        s.collections()
            .list_visible(u.id.into(), PageRequest::first(1000)),
        "offset collections",
    )
    .items
    .iter()
    .map(|c| c.id)
    .collect();
    let mut n = 0;
    let (walked, _) = walk(
        2,
        |r| s.collections().list_visible_by_cursor(u.id.into(), r),
        |c| c.id,
        || {
            n += 1;
            seed::collection(&*s, &u, &format!("late{n}"));
        },
    );
    assert_eq!(walked, before, "no collection skipped or repeated");

    let c = seed::collection(&*s, &u, "ops");
    let cancel = |op: &repo_core::Operation| {
        expect::ok(s.operations().cancel(op.uuid, u.id.into()), "cancel");
    };
    for _ in 0..5 {
        cancel(&seed::operation(&*s, &c, &u, OperationKind::Index));
    }
    let filter = OperationFilter::default();
    let before: Vec<_> = expect::ok(
        s.operations()
            .list_for_collection(c.id, &filter, PageRequest::first(1000)),
        "offset operations",
    )
    .items
    .iter()
    .map(|o| o.uuid)
    .collect();
    let (walked, _) = walk(
        2,
        |r| {
            s.operations()
                .list_for_collection_by_cursor(c.id, &filter, r)
        },
        |o| o.uuid,
        || cancel(&seed::operation(&*s, &c, &u, OperationKind::Append)),
    );
    assert_eq!(walked, before, "no operation skipped or repeated");
    let mine = expect::ok(
        s.operations()
            .list_for_user(u.id, &filter, PageRequest::first(1000)),
        "offset mine",
    );
    let (walked, _) = walk(
        4,
        |r| s.operations().list_for_user_by_cursor(u.id, &filter, r),
        |o| o.uuid,
        || {},
    );
    let expected: Vec<_> = mine.items.iter().map(|o| o.uuid).collect();
    assert_eq!(walked, expected, "cursor and offset pages agree");
}

/// A cursor string the library did not write, or a cursor of a listing keyed by another id type, is `Validation { cursor }`; a limit of 0 is clamped to one row.
pub fn pagination_cursor_malformed_is_validation(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "mal");
    seed::user(&*s, "other");
    for bad in ["", "garbage", "i1", "u12.34"] {
        expect::validation(
            Cursor::decode(bad),
            Field::Cursor,
            &format!("decode {bad:?}"),
        );
    }
    let c = seed::collection(&*s, &u, "c");
    let wrong = CursorRequest::after(c.cursor(), 10);
    expect::validation(
        s.users().list_by_cursor(UserFilter::default(), &wrong),
        Field::Cursor,
        "a collection cursor on users",
    );
    let wrong = CursorRequest::after(u.cursor(), 10);
    expect::validation(
        s.collections().list_visible_by_cursor(u.id.into(), &wrong),
        Field::Cursor,
        "a user cursor on collections",
    );
    let one = expect::ok(
        s.users()
            .list_by_cursor(UserFilter::default(), &CursorRequest::first(0)),
        "limit 0",
    );
    assert_eq!(one.items.len(), 1);
    assert!(one.next.is_some(), "a second user follows");
}
