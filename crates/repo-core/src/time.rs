//! Timestamps: microsecond precision, UTC, identical text form on SQLite.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// The timestamp type of every entity.
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to microseconds so it reads back equal on both backends.
pub fn now() -> Timestamp {
    truncate_micros(Utc::now())
}

/// Drops sub-microsecond precision (PostgreSQL keeps microseconds, chrono nanoseconds).
pub fn truncate_micros(ts: Timestamp) -> Timestamp {
    ts.trunc_subsecs(6)
}

/// The fixed-width text form used on SQLite: `2026-11-21T23:18:13.123456Z`.
///
/// Fixed width with a `Z` suffix, so text order equals time order.
pub fn to_text(ts: Timestamp) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Parses the text form written by [`to_text`], and also any RFC 3339 value or a
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` value (taken as UTC).
pub fn from_text(text: &str) -> Option<Timestamp> {
    if let Ok(ts) = DateTime::parse_from_rfc3339(text) {
        return Some(truncate_micros(ts.with_timezone(&Utc)));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|naive| truncate_micros(naive.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_order() {
        let a = now();
        let b = a + chrono::Duration::microseconds(1);
        assert_eq!(from_text(&to_text(a)), Some(a));
        assert!(to_text(a) < to_text(b));
        assert_eq!(to_text(a).len(), 27);
    }

    #[test]
    fn parses_space_separated() {
        let ts = from_text("2024-01-02 03:04:05.5").unwrap();
        assert_eq!(to_text(ts), "2024-01-02T03:04:05.500000Z");
        assert!(from_text("").is_none());
    }
}
