//! A backend-neutral description of the migrated schema, for parity checks.

use serde::Serialize;
use std::collections::BTreeMap;

/// Every application table (migration bookkeeping and FTS shadow tables excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SchemaSnapshot {
    /// Tables by name.
    pub tables: BTreeMap<String, TableSnapshot>,
}

/// One table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableSnapshot {
    /// Column name → whether it accepts NULL.
    pub columns: BTreeMap<String, bool>,
    /// Named indexes (primary keys and automatic indexes excluded).
    pub indexes: BTreeMap<String, IndexSnapshot>,
}

/// One named index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexSnapshot {
    /// Whether it enforces uniqueness.
    pub unique: bool,
    /// Indexed columns in order (expressions as written by the database).
    pub columns: Vec<String>,
    /// Whether it is partial (has a WHERE clause).
    pub partial: bool,
}
