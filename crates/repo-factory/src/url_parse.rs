//! `DATABASE_URL` parsing and the environment fallbacks.

use crate::{supported_schemes, DEFAULT_SQLITE_FILE};
use repo_core::postgres_url::{is_postgres_url, percent_encode};
use repo_core::{redact_url, PgHost, PostgresUrl, RepoError, RepoResult};

/// Which backend a URL selects, and what to hand it.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// What SQLite opens: a path, `:memory:` or a `file:` URI.
    Sqlite(String),
    /// A libpq connection URL.
    Postgres(String),
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Self::Postgres(u) => f.debug_tuple("Postgres").field(&redact_url(u)).finish(),
        }
    }
}

/// Parses a `DATABASE_URL`. Unknown schemes are a `Config` error listing the supported
/// ones; SQLite is never a catch-all. A PostgreSQL URL is checked with
/// [`PostgresUrl::parse`] (multi-host URLs included): a malformed one is a `Config`
/// error.
pub fn parse_database_url(url: &str) -> RepoResult<DatabaseTarget> {
    let url = url.trim();
    if url.is_empty() {
        return Err(RepoError::config("DATABASE_URL is empty"));
    }
    let lower = url.to_ascii_lowercase();
    if is_postgres_url(url) {
        PostgresUrl::parse(url)?;
        return Ok(DatabaseTarget::Postgres(url.to_owned()));
    }
    if lower == "sqlite::memory:" || lower == "sqlite://:memory:" || lower == ":memory:" {
        return Ok(DatabaseTarget::Sqlite(":memory:".to_owned()));
    }
    if lower.starts_with("file:") {
        return Ok(DatabaseTarget::Sqlite(url.to_owned()));
    }
    if let Some(rest) = strip_prefix_ignore_case(url, "sqlite://")
        .or_else(|| strip_prefix_ignore_case(url, "sqlite:"))
    {
        if rest.is_empty() {
            return Err(RepoError::config(
                "sqlite URL has no path (e.g. sqlite://data.db)",
            ));
        }
        return Ok(DatabaseTarget::Sqlite(rest.to_owned()));
    }
    let has_scheme = url.contains("://");
    if !has_scheme
        && [".db", ".sqlite", ".sqlite3"]
            .iter()
            .any(|ext| lower.ends_with(ext))
    {
        return Ok(DatabaseTarget::Sqlite(url.to_owned()));
    }
    Err(RepoError::config(format!(
        "unsupported database URL {:?}; supported: {}",
        redact_url(url),
        supported_schemes().join(", ")
    )))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Where the URL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// `DATABASE_URL`.
    DatabaseUrl,
    /// Assembled from `POSTGRES_HOST`, `POSTGRES_PORT`, `POSTGRES_DB`, `POSTGRES_USER`,
    /// `POSTGRES_PASSWORD`.
    PostgresParts,
    /// Neither was set: the embedded SQLite default.
    Default,
}

/// A URL and where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedUrl {
    /// The URL (may hold a password: never log it unredacted).
    pub url: String,
    /// Its origin.
    pub source: UrlSource,
}

impl std::fmt::Debug for ResolvedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedUrl")
            .field("url", &redact_url(&self.url))
            .field("source", &self.source)
            .finish()
    }
}

