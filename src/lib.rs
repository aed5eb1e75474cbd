//! # smtk-repo
//!
//! One data-access layer that runs the same on SQLite (development, single node,
//! tests) and PostgreSQL (production). This crate re-exports the domain model and
//! repository traits of [`repo_core`] and the backend factory of [`repo_factory`]:
//!
//! ```no_run
//! let store = smtk_repo::open_from_env()?; // DATABASE_URL, or an embedded SQLite file
//! let users = store.users().count(Default::default())?;
//! println!("{users} users on {}", store.backend());
//! # Ok::<(), smtk_repo::RepoError>(())
//! ```

#![forbid(unsafe_code)]

pub use repo_core::*;
pub use repo_factory::*;

/// The async handle for tokio applications (feature `tokio`): every repository from
/// async code, calls bounded by the pool's size. See [`repo_async`].
#[cfg(feature = "tokio")]
pub use repo_async::AsyncStore;
