//! Grants and the access rule: owner ⇒ admin; public ⇒ read; otherwise the highest
//! grant; superuser ⇒ admin. Missing is `NotFound`, refused is `AccessDenied`.

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{
    AccessLevel, ApiKeyId, Collection, CollectionId, Entity, Grantee, PageRequest, UserId,
};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __access_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            access::access_owner_holds_admin,
            access::access_public_collection_is_read_only_for_others,
            access::access_private_collection_is_denied_to_strangers,
            access::access_grant_levels,
            access::access_is_highest_of_public_and_grant,
            access::access_superuser_holds_admin,
            access::access_missing_is_not_found_not_denied,
            access::grant_twice_changes_level,
            access::grant_revoke_removes_access,
            access::grant_to_unknown_is_not_found,
            access::list_visible_is_owned_public_and_granted,
            access::list_visible_paginates,
            access::grant_racing_upserts_keep_one_row,
        }
    };
}

const LEVELS: [AccessLevel; 3] = [AccessLevel::Read, AccessLevel::Write, AccessLevel::Admin];

/// The owner holds admin access and passes every `get_with_access` check.
pub fn access_owner_holds_admin(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &owner, "c");
    assert_eq!(
        expect::ok(
            s.collections().access_level(c.id, owner.id.into()),
            "access_level"
        ),
        Some(AccessLevel::Admin)
    );
    for level in LEVELS {
        assert_eq!(
            expect::ok(
                s.collections()
                    .get_with_access(c.id, owner.id.into(), level),
                "owner"
            ),
            c
        );
    }
}

/// A public collection gives everyone read access, and nothing more.
pub fn access_public_collection_is_read_only_for_others(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "bob");
    let other = seed::user(&*s, "carl");
    let c = seed::public_collection(&*s, &owner, "c");
    assert_eq!(
        expect::ok(
            s.collections().access_level(c.id, other.id.into()),
            "access_level"
        ),
        Some(AccessLevel::Read)
    );
    expect::ok(
        s.collections()
            .get_with_access(c.id, other.id.into(), AccessLevel::Read),
        "read public",
    );
    for level in [AccessLevel::Write, AccessLevel::Admin] {
        expect::access_denied(
            s.collections()
                .get_with_access(c.id, other.id.into(), level),
            &format!("{level} on a public collection"),
        );
    }
}

/// A private collection gives a stranger no access: `None`, and `AccessDenied` on every check.
pub fn access_private_collection_is_denied_to_strangers(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "dina");
    let stranger = seed::user(&*s, "emil");
    let c = seed::collection(&*s, &owner, "c");
    assert_eq!(
        expect::ok(
            s.collections().access_level(c.id, stranger.id.into()),
            "access_level"
        ),
        None
    );
    for level in LEVELS {
        expect::access_denied(
            s.collections()
                .get_with_access(c.id, stranger.id.into(), level),
            &format!("stranger asking for {level}"),
        );
    }
}

/// A grant of read, write or admin gives exactly that level: its checks pass, higher ones are `AccessDenied`.
pub fn access_grant_levels(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "fay");
    for (i, granted) in LEVELS.into_iter().enumerate() {
        let c = seed::collection(&*s, &owner, &format!("c-{granted}"));
        let u = seed::user(&*s, &format!("user{i}"));
        seed::grant(&*s, &c, &u, granted);
        assert_eq!(
            expect::ok(
                s.collections().access_level(c.id, u.id.into()),
                "access_level"
            ),
            Some(granted)
        );
        for needed in LEVELS {
            let r = s.collections().get_with_access(c.id, u.id.into(), needed);
            if granted.allows(needed) {
                assert_eq!(
                    expect::ok(r, &format!("{granted} grant, needs {needed}")),
                    c
                );
            } else {
                expect::access_denied(r, &format!("{granted} grant, needs {needed}"));
            }
        }
    }
}

