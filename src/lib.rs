//! # smtk-repo
//!
//! One data-access layer for a self-hosted semantic-search application that behaves
//! the same on **SQLite** (development, single node, tests) and **PostgreSQL**
//! (production). It stores users, API keys, collections with access grants,
//! background operations, documents and their chunks, with bulk ingestion and
//! full-text search, behind one set of repository traits. Every call returns the same
//! values and the same [`RepoError`]s on both databases.
//!
//! This page walks through an application's use of it: [open](#1-open-a-store),
//! [create](#2-create-users-collections-documents-chunks-and-search),
//! [unit of work](#3-units-of-work), [errors](#4-errors), [async](#5-from-async-code),
//! [configuration](#6-configuration). The rules each call follows, the same on both
//! backends, are in `docs/domain.md` and `docs/semantics.md` in the repository.
//!
//! ## 1. Open a store
//!
//! [`open_from_env`] reads `DATABASE_URL` and the `DB_*` settings (see
//! [configuration](#6-configuration)), runs pending migrations and returns an
//! `Arc<dyn Store>`. With `DATABASE_URL` unset it uses an embedded SQLite file,
//! [`DEFAULT_SQLITE_FILE`], in the working directory, so a fresh checkout needs no
//! server; `DATABASE_URL=postgres://…` runs the same code on PostgreSQL.
//!
//! ```no_run
//! let store = smtk_repo::open_from_env()?; // DATABASE_URL, or smtk.sqlite3
//! println!("connected to {}", store.backend());
//! # Ok::<(), smtk_repo::RepoError>(())
//! ```
//!
//! [`open`] takes the URL and a [`StoreConfig`] from code instead (the examples below
//! use an in-memory SQLite database). The URL picks the backend: `sqlite://PATH`,
//! `sqlite::memory:`, a `file:` URI or a path ending in `.db`, `.sqlite` or `.sqlite3`
//! is SQLite; `postgres://…` or `postgresql://…` is PostgreSQL; anything else is a
//! [`RepoError::Config`] that lists the schemes compiled in (Cargo features `sqlite`
//! and `postgres`, both on by default).
//!
//! ```
//! use smtk_repo::{BackendKind, StoreConfig};
//!
//! let store = smtk_repo::open("sqlite::memory:", &StoreConfig::default())?;
//! assert_eq!(store.backend(), BackendKind::Sqlite);
//! store.health()?;
//! # Ok::<(), smtk_repo::RepoError>(())
//! ```
//!
//! The [`Store`] is `Send + Sync` and holds the connection pool: open it once and
//! share the `Arc` (each call checks a connection out and returns it).
//!
//! ## 2. Create users, collections, documents, chunks, and search
//!
//! Each repository hangs off the store: [`users`](Repositories::users),
//! [`api_keys`](Repositories::api_keys), [`collections`](Repositories::collections),
//! [`operations`](Repositories::operations), [`documents`](Repositories::documents),
//! [`chunks`](Repositories::chunks). Input types are validated before any query
//! (a NUL character, a blank name, a plaintext password are [`RepoError::Validation`]).
//!
//! ```
//! use smtk_repo::{NewChunk, NewCollection, NewDocument, NewUser, PageRequest, SearchQuery};
//!
//! # let store = smtk_repo::open("sqlite::memory:", &Default::default())?;
//! // Passwords arrive hashed (a PHC string); plaintext is refused.
//! let alice = store.users().create(&NewUser::new(
//!     "alice",
//!     "Alice@Example.com",
//!     "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
//! ))?;
//! assert_eq!(alice.email, "alice@example.com"); // stored lowercase
//!
//! let docs = store.collections().create(&NewCollection::new("Handbook", alice.id))?;
//!
//! // Documents are idempotent on (collection, content hash): registering the same
//! // content again returns the stored document with `created: false`.
//! let new = NewDocument::builder(docs.id)
//!     .file_path("/handbook/onboarding.md")
//!     .file_size(2048)
//!     .content_hash("3f".repeat(32)) // SHA-256 hex of the content
//!     .build();
//! let first = store.documents().register(&new)?;
//! let again = store.documents().register(&new)?;
//! assert!(first.created && !again.created);
//! assert_eq!(first.document.id, again.document.id);
//!
//! // Chunks go in bulk (up to 10,000 per call, all or nothing).
//! let doc = first.document.id;
//! let inserted = store.chunks().insert_many(docs.id, &[
//!     NewChunk::new(doc, 0, "New staff get a laptop on their first day."),
//!     NewChunk::new(doc, 1, "Expense reports are due by the fifth of each month."),
//! ])?;
//! assert_eq!(inserted, 2);
//!
//! // Full-text search within one collection: words, "phrases", OR, -exclusions.
//! let hits = store.chunks().search(
//!     docs.id,
//!     &SearchQuery::parse("\"first day\" laptop"),
//!     PageRequest::first(10),
//! )?;
//! assert_eq!(hits.total, 1);
//! assert_eq!(hits.items[0].chunk.chunk_index, 0);
//! # Ok::<(), smtk_repo::RepoError>(())
//! ```
//!
//! Listings return a [`Page`] (`items` and the `total`) for a [`PageRequest`]
//! (offset and limit); the newest-first listings of users, visible collections and
//! operations also take a [`CursorRequest`] and return a [`CursorPage`], whose pages
//! do not shift when rows are inserted between fetches.
//!
//! Access checks take a [`Principal`]: a user (`user.id.into()`) or an API key that
//! [`verify`](ApiKeyRepository::verify) accepted (`Principal::from(&verified)`). A
//! missing collection is `NotFound`; one the principal may not use that way is
//! `AccessDenied`.
//!
//! ## 3. Units of work
//!
//! [`transaction`](trait.Store.html#method.transaction) runs a closure in one write
//! transaction across repositories and commits only if it returns `Ok`. Inside it,
//! call through `tx` only. [`lock_collection`](Transaction::lock_collection) locks the
//! collection row (`SELECT … FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite).
//! Serialization failures, deadlocks and SQLite busy errors re-run the closure a
//! bounded number of times (`DB_TX_MAX_ATTEMPTS`), then surface as
//! [`RepoError::Conflict`]. The closure may therefore run more than once: keep side
//! effects outside it.
//!
//! ```
//! use serde_json::json;
//! use smtk_repo::{CollectionStatus, NewCollection, NewOperation, NewUser, OperationKind};
//!
//! # let store = smtk_repo::open("sqlite::memory:", &Default::default())?;
//! # let alice = store.users().create(&NewUser::new(
//! #     "alice", "alice@example.com", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"))?;
//! # let docs = store.collections().create(&NewCollection::new("Handbook", alice.id))?;
//! // Start indexing: lock the collection, create the operation, mark the collection
//! // processing. All of it commits, or none of it.
//! let op = store.transaction(|tx| {
//!     let collection = tx.lock_collection(docs.id)?;
//!     let op = tx.operations().create(&NewOperation::new(
//!         collection.id,
//!         alice.id,
//!         OperationKind::Index,
//!         json!({ "source": "/handbook" }),
//!     ))?;
//!     tx.collections().update_status(collection.id, CollectionStatus::Processing, None)?;
//!     Ok(op)
//! })?;
//! assert_eq!(store.collections().get(docs.id)?.status, CollectionStatus::Processing);
//! assert_eq!(store.operations().get(op.uuid)?.uuid, op.uuid);
//! # Ok::<(), smtk_repo::RepoError>(())
//! ```
//!
//! A collection holds at most one active (pending or processing) operation: a second
//! `create` is `Conflict` even when two callers race. A retry after a lost connection
//! can give the operation an idempotency key
//! ([`NewOperation::with_idempotency_key`]) so that it finds the first attempt instead
//! of creating a second one.
//!
//! ## 4. Errors
//!
//! Every call returns [`RepoResult`]; [`RepoError`] is one enum, the same on both
//! backends, and no message, `Debug` or log line shows a URL password, an API-key
//! secret or a key hash.
//!
//! | variant | meaning | retry? |
//! |---|---|---|
//! | `NotFound` | the entity does not exist | no |
//! | `AlreadyExists` | a unique rule (username, email, collection name, …) is taken; names the field | no |
//! | `AccessDenied` | the entity exists but the principal may not use it that way | no |
//! | `Validation` | input broke a rule; names the field (and the item of a bulk call) | no |
//! | `InvalidState` | a state machine refused the move; says the current and attempted state | no |
//! | `Conflict` | a write conflict left after the unit of work's retries, or a second active operation | when transient |
//! | `Unavailable` | pool timeout, connection refused or lost, statement timeout, read-only standby | yes |
//! | `Config` | bad URL or setting, backend not compiled in, migrations missing | no |
//! | `Backend` | anything else, with the driver's error as its `source` | no |
//!
//! [`RepoError::is_retryable`] says whether the same call may succeed later.
//! The error also has a stable machine code, `error.code()` (`"not_found"`,
//! `"already_exists"`, …), and the HTTP status it maps to, `error.http_status()`, so
//! an HTTP service answers every error the same way.
//!
//! ```
//! use smtk_repo::{NewUser, RepoError};
//!
//! # let store = smtk_repo::open("sqlite::memory:", &Default::default())?;
//! let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
//! store.users().create(&NewUser::new("bob", "bob@example.com", hash))?;
//! match store.users().create(&NewUser::new("bob", "robert@example.com", hash)) {
//!     Err(RepoError::AlreadyExists { .. }) => { /* 409: pick another username */ }
//!     Err(e) if e.is_retryable() => { /* 503: try again later */ }
//!     Err(e) => return Err(e),
//!     Ok(_) => unreachable!("the username is taken"),
//! }
//! assert!(matches!(
//!     store.users().create(&NewUser::new("carol", "carol@example.com", "hunter2")),
//!     Err(RepoError::Validation { .. }) // plaintext passwords are refused
//! ));
//! # Ok::<(), smtk_repo::RepoError>(())
//! ```
//!
//! ## 5. From async code
//!
//! The API is synchronous, like Diesel. With the Cargo feature `tokio`,
#![cfg_attr(feature = "tokio", doc = "[`AsyncStore`]")]
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[`AsyncStore`](../repo_async/struct.AsyncStore.html)"
)]
//! wraps the same store for tokio applications: every repository and
//! units of work as `async` calls, each on tokio's blocking pool and never more at
//! once than the connection pool holds, with the caller's tracing span carried across.
//! No `spawn_blocking` in application code. A dropped future never leaves a call
//! half-written: a call already sent completes or rolls back as a whole (see the
//! `repo-async` crate docs).
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> smtk_repo::RepoResult<()> {
//! let db = smtk_repo::AsyncStore::open_from_env().await?; // migrations off the runtime
//! let user = db.users(|users| users.get_by_username("alice")).await?;
//! db.transaction(move |tx| tx.users().record_login(user.id)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## 6. Configuration
//!
//! [`open_from_env`] reads these variables through [`StoreConfig::from_env`]; every
//! setting is also a field of [`StoreConfig`] for [`open`]. A value that does not
//! parse or lies outside its range is a `Config` error naming the variable
//! ([`config::NUMERIC_SETTINGS`] lists the ranges).
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | unset: `smtk.sqlite3` (set but blank: `Config` error) | which database; see [open](#1-open-a-store) |
//! | `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_DB`, `POSTGRES_USER`, `POSTGRES_PASSWORD` | –, 5432, postgres, postgres, – | build a PostgreSQL URL when `DATABASE_URL` is unset and `POSTGRES_HOST` is set |
//! | `DATABASE_MIGRATION_URL` | unset | PostgreSQL: a direct URL (no pooler) that migrations run over |
//! | `DB_RUN_MIGRATIONS` | true | run pending migrations on open; false: a missing migration is a `Config` error |
//! | `DB_POOL_SIZE`, `DB_MAX_OVERFLOW` | 5, 10 | connections kept open; extra ones under load |
//! | `DB_POOL_TIMEOUT` | 5 s | wait for a free connection before `Unavailable` |
//! | `DB_POOL_RECYCLE` | 3600 s | close connections older than this (0 = never) |
//! | `DB_POOL_PRE_PING`, `DB_POOL_PRE_PING_IDLE_MS` | true, 1000 | test a connection on checkout if it sat idle this long |
//! | `DB_TX_MAX_ATTEMPTS` | 6 | attempts of a unit of work after transient conflicts |
//! | `DB_HEALTH_TIMEOUT_MS` | 2000 | longest wait of [`Store::health`] |
//! | `DB_SLOW_QUERY_MS` | 1000 | statements this slow are logged at WARN (SQL only, never bound values) |
//! | `API_KEY_MAX_ACTIVE_PER_USER` | 20 | active, unexpired API keys per user |
//! | `DB_SQLITE_BUSY_TIMEOUT_MS` | 5000 | SQLite `PRAGMA busy_timeout` |
//! | `DB_STATEMENT_TIMEOUT_MS`, `DB_LOCK_TIMEOUT_MS`, `DB_IDLE_IN_TRANSACTION_TIMEOUT_MS` | 30000, 5000, 60000 | PostgreSQL session timeouts (0 = none) |
//! | `DB_APPLICATION_NAME` | `smtk-repo` | PostgreSQL `application_name` |
//! | `DB_PGBOUNCER` | false | PostgreSQL behind a transaction pooler (PgBouncer transaction mode, managed pooled endpoints); same as `pgbouncer=true` in the URL |
//! | `DATABASE_REPLICA_URLS` | unset | PostgreSQL streaming replicas (comma-separated) for the opt-in read views [`Store::replica`] and [`Store::read_after`] |
//! | `DB_REPLICA_MAX_LAG_MS` | 1000 | largest replay lag a stale-tolerant read accepts |
//!
//! The repository's README has the PostgreSQL URL parameters (several hosts for
//! failover, `connect_timeout`, keepalives, `sslmode`); `docs/postgres.md` covers
//! poolers, managed servers and deadlines; `docs/operations.md` explains each error
//! and log line to an operator.
//!
//! ## Beyond the application API
//!
//! - [`config`]: the settings types ([`config::PoolConfig`] and the others), URL
//!   parsing and redaction.
//! - [`observe`]: per-call spans and the slow-query log ([`observe::Instrumented`],
//!   [`observe::SlowQueryLog`]), pool warnings ([`observe::PoolWatch`]) and the pool's
//!   connection check. Each backend wires these up itself; [`Store::pool_status`] and
//!   [`Store::nodes`] report what they see. With the Cargo feature `metrics`, every
//!   call and every pool also report to the application's `metrics` recorder under
//!   OpenTelemetry's names ([`observe::metrics`]; the list is in `docs/operations.md`).
//! - [`schema`]: snapshots of the database schema, for comparing the two backends.
//! - [`rules`]: the rules written once for both backends: input validation, API-key
//!   preparation, the access rule.
//!
//! The crates underneath are [`repo_core`] (types and traits), [`repo_factory`] (the
//! URL to backend step), `repo_sqlite` and `repo_postgres` (the backends) and
//! `repo_async` (the async handle); `cargo doc --workspace --no-deps --open` documents
//! them all. Applications need only this crate.
#![forbid(unsafe_code)]

// The application API. Modules that hold nothing but application types are
// re-exported whole, so that a type added to them appears here too; the others item
// by item, leaving their plumbing to the modules below.

// Open.
pub use repo_core::{BackendKind, ReadView, Repositories, Store, StoreConfig, Transaction};
pub use repo_factory::{open, open_from_env, DEFAULT_SQLITE_FILE};

// Errors, users, operations, statuses and kinds, ids, pages, replicas: whole modules.
pub use repo_core::enums::*;
pub use repo_core::error::*;
pub use repo_core::ids::*;
pub use repo_core::operation::*;
pub use repo_core::page::*;
pub use repo_core::replica::*;
pub use repo_core::user::*;

// API keys.
pub use repo_core::{
    ApiKey, ApiKeyPolicy, ApiKeyRepository, ApiKeySecret, CreatedApiKey, KeyExpiry, NewApiKey,
    VerifiedKey,
};

// Collections, grants and access.
pub use repo_core::{
    Collection, CollectionPatch, CollectionPermission, CollectionRepository, CollectionStats,
    Grantee, NewCollection, Principal, SyncRun, DEFAULT_EMBEDDING_MODEL,
};

// Documents, chunks and search.
pub use repo_core::{Chunk, ChunkRepository, NewChunk, SearchHit, SearchQuery, MAX_CHUNK_BATCH};
pub use repo_core::{
    Document, DocumentFilter, DocumentRepository, DocumentStats, DocumentStatus,
    DocumentStatusUpdate, ErrorCategory, NewDocument, NewDocumentBuilder, Registered,
    MAX_DOCUMENT_BATCH,
};

// Time, and the pool as the store reports it.
pub use repo_core::{now, PoolStatus, Timestamp};

/// The async handle for tokio applications (feature `tokio`): every repository from
/// async code, calls bounded by the pool's size. See the `repo-async` crate.
#[cfg(feature = "tokio")]
pub use repo_async::AsyncStore;

/// Settings and URLs: what [`StoreConfig`] is made of, how a
/// `DATABASE_URL` is resolved and parsed, and URL redaction for logs.
pub mod config {
    pub use repo_core::config::*;
    pub use repo_core::postgres_url::{redact_url, PgHost, PostgresUrl};
    pub use repo_core::RetryPolicy;
    pub use repo_factory::{
        open_target, parse_database_url, plaintext_on_loopback, resolve_database_url,
        supported_schemes, DatabaseTarget, ResolvedUrl, UrlSource,
    };
}

/// Observability plumbing the backends wire up: the per-call `tracing` span and
/// slow-query log ([`Instrumented`](observe::Instrumented),
/// [`SlowQueryLog`](observe::SlowQueryLog)), pool-pressure and connection-failure
/// warnings ([`PoolWatch`](observe::PoolWatch)), and the connection check on
/// checkout ([`pool_check`](observe::pool_check)), and the metric names and pool
/// metrics of the `metrics` feature ([`metrics`](observe::metrics)). See
/// `docs/operations.md` for the log lines and metrics they write.
pub mod observe {
    pub use repo_core::instrument::*;
    pub use repo_core::metrics;
    pub use repo_diesel::observe::sql_without_binds;
    pub use repo_diesel::pool_check;
}

/// Schema administration and snapshots: a database's migrations through
/// [`SchemaAdmin`](schema::SchemaAdmin) (opened for a URL by
/// [`open_admin`](schema::open_admin)), and the tables, columns, indexes and checks of
/// a database as both backends report them, normalized so that the two can be
/// compared.
pub mod schema {
    pub use repo_core::schema::*;
    pub use repo_factory::{embedded_migrations, open_admin, open_admin_target};
}

/// The rules written once for both backends: input validation
/// ([`validate`](rules::validate)), API-key preparation
/// ([`PreparedApiKey`](rules::PreparedApiKey)) and the access rule
/// ([`effective_access`](rules::effective_access), [`Actor`](rules::Actor)).
/// Applications get them applied by every repository call.
pub mod rules {
    pub use repo_core::access::{effective_access, require_access, Ownership};
    pub use repo_core::access::{Actor, KeyFacts, PrincipalFacts};
    pub use repo_core::api_key::PreparedApiKey;
    pub use repo_core::validate;
}
