//! No TLS to a server on the same host unless asked for.
//!
//! libpq's default `sslmode=prefer` negotiates TLS whenever the server offers it
//! (Debian's PostgreSQL does, with `ssl=on`), also on 127.0.0.1, where encryption
//! protects nothing and costs about half of the client's instructions per round trip
//! (docs/PERFORMANCE.md, finding 4). Over a Unix socket libpq never uses TLS anyway.

use std::borrow::Cow;

/// The URL to connect with: `url` with `sslmode=disable` appended when it names no
/// `sslmode` (nor any other `ssl*` parameter, such as a client certificate), the
/// `PGSSLMODE` variable is unset (`pgsslmode_set`), and every host it names is a
/// loopback address, `localhost` or a Unix socket (including no host at all, which
/// libpq takes as the default socket). Anything else is returned unchanged: an
/// explicit choice is never overridden, and a remote server keeps libpq's default.
///
/// The result holds the password of `url`, if any: redact it before logging.
pub fn plaintext_on_loopback(url: &str, pgsslmode_set: bool) -> Cow<'_, str> {
    if pgsslmode_set || !all_hosts_local(url) {
        return Cow::Borrowed(url);
    }
    let (head, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let separator = match head.find('?') {
        None => "?",
        Some(i) if i + 1 == head.len() || head.ends_with('&') => "",
        Some(_) => "&",
    };
    Cow::Owned(format!("{head}{separator}sslmode=disable{fragment}"))
}

/// Whether every host of `url` is on this machine and the URL leaves TLS to libpq's
/// default.
fn all_hosts_local(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        // libpq reports what it cannot parse; do not guess.
        return false;
    };
    let mut hosts: Vec<String> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        if key.starts_with("ssl") || key == "requiressl" || key == "gssencmode" {
            return false;
        }
        // `hostaddr` is where libpq connects; `host` (as a parameter) overrides the
        // authority part.
        if key == "host" || key == "hostaddr" {
            hosts.extend(value.split(',').map(str::to_owned));
        }
    }
    if hosts.is_empty() {
        // The authority may list several `host:port` pairs separated by commas, which
        // the url crate keeps as one opaque host string.
        let authority = parsed.host_str().unwrap_or("");
        let decoded = percent_decode(authority);
        hosts.extend(decoded.split(',').map(|h| strip_port(h).to_owned()));
    }
    hosts.iter().all(|h| is_local_host(h))
}

/// `host:port` → `host`; `[::1]:5432` → `::1`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((h, _)) if !h.contains(':') => h,
        _ => host,
    }
}

fn is_local_host(host: &str) -> bool {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.starts_with('/') || host.starts_with('@') {
        // Default socket, a socket directory, or an abstract socket.
        return true;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_core::redact_url;

    fn rewrite(url: &str) -> String {
        plaintext_on_loopback(url, false).into_owned()
    }

    #[test]
    fn loopback_hosts_get_sslmode_disable() {
        for (url, expected) in [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            ),
            (
                "postgresql://app@localhost/db?application_name=x",
                "postgresql://app@localhost/db?application_name=x&sslmode=disable",
            ),
            (
                "postgres://app@[::1]:5433/db",
                "postgres://app@[::1]:5433/db?sslmode=disable",
            ),
            ("postgres:///db", "postgres:///db?sslmode=disable"),
            (
                "postgres://%2Fvar%2Frun%2Fpostgresql/db",
                "postgres://%2Fvar%2Frun%2Fpostgresql/db?sslmode=disable",
            ),
            (
                "postgres://remote.example/db?host=/tmp",
                "postgres://remote.example/db?host=/tmp&sslmode=disable",
            ),
            (
                "postgres://127.0.0.2/db?",
                "postgres://127.0.0.2/db?sslmode=disable",
            ),
        ] {
            assert_eq!(rewrite(url), expected, "{url}");
        }
    }

    #[test]
    fn explicit_choices_and_remote_hosts_are_left_alone() {
        for url in [
            "postgres://app@127.0.0.1/db?sslmode=require",
            "postgres://app@localhost/db?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://app@localhost/db?sslcert=/c.pem&sslkey=/k.pem",
            "postgres://app@db.example.com/db",
            "postgres://app@10.0.0.5/db",
            "postgres://app@localhost,db.example.com/db",
            "postgres://app@localhost/db?host=db.example.com",
            "postgres://app@remote/db?hostaddr=10.1.2.3",
            "not a url",
        ] {
            assert_eq!(rewrite(url), url, "{url}");
        }
        // PGSSLMODE in the environment is an explicit choice too.
        let url = "postgres://app@127.0.0.1/db";
        assert_eq!(plaintext_on_loopback(url, true), url);
    }

    #[test]
    fn the_password_is_kept_for_libpq_and_redacted_like_before() {
        let url = "postgres://app:s3cr%40t@127.0.0.1:5432/db?password=other";
        let out = rewrite(url);
        // Only a parameter is appended: the credentials reach libpq unchanged.
        assert_eq!(out, format!("{url}&sslmode=disable"));
        let shown = redact_url(&out);
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(!shown.contains("other"), "{shown}");
        assert!(shown.ends_with("sslmode=disable"), "{shown}");
    }
}
