//! Input rules checked before any query, so both backends refuse the same values.

use crate::error::{Field, RepoError, RepoResult};
use serde_json::Value;

/// Longest text value accepted in a free-text column (characters).
pub const MAX_TEXT_CHARS: usize = 1_000_000;

/// Refuses NUL characters (PostgreSQL text cannot hold them) and over-long values.
pub fn text(field: Field, value: &str) -> RepoResult<()> {
    if value.contains('\0') {
        return Err(RepoError::validation(field, "contains a NUL character"));
    }
    if value.len() > MAX_TEXT_CHARS && value.chars().count() > MAX_TEXT_CHARS {
        return Err(RepoError::validation(
            field,
            format!("longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// [`text`] for an optional value.
pub fn opt_text(field: Field, value: Option<&str>) -> RepoResult<()> {
    value.map_or(Ok(()), |v| text(field, v))
}

/// Text that must hold at least one non-space character and at most `max` characters.
pub fn required_text(field: Field, value: &str, max: usize) -> RepoResult<()> {
    text(field, value)?;
    if value.trim().is_empty() {
        return Err(RepoError::validation(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(RepoError::validation(
            field,
            format!("longer than {max} characters"),
        ));
    }
    Ok(())
}

/// Longest idempotency key accepted (characters).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// An idempotency key: 1-[`MAX_IDEMPOTENCY_KEY_CHARS`] characters out of ASCII letters,
/// digits and `-_.:` (a UUID, a ULID or `job:42` fit; no whitespace, so nothing that
/// compares equal only after trimming).
pub fn idempotency_key(value: &str) -> RepoResult<()> {
    if value.is_empty() {
        return Err(RepoError::validation(
            Field::IdempotencyKey,
            "must not be empty",
        ));
    }
    if value.len() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(RepoError::validation(
            Field::IdempotencyKey,
            format!("longer than {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(RepoError::validation(
            Field::IdempotencyKey,
            "only ASCII letters, digits and -_.: are allowed",
        ));
    }
    Ok(())
}

/// 1-64 characters, no control characters, no surrounding whitespace.
pub fn username(value: &str) -> RepoResult<()> {
    required_text(Field::Username, value, 64)?;
    if value.trim() != value {
        return Err(RepoError::validation(
            Field::Username,
            "must not start or end with whitespace",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(RepoError::validation(
            Field::Username,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks an email address and returns its stored (lowercased) form.
///
/// Emails are unique case-insensitively; both backends store the lowercase form so that
/// the rule does not depend on the database's notion of case.
pub fn email(value: &str) -> RepoResult<String> {
    required_text(Field::Email, value, 254)?;
    let trimmed = value.trim();
    let (local, domain) = trimmed
        .split_once('@')
        .ok_or_else(|| RepoError::validation(Field::Email, "must contain '@'"))?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(RepoError::validation(
            Field::Email,
            "is not an email address",
        ));
    }
    Ok(trimmed.to_lowercase())
}

/// Accepts only values shaped like a PHC / modular-crypt hash (`$id$…$…`).
///
/// Plaintext passwords are refused; the message never repeats the value.
pub fn hashed_password(value: &str) -> RepoResult<()> {
    let refuse = || {
        RepoError::validation(
            Field::HashedPassword,
            "must be a PHC-format hash such as $argon2id$v=19$…; plaintext is refused",
        )
    };
    if value.len() < 20 || value.len() > 1024 || !value.starts_with('$') {
        return Err(refuse());
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refuse());
    }
    let mut parts = value[1..].split('$');
    let id = parts.next().unwrap_or_default();
    let id_ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let rest: Vec<&str> = parts.collect();
    if !id_ok || rest.len() < 2 || rest.iter().any(|p| p.is_empty()) {
        return Err(refuse());
    }
    Ok(())
}

/// A collection name: trimmed, 1-255 characters. Returns the trimmed form.
pub fn collection_name(value: &str) -> RepoResult<String> {
    let trimmed = value.trim();
    required_text(Field::Name, trimmed, 255)?;
    Ok(trimmed.to_owned())
}

/// An API key name: 1-100 characters. Returns it with surrounding whitespace removed.
pub fn api_key_name(value: &str) -> RepoResult<String> {
    let trimmed = value.trim();
    required_text(Field::Name, trimmed, 100)?;
    Ok(trimmed.to_owned())
}

/// JSON values must not hold NUL characters anywhere (PostgreSQL `jsonb` refuses `\u0000`).
pub fn json(field: Field, value: &Value) -> RepoResult<()> {
    match value {
        Value::String(s) => text(field, s),
        Value::Array(items) => items.iter().try_for_each(|v| json(field, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            text(field, k)?;
            json(field, v)
        }),
        _ => Ok(()),
    }
}

/// A JSON object (possibly empty) without NUL characters.
pub fn json_object(field: Field, value: &Value) -> RepoResult<()> {
    if !value.is_object() {
        return Err(RepoError::validation(field, "must be a JSON object"));
    }
    json(field, value)
}

/// A non-empty JSON object without NUL characters.
pub fn non_empty_json_object(field: Field, value: &Value) -> RepoResult<()> {
    json_object(field, value)?;
    if value.as_object().is_some_and(|m| m.is_empty()) {
        return Err(RepoError::validation(field, "must not be an empty object"));
    }
    Ok(())
}

/// `chunk_size > 0` and `0 <= chunk_overlap < chunk_size`.
pub fn chunking(chunk_size: i32, chunk_overlap: i32) -> RepoResult<()> {
    if chunk_size <= 0 {
        return Err(RepoError::validation(
            Field::ChunkSize,
            "must be greater than 0",
        ));
    }
    if chunk_overlap < 0 || chunk_overlap >= chunk_size {
        return Err(RepoError::validation(
            Field::ChunkOverlap,
            "must be at least 0 and less than chunk_size",
        ));
    }
    Ok(())
}

/// A non-negative counter.
pub fn non_negative(field: Field, value: i64) -> RepoResult<()> {
    if value < 0 {
        return Err(RepoError::validation(field, "must not be negative"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes() {
        assert!(
            hashed_password("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").is_ok()
        );
        assert!(
            hashed_password("$2b$12$abcdefghijklmnopqrstuuCIbL5K0u5bNqPv0sS2ZKX5bOQ0F9Xy").is_ok()
        );
        assert!(hashed_password("hunter2hunter2hunter2").is_err());
        assert!(hashed_password("$plain text with spaces$x$y").is_err());
        let err = hashed_password("correct horse battery staple").unwrap_err();
        assert!(!err.to_string().contains("horse"));
    }

    /// Each condition of the hash shape on its own, at its bounds.
    #[test]
    fn password_hash_shape_at_its_bounds() {
        let shaped = |id: &str, rest: &str| format!("${id}${rest}");
        let ok = |v: &str| hashed_password(v).is_ok();
        // Length: 20..=1024 bytes ("$x$v$" and the padding).
        for (len, accepted) in [(20, true), (19, false), (1024, true), (1025, false)] {
            let value = shaped("x", &format!("v${}", "a".repeat(len - 5)));
            assert_eq!(value.len(), len);
            assert_eq!(ok(&value), accepted, "{len} bytes");
        }
        // The identifier: 1-32 of a-z, 0-9 and '-'.
        assert!(ok(&shaped(&"a".repeat(32), "v=19$salt$hash")));
        assert!(!ok(&shaped(&"a".repeat(33), "v=19$salt$hash")));
        assert!(ok(&shaped("argon2-id9", "v=19$salt$hash")));
        for id in ["", "Argon2", "argon_2", "argon.2"] {
            assert!(!ok(&shaped(id, "v=19$salthash$hash")), "{id:?}");
        }
        // At least two non-empty parts after it, a leading '$', printable ASCII.
        assert!(!ok("$argon2id$onlyonepartafterid"));
        assert!(!ok("$argon2id$$salt$hashhashhash"));
        assert!(!ok("$argon2id$v=19$salthashhash$"));
        assert!(!ok("argon2id$v=19$salt$hashhash"));
        assert!(!ok("$argon2id$v=19$salt$hash\u{e9}h"));
    }

    #[test]
    fn text_and_required_text_bounds() {
        let max = MAX_TEXT_CHARS;
        assert!(text(Field::Content, &"a".repeat(max)).is_ok());
        assert!(text(Field::Content, &"a".repeat(max + 1)).is_err());
        // Counted in characters, not bytes.
        assert!(text(Field::Content, &"\u{e9}".repeat(max)).is_ok());
        assert!(text(Field::Content, &"\u{e9}".repeat(max + 1)).is_err());
        assert!(required_text(Field::Name, &"\u{e9}".repeat(5), 5).is_ok());
        assert!(required_text(Field::Name, &"\u{e9}".repeat(6), 5).is_err());
        assert!(required_text(Field::Name, " \t ", 5).is_err());
    }

    #[test]
    fn idempotency_keys() {
        let max = MAX_IDEMPOTENCY_KEY_CHARS;
        for good in ["job:42", "a-b_c.d", "01J9ZQ", &"k".repeat(max)] {
            assert!(idempotency_key(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a b", "k\u{e9}", "a/b", &"k".repeat(max + 1)] {
            assert!(idempotency_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunking_bounds() {
        for (size, overlap) in [(1, 0), (100, 0), (100, 99)] {
            assert!(chunking(size, overlap).is_ok(), "{size}/{overlap}");
        }
        for (size, overlap) in [(0, 0), (-1, 0), (100, -1), (100, 100), (100, 101)] {
            assert!(chunking(size, overlap).is_err(), "{size}/{overlap}");
        }
    }

    #[test]
    fn usernames() {
        assert!(username("alice").is_ok());
        assert!(username(&"u".repeat(64)).is_ok());
        for bad in ["", " alice", "alice ", "al\u{7}ice", &"u".repeat(65)] {
            assert!(username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(email(" a@b ").unwrap(), "a@b");
        for bad in ["@b", "a@", "a b@c", "a@b\u{7}c", "a\u{a0}@b"] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert_eq!(email("Alice@Example.COM").unwrap(), "alice@example.com");
        assert!(email("no-at-sign").is_err());
        assert!(email("a@b@c").is_err());
    }

    #[test]
    fn nul_is_refused() {
        assert!(text(Field::Content, "a\0b").is_err());
        assert!(json(Field::Meta, &serde_json::json!({"k": ["a\u{0}"]})).is_err());
    }
}
