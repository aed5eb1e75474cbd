//! API keys: secrets shown once, hashes only, verification, limits, expiry.
//!
//! Keys that really expire are created with `KeyExpiry::After(1 s)`; the behaviours
//! that need one sleep until it has passed (about 1.2 s, never longer than
//! 1.5 s).

use crate::expect;
use crate::seed;
use crate::Harness;
use chrono::Duration;
use repo_core::{
    AccessLevel, ApiKeySecret, Entity, Field, Grantee, KeyExpiry, NewApiKey, StoreConfig, UserId,
    UserPatch,
};
use serde_json::json;
use std::time::Duration as StdDuration;

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __api_keys_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            api_keys::api_key_create_returns_secret_once_in_format,
            api_keys::api_key_reads_never_expose_secret_or_hash,
            api_keys::api_key_verify_accepts_and_records_last_used,
            api_keys::api_key_refused_verify_records_no_use,
            api_keys::api_key_verify_stamps_last_used_at_per_granularity,
            api_keys::api_key_verify_rejects_revoked,
            api_keys::api_key_verify_rejects_inactive_user,
            api_keys::api_key_verify_unknown_secret_is_none,
            api_keys::api_key_verify_malformed_is_validation,
            api_keys::api_key_name_is_unique_per_user_ignoring_case,
            api_keys::api_key_input_is_validated,
            api_keys::api_key_create_for_unknown_user_is_not_found,
            api_keys::api_key_active_limit_per_user,
            api_keys::api_key_expiry_defaults_to_365_days,
            api_keys::api_key_expiry_is_bounded,
            api_keys::api_key_never_expiry_is_none,
            api_keys::api_key_purge_expired_keeps_unexpired_keys,
            api_keys::api_key_revoke_is_soft_and_delete_is_hard,
            api_keys::api_key_list_is_per_user_newest_first,
            api_keys::api_key_grant_goes_with_the_key,
            api_keys::api_key_racing_creators_respect_the_limit,
            api_keys::api_key_name_folding_is_unicode_aware,
            api_keys::api_key_short_expiry_verifies_then_expires,
            api_keys::api_key_expired_keys_do_not_count_toward_the_limit,
            api_keys::api_key_purge_expired_deletes_exactly_the_expired,
            api_keys::api_key_short_expiry_is_bounded,
        }
    };
}

/// The expiry of the short-lived keys below.
const SHORT_EXPIRY: StdDuration = StdDuration::from_secs(1);
/// The longest a behaviour sleeps waiting for a short-lived key to expire.
const SHORT_EXPIRY_WAIT: StdDuration = StdDuration::from_millis(1500);

/// A key of `user` named `name` that expires one second after creation.
#[track_caller]
pub(crate) fn short_lived(
    store: &dyn repo_core::Store,
    user: UserId,
    name: &str,
) -> repo_core::CreatedApiKey {
    let mut new = NewApiKey::new(user, name);
    new.expiry = KeyExpiry::After(SHORT_EXPIRY);
    expect::ok(store.api_keys().create(&new), name)
}

/// Sleeps until `at` has passed by 100 ms, and at most [`SHORT_EXPIRY_WAIT`].
pub(crate) fn sleep_past(at: repo_core::Timestamp) {
    let left = (at - repo_core::now() + Duration::milliseconds(100))
        .to_std()
        .unwrap_or_default();
    assert!(left <= SHORT_EXPIRY_WAIT, "refusing to sleep {left:?}");
    std::thread::sleep(left);
}

