//! Replaying captured changes onto the target, one batch per target transaction.
//!
//! A batch:
//! 1. opens the target's write transaction first (PostgreSQL: a transaction-scoped
//!    advisory lock; SQLite: `BEGIN IMMEDIATE`), so two replays (`live sync --follow`
//!    and `live cutover`) never interleave and apply an older row image last;
//! 2. reads, in one source snapshot, the oldest `batch` changes and the current state
//!    of every changed row (by key), converting and checking each row with the copy's
//!    own rules;
//! 3. deletes, children first, the rows the source no longer has, then upserts,
//!    parents first, the rows it has, and commits;
//! 4. deletes exactly the applied change rows from the source's change table.
//!
//! Replaying a change twice re-applies the row's current state, so a replay killed
//! anywhere (before the target commit: nothing applied; between the commit and step
//! 4: the batch is applied again) loses nothing and needs no checkpoint. A change
//! committed later with a smaller sequence number (PostgreSQL sequences are not in
//! commit order) is still in the table for the next batch.

use crate::conn::{begin_snapshot, end_snapshot, select_list, DbConn, Scan};
use crate::copy::convert_page;
use crate::error::{exit, Failure};
use crate::live::capture::CHANGES;
use crate::report::Refusal;
use crate::schema::{ColumnType, Table};
use crate::value::{Origin, RawRow, Value};
use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Double, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel::{QueryableByName, RunQueryDsl};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// PostgreSQL's limit on bind parameters per statement.
const PG_MAX_BINDS: usize = 65_535;
/// SQLite's default limit on bind parameters per statement (since 3.32).
const SQLITE_MAX_BINDS: usize = 32_766;
/// Key of the advisory lock that serialises replays into one PostgreSQL target.
const REPLAY_LOCK: i64 = 0x7265_706f_6c69_7665; // "repolive"

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchOutcome {
    /// Change rows consumed.
    pub changes: u64,
    /// Rows upserted per table.
    pub upserted: BTreeMap<Table, u64>,
    /// Rows deleted per table.
    pub deleted: BTreeMap<Table, u64>,
    /// Rows with at least one converted value.
    pub converted: u64,
}

impl BatchOutcome {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &BatchOutcome) {
        self.changes += other.changes;
        self.converted += other.converted;
        for (t, n) in &other.upserted {
            *self.upserted.entry(*t).or_default() += n;
        }
        for (t, n) in &other.deleted {
            *self.deleted.entry(*t).or_default() += n;
        }
    }

    /// Rows upserted in all tables.
    pub fn upserts(&self) -> u64 {
        self.upserted.values().sum()
    }

    /// Rows deleted in all tables.
    pub fn deletes(&self) -> u64 {
        self.deleted.values().sum()
    }
}

/// Rows of a changed table that the source still has (converted), and the keys it no
/// longer has.
struct TableChanges {
    upserts: Vec<Vec<Value>>,
    /// `(key, collection_id)`; the collection only for chunks.
    deletes: Vec<(String, Option<String>)>,
}

#[derive(QueryableByName)]
struct LagRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Nullable<Double>)]
    behind: Option<f64>,
}

/// Changes waiting in the source's change table, and how old the oldest is (seconds).
pub fn lag(src: &mut DbConn) -> Result<(u64, f64), Failure> {
    let rows: Vec<LagRow> = match src {
        DbConn::Sqlite(c) => diesel::sql_query(format!(
            "SELECT count(*) AS n, (julianday('now') - min(at)) * 86400.0 AS behind FROM {CHANGES}"
        ))
        .load(c)?,
        DbConn::Pg(c) => diesel::sql_query(format!(
            "SELECT count(*) AS n, extract(epoch FROM clock_timestamp() - min(at))::float8 AS behind \
             FROM {CHANGES}"
        ))
        .load(c)?,
    };
    Ok(rows.first().map_or((0, 0.0), |r| {
        (r.n.max(0) as u64, r.behind.unwrap_or(0.0).max(0.0))
    }))
}

fn is_int_key(table: Table) -> bool {
    let spec = table.spec();
    spec.columns[spec.pk].ty == ColumnType::Int64
}

/// A JSON array of keys: numbers for integer keys (validated), strings otherwise.
fn keys_json(table: Table, keys: &[&str]) -> Result<String, Failure> {
    if is_int_key(table) {
        let ints: Result<Vec<i64>, _> = keys.iter().map(|k| k.parse::<i64>()).collect();
        let ints = ints.map_err(|_| {
            Failure::other(format!("{CHANGES} holds a non-integer key for {table}"))
        })?;
        serde_json::to_string(&ints).map_err(|e| Failure::other(e.to_string()))
    } else {
        serde_json::to_string(keys).map_err(|e| Failure::other(e.to_string()))
    }
}

