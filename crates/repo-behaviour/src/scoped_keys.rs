//! API keys as principals: an unscoped key acts as its user; a key with a grant is
//! scoped to the collections it holds grants on, capped by its user's own access; a
//! revoked or expired key, or a key of an inactive user, has no access at all
//! (`repo_core::access`, docs/semantics.md "Access").

use crate::api_keys::{short_lived, sleep_past};
use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{
    AccessLevel, ApiKey, Collection, Entity, Field, Grantee, NewApiKey, OperationKind,
    OperationStatus, PageRequest, Principal, Store, User, UserPatch,
};
use serde_json::{json, Value};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __scoped_keys_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            scoped_keys::key_without_grants_acts_as_its_user,
            scoped_keys::scoped_key_reads_its_collection_and_is_denied_elsewhere,
            scoped_keys::scoped_key_write_grant_cannot_delete,
            scoped_keys::scoped_key_grant_is_capped_by_its_user,
            scoped_keys::scoped_key_of_superuser_is_still_scoped,
            scoped_keys::scoped_key_reads_public_collections_only_when_allowed,
            scoped_keys::scoped_key_losing_its_last_grant_has_no_access,
            scoped_keys::scoped_key_grant_needs_object_permissions,
            scoped_keys::unusable_key_has_no_access,
            scoped_keys::deleted_key_is_not_found,
            scoped_keys::scoped_key_operations_follow_its_scope,
        }
    };
}

/// A key of `user` named `name` with `permissions`.
#[track_caller]
fn key(store: &dyn Store, user: &User, name: &str, permissions: Option<Value>) -> ApiKey {
    let mut new = NewApiKey::new(user.id, name);
    new.permissions = permissions;
    expect::ok(
        store.api_keys().create(&new),
        &format!("creating key {name}"),
    )
    .key
}

/// Grants `level` on `c` to `key`.
#[track_caller]
fn grant_key(store: &dyn Store, c: &Collection, key: &ApiKey, level: AccessLevel) {
    expect::ok(
        store
            .collections()
            .grant(c.id, Grantee::ApiKey(key.id), level),
        &format!("granting {level} on {:?} to key {}", c.name, key.name),
    );
}

/// The level `principal` holds on `c`.
#[track_caller]
fn level(store: &dyn Store, c: &Collection, principal: Principal) -> Option<AccessLevel> {
    expect::ok(
        store.collections().access_level(c.id, principal),
        &format!("access_level of {principal} on {:?}", c.name),
    )
}

/// Names of the collections `principal` lists, newest first.
#[track_caller]
fn visible(store: &dyn Store, principal: Principal) -> Vec<String> {
    let page = expect::ok(
        store
            .collections()
            .list_visible(principal, PageRequest::new(0, 100)),
        &format!("list_visible of {principal}"),
    );
    assert_eq!(
        page.total,
        page.items.len() as u64,
        "total counts what is listed"
    );
    page.items.into_iter().map(|c| c.name).collect()
}

/// A key without grants acts as its user: admin on the user's collections, read on
/// public ones, and the same listing.
pub fn key_without_grants_acts_as_its_user(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let bob = seed::user(&*s, "bob");
    let own = seed::collection(&*s, &alice, "own");
    let public = seed::public_collection(&*s, &bob, "public");
    let private = seed::collection(&*s, &bob, "private");
    let k = key(&*s, &alice, "cli", None);
    let p = Principal::from(&k);
    assert_eq!(level(&*s, &own, p), Some(AccessLevel::Admin));
    assert_eq!(level(&*s, &public, p), Some(AccessLevel::Read));
    assert_eq!(level(&*s, &private, p), None);
    assert_eq!(visible(&*s, p), visible(&*s, alice.id.into()));
    assert_eq!(visible(&*s, p), ["public", "own"]);
}

