//! Users: defaults, uniqueness, validation, lookups, patches, listing, deletion.

use crate::expect;
use crate::seed::{self, HASH};
use crate::Harness;
use repo_core::{
    AccessLevel, Attempt, DeleteMode, Entity, Field, NewApiKey, NewUser, OperationKind,
    PageRequest, State, User, UserFilter, UserId, UserPatch,
};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __users_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            users::user_create_applies_defaults,
            users::user_reads_back_equal,
            users::user_username_is_unique,
            users::user_email_is_unique,
            users::user_email_uniqueness_ignores_case,
            users::user_username_length_is_validated,
            users::user_email_is_validated,
            users::user_plaintext_password_is_refused_without_echo,
            users::user_nul_in_text_is_validation,
            users::user_get_by_email_ignores_case,
            users::user_lookup_of_unknown_is_not_found,
            users::user_update_changes_only_patched_fields,
            users::user_empty_patch_changes_nothing,
            users::user_update_onto_taken_name_is_already_exists,
            users::user_update_is_validated,
            users::user_list_is_newest_first_and_paginated,
            users::user_list_and_count_filter,
            users::user_record_login_sets_last_login_only,
            users::user_delete_restrict_refuses_collection_owner,
            users::user_delete_removes_api_keys_and_grants,
            users::user_delete_cascade_removes_owned_collections,
            users::user_delete_unknown_is_not_found,
            users::user_racing_creators_exactly_one_wins,
            users::user_unicode_rules_match,
            users::user_lookup_with_nul_is_validation,
        }
    };
}

fn new_user(name: &str) -> NewUser {
    NewUser::new(name, format!("{name}@example.com"), HASH)
}

/// A new user is active, not a superuser, never logged in, with a lowercase email and `created_at == updated_at` taken at creation.
pub fn user_create_applies_defaults(h: &dyn Harness) {
    let s = h.store();
    let before = repo_core::now();
    let u = expect::ok(
        s.users()
            .create(&NewUser::new("alice", "Alice@Example.COM", HASH)),
        "create user",
    );
    let after = repo_core::now();
    assert!(u.id.0 > 0, "generated id must be positive, got {}", u.id);
    assert_eq!(u.username, "alice");
    assert_eq!(u.email, "alice@example.com", "email is stored lowercase");
    assert_eq!(u.full_name, None);
    assert_eq!(u.hashed_password, HASH);
    assert!(u.is_active, "is_active defaults to true");
    assert!(!u.is_superuser, "is_superuser defaults to false");
    assert_eq!(u.last_login, None);
    assert_eq!(u.created_at, u.updated_at);
    assert!(
        before <= u.created_at && u.created_at <= after,
        "created_at {} not within [{before}, {after}]",
        u.created_at
    );
}

/// A created user reads back equal, field by field and to the microsecond, by id, username and email.
pub fn user_reads_back_equal(h: &dyn Harness) {
    let s = h.store();
    let mut new = NewUser::new("bob", "Bob@Example.com", HASH);
    new.full_name = Some("Bob Ünïcode Smith".into());
    new.is_superuser = true;
    new.is_active = false;
    let created = expect::ok(s.users().create(&new), "create user");
    assert!(created.is_superuser && !created.is_active);
    assert_eq!(expect::ok(s.users().get(created.id), "get"), created);
    assert_eq!(
        expect::ok(s.users().get_by_username("bob"), "get_by_username"),
        created
    );
    assert_eq!(
        expect::ok(s.users().get_by_email("bob@example.com"), "get_by_email"),
        created
    );
}

/// A second user with a taken username is `AlreadyExists { user, username }`.
pub fn user_username_is_unique(h: &dyn Harness) {
    let s = h.store();
    seed::user(&*s, "carol");
    expect::already_exists(
        s.users()
            .create(&NewUser::new("carol", "other@example.com", HASH)),
        Entity::User,
        Field::Username,
        "duplicate username",
    );
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        1
    );
}

