//! Database endpoints and the raw connections the copy uses (outside the stores'
//! pools: COPY, cursors and snapshot transactions need one connection held for the
//! whole run). Table and column names in SQL text come only from [`crate::schema`]
//! (fixed identifiers); every value is a bind parameter.

use crate::error::{Failure, Secrets};
use crate::schema::{ColumnType, Table};
use crate::value::{Origin, RawRow};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use diesel::{QueryableByName, RunQueryDsl};
use repo_core::{redact_url, BackendKind, PostgresUrl};
use repo_factory::DatabaseTarget;
use std::collections::HashMap;

/// A database named by a URL.
#[derive(Clone)]
pub enum Endpoint {
    /// SQLite: what SQLite opens (path or `file:` URI).
    Sqlite(String),
    /// PostgreSQL: a libpq URL.
    Postgres(String),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl Endpoint {
    /// Parses `url` like `DATABASE_URL` (see `repo_factory::parse_database_url`) and
    /// remembers its password in `secrets`.
    pub fn parse(url: &str, secrets: &mut Secrets) -> Result<Self, Failure> {
        secrets.add_url(url);
        let target = repo_factory::parse_database_url(url)
            .map_err(|e| Failure::connection(secrets.scrub(&e.to_string())))?;
        Ok(match target {
            DatabaseTarget::Sqlite(path) => {
                if path == ":memory:"
                    || path.contains("mode=memory")
                    || path.starts_with("file::memory:")
                {
                    return Err(Failure::connection(
                        "an in-memory SQLite database lives only inside one process: give a file",
                    ));
                }
                Endpoint::Sqlite(path)
            }
            DatabaseTarget::Postgres(url) => Endpoint::Postgres(url),
        })
    }

    /// The URL with any password redacted.
    pub fn display(&self) -> String {
        match self {
            Endpoint::Sqlite(p) => format!("sqlite:{}", redact_url(p)),
            Endpoint::Postgres(u) => redact_url(u),
        }
    }

    /// The URL as given (may hold a password: never print it).
    pub fn url(&self) -> &str {
        match self {
            Endpoint::Sqlite(p) | Endpoint::Postgres(p) => p,
        }
    }

    /// For PostgreSQL, what libpq gets for a connection of its own: the URL without
    /// `pgbouncer=` and with the client-side deadlines added where it sets none
    /// (`repo_core::postgres_url`); for SQLite the path as given.
    pub fn libpq_url(&self) -> Result<String, Failure> {
        match self {
            Endpoint::Sqlite(p) => Ok(p.clone()),
            Endpoint::Postgres(u) => PostgresUrl::parse(u)
                .map(|u| u.with_deadline_defaults().libpq_url())
                .map_err(|e| Failure::connection(e.to_string())),
        }
    }

    /// Which backend.
    pub fn backend(&self) -> BackendKind {
        match self {
            Endpoint::Sqlite(_) => BackendKind::Sqlite,
            Endpoint::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Raw-row origin for this backend.
    pub fn origin(&self) -> Origin {
        match self {
            Endpoint::Sqlite(_) => Origin::Sqlite,
            Endpoint::Postgres(_) => Origin::Postgres,
        }
    }

    /// For SQLite: the file path (without a `file:` URI's query); `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        match self {
            Endpoint::Sqlite(p) => {
                let p = p.strip_prefix("file:").unwrap_or(p);
                let p = p.split(['?', '#']).next().unwrap_or(p);
                Some(std::path::PathBuf::from(p))
            }
            Endpoint::Postgres(_) => None,
        }
    }

    /// Whether the database exists (PostgreSQL: assumed; SQLite: the file exists).
    pub fn exists(&self) -> bool {
        self.sqlite_path().is_none_or(|p| p.exists())
    }
}

/// How a connection is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read only (source, verification).
    Read,
    /// Written (target).
    Write,
}

