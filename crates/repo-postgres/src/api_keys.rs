//! [`ApiKeyRepository`](repo_core::ApiKeyRepository) on PostgreSQL: the rows, queries
//! and impl shared with SQLite come from [`repo_diesel::api_key_repository!`]; the
//! rules (usable key, verify decision, restamp, key limit) from `repo_core::api_key`.

use crate::codec::PgCodec;
use crate::connection::ConnectionSource;
use crate::error::map_diesel_error;
use crate::schema::{api_keys, users};
use crate::users as user_repo;
use diesel::pg::{Pg, PgConnection};
use repo_diesel::codec::as_is;

repo_diesel::api_key_repository! {
    backend: Pg,
    connection: PgConnection,
    codec: PgCodec,
    map_error: map_diesel_error,
    impl for PgApiKeys<S> where S: ConnectionSource,
    policy(this) => *this.src.api_key_policy(),
    // Reads may go to a replica; `create` gets one transaction from `write`.
    read(this, f) => this.src.read(f),
    run(this, f) => this.src.run(f),
    write(this, f) => this.src.write(f),
    atomic: as_is,
    // `FOR UPDATE` on the user row: creators of one user's keys queue up.
    lock_user: user_repo::lock,
    user_row: user_repo::UserRow,
}

/// API keys over a [`ConnectionSource`].
pub(crate) struct PgApiKeys<S> {
    pub(crate) src: S,
}
