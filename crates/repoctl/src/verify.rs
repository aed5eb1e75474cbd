//! Row counts and content checksums, computed the same way on both backends.
//!
//! Every row is read as raw values, converted with the copy's own rules (so a
//! timestamp is compared as its canonical UTC text to the microsecond, a boolean as
//! `true`/`false`, JSON in canonical form, ids and text as they are), encoded
//! unambiguously (tag, length, bytes per column) and hashed with SHA-256. The table's
//! checksum is the sum of the row digests modulo 2^256, hashed once more with the row
//! count: it does not depend on row order, so each side streams in its cheapest order
//! (no sort of a partitioned `chunks` table whose primary key does not start with
//! `id`), and memory stays flat.

use crate::conn::{begin_snapshot, end_snapshot, DbConn, Endpoint, Role, Scan};
use crate::error::{Failure, Secrets};
use crate::progress::{Progress, Task};
use crate::report::VerifyRow;
use crate::schema::Table;
use crate::value::{convert, encode_canonical};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// Count and order-independent digest sum of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSum {
    /// Rows hashed.
    pub rows: u64,
    /// Sum of row digests modulo 2^256 (little-endian limbs).
    pub sum: [u64; 4],
    /// Rows left out because their key was excluded.
    pub excluded: u64,
}

impl TableSum {
    fn add(&mut self, digest: &[u8]) {
        let mut carry = 0u128;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&digest[i * 8..i * 8 + 8]);
            let v = u128::from(*limb) + u128::from(u64::from_le_bytes(b)) + carry;
            *limb = v as u64;
            carry = v >> 64;
        }
        self.rows += 1;
    }

    /// Hex checksum of the count and the sum.
    pub fn hex(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.rows.to_le_bytes());
        for l in self.sum {
            h.update(l.to_le_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Checksums `table` on an open connection (inside a snapshot for PostgreSQL),
/// leaving out rows whose key is in `exclude`.
pub fn checksum_table(
    conn: &mut DbConn,
    origin: crate::value::Origin,
    table: Table,
    batch: usize,
    exclude: Option<&HashSet<String>>,
    task: &Task,
) -> Result<TableSum, Failure> {
    let spec = table.spec();
    let offset = Scan::offset(conn);
    let mut scan = Scan::new(table, batch);
    let mut sum = TableSum::default();
    let mut buf = Vec::with_capacity(1024);
    loop {
        let rows = scan.next(conn, false)?;
        if rows.is_empty() {
            break;
        }
        task.inc(rows.len() as u64);
        for row in &rows {
            buf.clear();
            let mut key = None;
            for (i, col) in spec.columns.iter().enumerate() {
                let converted = convert(col, origin, row, offset + i);
                let raw;
                let value = match &converted {
                    Ok((v, _)) => Ok(v),
                    Err(_) => {
                        raw = row.display(offset + i);
                        Err(raw.as_str())
                    }
                };
                if i == spec.pk {
                    key = Some(match value {
                        Ok(v) => v.key_text(),
                        Err(r) => r.to_owned(),
                    });
                }
                encode_canonical(col.ty, value, &mut buf);
            }
            if let (Some(ex), Some(k)) = (exclude, &key) {
                if ex.contains(k) {
                    sum.excluded += 1;
                    continue;
                }
            }
            sum.add(&Sha256::digest(&buf));
        }
    }
    Ok(sum)
}

/// Checksums every table of `tables` on `endpoint`, in one snapshot.
pub fn checksum_all(
    endpoint: &Endpoint,
    secrets: &Secrets,
    tables: &[Table],
    batch: usize,
    exclude: &HashMap<Table, HashSet<String>>,
    side: &str,
    progress: &Progress,
) -> Result<Vec<TableSum>, Failure> {
    let mut conn = DbConn::open(endpoint, Role::Read, secrets)?;
    begin_snapshot(&mut conn)?;
    let mut out = Vec::new();
    for &t in tables {
        let task = progress.task(&format!("verify {} ({side})", t.name()), None);
        out.push(checksum_table(
            &mut conn,
            endpoint.origin(),
            t,
            batch,
            exclude.get(&t),
            &task,
        )?);
        task.finish();
    }
    end_snapshot(&mut conn)?;
    Ok(out)
}

/// Verifies `tables` of `to` against `from` (both sides in parallel). Rows of the
/// source whose key is in `exclude` (refused by a copy) are left out of its side.
pub fn verify(
    from: &Endpoint,
    to: &Endpoint,
    secrets: &Secrets,
    tables: &[Table],
    batch: usize,
    exclude: &HashMap<Table, HashSet<String>>,
    progress: &Progress,
) -> Result<Vec<VerifyRow>, Failure> {
    let (source, target) = std::thread::scope(|s| {
        let target = s.spawn(|| {
            checksum_all(
                to,
                secrets,
                tables,
                batch,
                &HashMap::new(),
                "target",
                progress,
            )
        });
        let source = checksum_all(from, secrets, tables, batch, exclude, "source", progress);
        let target = target
            .join()
            .unwrap_or_else(|_| Err(Failure::other("verification thread panicked")));
        (source, target)
    });
    let (source, target) = (source?, target?);
    Ok(verify_rows(tables, &source, &target))
}

/// One [`VerifyRow`] per table from the checksums of both sides (in `tables` order).
pub fn verify_rows(tables: &[Table], source: &[TableSum], target: &[TableSum]) -> Vec<VerifyRow> {
    tables
        .iter()
        .zip(source.iter().zip(target.iter()))
        .map(|(&table, (s, t))| VerifyRow {
            table,
            source_rows: s.rows,
            target_rows: t.rows,
            source_checksum: s.hex(),
            target_checksum: t.hex(),
            excluded_refused: s.excluded,
            equal: s.rows == t.rows && s.sum == t.sum,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_is_order_independent_and_carries() {
        let a = Sha256::digest(b"a");
        let b = Sha256::digest(b"b");
        let mut x = TableSum::default();
        x.add(&a);
        x.add(&b);
        let mut y = TableSum::default();
        y.add(&b);
        y.add(&a);
        assert_eq!(x, y);
        let mut z = TableSum::default();
        z.add(&[0xff; 32]);
        z.add(&[
            0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0,
        ]);
        assert_eq!(z.sum, [0, 0, 0, 0]);
        assert_eq!((x.rows, z.rows), (2, 2));
        assert_ne!(x.hex(), z.hex());
    }

    /// A table is equal only when both the counts and the sums are: a changed value
    /// with the same count, or an extra row whose digest sums to the same, is not.
    #[test]
    fn equal_needs_the_same_count_and_the_same_sum() {
        let sum = |rows, first| TableSum {
            rows,
            sum: [first, 0, 0, 0],
            excluded: 0,
        };
        let tables = [Table::Users, Table::ApiKeys, Table::Collections];
        let source = [sum(3, 7), sum(3, 7), sum(3, 7)];
        let target = [sum(3, 7), sum(3, 8), sum(4, 7)];
        let rows = verify_rows(&tables, &source, &target);
        let equal: Vec<_> = rows.iter().map(|r| (r.table, r.equal)).collect();
        assert_eq!(
            equal,
            [
                (Table::Users, true),
                (Table::ApiKeys, false),
                (Table::Collections, false)
            ]
        );
        assert_eq!((rows[2].source_rows, rows[2].target_rows), (3, 4));
        assert_ne!(rows[1].source_checksum, rows[1].target_checksum);
    }
}
