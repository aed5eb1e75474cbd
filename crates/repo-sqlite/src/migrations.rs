//! Embedded migrations (`migrations/sqlite`) and the schema snapshot used for parity
//! checks with PostgreSQL: the SQLite store's [`SchemaAdmin`].

use crate::chunks;
use crate::connection::write_tx;
use crate::error::{map_diesel_error, map_migration_error};
use crate::store::SqliteStore;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use repo_core::{
    normalize_sql_expression, normalized_check_terms, IndexSnapshot, RepoResult, SchemaAdmin,
    SchemaSnapshot, TableSnapshot,
};

/// The SQLite migrations, embedded at build time.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Version and name of every embedded SQLite migration, oldest first (e.g.
/// `("20261121000001", "2026-11-21-000001_initial")`).
pub fn embedded_migrations() -> RepoResult<Vec<(String, String)>> {
    repo_diesel::migrations::embedded::<diesel::sqlite::Sqlite>(&MIGRATIONS)
        .map_err(map_migration_error)
}

/// Versions recorded as applied in Diesel's bookkeeping table, oldest first; none
/// when the table does not exist. Read-only: unlike Diesel's harness it never creates
/// the table (for checks before migrating, and tools reading a source database).
pub fn recorded_migrations(conn: &mut SqliteConnection) -> RepoResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let tables = diesel::sql_query(
        "SELECT count(*) AS n FROM sqlite_master \
         WHERE type = 'table' AND name = '__diesel_schema_migrations'",
    )
    .get_result::<Count>(conn)
    .map_err(map_diesel_error)?;
    if tables.n == 0 {
        return Ok(Vec::new());
    }
    diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load(conn)
        .map(repo_diesel::migrations::recorded)
        .map_err(map_diesel_error)
}

impl SqliteStore {
    /// Computes `chunks.search_tokens` (in Rust, [`repo_core::search::index_text`])
    /// for every chunk where it is NULL, in short batches; the FTS5 triggers index
    /// them. Idempotent; returns the number of rows filled.
    pub fn backfill_search_tokens(&self) -> RepoResult<u64> {
        let mut conn = self.source().checkout()?;
        chunks::backfill_search_tokens(&mut conn)
    }

    /// With migrations turned off: `Config` unless every embedded migration is
    /// applied ([`repo_core::schema::require_migrated`]). Read-only: unlike Diesel's
    /// harness it does not create the bookkeeping table.
    pub(crate) fn require_migrated(&self) -> RepoResult<()> {
        let embedded = embedded_migrations()?;
        let mut conn = self.source().checkout()?;
        let applied = recorded_migrations(&mut conn)?;
        repo_core::schema::require_migrated(repo_core::BackendKind::Sqlite, &embedded, &applied)
    }
}

/// Migrations run in `BEGIN IMMEDIATE` transactions (concurrent callers on one file
/// serialise); reads need no transaction.
impl SchemaAdmin for SqliteStore {
    /// Applies the pending migrations in one transaction, then fills missing search
    /// tokens ([`SqliteStore::backfill_search_tokens`]).
    fn run_pending_migrations(&self) -> RepoResult<Vec<String>> {
        let mut conn = self.source().checkout()?;
        let applied = write_tx(&mut conn, |c| {
            let applied = c
                .run_pending_migrations(MIGRATIONS)
                .map_err(map_migration_error)?;
            Ok(applied.iter().map(ToString::to_string).collect())
        })?;
        chunks::backfill_search_tokens(&mut conn)?;
        Ok(applied)
    }

    fn revert_last_migration(&self) -> RepoResult<String> {
        let mut conn = self.source().checkout()?;
        write_tx(&mut conn, |c| {
            c.revert_last_migration(MIGRATIONS)
                .map(|v| v.to_string())
                .map_err(map_migration_error)
        })
    }

    fn revert_all_migrations(&self) -> RepoResult<Vec<String>> {
        let mut conn = self.source().checkout()?;
        write_tx(&mut conn, |c| {
            let reverted = c
                .revert_all_migrations(MIGRATIONS)
                .map_err(map_migration_error)?;
            Ok(reverted.iter().map(ToString::to_string).collect())
        })
    }

    fn applied_migrations(&self) -> RepoResult<Vec<String>> {
        let mut conn = self.source().checkout()?;
        let applied = conn.applied_migrations().map_err(map_migration_error)?;
        Ok(repo_diesel::migrations::sorted(applied))
    }

    fn pending_migrations(&self) -> RepoResult<Vec<String>> {
        let mut conn = self.source().checkout()?;
        let pending = conn
            .pending_migrations(MIGRATIONS)
            .map_err(map_migration_error)?;
        Ok(repo_diesel::migrations::sorted(
            pending.iter().map(|m| m.name().version()),
        ))
    }

    /// Excludes SQLite's own tables, Diesel's migration table, virtual tables and
    /// their shadow tables, primary keys and automatic (constraint) indexes. An
    /// `INTEGER PRIMARY KEY` column is reported as not nullable (it is the rowid,
    /// although `PRAGMA table_info` says `notnull = 0`); an expression in an index
    /// is reported as `"<expr>"`.
    fn schema_snapshot(&self) -> RepoResult<SchemaSnapshot> {
        let mut conn = self.source().checkout()?;
        snapshot(&mut conn)
    }
}

#[derive(QueryableByName)]
struct NameSqlRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    sql: String,
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    col_type: String,
    #[diesel(sql_type = Integer)]
    notnull: i32,
    #[diesel(sql_type = Integer)]
    pk: i32,
}

#[derive(QueryableByName)]
struct IndexRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    is_unique: i32,
    #[diesel(sql_type = Integer)]
    partial: i32,
    #[diesel(sql_type = Text)]
    sql: String,
}