/// The current rows of `table` with these keys (raw, as the copy reads them).
fn rows_by_key(src: &mut DbConn, table: Table, keys: &[&str]) -> Result<Vec<RawRow>, Failure> {
    let json = keys_json(table, keys)?;
    Ok(match src {
        DbConn::Sqlite(c) => diesel::sql_query(format!(
            "SELECT rowid, {} FROM {} WHERE id IN (SELECT value FROM json_each(?))",
            select_list(table, Origin::Sqlite),
            table.name()
        ))
        .bind::<Text, _>(json)
        .load(c)?,
        DbConn::Pg(c) => diesel::sql_query(format!(
            "SELECT {} FROM {} WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::{})",
            select_list(table, Origin::Postgres),
            table.name(),
            if is_int_key(table) { "bigint" } else { "uuid" }
        ))
        .bind::<Text, _>(json)
        .load(c)?,
    })
}

/// One captured change: `(seq, table, key, collection)`.
type Change = (i64, Table, String, Option<String>);

/// Reads the oldest `limit` changes.
fn read_changes(src: &mut DbConn, limit: usize) -> Result<Vec<Change>, Failure> {
    let rows: Vec<RawRow> = match src {
        DbConn::Sqlite(c) => diesel::sql_query(format!(
            "SELECT seq, tbl, key, coll FROM {CHANGES} ORDER BY seq LIMIT ?"
        ))
        .bind::<BigInt, _>(limit as i64)
        .load(c)?,
        DbConn::Pg(c) => diesel::sql_query(format!(
            "SELECT seq::text, tbl, key, coll FROM {CHANGES} ORDER BY seq LIMIT $1"
        ))
        .bind::<BigInt, _>(limit as i64)
        .load(c)?,
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq = r.display(0).parse::<i64>().map_err(|_| {
            Failure::other(format!("{CHANGES}: a sequence number is not an integer"))
        })?;
        let name = r.display(1);
        let table = Table::ALL
            .iter()
            .copied()
            .find(|t| t.name() == name)
            .ok_or_else(|| Failure::other(format!("{CHANGES}: unknown table {name:?}")))?;
        let coll = (r.cells.get(3) != Some(&crate::value::Cell::Null)).then(|| r.display(3));
        out.push((seq, table, r.display(2), coll));
    }
    Ok(out)
}

/// Starts the target transaction that serialises replays.
fn begin_target(dst: &mut DbConn) -> Result<(), Failure> {
    match dst {
        DbConn::Sqlite(c) => c.batch_execute("BEGIN IMMEDIATE")?,
        DbConn::Pg(c) => {
            c.batch_execute("BEGIN")?;
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<BigInt, _>(REPLAY_LOCK)
                .execute(c)?;
        }
    }
    Ok(())
}

/// Replays one batch of at most `limit` changes. `Ok(None)` when none were waiting.
/// Rows the target cannot take are returned as refusals (nothing of the batch is
/// applied; its changes stay for a later run once the rows are fixed).
pub fn replay_batch(
    src: &mut DbConn,
    dst: &mut DbConn,
    origin: Origin,
    limit: usize,
) -> Result<Result<Option<BatchOutcome>, Vec<Refusal>>, Failure> {
    begin_target(dst)?;
    let result = replay_locked(src, dst, origin, limit);
    match result {
        Ok(Ok(Some((outcome, seqs)))) => {
            dst.exec("COMMIT")?;
            delete_changes(src, &seqs)?;
            Ok(Ok(Some(outcome)))
        }
        other => {
            let _ = dst.exec("ROLLBACK");
            other.map(|r| r.map(|o| o.map(|(outcome, _)| outcome)))
        }
    }
}

type Locked = Result<Option<(BatchOutcome, Vec<i64>)>, Vec<Refusal>>;

fn replay_locked(
    src: &mut DbConn,
    dst: &mut DbConn,
    origin: Origin,
    limit: usize,
) -> Result<Locked, Failure> {
    begin_snapshot(src)?;
    let read = read_source(src, origin, limit);
    let _ = end_snapshot(src);
    let (changes, seqs, converted) = match read? {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(Ok(None)),
        Err(refusals) => return Ok(Err(refusals)),
    };
    let mut outcome = BatchOutcome {
        changes: seqs.len() as u64,
        converted,
        ..Default::default()
    };
    for (&table, ch) in changes.iter().rev() {
        if !ch.deletes.is_empty() {
            delete_rows(dst, table, &ch.deletes)?;
            outcome.deleted.insert(table, ch.deletes.len() as u64);
        }
    }
    for (&table, ch) in &changes {
        if !ch.upserts.is_empty() {
            upsert_rows(dst, table, &ch.upserts)?;
            outcome.upserted.insert(table, ch.upserts.len() as u64);
        }
    }
    Ok(Ok(Some((outcome, seqs))))
}

