//! PostgreSQL connection URLs as libpq reads them, multi-host ones included.
//!
//! `postgres://user:pass@h1:5432,h2:5433,[::1]:5434/db?target_session_attrs=read-write`
//! is a valid libpq URL but not a valid URL for the `url` crate (a host list), so
//! every place that looks inside a PostgreSQL URL goes through [`PostgresUrl`]: the
//! loopback TLS rule (every host must be local), the secrets scrubbed from messages,
//! redaction, the temporary test databases, `repoctl`. The grammar is libpq's
//! (`conninfo_uri_parse_options` in `fe-connect.c`):
//!
//! ```text
//! postgres[ql]://[user[:password]@][host][:port][,host[:port]…][/dbname][?key=value&…]
//! ```
//!
//! user, password, hosts, ports, database, and query keys and values are each
//! percent-decoded once (`+` is a plus sign, not a space); a `host=`, `port=` or
//! `hostaddr=` query parameter overrides the host list of the authority; `[…]`
//! brackets an IPv6 address; a host starting with `/` is a Unix-socket directory.
//!
//! Two additions are taken out before libpq sees the URL ([`PostgresUrl::libpq_url`]):
//! `pgbouncer=true|false` (Prisma's spelling: the transaction-pooler mode), and, with
//! [`PostgresUrl::with_deadline_defaults`], client-side deadlines are added where the
//! URL sets none (see [`DEADLINE_DEFAULTS`]).
//!
//! ```
//! use repo_core::postgres_url::PostgresUrl;
//!
//! let url = PostgresUrl::parse(
//!     "postgres://app:p%40ss@127.0.0.1:5432,[::1]:5433/db?pgbouncer=true",
//! )?;
//! assert_eq!(url.hosts().len(), 2);
//! assert!(url.is_loopback());
//! assert_eq!(url.pgbouncer(), Some(true));
//! assert_eq!(url.redacted(), "postgres://app:***@127.0.0.1:5432,[::1]:5433/db?pgbouncer=true");
//! assert!(url.secrets().contains(&"p@ss".to_owned()));
//! assert!(!url.libpq_url().contains("pgbouncer"));
//! # Ok::<(), repo_core::RepoError>(())
//! ```

use crate::error::{RepoError, RepoResult};
use std::fmt;

/// Client-side deadlines added to the libpq URL when it sets none of its own
/// ([`PostgresUrl::with_deadline_defaults`]); each can be overridden in the URL.
///
/// With these values a peer that stops answering (network partition, host frozen or
/// powered off) fails the call on that connection with `Unavailable` after at most:
///
/// | the call was | bound | with the defaults |
/// |---|---|---|
/// | connecting | `connect_timeout` per host address tried | 10 s per address |
/// | sending (bytes not acknowledged) | `tcp_user_timeout` | 15 s |
/// | waiting for a reply | `keepalives_idle + keepalives_interval × keepalives_count` | 5 + 2 × 5 = 15 s |
///
/// On Linux, when `tcp_user_timeout` is set it also decides when unanswered
/// keepalives end the connection: at the first probe sent at least
/// `tcp_user_timeout` after the last byte received (never before the first probe,
/// `keepalives_idle + keepalives_interval`). The defaults make both rules give 15 s.
/// Keepalives and `tcp_user_timeout` apply to TCP only (not to Unix sockets).
pub const DEADLINE_DEFAULTS: &[(&str, &str)] = &[
    ("connect_timeout", "10"),
    ("keepalives", "1"),
    ("keepalives_idle", "5"),
    ("keepalives_interval", "2"),
    ("keepalives_count", "5"),
    ("tcp_user_timeout", "15000"),
];

/// The query parameter (Prisma's spelling) that turns the transaction-pooler mode on
/// or off; libpq does not know it, so [`PostgresUrl::libpq_url`] leaves it out.
pub const PGBOUNCER_PARAM: &str = "pgbouncer";

/// One host of a URL, with its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgHost {
    /// Host name, IP address (IPv6 without brackets) or Unix-socket directory
    /// (starting with `/`); empty means libpq's default (the default Unix socket).
    pub host: String,
    /// Port; `None` for libpq's default (5432, or `PGPORT`).
    pub port: Option<u16>,
}

