//! An async handle over the store for tokio applications.
//!
//! The store is synchronous (Diesel and r2d2 block the calling thread). [`AsyncStore`]
//! wraps the same `Arc<dyn Store>` and runs every call on tokio's blocking pool, never
//! more at once than the connection pool has connections
//! ([`PoolStatus::max`](repo_core::PoolStatus::max)): a call past that waits
//! asynchronously for a free slot instead of parking a blocking thread on the pool's
//! checkout. Nothing in an application needs `spawn_blocking`:
//!
//! ```no_run
//! # async fn demo() -> repo_core::RepoResult<()> {
//! use repo_async::AsyncStore;
//! use repo_core::{CollectionStatus, NewUser, UserFilter};
//!
//! // Migrations run on the blocking pool, not on the runtime's worker.
//! let db = AsyncStore::open_from_env().await?;
//! let user = db
//!     .users(|users| users.create(&NewUser::new("ada", "ada@example.com", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")))
//!     .await?;
//! let count = db.users(|users| users.count(UserFilter::default())).await?;
//! // One unit of work: a sync closure run on the blocking side, in one transaction.
//! db.transaction(move |tx| {
//!     tx.users().record_login(user.id)?;
//!     Ok(())
//! })
//! .await?;
//! # let _ = (count, CollectionStatus::Ready);
//! # Ok(())
//! # }
//! ```
//!
//! # A dropped future
//!
//! Dropping the future of a call (a client that hung up, a `select!` or a timeout that
//! won) never leaves anything half-written:
//!
//! - dropped while it waits for a slot, the call is never sent: nothing runs;
//! - dropped once the call is on its blocking thread, the call runs to its end there
//!   (a blocking thread cannot be interrupted) and its result is discarded: a single
//!   call commits or fails as a whole, and a [`transaction`](AsyncStore::transaction)
//!   commits if its closure returns `Ok` and rolls back otherwise, exactly as if the
//!   future had been awaited. Its slot stays taken until it ends, so the bound holds.
//!
//! So a dropped future is "outcome unknown", like a lost connection: read back (or
//! retry an idempotent call) to learn what happened.
//!
//! # Tracing
//!
//! The caller's current span ([`tracing::Span::current`]) is entered on the blocking
//! thread, so the store's own spans and events (queries, slow-query warnings, pool
//! pressure) nest under the request that made the call.

#![forbid(unsafe_code)]

use repo_core::{
    ApiKeyRepository, ChunkRepository, CollectionRepository, DocumentRepository,
    OperationRepository, PoolStatus, RepoError, RepoResult, Store, StoreConfig, Transaction,
    UserRepository, WritePosition,
};
use std::fmt;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The async handle: the same store, every call on a bounded blocking executor.
///
/// Cheap to clone (clones share the store and the bound); `Send + Sync + 'static`, so it
/// goes into an axum `State` or a task as it is. Every method needs a tokio runtime.
#[derive(Clone)]
pub struct AsyncStore {
    store: Arc<dyn Store>,
    slots: Arc<Semaphore>,
    limit: usize,
}

impl fmt::Debug for AsyncStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncStore")
            .field("backend", &self.store.backend())
            .field("limit", &self.limit)
            .field("available", &self.slots.available_permits())
            .finish()
    }
}

