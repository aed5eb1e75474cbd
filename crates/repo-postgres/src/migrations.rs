//! Embedded migrations (`migrations/postgres`), run in one transaction under a
//! transaction-scoped advisory lock, and the schema snapshot used by the parity
//! checks: the PostgreSQL store's [`SchemaAdmin`].

use crate::connection::QueryResultExt;
use crate::error::map_diesel_error;
use crate::pool::{in_recovery, standby_error, transaction_with};
use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Bool, Text};
use diesel::{QueryableByName, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use repo_core::{IndexSnapshot, RepoError, RepoResult, SchemaSnapshot};

/// Every PostgreSQL migration, embedded at build time.
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Key of the transaction advisory lock that serialises migrations across processes
/// (the bytes of `"smtkmigr"`).
const MIGRATION_LOCK_KEY: i64 = 0x736d_746b_6d69_6772;

type MigrationError = Box<dyn std::error::Error + Send + Sync>;

fn map_migration_error(error: MigrationError) -> RepoError {
    match error.downcast::<diesel::result::Error>() {
        Ok(diesel_error) => map_diesel_error(*diesel_error),
        Err(other) => RepoError::Backend {
            message: format!("migration failed: {other}"),
            source: Some(other),
        },
    }
}

/// The migration transaction's `BEGIN`: statement and lock timeouts lifted for this
/// transaction only (waiting for another process's migration, or a long `CREATE
/// INDEX`, is expected here); nothing outlives the transaction.
const MIGRATION_BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
     SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; \
     SET LOCAL TimeZone = 'UTC'";

/// Runs `f` in one transaction holding the transaction-scoped migration lock
/// (`pg_advisory_xact_lock`), so the lock goes with the commit or rollback, on
/// whichever server connection a transaction pooler picked, and no session state is
/// left behind. Diesel's migration harness nests each migration's own transaction
/// as a savepoint. A standby is refused first (`redacted_url` names it).
fn with_migration_lock<T>(
    conn: &mut PgConnection,
    redacted_url: &str,
    f: impl FnOnce(&mut PgConnection) -> RepoResult<T>,
) -> RepoResult<T> {
    transaction_with(conn, MIGRATION_BEGIN, |c| {
        if in_recovery(c).db()? {
            return Err(standby_error(redacted_url));
        }
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(c)
            .db()?;
        f(c)
    })
}

/// Version and name of every embedded PostgreSQL migration, oldest first (e.g.
/// `("20261121000001", "2026-11-21-000001_initial")`).
pub fn embedded_migrations() -> RepoResult<Vec<(String, String)>> {
    repo_diesel::migrations::embedded::<diesel::pg::Pg>(&MIGRATIONS).map_err(map_migration_error)
}

/// Applies pending migrations; returns the versions applied now.
pub(crate) fn run_pending(conn: &mut PgConnection, redacted_url: &str) -> RepoResult<Vec<String>> {
    with_migration_lock(conn, redacted_url, |c| {
        c.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(map_migration_error)
    })
}

/// Reverts every applied migration; returns the versions reverted.
pub(crate) fn revert_all(conn: &mut PgConnection, redacted_url: &str) -> RepoResult<Vec<String>> {
    with_migration_lock(conn, redacted_url, |c| {
        c.revert_all_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(map_migration_error)
    })
}

/// Reverts the newest applied migration; returns its version.
pub(crate) fn revert_last(conn: &mut PgConnection, redacted_url: &str) -> RepoResult<String> {
    with_migration_lock(conn, redacted_url, |c| {
        c.revert_last_migration(MIGRATIONS)
            .map(|version| version.to_string())
            .map_err(map_migration_error)
    })
}

/// Versions recorded as applied, oldest first.
pub(crate) fn applied(conn: &mut PgConnection) -> RepoResult<Vec<String>> {
    let versions = conn.applied_migrations().map_err(map_migration_error)?;
    Ok(repo_diesel::migrations::sorted(versions))
}

/// Versions embedded but not applied, oldest first.
pub(crate) fn pending(conn: &mut PgConnection) -> RepoResult<Vec<String>> {
    let steps = conn
        .pending_migrations(MIGRATIONS)
        .map_err(map_migration_error)?;
    Ok(repo_diesel::migrations::sorted(
        steps.iter().map(|m| m.name().version()),
    ))
}

/// With migrations turned off: `Config` unless every embedded migration is applied
/// ([`repo_core::schema::require_migrated`]). Read-only: unlike Diesel's harness it
/// does not create the bookkeeping table, which the role may not be allowed to do.
pub(crate) fn require_migrated(conn: &mut PgConnection) -> RepoResult<()> {
    let embedded = embedded_migrations()?;
    let applied = recorded_migrations(conn)?;
    repo_core::schema::require_migrated(repo_core::BackendKind::Postgres, &embedded, &applied)
}

/// Versions recorded as applied in Diesel's bookkeeping table of the current schema,
/// oldest first; none when it does not exist. Read-only: unlike Diesel's harness it
/// never creates the table, which the role may not be allowed to do (checks before
/// migrating, and tools reading a source database).
pub fn recorded_migrations(conn: &mut PgConnection) -> RepoResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Present {
        #[diesel(sql_type = Bool)]
        present: bool,
    }
    let bookkeeping = diesel::sql_query(
        "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS present",
    )
    .get_result::<Present>(conn)
    .db()?;
    if !bookkeeping.present {
        return Ok(Vec::new());
    }
    diesel::sql_query("SELECT version::text AS version FROM __diesel_schema_migrations")
        .load(conn)
        .map(repo_diesel::migrations::recorded)
        .db()
}