/// One open connection.
pub enum DbConn {
    /// SQLite.
    Sqlite(SqliteConnection),
    /// PostgreSQL.
    Pg(PgConnection),
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct OptIntRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    v: Option<i64>,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct FlagRow {
    #[diesel(sql_type = Bool)]
    #[allow(dead_code)]
    v: bool,
}

impl DbConn {
    /// Opens `endpoint` through its backend's own connection setup
    /// (`repo_sqlite::connect_standalone`, `repo_postgres::connect_standalone`): the
    /// store's PRAGMAs, read-only (`query_only`) for readers; the store's session
    /// settings with every timeout off and `application_name = 'repoctl'`. A SQLite
    /// source that does not exist is an error (SQLite would create an empty file).
    pub fn open(endpoint: &Endpoint, role: Role, secrets: &Secrets) -> Result<Self, Failure> {
        let scrubbed = |e: repo_core::RepoError| {
            let mut f = Failure::from(e);
            f.message = secrets.scrub(&f.message);
            f
        };
        match endpoint {
            Endpoint::Sqlite(target) => {
                if role == Role::Read && !endpoint.exists() {
                    return Err(Failure::connection(format!(
                        "SQLite database {} does not exist",
                        endpoint.display()
                    )));
                }
                let config = repo_core::SqliteConfig::default();
                repo_sqlite::connect_standalone(target, &config, role == Role::Read)
                    .map(DbConn::Sqlite)
                    .map_err(scrubbed)
            }
            Endpoint::Postgres(url) => {
                let config = repo_core::PostgresConfig {
                    statement_timeout: std::time::Duration::ZERO,
                    lock_timeout: std::time::Duration::ZERO,
                    idle_in_transaction_timeout: std::time::Duration::ZERO,
                    application_name: "repoctl".into(),
                    pgbouncer: false,
                };
                repo_postgres::connect_standalone(url, &config)
                    .map(DbConn::Pg)
                    .map_err(scrubbed)
            }
        }
    }

    /// Runs SQL without results.
    pub fn exec(&mut self, sql: &str) -> Result<(), Failure> {
        match self {
            DbConn::Sqlite(c) => c.batch_execute(sql)?,
            DbConn::Pg(c) => c.batch_execute(sql)?,
        }
        Ok(())
    }

    /// Rows in `table`.
    pub fn count(&mut self, table: Table) -> Result<u64, Failure> {
        let sql = format!("SELECT count(*) AS n FROM {}", table.name());
        let rows: Vec<CountRow> = match self {
            DbConn::Sqlite(c) => diesel::sql_query(sql).load(c)?,
            DbConn::Pg(c) => diesel::sql_query(sql).load(c)?,
        };
        Ok(rows.first().map_or(0, |r| r.n.max(0) as u64))
    }