/// A second user with a taken email is `AlreadyExists { user, email }`.
pub fn user_email_is_unique(h: &dyn Harness) {
    let s = h.store();
    seed::user(&*s, "dave");
    expect::already_exists(
        s.users()
            .create(&NewUser::new("dave2", "dave@example.com", HASH)),
        Entity::User,
        Field::Email,
        "duplicate email",
    );
}

/// Email uniqueness ignores case: `DAVE@Example.COM` collides with `dave@example.com`.
pub fn user_email_uniqueness_ignores_case(h: &dyn Harness) {
    let s = h.store();
    seed::user(&*s, "dave");
    expect::already_exists(
        s.users()
            .create(&NewUser::new("dave2", "DAVE@Example.COM", HASH)),
        Entity::User,
        Field::Email,
        "duplicate email in other case",
    );
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        1
    );
}

/// Usernames are 1 to 64 characters: empty and 65 characters are `Validation { username }`.
pub fn user_username_length_is_validated(h: &dyn Harness) {
    let s = h.store();
    expect::validation(
        s.users().create(&NewUser::new("", "e@example.com", HASH)),
        Field::Username,
        "empty username",
    );
    let long = "u".repeat(65);
    expect::validation(
        s.users().create(&NewUser::new(long, "e@example.com", HASH)),
        Field::Username,
        "65-character username",
    );
    expect::validation(
        s.users()
            .create(&NewUser::new(" padded", "e@example.com", HASH)),
        Field::Username,
        "username with surrounding whitespace",
    );
    let max = "m".repeat(64);
    let u = expect::ok(
        s.users()
            .create(&NewUser::new(max.clone(), "m@example.com", HASH)),
        "64-character username",
    );
    assert_eq!(u.username, max);
    expect::ok(
        s.users().create(&NewUser::new("x", "x@example.com", HASH)),
        "1-character username",
    );
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        2
    );
}

/// An email without exactly one `@` between non-empty parts is `Validation { email }`.
pub fn user_email_is_validated(h: &dyn Harness) {
    let s = h.store();
    for bad in [
        "",
        "not-an-email",
        "a@b@c",
        "@example.com",
        "a@",
        "a b@example.com",
    ] {
        expect::validation(
            s.users().create(&NewUser::new("erin", bad, HASH)),
            Field::Email,
            &format!("email {bad:?}"),
        );
    }
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        0
    );
}

/// A plaintext password is refused with `Validation { hashed_password }` and the error never repeats it.
pub fn user_plaintext_password_is_refused_without_echo(h: &dyn Harness) {
    let s = h.store();
    let plain = "correct horse battery staple";
    let e = expect::validation(
        s.users()
            .create(&NewUser::new("frank", "frank@example.com", plain)),
        Field::HashedPassword,
        "plaintext password on create",
    );
    assert!(
        !e.to_string().contains("horse"),
        "error echoes the password: {e}"
    );
    assert!(
        !format!("{e:?}").contains("horse"),
        "error echoes the password: {e:?}"
    );

    let u = seed::user(&*s, "frank");
    let patch = UserPatch {
        hashed_password: Some(plain.into()),
        ..UserPatch::default()
    };
    let e = expect::validation(
        s.users().update(u.id, &patch),
        Field::HashedPassword,
        "plaintext password on update",
    );
    assert!(
        !format!("{e} {e:?}").contains("horse"),
        "error echoes the password: {e:?}"
    );
    assert_eq!(
        expect::ok(s.users().get(u.id), "get").hashed_password,
        HASH,
        "the refused password must not be stored"
    );
}

/// A NUL character in any user text is `Validation` naming the field, on both backends.
pub fn user_nul_in_text_is_validation(h: &dyn Harness) {
    let s = h.store();
    let mut new = new_user("gina");
    new.full_name = Some("Gi\0na".into());
    expect::validation(s.users().create(&new), Field::FullName, "NUL in full_name");
    expect::validation(
        s.users()
            .create(&NewUser::new("gi\0na", "gina@example.com", HASH)),
        Field::Username,
        "NUL in username",
    );
    expect::validation(
        s.users()
            .create(&NewUser::new("gina", "gi\0na@example.com", HASH)),
        Field::Email,
        "NUL in email",
    );
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        0
    );
}

