//! Quickstart: with no configuration at all this uses an embedded SQLite file in the
//! working directory; set `DATABASE_URL=postgres://…` to run the same code on PostgreSQL.
//!
//! It creates (or reuses) a user, issues an API key and verifies it, creates (or
//! reuses) a collection, scopes the key to it, starts an operation in a unit of work and walks it to
//! completion. Running it again in the same directory succeeds too.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use serde_json::json;
use smtk_repo::{
    AccessLevel, Attempt, CollectionStatus, Grantee, NewApiKey, NewCollection, NewOperation,
    NewUser, OperationKind, OperationStatus, Principal, RepoError, RepoResult, State, Store, User,
};

/// A password hash as an application would produce it (argon2id, PHC format).
const DEMO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$cXVpY2tzdGFydA$2bq5yOW3eC2nVH1q6s1m7Q";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let store = smtk_repo::open_from_env()?;
    println!("backend: {}", store.backend());

    let user = get_or_create_user(&*store)?;
    println!("user: #{} {} <{}>", user.id, user.username, user.email);

    // An API key: the secret is shown once; only its SHA-256 is stored.
    let run = smtk_repo::now().format("%Y%m%d%H%M%S%6f");
    let created = store
        .api_keys()
        .create(&NewApiKey::new(user.id, format!("quickstart-{run}")))?;
    println!(
        "api key: {} (prefix {}, expires {:?})",
        created.key.name,
        created.key.key_prefix,
        created.key.expires_at.map(|t| t.date_naive())
    );
    let verified = store
        .api_keys()
        .verify(created.secret.expose())?
        .ok_or("a fresh key must verify")?;
    println!(
        "verified key {} for user {}",
        verified.key.id, verified.user.username
    );

    let collection = match store.collections().get_by_name("Quickstart docs") {
        Ok(c) => c,
        Err(RepoError::NotFound { .. }) => {
            let mut new = NewCollection::new("Quickstart docs", user.id);
            new.description = Some("Created by examples/quickstart.rs".into());
            store.collections().create(&new)?
        }
        Err(e) => return Err(e.into()),
    };
    let collection =
        store
            .collections()
            .get_with_access(collection.id, user.id.into(), AccessLevel::Admin)?;
    println!(
        "collection: {} ({}, store {}, status {})",
        collection.name,
        collection.embedding_model,
        collection.vector_store_name,
        collection.status
    );

    // A grant scopes the key: asked as the key (not as its user), it reaches only
    // this collection, and only to read.
    store.collections().grant(
        collection.id,
        Grantee::ApiKey(verified.key.id),
        AccessLevel::Read,
    )?;
    let as_key = Principal::from(&verified);
    store
        .collections()
        .get_with_access(collection.id, as_key, AccessLevel::Read)?;
    assert!(store
        .collections()
        .get_with_access(collection.id, as_key, AccessLevel::Write)
        .is_err());
    println!("api key scoped to {}: read only", collection.name);

    // One unit of work: lock the collection, check it is idle, create the operation,
    // mark the collection processing. Either all of it commits or none of it.
    let op = store.transaction(|tx| {
        let locked = tx.lock_collection(collection.id)?;
        if !tx.operations().active_for_collection(locked.id)?.is_empty() {
            return Err(RepoError::invalid_state(
                State::HasActiveOperation,
                Attempt::StartOperation,
            ));
        }
        let op = tx.operations().create(&NewOperation::new(
            locked.id,
            user.id,
            OperationKind::Index,
            json!({ "source": "./docs", "recursive": true }),
        ))?;
        tx.collections().update_status(
            locked.id,
            CollectionStatus::Processing,
            Some("indexing"),
        )?;
        Ok(op)
    })?;
    println!("operation {} created: {}", op.uuid, op.status);

    let op = store
        .operations()
        .transition(op.uuid, OperationStatus::Processing, None)?;
    println!("operation {}: {}", op.uuid, op.status);
    let op = store
        .operations()
        .transition(op.uuid, OperationStatus::Completed, None)?;
    println!(
        "operation {}: {} at {:?}",
        op.uuid, op.status, op.completed_at
    );
    store
        .collections()
        .update_status(collection.id, CollectionStatus::Ready, None)?;

    // Revoked keys stop verifying; delete it so repeated runs stay tidy.
    store.api_keys().revoke(created.key.id)?;
    assert!(store.api_keys().verify(created.secret.expose())?.is_none());
    // A caller that cached the key id has no access any more, without a new verify.
    assert!(matches!(
        store.collections().access_level(collection.id, as_key),
        Ok(None)
    ));
    store.api_keys().delete(created.key.id)?;
    println!("api key revoked and deleted");

    let ops = store.operations().list_for_collection(
        collection.id,
        &Default::default(),
        Default::default(),
    )?;
    println!("done: the collection has {} operation(s) in all", ops.total);
    Ok(())
}

fn get_or_create_user(store: &dyn Store) -> RepoResult<User> {
    match store.users().get_by_username("quickstart") {
        Ok(user) => Ok(user),
        Err(RepoError::NotFound { .. }) => store.users().create(&NewUser::new(
            "quickstart",
            "Quickstart@Example.com",
            DEMO_HASH,
        )),
        Err(e) => Err(e),
    }
}