#[derive(QueryableByName)]
struct IndexColumnRow {
    #[diesel(sql_type = BigInt)]
    cid: i64,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
}

fn snapshot(conn: &mut SqliteConnection) -> RepoResult<SchemaSnapshot> {
    let tables: Vec<NameSqlRow> = diesel::sql_query(
        "SELECT t.name AS name, COALESCE(t.sql, '') AS sql FROM sqlite_master t \
         WHERE t.type = 'table' \
           AND t.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
           AND t.name <> '__diesel_schema_migrations' \
           AND COALESCE(t.sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' \
           AND NOT EXISTS (SELECT 1 FROM sqlite_master v \
                WHERE v.type = 'table' AND v.sql LIKE 'CREATE VIRTUAL TABLE%' \
                  AND t.name LIKE v.name || '\\_%' ESCAPE '\\') \
         ORDER BY t.name",
    )
    .load(conn)
    .map_err(map_diesel_error)?;

    let mut snapshot = SchemaSnapshot::default();
    for table in tables {
        let mut out = TableSnapshot::default();
        let columns: Vec<ColumnRow> = diesel::sql_query(
            "SELECT name, type AS col_type, \"notnull\", pk FROM pragma_table_info(?)",
        )
        .bind::<Text, _>(&table.name)
        .load(conn)
        .map_err(map_diesel_error)?;
        let pk_columns = columns.iter().filter(|c| c.pk > 0).count();
        for col in &columns {
            let rowid_alias =
                col.pk > 0 && pk_columns == 1 && col.col_type.eq_ignore_ascii_case("INTEGER");
            let nullable = col.notnull == 0 && !rowid_alias;
            out.columns.insert(col.name.clone(), nullable);
        }

        for clause in check_clauses(&table.sql) {
            out.checks.extend(normalized_check_terms(clause));
        }
        let indexes: Vec<IndexRow> = diesel::sql_query(
            "SELECT l.name, l.\"unique\" AS is_unique, l.partial, COALESCE(m.sql, '') AS sql \
             FROM pragma_index_list(?) l JOIN sqlite_master m ON m.name = l.name \
             WHERE l.origin = 'c'",
        )
        .bind::<Text, _>(&table.name)
        .load(conn)
        .map_err(map_diesel_error)?;
        for index in indexes {
            let cols: Vec<IndexColumnRow> =
                diesel::sql_query("SELECT cid, name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind::<Text, _>(&index.name)
                    .load(conn)
                    .map_err(map_diesel_error)?;
            let columns = cols
                .into_iter()
                .map(|c| match c.name {
                    Some(name) if c.cid >= 0 => name,
                    _ => "<expr>".to_owned(),
                })
                .collect();
            out.indexes.insert(
                index.name,
                IndexSnapshot {
                    unique: index.is_unique != 0,
                    columns,
                    partial: index.partial != 0,
                    predicate: where_clause(&index.sql).map(normalize_sql_expression),
                },
            );
        }
        snapshot.tables.insert(table.name, out);
    }
    Ok(snapshot)
}

/// Byte ranges of `sql` outside string literals, quoted identifiers and comments, with
/// the parenthesis depth at their start: the scanner the two extractors below share.
fn scan_code(sql: &str, mut visit: impl FnMut(usize, i32) -> bool) {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ => {}
        }
        if !visit(i, depth) {
            return;
        }
        i += 1;
    }
}

/// Whether the keyword `word` (ASCII, uppercase) starts at byte `i` of `sql` as a word.
fn keyword_at(sql: &str, i: usize, word: &str) -> bool {
    let b = sql.as_bytes();
    let end = i + word.len();
    end <= b.len()
        && sql.is_char_boundary(i)
        && sql.is_char_boundary(end)
        && sql[i..end].eq_ignore_ascii_case(word)
        && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        && b.get(end)
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
}

/// The text inside every `CHECK (…)` of a `CREATE TABLE` statement.
fn check_clauses(sql: &str) -> Vec<&str> {
    let mut starts = Vec::new();
    scan_code(sql, |i, _| {
        if keyword_at(sql, i, "CHECK") {
            starts.push(i + "CHECK".len());
        }
        true
    });
    let mut out = Vec::new();
    for start in starts {
        let Some(open) = sql[start..].find('(').map(|o| start + o) else {
            continue;
        };
        let mut close = None;
        scan_code(&sql[open..], |i, depth| {
            if depth == 0 {
                close = Some(open + i);
                return false;
            }
            true
        });
        if let Some(close) = close {
            out.push(&sql[open + 1..close]);
        }
    }
    out
}

/// The `WHERE` clause of a `CREATE INDEX` statement.
fn where_clause(sql: &str) -> Option<&str> {
    let mut at = None;
    scan_code(sql, |i, depth| {
        if depth == 0 && keyword_at(sql, i, "WHERE") {
            at = Some(i + "WHERE".len());
            return false;
        }
        true
    });
    at.map(|i| sql[i..].trim().trim_end_matches(';'))
}

#[cfg(test)]
mod sql_text_tests {
    use super::*;

    #[test]
    fn checks_and_predicates_are_found_outside_quotes_and_comments() {
        let table =
            "CREATE TABLE t (\n  a TEXT CHECK (a IN ('x)', 'CHECK (y)')), -- CHECK (no)\n  \
                     b INT, CONSTRAINT c CHECK ((b > 0) AND b < 9)\n)";
        assert_eq!(
            check_clauses(table),
            vec!["a IN ('x)', 'CHECK (y)')", "(b > 0) AND b < 9"]
        );
        assert_eq!(
            where_clause("CREATE INDEX i ON t (a) WHERE a = 'where'"),
            Some("a = 'where'")
        );
        assert_eq!(where_clause("CREATE INDEX i ON t (a)"), None);
    }
}