    /// Whether a table of that name exists.
    pub fn has_table(&mut self, name: &str) -> Result<bool, Failure> {
        let rows: Vec<CountRow> = match self {
            DbConn::Sqlite(c) => diesel::sql_query(
                "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind::<Text, _>(name)
            .load(c)?,
            DbConn::Pg(c) => diesel::sql_query(
                "SELECT count(*) AS n FROM pg_catalog.pg_tables \
                 WHERE schemaname = current_schema() AND tablename = $1",
            )
            .bind::<Text, _>(name)
            .load(c)?,
        };
        Ok(rows.first().is_some_and(|r| r.n > 0))
    }

    /// Applied migration versions, sorted (empty when there is no migration table):
    /// the backends' read-only look at their bookkeeping (`recorded_migrations`).
    pub fn applied_versions(&mut self) -> Result<Vec<String>, Failure> {
        Ok(match self {
            DbConn::Sqlite(c) => repo_sqlite::recorded_migrations(c)?,
            DbConn::Pg(c) => repo_postgres::recorded_migrations(c)?,
        })
    }

    /// Column names of `table`.
    pub fn columns(&mut self, table: Table) -> Result<Vec<String>, Failure> {
        let rows: Vec<NameRow> = match self {
            DbConn::Sqlite(c) => diesel::sql_query("SELECT name FROM pragma_table_info(?)")
                .bind::<Text, _>(table.name())
                .load(c)?,
            DbConn::Pg(c) => diesel::sql_query(
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
            )
            .bind::<Text, _>(table.name())
            .load(c)?,
        };
        Ok(rows.into_iter().map(|r| r.name).collect())
    }

    /// Largest `id` of `table`, as key text (`None` when empty).
    pub fn max_key(&mut self, table: Table) -> Result<Option<String>, Failure> {
        let pk_is_int = table.spec().columns[table.spec().pk].ty == ColumnType::Int64;
        let rows: Vec<RawRow> = match self {
            DbConn::Sqlite(c) => diesel::sql_query(format!(
                "SELECT id FROM {} ORDER BY id DESC LIMIT 1",
                table.name()
            ))
            .load(c)?,
            DbConn::Pg(c) => {
                let sql = if pk_is_int {
                    format!("SELECT max(id)::text AS id FROM {}", table.name())
                } else {
                    format!(
                        "SELECT id::text AS id FROM {} ORDER BY id DESC LIMIT 1",
                        table.name()
                    )
                };
                diesel::sql_query(sql).load(c)?
            }
        };
        Ok(rows
            .first()
            .filter(|r| r.cells.first() != Some(&crate::value::Cell::Null))
            .map(|r| r.display(0)))
    }

    /// Which of `keys` exist as `id` in `parent`; for each, its `collection_id` when
    /// `with_collection` (documents).
    pub fn existing_keys(
        &mut self,
        parent: Table,
        keys: &[String],
        with_collection: bool,
    ) -> Result<HashMap<String, Option<String>>, Failure> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let spec = parent.spec();
        let int_key = spec.columns[spec.pk].ty == ColumnType::Int64;
        let json = if int_key {
            // Validated integers: a JSON array of numbers.
            format!("[{}]", keys.join(","))
        } else {
            serde_json::to_string(keys).map_err(|e| Failure::other(e.to_string()))?
        };
        let rows: Vec<RawRow> = match self {
            DbConn::Sqlite(c) => {
                let extra = if with_collection {
                    "collection_id"
                } else {
                    "NULL"
                };
                diesel::sql_query(format!(
                    "SELECT id, {extra} FROM {} WHERE id IN (SELECT value FROM json_each(?))",
                    parent.name()
                ))
                .bind::<Text, _>(json)
                .load(c)?
            }
            DbConn::Pg(c) => {
                let extra = if with_collection {
                    "collection_id::text"
                } else {
                    "NULL::text"
                };
                let cast = if int_key { "bigint" } else { "uuid" };
                diesel::sql_query(format!(
                    "SELECT id::text, {extra} FROM {} \
                     WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::{cast})",
                    parent.name()
                ))
                .bind::<Text, _>(json)
                .load(c)?
            }
        };
        Ok(rows
            .iter()
            .map(|r| {
                let coll =
                    (r.cells.get(1) != Some(&crate::value::Cell::Null)).then(|| r.display(1));
                (r.display(0), coll)
            })
            .collect())
    }