/// A key with a read grant reads that collection, is refused write on it, and is
/// `AccessDenied` on every other collection of its owner; the owner is unaffected.
pub fn scoped_key_reads_its_collection_and_is_denied_elsewhere(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let c1 = seed::collection(&*s, &alice, "c1");
    let c2 = seed::collection(&*s, &alice, "c2");
    let k = key(&*s, &alice, "reader", None);
    grant_key(&*s, &c1, &k, AccessLevel::Read);
    let p = Principal::ApiKey(k.id);
    assert_eq!(
        expect::ok(
            s.collections().get_with_access(c1.id, p, AccessLevel::Read),
            "scoped read"
        ),
        c1
    );
    expect::access_denied(
        s.collections()
            .get_with_access(c1.id, p, AccessLevel::Write),
        "write with a read grant",
    );
    for needed in [AccessLevel::Read, AccessLevel::Write, AccessLevel::Admin] {
        expect::access_denied(
            s.collections().get_with_access(c2.id, p, needed),
            &format!("{needed} on the owner's other collection"),
        );
    }
    assert_eq!(level(&*s, &c2, p), None);
    expect::access_denied(s.collections().delete(c2.id, p), "delete elsewhere");
    assert_eq!(visible(&*s, p), ["c1"]);
    assert_eq!(level(&*s, &c2, alice.id.into()), Some(AccessLevel::Admin));
    let marked = expect::ok(s.api_keys().get(k.id), "get key");
    assert_eq!(marked.permissions, Some(json!({"scoped": true})));
}

/// A key's write grant cannot delete its collection (admin is needed); an admin
/// grant can.
pub fn scoped_key_write_grant_cannot_delete(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &alice, "c");
    let writer = key(&*s, &alice, "writer", None);
    let admin = key(&*s, &alice, "admin", None);
    grant_key(&*s, &c, &writer, AccessLevel::Write);
    grant_key(&*s, &c, &admin, AccessLevel::Admin);
    expect::ok(
        s.collections()
            .get_with_access(c.id, writer.id.into(), AccessLevel::Write),
        "write",
    );
    expect::access_denied(
        s.collections().delete(c.id, writer.id.into()),
        "delete with a write grant",
    );
    assert_eq!(expect::ok(s.collections().get(c.id), "still there"), c);
    expect::ok(
        s.collections().delete(c.id, admin.id.into()),
        "delete with an admin grant",
    );
    expect::not_found(s.collections().get(c.id), Entity::Collection, "deleted");
}

/// A key's grant above its user's own access is capped at the user's level, and a
/// grant on a collection its user cannot reach gives nothing.
pub fn scoped_key_grant_is_capped_by_its_user(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let bob = seed::user(&*s, "bob");
    let shared = seed::collection(&*s, &alice, "shared");
    let secret = seed::collection(&*s, &alice, "secret");
    seed::grant(&*s, &shared, &bob, AccessLevel::Read);
    let k = key(&*s, &bob, "bob-key", None);
    grant_key(&*s, &shared, &k, AccessLevel::Admin);
    grant_key(&*s, &secret, &k, AccessLevel::Admin);
    let p = Principal::ApiKey(k.id);
    assert_eq!(level(&*s, &shared, p), Some(AccessLevel::Read));
    expect::access_denied(
        s.collections()
            .get_with_access(shared.id, p, AccessLevel::Write),
        "write above the user's read",
    );
    expect::access_denied(s.collections().delete(shared.id, p), "delete");
    assert_eq!(level(&*s, &secret, p), None);
    expect::access_denied(
        s.collections()
            .get_with_access(secret.id, p, AccessLevel::Read),
        "a grant the user cannot match",
    );
    assert_eq!(visible(&*s, p), ["shared"]);
    // Raising the user's own grant raises the key's cap, up to the key's grant.
    seed::grant(&*s, &shared, &bob, AccessLevel::Write);
    assert_eq!(level(&*s, &shared, p), Some(AccessLevel::Write));
}

/// A superuser's scoped key is still scoped: its grants count (uncapped), nothing else.
pub fn scoped_key_of_superuser_is_still_scoped(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let root = seed::superuser(&*s, "root");
    let c1 = seed::collection(&*s, &alice, "c1");
    let c2 = seed::public_collection(&*s, &alice, "c2");
    let k = key(&*s, &root, "root-key", None);
    grant_key(&*s, &c1, &k, AccessLevel::Admin);
    let p = Principal::ApiKey(k.id);
    assert_eq!(level(&*s, &c1, p), Some(AccessLevel::Admin));
    assert_eq!(level(&*s, &c2, p), None);
    assert_eq!(visible(&*s, p), ["c1"]);
    assert_eq!(level(&*s, &c2, root.id.into()), Some(AccessLevel::Admin));
}

