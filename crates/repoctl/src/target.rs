//! Writing batches to the target: PostgreSQL through `COPY … FROM STDIN` (text
//! format, one statement and one transaction per batch), SQLite through one
//! `BEGIN IMMEDIATE` transaction per batch of multi-row INSERTs with bound
//! parameters. With `--resume`, rows already in the target are left out.

use crate::conn::DbConn;
use crate::error::Failure;
use crate::schema::{pg, ColumnType, Table};
use crate::value::Value;
use diesel::connection::SimpleConnection;
use diesel::prelude::ExecuteCopyFromDsl;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{PgConnection, RunQueryDsl};
use std::collections::{HashMap, HashSet};
use std::io::Write;

/// SQLite's default limit on bind parameters per statement (since 3.32).
const SQLITE_MAX_BINDS: usize = 32_766;

/// Rows of one batch, encoded for the target.
pub enum Payload {
    /// PostgreSQL COPY text: one line per row; `line_ends[i]` is the end of row `i`.
    Copy {
        /// The lines.
        bytes: Vec<u8>,
        /// End offset of each line.
        line_ends: Vec<usize>,
    },
    /// SQLite: the converted values of each row.
    Rows(Vec<Vec<Value>>),
}

/// A batch of valid rows of one table.
pub struct Batch {
    /// Table.
    pub table: Table,
    /// Primary key of each row.
    pub keys: Vec<String>,
    /// For chunks: `collection_id` of each row (PostgreSQL's primary key is
    /// `(collection_id, id)`).
    pub collections: Vec<String>,
    /// The rows.
    pub payload: Payload,
}

impl Batch {
    fn retain(&mut self, keep: &[bool]) {
        let mut i = 0;
        self.keys.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        if !self.collections.is_empty() {
            let mut i = 0;
            self.collections.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        match &mut self.payload {
            Payload::Copy { bytes, line_ends } => {
                let mut out = Vec::with_capacity(bytes.len());
                let mut ends = Vec::new();
                let mut start = 0;
                for (n, &end) in line_ends.iter().enumerate() {
                    if keep[n] {
                        out.extend_from_slice(&bytes[start..end]);
                        ends.push(out.len());
                    }
                    start = end;
                }
                *bytes = out;
                *line_ends = ends;
            }
            Payload::Rows(rows) => {
                let mut i = 0;
                rows.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
            }
        }
    }
}

/// Orders two keys of `table` (integers numerically, UUIDs as canonical text, which
/// is also their byte order on PostgreSQL).
fn key_le(table: Table, a: &str, b: &str) -> bool {
    let spec = table.spec();
    if spec.columns[spec.pk].ty == ColumnType::Int64 {
        match (a.parse::<i64>(), b.parse::<i64>()) {
            (Ok(x), Ok(y)) => x <= y,
            _ => true,
        }
    } else {
        a <= b
    }
}

/// Per-table counts of a writer.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteCounts {
    /// Rows written.
    pub written: u64,
    /// Rows skipped because the target already had them.
    pub present: u64,
}

/// The target side of a copy.
pub struct Writer {
    /// The target connection (`None` in a dry run without `--resume`).
    pub conn: Option<DbConn>,
    /// Whether to write (false in a dry run).
    pub write: bool,
    /// Tables whose target already had rows when a resumed copy started, with their
    /// largest key: rows with a larger key cannot be present.
    pub resume_from: HashMap<Table, String>,
    /// Counts per table.
    pub counts: HashMap<Table, WriteCounts>,
}

