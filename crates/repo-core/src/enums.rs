//! Status and kind enums, spelled the same in Rust and in both databases.

use crate::names::Field;
use std::fmt;

/// Defines a fieldless enum whose variants have a stable lowercase name: `ALL`,
/// `as_str`, `from_name`, `Display` and `Serialize` (all the name). Attributes given
/// before the name (docs, more derives, `#[non_exhaustive]`) go onto the enum.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable lowercase name (for a status or kind: its spelling in both
            /// databases).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value named `name` (the inverse of `as_str`).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A [`named_enum!`] stored in a column: also `Deserialize`, and `FromStr` whose
/// error is an [`UnknownValue`] naming `$field` (a `Validation` error as a
/// `RepoError`).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:ident { $($body:tt)+ }) => {
        named_enum!($(#[$meta])* #[derive(serde::Deserialize)] $name { $($body)+ });

        impl std::str::FromStr for $name {
            type Err = $crate::enums::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_name(s).ok_or_else(|| $crate::enums::UnknownValue {
                    field: $crate::names::Field::$field,
                    value: s.to_owned(),
                })
            }
        }
    };
}

/// A name that is none of a stored enum's values (`FromStr`); converts into
/// `RepoError::Validation` naming [`field`](Self::field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// The field the value was given for.
    pub field: Field,
    /// The value as given.
    pub value: String,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: unknown value {:?}", self.field, self.value)
    }
}

impl std::error::Error for UnknownValue {}

string_enum!(
    /// Vector quantization of a collection.
    Quantization, Quantization {
        /// 16-bit floats (default).
        Float16 => "float16",
        /// 32-bit floats.
        Float32 => "float32",
        /// 8-bit integers.
        Int8 => "int8",
    }
);

string_enum!(
    /// Lifecycle of a collection.
    CollectionStatus, Status {
        /// Created, nothing indexed yet.
        Pending => "pending",
        /// An operation is working on it.
        Processing => "processing",
        /// Usable.
        Ready => "ready",
        /// The last operation failed.
        Error => "error",
    }
);

impl CollectionStatus {
    /// Whether `self → next` is an allowed transition.
    pub fn can_transition_to(self, next: CollectionStatus) -> bool {
        use CollectionStatus::*;
        matches!(
            (self, next),
            (Pending, Processing)
                | (Processing, Ready)
                | (Processing, Error)
                | (Ready, Processing)
                | (Error, Processing)
        )
    }

    /// The states from which `next` may be entered.
    pub fn predecessors(next: CollectionStatus) -> Vec<CollectionStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(|s| s.can_transition_to(next))
            .collect()
    }
}

string_enum!(
    /// How a collection is kept in sync with its sources.
    SyncMode, SyncMode {
        /// Indexed once.
        OneTime => "one_time",
        /// Re-synced every `sync_interval_minutes`.
        Continuous => "continuous",
    }
);

string_enum!(
    /// Outcome of the last sync run of a collection.
    SyncRunStatus, SyncLastRunStatus {
        /// Still running.
        Running => "running",
        /// Finished without errors.
        Success => "success",
        /// Finished with an error.
        Failed => "failed",
        /// Finished, some sources failed.
        Partial => "partial",
    }
);

string_enum!(
    /// Level of a collection grant; ordered `Read < Write < Admin`.
    AccessLevel, Permission {
        /// May read.
        Read => "read",
        /// May read and write.
        Write => "write",
        /// May read, write, share and delete.
        Admin => "admin",
    }
);

impl AccessLevel {
    fn rank(self) -> u8 {
        match self {
            AccessLevel::Read => 1,
            AccessLevel::Write => 2,
            AccessLevel::Admin => 3,
        }
    }

    /// Whether holding `self` allows an action that needs `needed`.
    pub fn allows(self, needed: AccessLevel) -> bool {
        self.rank() >= needed.rank()
    }
}

impl PartialOrd for AccessLevel {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AccessLevel {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

string_enum!(
    /// What an operation does.
    OperationKind, Kind {
        /// First indexing of a collection.
        Index => "index",
        /// Add sources.
        Append => "append",
        /// Rebuild the index.
        Reindex => "reindex",
        /// Remove a source.
        RemoveSource => "remove_source",
        /// Delete the collection's data.
        Delete => "delete",
        /// Build a 2-D projection.
        ProjectionBuild => "projection_build",
        /// Retry failed documents.
        RetryDocuments => "retry_documents",
        /// Run a benchmark.
        Benchmark => "benchmark",
    }
);

string_enum!(
    /// Lifecycle of an operation. Its state machine (allowed transitions, terminal and
    /// active states, what a transition writes) is in [`crate::operation`], next to the
    /// operation and its repository trait.
    OperationStatus, Status {
        /// Created, not started.
        Pending => "pending",
        /// Running.
        Processing => "processing",
        /// Finished successfully (terminal).
        Completed => "completed",
        /// Finished with an error (terminal).
        Failed => "failed",
        /// Cancelled (terminal).
        Cancelled => "cancelled",
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn an_unknown_value_names_its_field_and_the_value() {
        let e = OperationStatus::from_str("done").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("unknown value \"done\""), "{text}");
        assert!(text.starts_with(e.field.as_str()), "{text}");
    }

    #[test]
    fn round_trip_spelling() {
        for k in OperationKind::ALL {
            assert_eq!(OperationKind::from_str(k.as_str()).unwrap(), *k);
        }
        assert!(OperationStatus::from_str("done").is_err());
    }

    #[test]
    fn access_order() {
        use AccessLevel::*;
        // Every pair: `allows` is exactly "at least as high".
        for (i, held) in AccessLevel::ALL.iter().enumerate() {
            for (j, needed) in AccessLevel::ALL.iter().enumerate() {
                assert_eq!(held.allows(*needed), i >= j, "{held} allows {needed}");
                assert_eq!(held.cmp(needed), i.cmp(&j), "{held} cmp {needed}");
            }
        }
        // The operators and Option's order (None lowest) that the access rule relies on.
        assert!(Read < Write && Write < Admin && Admin > Read);
        assert_eq!(Some(Write).min(Some(Admin)), Some(Write));
        assert_eq!(Some(Write).max(None), Some(Write));
    }

    #[test]
    fn collection_machine() {
        use CollectionStatus::*;
        let predecessors = CollectionStatus::predecessors;
        assert!(predecessors(Pending).is_empty());
        assert_eq!(predecessors(Processing), vec![Pending, Ready, Error]);
        assert_eq!(predecessors(Ready), vec![Processing]);
        assert_eq!(predecessors(Error), vec![Processing]);
        assert!(!Ready.can_transition_to(Pending));
    }
}
