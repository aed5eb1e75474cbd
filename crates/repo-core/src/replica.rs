//! Read replicas: the write-position token that gives read-your-writes, and what a
//! store reports about each of its database nodes.
//!
//! A store always writes to its primary. Plain reads on the store go to the primary
//! too; code that can use a replica opts in per call site through one of two views
//! ([`Store::replica`](crate::Store::replica), [`Store::read_after`](crate::Store::read_after)):
//!
//! | view | may return | reads on | replica down or behind |
//! |---|---|---|---|
//! | the store itself | the latest committed data | the primary | — |
//! | `store.replica()` | data at most `DB_REPLICA_MAX_LAG_MS` old | a healthy replica whose lag is under the bound, round robin | the primary |
//! | `store.read_after(&position)` | every write the position covers, and anything newer | a replica that has replayed past the position | the primary |
//!
//! Writes through either view (and API-key `verify`, which records `last_used_at`)
//! go to the primary. On SQLite every view reads the one database, and
//! [`Store::write_position`](crate::Store::write_position) returns
//! [`WritePosition::ZERO`], so application code stays backend-agnostic.
//!
//! A web application takes the position after a request that wrote, carries it to
//! the user's next requests (a cookie or a header: its text form is short and holds
//! nothing secret), and reads through `read_after` with it:
//!
//! ```no_run
//! # use repo_core::*;
//! # fn demo(store: &dyn Store, id: UserId) -> RepoResult<()> {
//! store.users().record_login(id)?;
//! let token = store.write_position()?.to_string(); // e.g. "0/3000148"
//! // … a later request, maybe served by another process:
//! let position: WritePosition = token.parse()?;
//! let user = store.read_after(&position).users().get(id)?; // sees the login
//! # let _ = user; Ok(())
//! # }
//! ```

use crate::error::{Field, RepoError};
use crate::pool_watch::PoolStatus;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A position in the primary's write stream (PostgreSQL: a WAL LSN), taken after
/// writes with [`Store::write_position`](crate::Store::write_position). A read through
/// [`Store::read_after`](crate::Store::read_after) with it sees every write that had
/// committed when it was taken.
///
/// Its text form is PostgreSQL's (`16/B374D848`); it parses back with `FromStr`, and
/// a malformed text is a `Validation` error on `write_position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WritePosition(u64);

impl WritePosition {
    /// The start of the stream: every replica has replayed past it (SQLite's only
    /// position).
    pub const ZERO: WritePosition = WritePosition(0);

    /// The position as a 64-bit number (PostgreSQL's `pg_lsn` as bytes into the WAL).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// A position from its 64-bit number.
    pub fn from_u64(value: u64) -> Self {
        Self(value)
    }
}

impl fmt::Display for WritePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for WritePosition {
    type Err = RepoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            RepoError::validation(
                Field::WritePosition,
                "expected two hexadecimal numbers separated by '/' (as 16/B374D848)",
            )
        };
        let (high, low) = text.trim().split_once('/').ok_or_else(invalid)?;
        let part = |s: &str| {
            if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            u32::from_str_radix(s, 16).map_err(|_| invalid())
        };
        Ok(Self((u64::from(part(high)?) << 32) | u64::from(part(low)?)))
    }
}

impl serde::Serialize for WritePosition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WritePosition {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a node does in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Takes every write, and every read that is not routed to a replica.
    Primary,
    /// A streaming replica (hot standby) that takes opted-in reads.
    Replica,
}

impl NodeRole {
    /// `"primary"` or `"replica"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// Whether a node takes reads now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeHealth {
    /// Answering, and (for a replica) lagging less than the bound at the last check.
    Up,
    /// A replica whose replay lag was over `DB_REPLICA_MAX_LAG_MS` (or unknown) at the
    /// last check: stale-tolerant reads skip it.
    Lagging,
    /// A replica that failed; it is skipped until its back-off ends, then tried again.
    Down,
}

impl NodeHealth {
    /// `"up"`, `"lagging"` or `"down"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Lagging => "lagging",
            Self::Down => "down",
        }
    }
}

/// One node of a store, as [`Store::nodes`](crate::Store::nodes) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Primary or replica.
    pub role: NodeRole,
    /// The node's URL with its password replaced by `***` (SQLite: the database).
    pub url: String,
    /// Its pool's connection counts.
    pub pool: PoolStatus,
    /// Whether it takes reads now.
    pub health: NodeHealth,
    /// A replica's replay lag at the last check (`None`: unknown, or the primary).
    pub lag: Option<Duration>,
    /// Reads routed to this node through the replica views since the store opened
    /// (reads on the store itself are not counted).
    pub routed_reads: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_as_text() {
        for (text, value) in [
            ("0/0", 0u64),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
        ] {
            let p: WritePosition = text.parse().unwrap();
            assert_eq!(p.as_u64(), value);
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(
            "16/b374d848".parse::<WritePosition>().unwrap().as_u64(),
            0x16_B374_D848
        );
        assert!(WritePosition::from_u64(2) > WritePosition::from_u64(1));
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1/2/3",
            "G/1",
            "123456789/0",
            " 1 /2",
            "-1/0",
        ] {
            assert!(
                matches!(
                    bad.parse::<WritePosition>(),
                    Err(RepoError::Validation {
                        field: Field::WritePosition,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        let json = serde_json::to_string(&WritePosition::from_u64(0x1_0000_0002)).unwrap();
        assert_eq!(json, "\"1/2\"");
        let back: WritePosition = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_u64(), 0x1_0000_0002);
    }
}
