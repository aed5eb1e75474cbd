//! Rows the behaviours start from. Every test has its own database, so fixed names
//! cannot collide with another test.

use repo_core::{
    AccessLevel, Collection, CollectionId, CollectionStatus, Document, DocumentId, Grantee,
    NewChunk, NewCollection, NewDocument, NewOperation, NewUser, Operation, OperationKind, Store,
    SyncMode, User,
};
use serde_json::{json, Value};

/// A PHC-shaped password hash (the repositories never hash anything themselves).
pub(crate) const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// An active, ordinary user `name` with email `name@example.com`.
#[track_caller]
pub(crate) fn user(store: &dyn Store, name: &str) -> User {
    seeded(
        store
            .users()
            .create(&NewUser::new(name, format!("{name}@example.com"), HASH)),
        format!("seeding user {name:?}"),
    )
}

/// A superuser `name`.
#[track_caller]
pub(crate) fn superuser(store: &dyn Store, name: &str) -> User {
    let mut new = NewUser::new(name, format!("{name}@example.com"), HASH);
    new.is_superuser = true;
    seeded(
        store.users().create(&new),
        format!("seeding superuser {name:?}"),
    )
}

/// A private, one-time collection with every default.
#[track_caller]
pub(crate) fn collection(store: &dyn Store, owner: &User, name: &str) -> Collection {
    create_collection(store, &NewCollection::new(name, owner.id))
}

/// A public collection.
#[track_caller]
pub(crate) fn public_collection(store: &dyn Store, owner: &User, name: &str) -> Collection {
    let mut new = NewCollection::new(name, owner.id);
    new.is_public = true;
    create_collection(store, &new)
}

/// A continuous collection syncing every `interval` minutes.
#[track_caller]
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
#[track_caller]
pub(crate) fn create_collection(store: &dyn Store, new: &NewCollection) -> Collection {
    seeded(
        store.collections().create(new),
        format!("seeding collection {:?}", new.name),
    )
}

/// Moves a pending collection through `processing` to `ready`.
#[track_caller]
pub(crate) fn make_ready(store: &dyn Store, c: &Collection) -> Collection {
    let repo = store.collections();
    seeded(
        repo.update_status(c.id, CollectionStatus::Processing, None)
            .and_then(|_| repo.update_status(c.id, CollectionStatus::Ready, None)),
        format!("making collection {:?} ready", c.name),
    )
}

/// Grants `level` on `c` to `user`.
#[track_caller]
pub(crate) fn grant(store: &dyn Store, c: &Collection, user: &User, level: AccessLevel) {
    seeded(
        store
            .collections()
            .grant(c.id, Grantee::User(user.id), level),
        format!("granting {level} on {:?}", c.name),
    );
}

/// A non-empty operation configuration.
pub(crate) fn config() -> Value {
    json!({"source": "/data/docs", "recursive": true})
}

/// A pending operation of `kind` on `c` created by `user`.
#[track_caller]
pub(crate) fn operation(
    store: &dyn Store,
    c: &Collection,
    user: &User,
    kind: OperationKind,
) -> Operation {
    seeded(
        store
            .operations()
            .create(&NewOperation::new(c.id, user.id, kind, config())),
        format!("seeding {kind} operation"),
    )
}

/// The `n`-th made-up content hash: 64 lowercase hex digits, in the order of `n`.
pub(crate) fn content_hash(n: u64) -> String {
    format!("{n:064x}")
}

/// A document of `c` whose hash is [`content_hash`]`(n)`, with no URI or metadata.
pub(crate) fn new_document(c: CollectionId, n: u64) -> NewDocument {
    NewDocument::new(
        c,
        format!("/data/doc-{n}.txt"),
        format!("doc-{n}.txt"),
        i64::try_from(n).unwrap_or(i64::MAX),
        content_hash(n),
    )
}

/// Registers [`new_document`]`(c, n)`, which must be new.
#[track_caller]
pub(crate) fn document(store: &dyn Store, c: CollectionId, n: u64) -> Document {
    let registered = seeded(
        store.documents().register(&new_document(c, n)),
        format!("registering document {n}"),
    );
    assert!(registered.created, "document {n} already existed");
    registered.document
}

/// Stores one chunk per index of `indexes` for `doc` in `c`, with content `chunk <i>`.
#[track_caller]
pub(crate) fn chunks(store: &dyn Store, c: CollectionId, doc: DocumentId, indexes: &[i32]) {
    let batch: Vec<NewChunk> = indexes
        .iter()
        .map(|&i| NewChunk::new(doc, i, format!("chunk {i} of a document")))
        .collect();
    let inserted = seeded(
        store.chunks().insert_many(c, &batch),
        format!("inserting {} chunks", batch.len()),
    );
    assert_eq!(inserted, batch.len() as u64, "chunks inserted");
}

/// The value, or a panic located at the behaviour that asked for the row.
#[track_caller]
fn seeded<T>(result: repo_core::RepoResult<T>, what: String) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what} failed: {e:?} ({e})"),
    }
}