/// A scoped key does not read public collections it holds no grant on, unless its
/// permissions say `"read_public": true`; then read only.
pub fn scoped_key_reads_public_collections_only_when_allowed(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let bob = seed::user(&*s, "bob");
    let public = seed::public_collection(&*s, &bob, "public");
    let private = seed::collection(&*s, &bob, "private");
    let mine = seed::collection(&*s, &alice, "mine");
    let closed = key(&*s, &alice, "closed", Some(json!({"scoped": true})));
    let open = key(
        &*s,
        &alice,
        "open",
        Some(json!({"scoped": true, "read_public": true})),
    );
    assert_eq!(level(&*s, &public, closed.id.into()), None);
    assert_eq!(level(&*s, &mine, closed.id.into()), None);
    assert!(visible(&*s, closed.id.into()).is_empty());
    assert_eq!(level(&*s, &public, open.id.into()), Some(AccessLevel::Read));
    expect::access_denied(
        s.collections()
            .get_with_access(public.id, open.id.into(), AccessLevel::Write),
        "write on public",
    );
    assert_eq!(level(&*s, &private, open.id.into()), None);
    assert_eq!(level(&*s, &mine, open.id.into()), None);
    grant_key(&*s, &mine, &open, AccessLevel::Write);
    assert_eq!(visible(&*s, open.id.into()), ["mine", "public"]);
}

/// Revoking a key's last grant leaves it scoped with no access (it does not get
/// its user's rights back); a new grant gives access again.
pub fn scoped_key_losing_its_last_grant_has_no_access(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &alice, "c");
    let k = key(&*s, &alice, "k", Some(json!({"label": "ci"})));
    grant_key(&*s, &c, &k, AccessLevel::Write);
    assert_eq!(level(&*s, &c, k.id.into()), Some(AccessLevel::Write));
    assert!(expect::ok(
        s.collections().revoke_grant(c.id, Grantee::ApiKey(k.id)),
        "revoke grant"
    ));
    assert_eq!(level(&*s, &c, k.id.into()), None);
    expect::access_denied(
        s.collections()
            .get_with_access(c.id, k.id.into(), AccessLevel::Read),
        "read after the last grant went",
    );
    assert!(visible(&*s, k.id.into()).is_empty());
    assert_eq!(
        expect::ok(s.api_keys().get(k.id), "get key").permissions,
        Some(json!({"label": "ci", "scoped": true})),
        "the grant marked the key scoped, keeping its other permissions"
    );
    grant_key(&*s, &c, &k, AccessLevel::Read);
    assert_eq!(level(&*s, &c, k.id.into()), Some(AccessLevel::Read));
}

/// A grant to a key whose permissions document is not a JSON object is
/// `Validation { field: Field::Permissions }` and stores nothing.
pub fn scoped_key_grant_needs_object_permissions(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &alice, "c");
    let k = key(&*s, &alice, "odd", Some(json!(["read"])));
    expect::validation(
        s.collections()
            .grant(c.id, Grantee::ApiKey(k.id), AccessLevel::Read),
        Field::Permissions,
        "grant to a key with array permissions",
    );
    assert!(expect::ok(s.collections().list_grants(c.id), "grants").is_empty());
    assert_eq!(
        level(&*s, &c, k.id.into()),
        Some(AccessLevel::Admin),
        "still unscoped"
    );
}

