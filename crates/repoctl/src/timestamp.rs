//! Timestamps in the one canonical text form both backends agree on
//! (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC, microseconds), and the lenient parser that
//! recognises the other spellings a value with one clear meaning may have.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use repo_core::time::parse_canonical;

/// How a timestamp text relates to the canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Already canonical.
    Canonical,
    /// The same instant written differently (space for `T`, fewer fraction digits,
    /// `+00:00` for `Z`, …): converted to the canonical text.
    Reformatted(String),
    /// A non-UTC offset: the same instant, converted to UTC.
    Offset(String),
    /// No offset at all: taken as UTC, which is how the application itself reads it.
    NoOffset(String),
}

/// Formats a UTC instant canonically.
pub fn format(ts: DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u32, |acc, b| {
        acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

/// Whether `text` is exactly canonical (fixed width, valid date and time, year 1–9999):
/// what [`repo_core::time::parse_canonical`] reads, without year 0.
pub fn is_canonical(text: &str) -> bool {
    parse_canonical(text).is_some_and(|t| t.year() >= 1)
}

/// Parses `text`: `Ok` with how it relates to the canonical form, or `Err` with the
/// reason it has no single clear meaning.
pub fn parse(text: &str) -> Result<Parsed, String> {
    if is_canonical(text) {
        return Ok(Parsed::Canonical);
    }
    if text.is_empty() {
        return Err("empty string in a timestamp column".into());
    }
    if text.trim().is_empty() {
        return Err("blank string in a timestamp column".into());
    }
    let b = text.as_bytes();
    // YYYY-MM-DD
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' {
        return Err(format!("unparseable timestamp {}", preview(text)));
    }
    let bad = || format!("unparseable timestamp {}", preview(text));
    let year = digits(&b[0..4]).ok_or_else(bad)?;
    let month = digits(&b[5..7]).ok_or_else(bad)?;
    let day = digits(&b[8..10]).ok_or_else(bad)?;
    if !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let hour = digits(&b[11..13]).ok_or_else(bad)?;
    let minute = digits(&b[14..16]).ok_or_else(bad)?;
    let second = digits(&b[17..19]).ok_or_else(bad)?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)
        .filter(|_| year >= 1)
        .ok_or_else(|| format!("invalid date in timestamp {}", preview(text)))?;
    let mut rest = &b[19..];
    let mut micros = 0u32;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(bad());
        }
        let (fdigits, after) = frac.split_at(n);
        if n > 6 && fdigits[6..].iter().any(|&c| c != b'0') {
            return Err(format!(
                "timestamp {} has sub-microsecond precision that would be lost",
                preview(text)
            ));
        }
        let mut us = [b'0'; 6];
        for (i, c) in fdigits.iter().take(6).enumerate() {
            us[i] = *c;
        }
        micros = digits(&us).ok_or_else(bad)?;
        rest = after;
    }
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)
        .ok_or_else(|| format!("invalid time of day in timestamp {}", preview(text)))?;
    let naive = NaiveDateTime::new(date, time);
    let (utc, kind) = match rest {
        [] => (naive.and_utc(), 'n'),
        [b'Z'] | [b'z'] => (naive.and_utc(), 'r'),
        [sign @ (b'+' | b'-'), off @ ..] => {
            let (h, m) = match off {
                [h1, h2] => (digits(&[*h1, *h2]), Some(0)),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2]), digits(&[*m1, *m2]))
                }
                _ => (None, None),
            };
            let (Some(h), Some(m)) = (h, m) else {
                return Err(bad());
            };
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let secs = (h * 3600 + m * 60) as i32;
            let secs = if *sign == b'-' { -secs } else { secs };
            let offset = FixedOffset::east_opt(secs).ok_or_else(bad)?;
            let local = offset
                .from_local_datetime(&naive)
                .single()
                .ok_or_else(bad)?;
            (local.with_timezone(&Utc), if secs == 0 { 'r' } else { 'o' })
        }
        _ => return Err(bad()),
    };
    if !(1..=9999).contains(&utc.year()) {
        return Err(format!("timestamp {} is out of range", preview(text)));
    }
    let canonical = format(utc);
    Ok(match kind {
        'n' => Parsed::NoOffset(canonical),
        'o' => Parsed::Offset(canonical),
        _ => Parsed::Reformatted(canonical),
    })
}

