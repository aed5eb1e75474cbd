//! Quickstart: with no configuration at all this uses an embedded SQLite file in the
//! working directory; set `DATABASE_URL=postgres://…` to run the same code on PostgreSQL.
//!
//! It creates (or reuses) a user, issues an API key and verifies it, creates (or
//! reuses) a collection and scopes the key to it, registers three documents, splits
//! them into chunks, searches them, and starts an indexing operation in a unit of work
//! and walks it to completion. Running it again in the same directory succeeds too
//! (documents are idempotent on their content hash, so the second run finds them).
//!
//! ```text
//! cargo run --example quickstart
//! DATABASE_URL=postgres://user@localhost/mydb cargo run --example quickstart
//! ```
//!
//! Its own output goes to stdout and the library's log lines to stderr
//! (`RUST_LOG=debug` shows every call); either is coloured only when it is a terminal.

use serde_json::json;
use sha2::{Digest, Sha256};
use smtk_repo::{
    AccessLevel, Attempt, CollectionStatus, DocumentStatus, DocumentStatusUpdate, Grantee,
    NewApiKey, NewChunk, NewCollection, NewDocument, NewOperation, NewUser, OperationKind,
    OperationStatus, PageRequest, Principal, RepoError, RepoResult, SearchQuery, State, Store,
    Timestamp, User,
};
use std::fmt::Display;
use std::io::IsTerminal;

/// A password hash as an application would produce it (argon2id, PHC format).
const DEMO_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$cXVpY2tzdGFydA$2bq5yOW3eC2nVH1q6s1m7Q";

/// The "files" the quickstart indexes: a path and its text, paragraphs apart.
const FILES: [(&str, &str); 3] = [
    (
        "/handbook/onboarding.md",
        "New staff get a laptop and a badge on their first day.\n\n\
         Your manager books a welcome lunch in the first week.",
    ),
    (
        "/handbook/expenses.md",
        "Expense reports are due by the fifth of each month.\n\n\
         Keep receipts for every purchase above twenty euros.",
    ),
    (
        "/handbook/security.md",
        "Lock your laptop whenever you leave your desk.\n\n\
         Report a lost badge to the front desk the same day.",
    ),
];

/// Labelled lines on stdout, the label in bold only when stdout is a terminal.
struct Report {
    colour: bool,
}

