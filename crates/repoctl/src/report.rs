//! Per-table statistics, refusals, the terminal summary and the JSON report.

use crate::schema::Table;
use crate::value::ConversionKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A refused row (one entry per offending column).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refusal {
    /// Table.
    pub table: Table,
    /// Primary key (`id`) as text.
    pub key: String,
    /// Offending column.
    pub column: String,
    /// Why the value or row cannot be represented on the target.
    pub reason: String,
}

/// One converted value.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertedValue {
    /// Primary key.
    pub key: String,
    /// As stored in the source.
    pub from: String,
    /// As written to the target.
    pub to: String,
}

/// Conversions of one kind in one column.
#[derive(Debug, Clone, Serialize)]
pub struct ConversionReport {
    /// Column.
    pub column: String,
    /// Kind.
    pub kind: ConversionKind,
    /// How many values.
    pub count: u64,
    /// Every converted value, with its row's key (the JSON report lists them all).
    pub values: Vec<ConvertedValue>,
}

/// What happened to one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// Table.
    pub table: Table,
    /// Rows in the source when the copy started.
    pub source_rows: u64,
    /// Rows read.
    pub read: u64,
    /// Rows written to the target (0 in a dry run).
    pub written: u64,
    /// Rows already in the target (`--resume`).
    pub already_present: u64,
    /// Rows with at least one converted value.
    pub converted_rows: u64,
    /// Rows refused.
    pub refused_rows: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Conversions by column and kind.
    pub conversions: Vec<ConversionReport>,
    #[serde(skip)]
    conv_index: BTreeMap<(String, ConversionKind), usize>,
}

impl TableReport {
    /// An empty report for `table`.
    pub fn new(table: Table) -> Self {
        TableReport {
            table,
            source_rows: 0,
            read: 0,
            written: 0,
            already_present: 0,
            converted_rows: 0,
            refused_rows: 0,
            seconds: 0.0,
            conversions: Vec::new(),
            conv_index: BTreeMap::new(),
        }
    }

    /// Records one converted value.
    pub fn add_conversion(
        &mut self,
        column: &str,
        kind: ConversionKind,
        key: &str,
        from: String,
        to: String,
    ) {
        let idx = *self
            .conv_index
            .entry((column.to_owned(), kind))
            .or_insert_with(|| {
                self.conversions.push(ConversionReport {
                    column: column.to_owned(),
                    kind,
                    count: 0,
                    values: Vec::new(),
                });
                self.conversions.len() - 1
            });
        let c = &mut self.conversions[idx];
        c.count += 1;
        c.values.push(ConvertedValue {
            key: key.to_owned(),
            from,
            to,
        });
    }
}

/// Verification of one table.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyRow {
    /// Table.
    pub table: Table,
    /// Rows counted in the source (excluding refused rows after a copy).
    pub source_rows: u64,
    /// Rows in the target.
    pub target_rows: u64,
    /// Source content checksum.
    pub source_checksum: String,
    /// Target content checksum.
    pub target_checksum: String,
    /// Rows left out of the source side because the copy refused them.
    pub excluded_refused: u64,
    /// Counts and checksums agree.
    pub equal: bool,
}

/// The JSON report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `copy` or `verify`.
    pub command: &'static str,
    /// Source (password redacted).
    pub source: String,
    /// Target (password redacted).
    pub target: String,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// `stop` or `skip-row`.
    pub on_error: String,
    /// Rows per batch.
    pub batch_size: usize,
    /// Tables in copy order.
    pub tables: Vec<TableReport>,
    /// Every refused row.
    pub refusals: Vec<Refusal>,
    /// Identity sequences after the load: table → next id.
    pub sequences: BTreeMap<String, i64>,
    /// Verification, when it ran.
    pub verification: Option<Vec<VerifyRow>>,
    /// Notes (schema, target state, added tables, …).
    pub notes: Vec<String>,
    /// Whether the copy stopped early (`--on-error stop`).
    pub stopped: bool,
    /// Exit code of the run.
    pub exit_code: u8,
    /// Peak resident memory of the process, in KiB (Linux).
    pub peak_rss_kib: Option<u64>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Peak resident set size of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The per-table summary table.
pub fn summary_table(tables: &[TableReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "table", "source", "read", "written", "present", "converted", "refused", "time"
    );
    let mut total = TableReport::new(Table::Users);
    for t in tables {
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8.2}s",
            t.table.name(),
            t.source_rows,
            t.read,
            t.written,
            t.already_present,
            t.converted_rows,
            t.refused_rows,
            t.seconds
        );
        total.source_rows += t.source_rows;
        total.read += t.read;
        total.written += t.written;
        total.already_present += t.already_present;
        total.converted_rows += t.converted_rows;
        total.refused_rows += t.refused_rows;
        total.seconds += t.seconds;
    }
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8.2}s",
        "total",
        total.source_rows,
        total.read,
        total.written,
        total.already_present,
        total.converted_rows,
        total.refused_rows,
        total.seconds
    );
    out
}

/// The conversions, one line per (table, column, kind) with an example.
pub fn conversions_text(tables: &[TableReport]) -> String {
    let mut out = String::new();
    for t in tables {
        for c in &t.conversions {
            let example = c
                .values
                .first()
                .map(|e| format!(" (e.g. id={}: {:?} → {:?})", e.key, e.from, e.to))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}.{}: {} value(s) {}{example}",
                t.table.name(),
                c.column,
                c.count,
                c.kind.as_str()
            );
        }
    }
    out
}

/// Every refusal, one per line.
pub fn refusals_text(refusals: &[Refusal]) -> String {
    let mut out = String::new();
    for r in refusals {
        let _ = writeln!(
            out,
            "  {} id={} {}: {}",
            r.table.name(),
            r.key,
            r.column,
            r.reason
        );
    }
    out
}

/// The verification table.
pub fn verify_table(rows: &[VerifyRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>10}  {:<16}  {:<16}  result",
        "table", "source", "target", "source sum", "target sum"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10}  {:<16}  {:<16}  {}{}",
            r.table.name(),
            r.source_rows,
            r.target_rows,
            &r.source_checksum[..16.min(r.source_checksum.len())],
            &r.target_checksum[..16.min(r.target_checksum.len())],
            if r.equal { "equal" } else { "MISMATCH" },
            if r.excluded_refused > 0 {
                format!(
                    " ({} refused row(s) left out of the source side)",
                    r.excluded_refused
                )
            } else {
                String::new()
            }
        );
    }
    out
}

/// What `verify` says when the difference is exactly the rows a copy refuses.
pub fn refused_difference_text(by_table: &[(Table, u64)]) -> String {
    let total: u64 = by_table.iter().map(|(_, n)| n).sum();
    let tables: Vec<String> = by_table
        .iter()
        .map(|(t, n)| format!("{} {n}", t.name()))
        .collect();
    format!(
        "the difference is exactly the {total} source row(s) a copy refuses ({}): \
         `copy --on-error skip-row` leaves them out; the copy's --report file lists each \
         with its table, key, column and reason under \"refusals\" (or list them again \
         with `repoctl copy --dry-run` from the same source)",
        tables.join(", ")
    )
}