/// Generates one method per repository: `db.users(|users| users.get(id)).await`.
macro_rules! repository_calls {
    ($($(#[$doc:meta])* $name:ident => $repo:ident;)*) => {
        $(
            $(#[$doc])*
            ///
            /// The closure runs on a blocking thread (see [`AsyncStore::run`]); move
            /// owned inputs into it.
            pub async fn $name<T, F>(&self, call: F) -> RepoResult<T>
            where
                T: Send + 'static,
                F: FnOnce(&dyn $repo) -> RepoResult<T> + Send + 'static,
            {
                self.run(move |store| call(store.$name())).await
            }
        )*
    };
}

impl AsyncStore {
    /// Wraps an open store; at most [`PoolStatus::max`] of its calls run at once.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let limit = store.pool_status().max.max(1) as usize;
        Self::with_limit(store, limit)
    }

    /// Wraps an open store with a bound of its own (at least 1): lower than the pool
    /// leaves connections for synchronous callers of the same store.
    pub fn with_limit(store: Arc<dyn Store>, limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            store,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// [`repo_factory::open`] off the runtime (connecting and migrating block), then
    /// [`AsyncStore::new`].
    pub async fn open(url: &str, config: &StoreConfig) -> RepoResult<Self> {
        let (url, config) = (url.to_owned(), config.clone());
        let store = blocking(move || repo_factory::open(&url, &config)).await?;
        Ok(Self::new(store))
    }

    /// [`repo_factory::open_from_env`] off the runtime (connecting and migrating
    /// block), then [`AsyncStore::new`].
    pub async fn open_from_env() -> RepoResult<Self> {
        let store = blocking(repo_factory::open_from_env).await?;
        Ok(Self::new(store))
    }

    /// The synchronous store underneath (the same one, not a copy).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The most calls that run at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Slots free now (`limit` minus the calls running).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// The pool's connection counts now (no I/O).
    pub fn pool_status(&self) -> PoolStatus {
        self.store.pool_status()
    }

    /// Runs `call` with the store on a blocking thread once a slot is free, and returns
    /// its result. Any repository, read view or store method is reachable from it.
    ///
    /// Dropped while waiting for a slot, nothing runs; dropped later, `call` runs to
    /// its end and its result is discarded (see the crate docs). A panic in `call` is
    /// resumed in the caller.
    pub async fn run<T, F>(&self, call: F) -> RepoResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> RepoResult<T> + Send + 'static,
    {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| backend_error("the async store's executor is closed"))?;
        let store = Arc::clone(&self.store);
        let span = tracing::Span::current();
        blocking(move || {
            // Held until the call ends, even if the caller stopped waiting.
            let _slot = slot;
            let _entered = span.enter();
            call(&*store)
        })
        .await
    }

    /// Runs `work` in one transaction on a blocking thread and returns its value; see
    /// [`Store::run_transaction`]. `work` is synchronous, may run more than once
    /// (transient conflicts are retried), and must call through `tx` only.
    ///
    /// A dropped future never leaves part of it written: once started, the unit of
    /// work commits if `work` returns `Ok` and rolls back otherwise.
    pub async fn transaction<T, F>(&self, mut work: F) -> RepoResult<T>
    where
        T: Send + 'static,
        F: FnMut(&dyn Transaction) -> RepoResult<T> + Send + 'static,
    {
        self.run(move |store| store.transaction(&mut work)).await
    }

    /// [`Store::health`] on a blocking thread.
    pub async fn health(&self) -> RepoResult<()> {
        self.run(|store| store.health()).await
    }

    /// [`Store::write_position`] on a blocking thread.
    pub async fn write_position(&self) -> RepoResult<WritePosition> {
        self.run(|store| store.write_position()).await
    }

    repository_calls! {
        /// Runs `call` with the users repository.
        users => UserRepository;
        /// Runs `call` with the API-key repository.
        api_keys => ApiKeyRepository;
        /// Runs `call` with the collections repository (and grants).
        collections => CollectionRepository;
        /// Runs `call` with the operations repository.
        operations => OperationRepository;
        /// Runs `call` with the documents repository.
        documents => DocumentRepository;
        /// Runs `call` with the chunks repository (and full-text search).
        chunks => ChunkRepository;
    }
}

impl From<Arc<dyn Store>> for AsyncStore {
    fn from(store: Arc<dyn Store>) -> Self {
        Self::new(store)
    }
}

/// `spawn_blocking`, with a panic resumed in the caller and a cancelled task (the
/// runtime shutting down before it started) as an error.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> RepoResult<T> + Send + 'static,
) -> RepoResult<T> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(backend_error(
            "the runtime shut down before the call started; nothing ran",
        )),
    }
}

fn backend_error(message: &str) -> RepoError {
    RepoError::Backend {
        message: message.into(),
        source: None,
    }
}