fn is_url_safe_base64(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Create returns the secret once, shaped `smtk_<8 lowercase hex>_<43 url-safe base64>`, and a record whose `key_prefix` is its first 13 characters.
pub fn api_key_create_returns_secret_once_in_format(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "alice");
    let created = expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "  laptop  ")),
        "create key",
    );
    let secret = created.secret.expose();
    assert_eq!(secret.len(), 57, "secret length");
    assert!(secret.starts_with("smtk_"), "secret prefix");
    assert!(
        secret[5..13]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "8 lowercase hex characters after smtk_"
    );
    assert_eq!(&secret[13..14], "_");
    assert!(
        secret[14..].chars().all(is_url_safe_base64),
        "43 base64url characters"
    );
    let key = &created.key;
    assert_eq!(
        key.key_prefix,
        &secret[..13],
        "key_prefix is the displayable start"
    );
    assert_eq!(key.name, "laptop", "name is trimmed");
    assert_eq!(key.user_id, u.id);
    assert!(key.is_active);
    assert_eq!(key.last_used_at, None);
    assert_eq!(key.permissions, None);

    let other = expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "desktop")), "2nd");
    assert_ne!(other.secret.expose(), secret, "secrets must differ");
    assert_ne!(other.key.id, key.id);
}

/// Reading keys back (get, list) never yields the secret or its hash, only equal records.
pub fn api_key_reads_never_expose_secret_or_hash(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "bob");
    let mut new = NewApiKey::new(u.id, "ci");
    new.permissions = Some(json!({"scopes": ["search", "read"], "rate": 10}));
    let created = expect::ok(s.api_keys().create(&new), "create key");
    let body = &created.secret.expose()[14..];
    let hash = created.secret.hash();

    let got = expect::ok(s.api_keys().get(created.key.id), "get");
    assert_eq!(
        got, created.key,
        "get reads back the created record to the microsecond"
    );
    let listed = expect::ok(s.api_keys().list_for_user(u.id), "list");
    assert_eq!(listed, vec![created.key.clone()]);
    for shown in [
        format!("{got:?}"),
        format!("{listed:?}"),
        format!("{created:?}"),
        format!("{:?}", created.secret),
        created.secret.to_string(),
        serde_json::to_string(&got).unwrap_or_default(),
    ] {
        assert!(!shown.contains(body), "secret body shown in {shown}");
        assert!(!shown.contains(&hash), "key hash shown in {shown}");
    }
}

/// Verify with the right secret returns the key and its user and records `last_used_at`.
pub fn api_key_verify_accepts_and_records_last_used(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "carol");
    let created = expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "ci")), "create");
    let before = repo_core::now();
    let verified = expect::ok(s.api_keys().verify(created.secret.expose()), "verify")
        .expect("a valid secret must verify");
    let after = repo_core::now();
    assert_eq!(verified.key.id, created.key.id);
    assert_eq!(verified.user, u);
    let used = verified
        .key
        .last_used_at
        .expect("verify must set last_used_at");
    assert!(
        before <= used && used <= after,
        "last_used_at {used} not within the call"
    );
    let stored = expect::ok(s.api_keys().get(created.key.id), "get");
    assert_eq!(stored.last_used_at, Some(used));
    assert_eq!(stored, verified.key);
}