impl Report {
    fn new() -> Self {
        Self {
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn line(&self, label: &str, value: impl Display) {
        let label = format!("{label:<11}");
        if self.colour {
            println!("\x1b[1;36m{label}\x1b[0m {value}");
        } else {
            println!("{label} {value}");
        }
    }
}

/// A timestamp as a person reads it, or `never`.
fn when(at: Option<Timestamp>) -> String {
    at.map_or_else(
        || "never".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let out = Report::new();

    let store = smtk_repo::open_from_env()?;
    out.line("backend", store.backend());

    let user = get_or_create_user(&*store)?;
    out.line(
        "user",
        format!(
            "#{} {} <{}>, last login {}",
            user.id,
            user.username,
            user.email,
            when(user.last_login)
        ),
    );
    let user = store.users().record_login(user.id)?;
    out.line("login", when(user.last_login));

    // An API key: the secret is shown once; only its SHA-256 is stored.
    let run = smtk_repo::now().format("%Y%m%d%H%M%S%6f");
    let created = store
        .api_keys()
        .create(&NewApiKey::new(user.id, format!("quickstart-{run}")))?;
    out.line(
        "api key",
        format!(
            "{} (starts {}…, expires {})",
            created.key.name,
            created.key.key_prefix,
            when(created.key.expires_at)
        ),
    );
    let verified = store
        .api_keys()
        .verify(created.secret.expose())?
        .ok_or("a fresh key must verify")?;
    out.line(
        "verified",
        format!("the key acts for {}", verified.user.username),
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
    out.line(
        "collection",
        format!(
            "{} (model {}, chunks of {} characters, status {})",
            collection.name, collection.embedding_model, collection.chunk_size, collection.status
        ),
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
    out.line(
        "scope",
        format!("the key may read {} only", collection.name),
    );

    // Documents are idempotent on (collection, content hash): a second run gets the
    // stored ones back with `created: false`.
    let batch: Vec<NewDocument> = FILES
        .iter()
        .map(|(path, text)| {
            NewDocument::builder(collection.id)
                .file_path(*path)
                .file_size(text.len() as i64)
                .content_hash(format!("{:x}", Sha256::digest(text.as_bytes())))
                .mime_type("text/markdown")
                .build()
        })
        .collect();
    let registered = store.documents().register_many(&batch)?;
    let new_documents = registered.iter().filter(|r| r.created).count();
    out.line(
        "documents",
        format!(
            "{} registered ({new_documents} new, {} already stored)",
            registered.len(),
            registered.len() - new_documents
        ),
    );

    // One chunk per paragraph, inserted in one call (all or nothing), for the
    // documents that have none yet.
    let mut inserted = 0;
    for (r, (_, text)) in registered.iter().zip(FILES) {
        let doc = &r.document;
        let page = store
            .chunks()
            .list_by_document(doc.id, PageRequest::first(1))?;
        if page.total > 0 {
            continue;
        }
        let mut chunks = Vec::new();
        let mut start = 0;
        for (index, paragraph) in text.split("\n\n").enumerate() {
            let mut chunk = NewChunk::new(doc.id, index as i32, paragraph.trim());
            chunk.start_offset = Some(start as i32);
            chunk.end_offset = Some((start + paragraph.len()) as i32);
            chunk.token_count = Some(paragraph.split_whitespace().count() as i32);
            start += paragraph.len() + 2;
            chunks.push(chunk);
        }
        inserted += store.chunks().insert_many(collection.id, &chunks)?;
        let mut done = DocumentStatusUpdate::to(DocumentStatus::Completed);
        done.chunk_count = Some(chunks.len() as i32);
        store.documents().update_status(doc.id, &done)?;
    }
    let stats = store.documents().stats(collection.id)?;
    out.line(
        "chunks",
        format!(
            "{inserted} inserted now; the collection holds {} documents, {} bytes, {} chunks",
            stats.total, stats.total_bytes, stats.total_chunks
        ),
    );

    // Full-text search within the collection: words, "phrases", OR and -exclusions.
    for query in ["laptop", "\"first day\" OR receipts", "badge -lost"] {
        let hits = store.chunks().search(
            collection.id,
            &SearchQuery::parse(query),
            PageRequest::first(5),
        )?;
        out.line("search", format!("{query}: {} hit(s)", hits.total));
        for hit in &hits.items {
            let file = registered
                .iter()
                .find(|r| r.document.id == hit.chunk.document_id)
                .map_or("?", |r| r.document.file_name.as_str());
            println!(
                "{:<11}   {file} #{} (score {:.2}): {}",
                "", hit.chunk.chunk_index, hit.score, hit.chunk.content
            );
        }
    }

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
            json!({ "source": "/handbook", "recursive": true }),
        ))?;
        tx.collections().update_status(
            locked.id,
            CollectionStatus::Processing,
            Some("indexing"),
        )?;
        Ok(op)
    })?;
    out.line(
        "operation",
        format!(
            "{} {} created {}",
            op.kind,
            op.uuid,
            when(Some(op.created_at))
        ),
    );

    let op = store
        .operations()
        .transition(op.uuid, OperationStatus::Processing, None)?;
    out.line(
        "operation",
        format!("{}, started {}", op.status, when(op.started_at)),
    );
    let op = store
        .operations()
        .transition(op.uuid, OperationStatus::Completed, None)?;
    out.line(
        "operation",
        format!("{}, finished {}", op.status, when(op.completed_at)),
    );
    let collection =
        store
            .collections()
            .update_status(collection.id, CollectionStatus::Ready, None)?;
    out.line("collection", format!("status {}", collection.status));

    // Revoked keys stop verifying; delete it so repeated runs stay tidy.
    store.api_keys().revoke(created.key.id)?;
    assert!(store.api_keys().verify(created.secret.expose())?.is_none());
    // A caller that cached the key id has no access any more, without a new verify.
    assert!(matches!(
        store.collections().access_level(collection.id, as_key),
        Ok(None)
    ));
    store.api_keys().delete(created.key.id)?;
    out.line("api key", "revoked and deleted");

    let ops = store.operations().list_for_collection(
        collection.id,
        &Default::default(),
        Default::default(),
    )?;
    out.line(
        "done",
        format!("{} has {} operation(s) in all", collection.name, ops.total),
    );
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