    /// Which chunk ids of `(collection_id, id)` pairs exist (PostgreSQL uses the
    /// primary key `(collection_id, id)`; SQLite the rowid).
    pub fn existing_chunks(&mut self, pairs: &[(String, i64)]) -> Result<Vec<String>, Failure> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            DbConn::Sqlite(_) => {
                let keys: Vec<String> = pairs.iter().map(|p| p.1.to_string()).collect();
                Ok(self
                    .existing_keys(Table::Chunks, &keys, false)?
                    .into_keys()
                    .collect())
            }
            DbConn::Pg(c) => {
                let json = serde_json::to_string(
                    &pairs
                        .iter()
                        .map(|(coll, id)| serde_json::json!({"c": coll, "i": id}))
                        .collect::<Vec<_>>(),
                )
                .map_err(|e| Failure::other(e.to_string()))?;
                let rows: Vec<RawRow> = diesel::sql_query(
                    "SELECT ch.id::text FROM chunks ch \
                     JOIN jsonb_to_recordset($1::jsonb) AS k(c uuid, i bigint) \
                       ON ch.collection_id = k.c AND ch.id = k.i",
                )
                .bind::<Text, _>(json)
                .load(c)?;
                Ok(rows.iter().map(|r| r.display(0)).collect())
            }
        }
    }

    /// The high-water mark of `table`'s id sequence (SQLite `sqlite_sequence`,
    /// PostgreSQL the sequence's last value), so ids of deleted rows are not reused.
    pub fn sequence_mark(&mut self, table: Table) -> Result<Option<i64>, Failure> {
        let rows: Vec<OptIntRow> = match self {
            DbConn::Sqlite(c) => {
                let exists: Vec<CountRow> = diesel::sql_query(
                    "SELECT count(*) AS n FROM sqlite_master WHERE name = 'sqlite_sequence'",
                )
                .load(c)?;
                if exists.first().is_none_or(|r| r.n == 0) {
                    return Ok(None);
                }
                diesel::sql_query("SELECT max(seq) AS v FROM sqlite_sequence WHERE name = ?")
                    .bind::<Text, _>(table.name())
                    .load(c)?
            }
            DbConn::Pg(c) => diesel::sql_query(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence($1, 'id')::regclass) AS v",
            )
            .bind::<Text, _>(table.name())
            .load(c)?,
        };
        Ok(rows.first().and_then(|r| r.v))
    }

    /// Sets `table`'s id sequence so the next generated id is above both the largest
    /// id and `mark`.
    pub fn reset_sequence(&mut self, table: Table, mark: Option<i64>) -> Result<i64, Failure> {
        let sql = format!("SELECT max(id) AS v FROM {}", table.name());
        let max: Vec<OptIntRow> = match self {
            DbConn::Sqlite(c) => diesel::sql_query(sql).load(c)?,
            DbConn::Pg(c) => diesel::sql_query(sql).load(c)?,
        };
        let high = max
            .first()
            .and_then(|r| r.v)
            .unwrap_or(0)
            .max(mark.unwrap_or(0));
        match self {
            DbConn::Sqlite(c) => {
                c.immediate_transaction(|c| -> diesel::QueryResult<()> {
                    diesel::sql_query(
                        "UPDATE sqlite_sequence SET seq = ? WHERE name = ? AND seq < ?",
                    )
                    .bind::<BigInt, _>(high)
                    .bind::<Text, _>(table.name())
                    .bind::<BigInt, _>(high)
                    .execute(c)?;
                    if high > 0 {
                        diesel::sql_query(
                            "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? \
                             WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
                        )
                        .bind::<Text, _>(table.name())
                        .bind::<BigInt, _>(high)
                        .bind::<Text, _>(table.name())
                        .execute(c)?;
                    }
                    Ok(())
                })?;
            }
            DbConn::Pg(c) => {
                let _: Vec<OptIntRow> = diesel::sql_query(
                    "SELECT setval(pg_get_serial_sequence($1, 'id'), GREATEST($2, 1), $2 > 0) AS v",
                )
                .bind::<Text, _>(table.name())
                .bind::<BigInt, _>(high)
                .load(c)?;
            }
        }
        Ok(high)
    }

    /// Whether the PostgreSQL server answers / the SQLite file opens (a trivial query).
    pub fn ping(&mut self) -> Result<(), Failure> {
        let _: Vec<FlagRow> = match self {
            DbConn::Sqlite(c) => diesel::sql_query("SELECT 1 AS v").load(c)?,
            DbConn::Pg(c) => diesel::sql_query("SELECT true AS v").load(c)?,
        };
        Ok(())
    }
}

/// SQL expression reading `column` as canonical text on PostgreSQL.
fn pg_select_expr(name: &str, ty: ColumnType) -> String {
    match ty {
        ColumnType::Timestamp => format!(
            "CASE WHEN {name} IS NULL THEN NULL \
             WHEN isfinite({name}) AND {name} >= '0001-01-01T00:00:00Z' \
                  AND {name} < '10000-01-01T00:00:00Z' \
             THEN to_char({name} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             ELSE {name}::text END"
        ),
        _ => format!("{name}::text"),
    }
}

