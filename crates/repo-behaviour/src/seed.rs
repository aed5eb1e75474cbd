//! Rows the behaviours start from. Every test has its own database, so fixed names
//! cannot collide with another test.

use repo_core::{
    AccessLevel, Collection, CollectionStatus, Grantee, NewCollection, NewOperation, NewUser,
    Operation, OperationKind, Store, SyncMode, User,
};
use serde_json::{json, Value};

/// A PHC-shaped password hash (the repositories never hash anything themselves).
pub(crate) const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// An active, ordinary user `name` with email `name@example.com`.
pub(crate) fn user(store: &dyn Store, name: &str) -> User {
    store
        .users()
        .create(&NewUser::new(name, format!("{name}@example.com"), HASH))
        .unwrap_or_else(|e| panic!("seeding user {name:?} failed: {e}"))
}

/// A superuser `name`.
pub(crate) fn superuser(store: &dyn Store, name: &str) -> User {
    let mut new = NewUser::new(name, format!("{name}@example.com"), HASH);
    new.is_superuser = true;
    store
        .users()
        .create(&new)
        .unwrap_or_else(|e| panic!("seeding superuser {name:?} failed: {e}"))
}

/// A private, one-time collection with every default.
pub(crate) fn collection(store: &dyn Store, owner: &User, name: &str) -> Collection {
    create_collection(store, &NewCollection::new(name, owner.id))
}

/// A public collection.
pub(crate) fn public_collection(store: &dyn Store, owner: &User, name: &str) -> Collection {
    let mut new = NewCollection::new(name, owner.id);
    new.is_public = true;
    create_collection(store, &new)
}

/// A continuous collection syncing every `interval` minutes.
pub(crate) fn continuous_collection(
    store: &dyn Store,
    owner: &User,
    name: &str,
    interval: i32,
) -> Collection {
    let mut new = NewCollection::new(name, owner.id);
    new.sync_mode = SyncMode::Continuous;
    new.sync_interval_minutes = Some(interval);
    create_collection(store, &new)
}

/// Creates `new` or panics with the error.
pub(crate) fn create_collection(store: &dyn Store, new: &NewCollection) -> Collection {
    store
        .collections()
        .create(new)
        .unwrap_or_else(|e| panic!("seeding collection {:?} failed: {e}", new.name))
}

/// Moves a pending collection through `processing` to `ready`.
pub(crate) fn make_ready(store: &dyn Store, c: &Collection) -> Collection {
    let repo = store.collections();
    repo.update_status(c.id, CollectionStatus::Processing, None)
        .and_then(|_| repo.update_status(c.id, CollectionStatus::Ready, None))
        .unwrap_or_else(|e| panic!("making collection {:?} ready failed: {e}", c.name))
}

/// Grants `level` on `c` to `user`.
pub(crate) fn grant(store: &dyn Store, c: &Collection, user: &User, level: AccessLevel) {
    store
        .collections()
        .grant(c.id, Grantee::User(user.id), level)
        .unwrap_or_else(|e| panic!("granting {level} on {:?} failed: {e}", c.name));
}

/// A non-empty operation configuration.
pub(crate) fn config() -> Value {
    json!({"source": "/data/docs", "recursive": true})
}

/// A pending operation of `kind` on `c` created by `user`.
pub(crate) fn operation(
    store: &dyn Store,
    c: &Collection,
    user: &User,
    kind: OperationKind,
) -> Operation {
    store
        .operations()
        .create(&NewOperation::new(c.id, user.id, kind, config()))
        .unwrap_or_else(|e| panic!("seeding {kind} operation failed: {e}"))
}