/// `last_used_granularity` 0 moves `last_used_at` on every verify; an hour leaves it where the first verify put it; revoked and expired keys are refused either way.
pub fn api_key_verify_stamps_last_used_at_per_granularity(h: &dyn Harness) {
    let open = |granularity: StdDuration| {
        h.open_with(StoreConfig {
            api_keys: repo_core::ApiKeyPolicy {
                last_used_granularity: granularity,
                ..Default::default()
            },
            ..StoreConfig::default()
        })
    };
    let used = |s: &dyn repo_core::Store, secret: &str, what: &str| {
        expect::ok(s.api_keys().verify(secret), what)
            .unwrap_or_else(|| panic!("{what}: a valid key must verify"))
            .key
            .last_used_at
            .unwrap_or_else(|| panic!("{what}: verify must return last_used_at"))
    };
    let every = open(StdDuration::ZERO);
    let u = seed::user(&*every, "gran");
    let k = expect::ok(
        every.api_keys().create(&NewApiKey::new(u.id, "ci")),
        "create",
    );
    let first = used(&*every, k.secret.expose(), "first verify, granularity 0");
    std::thread::sleep(StdDuration::from_millis(5));
    let second = used(&*every, k.secret.expose(), "second verify, granularity 0");
    assert!(
        second > first,
        "granularity 0 stamps every verify: {first} then {second}"
    );
    let stored = expect::ok(every.api_keys().get(k.key.id), "get");
    assert_eq!(stored.last_used_at, Some(second));

    let hourly = open(StdDuration::from_secs(3600));
    let k = expect::ok(
        hourly.api_keys().create(&NewApiKey::new(u.id, "hourly")),
        "create",
    );
    let first = used(&*hourly, k.secret.expose(), "first verify, granularity 1 h");
    std::thread::sleep(StdDuration::from_millis(5));
    let second = used(
        &*hourly,
        k.secret.expose(),
        "second verify, granularity 1 h",
    );
    assert_eq!(
        second, first,
        "a fresh stamp is not written again within the granularity"
    );
    let stored = expect::ok(hourly.api_keys().get(k.key.id), "get");
    assert_eq!(stored.last_used_at, Some(first));
    expect::ok(hourly.api_keys().revoke(k.key.id), "revoke");
    assert!(
        expect::ok(hourly.api_keys().verify(k.secret.expose()), "revoked").is_none(),
        "a revoked key must not verify, fresh stamp or not"
    );
    let short = short_lived(&*hourly, u.id, "short");
    used(
        &*hourly,
        short.secret.expose(),
        "short-lived key before expiry",
    );
    sleep_past(short.key.expires_at.expect("a short-lived key expires"));
    assert!(
        expect::ok(hourly.api_keys().verify(short.secret.expose()), "expired").is_none(),
        "an expired key must not verify, fresh stamp or not"
    );
}

/// A revoked key does not verify (`Ok(None)`), but its record remains, inactive.
pub fn api_key_verify_rejects_revoked(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dave");
    let created = expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "ci")), "create");
    let revoked = expect::ok(s.api_keys().revoke(created.key.id), "revoke");
    assert!(!revoked.is_active);
    assert!(
        expect::ok(s.api_keys().verify(created.secret.expose()), "verify").is_none(),
        "a revoked key must not verify"
    );
    let stored = expect::ok(s.api_keys().get(created.key.id), "revoke is soft");
    assert_eq!(stored, revoked);
    assert_eq!(stored.last_used_at, None, "a failed verify records no use");
}

/// A key of an inactive user does not verify; it does again once the user is reactivated.
pub fn api_key_verify_rejects_inactive_user(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "erin");
    let created = expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "ci")), "create");
    let deactivate = UserPatch {
        is_active: Some(false),
        ..UserPatch::default()
    };
    expect::ok(s.users().update(u.id, &deactivate), "deactivate");
    assert!(
        expect::ok(s.api_keys().verify(created.secret.expose()), "verify").is_none(),
        "key of an inactive user must not verify"
    );
    let activate = UserPatch {
        is_active: Some(true),
        ..UserPatch::default()
    };
    expect::ok(s.users().update(u.id, &activate), "reactivate");
    assert!(expect::ok(s.api_keys().verify(created.secret.expose()), "verify").is_some());
}

