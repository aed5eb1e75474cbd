//! `repoctl copy`: streams every table from the source to the target in foreign-key
//! order, converting and validating each value, and ends with a verification.
//!
//! The source is read in one snapshot (SQLite read transaction, PostgreSQL
//! `REPEATABLE READ READ ONLY`) in pages of `--batch-size` rows. The main thread reads
//! and converts; a writer thread loads each page into the target in its own
//! transaction, so at most a few pages are in memory at once. Foreign keys are checked
//! against the source (the parent exists there and was not refused), which gives the
//! same answer in a dry run as in a real copy.

use crate::conn::{begin_snapshot, end_snapshot, DbConn, Endpoint, Role, Scan};
use crate::domain;
use crate::error::{exit, Failure, Secrets};
use crate::migrate;
use crate::progress::{Mode, Progress};
use crate::report::{self, Refusal, Report, TableReport, VerifyRow};
use crate::schema::{Table, TableSpec};
use crate::target::{self, Batch, Payload, Writer};
use crate::value::{convert, encode_copy, row_rules, ConversionKind, Origin, RawRow, Value};
use crate::verify;
use repo_core::BackendKind;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

/// What to do with a row that cannot be represented on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Stop at the first refused row; nothing further is written.
    Stop,
    /// Skip the row, report it, and go on (rows referencing it are refused too).
    SkipRow,
}

/// Options of a copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Source.
    pub from: Endpoint,
    /// Target.
    pub to: Endpoint,
    /// Tables asked for (`None`: all); their parents are added.
    pub tables: Option<Vec<Table>>,
    /// Rows per page and per target transaction.
    pub batch_size: usize,
    /// Read and validate everything, write nothing.
    pub dry_run: bool,
    /// Empty every table of the target first.
    pub truncate: bool,
    /// Continue a killed copy: rows already in the target are left out.
    pub resume: bool,
    /// Refused-row policy.
    pub on_error: OnError,
    /// JSON report file.
    pub report: Option<PathBuf>,
    /// Show progress: bars when stderr is a terminal, plain lines otherwise.
    pub progress: bool,
    /// Longest gap between two progress lines (line mode).
    pub progress_every: std::time::Duration,
    /// Verify after copying.
    pub verify: bool,
}

/// Refusals keyed by the row's position in its page.
pub(crate) type Refusals = Vec<(usize, Refusal)>;

/// Rows of one page after conversion.
pub(crate) struct Good {
    pub(crate) key: String,
    pub(crate) values: Vec<Value>,
    pub(crate) conversions: Vec<(usize, ConversionKind, String)>,
    pub(crate) row: usize,
}

/// Schema state of one side.
struct SchemaState {
    versions: Vec<String>,
    problem: Option<String>,
}

fn schema_state(
    conn: &mut DbConn,
    backend: BackendKind,
    tables: &[Table],
) -> Result<SchemaState, Failure> {
    let versions = conn.applied_versions()?;
    let known = migrate::known_versions(backend)?;
    let problem = if versions.is_empty() {
        Some("has no schema (no migrations applied)".to_string())
    } else if versions != known {
        let pending: Vec<&String> = known.iter().filter(|k| !versions.contains(k)).collect();
        let unknown: Vec<&String> = versions.iter().filter(|v| !known.contains(v)).collect();
        Some(if !unknown.is_empty() {
            format!("has migrations this repoctl does not know: {unknown:?} (use a newer repoctl)")
        } else {
            format!("has pending migrations {pending:?} (run `repoctl migrate up` on it)")
        })
    } else {
        let mut missing = Vec::new();
        for &t in tables {
            let cols = conn.columns(t)?;
            for c in t.spec().columns {
                if !cols.iter().any(|x| x == c.name) {
                    missing.push(format!("{t}.{}", c.name));
                }
            }
        }
        (!missing.is_empty()).then(|| format!("lacks columns {}", missing.join(", ")))
    };
    Ok(SchemaState { versions, problem })
}

pub(crate) fn same_database(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Postgres(x), Endpoint::Postgres(y)) => x == y,
        (Endpoint::Sqlite(_), Endpoint::Sqlite(_)) => match (a.sqlite_path(), b.sqlite_path()) {
            (Some(x), Some(y)) => match (x.canonicalize(), y.canonicalize()) {
                (Ok(x), Ok(y)) => x == y,
                _ => x == y,
            },
            _ => false,
        },
        _ => false,
    }
}

