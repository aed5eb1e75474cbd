//! Test and tooling support: a throwaway database, dropped when the guard goes, and a
//! loopback TCP proxy a test controls.

use crate::error::map_connection_error;
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use repo_core::{redact_url, PostgresUrl, RepoError, RepoResult};
use std::fmt;

/// A database created for one test (or tool run) and dropped, with `FORCE`, when this
/// guard is dropped.
pub struct TempDatabase {
    /// What libpq gets for the admin connection (see [`PostgresUrl::libpq_url`]).
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
    /// Connects to `admin_url` (any database on the server; a multi-host URL works,
    /// the database is created where libpq connects), creates a database with a
    /// unique name (`t_` + a random uuid) and returns a guard whose [`url`](Self::url)
    /// points at it: `admin_url` with only the database name changed (credentials,
    /// hosts and parameters, `pgbouncer=` included, are kept).
    pub fn create(admin_url: &str) -> RepoResult<TempDatabase> {
        Self::create_with(admin_url, "")
    }

    /// Like [`create`](Self::create), for a server with streaming replicas: the
    /// database is created with `STRATEGY = FILE_COPY` (PostgreSQL 15 and later), so
    /// that replicas replay one small record instead of the template's every page
    /// (megabytes of WAL per database, which made a busy replica fall behind by
    /// seconds). Older servers get the default strategy.
    pub fn create_replicated(primary_url: &str) -> RepoResult<TempDatabase> {
        match Self::create_with(primary_url, " STRATEGY = FILE_COPY") {
            Err(e) if e.to_string().to_ascii_lowercase().contains("strategy") => {
                Self::create(primary_url)
            }
            other => other,
        }
    }

    fn create_with(admin_url: &str, options: &str) -> RepoResult<TempDatabase> {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = PostgresUrl::parse(admin_url)?;
        let url = admin.clone().with_database(&name).to_url();
        let admin_url = admin.with_deadline_defaults().libpq_url();
        if !is_safe_identifier(&name) {
            return Err(RepoError::config(format!("unsafe database name {name:?}")));
        }
        let mut conn = admin_connection(&admin_url)?;
        // A UTF-8 database with a Unicode-aware C locale, so `[:alnum:]` and `lower()`
        // treat non-ASCII letters as letters: the full-text column depends on it for
        // parity with SQLite's unicode61 tokenizer. Servers without that locale get
        // their default.
        let utf8 = diesel::sql_query(format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' \
             LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'{options}"
        ))
        .execute(&mut conn);
        match utf8 {
            Ok(_) => {}
            Err(e) if is_missing_locale(&e) => {
                tracing::warn!(error = %e, "locale C.UTF-8 unavailable; temporary database uses the server default");
                diesel::sql_query(format!("CREATE DATABASE \"{name}\"{options}"))
                    .execute(&mut conn)
                    .map_err(crate::error::map_diesel_error)?;
            }
            Err(e) => return Err(crate::error::map_diesel_error(e)),
        }
        Ok(TempDatabase {
            admin_url,
            url,
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
    /// (a PgBouncer in front of the server, or a replica of it) with its path replaced
    /// by this database's name; its hosts, credentials and query are kept.
    pub fn url_through(&self, server_url: &str) -> RepoResult<String> {
        Ok(PostgresUrl::parse(server_url)?
            .with_database(&self.name)
            .to_url())
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

/// Waits until `url` accepts a connection (a database created on the primary appears
/// on a streaming replica once replayed), trying every 20 ms for at most `timeout`;
/// the last connection error when it never does.
pub fn wait_until_connectable(url: &str, timeout: std::time::Duration) -> RepoResult<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match PgConnection::establish(url) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(map_connection_error(e, &redact_url(url)))
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
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

/// A TCP forwarder to a PostgreSQL server that a test can cut or make refuse, so a
/// store sees its server become unreachable without the shared server being touched.
pub struct TcpProxy {
    address: std::net::SocketAddr,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

const PROXY_OPEN: u8 = 0;
const PROXY_CUT: u8 = 1;
const PROXY_REFUSE: u8 = 2;

impl TcpProxy {
    /// Listens on `127.0.0.1` (a free port) and forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> std::io::Result<TcpProxy> {
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PROXY_OPEN));
        let mode2 = std::sync::Arc::clone(&mode);
        let upstream = upstream.to_owned();
        // Every accepted and opened stream is kept, so nothing closes on its own.
        let mut held = Vec::new();
        std::thread::Builder::new()
            .name("tcp-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    match mode2.load(Ordering::SeqCst) {
                        // Accept and never answer: a server that stopped responding.
                        PROXY_CUT => {
                            held.push(client);
                            continue;
                        }
                        // Accept and close at once: a server that goes away.
                        PROXY_REFUSE => {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        _ => {}
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        continue;
                    };
                    for (from, to) in [(&client, &server), (&server, &client)] {
                        if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                            let mode3 = std::sync::Arc::clone(&mode2);
                            std::thread::spawn(move || forward(from, to, &mode3));
                        }
                    }
                    held.push(client);
                    held.push(server);
                }
            })?;
        Ok(TcpProxy { address, mode })
    }

    /// Where clients connect (`127.0.0.1:<port>`).
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// From now on nothing gets through: open connections stay open but every byte is
    /// dropped, and new ones are accepted and never answered.
    pub fn cut(&self) {
        self.mode
            .store(PROXY_CUT, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on the server is gone: a connection is closed as soon as anything
    /// arrives on it, and new ones are closed when accepted (libpq: "server closed the
    /// connection unexpectedly", a multi-line message).
    pub fn refuse(&self) {
        self.mode
            .store(PROXY_REFUSE, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either side closes; once cut, reads and drops what
/// arrives; once refusing, closes both sides.
fn forward(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    mode: &std::sync::atomic::AtomicU8,
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match mode.load(std::sync::atomic::Ordering::SeqCst) {
            PROXY_OPEN if to.write_all(&buf[..n]).is_err() => break,
            PROXY_REFUSE => {
                let _ = from.shutdown(std::net::Shutdown::Both);
                break;
            }
            _ => {}
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
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