/// A refused verify records no use, even with `last_used_granularity` 0 (every verify due a stamp): the stamp of a key whose user is inactive or which has expired stays where the last accepted verify put it.
pub fn api_key_refused_verify_records_no_use(h: &dyn Harness) {
    let s = h.open_with(StoreConfig {
        api_keys: repo_core::ApiKeyPolicy {
            last_used_granularity: StdDuration::ZERO,
            ..Default::default()
        },
        ..StoreConfig::default()
    });
    let u = seed::user(&*s, "nour");
    let accepted = |secret: &str, what: &str| {
        expect::ok(s.api_keys().verify(secret), what)
            .unwrap_or_else(|| panic!("{what}: a usable key must verify"))
            .key
            .last_used_at
    };
    let key = expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "ci")), "create");
    let short = short_lived(&*s, u.id, "short");
    let stamped = accepted(key.secret.expose(), "before deactivation");
    let short_stamped = accepted(short.secret.expose(), "short-lived, before expiry");
    let set_active = |is_active: bool| UserPatch {
        is_active: Some(is_active),
        ..UserPatch::default()
    };
    expect::ok(s.users().update(u.id, &set_active(false)), "deactivate");
    std::thread::sleep(StdDuration::from_millis(5));
    assert!(
        expect::ok(s.api_keys().verify(key.secret.expose()), "inactive user").is_none(),
        "a key of an inactive user must not verify"
    );
    let stored = expect::ok(s.api_keys().get(key.key.id), "get");
    assert_eq!(stored.last_used_at, stamped, "inactive user: no stamp");
    expect::ok(s.users().update(u.id, &set_active(true)), "reactivate");
    sleep_past(short.key.expires_at.expect("a short-lived key expires"));
    assert!(
        expect::ok(s.api_keys().verify(short.secret.expose()), "expired").is_none(),
        "an expired key must not verify"
    );
    let stored = expect::ok(s.api_keys().get(short.key.id), "get");
    assert_eq!(stored.last_used_at, short_stamped, "expired: no stamp");
    assert!(
        accepted(key.secret.expose(), "reactivated") > stamped,
        "an accepted verify stamps again"
    );
}

/// A well-formed secret that matches no key is `Ok(None)`, not an error.
pub fn api_key_verify_unknown_secret_is_none(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "fay");
    expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "ci")), "create");
    let stranger = ApiKeySecret::generate();
    assert!(expect::ok(s.api_keys().verify(stranger.expose()), "verify").is_none());
}

/// Malformed or short secrets are `Validation { api_key }` and the error never repeats them.
pub fn api_key_verify_malformed_is_validation(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "gus");
    let good = expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "ci")), "create");
    let secret = good.secret.expose().to_owned();
    let mut upper_hex = secret.clone();
    upper_hex.replace_range(5..6, "A");
    let mut plus_body = secret.clone();
    plus_body.replace_range(20..21, "+");
    let mut no_sep = secret.clone();
    no_sep.replace_range(13..14, "-");
    let cases = [
        String::new(),
        "smtk_".into(),
        "smtk_short".into(),
        secret[..56].to_owned(),
        format!("{secret}x"),
        format!("sk_{}", &secret[3..]),
        format!("SMTK_{}", &secret[5..]),
        upper_hex,
        plus_body,
        no_sep,
    ];
    for bad in &cases {
        let e = expect::validation(s.api_keys().verify(bad), Field::ApiKey, "malformed secret");
        if bad.len() > 14 {
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains(&bad[14..]),
                "error repeats the secret: {shown}"
            );
        }
    }
    let stored = expect::ok(s.api_keys().get(good.key.id), "get");
    assert_eq!(stored.last_used_at, None, "malformed secrets touch no key");
}

/// Key names are unique per user regardless of case (`AlreadyExists { api_key, name }`), and another user may reuse a name.
pub fn api_key_name_is_unique_per_user_ignoring_case(h: &dyn Harness) {
    let s = h.store();
    let a = seed::user(&*s, "hank");
    let b = seed::user(&*s, "iris");
    expect::ok(
        s.api_keys().create(&NewApiKey::new(a.id, "Deploy")),
        "create",
    );
    for clash in ["Deploy", "deploy", "DEPLOY", "  deploy "] {
        expect::already_exists(
            s.api_keys().create(&NewApiKey::new(a.id, clash)),
            Entity::ApiKey,
            Field::Name,
            &format!("name {clash:?} for the same user"),
        );
    }
    expect::ok(
        s.api_keys().create(&NewApiKey::new(b.id, "Deploy")),
        "same name for another user",
    );
    expect::ok(
        s.api_keys().create(&NewApiKey::new(b.id, "deploy-2")),
        "another name",
    );
    assert_eq!(
        expect::ok(s.api_keys().list_for_user(a.id), "list a").len(),
        1
    );
    assert_eq!(
        expect::ok(s.api_keys().list_for_user(b.id), "list b").len(),
        2
    );
}

