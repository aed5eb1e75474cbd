//! # repo-core
//!
//! The backend-agnostic half of the data layer: domain types (users, API keys,
//! collections and their grants, operations, documents, chunks and the search query),
//! the repository traits every backend implements, the one error enum, and
//! configuration. It has no database driver; `repo-sqlite` and `repo-postgres`
//! implement the traits and `repo-factory` picks one from `DATABASE_URL`.
//! Applications use the root crate `smtk_repo`, which re-exports the application API
//! of this crate at its top level and the plumbing (instrumentation, schema
//! snapshots, validation) in modules of its own.
//!
//! ```no_run
//! use repo_core::{NewUser, Store, RepoResult};
//!
//! fn register(store: &dyn Store) -> RepoResult<()> {
//!     let user = store.users().create(&NewUser::new(
//!         "alice",
//!         "Alice@Example.com",
//!         "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
//!     ))?;
//!     assert_eq!(user.email, "alice@example.com");
//!     Ok(())
//! }
//! ```
//!
//! ## From async code
//!
//! The API is synchronous, like Diesel. An async (tokio) application wraps the same
//! `Arc<dyn Store>` in `repo_async::AsyncStore` (the root crate's `tokio` feature:
//! `smtk_repo::AsyncStore`), which runs every call on the blocking pool, never more at
//! once than the connection pool holds, and carries the caller's tracing span across:
//!
//! ```ignore
//! let db = AsyncStore::open_from_env().await?; // migrations off the runtime
//! let user = db.users(|users| users.get(UserId(1))).await?;
//! db.transaction(move |tx| tx.users().record_login(user.id)).await?;
//! ```

#![forbid(unsafe_code)]

pub mod access;
pub mod api_key;
pub mod backend;
pub mod chunk;
pub mod collection;
pub mod config;
#[macro_use]
pub mod enums;
pub mod document;
pub mod error;
pub mod ids;
pub mod instrument;
pub mod maintenance;
pub mod metrics;
pub mod names;
pub mod operation;
pub mod page;
pub mod pool_watch;
pub mod postgres_url;
pub mod replica;
pub mod schema;
pub mod search;
mod serde_fields;
pub mod slow_query;
pub mod store;
#[cfg(test)]
mod test_log;
pub mod time;
pub mod user;
pub mod validate;

pub use access::{
    effective_access, require_access, Actor, KeyFacts, Ownership, Principal, PrincipalFacts,
};
pub use api_key::{
    ApiKey, ApiKeyPolicy, ApiKeyRepository, ApiKeySecret, CreatedApiKey, KeyExpiry, NewApiKey,
    PreparedApiKey, VerifiedKey,
};
pub use backend::BackendKind;
pub use chunk::{
    Chunk, ChunkRepository, NewChunk, SearchCursor, SearchHit, SearchPage, SearchStart,
    MAX_CHUNK_BATCH, SEARCH_RANK_CAP, SEARCH_TOTAL_CAP,
};
pub use collection::{
    merge_newest_first, Collection, CollectionPatch, CollectionPermission, CollectionRepository,
    CollectionStats, Grantee, NewCollection, SyncRun, DEFAULT_EMBEDDING_MODEL,
};
pub use config::{
    split_replica_urls, NumericSetting, PoolConfig, PostgresConfig, ReplicaConfig, SqliteConfig,
    StoreConfig, NUMERIC_SETTINGS,
};
pub use document::{
    Document, DocumentFilter, DocumentRepository, DocumentStats, DocumentStatus,
    DocumentStatusUpdate, ErrorCategory, NewDocument, NewDocumentBuilder, Registered,
    RegistrationPlan, StoredDocuments, MAX_DOCUMENT_BATCH,
};
pub use enums::{
    AccessLevel, CollectionStatus, OperationKind, OperationStatus, Quantization, SyncMode,
    SyncRunStatus,
};
pub use error::{
    Attempt, BoxError, ConflictReason, Entity, Field, RepoError, RepoResult, State,
    UnavailableReason,
};
pub use ids::{ApiKeyId, CollectionId, DocumentId, OperationUuid, UserId};
pub use instrument::Instrumented;
pub use operation::{NewOperation, Operation, OperationFilter, OperationRepository};
pub use page::{Cursor, CursorPage, CursorRequest, Page, PageRequest};
pub use pool_watch::{ConnectionErrors, ConnectionFailure, PoolStatus, PoolWatch};
pub use postgres_url::{redact_url, PgHost, PostgresUrl};
pub use replica::{NodeHealth, NodeRole, NodeStatus, WritePosition};
pub use schema::{
    normalize_sql_expression, normalized_check_terms, IndexSnapshot, SchemaAdmin, SchemaSnapshot,
    TableSnapshot,
};
pub use search::SearchQuery;
pub use slow_query::SlowQueryLog;
pub use store::{ReadView, Repositories, RetryPolicy, Store, Transaction};
pub use time::{now, Timestamp};
pub use user::{DeleteMode, NewUser, User, UserFilter, UserPatch, UserRepository};