/// Runs a copy; prints the summary; writes the report. Returns the exit code.
pub fn run(opts: &CopyOptions, secrets: &Secrets) -> Result<u8, Failure> {
    let started = Instant::now();
    let mut report = new_report(opts);
    let progress = Progress::new(Mode::for_stderr(opts.progress, opts.progress_every));
    progress.header(&header(opts, &report));
    let result = copy_inner(opts, secrets, &mut report, &progress);
    drop(progress);
    let code = match &result {
        Err(f) => f.code,
        Ok(()) => {
            let mismatch = report
                .verification
                .as_ref()
                .is_some_and(|v| v.iter().any(|r| !r.equal));
            if mismatch {
                exit::MISMATCH
            } else if !report.refusals.is_empty() {
                exit::REFUSED
            } else {
                exit::OK
            }
        }
    };
    report.exit_code = code;
    report.seconds = started.elapsed().as_secs_f64();
    report.peak_rss_kib = report::peak_rss_kib();
    print_summary(&report, opts);
    if let Err(f) = &result {
        eprintln!("error: {}", secrets.scrub(&f.message));
    }
    if let Some(path) = &opts.report {
        let json = serde_json::to_vec_pretty(&report).map_err(|e| Failure::other(e.to_string()))?;
        std::fs::write(path, json).map_err(|e| {
            Failure::other(format!("cannot write the report {}: {e}", path.display()))
        })?;
    }
    Ok(code)
}

/// An empty report of a copy with `opts`.
fn new_report(opts: &CopyOptions) -> Report {
    Report {
        command: "copy",
        source: opts.from.display(),
        target: opts.to.display(),
        dry_run: opts.dry_run,
        on_error: match opts.on_error {
            OnError::Stop => "stop".into(),
            OnError::SkipRow => "skip-row".into(),
        },
        batch_size: opts.batch_size,
        tables: Vec::new(),
        refusals: Vec::new(),
        sequences: Default::default(),
        verification: None,
        notes: Vec::new(),
        stopped: false,
        exit_code: 0,
        peak_rss_kib: None,
        seconds: 0.0,
    }
}

/// The first line of the summary (and, on a pipe, of the log).
fn header(opts: &CopyOptions, report: &Report) -> String {
    format!(
        "repoctl copy{}: {} → {}",
        if opts.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        },
        report.source,
        report.target
    )
}

fn print_summary(report: &Report, opts: &CopyOptions) {
    let mut out = header(opts, report);
    out.push('\n');
    for n in &report.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    if !report.tables.is_empty() {
        out.push('\n');
        out.push_str(&report::summary_table(&report.tables));
    }
    let conversions = report::conversions_text(&report.tables);
    if !conversions.is_empty() {
        out.push_str("\nconverted values (same meaning, canonical form):\n");
        out.push_str(&conversions);
    }
    if !report.refusals.is_empty() {
        let rows: BTreeSet<(Table, &str)> = report
            .refusals
            .iter()
            .map(|r| (r.table, r.key.as_str()))
            .collect();
        out.push_str(&format!(
            "\n{} row(s) {}refused:\n",
            rows.len(),
            if opts.dry_run { "would be " } else { "" }
        ));
        out.push_str(&report::refusals_text(&report.refusals));
        if report.stopped {
            out.push_str(
                "the copy stopped at this row (--on-error stop): its batch and everything after \
                 it were not written; fix the source and run again with --resume, or use \
                 --on-error skip-row\n",
            );
        } else if opts.dry_run && opts.on_error == OnError::Stop {
            out.push_str("with --on-error stop the copy would stop at the first of these rows\n");
        }
    }
    if let Some(v) = &report.verification {
        out.push_str("\nverification:\n");
        out.push_str(&report::verify_table(v));
    }
    if !report.sequences.is_empty() {
        let s: Vec<String> = report
            .sequences
            .iter()
            .map(|(t, v)| format!("{t} → {v}"))
            .collect();
        out.push_str(&format!("\nsequences reset (next id): {}\n", s.join(", ")));
    }
    out.push_str(&format!(
        "\ntime {:.2}s, peak memory {} — exit code {}\n",
        report.seconds,
        report
            .peak_rss_kib
            .map_or("unknown".to_string(), |k| format!(
                "{:.1} MiB",
                k as f64 / 1024.0
            )),
        report.exit_code
    ));
    print!("{out}");
}