/// A revoked key, an expired key and a key of a deactivated user have no access at
/// all, even on their user's own collection: `None`, `AccessDenied` on checks,
/// deletes, cancels and listings.
pub fn unusable_key_has_no_access(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let bob = seed::user(&*s, "bob");
    let c = seed::public_collection(&*s, &alice, "c");
    let bobs = seed::collection(&*s, &bob, "bobs");
    let op = seed::operation(&*s, &c, &alice, OperationKind::Index);
    let revoked = key(&*s, &alice, "revoked", None);
    expect::ok(s.api_keys().revoke(revoked.id), "revoke");
    let expired = short_lived(&*s, alice.id, "expired").key;
    let of_bob = key(&*s, &bob, "bob-key", None);
    expect::ok(
        s.users().update(
            bob.id,
            &UserPatch {
                is_active: Some(false),
                ..UserPatch::default()
            },
        ),
        "deactivate bob",
    );
    sleep_past(expired.expires_at.expect("short-lived"));
    for (what, k, target) in [
        ("revoked", &revoked, &c),
        ("expired", &expired, &c),
        ("inactive user", &of_bob, &bobs),
    ] {
        let p = Principal::ApiKey(k.id);
        assert_eq!(level(&*s, target, p), None, "{what}: access_level");
        assert_eq!(level(&*s, &c, p), None, "{what}: public collection");
        expect::access_denied(
            s.collections()
                .get_with_access(target.id, p, AccessLevel::Read),
            &format!("{what}: get_with_access"),
        );
        expect::access_denied(
            s.collections().list_visible(p, PageRequest::new(0, 10)),
            &format!("{what}: list_visible"),
        );
        expect::access_denied(
            s.operations()
                .get_with_access(op.uuid, p, AccessLevel::Read),
            &format!("{what}: operation get_with_access"),
        );
        expect::access_denied(
            s.operations().cancel(op.uuid, p),
            &format!("{what}: cancel"),
        );
        expect::access_denied(
            s.collections().delete(target.id, p),
            &format!("{what}: delete"),
        );
    }
    assert_eq!(
        expect::ok(s.operations().get(op.uuid), "op").status,
        OperationStatus::Pending
    );
    assert_eq!(level(&*s, &c, alice.id.into()), Some(AccessLevel::Admin));
}

/// A deleted key is `NotFound { entity: Entity::ApiKey }` (after a missing collection,
/// which is reported first), like an unknown user.
pub fn deleted_key_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &alice, "c");
    let k = key(&*s, &alice, "gone", None);
    expect::ok(s.api_keys().delete(k.id), "delete key");
    let p = Principal::ApiKey(k.id);
    expect::not_found(
        s.collections().get_with_access(c.id, p, AccessLevel::Read),
        Entity::ApiKey,
        "get_with_access",
    );
    expect::not_found(
        s.collections().access_level(c.id, p),
        Entity::ApiKey,
        "level",
    );
    expect::not_found(
        s.collections().list_visible(p, PageRequest::new(0, 10)),
        Entity::ApiKey,
        "list_visible",
    );
    expect::not_found(s.collections().delete(c.id, p), Entity::ApiKey, "delete");
    expect::not_found(
        s.collections()
            .get_with_access(repo_core::CollectionId::new(), p, AccessLevel::Read),
        Entity::Collection,
        "missing collection first",
    );
}

/// Operations follow the key's scope: a scoped key reads operations of its
/// collections only, and cancels only with write, even those its user created; an
/// unscoped key cancels what its user created.
pub fn scoped_key_operations_follow_its_scope(h: &dyn Harness) {
    let s = h.store();
    let alice = seed::user(&*s, "alice");
    let c1 = seed::collection(&*s, &alice, "c1");
    let c2 = seed::collection(&*s, &alice, "c2");
    let reader = key(&*s, &alice, "reader", None);
    let writer = key(&*s, &alice, "writer", None);
    let plain = key(&*s, &alice, "plain", None);
    grant_key(&*s, &c1, &reader, AccessLevel::Read);
    grant_key(&*s, &c1, &writer, AccessLevel::Write);
    let on_c1 = seed::operation(&*s, &c1, &alice, OperationKind::Index);
    let on_c2 = seed::operation(&*s, &c2, &alice, OperationKind::Index);
    expect::ok(
        s.operations()
            .get_with_access(on_c1.uuid, reader.id.into(), AccessLevel::Read),
        "read an operation in scope",
    );
    expect::access_denied(
        s.operations()
            .get_with_access(on_c2.uuid, reader.id.into(), AccessLevel::Read),
        "an operation out of scope",
    );
    expect::access_denied(
        s.operations().cancel(on_c1.uuid, reader.id.into()),
        "cancel with a read grant, although its user created it",
    );
    expect::access_denied(
        s.operations().cancel(on_c2.uuid, writer.id.into()),
        "cancel out of scope",
    );
    let cancelled = expect::ok(
        s.operations().cancel(on_c1.uuid, writer.id.into()),
        "cancel with a write grant",
    );
    assert_eq!(cancelled.status, OperationStatus::Cancelled);
    let cancelled = expect::ok(
        s.operations().cancel(on_c2.uuid, plain.id.into()),
        "an unscoped key cancels what its user created",
    );
    assert_eq!(cancelled.status, OperationStatus::Cancelled);
}