/// Key names are 1 to 100 characters without NUL, and permissions free of NUL: else `Validation`.
pub fn api_key_input_is_validated(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "jane");
    for (bad, what) in [("", "empty"), ("   ", "blank"), ("a\0b", "NUL")] {
        expect::validation(
            s.api_keys().create(&NewApiKey::new(u.id, bad)),
            Field::Name,
            what,
        );
    }
    expect::validation(
        s.api_keys().create(&NewApiKey::new(u.id, "n".repeat(101))),
        Field::Name,
        "101 characters",
    );
    let mut new = NewApiKey::new(u.id, "perm");
    new.permissions = Some(json!({"scope": "re\0ad"}));
    expect::validation(
        s.api_keys().create(&new),
        Field::Permissions,
        "NUL in permissions",
    );
    assert!(expect::ok(s.api_keys().list_for_user(u.id), "list").is_empty());
    expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "n".repeat(100))),
        "100 characters",
    );
}

/// A key for an unknown user is `NotFound { user }`.
pub fn api_key_create_for_unknown_user_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "kim");
    expect::not_found(
        s.api_keys()
            .create(&NewApiKey::new(UserId(u.id.0 + 1000), "ci")),
        Entity::User,
        "unknown user",
    );
}

/// With a limit of 3 active keys, the 4th is `Validation { api_keys }`; revoking or deleting one frees a slot; other users are unaffected.
pub fn api_key_active_limit_per_user(h: &dyn Harness) {
    let config = StoreConfig {
        api_keys: repo_core::ApiKeyPolicy {
            max_active_per_user: 3,
            ..Default::default()
        },
        ..StoreConfig::default()
    };
    let s = h.open_with(config);
    let u = seed::user(&*s, "leo");
    let other = seed::user(&*s, "max");
    let keys: Vec<_> = (1..=3)
        .map(|i| {
            expect::ok(
                s.api_keys().create(&NewApiKey::new(u.id, format!("k{i}"))),
                "key",
            )
        })
        .collect();
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 3);
    expect::validation(
        s.api_keys().create(&NewApiKey::new(u.id, "k4")),
        Field::ApiKeys,
        "4th active key",
    );
    expect::ok(
        s.api_keys().create(&NewApiKey::new(other.id, "k1")),
        "other user",
    );

    expect::ok(s.api_keys().revoke(keys[0].key.id), "revoke");
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 2);
    expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "k4")),
        "slot freed by revoke",
    );
    expect::validation(
        s.api_keys().create(&NewApiKey::new(u.id, "k5")),
        Field::ApiKeys,
        "limit reached again",
    );
    expect::ok(s.api_keys().delete(keys[1].key.id), "delete");
    expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "k5")),
        "slot freed by delete",
    );
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 3);
    assert_eq!(
        expect::ok(s.api_keys().list_for_user(u.id), "list").len(),
        4,
        "the revoked key is still listed"
    );
}

/// Without an explicit expiry a key expires 365 days after creation; `Days(n)` expires n days after.
pub fn api_key_expiry_defaults_to_365_days(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "nina");
    let before = repo_core::now();
    let k = expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "default")),
        "create",
    );
    let mut new = NewApiKey::new(u.id, "thirty");
    new.expiry = KeyExpiry::Days(30);
    let k30 = expect::ok(s.api_keys().create(&new), "create 30 days");
    let after = repo_core::now();

    let exp = k.key.expires_at.expect("default expiry is set");
    assert_eq!(exp, k.key.created_at + Duration::days(365));
    assert!(before + Duration::days(365) <= exp && exp <= after + Duration::days(365));
    assert_eq!(
        k30.key.expires_at,
        Some(k30.key.created_at + Duration::days(30))
    );
    assert_eq!(expect::ok(s.api_keys().get(k.key.id), "get"), k.key);
}

