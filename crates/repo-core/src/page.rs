//! Pagination.

use crate::error::{Field, RepoError, RepoResult};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Which slice of a listing to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageRequest {
    /// Rows to skip.
    pub offset: u64,
    /// Maximum rows to return (clamped to [`PageRequest::MAX_LIMIT`]).
    pub limit: u32,
}

impl PageRequest {
    /// Largest page a listing returns.
    pub const MAX_LIMIT: u32 = 1000;

    /// A page request; `limit` is clamped to `1..=MAX_LIMIT`.
    pub fn new(offset: u64, limit: u32) -> Self {
        Self {
            offset,
            limit: limit.clamp(1, Self::MAX_LIMIT),
        }
    }

    /// The first page of `limit` rows.
    pub fn first(limit: u32) -> Self {
        Self::new(0, limit)
    }

    /// `limit` as an `i64` for SQL.
    pub fn limit_i64(&self) -> i64 {
        i64::from(self.limit.clamp(1, Self::MAX_LIMIT))
    }

    /// `offset` as an `i64` for SQL (saturating).
    pub fn offset_i64(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }

    /// This page of a listing made of two parts in a row, the first holding
    /// `first_len` rows, as the slice of each part it covers (`None`: none of that
    /// part). A backend reads each part in order from its own index and concatenates
    /// the two slices, instead of sorting the whole listing (the documents listing:
    /// failed documents first, then the others, each newest first).
    pub fn split(&self, first_len: u64) -> (Option<PageRequest>, Option<PageRequest>) {
        let limit = u64::from(self.limit.clamp(1, Self::MAX_LIMIT));
        let from_first = first_len.saturating_sub(self.offset).min(limit);
        let first = (from_first > 0).then_some(PageRequest {
            offset: self.offset,
            limit: u32::try_from(from_first).unwrap_or(Self::MAX_LIMIT),
        });
        let rest = limit - from_first;
        let second = (rest > 0).then_some(PageRequest {
            offset: self.offset.saturating_sub(first_len),
            limit: u32::try_from(rest).unwrap_or(Self::MAX_LIMIT),
        });
        (first, second)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::new(0, 50)
    }
}

/// One page of a listing and the total number of matching rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// How many rows match in all pages.
    pub total: u64,
}

/// A position in a newest-first listing: the `(created_at, id)` of the last row a
/// page returned. The next page holds the rows strictly after it in the order
/// `created_at DESC, id DESC`, so rows inserted between two fetches (newer, hence
/// before the position) neither shift the pages nor repeat a row.
///
/// Opaque to callers: [`Cursor::encode`] gives a short URL-safe string, and
/// [`Cursor::decode`] (or [`FromStr`]) reads it back; a string it
/// did not write is `Validation { field: Field::Cursor }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    created_at: Timestamp,
    id: CursorKey,
}

/// The id half of a [`Cursor`]: listings keyed by integer ids or by UUIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CursorKey {
    Int(i64),
    Uuid(Uuid),
}

impl Cursor {
    /// The position of a row keyed by an integer id (users, operations).
    pub fn after_int(created_at: Timestamp, id: i64) -> Self {
        Self {
            created_at,
            id: CursorKey::Int(id),
        }
    }

    /// The position of a row keyed by a UUID (collections, documents).
    pub fn after_uuid(created_at: Timestamp, id: Uuid) -> Self {
        Self {
            created_at,
            id: CursorKey::Uuid(id),
        }
    }

    /// `created_at` of the row the cursor points after.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The integer id, or `Validation { field: Field::Cursor }` when the cursor came from a
    /// listing keyed by UUIDs.
    pub fn int_id(&self) -> RepoResult<i64> {
        match self.id {
            CursorKey::Int(id) => Ok(id),
            CursorKey::Uuid(_) => Err(malformed("belongs to another listing")),
        }
    }

    /// The UUID id, or `Validation { field: Field::Cursor }` when the cursor came from a
    /// listing keyed by integers.
    pub fn uuid_id(&self) -> RepoResult<Uuid> {
        match self.id {
            CursorKey::Uuid(id) => Ok(id),
            CursorKey::Int(_) => Err(malformed("belongs to another listing")),
        }
    }

    /// The short string form (at most 48 URL-safe characters).
    pub fn encode(&self) -> String {
        // As u64, so that a time before 1970 keeps a fixed, parseable form.
        let micros = self.created_at.timestamp_micros() as u64;
        match self.id {
            CursorKey::Int(id) => format!("i{micros:x}.{:x}", id as u64),
            CursorKey::Uuid(id) => format!("u{micros:x}.{}", id.simple()),
        }
    }