fn copy_inner(
    opts: &CopyOptions,
    secrets: &Secrets,
    report: &mut Report,
    progress: &Progress,
) -> Result<(), Failure> {
    if same_database(&opts.from, &opts.to) {
        return Err(Failure {
            code: exit::USAGE,
            message: "source and target are the same database".into(),
        });
    }
    let tables = match &opts.tables {
        None => Table::ALL.to_vec(),
        Some(asked) => {
            let all = Table::with_dependencies(asked);
            let added: Vec<&str> = all
                .iter()
                .filter(|t| !asked.contains(t))
                .map(|t| t.name())
                .collect();
            if !added.is_empty() {
                report.notes.push(format!(
                    "also copying {} (the selected tables reference them)",
                    added.join(", ")
                ));
            }
            all
        }
    };

    // Source: must exist and be at the version this build knows.
    let mut src = DbConn::open(&opts.from, Role::Read, secrets)?;
    let src_state = schema_state(&mut src, opts.from.backend(), &tables)?;
    if let Some(p) = &src_state.problem {
        return Err(Failure::not_ready(format!(
            "the source {} {p}",
            opts.from.display()
        )));
    }

    // Target: migrate when needed (never in a dry run), then compare.
    let mut target_conn = None;
    let mut target_rows: HashMap<Table, u64> = HashMap::new();
    if opts.dry_run {
        if !opts.to.exists() {
            report.notes.push(
                "the target does not exist: the copy would create it and run the migrations".into(),
            );
        } else {
            let mut t = DbConn::open(&opts.to, Role::Read, secrets)?;
            let state = schema_state(&mut t, opts.to.backend(), &tables)?;
            match &state.problem {
                None => report.notes.push(format!(
                    "schema compatible: both sides at migration {}",
                    state.versions.last().map_or("-", String::as_str)
                )),
                Some(p) if state.versions.is_empty() || p.contains("pending") => report.notes.push(
                    format!("the target {p}: the copy would run the migrations first"),
                ),
                Some(p) => {
                    return Err(Failure::not_ready(format!(
                        "the target {} {p}",
                        opts.to.display()
                    )))
                }
            }
            if state.problem.is_none() {
                for t2 in Table::ALL {
                    target_rows.insert(t2, t.count(t2)?);
                }
            }
            target_conn = Some(t);
        }
    } else {
        let applied = migrate::up(&opts.to, secrets)?;
        if !applied.is_empty() {
            report.notes.push(format!(
                "ran migrations on the target: {}",
                applied.join(", ")
            ));
        }
        let mut t = DbConn::open(&opts.to, Role::Write, secrets)?;
        let state = schema_state(&mut t, opts.to.backend(), &tables)?;
        if let Some(p) = &state.problem {
            return Err(Failure::not_ready(format!(
                "the target {} {p}",
                opts.to.display()
            )));
        }
        if state.versions != src_state.versions {
            return Err(Failure::not_ready(
                "source and target are at different migration versions",
            ));
        }
        report.notes.push(format!(
            "schema compatible: both sides at migration {}",
            state.versions.last().map_or("-", String::as_str)
        ));
        for t2 in Table::ALL {
            target_rows.insert(t2, t.count(t2)?);
        }
        target_conn = Some(t);
    }

    let non_empty: Vec<String> = Table::ALL
        .iter()
        .filter_map(|t| {
            target_rows
                .get(t)
                .filter(|n| **n > 0)
                .map(|n| format!("{t} ({n})"))
        })
        .collect();
    let mut resume_from = HashMap::new();
    if !non_empty.is_empty() {
        if opts.truncate {
            if opts.dry_run {
                report.notes.push(format!(
                    "the target is not empty ({}): --truncate would empty it",
                    non_empty.join(", ")
                ));
            } else if let Some(t) = target_conn.as_mut() {
                target::truncate_all(t)?;
                report.notes.push(format!(
                    "emptied the target first (--truncate): {}",
                    non_empty.join(", ")
                ));
            }
        } else if opts.resume {
            report.notes.push(format!(
                "resuming: rows already in the target are left out ({})",
                non_empty.join(", ")
            ));
            if let Some(t) = target_conn.as_mut() {
                for &table in &tables {
                    if target_rows.get(&table).is_some_and(|n| *n > 0) {
                        if let Some(max) = t.max_key(table)? {
                            resume_from.insert(table, max);
                        }
                    }
                }
            }
        } else {
            return Err(Failure::not_ready(format!(
                "the target {} is not empty: {}; nothing was written (use --truncate to replace its \
                 contents, or --resume to continue an interrupted copy)",
                opts.to.display(),
                non_empty.join(", ")
            )));
        }
    }

    let writer = Writer {
        conn: if opts.dry_run && resume_from.is_empty() {
            None
        } else {
            target_conn
        },
        write: !opts.dry_run,
        resume_from,
        counts: HashMap::new(),
    };
    let pg_target = opts.to.backend() == BackendKind::Postgres;

    // Sequence marks and every page of every table inside one source snapshot.
    begin_snapshot(&mut src)?;
    let mut marks = HashMap::new();
    for &t in &tables {
        if t.spec().has_sequence {
            marks.insert(t, src.sequence_mark(t)?);
        }
    }
    let mut refused: HashMap<Table, HashSet<String>> = HashMap::new();
    let (read_result, mut writer, writer_error) = if opts.dry_run {
        let mut writer = writer;
        let r = read_all(
            opts,
            &mut src,
            &tables,
            progress,
            pg_target,
            report,
            &mut refused,
            &mut |b| writer.handle(b),
        );
        (r, writer, None)
    } else {
        std::thread::scope(|s| {
            let (tx, rx) = sync_channel::<Batch>(2);
            // The writer hands itself back (with its counts and connection) even when
            // a batch fails, so the summary can say what was written.
            let handle = s.spawn(move || -> (Writer, Option<Failure>) {
                let mut writer = writer;
                for batch in rx {
                    if let Err(e) = writer.handle(batch) {
                        return (writer, Some(e));
                    }
                }
                (writer, None)
            });
            let r = read_all(
                opts,
                &mut src,
                &tables,
                progress,
                pg_target,
                report,
                &mut refused,
                &mut |b| {
                    tx.send(b)
                        .map_err(|_| Failure::other("the target writer stopped"))
                },
            );
            drop(tx);
            let (w, e) = handle.join().unwrap_or_else(|_| {
                (
                    Writer {
                        conn: None,
                        write: false,
                        resume_from: HashMap::new(),
                        counts: HashMap::new(),
                    },
                    Some(Failure::other("the target writer panicked")),
                )
            });
            (r, w, e)
        })
    };
    let _ = end_snapshot(&mut src);
    for t in &mut report.tables {
        let c = writer.counts.get(&t.table).copied().unwrap_or_default();
        t.written = c.written;
        t.already_present = c.present;
    }
    if let Some(e) = writer_error {
        return Err(e);
    }
    read_result?;

    // A copy that put no row into the target (stopped at its first row, or every row
    // refused) leaves the target's sequences as they were.
    let copied: u64 = report
        .tables
        .iter()
        .map(|t| t.written + t.already_present)
        .sum();
    if !opts.dry_run && copied == 0 {
        report
            .notes
            .push("no row was written: the target's sequences were left as they were".into());
    }
    if !opts.dry_run {
        if let Some(conn) = writer.conn.as_mut().filter(|_| copied > 0) {
            for &t in &tables {
                if t.spec().has_sequence {
                    let next = conn.reset_sequence(t, marks.get(&t).copied().flatten())? + 1;
                    report.sequences.insert(t.name().to_string(), next);
                }
            }
        }
        drop(writer);
        if opts.verify && !report.stopped {
            let rows: Vec<VerifyRow> = verify::verify(
                &opts.from,
                &opts.to,
                secrets,
                &tables,
                opts.batch_size.max(1000),
                &refused,
                progress,
            )?;
            report.verification = Some(rows);
        }
    }
    Ok(())
}