/// Expiry is at most 3650 days: 3650 is accepted, 3651 and 0 are `Validation { expires_at }`.
pub fn api_key_expiry_is_bounded(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "omar");
    let with = |name: &str, expiry| {
        let mut new = NewApiKey::new(u.id, name);
        new.expiry = expiry;
        s.api_keys().create(&new)
    };
    let max = expect::ok(with("max", KeyExpiry::Days(3650)), "3650 days");
    assert_eq!(
        max.key.expires_at,
        Some(max.key.created_at + Duration::days(3650))
    );
    expect::validation(
        with("over", KeyExpiry::Days(3651)),
        Field::ExpiresAt,
        "3651 days",
    );
    expect::validation(with("zero", KeyExpiry::Days(0)), Field::ExpiresAt, "0 days");
    assert_eq!(
        expect::ok(s.api_keys().list_for_user(u.id), "list").len(),
        1
    );
}

/// A key that never expires has no `expires_at`, only when asked for, and verifies.
pub fn api_key_never_expiry_is_none(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "pia");
    let mut new = NewApiKey::new(u.id, "forever");
    new.expiry = KeyExpiry::Never;
    let k = expect::ok(s.api_keys().create(&new), "create");
    assert_eq!(k.key.expires_at, None);
    assert_eq!(
        expect::ok(s.api_keys().get(k.key.id), "get").expires_at,
        None
    );
    assert!(expect::ok(s.api_keys().verify(k.secret.expose()), "verify").is_some());
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 1);
}

/// `purge_expired` deletes no unexpired or never-expiring key (an expired key cannot be created through the API).
pub fn api_key_purge_expired_keeps_unexpired_keys(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "quin");
    let mut ids = Vec::new();
    for (name, expiry) in [
        ("one-day", KeyExpiry::Days(1)),
        ("default", KeyExpiry::Default),
        ("never", KeyExpiry::Never),
    ] {
        let mut new = NewApiKey::new(u.id, name);
        new.expiry = expiry;
        ids.push(expect::ok(s.api_keys().create(&new), name).key.id);
    }
    let revoked = expect::ok(s.api_keys().revoke(ids[0]), "revoke");
    assert_eq!(expect::ok(s.api_keys().purge_expired(), "purge"), 0);
    for id in &ids {
        expect::ok(s.api_keys().get(*id), "key survives purge");
    }
    assert_eq!(
        expect::ok(s.api_keys().get(ids[0]), "revoked survives"),
        revoked
    );
}

/// Revoke is soft and delete is hard; both on an unknown key are `NotFound { api_key }`.
pub fn api_key_revoke_is_soft_and_delete_is_hard(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "rita");
    let k = expect::ok(s.api_keys().create(&NewApiKey::new(u.id, "ci")), "create");
    let revoked = expect::ok(s.api_keys().revoke(k.key.id), "revoke");
    assert!(!revoked.is_active);
    assert_eq!(revoked.id, k.key.id);
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 0);
    assert_eq!(
        expect::ok(s.api_keys().list_for_user(u.id), "list"),
        vec![revoked]
    );
    expect::ok(s.api_keys().delete(k.key.id), "delete");
    expect::not_found(s.api_keys().get(k.key.id), Entity::ApiKey, "deleted key");
    expect::not_found(
        s.api_keys().delete(k.key.id),
        Entity::ApiKey,
        "delete twice",
    );
    expect::not_found(
        s.api_keys().revoke(k.key.id),
        Entity::ApiKey,
        "revoke deleted",
    );
    assert!(expect::ok(s.api_keys().list_for_user(u.id), "list").is_empty());
    assert!(expect::ok(s.api_keys().verify(k.secret.expose()), "verify").is_none());
}

/// A user's keys list newest first, and only that user's keys.
pub fn api_key_list_is_per_user_newest_first(h: &dyn Harness) {
    let s = h.store();
    let a = seed::user(&*s, "sara");
    let b = seed::user(&*s, "tom");
    let mine: Vec<_> = ["one", "two", "three"]
        .iter()
        .map(|n| expect::ok(s.api_keys().create(&NewApiKey::new(a.id, *n)), n).key)
        .collect();
    let theirs = expect::ok(s.api_keys().create(&NewApiKey::new(b.id, "one")), "b").key;
    let listed = expect::ok(s.api_keys().list_for_user(a.id), "list a");
    assert_eq!(
        listed,
        vec![mine[2].clone(), mine[1].clone(), mine[0].clone()]
    );
    assert_eq!(
        expect::ok(s.api_keys().list_for_user(b.id), "list b"),
        vec![theirs]
    );
}

