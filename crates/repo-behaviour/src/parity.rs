//! Backend differences found by the hostile-input property tests (`tests/hostile_input.rs`),
//! pinned as behaviours so that they stay fixed on both backends.

use crate::expect;
use crate::seed::{self, HASH};
use crate::Harness;
use repo_core::{Entity, Field, NewChunk, NewUser, PageRequest, SearchQuery, UserPatch};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __parity_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            parity::parity_taken_username_and_email_names_the_username,
            parity::parity_email_lookup_normalises_like_create,
            parity::parity_word_final_capital_sigma_is_found,
        }
    };
}

/// Creating (or renaming onto) a user whose username and email are both taken is `AlreadyExists { username }` on every backend.
pub fn parity_taken_username_and_email_names_the_username(h: &dyn Harness) {
    let s = h.store();
    let taken = seed::user(&*s, "ann");
    expect::already_exists(
        s.users()
            .create(&NewUser::new("ann", "ANN@example.com", HASH)),
        Entity::User,
        Field::Username,
        "create onto a taken username and email",
    );
    expect::already_exists(
        s.users()
            .create(&NewUser::new("ann2", "ann@example.com", HASH)),
        Entity::User,
        Field::Email,
        "create onto a taken email only",
    );
    let other = seed::user(&*s, "bea");
    let both = UserPatch {
        username: Some(taken.username.clone()),
        email: Some(taken.email.clone()),
        ..UserPatch::default()
    };
    expect::already_exists(
        s.users().update(other.id, &both),
        Entity::User,
        Field::Username,
        "rename onto a taken username and email",
    );
    let own_name = UserPatch {
        username: Some(other.username.clone()),
        email: Some(taken.email.clone()),
        ..UserPatch::default()
    };
    expect::already_exists(
        s.users().update(other.id, &own_name),
        Entity::User,
        Field::Email,
        "keeping one's own username while taking a taken email",
    );
}

/// An email is looked up normalised as it was stored (trimmed, lowercased): the address given at creation finds its user.
pub fn parity_email_lookup_normalises_like_create(h: &dyn Harness) {
    let s = h.store();
    let u = expect::ok(
        s.users()
            .create(&NewUser::new("eve", " Eve@Example.COM ", HASH)),
        "create",
    );
    assert_eq!(u.email, "eve@example.com");
    for given in [
        " Eve@Example.COM ",
        "eve@example.com",
        "\tEVE@example.com\n",
    ] {
        assert_eq!(
            expect::ok(s.users().get_by_email(given), "lookup"),
            u,
            "lookup by {given:?}"
        );
    }
}

/// A Greek word ending in capital sigma is found by its upper- and lower-case spellings, with either form of small sigma (every sigma folds to σ).
pub fn parity_word_final_capital_sigma_is_found(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "dan");
    let c = seed::collection(&*s, &u, "c");
    let d = seed::document(&*s, c.id, 1);
    let chunks = [NewChunk::new(d.id, 0, "ΟΔΟΣ ΚΑΙ ΣΚΑΛΑ")];
    expect::ok(s.chunks().insert_many(c.id, &chunks), "insert");
    for q in ["ΟΔΟΣ", "οδοσ", "οδος", "Οδοσ", "\"ΚΑΙ ΣΚΑΛΑ\"", "σκαλα"]
    {
        let page = expect::ok(
            s.chunks()
                .search(c.id, &SearchQuery::parse(q), PageRequest::default()),
            "search",
        );
        assert_eq!(page.total, 1, "query {q:?} must find the chunk");
    }
}