/// `get_by_email` finds a user whatever the case of its argument.
pub fn user_get_by_email_ignores_case(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "hank");
    for probe in ["hank@example.com", "HANK@EXAMPLE.COM", "Hank@Example.Com"] {
        assert_eq!(
            expect::ok(s.users().get_by_email(probe), probe),
            u,
            "lookup by {probe:?}"
        );
    }
}

/// `get_by_username` is exact, and every lookup of an unknown user is `NotFound { user }`.
pub fn user_lookup_of_unknown_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "ivy");
    expect::not_found(
        s.users().get(UserId(u.id.0 + 1000)),
        Entity::User,
        "get unknown id",
    );
    expect::not_found(
        s.users().get_by_username("nobody"),
        Entity::User,
        "unknown username",
    );
    expect::not_found(
        s.users().get_by_username("IVY"),
        Entity::User,
        "username in other case",
    );
    expect::not_found(
        s.users().get_by_email("nobody@example.com"),
        Entity::User,
        "unknown email",
    );
}

/// An update changes exactly the patched fields, sets `updated_at`, and reads back equal.
pub fn user_update_changes_only_patched_fields(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "jack");
    let patch = UserPatch {
        full_name: Some(Some("Jack Doe".into())),
        email: Some("Jack.Doe@Example.com".into()),
        is_superuser: Some(true),
        ..UserPatch::default()
    };
    let updated = expect::ok(s.users().update(u.id, &patch), "update");
    assert_eq!(updated.full_name.as_deref(), Some("Jack Doe"));
    assert_eq!(
        updated.email, "jack.doe@example.com",
        "patched email is lowercased"
    );
    assert!(updated.is_superuser);
    assert_eq!(updated.username, u.username);
    assert_eq!(updated.hashed_password, u.hashed_password);
    assert_eq!(updated.is_active, u.is_active);
    assert_eq!(updated.created_at, u.created_at);
    assert_eq!(updated.last_login, u.last_login);
    assert!(
        updated.updated_at > u.updated_at,
        "updated_at must move forward: {} -> {}",
        u.updated_at,
        updated.updated_at
    );
    assert_eq!(expect::ok(s.users().get(u.id), "get"), updated);

    let cleared = expect::ok(
        s.users().update(
            u.id,
            &UserPatch {
                full_name: Some(None),
                ..UserPatch::default()
            },
        ),
        "clear full_name",
    );
    assert_eq!(cleared.full_name, None, "Some(None) clears full_name");
    assert_eq!(cleared.email, updated.email);
}

/// An empty patch returns the user unchanged, `updated_at` included.
pub fn user_empty_patch_changes_nothing(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "kate");
    let same = expect::ok(
        s.users().update(u.id, &UserPatch::default()),
        "empty update",
    );
    assert_eq!(same, u);
    assert_eq!(expect::ok(s.users().get(u.id), "get"), u);
}

/// Renaming onto a taken username or email is `AlreadyExists` naming the field, and changes nothing.
pub fn user_update_onto_taken_name_is_already_exists(h: &dyn Harness) {
    let s = h.store();
    seed::user(&*s, "liam");
    let mia = seed::user(&*s, "mia");
    expect::already_exists(
        s.users().update(
            mia.id,
            &UserPatch {
                username: Some("liam".into()),
                ..UserPatch::default()
            },
        ),
        Entity::User,
        Field::Username,
        "rename onto taken username",
    );
    expect::already_exists(
        s.users().update(
            mia.id,
            &UserPatch {
                email: Some("LIAM@example.com".into()),
                ..UserPatch::default()
            },
        ),
        Entity::User,
        Field::Email,
        "change onto taken email (other case)",
    );
    assert_eq!(expect::ok(s.users().get(mia.id), "get"), mia);
    // Renaming onto its own current values is not a conflict.
    let own = UserPatch {
        username: Some("mia".into()),
        email: Some("MIA@example.com".into()),
        ..UserPatch::default()
    };
    expect::ok(s.users().update(mia.id, &own), "update onto own values");
}