/// A grant to an API key is listed with the key as grantee and goes away with the key.
pub fn api_key_grant_goes_with_the_key(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "uri");
    let c = seed::collection(&*s, &owner, "uri-docs");
    let k = expect::ok(s.api_keys().create(&NewApiKey::new(owner.id, "bot")), "key");
    let g = expect::ok(
        s.collections()
            .grant(c.id, Grantee::ApiKey(k.key.id), AccessLevel::Read),
        "grant to key",
    );
    assert_eq!(g.grantee, Grantee::ApiKey(k.key.id));
    assert_eq!(g.permission, AccessLevel::Read);
    assert_eq!(
        expect::ok(s.collections().list_grants(c.id), "grants"),
        vec![g]
    );
    expect::ok(s.api_keys().delete(k.key.id), "delete key");
    assert!(expect::ok(s.collections().list_grants(c.id), "grants").is_empty());
}

/// Of 8 threads creating keys for one user with a limit of 3, exactly 3 succeed and the rest get `Validation { api_keys }`.
pub fn api_key_racing_creators_respect_the_limit(h: &dyn Harness) {
    let config = StoreConfig {
        api_keys: repo_core::ApiKeyPolicy {
            max_active_per_user: 3,
            ..Default::default()
        },
        ..StoreConfig::default()
    };
    let s = h.open_with(config);
    let u = seed::user(&*s, "vera");
    let store = std::sync::Arc::clone(&s);
    let uid = u.id;
    let results = crate::race::race(8, move |i| {
        store
            .api_keys()
            .create(&NewApiKey::new(uid, format!("key-{i}")))
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 3, "exactly the limit may be created: {results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        expect::validation(r, Field::ApiKeys, "creator over the limit");
    }
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 3);
}

/// Key-name case folding is Unicode-aware on both backends: `ÄRGER` and `ärger` are the same name.
pub fn api_key_name_folding_is_unicode_aware(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "wim");
    expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "Ärger")),
        "create",
    );
    for clash in ["ÄRGER", "ärger"] {
        expect::already_exists(
            s.api_keys().create(&NewApiKey::new(u.id, clash)),
            Entity::ApiKey,
            Field::Name,
            clash,
        );
    }
    expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "Arger")),
        "A is not Ä",
    );
}

/// A key created with `KeyExpiry::After(1 s)` expires one second after creation: it verifies before and is `Ok(None)` after, and no longer counts as active.
pub fn api_key_short_expiry_verifies_then_expires(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "sam");
    let k = short_lived(&*s, u.id, "ci-job");
    let expires = k.key.expires_at.expect("a short-lived key has an expiry");
    assert_eq!(expires, k.key.created_at + Duration::seconds(1));
    assert_eq!(expect::ok(s.api_keys().get(k.key.id), "get"), k.key);
    assert!(
        expect::ok(s.api_keys().verify(k.secret.expose()), "before expiry").is_some(),
        "the key verifies before it expires"
    );
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 1);
    sleep_past(expires);
    assert!(
        expect::ok(s.api_keys().verify(k.secret.expose()), "after expiry").is_none(),
        "an expired key must not verify"
    );
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 0);
    let listed = expect::ok(s.api_keys().list_for_user(u.id), "list");
    assert_eq!(
        listed.len(),
        1,
        "an expired key is still listed until purged"
    );
    assert!(listed[0].is_active, "expiry is not revocation");
}

