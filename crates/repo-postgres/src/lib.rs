//! # repo-postgres
//!
//! The PostgreSQL implementation of every repository trait of [`repo_core`], with
//! Diesel and an r2d2 pool. Native types throughout: `uuid`, `jsonb`, `timestamptz`,
//! `bigint` identity. The migrations of `migrations/postgres` are embedded and run on
//! [`PostgresStore::connect`] (in one transaction under `pg_advisory_xact_lock`, over
//! `DATABASE_MIGRATION_URL` when set) unless disabled. Opening against a standby is a
//! `Config` error.
//!
//! Every pooled connection gets the session settings of
//! [`repo_core::PostgresConfig`] (`statement_timeout`, `lock_timeout`,
//! `idle_in_transaction_session_timeout`, `application_name`) and `TimeZone = UTC`.
//! Behind a transaction pooler (PgBouncer in transaction mode, managed pooled
//! endpoints) set [`repo_core::PostgresConfig::pgbouncer`] (`DB_PGBOUNCER=true`):
//! then nothing is prepared or set on the session, and every call runs in a
//! transaction whose `BEGIN` sets the same values with `SET LOCAL`.
//! Units of work run `READ COMMITTED` on one connection; repository calls inside them
//! become savepoints, and [`repo_core::Transaction::lock_collection`] is
//! `SELECT … FOR UPDATE`.
//!
//! ```no_run
//! use repo_core::{NewUser, Repositories, Store, StoreConfig};
//! use repo_postgres::PostgresStore;
//!
//! let store = PostgresStore::connect(
//!     "postgres://app:secret@127.0.0.1:5432/app",
//!     &StoreConfig::default(),
//! )?;
//! let user = store.users().create(&NewUser::new(
//!     "alice",
//!     "alice@example.com",
//!     "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
//! ))?;
//! assert_eq!(store.backend().as_str(), "postgres");
//! # let _ = user;
//! # Ok::<(), repo_core::RepoError>(())
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
#[cfg(test)]
mod bulk_measure;
mod chunks;
mod codec;
mod collections;
mod connection;
mod documents;
mod error;
mod migrations;
mod operations;
mod pool;
pub use repo_diesel::prepared;
mod replica;
/// Diesel table definitions, public so that tooling (benchmark baselines, data
/// copies) writes its queries against the very tables the repositories use.
#[allow(missing_docs)]
pub mod schema;
#[cfg(test)]
mod serialization_retry;
mod standalone;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod users;

pub use migrations::{embedded_migrations, recorded_migrations};
pub use standalone::connect_standalone;
pub use store::PostgresStore;