/// `DATABASE_URL` when set; else, when `POSTGRES_HOST` is set, a PostgreSQL URL built
/// from `POSTGRES_HOST`, `POSTGRES_PORT` (5432), `POSTGRES_DB` (`postgres`),
/// `POSTGRES_USER` (`postgres`) and `POSTGRES_PASSWORD` (none), percent-encoded; else
/// the SQLite file [`DEFAULT_SQLITE_FILE`] in the working directory. `DATABASE_URL` or
/// `POSTGRES_HOST` set but blank (or only whitespace) is a `Config` error naming it:
/// only an unset variable selects the next fallback.
pub fn resolve_database_url(lookup: impl Fn(&str) -> Option<String>) -> RepoResult<ResolvedUrl> {
    // Set but blank (docker-compose's `${DATABASE_URL}` of an unset variable) is a
    // mistake: only unset selects a fallback.
    for name in ["DATABASE_URL", "POSTGRES_HOST"] {
        if lookup(name).is_some_and(|v| v.trim().is_empty()) {
            return Err(RepoError::config(format!(
                "{name} is set but blank: give a database URL, or unset it to use {}",
                if name == "DATABASE_URL" {
                    "POSTGRES_HOST … or the embedded SQLite default"
                } else {
                    "the embedded SQLite default"
                }
            )));
        }
    }
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    if let Some(url) = get("DATABASE_URL") {
        return Ok(ResolvedUrl {
            url,
            source: UrlSource::DatabaseUrl,
        });
    }
    if let Some(host) = get("POSTGRES_HOST") {
        let port: u16 = match get("POSTGRES_PORT") {
            Some(p) => p.trim().parse().map_err(|_| {
                RepoError::config(format!("POSTGRES_PORT={p:?} is not a port number"))
            })?,
            None => 5432,
        };
        let hosts: Vec<PgHost> = host
            .split(',')
            .map(|h| PgHost {
                host: h.trim().to_owned(),
                port: Some(port),
            })
            .collect();
        if hosts.iter().any(|h| h.host.is_empty()) {
            return Err(RepoError::config(format!(
                "POSTGRES_HOST={host:?} is not a host name"
            )));
        }
        let user = get("POSTGRES_USER").unwrap_or_else(|| "postgres".to_owned());
        let db = get("POSTGRES_DB").unwrap_or_else(|| "postgres".to_owned());
        let url = PostgresUrl::parse(&format!("postgresql://{}@", percent_encode(&user)))?
            .with_hosts(&hosts)
            .with_password(get("POSTGRES_PASSWORD").as_deref())
            .with_database(&db);
        return Ok(ResolvedUrl {
            url: url.to_url(),
            source: UrlSource::PostgresParts,
        });
    }
    Ok(ResolvedUrl {
        url: DEFAULT_SQLITE_FILE.to_owned(),
        source: UrlSource::Default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sqlite(s: &str) -> DatabaseTarget {
        DatabaseTarget::Sqlite(s.to_owned())
    }

    #[test]
    fn sqlite_forms() {
        assert_eq!(
            parse_database_url("sqlite::memory:").unwrap(),
            sqlite(":memory:")
        );
        assert_eq!(
            parse_database_url("sqlite://data/app.db").unwrap(),
            sqlite("data/app.db")
        );
        assert_eq!(
            parse_database_url("sqlite:///var/x.db").unwrap(),
            sqlite("/var/x.db")
        );
        assert_eq!(
            parse_database_url("app.sqlite3").unwrap(),
            sqlite("app.sqlite3")
        );
        assert_eq!(
            parse_database_url("file:x.db?mode=rwc").unwrap(),
            sqlite("file:x.db?mode=rwc")
        );
    }

    #[test]
    fn postgres_forms() {
        for u in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5433/db?sslmode=require",
            "postgres://u:p@h1:5432,h2:5433,[::1]:5434/db?target_session_attrs=read-write",
            "postgres:///db?host=/var/run/postgresql",
        ] {
            assert_eq!(
                parse_database_url(u).unwrap(),
                DatabaseTarget::Postgres(u.to_owned())
            );
        }
    }

    #[test]
    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    fn unknown_scheme_lists_supported_and_redacts() {
        let err = parse_database_url("mysql://root:hunter2@db/x").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RepoError::Config { .. }));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("postgres://") && text.contains("sqlite://"),
            "{text}"
        );
        assert!(parse_database_url("data.txt").is_err());
        let err = parse_database_url("postgres://u:hunter2@[::1/db").unwrap_err();
        assert!(matches!(err, RepoError::Config { .. }));
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(parse_database_url("").is_err());
    }

    #[test]
    fn env_fallbacks() {
        let env = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            move |k: &str| m.get(k).cloned()
        };
        let r = resolve_database_url(env(&[])).unwrap();
        assert_eq!(r.source, UrlSource::Default);
        assert_eq!(r.url, DEFAULT_SQLITE_FILE);
        let r = resolve_database_url(env(&[
            ("POSTGRES_HOST", "db.internal"),
            ("POSTGRES_USER", "app"),
            ("POSTGRES_PASSWORD", "p@ss/word"),
            ("POSTGRES_DB", "semantik"),
        ]))
        .unwrap();
        assert_eq!(r.source, UrlSource::PostgresParts);
        assert_eq!(
            r.url,
            "postgresql://app:p%40ss%2Fword@db.internal:5432/semantik"
        );
        assert!(!format!("{r:?}").contains("p%40ss"));
        let r = resolve_database_url(env(&[
            ("DATABASE_URL", "sqlite::memory:"),
            ("POSTGRES_HOST", "ignored"),
        ]))
        .unwrap();
        assert_eq!(r.source, UrlSource::DatabaseUrl);
        assert!(
            resolve_database_url(env(&[("POSTGRES_HOST", "h"), ("POSTGRES_PORT", "x")])).is_err()
        );
        // Several hosts, an IPv6 address, a socket directory.
        let r = resolve_database_url(env(&[
            ("POSTGRES_HOST", "db1,::1,/run/pg"),
            ("POSTGRES_PASSWORD", "a,b"),
        ]))
        .unwrap();
        assert_eq!(
            r.url,
            "postgresql://postgres:a%2Cb@db1:5432,[::1]:5432,%2Frun%2Fpg:5432/postgres"
        );
    }

    /// `DATABASE_URL=` (set but blank: docker-compose's `${X}` of an unset X) is a
    /// mistake, not a request for the embedded default; so is a blank `POSTGRES_HOST`.
    #[test]
    fn blank_database_url_is_a_config_error() {
        for (name, blank) in [
            ("DATABASE_URL", ""),
            ("DATABASE_URL", "  \t"),
            ("POSTGRES_HOST", ""),
            ("POSTGRES_HOST", " "),
        ] {
            let err = resolve_database_url(|k: &str| (k == name).then(|| blank.to_owned()))
                .expect_err("a blank setting is refused");
            assert!(
                matches!(&err, RepoError::Config { message } if message.contains(name)),
                "{name}={blank:?}: {err:?}"
            );
        }
    }
}