/// Expired keys do not count toward the per-user limit of active keys.
pub fn api_key_expired_keys_do_not_count_toward_the_limit(h: &dyn Harness) {
    let config = StoreConfig {
        api_keys: repo_core::ApiKeyPolicy {
            max_active_per_user: 2,
            ..Default::default()
        },
        ..StoreConfig::default()
    };
    let s = h.open_with(config);
    let u = seed::user(&*s, "tom");
    short_lived(&*s, u.id, "a");
    let b = short_lived(&*s, u.id, "b");
    expect::validation(
        s.api_keys().create(&NewApiKey::new(u.id, "c")),
        Field::ApiKeys,
        "third key while two are active",
    );
    // `b` was created last, so it expires last: once it has, neither counts.
    sleep_past(b.key.expires_at.expect("expiry"));
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 0);
    expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "c")),
        "expired keys free their slots",
    );
    expect::ok(
        s.api_keys().create(&NewApiKey::new(u.id, "d")),
        "second slot",
    );
    expect::validation(
        s.api_keys().create(&NewApiKey::new(u.id, "e")),
        Field::ApiKeys,
        "limit reached by unexpired keys",
    );
    assert_eq!(expect::ok(s.api_keys().count_active(u.id), "count"), 2);
}

/// `purge_expired` deletes exactly the expired keys (of every user) and returns how many; unexpired, revoked-but-unexpired and never-expiring keys stay.
pub fn api_key_purge_expired_deletes_exactly_the_expired(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "uma");
    let v = seed::user(&*s, "vic");
    let expired = [
        short_lived(&*s, u.id, "short-1").key,
        short_lived(&*s, u.id, "short-2").key,
        short_lived(&*s, v.id, "short-3").key,
    ];
    let mut kept = Vec::new();
    for (name, expiry) in [("day", KeyExpiry::Days(1)), ("never", KeyExpiry::Never)] {
        let mut new = NewApiKey::new(u.id, name);
        new.expiry = expiry;
        kept.push(expect::ok(s.api_keys().create(&new), name).key);
    }
    let revoked = expect::ok(s.api_keys().create(&NewApiKey::new(v.id, "revoked")), "r");
    kept.push(expect::ok(s.api_keys().revoke(revoked.key.id), "revoke"));
    assert_eq!(
        expect::ok(s.api_keys().purge_expired(), "purge before expiry"),
        0
    );
    let latest = expired.iter().filter_map(|k| k.expires_at).max();
    sleep_past(latest.expect("expiry"));
    assert_eq!(expect::ok(s.api_keys().purge_expired(), "purge"), 3);
    for k in &expired {
        expect::not_found(s.api_keys().get(k.id), Entity::ApiKey, "purged key");
    }
    for k in &kept {
        assert_eq!(&expect::ok(s.api_keys().get(k.id), "kept key"), k);
    }
    assert_eq!(expect::ok(s.api_keys().purge_expired(), "again"), 0);
}

/// `KeyExpiry::After` must lie between one second and the policy maximum: zero or sub-second durations are `Validation { field: Field::ExpiresAt }`.
pub fn api_key_short_expiry_is_bounded(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "wes");
    let with = |name: &str, after: StdDuration| {
        let mut new = NewApiKey::new(u.id, name);
        new.expiry = KeyExpiry::After(after);
        s.api_keys().create(&new)
    };
    for (name, after) in [
        ("zero", StdDuration::ZERO),
        ("sub-second", StdDuration::from_millis(999)),
        ("too long", StdDuration::from_secs(3650 * 86_400 + 1)),
        ("huge", StdDuration::MAX),
    ] {
        expect::validation(with(name, after), Field::ExpiresAt, name);
    }
    let max = expect::ok(
        with("max", StdDuration::from_secs(3650 * 86_400)),
        "3650 days",
    );
    assert_eq!(
        max.key.expires_at,
        Some(max.key.created_at + Duration::days(3650))
    );
    let odd = expect::ok(with("odd", StdDuration::from_nanos(1_500_000_999)), "1.5 s");
    assert_eq!(
        odd.key.expires_at,
        Some(odd.key.created_at + Duration::microseconds(1_500_000)),
        "expiry is kept to the microsecond"
    );
    assert_eq!(expect::ok(s.api_keys().get(odd.key.id), "get"), odd.key);
    assert_eq!(
        expect::ok(s.api_keys().list_for_user(u.id), "list").len(),
        2
    );
}
