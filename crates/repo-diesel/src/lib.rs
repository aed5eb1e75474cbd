//! # repo-diesel
//!
//! The Diesel toolkit the two backends (`repo-sqlite`, `repo-postgres`) share: what
//! both run identically over Diesel and r2d2 is written here once, generic over the
//! connection type; the backends keep only what differs (SQL dialect, type codecs,
//! pool and session setup). Domain rules stay in `repo-core`, which knows nothing of
//! Diesel.

#![forbid(unsafe_code)]

pub mod api_keys;
pub mod chunks;
pub mod collections;
pub mod columns;
pub mod documents;
pub mod operations;
pub mod users;