/// On a public collection the effective level is the higher of read and the grant.
pub fn access_is_highest_of_public_and_grant(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "gil");
    let reader = seed::user(&*s, "hana");
    let writer = seed::user(&*s, "ivan");
    let c = seed::public_collection(&*s, &owner, "c");
    seed::grant(&*s, &c, &reader, AccessLevel::Read);
    seed::grant(&*s, &c, &writer, AccessLevel::Write);
    assert_eq!(
        expect::ok(
            s.collections().access_level(c.id, reader.id.into()),
            "reader"
        ),
        Some(AccessLevel::Read)
    );
    assert_eq!(
        expect::ok(
            s.collections().access_level(c.id, writer.id.into()),
            "writer"
        ),
        Some(AccessLevel::Write)
    );
}

/// A superuser holds admin access to every collection without a grant.
pub fn access_superuser_holds_admin(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "jon");
    let root = seed::superuser(&*s, "root");
    let c = seed::collection(&*s, &owner, "c");
    assert_eq!(
        expect::ok(
            s.collections().access_level(c.id, root.id.into()),
            "access_level"
        ),
        Some(AccessLevel::Admin)
    );
    expect::ok(
        s.collections()
            .get_with_access(c.id, root.id.into(), AccessLevel::Admin),
        "superuser admin",
    );
}

/// A missing collection is `NotFound { collection }`, never `AccessDenied`; an unknown user is `NotFound { user }`.
pub fn access_missing_is_not_found_not_denied(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "kay");
    let c = seed::collection(&*s, &u, "c");
    let ghost_c = CollectionId::new();
    let ghost_u = UserId(u.id.0 + 1000);
    expect::not_found(
        s.collections()
            .get_with_access(ghost_c, u.id.into(), AccessLevel::Read),
        Entity::Collection,
        "get_with_access of a missing collection",
    );
    expect::not_found(
        s.collections().access_level(ghost_c, u.id.into()),
        Entity::Collection,
        "access_level of a missing collection",
    );
    expect::not_found(
        s.collections()
            .get_with_access(c.id, ghost_u.into(), AccessLevel::Read),
        Entity::User,
        "get_with_access by a missing user",
    );
    expect::not_found(
        s.collections().access_level(c.id, ghost_u.into()),
        Entity::User,
        "access_level of a missing user",
    );
}

/// Granting twice changes the level and keeps one grant row.
pub fn grant_twice_changes_level(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "lena");
    let u = seed::user(&*s, "mark");
    let c = seed::collection(&*s, &owner, "c");
    let first = expect::ok(
        s.collections()
            .grant(c.id, Grantee::User(u.id), AccessLevel::Read),
        "grant read",
    );
    assert_eq!(first.collection_id, c.id);
    assert_eq!(first.grantee, Grantee::User(u.id));
    assert_eq!(first.permission, AccessLevel::Read);
    let second = expect::ok(
        s.collections()
            .grant(c.id, Grantee::User(u.id), AccessLevel::Admin),
        "grant admin",
    );
    assert_eq!(second.permission, AccessLevel::Admin);
    let grants = expect::ok(s.collections().list_grants(c.id), "list_grants");
    assert_eq!(
        grants.len(),
        1,
        "one row per (collection, grantee): {grants:?}"
    );
    assert_eq!(grants[0].permission, AccessLevel::Admin);
    assert_eq!(grants[0].grantee, Grantee::User(u.id));
    assert_eq!(
        expect::ok(s.collections().access_level(c.id, u.id.into()), "level"),
        Some(AccessLevel::Admin)
    );
    expect::ok(
        s.collections()
            .grant(c.id, Grantee::User(u.id), AccessLevel::Read),
        "downgrade",
    );
    assert_eq!(
        expect::ok(s.collections().access_level(c.id, u.id.into()), "level"),
        Some(AccessLevel::Read)
    );
}

/// Revoking a grant removes the access and reports whether a grant existed.
pub fn grant_revoke_removes_access(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "nora");
    let u = seed::user(&*s, "otto");
    let c = seed::collection(&*s, &owner, "c");
    seed::grant(&*s, &c, &u, AccessLevel::Write);
    assert!(expect::ok(
        s.collections().revoke_grant(c.id, Grantee::User(u.id)),
        "revoke"
    ));
    assert!(!expect::ok(
        s.collections().revoke_grant(c.id, Grantee::User(u.id)),
        "revoke twice"
    ));
    assert_eq!(
        expect::ok(s.collections().access_level(c.id, u.id.into()), "level"),
        None
    );
    assert!(expect::ok(s.collections().list_grants(c.id), "grants").is_empty());
}