/// A patch breaking a rule is `Validation` naming the field; an unknown user is `NotFound { user }`.
pub fn user_update_is_validated(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "noah");
    let cases: [(Field, UserPatch); 3] = [
        (
            Field::Username,
            UserPatch {
                username: Some(String::new()),
                ..UserPatch::default()
            },
        ),
        (
            Field::Email,
            UserPatch {
                email: Some("nope".into()),
                ..UserPatch::default()
            },
        ),
        (
            Field::FullName,
            UserPatch {
                full_name: Some(Some("a\0b".into())),
                ..UserPatch::default()
            },
        ),
    ];
    for (field, patch) in &cases {
        expect::validation(s.users().update(u.id, patch), *field, field.as_str());
    }
    assert_eq!(expect::ok(s.users().get(u.id), "get"), u);
    let patch = UserPatch {
        is_active: Some(false),
        ..UserPatch::default()
    };
    expect::not_found(
        s.users().update(UserId(u.id.0 + 1000), &patch),
        Entity::User,
        "update unknown user",
    );
}

/// Users list newest first, paginated, with the total of all matching rows.
pub fn user_list_is_newest_first_and_paginated(h: &dyn Harness) {
    let s = h.store();
    let created: Vec<User> = (1..=5)
        .map(|i| seed::user(&*s, &format!("user{i}")))
        .collect();
    let ids = |users: &[User]| users.iter().map(|u| u.id).collect::<Vec<_>>();
    let all = UserFilter::default();

    let page = expect::ok(s.users().list(all, PageRequest::new(0, 2)), "page 1");
    assert_eq!(page.total, 5);
    assert_eq!(ids(&page.items), vec![created[4].id, created[3].id]);
    let page = expect::ok(s.users().list(all, PageRequest::new(2, 2)), "page 2");
    assert_eq!(page.total, 5);
    assert_eq!(ids(&page.items), vec![created[2].id, created[1].id]);
    let page = expect::ok(s.users().list(all, PageRequest::new(4, 2)), "page 3");
    assert_eq!(page.total, 5);
    assert_eq!(
        page.items,
        vec![created[0].clone()],
        "listed rows equal created rows"
    );
    let page = expect::ok(s.users().list(all, PageRequest::new(10, 2)), "past the end");
    assert_eq!(page.total, 5);
    assert!(page.items.is_empty());
}

/// List and count filter on `is_active` and `is_superuser`, alone and together.
pub fn user_list_and_count_filter(h: &dyn Harness) {
    let s = h.store();
    let make = |name: &str, active: bool, superuser: bool| {
        let mut new = new_user(name);
        new.is_active = active;
        new.is_superuser = superuser;
        expect::ok(s.users().create(&new), name)
    };
    let plain = make("plain", true, false);
    let inactive = make("inactive", false, false);
    let admin = make("admin", true, true);
    let retired = make("retired", false, true);

    let check = |filter: UserFilter, expected: &[&User]| {
        let page = expect::ok(s.users().list(filter, PageRequest::default()), "list");
        let want: Vec<UserId> = expected.iter().map(|u| u.id).collect();
        let got: Vec<UserId> = page.items.iter().map(|u| u.id).collect();
        assert_eq!(got, want, "list with {filter:?}");
        assert_eq!(page.total, want.len() as u64, "total with {filter:?}");
        assert_eq!(
            expect::ok(s.users().count(filter), "count"),
            want.len() as u64,
            "count with {filter:?}"
        );
    };
    check(
        UserFilter::default(),
        &[&retired, &admin, &inactive, &plain],
    );
    check(
        UserFilter {
            is_active: Some(true),
            is_superuser: None,
        },
        &[&admin, &plain],
    );
    check(
        UserFilter {
            is_active: Some(false),
            is_superuser: None,
        },
        &[&retired, &inactive],
    );
    check(
        UserFilter {
            is_active: None,
            is_superuser: Some(true),
        },
        &[&retired, &admin],
    );
    check(
        UserFilter {
            is_active: Some(true),
            is_superuser: Some(false),
        },
        &[&plain],
    );
}