/// The select list of `table` for `origin` (SQLite: raw values; PostgreSQL: text).
pub fn select_list(table: Table, origin: Origin) -> String {
    let spec = table.spec();
    match origin {
        Origin::Sqlite => spec.column_list(),
        Origin::Postgres => spec
            .columns
            .iter()
            .map(|c| pg_select_expr(c.name, c.ty))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Streams a table in pages: SQLite by rowid keyset, PostgreSQL through a cursor
/// (inside the caller's transaction). The first cell of a SQLite row is its rowid;
/// [`Scan::offset`] says where the table's columns start.
pub struct Scan {
    table: Table,
    batch: usize,
    last_rowid: i64,
    cursor_open: bool,
    done: bool,
}

impl Scan {
    /// A scan of `table` in pages of `batch` rows.
    pub fn new(table: Table, batch: usize) -> Self {
        Scan {
            table,
            batch: batch.max(1),
            last_rowid: i64::MIN,
            cursor_open: false,
            done: false,
        }
    }

    /// Index of the first table column in each raw row.
    pub fn offset(conn: &DbConn) -> usize {
        match conn {
            DbConn::Sqlite(_) => 1,
            DbConn::Pg(_) => 0,
        }
    }

    /// The next page (empty when done). PostgreSQL needs an open transaction.
    pub fn next(&mut self, conn: &mut DbConn, ordered: bool) -> Result<Vec<RawRow>, Failure> {
        if self.done {
            return Ok(Vec::new());
        }
        let rows: Vec<RawRow> = match conn {
            DbConn::Sqlite(c) => {
                let sql = format!(
                    "SELECT rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    select_list(self.table, Origin::Sqlite),
                    self.table.name()
                );
                let rows: Vec<RawRow> = diesel::sql_query(sql)
                    .bind::<BigInt, _>(self.last_rowid)
                    .bind::<BigInt, _>(self.batch as i64)
                    .load(c)?;
                if let Some(crate::value::Cell::Int(r)) = rows.last().and_then(|r| r.cells.first())
                {
                    self.last_rowid = *r;
                }
                rows
            }
            DbConn::Pg(c) => {
                if !self.cursor_open {
                    let order = match (ordered, self.table) {
                        (false, _) => "",
                        // The primary key's order: no sort of the partitioned table.
                        (true, Table::Chunks) => " ORDER BY collection_id, id",
                        (true, _) => " ORDER BY id",
                    };
                    c.batch_execute(&format!(
                        "DECLARE repoctl_scan NO SCROLL CURSOR FOR SELECT {} FROM {}{order}",
                        select_list(self.table, Origin::Postgres),
                        self.table.name()
                    ))?;
                    self.cursor_open = true;
                }
                // FETCH takes no bind parameter; the count is an integer we control.
                diesel::sql_query(format!("FETCH FORWARD {} FROM repoctl_scan", self.batch))
                    .load(c)?
            }
        };
        if rows.len() < self.batch {
            self.finish(conn)?;
        }
        Ok(rows)
    }

    /// Closes the cursor, if any.
    pub fn finish(&mut self, conn: &mut DbConn) -> Result<(), Failure> {
        self.done = true;
        if self.cursor_open {
            if let DbConn::Pg(c) = conn {
                c.batch_execute("CLOSE repoctl_scan")?;
            }
            self.cursor_open = false;
        }
        Ok(())
    }
}

/// Opens a consistent read snapshot on `conn` (SQLite read transaction; PostgreSQL
/// `REPEATABLE READ READ ONLY`).
pub fn begin_snapshot(conn: &mut DbConn) -> Result<(), Failure> {
    match conn {
        DbConn::Sqlite(c) => c.batch_execute("BEGIN")?,
        DbConn::Pg(c) => c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?,
    }
    Ok(())
}

/// Ends the snapshot.
pub fn end_snapshot(conn: &mut DbConn) -> Result<(), Failure> {
    conn.exec("COMMIT")
}