/// The rows of `from` a copy refuses (what `--on-error skip-row` leaves out), by
/// table: a dry run's read of the source in one snapshot, writing nothing.
pub fn refused_rows(
    from: &Endpoint,
    secrets: &Secrets,
    tables: &[Table],
    batch_size: usize,
) -> Result<HashMap<Table, HashSet<String>>, Failure> {
    let opts = CopyOptions {
        from: from.clone(),
        to: from.clone(),
        tables: Some(tables.to_vec()),
        batch_size,
        dry_run: true,
        truncate: false,
        resume: false,
        on_error: OnError::SkipRow,
        report: None,
        progress: false,
        progress_every: crate::progress::DEFAULT_EVERY,
        verify: false,
    };
    let mut report = new_report(&opts);
    let mut src = DbConn::open(from, Role::Read, secrets)?;
    begin_snapshot(&mut src)?;
    let mut refused = HashMap::new();
    let read = read_all(
        &opts,
        &mut src,
        tables,
        &Progress::off(),
        false,
        &mut report,
        &mut refused,
        &mut |_| Ok(()),
    );
    let _ = end_snapshot(&mut src);
    read?;
    Ok(refused)
}

/// When `to` differs from `from` only by the rows a copy refuses (what `copy
/// --on-error skip-row` leaves out), their number per table; `None` otherwise.
pub fn explained_by_refusals(
    from: &Endpoint,
    to: &Endpoint,
    secrets: &Secrets,
    tables: &[Table],
    batch: usize,
    progress: &Progress,
) -> Result<Option<Vec<(Table, u64)>>, Failure> {
    let refused = refused_rows(from, secrets, tables, batch)?;
    if refused.values().all(HashSet::is_empty) {
        return Ok(None);
    }
    let rows = verify::verify(from, to, secrets, tables, batch, &refused, progress)?;
    Ok(rows.iter().all(|r| r.equal).then(|| {
        rows.iter()
            .filter(|r| r.excluded_refused > 0)
            .map(|r| (r.table, r.excluded_refused))
            .collect()
    }))
}