    /// Reads the form [`encode`](Self::encode) writes; anything else is
    /// `Validation { field: Field::Cursor }`.
    pub fn decode(text: &str) -> RepoResult<Self> {
        let bad = || malformed("is not a cursor this library wrote");
        let (kind, rest) = text.split_at_checked(1).ok_or_else(bad)?;
        let (micros, id) = rest.split_once('.').ok_or_else(bad)?;
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(micros) || !hex(id) {
            return Err(bad());
        }
        let micros = u64::from_str_radix(micros, 16).map_err(|_| bad())? as i64;
        let created_at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        let id = match kind {
            "i" => CursorKey::Int(u64::from_str_radix(id, 16).map_err(|_| bad())? as i64),
            "u" if id.len() == 32 => CursorKey::Uuid(Uuid::try_parse(id).map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        Ok(Self { created_at, id })
    }
}

fn malformed(why: &str) -> RepoError {
    RepoError::validation(Field::Cursor, format!("the cursor {why}"))
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl FromStr for Cursor {
    type Err = RepoError;

    fn from_str(s: &str) -> RepoResult<Self> {
        Self::decode(s)
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// Which slice of a newest-first listing to return, by position instead of offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorRequest {
    /// Start after this position (`None`: the newest rows).
    pub after: Option<Cursor>,
    /// Maximum rows to return (clamped to `1..=`[`PageRequest::MAX_LIMIT`]).
    pub limit: u32,
}

impl CursorRequest {
    /// The first (newest) page of `limit` rows.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// The page of `limit` rows after `cursor`.
    pub fn after(cursor: Cursor, limit: u32) -> Self {
        Self {
            after: Some(cursor),
            limit,
        }
    }

    /// The clamped limit as an `i64` for SQL.
    pub fn limit_i64(&self) -> i64 {
        i64::from(self.limit.clamp(1, PageRequest::MAX_LIMIT))
    }

    /// `limit + 1`: one row more than the page, to learn whether a next page exists.
    pub fn fetch_i64(&self) -> i64 {
        self.limit_i64() + 1
    }

    /// Turns the `fetch_i64()` rows a backend read into the page: at most `limit` items,
    /// and a cursor when more rows follow. `key` gives a row's position.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> Cursor) -> CursorPage<T> {
        let limit = usize::try_from(self.limit_i64()).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more { rows.last().map(key) } else { None };
        CursorPage { items: rows, next }
    }
}

impl Default for CursorRequest {
    fn default() -> Self {
        Self::first(50)
    }
}

/// One page of a cursor listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorPage<T> {
    /// The rows of this page, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_its_string() {
        let at = crate::time::now();
        for c in [
            Cursor::after_int(at, 42),
            Cursor::after_int(chrono::DateTime::from_timestamp_micros(-1).unwrap(), -7),
            Cursor::after_uuid(at, Uuid::new_v4()),
        ] {
            let text = c.encode();
            assert!(text.len() <= 48, "{text}");
            assert_eq!(Cursor::decode(&text).unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), c);
        }
    }

    #[test]
    fn split_covers_the_page_across_two_parts() {
        let p = |offset, limit| PageRequest { offset, limit };
        assert_eq!(p(0, 10).split(3), (Some(p(0, 3)), Some(p(0, 7))));
        assert_eq!(p(2, 10).split(3), (Some(p(2, 1)), Some(p(0, 9))));
        assert_eq!(p(5, 10).split(3), (None, Some(p(2, 10))));
        assert_eq!(p(0, 10).split(50), (Some(p(0, 10)), None));
        assert_eq!(p(45, 10).split(50), (Some(p(45, 5)), Some(p(0, 5))));
        assert_eq!(p(0, 10).split(0), (None, Some(p(0, 10))));
    }

    #[test]
    fn malformed_cursor_is_validation() {
        for bad in [
            "", "x", "i", "i12", "i.1", "i1.", "q1.1", "u1.12", "i1.zz", "é1.1",
        ] {
            match Cursor::decode(bad) {
                Err(RepoError::Validation {
                    field: Field::Cursor,
                    ..
                }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let uuid = Cursor::after_uuid(crate::time::now(), Uuid::new_v4());
        assert!(uuid.int_id().is_err());
    }
}
