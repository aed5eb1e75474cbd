//! libpq URLs handed to the PostgreSQL client tools (`pg_dump`, `pg_restore`): the
//! password taken out of the URL (for the child's `PGPASSWORD`, so that it never shows
//! on a command line), and the database swapped. Parsing is
//! [`repo_core::PostgresUrl`]'s, multi-host URLs included.

use crate::error::Failure;
use repo_core::PostgresUrl;

/// A libpq URL split for a child process: the URL without any password (safe on a
/// command line) and the password (for the child's `PGPASSWORD`), percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientUrl {
    /// The URL without a password (neither in the user info nor as `password=`), and
    /// without the library's own `pgbouncer=` parameter, which the tools reject.
    pub url: String,
    /// The password, if the URL had one.
    pub password: Option<String>,
}

impl std::fmt::Debug for ClientUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientUrl")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ClientUrl {
    /// Splits `url`; a malformed URL is a usage error (its message shows no password).
    pub fn split(url: &str) -> Result<Self, Failure> {
        let parsed = PostgresUrl::parse(url).map_err(|e| Failure::connection(e.to_string()))?;
        let password = parsed.password().map(str::to_owned);
        Ok(ClientUrl {
            url: parsed.with_password(None).libpq_url(),
            password,
        })
    }

    /// The same URL naming database `name` instead (same hosts, user and options).
    pub fn with_database(&self, name: &str) -> Result<String, Failure> {
        Ok(PostgresUrl::parse(&self.url)
            .map_err(|e| Failure::connection(e.to_string()))?
            .with_database(name)
            .to_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url() {
        let c =
            ClientUrl::split("postgres://app:p%40ss@h1:5432,h2:5433/db?sslmode=disable").unwrap();
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert!(
            !c.url.contains("p%40ss") && !c.url.contains("p@ss"),
            "{}",
            c.url
        );
        assert!(c.url.contains("h1:5432,h2:5433"), "{}", c.url);
        let q = ClientUrl::split("postgres://app@h/db?password=hunter2&pgbouncer=true").unwrap();
        assert_eq!(q.password.as_deref(), Some("hunter2"));
        assert!(
            !q.url.contains("hunter2") && !q.url.contains("pgbouncer"),
            "{}",
            q.url
        );
        let renamed = q.with_database("scratch").unwrap();
        assert!(renamed.contains("/scratch"), "{renamed}");
        assert!(format!("{c:?}").contains("***") && !format!("{c:?}").contains("p@ss"));
    }
}
