//! [`ApiKeyRepository`](repo_core::ApiKeyRepository) on SQLite: the rows, queries and
//! impl shared with PostgreSQL come from [`repo_diesel::api_key_repository!`]; the
//! rules (usable key, verify decision, restamp, key limit) from `repo_core::api_key`.

use crate::codec::SqliteCodec;
use crate::connection::{write_tx, ConnectionSource, SqliteApiKeys};
use crate::error::map_diesel_error;
use crate::schema::{api_keys, users};
use crate::users::{self as user_repo, UserRow};
use diesel::sqlite::{Sqlite, SqliteConnection};

repo_diesel::api_key_repository! {
    backend: Sqlite,
    connection: SqliteConnection,
    codec: SqliteCodec,
    map_error: map_diesel_error,
    impl for SqliteApiKeys<S> where S: ConnectionSource,
    policy(repos) => repos.config().api_keys,
    // Every call on one connection; `create` opens its own transaction.
    read(repos, f) => repos.run(f),
    run(repos, f) => repos.run(f),
    write(repos, f) => repos.run(f),
    atomic: write_tx,
    // `BEGIN IMMEDIATE` already serialises the creators: the user need only exist.
    lock_user: user_repo::ensure_exists,
    user_row: UserRow,
}