#[allow(clippy::too_many_arguments)]
fn read_all(
    opts: &CopyOptions,
    src: &mut DbConn,
    tables: &[Table],
    progress: &Progress,
    pg_target: bool,
    report: &mut Report,
    refused: &mut HashMap<Table, HashSet<String>>,
    sink: &mut dyn FnMut(Batch) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let origin = opts.from.origin();
    let offset = Scan::offset(src);
    let stop_mode = opts.on_error == OnError::Stop && !opts.dry_run;
    for &table in tables {
        let spec = table.spec();
        let started = Instant::now();
        let mut tr = TableReport::new(table);
        tr.source_rows = src.count(table)?;
        let pb = progress.task(table.name(), Some(tr.source_rows));
        let mut scan = Scan::new(table, opts.batch_size);
        let mut stopped = false;
        loop {
            let raw = scan.next(src, true)?;
            if raw.is_empty() {
                break;
            }
            tr.read += raw.len() as u64;
            let (good, mut bad) = convert_page(spec, table, origin, offset, &raw);
            let (good, fk_bad) = check_foreign_keys(src, spec, table, good, refused)?;
            bad.extend(fk_bad);
            bad.sort_by_key(|(row, _)| *row);
            if !bad.is_empty() && stop_mode {
                let first = bad[0].0;
                let first_refusals: Vec<Refusal> = bad
                    .into_iter()
                    .filter(|(r, _)| *r == first)
                    .map(|(_, f)| f)
                    .collect();
                tr.refused_rows += 1;
                report.refusals.extend(first_refusals);
                report.stopped = true;
                stopped = true;
                let _ = scan.finish(src);
                break;
            }
            let refused_rows: BTreeSet<usize> = bad.iter().map(|(r, _)| *r).collect();
            tr.refused_rows += refused_rows.len() as u64;
            let set = refused.entry(table).or_default();
            for (_, f) in bad {
                set.insert(f.key.clone());
                report.refusals.push(f);
            }
            if good.is_empty() {
                pb.inc(raw.len() as u64);
                continue;
            }
            let mut keys = Vec::with_capacity(good.len());
            let mut collections = Vec::new();
            for g in &good {
                if !g.conversions.is_empty() {
                    tr.converted_rows += 1;
                    for (ci, kind, to) in &g.conversions {
                        tr.add_conversion(
                            spec.columns[*ci].name,
                            *kind,
                            &g.key,
                            raw[g.row].display(offset + ci),
                            to.clone(),
                        );
                    }
                }
            }
            // PostgreSQL: COPY text lines built here, on the reader thread, so the
            // writer only ships bytes. SQLite: the values, bound by the writer.
            let mut copy_text = pg_target.then(|| {
                (
                    Vec::with_capacity(raw.iter().map(|r| r.buf.len() + 64).sum()),
                    Vec::with_capacity(good.len()),
                )
            });
            let mut rows = Vec::with_capacity(if pg_target { 0 } else { good.len() });
            for mut g in good {
                if table == Table::Chunks {
                    collections.push(g.values[1].key_text());
                }
                let derived = crate::value::derived_values(table, &g.values);
                g.values.extend(derived);
                keys.push(g.key);
                match copy_text.as_mut() {
                    Some((bytes, line_ends)) => {
                        for (i, v) in g.values.iter().enumerate() {
                            if i > 0 {
                                bytes.push(b'\t');
                            }
                            encode_copy(v, bytes);
                        }
                        bytes.push(b'\n');
                        line_ends.push(bytes.len());
                    }
                    None => rows.push(g.values),
                }
            }
            let payload = match copy_text {
                Some((bytes, line_ends)) => Payload::Copy { bytes, line_ends },
                None => Payload::Rows(rows),
            };
            sink(Batch {
                table,
                keys,
                collections,
                payload,
            })?;
            pb.inc(raw.len() as u64);
        }
        pb.finish();
        tr.seconds = started.elapsed().as_secs_f64();
        report.tables.push(tr);
        if stopped {
            break;
        }
    }
    Ok(())
}