/// `record_login` sets `last_login` to now and changes nothing else.
pub fn user_record_login_sets_last_login_only(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "olga");
    let before = repo_core::now();
    let logged = expect::ok(s.users().record_login(u.id), "record_login");
    let after = repo_core::now();
    let at = logged.last_login.expect("last_login must be set");
    assert!(
        before <= at && at <= after,
        "last_login {at} not within [{before}, {after}]"
    );
    assert_eq!(
        User {
            last_login: None,
            ..logged.clone()
        },
        u,
        "record_login changed more than last_login"
    );
    assert_eq!(expect::ok(s.users().get(u.id), "get"), logged);
    expect::not_found(
        s.users().record_login(UserId(u.id.0 + 1000)),
        Entity::User,
        "record_login of unknown user",
    );
}

/// Deleting (restrict) a user who owns collections is `InvalidState { owns_collections, delete }` and keeps everything.
pub fn user_delete_restrict_refuses_collection_owner(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "paul");
    let c = seed::collection(&*s, &u, "paul-docs");
    expect::invalid_state(
        s.users().delete(u.id, DeleteMode::Restrict),
        State::OwnsCollections,
        Attempt::Delete,
        "restrict delete of an owner",
    );
    assert_eq!(expect::ok(s.users().get(u.id), "get user"), u);
    assert_eq!(expect::ok(s.collections().get(c.id), "get collection"), c);
}

/// Deleting a user deletes their API keys and grants, and their secrets stop verifying.
pub fn user_delete_removes_api_keys_and_grants(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "quinn");
    let c = seed::collection(&*s, &owner, "quinn-docs");
    let guest = seed::user(&*s, "rosa");
    seed::grant(&*s, &c, &guest, AccessLevel::Write);
    let key = expect::ok(
        s.api_keys().create(&NewApiKey::new(guest.id, "laptop")),
        "create key",
    );
    expect::ok(
        s.users().delete(guest.id, DeleteMode::Restrict),
        "delete guest",
    );
    expect::not_found(s.users().get(guest.id), Entity::User, "deleted user");
    expect::not_found(
        s.api_keys().get(key.key.id),
        Entity::ApiKey,
        "key of deleted user",
    );
    assert!(
        expect::ok(s.collections().list_grants(c.id), "list_grants").is_empty(),
        "grants of a deleted user must go"
    );
    assert!(expect::ok(s.api_keys().verify(key.secret.expose()), "verify").is_none());
    assert_eq!(expect::ok(s.collections().get(c.id), "collection stays"), c);
}

/// Deleting (cascade) a user deletes their collections with operations and grants, keys included, and nothing of others.
pub fn user_delete_cascade_removes_owned_collections(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "sam");
    let other = seed::user(&*s, "tess");
    let c1 = seed::collection(&*s, &owner, "sam-1");
    let c2 = seed::collection(&*s, &owner, "sam-2");
    let kept = seed::collection(&*s, &other, "tess-1");
    seed::grant(&*s, &c1, &other, AccessLevel::Read);
    seed::grant(&*s, &kept, &owner, AccessLevel::Read);
    let op = seed::operation(&*s, &c1, &other, OperationKind::Index);
    let own_op = seed::operation(&*s, &kept, &owner, OperationKind::Index);
    let key = expect::ok(s.api_keys().create(&NewApiKey::new(owner.id, "ci")), "key");

    expect::ok(
        s.users().delete(owner.id, DeleteMode::Cascade),
        "cascade delete",
    );

    expect::not_found(s.users().get(owner.id), Entity::User, "deleted user");
    expect::not_found(
        s.collections().get(c1.id),
        Entity::Collection,
        "owned collection 1",
    );
    expect::not_found(
        s.collections().get(c2.id),
        Entity::Collection,
        "owned collection 2",
    );
    expect::not_found(
        s.operations().get(op.uuid),
        Entity::Operation,
        "operation of owned collection",
    );
    expect::not_found(
        s.operations().get(own_op.uuid),
        Entity::Operation,
        "operation by deleted user",
    );
    expect::not_found(
        s.api_keys().get(key.key.id),
        Entity::ApiKey,
        "key of deleted user",
    );
    assert_eq!(
        expect::ok(s.users().get(other.id), "other user stays"),
        other
    );
    assert_eq!(
        expect::ok(s.collections().get(kept.id), "other collection stays"),
        kept
    );
    assert!(
        expect::ok(s.collections().list_grants(kept.id), "grants").is_empty(),
        "the deleted user's grant on another collection must go"
    );
}