type SourceRead = Result<Option<(BTreeMap<Table, TableChanges>, Vec<i64>, u64)>, Vec<Refusal>>;

/// Inside the source snapshot: the changes and the current rows they name.
fn read_source(src: &mut DbConn, origin: Origin, limit: usize) -> Result<SourceRead, Failure> {
    let changes = read_changes(src, limit)?;
    if changes.is_empty() {
        return Ok(Ok(None));
    }
    let seqs: Vec<i64> = changes.iter().map(|c| c.0).collect();
    let mut keys: BTreeMap<Table, BTreeSet<(String, Option<String>)>> = BTreeMap::new();
    for (_, table, key, coll) in changes {
        let coll = if table == Table::Chunks { coll } else { None };
        keys.entry(table).or_default().insert((key, coll));
    }
    let offset = Scan::offset(src);
    let mut out = BTreeMap::new();
    let mut refusals = Vec::new();
    let mut converted = 0u64;
    for (table, pairs) in keys {
        let spec = table.spec();
        let distinct: BTreeSet<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        let distinct: Vec<&str> = distinct.into_iter().collect();
        let mut raw = Vec::new();
        for part in distinct.chunks(5000) {
            raw.extend(rows_by_key(src, table, part)?);
        }
        let (good, bad) = convert_page(spec, table, origin, offset, &raw);
        refusals.extend(bad.into_iter().map(|(_, r)| r));
        // Present rows: key → collection (chunks) as the source has it now.
        let coll_idx = spec.index_of("collection_id");
        let mut present: HashMap<String, Option<String>> = HashMap::new();
        let mut upserts = Vec::with_capacity(good.len());
        for mut g in good {
            if !g.conversions.is_empty() {
                converted += 1;
            }
            let coll = match (table, coll_idx) {
                (Table::Chunks, Some(i)) => Some(g.values[i].key_text()),
                _ => None,
            };
            present.insert(g.key.clone(), coll);
            let derived = crate::value::derived_values(table, &g.values);
            g.values.extend(derived);
            upserts.push(g.values);
        }
        // A refused row is not deleted from the target either: it stays pending.
        let refused: BTreeSet<&str> = refusals
            .iter()
            .filter(|r| r.table == table)
            .map(|r| r.key.as_str())
            .collect();
        let deletes: Vec<(String, Option<String>)> = pairs
            .iter()
            .filter(|(k, c)| {
                !refused.contains(k.as_str())
                    && match present.get(k) {
                        None => true,
                        // A chunk that moved to another collection: the old key goes.
                        Some(now) => table == Table::Chunks && c.is_some() && now != c,
                    }
            })
            .cloned()
            .collect();
        out.insert(table, TableChanges { upserts, deletes });
    }
    if !refusals.is_empty() {
        return Ok(Err(refusals));
    }
    Ok(Ok(Some((out, seqs, converted))))
}

fn delete_rows(
    dst: &mut DbConn,
    table: Table,
    keys: &[(String, Option<String>)],
) -> Result<(), Failure> {
    for part in keys.chunks(5000) {
        match dst {
            DbConn::Pg(c) if table == Table::Chunks => {
                let pairs: Vec<serde_json::Value> = part
                    .iter()
                    .filter_map(|(k, coll)| {
                        let id = k.parse::<i64>().ok()?;
                        Some(serde_json::json!({"c": coll, "i": id}))
                    })
                    .collect();
                let json =
                    serde_json::to_string(&pairs).map_err(|e| Failure::other(e.to_string()))?;
                diesel::sql_query(
                    "DELETE FROM chunks ch USING jsonb_to_recordset($1::jsonb) AS k(c uuid, i bigint) \
                     WHERE ch.collection_id = k.c AND ch.id = k.i",
                )
                .bind::<Text, _>(json)
                .execute(c)?;
            }
            DbConn::Pg(c) => {
                let ks: Vec<&str> = part.iter().map(|(k, _)| k.as_str()).collect();
                diesel::sql_query(format!(
                    "DELETE FROM {} WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::{})",
                    table.name(),
                    if is_int_key(table) { "bigint" } else { "uuid" }
                ))
                .bind::<Text, _>(keys_json(table, &ks)?)
                .execute(c)?;
            }
            DbConn::Sqlite(c) => {
                let ks: Vec<&str> = part.iter().map(|(k, _)| k.as_str()).collect();
                diesel::sql_query(format!(
                    "DELETE FROM {} WHERE id IN (SELECT value FROM json_each(?))",
                    table.name()
                ))
                .bind::<Text, _>(keys_json(table, &ks)?)
                .execute(c)?;
            }
        }
    }
    Ok(())
}

