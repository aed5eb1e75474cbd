//! Pagination.

use serde::{Deserialize, Serialize};

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