impl PgHost {
    /// Whether the host is on this machine: a loopback address (`127.0.0.0/8`,
    /// `::1`), `localhost`, a Unix socket (a directory path, an abstract `@name`), or
    /// the default socket (empty host).
    pub fn is_loopback(&self) -> bool {
        is_local_host(&self.host)
    }
}

/// One `key=value` pair of the query, as written and decoded.
#[derive(Clone, PartialEq, Eq)]
struct Param {
    /// `key=value` exactly as written (re-emitted unchanged).
    raw: String,
    key: String,
    value: String,
}

/// A parsed libpq connection URL. `Debug` shows it redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// `postgres` or `postgresql`, lowercase.
    scheme: String,
    /// Everything between `://` and the database's `/` (or `?`), as written.
    authority: String,
    user: Option<String>,
    password_raw: Option<String>,
    password: Option<String>,
    /// Hosts and ports of the authority (decoded).
    authority_hosts: Vec<String>,
    authority_ports: Vec<String>,
    /// The path after `/`, as written (`None`: no `/`).
    database_raw: Option<String>,
    database: Option<String>,
    params: Vec<Param>,
    pgbouncer: Option<bool>,
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// Whether `url` starts with a PostgreSQL scheme (`postgres://`, `postgresql://`, any
/// case).
pub fn is_postgres_url(url: &str) -> bool {
    scheme_len(url).is_some()
}

fn scheme_len(url: &str) -> Option<usize> {
    ["postgresql://", "postgres://"].iter().find_map(|p| {
        url.get(..p.len())
            .filter(|head| head.eq_ignore_ascii_case(p))
            .map(|_| p.len())
    })
}

impl PostgresUrl {
    /// Parses a libpq URL. A malformed one is a `Config` error whose message shows the
    /// URL redacted.
    pub fn parse(url: &str) -> RepoResult<Self> {
        Self::parse_inner(url.trim()).map_err(|why| {
            RepoError::config(format!(
                "invalid PostgreSQL URL {}: {why}",
                redact_url(url.trim())
            ))
        })
    }

