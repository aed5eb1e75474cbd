//! The SQL functions the store's statements call, registered on every connection
//! (the pool's customizer and standalone connections, [`crate::pool`]).

use diesel::sql_types::{Nullable, Text};
use diesel::sqlite::SqliteConnection;

#[diesel::declare_sql_function]
extern "SQL" {
    /// [`repo_core::search::score`] of a chunk's `search_tokens` (NULL scores 0) and
    /// the query's patterns joined by
    /// [`SCORE_PATTERN_SEPARATOR`](repo_core::search::SCORE_PATTERN_SEPARATOR): the
    /// score search ranks by (`crate::chunks`).
    fn search_score(tokens: Nullable<Text>, patterns: Text) -> diesel::sql_types::Double;
}

/// Registers every function of this module on `conn`.
pub(crate) fn register(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    search_score_utils::register_impl(conn, |tokens: Option<String>, patterns: String| {
        tokens.map_or(0.0, |t| repo_core::search::score_joined(&t, &patterns))
    })
}