/// Deleting an unknown user is `NotFound { user }` in both modes.
pub fn user_delete_unknown_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "uma");
    let ghost = UserId(u.id.0 + 1000);
    expect::not_found(
        s.users().delete(ghost, DeleteMode::Restrict),
        Entity::User,
        "restrict",
    );
    expect::not_found(
        s.users().delete(ghost, DeleteMode::Cascade),
        Entity::User,
        "cascade",
    );
    expect::ok(s.users().delete(u.id, DeleteMode::Restrict), "delete");
    expect::not_found(
        s.users().delete(u.id, DeleteMode::Restrict),
        Entity::User,
        "twice",
    );
}

/// Of 8 threads creating the same username at once, exactly one succeeds and the rest get `AlreadyExists { user, username }`.
pub fn user_racing_creators_exactly_one_wins(h: &dyn Harness) {
    let s = h.store();
    let store = std::sync::Arc::clone(&s);
    let results = crate::race::race(8, move |i| {
        store.users().create(&NewUser::new(
            "racer",
            format!("racer{i}@example.com"),
            HASH,
        ))
    });
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one creator must win: {results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        expect::already_exists(r, Entity::User, Field::Username, "losing creator");
    }
    assert_eq!(
        expect::ok(s.users().count(UserFilter::default()), "count"),
        1
    );
}

/// Length and case rules count Unicode characters alike on both backends: 64 `é` is a valid username, 65 is not; `É` and `é` are one email.
pub fn user_unicode_rules_match(h: &dyn Harness) {
    let s = h.store();
    let ok = expect::ok(
        s.users()
            .create(&NewUser::new("é".repeat(64), "ÉLODIE@Example.com", HASH)),
        "64 two-byte characters",
    );
    assert_eq!(ok.username.chars().count(), 64);
    assert_eq!(ok.email, "élodie@example.com");
    expect::validation(
        s.users()
            .create(&NewUser::new("é".repeat(65), "x@example.com", HASH)),
        Field::Username,
        "65 two-byte characters",
    );
    assert_eq!(
        expect::ok(s.users().get_by_email("Élodie@EXAMPLE.com"), "lookup"),
        ok
    );
    expect::already_exists(
        s.users()
            .create(&NewUser::new("elodie", "élodie@example.COM", HASH)),
        Entity::User,
        Field::Email,
        "same email, other case of a non-ASCII letter",
    );
    let emoji = expect::ok(
        s.users()
            .create(&NewUser::new("📚 reader", "books@example.com", HASH)),
        "emoji username",
    );
    assert_eq!(
        expect::ok(s.users().get_by_username("📚 reader"), "get"),
        emoji
    );
}

/// Looking a user up by a username or email holding NUL is `Validation`, not a backend error.
pub fn user_lookup_with_nul_is_validation(h: &dyn Harness) {
    let s = h.store();
    seed::user(&*s, "vic");
    expect::validation(
        s.users().get_by_username("v\0ic"),
        Field::Username,
        "username",
    );
    expect::validation(
        s.users().get_by_email("vic\0@example.com"),
        Field::Email,
        "email",
    );
}
