//! Test and tooling support: a throwaway database, dropped when the guard goes.

use crate::error::map_connection_error;
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use repo_core::{redact_url, RepoError, RepoResult};
use std::fmt;

/// A database created for one test (or tool run) and dropped, with `FORCE`, when this
/// guard is dropped.
pub struct TempDatabase {
    admin_url: String,
    url: String,
    name: String,
}

impl fmt::Debug for TempDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempDatabase")
            .field("url", &redact_url(&self.url))
            .field("name", &self.name)
            .finish()
    }
}

/// Whether `name` is safe to quote into CREATE/DROP DATABASE (identifiers cannot be
/// bound parameters).
fn is_safe_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether CREATE DATABASE failed because the server lacks the requested locale
/// (`invalid locale name`, or an encoding the locale does not support).
fn is_missing_locale(error: &diesel::result::Error) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    text.contains("locale") || text.contains("collation") || text.contains("encoding")
}

fn admin_connection(admin_url: &str) -> RepoResult<PgConnection> {
    PgConnection::establish(admin_url).map_err(|e| map_connection_error(e, &redact_url(admin_url)))
}

impl TempDatabase {
    /// Connects to `admin_url` (any database on the server), creates a database with
    /// a unique name (`t_` + a random uuid) and returns a guard whose [`url`](Self::url)
    /// points at it.
    pub fn create(admin_url: &str) -> RepoResult<TempDatabase> {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut url = url::Url::parse(admin_url).map_err(|e| {
            RepoError::config(format!(
                "invalid PostgreSQL URL {}: {e}",
                redact_url(admin_url)
            ))
        })?;
        url.set_path(&format!("/{name}"));
        if !is_safe_identifier(&name) {
            return Err(RepoError::config(format!("unsafe database name {name:?}")));
        }
        let mut conn = admin_connection(admin_url)?;
        // A UTF-8 database with a Unicode-aware C locale, so `[:alnum:]` and `lower()`
        // treat non-ASCII letters as letters: the full-text column depends on it for
        // parity with SQLite's unicode61 tokenizer. Servers without that locale get
        // their default.
        let utf8 = diesel::sql_query(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' \
             LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
        ))
        .execute(&mut conn);
        match utf8 {
            Ok(_) => {}
            Err(e) if is_missing_locale(&e) => {
                tracing::warn!(error = %e, "locale C.UTF-8 unavailable; temporary database uses the server default");
                diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut conn)
                    .map_err(crate::error::map_diesel_error)?;
            }
            Err(e) => return Err(crate::error::map_diesel_error(e)),
        }
        Ok(TempDatabase {
            admin_url: admin_url.to_owned(),
            url: url.into(),
            name,
        })
    }

    /// Like [`create`](Self::create) on the server named by `TEST_DATABASE_URL`, which
    /// is required: unset, this is a `Config` error.
    pub fn from_env() -> RepoResult<TempDatabase> {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => Self::create(url.trim()),
            _ => Err(RepoError::config(
                "TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which \
                 provisions PostgreSQL",
            )),
        }
    }

    /// URL of the temporary database (with the admin URL's credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Name of the temporary database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL of this database reached through another server or proxy: `server_url`
    /// (for example a PgBouncer in front of the server) with its path replaced by this
    /// database's name; its credentials and query are kept.
    pub fn url_through(&self, server_url: &str) -> RepoResult<String> {
        let mut url = url::Url::parse(server_url).map_err(|e| {
            RepoError::config(format!(
                "invalid PostgreSQL URL {}: {e}",
                redact_url(server_url)
            ))
        })?;
        url.set_path(&format!("/{}", self.name));
        Ok(url.into())
    }

    /// [`url_through`](Self::url_through) the PgBouncer (transaction mode) named by
    /// `TEST_PGBOUNCER_URL`, which is required: unset, this is a `Config` error.
    pub fn pgbouncer_url(&self) -> RepoResult<String> {
        match std::env::var("TEST_PGBOUNCER_URL") {
            Ok(url) if !url.trim().is_empty() => self.url_through(url.trim()),
            _ => Err(RepoError::config(
                "TEST_PGBOUNCER_URL is not set: run the tests with scripts/test.sh, which \
                 starts PgBouncer in transaction mode (for a local one: \
                 TEST_PGBOUNCER_URL=postgres://postgres@127.0.0.1:6432/postgres)",
            )),
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if !is_safe_identifier(&self.name) {
            return;
        }
        let Ok(mut conn) = PgConnection::establish(&self.admin_url) else {
            tracing::warn!(database = %self.name, "could not connect to drop the temporary database");
            return;
        };
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = diesel::sql_query(sql).execute(&mut conn) {
            tracing::warn!(database = %self.name, error = %e, "could not drop the temporary database");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_safe_identifier("t_0123abcd"));
        assert!(!is_safe_identifier("t\"; DROP"));
        assert!(!is_safe_identifier(""));
    }

    #[test]
    fn from_env_requires_variable() {
        if std::env::var_os("TEST_DATABASE_URL").is_none() {
            let err = TempDatabase::from_env().unwrap_err();
            assert!(err.to_string().contains("TEST_DATABASE_URL is not set"));
        }
    }
}