#[derive(QueryableByName)]
struct ColumnInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Bool)]
    nullable: bool,
}

#[derive(QueryableByName)]
struct IndexInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = Bool)]
    is_unique: bool,
    #[diesel(sql_type = Bool)]
    partial: bool,
    #[diesel(sql_type = Array<Text>)]
    columns: Vec<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    predicate: Option<String>,
}

#[derive(QueryableByName)]
struct CheckInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    expression: String,
}

// Plain and partitioned tables; partitions (`chunks_p00` …) are storage details of
// their parent and left out, as are their indexes below.
const COLUMNS_SQL: &str = "\
SELECT c.table_name::text AS table_name, c.column_name::text AS column_name,
       (c.is_nullable = 'YES') AS nullable
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name
JOIN pg_namespace n ON n.nspname = c.table_schema
JOIN pg_class r ON r.relnamespace = n.oid AND r.relname = c.table_name
WHERE c.table_schema = current_schema()
  AND t.table_type = 'BASE TABLE'
  AND r.relkind IN ('r', 'p')
  AND NOT r.relispartition
  AND c.table_name <> '__diesel_schema_migrations'
ORDER BY c.table_name, c.ordinal_position";

// Key columns only (INCLUDE columns excluded); expression columns (attnum 0) as <expr>.
const INDEXES_SQL: &str = "\
SELECT t.relname::text AS table_name, i.relname::text AS index_name,
       ix.indisunique AS is_unique, (ix.indpred IS NOT NULL) AS partial,
       pg_get_expr(ix.indpred, ix.indrelid) AS predicate,
       ARRAY(
           SELECT CASE WHEN k.attnum = 0 THEN '<expr>' ELSE a.attname::text END
           FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
           LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
           WHERE k.ord <= ix.indnkeyatts
           ORDER BY k.ord
       ) AS columns
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema()
  AND NOT ix.indisprimary
  AND t.relkind IN ('r', 'p')
  AND NOT t.relispartition
  AND t.relname <> '__diesel_schema_migrations'
ORDER BY t.relname, i.relname";

// CHECK constraints of plain and partitioned tables (a partition's copies of its
// parent's constraints are left out with the partition), deparsed by PostgreSQL.
const CHECKS_SQL: &str = "\
SELECT t.relname::text AS table_name, pg_get_expr(c.conbin, c.conrelid) AS expression
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = current_schema()
  AND c.contype = 'c'
  AND t.relkind IN ('r', 'p')
  AND NOT t.relispartition
ORDER BY t.relname, c.conname";

/// Tables, columns (with nullability), named indexes (with their predicates) and CHECK
/// constraints of the current schema.
pub(crate) fn schema_snapshot(conn: &mut PgConnection) -> RepoResult<SchemaSnapshot> {
    let mut snapshot = SchemaSnapshot::default();
    let columns: Vec<ColumnInfo> = diesel::sql_query(COLUMNS_SQL).load(conn).db()?;
    for c in columns {
        snapshot
            .tables
            .entry(c.table_name)
            .or_default()
            .columns
            .insert(c.column_name, c.nullable);
    }
    let indexes: Vec<IndexInfo> = diesel::sql_query(INDEXES_SQL).load(conn).db()?;
    for i in indexes {
        if let Some(table) = snapshot.tables.get_mut(&i.table_name) {
            table.indexes.insert(
                i.index_name,
                IndexSnapshot {
                    unique: i.is_unique,
                    columns: i.columns,
                    partial: i.partial,
                    predicate: i
                        .predicate
                        .as_deref()
                        .map(repo_core::normalize_sql_expression),
                },
            );
        }
    }
    let checks: Vec<CheckInfo> = diesel::sql_query(CHECKS_SQL).load(conn).db()?;
    for c in checks {
        if let Some(table) = snapshot.tables.get_mut(&c.table_name) {
            table
                .checks
                .extend(repo_core::normalized_check_terms(&c.expression));
        }
    }
    Ok(snapshot)
}
