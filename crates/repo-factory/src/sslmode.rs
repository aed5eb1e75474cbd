//! No TLS to a server on the same host unless asked for.
//!
//! libpq's default `sslmode=prefer` negotiates TLS whenever the server offers it
//! (Debian's PostgreSQL does, with `ssl=on`), also on 127.0.0.1, where encryption
//! protects nothing and costs about half of the client's instructions per round trip
//! (docs/PERFORMANCE.md, finding 4). Over a Unix socket libpq never uses TLS anyway.

use repo_core::PostgresUrl;
use std::borrow::Cow;

/// The URL to connect with: `url` with `sslmode=disable` appended when it names no
/// `sslmode` (nor any other `ssl*` parameter, such as a client certificate), the
/// `PGSSLMODE` variable is unset (`pgsslmode_set`), and every host it names (all of a
/// multi-host URL's, and every `host=`/`hostaddr=` one) is a loopback address,
/// `localhost` or a Unix socket (including no host at all, which libpq takes as the
/// default socket). Anything else is returned unchanged: an explicit choice is never
/// overridden, and a remote server keeps libpq's default.
///
/// The result holds the password of `url`, if any: redact it before logging.
pub fn plaintext_on_loopback(url: &str, pgsslmode_set: bool) -> Cow<'_, str> {
    // What does not parse is left to libpq to report.
    let leave_tls_to_libpq =
        PostgresUrl::parse(url).is_ok_and(|parsed| !parsed.sets_tls() && parsed.is_loopback());
    if pgsslmode_set || !leave_tls_to_libpq {
        return Cow::Borrowed(url);
    }
    // Appended as text, so that everything else (credentials, `pgbouncer=`) reaches
    // the store exactly as given.
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
                "postgres:///db?host=/var/run/postgresql",
                "postgres:///db?host=/var/run/postgresql&sslmode=disable",
            ),
            (
                "postgres://remote.example/db?host=/tmp",
                "postgres://remote.example/db?host=/tmp&sslmode=disable",
            ),
            (
                "postgres://127.0.0.2/db?",
                "postgres://127.0.0.2/db?sslmode=disable",
            ),
            // Multi-host: every host local.
            (
                "postgres://u:p@127.0.0.1:5432,[::1]:5433,localhost:5434/db?target_session_attrs=read-write",
                "postgres://u:p@127.0.0.1:5432,[::1]:5433,localhost:5434/db?target_session_attrs=read-write&sslmode=disable",
            ),
            (
                "postgres://u@127.0.0.1:6432/db?pgbouncer=true",
                "postgres://u@127.0.0.1:6432/db?pgbouncer=true&sslmode=disable",
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
            // Multi-host: one remote host keeps libpq's default for all.
            "postgres://u:p@127.0.0.1:5432,db.example.com:5432/db",
            "postgres://u:p@[::1]:5432,[2001:db8::1]:5432/db",
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
        let url = "postgres://app:s3cr%40t@127.0.0.1:5432,127.0.0.1:5433/db?password=other";
        let out = rewrite(url);
        // Only a parameter is appended: the credentials reach libpq unchanged.
        assert_eq!(out, format!("{url}&sslmode=disable"));
        let shown = redact_url(&out);
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(!shown.contains("other"), "{shown}");
        assert!(shown.ends_with("sslmode=disable"), "{shown}");
    }
}
