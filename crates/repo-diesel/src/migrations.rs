//! What both backends' embedded migrations share over Diesel's migration API: the
//! list a build embeds, and the versions Diesel's harness returns as sorted text.

use diesel::backend::Backend;
use diesel::migration::{MigrationSource, MigrationVersion};

/// Version and name of every migration of `source`, oldest first (e.g.
/// `("20261121000001", "2026-11-21-000001_initial")`).
pub fn embedded<DB: Backend>(
    source: &impl MigrationSource<DB>,
) -> diesel::migration::Result<Vec<(String, String)>> {
    let mut embedded: Vec<(String, String)> = source
        .migrations()?
        .iter()
        .map(|m| (m.name().version().to_string(), m.name().to_string()))
        .collect();
    embedded.sort();
    Ok(embedded)
}

/// `versions` as text, oldest first.
pub fn sorted<'a>(versions: impl IntoIterator<Item = MigrationVersion<'a>>) -> Vec<String> {
    let mut out: Vec<String> = versions.into_iter().map(|v| v.to_string()).collect();
    out.sort();
    out
}

/// A row of Diesel's bookkeeping table (`__diesel_schema_migrations`), read by the
/// backends' read-only look at what is applied (`recorded_migrations`).
#[derive(diesel::QueryableByName)]
pub struct VersionRow {
    /// The migration's version.
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub version: String,
}

/// The versions of `rows`, oldest first.
pub fn recorded(rows: Vec<VersionRow>) -> Vec<String> {
    let mut out: Vec<String> = rows.into_iter().map(|r| r.version).collect();
    out.sort();
    out
}
