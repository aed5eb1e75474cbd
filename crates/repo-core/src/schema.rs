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

/// The check a backend runs when it opens with migrations turned off
/// (`DB_RUN_MIGRATIONS=false`): every embedded migration (`embedded`: version and
/// name, e.g. `("20261121000001", "2026-11-21-000001_initial")`) must be recorded as
/// applied (`applied`: versions). Otherwise a `Config` error lists the missing
/// migrations by name and says how to apply them, so that the first repository call does not
/// fail with `relation "users" does not exist`.
pub fn require_migrated(
    backend: crate::BackendKind,
    embedded: &[(String, String)],
    applied: &[String],
) -> crate::RepoResult<()> {
    let mut missing: Vec<&str> = embedded
        .iter()
        .filter(|(version, _)| !applied.contains(version))
        .map(|(_, name)| name.as_str())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    Err(crate::RepoError::config(format!(
        "the {backend} database lacks {} of {} migrations ({}) and DB_RUN_MIGRATIONS \
         is false: run `repoctl migrate up --database-url …` or set \
         DB_RUN_MIGRATIONS=true",
        missing.len(),
        embedded.len(),
        missing.join(", "),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackendKind;

    #[test]
    fn missing_migrations_are_listed() {
        let embedded: Vec<(String, String)> =
            (1..=3).map(|n| (n.to_string(), format!("{n}_m"))).collect();
        let all: Vec<String> = embedded.iter().map(|(v, _)| v.clone()).collect();
        assert!(require_migrated(BackendKind::Sqlite, &embedded, &all).is_ok());
        let err = require_migrated(BackendKind::Postgres, &embedded, &["1".to_owned()])
            .expect_err("behind");
        let text = err.to_string();
        assert!(
            text.contains("lacks 2 of 3 migrations (2_m, 3_m)"),
            "{text}"
        );
        assert!(text.contains("DB_RUN_MIGRATIONS"), "{text}");
    }
}