/// Granting on an unknown collection, or to an unknown user or API key, is `NotFound` naming it.
pub fn grant_to_unknown_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "pete");
    let c = seed::collection(&*s, &owner, "c");
    expect::not_found(
        s.collections().grant(
            CollectionId::new(),
            Grantee::User(owner.id),
            AccessLevel::Read,
        ),
        Entity::Collection,
        "unknown collection",
    );
    expect::not_found(
        s.collections().grant(
            c.id,
            Grantee::User(UserId(owner.id.0 + 1000)),
            AccessLevel::Read,
        ),
        Entity::User,
        "unknown user",
    );
    expect::not_found(
        s.collections()
            .grant(c.id, Grantee::ApiKey(ApiKeyId::new()), AccessLevel::Read),
        Entity::ApiKey,
        "unknown API key",
    );
    assert!(expect::ok(s.collections().list_grants(c.id), "grants").is_empty());
}

/// `list_visible` is owned ∪ public ∪ granted, each once, newest first, with the total.
pub fn list_visible_is_owned_public_and_granted(h: &dyn Harness) {
    let s = h.store();
    let viewer = seed::user(&*s, "quinn");
    let other = seed::user(&*s, "rhea");
    let owned = seed::collection(&*s, &viewer, "owned");
    let public = seed::public_collection(&*s, &other, "public");
    let granted = seed::collection(&*s, &other, "granted");
    let both = seed::public_collection(&*s, &other, "public-and-granted");
    let _hidden = seed::collection(&*s, &other, "hidden");
    seed::grant(&*s, &granted, &viewer, AccessLevel::Read);
    seed::grant(&*s, &both, &viewer, AccessLevel::Admin);

    let page = expect::ok(
        s.collections()
            .list_visible(viewer.id.into(), PageRequest::default()),
        "list",
    );
    let names: Vec<&str> = page.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["public-and-granted", "granted", "public", "owned"]
    );
    assert_eq!(page.total, 4);
    assert_eq!(page.items[3], owned);
    assert_eq!(page.items[2], public);

    let page = expect::ok(
        s.collections()
            .list_visible(other.id.into(), PageRequest::default()),
        "other",
    );
    assert_eq!(
        page.total, 4,
        "other sees their four, not the viewer's private one"
    );
    assert!(page.items.iter().all(|c| c.owner_id == other.id));
}

/// `list_visible` paginates newest first and reports the total on every page.
pub fn list_visible_paginates(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "sven");
    let made: Vec<Collection> = (1..=5)
        .map(|i| seed::collection(&*s, &u, &format!("c{i}")))
        .collect();
    let names = |offset, limit| {
        let page = expect::ok(
            s.collections()
                .list_visible(u.id.into(), PageRequest::new(offset, limit)),
            "page",
        );
        assert_eq!(page.total, 5, "total at offset {offset}");
        page.items.into_iter().map(|c| c.name).collect::<Vec<_>>()
    };
    assert_eq!(names(0, 2), vec!["c5", "c4"]);
    assert_eq!(names(2, 2), vec!["c3", "c2"]);
    assert_eq!(names(4, 2), vec!["c1"]);
    assert!(names(9, 2).is_empty());
    assert_eq!(made.len(), 5);
}

/// Ten threads granting levels to the same user at once all succeed and leave exactly one grant row.
pub fn grant_racing_upserts_keep_one_row(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "tara");
    let u = seed::user(&*s, "ugo");
    let c = seed::collection(&*s, &owner, "c");
    let store = std::sync::Arc::clone(&s);
    let (cid, uid) = (c.id, u.id);
    let results = crate::race::race(10, move |i| {
        store
            .collections()
            .grant(cid, Grantee::User(uid), LEVELS[i % LEVELS.len()])
    });
    for r in results {
        expect::ok(r, "concurrent grant");
    }
    let grants = expect::ok(s.collections().list_grants(c.id), "grants");
    assert_eq!(grants.len(), 1, "one row per grantee: {grants:?}");
    assert_eq!(
        expect::ok(s.collections().access_level(c.id, u.id.into()), "level"),
        Some(grants[0].permission)
    );
}