/// A short, quoted, escaped rendering of a value for messages.
pub fn preview(text: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    format!("{out:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_quoted_and_cut_after_60_characters() {
        assert_eq!(preview("a\"b"), r#""a\"b""#);
        assert_eq!(preview(&"é".repeat(60)), format!("\"{}\"", "é".repeat(60)));
        assert_eq!(preview(&"é".repeat(61)), format!("\"{}…\"", "é".repeat(60)));
    }

    #[test]
    fn canonical_is_recognised() {
        assert!(is_canonical("2026-11-21T23:18:13.123456Z"));
        assert!(!is_canonical("2026-11-21 23:18:13.123456Z"));
        assert!(!is_canonical("2026-02-30T23:18:13.123456Z"));
        assert_eq!(parse("2026-11-21T23:18:13.123456Z"), Ok(Parsed::Canonical));
    }

    #[test]
    fn one_meaning_is_converted() {
        let c = |s: &str| s == "2024-01-02T03:04:05.500000Z";
        match parse("2024-01-02 03:04:05.5Z").unwrap() {
            Parsed::Reformatted(s) => assert!(c(&s)),
            other => panic!("{other:?}"),
        }
        match parse("2024-01-02T03:04:05.500+00:00").unwrap() {
            Parsed::Reformatted(s) => assert!(c(&s)),
            other => panic!("{other:?}"),
        }
        match parse("2024-01-02T05:04:05.5+02:00").unwrap() {
            Parsed::Offset(s) => assert!(c(&s)),
            other => panic!("{other:?}"),
        }
        for offset in [
            "2024-01-02T05:04:05.5+02",
            "2024-01-02T05:04:05.5+0200",
            "2024-01-02T08:34:05.5+05:30",
            "2024-01-02T03:03:05.5-00:01",
            "2024-01-03T03:03:05.5+23:59",
            "2024-01-01T04:04:05.5-23:00",
        ] {
            match parse(offset).unwrap() {
                Parsed::Offset(s) => assert!(c(&s), "{offset}"),
                other => panic!("{offset}: {other:?}"),
            }
        }
        match parse("2024-01-02 03:04:05.5").unwrap() {
            Parsed::NoOffset(s) => assert!(c(&s)),
            other => panic!("{other:?}"),
        }
        match parse("2024-01-02 03:04:05").unwrap() {
            Parsed::NoOffset(s) => assert_eq!(s, "2024-01-02T03:04:05.000000Z"),
            other => panic!("{other:?}"),
        }
        match parse("2024-01-02T03:04:05.123456000Z").unwrap() {
            Parsed::Reformatted(s) => assert_eq!(s, "2024-01-02T03:04:05.123456Z"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            " ",
            "yesterday",
            "2024-01-02",
            "2024-13-02 03:04:05",
            "2024-01-02 25:04:05",
            "2024-01-02T03:04:05.1234567Z",
            "2024-01-02T03:04:05+2",
            "1700000000",
            "0000-01-01T00:00:00Z",
            "2024-01-02T03:04:05+24:00",
            "2024-01-02T03:04:05+00:60",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    /// One character out of place, everything else valid: each separator and each
    /// digit field is checked on its own (a check joined with the wrong `&&`/`||`
    /// would let one of these through).
    #[test]
    fn one_misplaced_character_is_refused() {
        assert!(
            parse("2024-01-02t03:04:05Z").is_ok(),
            "a lowercase t separates too"
        );
        for bad in [
            "2024x01-02 03:04:05",
            "2024-01x02 03:04:05",
            "2024-01-02x03:04:05",
            "2024-01-02 03x04:05",
            "2024-01-02 03:04x05",
            "202a-01-02 03:04:05",
            "2024-0a-02 03:04:05",
            "2024-01-02 03:04:0a",
            "2024-01-02 03:04:05+0a",
        ] {
            let refused = parse(bad).expect_err(bad);
            assert!(
                refused.starts_with("unparseable timestamp"),
                "{bad:?}: {refused}"
            );
        }
    }
}