    fn parse_inner(url: &str) -> Result<Self, String> {
        let prefix = scheme_len(url).ok_or("expected postgres:// or postgresql://".to_owned())?;
        let scheme = url[..prefix - 3].to_ascii_lowercase();
        let rest = &url[prefix..];
        // libpq: user info ends at the first '@' met before any '/'.
        let cred_end = rest
            .find(['@', '/'])
            .filter(|&i| rest.as_bytes()[i] == b'@');
        let (user, password_raw, netloc_start) = match cred_end {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                (
                    (!user.is_empty()).then_some(user),
                    password.filter(|p| !p.is_empty()),
                    at + 1,
                )
            }
            None => (None, None, 0),
        };
        let (hosts_raw, ports_raw, after) = split_netloc(&rest[netloc_start..])?;
        let authority = rest[..netloc_start + after].to_owned();
        let tail = &rest[netloc_start + after..];
        let (database_raw, query) = match tail.strip_prefix('/') {
            Some(path) => match path.split_once('?') {
                Some((db, q)) => (Some(db), Some(q)),
                None => (Some(path), None),
            },
            None => (None, tail.strip_prefix('?')),
        };
        let decode_opt = |s: Option<&str>| s.map(percent_decode).transpose();
        let mut params = Vec::new();
        let mut pgbouncer = None;
        for raw in query.unwrap_or("").split('&') {
            if raw.is_empty() {
                // libpq stops at the end of the query; an empty piece only occurs
                // after a trailing '&', or is an error libpq reports itself.
                continue;
            }
            let (k, v) = raw
                .split_once('=')
                .ok_or_else(|| format!("missing \"=\" in query parameter {raw:?}"))?;
            if v.contains('=') {
                return Err(format!("extra \"=\" in query parameter {k:?}"));
            }
            let key = percent_decode(k)?;
            let value = percent_decode(v)?;
            if key == PGBOUNCER_PARAM {
                pgbouncer = Some(match value.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("pgbouncer={value:?} must be true or false")),
                });
                continue;
            }
            params.push(Param {
                raw: raw.to_owned(),
                key,
                value,
            });
        }
        Ok(Self {
            scheme,
            authority,
            user: decode_opt(user)?,
            password_raw: password_raw.map(str::to_owned),
            password: decode_opt(password_raw)?,
            authority_hosts: split_list(&percent_decode(&hosts_raw)?),
            authority_ports: split_list(&percent_decode(&ports_raw)?),
            database_raw: database_raw.map(str::to_owned),
            database: decode_opt(database_raw.filter(|d| !d.is_empty()))?,
            params,
            pgbouncer,
        })
    }

    /// The user name, decoded (a `user=` parameter wins).
    pub fn user(&self) -> Option<&str> {
        self.param("user").or(self.user.as_deref())
    }

    /// The database name, decoded (a `dbname=` parameter wins).
    pub fn database(&self) -> Option<&str> {
        self.param("dbname").or(self.database.as_deref())
    }

    /// The value of query parameter `key` (decoded; the last one wins, as in libpq).
    /// `pgbouncer` is not a parameter: see [`pgbouncer`](Self::pgbouncer).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// Every query parameter, decoded, in order (`pgbouncer` left out).
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
    }

    /// `pgbouncer=true|false` from the query, if present: whether the URL asks for
    /// the transaction-pooler mode.
    pub fn pgbouncer(&self) -> Option<bool> {
        self.pgbouncer
    }

    /// The hosts libpq tries, in order, each with its port: the `host=` parameter
    /// when present, else the authority's list; ports from `port=` when present
    /// (one port applies to every host), else the authority's. An empty host is the
    /// default Unix socket. `hostaddr=` is listed by [`hostaddrs`](Self::hostaddrs).
    pub fn hosts(&self) -> Vec<PgHost> {
        let hosts = match self.param("host") {
            Some(h) => split_list(h),
            None => self.authority_hosts.clone(),
        };
        let ports = match self.param("port") {
            Some(p) => split_list(p),
            None => self.authority_ports.clone(),
        };
        let hosts = if hosts.is_empty() {
            vec![String::new()]
        } else {
            hosts
        };
        hosts
            .into_iter()
            .enumerate()
            .map(|(i, host)| {
                let port = if ports.len() == 1 {
                    ports.first()
                } else {
                    ports.get(i)
                };
                PgHost {
                    host,
                    port: port.and_then(|p| p.trim().parse().ok()),
                }
            })
            .collect()
    }

    /// The `hostaddr=` addresses (libpq connects to these and uses the hosts only for
    /// authentication and certificate checks), empty when not set.
    pub fn hostaddrs(&self) -> Vec<String> {
        self.param("hostaddr").map(split_list).unwrap_or_default()
    }

    /// Whether every host (and every `hostaddr`) is on this machine (see
    /// [`PgHost::is_loopback`]).
    pub fn is_loopback(&self) -> bool {
        self.hosts().iter().all(PgHost::is_loopback)
            && self.hostaddrs().iter().all(|a| is_local_host(a))
    }

    /// Whether the URL says anything about encryption: `sslmode` or any other `ssl*`
    /// parameter, `requiressl`, or `gssencmode`.
    pub fn sets_tls(&self) -> bool {
        self.params
            .iter()
            .any(|p| p.key.starts_with("ssl") || p.key == "requiressl" || p.key == "gssencmode")
    }

    /// The password libpq would send: the `password=` parameter when present (it wins
    /// over the user info, as in libpq), else the user-info password, percent-decoded.
    /// Never log it.
    pub fn password(&self) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|p| is_password_key(&p.key))
            .map(|p| p.value.as_str())
            .or(self.password.as_deref())
            .filter(|p| !p.is_empty())
    }

    /// The passwords this URL carries (user-info password and `password=` parameter),
    /// each as written and decoded, longest first: the text to scrub from messages.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = conservative_secrets(&self.to_url_string(true));
        secrets.extend(self.password_raw.iter().cloned());
        secrets.extend(self.password.iter().cloned());
        for p in self.params.iter().filter(|p| is_password_key(&p.key)) {
            secrets.push(p.value.clone());
            if let Some((_, v)) = p.raw.split_once('=') {
                secrets.push(v.to_owned());
            }
        }
        tidy_secrets(secrets)
    }

    /// The URL as given (with `pgbouncer` and any added parameters), passwords
    /// replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.to_url_string(true))
    }

    /// The URL with every change applied, `pgbouncer` kept: what to hand on to code
    /// that parses it again (`PostgresStore::connect`). Holds the password: never log
    /// it (use [`redacted`](Self::redacted)).
    pub fn to_url(&self) -> String {
        self.to_url_string(true)
    }

    /// The URL to hand libpq: as given, `pgbouncer` left out, added parameters
    /// appended. Holds the password: never log it (use [`redacted`](Self::redacted)).
    pub fn libpq_url(&self) -> String {
        self.to_url_string(false)
    }

    fn to_url_string(&self, with_pgbouncer: bool) -> String {
        let mut out = format!("{}://{}", self.scheme, self.authority);
        if let Some(db) = &self.database_raw {
            out.push('/');
            out.push_str(db);
        }
        let mut pieces: Vec<&str> = self.params.iter().map(|p| p.raw.as_str()).collect();
        let flag = self.pgbouncer.map(|b| format!("{PGBOUNCER_PARAM}={b}"));
        if with_pgbouncer {
            pieces.extend(flag.as_deref());
        }
        if !pieces.is_empty() {
            out.push('?');
            out.push_str(&pieces.join("&"));
        }
        out
    }

    /// Sets query parameter `key` to `value`, replacing every earlier occurrence.
    pub fn with_param(mut self, key: &str, value: &str) -> Self {
        self.params.retain(|p| p.key != key);
        self.params.push(Param {
            raw: format!("{}={}", percent_encode(key), percent_encode(value)),
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Sets query parameter `key` to `value` unless the URL already sets it.
    pub fn with_param_if_absent(self, key: &str, value: &str) -> Self {
        if self.param(key).is_some() {
            self
        } else {
            self.with_param(key, value)
        }
    }

    /// Adds every [`DEADLINE_DEFAULTS`] parameter the URL does not set, so that a
    /// server that stops answering fails calls within a bounded time.
    pub fn with_deadline_defaults(self) -> Self {
        DEADLINE_DEFAULTS
            .iter()
            .fold(self, |url, (k, v)| url.with_param_if_absent(k, v))
    }

    /// The same URL naming database `name` (a `dbname=` parameter is dropped).
    pub fn with_database(mut self, name: &str) -> Self {
        self.params.retain(|p| p.key != "dbname");
        self.database_raw = Some(percent_encode(name));
        self.database = Some(name.to_owned());
        self
    }

    /// The same URL with the authority's hosts replaced by `hosts` (a `host=`,
    /// `hostaddr=` or `port=` parameter is dropped); credentials are kept.
    pub fn with_hosts(mut self, hosts: &[PgHost]) -> Self {
        self.params
            .retain(|p| !matches!(p.key.as_str(), "host" | "hostaddr" | "port"));
        let netloc: Vec<String> = hosts
            .iter()
            .map(|h| {
                let host = if h.host.contains(':') {
                    format!("[{}]", h.host.replace('%', "%25"))
                } else {
                    percent_encode(&h.host)
                };
                match h.port {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                }
            })
            .collect();
        let userinfo_end = self.authority.len() - self.netloc_len();
        self.authority = format!("{}{}", &self.authority[..userinfo_end], netloc.join(","));
        self.authority_hosts = hosts.iter().map(|h| h.host.clone()).collect();
        self.authority_ports = hosts
            .iter()
            .map(|h| h.port.map(|p| p.to_string()).unwrap_or_default())
            .collect();
        self
    }

    /// The same URL with `password` (percent-encoded for you) as the user-info
    /// password, or none; a `password=` parameter is dropped.
    pub fn with_password(mut self, password: Option<&str>) -> Self {
        self.params.retain(|p| !is_password_key(&p.key));
        let netloc = self.authority[self.authority.len() - self.netloc_len()..].to_owned();
        let user = self.user.as_deref().map(percent_encode).unwrap_or_default();
        let encoded = password.map(percent_encode);
        self.authority = match (&encoded, user.is_empty()) {
            (Some(p), _) => format!("{user}:{p}@{netloc}"),
            (None, false) => format!("{user}@{netloc}"),
            (None, true) => netloc,
        };
        self.password_raw = encoded;
        self.password = password.map(str::to_owned);
        self
    }

    /// Length of the host list at the end of `authority`.
    fn netloc_len(&self) -> usize {
        let at = self.authority.find('@').map_or(0, |i| i + 1);
        self.authority.len() - at
    }
}

/// Splits the host list of a libpq URL (after the user info) at its end (`/`, `?`
/// or the end of text): returns the hosts joined by `,`, the ports joined by `,`, and
/// the length consumed.
fn split_netloc(s: &str) -> Result<(String, String, usize), String> {
    let bytes = s.as_bytes();
    let mut hosts = String::new();
    let mut ports = String::new();
    let mut i = 0;
    loop {
        let host_end;
        if bytes.get(i) == Some(&b'[') {
            let close = s[i..]
                .find(']')
                .map(|j| i + j)
                .ok_or("no \"]\" closes the IPv6 address")?;
            if close == i + 1 {
                return Err("empty IPv6 address \"[]\"".into());
            }
            hosts.push_str(&s[i + 1..close]);
            host_end = close + 1;
            if !matches!(bytes.get(host_end), None | Some(b':' | b'/' | b'?' | b',')) {
                return Err("expected \":\", \"/\" or \",\" after \"]\"".into());
            }
        } else {
            host_end = s[i..].find([':', '/', '?', ',']).map_or(s.len(), |j| i + j);
            hosts.push_str(&s[i..host_end]);
        }
        i = host_end;
        if bytes.get(i) == Some(&b':') {
            let port_end = s[i + 1..]
                .find(['/', '?', ','])
                .map_or(s.len(), |j| i + 1 + j);
            ports.push_str(&s[i + 1..port_end]);
            i = port_end;
        }
        if bytes.get(i) != Some(&b',') {
            return Ok((hosts, ports, i));
        }
        i += 1;
        hosts.push(',');
        ports.push(',');
    }
}

/// `a,b` → `["a", "b"]`; empty text → no items.
fn split_list(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(',').map(str::to_owned).collect()
    }
}

fn is_local_host(host: &str) -> bool {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.starts_with('/') || host.starts_with('@') {
        // The default socket, a socket directory, or an abstract socket.
        return true;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // An IPv6 zone (`fe80::1%eth0`) is never loopback; parse fails on it.
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Decodes `%XX` escapes once, as libpq does: `+` stays a plus sign; leading and
/// trailing spaces are dropped, inner ones are an error, and so are `%00` and a `%`
/// not followed by two hex digits. Bytes that are not UTF-8 are replaced (U+FFFD).
pub fn percent_decode(text: &str) -> Result<String, String> {
    let trimmed = text.trim_matches(' ');
    if trimmed.contains(' ') {
        return Err("unexpected space (percent-encode it as %20)".into());
    }
    // What libpq refuses and `percent_encoding` would let through as it is.
    let bytes = trimmed.as_bytes();
    for (at, _) in trimmed.match_indices('%') {
        let hex = bytes
            .get(at + 1..at + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or("invalid percent-encoded token")?;
        if hex == b"00" {
            return Err("forbidden %00 in a percent-encoded value".into());
        }
    }
    Ok(percent_encoding::percent_decode_str(trimmed)
        .decode_utf8_lossy()
        .into_owned())
}

/// Everything but RFC 3986's unreserved characters (letters, digits, `-._~`).
const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

/// `text` with every one of `secrets` (as [`url_secrets`] lists them) replaced by
/// `***`: defence in depth for driver messages, which should not carry passwords but
/// must never show one.
pub fn scrub_secrets(text: String, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text, |t, s| {
        if t.contains(s.as_str()) {
            t.replace(s.as_str(), "***")
        } else {
            t
        }
    })
}

fn is_password_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("password")
}

fn tidy_secrets(mut secrets: Vec<String>) -> Vec<String> {
    secrets.retain(|s| !s.is_empty() && s != "***");
    secrets.sort();
    secrets.dedup();
    // Longest first, so a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// Where the password of `scheme://user:password@host…` sits, read generously: from
/// the first `:` of the user info to the last `@` before the first `/`, so a password
/// with an unencoded `@`, `?` or `#` is covered whole. `None` without one.
fn password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some(start + colon + 1..start + at)
}

/// Passwords found by the generous reading of [`password_span`] and every
/// `password=` query parameter (raw and decoded); works on text that does not parse.
fn conservative_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(span) = password_span(url) {
        let raw = &url[span];
        secrets.push(raw.to_owned());
        secrets.extend(percent_decode(raw).ok());
    }
    if let Some((_, query)) = url.split_once('?') {
        for (k, v) in query.split('&').filter_map(|p| p.split_once('=')) {
            let key = percent_decode(k).unwrap_or_else(|_| k.to_owned());
            if is_password_key(&key) {
                secrets.push(v.to_owned());
                secrets.extend(percent_decode(v).ok());
            }
        }
    }
    secrets
}

/// The secrets of any URL (see [`PostgresUrl::secrets`]); for text that does not
/// parse as a PostgreSQL URL, what a generous reading finds (user-info password,
/// `password=` parameters).
pub fn url_secrets(url: &str) -> Vec<String> {
    match PostgresUrl::parse_inner(url.trim()) {
        Ok(parsed) => parsed.secrets(),
        Err(_) => tidy_secrets(conservative_secrets(url)),
    }
}

/// Replaces the password of a URL (`scheme://user:secret@host…`, multi-host ones
/// included) with `***`, and the value of any `password=` query parameter (also a
/// percent-encoded key) likewise. Text that is not a URL is returned as is.
///
/// The password is taken generously (from the first `:` of the user info to the last
/// `@` before the first `/`), so an unencoded `@` or `?` in it is hidden too.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(span) = password_span(&out) {
        out.replace_range(span, "***");
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_password_key(&percent_decode(k).unwrap_or_default()) => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> PostgresUrl {
        PostgresUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn host(h: &str, port: Option<u16>) -> PgHost {
        PgHost {
            host: h.to_owned(),
            port,
        }
    }

    #[test]
    fn single_and_multi_host() {
        let u = parse("postgres://app:pw@db.example.com:5433/semantik?sslmode=require");
        assert_eq!(u.user(), Some("app"));
        assert_eq!(u.database(), Some("semantik"));
        assert_eq!(u.hosts(), vec![host("db.example.com", Some(5433))]);
        assert_eq!(u.param("sslmode"), Some("require"));
        assert!(!u.is_loopback());
        assert!(u.sets_tls());

        let u = parse(
            "postgresql://u:p@h1:5432,h2,[::1]:5434,[fe80::1%25eth0]/db?target_session_attrs=read-write",
        );
        assert_eq!(
            u.hosts(),
            vec![
                host("h1", Some(5432)),
                host("h2", None),
                host("::1", Some(5434)),
                host("fe80::1%eth0", None),
            ]
        );
        assert_eq!(u.param("target_session_attrs"), Some("read-write"));
        assert_eq!(u.libpq_url(), "postgresql://u:p@h1:5432,h2,[::1]:5434,[fe80::1%25eth0]/db?target_session_attrs=read-write");
    }

    #[test]
    fn loopback_only_when_every_host_is_local() {
        for url in [
            "postgres://u@127.0.0.1:5432,[::1]:5433,localhost:5434/db",
            "postgres://u@127.9.9.9/db",
            "postgres:///db",
            "postgres://:5433/db",
            "postgres:///db?host=/var/run/postgresql",
            "postgres://%2Fvar%2Frun%2Fpostgresql/db",
            "postgres://u@remote.example/db?host=/tmp,localhost",
            "postgres://u@LOCALHOST/db?hostaddr=127.0.0.1",
            "postgres://u@h1,,h2/db?host=@abstract",
        ] {
            assert!(parse(url).is_loopback(), "{url}");
        }
        for url in [
            "postgres://u@127.0.0.1:5432,db.example.com:5432/db",
            "postgres://u@localhost/db?host=db.example.com",
            "postgres://u@localhost/db?hostaddr=10.0.0.1",
            "postgres://u@[fe80::1%25eth0]/db",
            "postgres://u@10.0.0.5/db",
        ] {
            assert!(!parse(url).is_loopback(), "{url}");
        }
    }

    #[test]
    fn query_only_hosts_and_ports() {
        let u = parse("postgres:///db?host=/var/run/postgresql&port=5433");
        assert_eq!(u.hosts(), vec![host("/var/run/postgresql", Some(5433))]);
        let u = parse("postgres://x/db?host=a,b&port=1,2");
        assert_eq!(u.hosts(), vec![host("a", Some(1)), host("b", Some(2))]);
        let u = parse("postgres://a,b/db?port=7");
        assert_eq!(u.hosts(), vec![host("a", Some(7)), host("b", Some(7))]);
        let u = parse("postgres://h?dbname=x");
        assert_eq!(u.database(), Some("x"));
        assert_eq!(u.hosts(), vec![host("h", None)]);
    }

    #[test]
    fn encoded_passwords_are_decoded_once_and_scrubbed() {
        // '@' ':' ',' '/' and '%' in a password, percent-encoded.
        let u = parse("postgres://app:a%40b%3Ac%2Cd%2Fe%2525@h1:1,h2:2/db");
        assert_eq!(u.hosts(), vec![host("h1", Some(1)), host("h2", Some(2))]);
        let secrets = u.secrets();
        assert!(secrets.contains(&"a@b:c,d/e%25".to_owned()), "{secrets:?}");
        assert!(secrets.contains(&"a%40b%3Ac%2Cd%2Fe%2525".to_owned()));
        assert_eq!(u.redacted(), "postgres://app:***@h1:1,h2:2/db");
        // A password parameter, also with an encoded key.
        let u = parse("postgres://h/db?user=a&password=s%20x&pass%77ord=t");
        let secrets = u.secrets();
        assert!(secrets.contains(&"s x".to_owned()) && secrets.contains(&"t".to_owned()));
        assert_eq!(
            u.redacted(),
            "postgres://h/db?user=a&password=***&pass%77ord=***"
        );
        assert!(parse("postgres://app@h/db").secrets().is_empty());
    }

    #[test]
    fn pgbouncer_flag_is_taken_out_for_libpq() {
        let u = parse("postgres://u:p@h:6432/db?pgbouncer=true&sslmode=disable");
        assert_eq!(u.pgbouncer(), Some(true));
        assert_eq!(u.param(PGBOUNCER_PARAM), None);
        assert_eq!(u.libpq_url(), "postgres://u:p@h:6432/db?sslmode=disable");
        assert!(u.redacted().contains("pgbouncer=true"));
        assert_eq!(
            parse("postgres://h/db?pgbouncer=FALSE").pgbouncer(),
            Some(false)
        );
        assert_eq!(
            parse("postgres://h/db?pgbouncer=false").libpq_url(),
            "postgres://h/db"
        );
        assert_eq!(parse("postgres://h/db").pgbouncer(), None);
        let err = PostgresUrl::parse("postgres://u:secret@h/db?pgbouncer=yes").unwrap_err();
        assert!(matches!(err, RepoError::Config { .. }));
        assert!(err.to_string().contains("pgbouncer") && !err.to_string().contains("secret"));
    }

    #[test]
    fn deadline_defaults_fill_only_what_is_missing() {
        let u = parse("postgres://h/db?keepalives_idle=1&tcp_user_timeout=3000")
            .with_deadline_defaults();
        assert_eq!(u.param("keepalives_idle"), Some("1"));
        assert_eq!(u.param("tcp_user_timeout"), Some("3000"));
        assert_eq!(u.param("connect_timeout"), Some("10"));
        assert_eq!(u.param("keepalives_count"), Some("5"));
        assert_eq!(
            u.libpq_url(),
            "postgres://h/db?keepalives_idle=1&tcp_user_timeout=3000&connect_timeout=10\
             &keepalives=1&keepalives_interval=2&keepalives_count=5"
        );
        // Idempotent.
        assert_eq!(u.clone().with_deadline_defaults(), u);
    }

    #[test]
    fn rewrites_keep_credentials() {
        let u = parse("postgres://a%40b:p%2F@h1:1,h2:2/old?dbname=x&sslmode=disable");
        let t = u.clone().with_database("t_1");
        assert_eq!(
            t.libpq_url(),
            "postgres://a%40b:p%2F@h1:1,h2:2/t_1?sslmode=disable"
        );
        assert_eq!(t.database(), Some("t_1"));
        let moved = u
            .clone()
            .with_hosts(&[host("127.0.0.1", Some(9)), host("::1", None)]);
        assert_eq!(
            moved.libpq_url(),
            "postgres://a%40b:p%2F@127.0.0.1:9,[::1]/old?dbname=x&sslmode=disable"
        );
        let pw = u.with_password(Some("n@w:pw"));
        assert_eq!(
            pw.libpq_url(),
            "postgres://a%40b:n%40w%3Apw@h1:1,h2:2/old?dbname=x&sslmode=disable"
        );
        assert!(pw.secrets().contains(&"n@w:pw".to_owned()));
        assert_eq!(
            parse("postgres://h/db")
                .with_password(Some("x"))
                .libpq_url(),
            "postgres://:x@h/db"
        );
    }

    #[test]
    fn malformed_urls_are_config_errors_without_the_password() {
        for url in [
            "postgres://u:hunter2@[::1/db",
            "postgres://u:hunter2@[]/db",
            "postgres://u:hunter2@[::1]x/db",
            "postgres://u:hunter2@h/db?sslmode",
            "postgres://u:hunter2@h/db?a=b=c",
            "postgres://u:hunter2@h/d%zz",
            "postgres://u:hunter2@h/d%00",
            "postgres://u:hunter2@h/d b",
            "mysql://u:hunter2@h/db",
        ] {
            let err = PostgresUrl::parse(url).unwrap_err();
            assert!(matches!(err, RepoError::Config { .. }), "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn redaction_of_any_text() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:p@h1:5432,h2:5433/db?password=q"),
            "postgres://u:***@h1:5432,h2:5433/db?password=***"
        );
        // Unencoded '@' and '?' in a password: hidden whole.
        assert_eq!(
            redact_url("postgres://u:p@s?s@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data.db"), "sqlite://data.db");
        assert_eq!(redact_url("data.db"), "data.db");
        let secrets = url_secrets("postgres://u:p@s?s@h/db");
        assert!(secrets.contains(&"p@s?s".to_owned()), "{secrets:?}");
    }

    #[test]
    fn secrets_are_scrubbed_from_text() {
        let secrets = url_secrets("postgres://u:p%40ss@h/db");
        assert_eq!(
            scrub_secrets("auth failed for p@ss (p%40ss)".into(), &secrets),
            "auth failed for *** (***)"
        );
        assert_eq!(scrub_secrets("a b".into(), &[]), "a b");
        assert_eq!(scrub_secrets("a b".into(), &[String::new()]), "a b");
    }

    #[test]
    fn percent_coding_follows_libpq() {
        assert_eq!(percent_decode(" a%2Fb+c%C3%A9 ").as_deref(), Ok("a/b+cé"));
        assert_eq!(percent_decode("%ff").as_deref(), Ok("\u{FFFD}"));
        for bad in ["a b", "%", "%4", "%4g", "%%41", "a%00b"] {
            assert!(percent_decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(percent_encode("a-._~Z9 /@:é"), "a-._~Z9%20%2F%40%3A%C3%A9");
        let text = "p@ss/wörd?#%";
        assert_eq!(percent_decode(&percent_encode(text)).as_deref(), Ok(text));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn password() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[ -~]{1,24}")
                .expect("regex")
                .prop_filter("not only spaces", |s| !s.trim().is_empty())
        }

        fn host_list() -> impl Strategy<Value = Vec<PgHost>> {
            let name = prop_oneof![
                Just("127.0.0.1".to_owned()),
                Just("::1".to_owned()),
                Just("localhost".to_owned()),
                Just("db.example.com".to_owned()),
                Just("10.1.2.3".to_owned()),
                Just("2001:db8::7".to_owned()),
                Just("/var/run/postgresql".to_owned()),
            ];
            proptest::collection::vec(
                (name, proptest::option::of(1u16..=65535))
                    .prop_map(|(host, port)| PgHost { host, port }),
                1..4,
            )
        }

        proptest! {
            /// Any password, percent-encoded into a multi-host URL, decodes back once,
            /// is among the secrets and never shows in the redacted form.
            #[test]
            fn password_round_trip(pw in password(), hosts in host_list(), db in "[a-z_]{1,8}") {
                let base = parse(&format!("postgres://app@x/{db}?application_name=t"))
                    .with_hosts(&hosts)
                    .with_password(Some(&pw));
                let text = base.libpq_url();
                let u = parse(&text);
                prop_assert_eq!(u.hosts(), hosts.clone());
                prop_assert_eq!(u.database(), Some(db.as_str()));
                prop_assert_eq!(u.user(), Some("app"));
                prop_assert!(u.secrets().contains(&pw));
                let shown = u.redacted();
                let expected = text.replacen(&format!(":{}@", percent_encode(&pw)), ":***@", 1);
                prop_assert_eq!(&shown, &expected);
                prop_assert_eq!(redact_url(&text), expected);
                let remote = ["db.example.com", "10.1.2.3", "2001:db8::7"];
                prop_assert_eq!(
                    u.is_loopback(),
                    hosts.iter().all(|h| !remote.contains(&h.host.as_str()))
                );
            }
        }
    }
}
