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
mod observe;
mod operations;
mod pool;
pub mod prepared;
mod replica;
/// Diesel table definitions, public so that tooling (benchmark baselines, data
/// copies) writes its queries against the very tables the repositories use.
#[allow(missing_docs)]
pub mod schema;
#[cfg(test)]
mod serialization_retry;
mod store;
pub mod testing;
mod users;

pub use store::PostgresStore;
