//! One session outside the store's pool, for tools that hold a connection for a whole
//! run (repoctl's `COPY`, cursors and snapshot transactions).

use crate::error::{map_connection_error, map_diesel_error, scrub_error};
use crate::pool::SessionSettings;
use diesel::{Connection, PgConnection};
use repo_core::{PostgresConfig, PostgresUrl, RepoResult};

/// Connects to `url` as the store does (libpq gets the URL without `pgbouncer=` and
/// with the client-side deadlines added where it sets none) and gives the session the
/// settings of `config` as the pool gives them to every session (`statement_timeout`,
/// `lock_timeout`, `idle_in_transaction_session_timeout`, `application_name`,
/// `TimeZone = UTC`); a zero timeout turns it off. No message shows the password.
pub fn connect_standalone(url: &str, config: &PostgresConfig) -> RepoResult<PgConnection> {
    let parsed = PostgresUrl::parse(url)?;
    let redacted = parsed.redacted();
    let secrets = parsed.secrets();
    let session = SessionSettings::new(&PostgresConfig {
        pgbouncer: false,
        ..config.clone()
    });
    PgConnection::establish(&parsed.with_deadline_defaults().libpq_url())
        .map_err(|e| map_connection_error(e, &redacted))
        .and_then(|mut conn| {
            session
                .apply(&mut conn)
                .map(|()| conn)
                .map_err(map_diesel_error)
        })
        .map_err(|e| scrub_error(e, &secrets))
}