/// Converts a page: valid rows, and refusals keyed by row position.
pub(crate) fn convert_page(
    spec: &TableSpec,
    table: Table,
    origin: Origin,
    offset: usize,
    raw: &[RawRow],
) -> (Vec<Good>, Refusals) {
    let mut good = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for (ri, row) in raw.iter().enumerate() {
        let key = match convert(&spec.columns[spec.pk], origin, row, offset + spec.pk) {
            Ok((v, _)) => v.key_text(),
            Err(_) => row.display(offset + spec.pk),
        };
        let mut values = Vec::with_capacity(spec.columns.len());
        let mut conversions = Vec::new();
        let mut problems = Vec::new();
        for (ci, col) in spec.columns.iter().enumerate() {
            match convert(col, origin, row, offset + ci) {
                Ok((v, conv)) => {
                    if let Some(kind) = conv {
                        conversions.push((ci, kind, v.key_text()));
                    }
                    values.push(v);
                }
                Err(reason) => {
                    problems.push(Refusal {
                        table,
                        key: key.clone(),
                        column: col.name.to_string(),
                        reason,
                    });
                    values.push(Value::Null);
                }
            }
        }
        if problems.is_empty() {
            if let Err((ci, reason)) =
                row_rules(table, &values).and_then(|()| domain::check(table, &values))
            {
                problems.push(Refusal {
                    table,
                    key: key.clone(),
                    column: spec.columns[ci].name.to_string(),
                    reason,
                });
            }
        }
        if problems.is_empty() {
            good.push(Good {
                key,
                values,
                conversions,
                row: ri,
            });
        } else {
            bad.extend(problems.into_iter().map(|p| (ri, p)));
        }
    }
    (good, bad)
}

/// Refuses rows whose foreign key points to no source row, or to a refused one, or
/// (chunks) to a document of another collection.
fn check_foreign_keys(
    src: &mut DbConn,
    spec: &TableSpec,
    table: Table,
    mut good: Vec<Good>,
    refused: &HashMap<Table, HashSet<String>>,
) -> Result<(Vec<Good>, Refusals), Failure> {
    let mut bad = Vec::new();
    let empty = HashSet::new();
    for fk in spec.foreign_keys {
        let column = spec.columns[fk.column].name;
        let refused_parent = refused.get(&fk.parent).unwrap_or(&empty);
        let keys: BTreeSet<String> = good
            .iter()
            .filter(|g| g.values[fk.column] != Value::Null)
            .map(|g| g.values[fk.column].key_text())
            .filter(|k| !refused_parent.contains(k))
            .collect();
        let keys: Vec<String> = keys.into_iter().collect();
        let found = src.existing_keys(fk.parent, &keys, fk.same_collection.is_some())?;
        good.retain(|g| {
            let v = &g.values[fk.column];
            if *v == Value::Null {
                return true;
            }
            let k = v.key_text();
            let reason = if refused_parent.contains(&k) {
                Some(format!(
                    "{column} = {k}: the referenced {} row was refused",
                    fk.parent
                ))
            } else {
                match found.get(&k) {
                    None => Some(format!("{column} = {k} points to no {} row", fk.parent)),
                    Some(coll) => fk.same_collection.and_then(|sc| {
                        let mine = g.values[sc].key_text();
                        (coll.as_deref() != Some(mine.as_str())).then(|| {
                            format!(
                                "{column} = {k} belongs to collection {}, not {mine}",
                                coll.as_deref().unwrap_or("NULL")
                            )
                        })
                    }),
                }
            };
            match reason {
                None => true,
                Some(reason) => {
                    bad.push((
                        g.row,
                        Refusal {
                            table,
                            key: g.key.clone(),
                            column: column.to_string(),
                            reason,
                        },
                    ));
                    false
                }
            }
        });
    }
    Ok((good, bad))
}
