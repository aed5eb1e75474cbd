//! # repo-diesel
//!
//! The Diesel toolkit the two backends (`repo-sqlite`, `repo-postgres`) share: what
//! both run identically over Diesel and r2d2 is written here once, generic over the
//! connection type; the backends keep only what differs (SQL dialect, type codecs,
//! pool and session setup). Domain rules stay in `repo-core`, which knows nothing of
//! Diesel or r2d2.
//!
//! The plumbing:
//!
//! - [`connection`]: [`ConnectionSource`](connection::ConnectionSource), how
//!   repository code gets a connection (`run`, `write`, `read`), and the transaction
//!   helpers with repository errors ([`TxError`](connection::TxError),
//!   [`transaction`](connection::transaction)).
//! - [`pool_check`]: the r2d2 manager that pre-pings only idle or suspect
//!   connections, and [`finish_call`](pool_check::finish_call), which marks a
//!   connection by the outcome of a call.
//! - [`pool_events`]: r2d2's events and connection errors passed on to `repo-core`'s
//!   pool metrics and connection-error record.
//! - [`observe`]: the slow-query log on every pooled connection
//!   ([`WithSlowQueryLog`](observe::WithSlowQueryLog)), with Diesel's SQL text cut
//!   before its bound values.
//! - [`prepared`]: `.cached()`, statements the prepared-statement cache keeps.
//!
//! The other modules hold what both backends share per repository.

#![forbid(unsafe_code)]

pub mod api_keys;
pub mod chunks;
pub mod codec;
pub mod collections;
pub mod connection;
pub mod documents;
pub mod migrations;
pub mod observe;
pub mod operations;
pub mod pool_check;
pub mod pool_events;
pub mod prepared;
pub mod repositories;
pub mod users;
