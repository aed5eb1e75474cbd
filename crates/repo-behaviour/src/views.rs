//! The read views (`Store::replica`, `Store::read_after`): the same API on every
//! backend and topology. On SQLite and on a PostgreSQL store without replicas they
//! read the one database; with replicas, what they may return is bounded as stated.

use crate::expect;
use crate::seed;
use crate::Harness;
use repo_core::{NodeRole, UserPatch, WritePosition};

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __views_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            views::view_read_after_a_position_sees_the_write,
            views::view_write_positions_only_grow,
            views::view_writes_through_a_read_view_reach_the_primary,
            views::view_nodes_list_the_primary_first,
        }
    };
}

/// A read through `read_after` with a position taken after a write sees that write, for every repository read tried.
pub fn view_read_after_a_position_sees_the_write(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "alice");
    let c = seed::collection(&*s, &owner, "docs");
    let renamed = expect::ok(
        s.users().update(
            owner.id,
            &UserPatch {
                full_name: Some(Some("Alice Liddell".into())),
                ..Default::default()
            },
        ),
        "update",
    );
    let position = expect::ok(s.write_position(), "write position");
    let view = s.read_after(&position);
    let read = expect::ok(view.users().get(owner.id), "user through read_after");
    assert_eq!(read, renamed, "read_after returned an older user");
    let visible = expect::ok(
        view.collections()
            .list_visible(owner.id.into(), Default::default()),
        "collections through read_after",
    );
    assert_eq!(visible.total, 1);
    assert_eq!(visible.items[0].id, c.id);
    // The token survives its text form, as a web application carries it.
    let carried: WritePosition = expect::ok(position.to_string().parse(), "parse position");
    assert_eq!(carried, position);
    let again = expect::ok(s.read_after(&carried).users().get(owner.id), "reread");
    assert_eq!(again, renamed);
}

/// Positions only grow: one taken after a later write is not before one taken earlier.
pub fn view_write_positions_only_grow(h: &dyn Harness) {
    let s = h.store();
    let first = expect::ok(s.write_position(), "first position");
    seed::user(&*s, "alice");
    let second = expect::ok(s.write_position(), "second position");
    assert!(second >= first, "{second} before {first}");
}

/// Writes through either read view reach the primary (never a read-only replica), and a unit of work still commits.
pub fn view_writes_through_a_read_view_reach_the_primary(h: &dyn Harness) {
    let s = h.store();
    let created = expect::ok(
        s.replica().users().create(&repo_core::NewUser::new(
            "bob",
            "bob@example.com",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        )),
        "create through the stale-tolerant view",
    );
    let position = expect::ok(s.write_position(), "position");
    let logged_in = expect::ok(
        s.read_after(&position).users().record_login(created.id),
        "record_login through read_after",
    );
    assert!(logged_in.last_login.is_some());
    let fetched = expect::ok(s.users().get(created.id), "the primary has it");
    assert_eq!(fetched.last_login, logged_in.last_login);
    let in_tx = expect::ok(
        s.transaction(|tx| tx.users().get(created.id)),
        "unit of work",
    );
    assert_eq!(in_tx.id, created.id);
}

/// `nodes()` lists the primary first, and the stale-tolerant view answers reads without error.
pub fn view_nodes_list_the_primary_first(h: &dyn Harness) {
    let s = h.store();
    let nodes = s.nodes();
    assert!(!nodes.is_empty());
    assert_eq!(nodes[0].role, NodeRole::Primary);
    assert!(nodes[1..].iter().all(|n| n.role == NodeRole::Replica));
    assert!(
        nodes.iter().all(|n| !n.url.contains("secret")),
        "a node URL shows a password"
    );
    let u = seed::user(&*s, "carol");
    // Stale-tolerant: may not see the user yet, but must answer NotFound or the user.
    let stale = s.replica().users().get(u.id);
    match stale {
        Ok(read) => assert_eq!(read.id, u.id),
        Err(e) => assert!(
            matches!(e, repo_core::RepoError::NotFound { .. }),
            "stale read failed: {e:?}"
        ),
    }
}
