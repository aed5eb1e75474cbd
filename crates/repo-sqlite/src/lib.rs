//! # repo-sqlite
//!
//! The SQLite implementation of every `repo-core` repository trait, on Diesel and an
//! r2d2 pool with a bundled SQLite (≥ 3.35, for `RETURNING`).
//!
//! - Every pooled connection runs `PRAGMA busy_timeout`, `journal_mode = WAL` (files
//!   only), `synchronous = NORMAL` and `foreign_keys = ON`.
//! - Writes that need more than one statement run in `BEGIN IMMEDIATE`; inside a unit
//!   of work ([`repo_core::Store::run_transaction`]) they become savepoints.
//! - An in-memory database is served by a pool of exactly one connection (every
//!   SQLite connection to `:memory:` is a separate database).
//! - Timestamps are stored as fixed-width RFC 3339 UTC text, UUIDs as lowercase
//!   hyphenated text and JSON as text, so that the data reads back exactly as on
//!   PostgreSQL.
//! - Bulk writes (`register_many`, `insert_many`) validate every item first, then run
//!   multi-row `INSERT`s sized under SQLite's 32,766 bind-parameter limit in one
//!   write transaction, so a bad item writes nothing.
//! - Chunk search uses the FTS5 table `chunks_fts` (`ascii` tokenizer over the tokens
//!   computed in Rust into `chunks.search_tokens`, kept in step by triggers), ranked
//!   by `repo_core::search::score`, registered as the SQL function `search_score`.
//!
//! ```no_run
//! use repo_core::{NewUser, RepoResult, Repositories, Store, StoreConfig};
//! use repo_sqlite::SqliteStore;
//!
//! fn main() -> RepoResult<()> {
//!     // Runs pending migrations because `run_migrations` defaults to true.
//!     let store = SqliteStore::connect("data/app.db", &StoreConfig::default())?;
//!     let user = store.users().create(&NewUser::new(
//!         "alice",
//!         "alice@example.com",
//!         "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
//!     ))?;
//!     assert_eq!(store.users().get(user.id)?.username, "alice");
//!     store.health()
//! }
//! ```
//!
//! ## Naming (the same note is in `repo-sqlite` and `repo-postgres`)
//!
//! What one backend calls a thing, the other calls it too:
//!
//! - `connection.rs`: the connection source trait `ConnectionSource` (`run`: a call
//!   on a connection; `write`: a write transaction, a savepoint inside a unit of work;
//!   `read`: reads, which a replica may serve), its pool-backed `PoolSource` and the
//!   `TxSource` of a unit of work, and the transaction plumbing.
//! - One repository type per repository trait, `Sqlite<Repo>` / `Pg<Repo>`
//!   (`SqliteUsers`, `PgUsers`, …, `SqliteChunks`, `PgChunks`), holding its source in
//!   the field `src`. One of each over one source is a `SqliteRepositories` /
//!   `PgRepositories` (`repo_diesel::repository_set!`): the store holds one over the
//!   pool, a unit of work one over its transaction's connection.
//! - One file per repository (`users.rs`, `api_keys.rs`, `collections.rs`,
//!   `operations.rs`, `documents.rs`, `chunks.rs`): its SQL and row types.
//! - Row types: `<Entity>Row` (read), `Insert<Entity>` (insert), `<What>Changes` (an
//!   `AsChangeset`); a row becomes the core type by `into_domain()`, and is built from
//!   one by `from_domain(..)`.
//! - Errors (`error.rs`): `map_diesel_error`, `map_checkout_error`,
//!   `map_connection_error`, `map_migration_error`; each keeps the original as
//!   `source`.
//! - Rules live in `repo-core`: a backend fetches the facts a rule needs and runs the
//!   SQL of the plan the core made; it decides nothing the domain decides. Code both
//!   backends run identically over Diesel lives in `repo-diesel`.

#![forbid(unsafe_code)]

mod api_keys;
mod bulk;
mod chunks;
mod codec;
mod collections;
mod connection;
mod documents;
mod error;
mod migrations;
mod observe;
mod operations;
mod pool;
pub use repo_diesel::prepared;
/// Diesel table definitions, public so that tooling (benchmark baselines, data
/// copies) writes its queries against the very tables the repositories use.
#[allow(missing_docs)]
pub mod schema;
mod sql_functions;
mod standalone;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod unit_of_work;
mod users;

pub use migrations::{embedded_migrations, recorded_migrations};
pub use standalone::connect_standalone;
pub use store::SqliteStore;