/// The PostgreSQL type a text parameter is cast to.
fn pg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "bigint",
        ColumnType::Int32 => "integer",
        ColumnType::Bool => "boolean",
        ColumnType::Text => "text",
        ColumnType::Uuid => "uuid",
        ColumnType::Json => "jsonb",
        ColumnType::Timestamp => "timestamptz",
    }
}

/// `INSERT … ON CONFLICT (key) DO UPDATE` of whole rows (table columns, then the
/// derived ones), with bound parameters.
fn upsert_rows(dst: &mut DbConn, table: Table, rows: &[Vec<Value>]) -> Result<(), Failure> {
    let spec = table.spec();
    let derived = table.derived_columns();
    let ncols = spec.columns.len() + derived.len();
    let pg = matches!(dst, DbConn::Pg(_));
    // PostgreSQL's chunk key is (collection_id, id).
    let conflict = if pg && table == Table::Chunks {
        "collection_id, id"
    } else {
        "id"
    };
    let key_cols: &[&str] = if pg && table == Table::Chunks {
        &["collection_id", "id"]
    } else {
        &["id"]
    };
    let names: Vec<&str> = spec
        .columns
        .iter()
        .map(|c| c.name)
        .chain(derived.iter().copied())
        .collect();
    let set = names
        .iter()
        .filter(|n| !key_cols.contains(n))
        .map(|n| format!("{n} = excluded.{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let types: Vec<&str> = spec
        .columns
        .iter()
        .map(|c| pg_type(c.ty))
        .chain(derived.iter().map(|_| "text"))
        .collect();
    let per_statement = ((if pg { PG_MAX_BINDS } else { SQLITE_MAX_BINDS }) / ncols).max(1);
    let mut next = 1usize;
    for part in rows.chunks(per_statement) {
        let tuples: Vec<String> = part
            .iter()
            .map(|_| {
                let cells: Vec<String> = (0..ncols)
                    .map(|i| {
                        if pg {
                            let s = format!("${next}::{}", types[i]);
                            next += 1;
                            s
                        } else {
                            "?".to_string()
                        }
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        next = 1;
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({conflict}) DO UPDATE SET {set}",
            table.name(),
            names.join(", "),
            tuples.join(", ")
        );
        match dst {
            DbConn::Pg(c) => {
                let mut q = diesel::sql_query(sql).into_boxed::<Pg>();
                for row in part {
                    for v in row {
                        q = q.bind::<Nullable<Text>, _>(match v {
                            Value::Null => None,
                            Value::Int(i) => Some(i.to_string()),
                            Value::Bool(b) => Some(b.to_string()),
                            Value::Str(s) => Some(s.clone()),
                        });
                    }
                }
                q.execute(c)?;
            }
            DbConn::Sqlite(c) => {
                let mut q = diesel::sql_query(sql).into_boxed::<Sqlite>();
                for row in part {
                    for v in row {
                        q = match v {
                            Value::Null => q.bind::<Nullable<Text>, _>(None::<String>),
                            Value::Int(i) => q.bind::<BigInt, _>(*i),
                            Value::Bool(b) => q.bind::<BigInt, _>(i64::from(*b)),
                            Value::Str(s) => q.bind::<Text, _>(s.clone()),
                        };
                    }
                }
                q.execute(c)?;
            }
        }
    }
    Ok(())
}

/// Deletes the applied change rows from the source (its own short write transaction).
fn delete_changes(src: &mut DbConn, seqs: &[i64]) -> Result<(), Failure> {
    for part in seqs.chunks(10_000) {
        let json = serde_json::to_string(part).map_err(|e| Failure::other(e.to_string()))?;
        match src {
            DbConn::Sqlite(c) => {
                diesel::sql_query(format!(
                    "DELETE FROM {CHANGES} WHERE seq IN (SELECT value FROM json_each(?))"
                ))
                .bind::<Text, _>(json)
                .execute(c)?;
            }
            DbConn::Pg(c) => {
                diesel::sql_query(format!(
                    "DELETE FROM {CHANGES} WHERE seq IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint)"
                ))
                .bind::<Text, _>(json)
                .execute(c)?;
            }
        }
    }
    Ok(())
}

/// The exit code for a replay that found rows the target cannot take.
pub const REFUSED: u8 = exit::REFUSED;