impl Writer {
    /// Handles one batch: leaves out rows already present (resume), writes the rest.
    pub fn handle(&mut self, mut batch: Batch) -> Result<(), Failure> {
        let table = batch.table;
        let mut present = 0u64;
        if let (Some(max), Some(conn)) = (self.resume_from.get(&table), self.conn.as_mut()) {
            let candidates: Vec<usize> = (0..batch.keys.len())
                .filter(|&i| key_le(table, &batch.keys[i], max))
                .collect();
            if !candidates.is_empty() {
                let existing: HashSet<String> = if table == Table::Chunks {
                    let pairs: Vec<(String, i64)> = candidates
                        .iter()
                        .map(|&i| {
                            (
                                batch.collections[i].clone(),
                                batch.keys[i].parse::<i64>().unwrap_or(i64::MIN),
                            )
                        })
                        .collect();
                    conn.existing_chunks(&pairs)?.into_iter().collect()
                } else {
                    let keys: Vec<String> =
                        candidates.iter().map(|&i| batch.keys[i].clone()).collect();
                    conn.existing_keys(table, &keys, false)?
                        .into_keys()
                        .collect()
                };
                if !existing.is_empty() {
                    let keep: Vec<bool> =
                        batch.keys.iter().map(|k| !existing.contains(k)).collect();
                    present = keep.iter().filter(|k| !**k).count() as u64;
                    batch.retain(&keep);
                }
            }
        }
        let n = batch.keys.len() as u64;
        if self.write && n > 0 {
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| Failure::other("no target connection"))?;
            match (conn, batch.payload) {
                (DbConn::Pg(c), Payload::Copy { bytes, .. }) => {
                    copy_in(c, table, &bytes).map_err(|e| {
                        Failure::other(format!(
                            "COPY into {table} failed (batch starting at id {}): {e}",
                            batch.keys[0]
                        ))
                    })?;
                }
                (DbConn::Sqlite(c), Payload::Rows(rows)) => {
                    insert_rows(c, table, rows).map_err(|e| {
                        Failure::other(format!(
                            "INSERT into {table} failed (batch starting at id {}): {e}",
                            batch.keys[0]
                        ))
                    })?;
                }
                _ => return Err(Failure::other("batch encoded for the wrong backend")),
            }
        }
        let c = self.counts.entry(table).or_default();
        c.present += present;
        if self.write {
            c.written += n;
        }
        Ok(())
    }
}

fn io_err(e: std::io::Error) -> diesel::result::Error {
    diesel::result::Error::SerializationError(Box::new(e))
}

/// `COPY table (columns) FROM STDIN` in text format, in its own transaction.
fn copy_in(conn: &mut PgConnection, table: Table, data: &[u8]) -> diesel::QueryResult<usize> {
    macro_rules! copy {
        ($t:path) => {
            diesel::copy_from($t)
                .from_raw_data($t, |w: &mut dyn Write| w.write_all(data).map_err(io_err))
                .execute(conn)
        };
    }
    match table {
        Table::Users => copy!(pg::users::table),
        Table::ApiKeys => copy!(pg::api_keys::table),
        Table::Collections => copy!(pg::collections::table),
        Table::CollectionPermissions => copy!(pg::collection_permissions::table),
        Table::Operations => copy!(pg::operations::table),
        Table::Documents => copy!(pg::documents::table),
        Table::Chunks => copy!(pg::chunks::table),
    }
}

/// Multi-row INSERTs with bound parameters, in one immediate transaction.
fn insert_rows(
    conn: &mut SqliteConnection,
    table: Table,
    rows: Vec<Vec<Value>>,
) -> diesel::QueryResult<()> {
    let spec = table.spec();
    let ncols = spec.columns.len() + table.derived_columns().len();
    let per_statement = (SQLITE_MAX_BINDS / ncols).max(1);
    let placeholders = format!("({})", vec!["?"; ncols].join(", "));
    conn.immediate_transaction(|c| {
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_statement).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                spec.name,
                table.write_column_list(),
                vec![placeholders.as_str(); chunk.len()].join(", ")
            );
            let mut q = diesel::sql_query(sql).into_boxed::<Sqlite>();
            for row in chunk {
                for v in row {
                    q = match v {
                        Value::Null => q.bind::<Nullable<Text>, _>(None::<String>),
                        Value::Int(i) => q.bind::<BigInt, _>(i),
                        Value::Bool(b) => q.bind::<BigInt, _>(i64::from(b)),
                        Value::Str(s) => q.bind::<Text, _>(s),
                    };
                }
            }
            q.execute(c)?;
        }
        Ok(())
    })
}

/// Empties every table of the target (children first) and restarts the identities.
pub fn truncate_all(conn: &mut DbConn) -> Result<(), Failure> {
    match conn {
        DbConn::Pg(c) => c.batch_execute(
            "TRUNCATE users, api_keys, collections, collection_permissions, operations, \
             documents, chunks RESTART IDENTITY",
        )?,
        DbConn::Sqlite(c) => c.immediate_transaction(|c| -> diesel::QueryResult<()> {
            for t in Table::ALL.iter().rev() {
                c.batch_execute(&format!("DELETE FROM {}", t.name()))?;
                diesel::sql_query("DELETE FROM sqlite_sequence WHERE name = ?")
                    .bind::<Text, _>(t.name())
                    .execute(c)?;
            }
            Ok(())
        })?,
    }
    Ok(())
}
