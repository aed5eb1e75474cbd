//! libpq URLs handed to the PostgreSQL client tools: the password taken out of the
//! URL (for the child's `PGPASSWORD`), and the database swapped. Plain string work, so
//! that multi-host URLs (`h1:p1,h2:p2`), valid for libpq but not for the `url` crate,
//! work too.

/// A libpq URL split for a child process: the URL without any password (safe on a
/// command line) and the password (for the child's `PGPASSWORD`), percent-decoded.
/// Handles multi-host URLs (`h1:p1,h2:p2`), which the `url` crate rejects.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientUrl {
    /// The URL without a password (neither in the user info nor as `password=`).
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
    /// Splits `url`.
    pub fn split(url: &str) -> Self {
        let mut out = url.to_owned();
        let mut password = None;
        if let Some(scheme_end) = out.find("://") {
            let start = scheme_end + 3;
            let authority_end = out[start..]
                .find(['/', '?', '#'])
                .map_or(out.len(), |i| start + i);
            if let Some(at) = out[start..authority_end].rfind('@') {
                if let Some(colon) = out[start..start + at].find(':') {
                    password = Some(decode_lossy(&out[start + colon + 1..start + at]));
                    out.replace_range(start + colon..start + at, "");
                }
            }
        }
        if let Some(q) = out.find('?') {
            let (head, query) = out.split_at(q + 1);
            let mut kept = Vec::new();
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some((k, v)) if k.eq_ignore_ascii_case("password") => {
                        password = Some(decode_lossy(v));
                    }
                    _ => kept.push(pair),
                }
            }
            out = if kept.is_empty() {
                head[..head.len() - 1].to_owned()
            } else {
                format!("{head}{}", kept.join("&"))
            };
        }
        ClientUrl {
            url: out,
            password: password.filter(|p| !p.is_empty()),
        }
    }

    /// The same URL naming database `name` instead (same hosts, user and options).
    pub fn with_database(&self, name: &str) -> String {
        let url = &self.url;
        let Some(scheme_end) = url.find("://") else {
            return url.clone();
        };
        let start = scheme_end + 3;
        let authority_end = url[start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| start + i);
        let rest = &url[authority_end..];
        let tail = rest.find(['?', '#']).map_or("", |i| &rest[i..]);
        format!("{}/{name}{tail}", &url[..authority_end])
    }
}

/// The password of `url`'s user info as written (percent-encoded), if any.
pub fn raw_password(url: &str) -> Option<String> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')?;
    let colon = url[start..start + at].find(':')?;
    Some(url[start + colon + 1..start + at].to_owned()).filter(|p| !p.is_empty())
}

fn decode_lossy(text: &str) -> String {
    percent_decode(text).unwrap_or_else(|_| text.to_owned())
}

/// `%XX` escapes decoded (a `%` not followed by two hex digits is kept as is).
pub fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_url_moves_every_password_out_of_the_url() {
        let c = ClientUrl::split("postgres://app:p%40ss@h1:5432,h2:5433/db?sslmode=require");
        assert_eq!(c.url, "postgres://app@h1:5432,h2:5433/db?sslmode=require");
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        let c = ClientUrl::split("postgresql://h/db?password=x%26y&application_name=a");
        assert_eq!(c.url, "postgresql://h/db?application_name=a");
        assert_eq!(c.password.as_deref(), Some("x&y"));
        let c = ClientUrl::split("postgres://h/db?password=z");
        assert_eq!(c.url, "postgres://h/db");
        let c = ClientUrl::split("postgres://app@h/db");
        assert_eq!(c.url, "postgres://app@h/db");
        assert_eq!(c.password, None);
        assert!(!format!("{:?}", ClientUrl::split("postgres://a:secret@h/d")).contains("secret"));
    }

    #[test]
    fn with_database_keeps_hosts_user_and_options() {
        let c = ClientUrl::split("postgres://app:pw@h1:1,h2:2/orig?sslmode=require");
        assert_eq!(
            c.with_database("scratch"),
            "postgres://app@h1:1,h2:2/scratch?sslmode=require"
        );
        let c = ClientUrl::split("postgres://h");
        assert_eq!(c.with_database("s"), "postgres://h/s");
    }

    #[test]
    fn raw_password_is_the_encoded_form() {
        assert_eq!(
            raw_password("postgres://u:p%40ss@h1,h2/db").as_deref(),
            Some("p%40ss")
        );
        assert_eq!(raw_password("postgres://u@h/db"), None);
    }
}
