//! Online migration: the write pause of `repoctl live cutover` for a SQLite source of
//! the copy section's size while writers keep using the store, and the catch-up rate
//! of `repoctl live sync`, against the offline `repoctl copy` of the same source (the
//! time writes must stop on the offline path) in the same run. Full mode only.

use super::copy::{demo_source, repoctl_bin, run, CHUNKS_PER_DOCUMENT};
use super::{progress, Env, Section};
use crate::report::{SectionReport, Table, TargetResult};
use crate::BenchResult;
use repo_core::{
    CollectionId, NewChunk, NewCollection, NewDocument, NewUser, RepoError, Store, StoreConfig,
    UnavailableReason,
};
use repo_postgres::testing::TempDatabase;
use serde::Serialize;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The live-migration section.
pub(crate) struct Live;

/// Issue 17: the write pause at cutover below this many seconds.
const PAUSE_TARGET_S: f64 = 5.0;
/// Writer threads during the migration.
const WRITERS: usize = 2;
/// Pause between two writes of one writer (a steady load, not a saturating one).
const WRITE_EVERY: Duration = Duration::from_millis(10);
/// Chunk rows updated in one statement after the snapshot: the catch-up backlog.
const BACKLOG_UPDATES: usize = 50_000;
const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// The figures of one run.
#[derive(Debug, Serialize)]
struct LiveResult {
    chunk_rows: usize,
    /// Offline `repoctl copy` (verification included): how long writes stop there.
    offline_copy_s: f64,
    /// `repoctl live start` (capture + snapshot copy) while the writers run.
    start_s: f64,
    /// Changes replayed by one `repoctl live sync`, and its seconds.
    catch_up_changes: u64,
    catch_up_s: f64,
    catch_up_changes_per_s: f64,
    /// The pause `repoctl live cutover` measured (flag set → target verified).
    pause_s: f64,
    /// Parts of the pause.
    pause_replay_s: f64,
    pause_verify_s: f64,
    /// Longest time a writer saw its writes refused (first `Maintenance` to its first
    /// write on PostgreSQL), including the switch itself.
    writer_pause_s: f64,
    /// `pause_s` over `offline_copy_s`.
    ratio: f64,
    /// Writes the writers had acknowledged, all found on PostgreSQL.
    writes: u64,
}

/// A writer: documents with three chunks each, in units of work, on `old` until a
/// write gets `Maintenance` after `switched`, then on `new`.
struct WriterState {
    refused_since: Option<Instant>,
    pause: Option<Duration>,
}

/// What the writers share with the run.
#[derive(Default)]
struct Signals {
    /// Stop once on PostgreSQL.
    stop: AtomicBool,
    /// `repoctl live cutover` said "switch DATABASE_URL now".
    switched: AtomicBool,
    /// Writes acknowledged.
    written: AtomicU64,
}

fn writer(
    old: &str,
    new: &str,
    collection: CollectionId,
    w: usize,
    signals: &Signals,
    state: &Mutex<WriterState>,
) -> BenchResult<Vec<repo_core::DocumentId>> {
    let Signals {
        stop,
        switched,
        written,
    } = signals;
    let mut store: Arc<dyn Store> = repo_factory::open(old, &StoreConfig::default())?;
    let mut on_new = false;
    let mut docs = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) || !on_new {
        i += 1;
        let hash = format!("{:064x}", (w as u64) << 48 | i);
        let result = store.transaction(|tx| {
            let d = tx
                .documents()
                .register(&NewDocument::new(
                    collection,
                    format!("/live/{w}/{i}"),
                    format!("{i}.txt"),
                    10,
                    hash.clone(),
                ))?
                .document;
            let chunks: Vec<NewChunk> = (0..3)
                .map(|k| NewChunk::new(d.id, k, format!("live chunk {k} of {i}")))
                .collect();
            tx.chunks().insert_many(collection, &chunks)?;
            Ok(d.id)
        });
        match result {
            Ok(id) => {
                docs.push(id);
                written.fetch_add(1, Ordering::SeqCst);
                let mut s = state.lock().map_err(|_| "writer state poisoned")?;
                if let (Some(since), true) = (s.refused_since, on_new) {
                    if s.pause.is_none() {
                        s.pause = Some(since.elapsed());
                    }
                }
            }
            Err(RepoError::Unavailable {
                reason: UnavailableReason::Maintenance,
                ..
            }) => {
                let mut s = state.lock().map_err(|_| "writer state poisoned")?;
                s.refused_since.get_or_insert_with(Instant::now);
                drop(s);
                if switched.load(Ordering::SeqCst) && !on_new {
                    store = repo_factory::open(new, &StoreConfig::default())?;
                    on_new = true;
                    continue;
                }
            }
            Err(e) if e.is_retryable() => {}
            Err(e) => return Err(format!("writer {w}: {e}").into()),
        }
        std::thread::sleep(WRITE_EVERY);
    }
    Ok(docs)
}

fn measure(chunk_rows: usize) -> BenchResult<LiveResult> {
    let repoctl = repoctl_bin()?;
    let admin = crate::admin_url()?;
    let dir = tempfile::Builder::new()
        .prefix("repo-bench-live.")
        .tempdir()?;
    let (source, rows) = demo_source(&repoctl, dir.path(), chunk_rows, "live")?;
    let source = source.as_str();

    // Baseline: the offline copy, during which the application may not write.
    progress("live: offline repoctl copy (baseline)");
    let offline = TempDatabase::create(&admin)?;
    let started = Instant::now();
    run(Command::new(&repoctl).args([
        "copy",
        "--from",
        source,
        "--to",
        offline.url(),
        "--no-progress",
    ]))?;
    let offline_copy_s = started.elapsed().as_secs_f64();
    drop(offline);

    let target = TempDatabase::create(&admin)?;
    let store = repo_factory::open(source, &StoreConfig::default())?;
    let owner =
        store
            .users()
            .create(&NewUser::new("live_bench", "live_bench@example.com", HASH))?;
    let collection = store
        .collections()
        .create(&NewCollection::new("live bench", owner.id))?
        .id;
    drop(store);

    let signals = Arc::new(Signals::default());
    let states: Vec<Arc<Mutex<WriterState>>> = (0..WRITERS)
        .map(|_| {
            Arc::new(Mutex::new(WriterState {
                refused_since: None,
                pause: None,
            }))
        })
        .collect();
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (signals, state) = (signals.clone(), states[w].clone());
            let (old, new) = (source.to_owned(), target.url().to_owned());
            std::thread::spawn(move || {
                writer(&old, &new, collection, w, &signals, &state).map_err(|e| e.to_string())
            })
        })
        .collect();

    progress(format!("live: repoctl live start with {WRITERS} writers"));
    let started = Instant::now();
    run(Command::new(&repoctl).args([
        "live",
        "start",
        "--from",
        source,
        "--to",
        target.url(),
        "--no-progress",
    ]))?;
    let start_s = started.elapsed().as_secs_f64();

    progress(format!(
        "live: {BACKLOG_UPDATES} chunk updates, then repoctl live sync"
    ));
    run(Command::new("sqlite3").args([
        "-cmd",
        ".timeout 30000",
        source,
        &format!("UPDATE chunks SET token_count = coalesce(token_count, 0) + 1 WHERE id <= {BACKLOG_UPDATES}"),
    ]))?;
    let started = Instant::now();
    let out =
        run(Command::new(&repoctl).args(["live", "sync", "--from", source, "--to", target.url()]))?;
    let catch_up_s = started.elapsed().as_secs_f64();
    let catch_up_changes: u64 = out
        .split_whitespace()
        .skip_while(|w| *w != "applied")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no change count in the output of live sync: {out}"))?;

    std::thread::sleep(Duration::from_secs(2));
    progress("live: repoctl live cutover");
    let report = dir.path().join("cutover.json");
    let report_path = report.to_str().ok_or("temporary path is not UTF-8")?;
    run(Command::new(&repoctl).args([
        "live",
        "cutover",
        "--from",
        source,
        "--to",
        target.url(),
        "--no-progress",
        "--report",
        report_path,
    ]))?;
    signals.switched.store(true, Ordering::SeqCst);
    let cut: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let figure = |k: &str| {
        cut[k]
            .as_f64()
            .ok_or(format!("no {k} in the cutover report"))
    };
    let (pause_s, pause_replay_s, pause_verify_s) = (
        figure("pause_seconds")?,
        figure("replay_in_pause_seconds")?,
        figure("verification_seconds")?,
    );

    // Let every writer reach PostgreSQL, then stop them.
    let waited = Instant::now();
    while states
        .iter()
        .any(|s| s.lock().map(|s| s.pause.is_none()).unwrap_or(false))
    {
        if waited.elapsed() > Duration::from_secs(60) {
            return Err("a writer did not reach PostgreSQL within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    signals.stop.store(true, Ordering::SeqCst);
    let mut docs = Vec::new();
    for h in handles {
        docs.extend(h.join().map_err(|_| "writer panicked")??);
    }
    let pg = repo_factory::open(target.url(), &StoreConfig::default())?;
    for id in &docs {
        pg.documents().get(*id)?;
    }
    let writer_pause_s = states
        .iter()
        .filter_map(|s| s.lock().ok().and_then(|s| s.pause))
        .map(|d| d.as_secs_f64())
        .fold(0.0, f64::max);
    Ok(LiveResult {
        chunk_rows: rows,
        offline_copy_s,
        start_s,
        catch_up_changes,
        catch_up_s,
        catch_up_changes_per_s: catch_up_changes as f64 / catch_up_s,
        pause_s,
        pause_replay_s,
        pause_verify_s,
        writer_pause_s,
        ratio: pause_s / offline_copy_s,
        writes: signals.written.load(Ordering::SeqCst),
    })
}

impl Section for Live {
    fn id(&self) -> &'static str {
        "live"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let mut table = Table::new(
            "SQLite → PostgreSQL while writing",
            &["what", "chunk rows", "seconds", "vs offline copy"],
        );
        let mut targets = Vec::new();
        let result = match env.plan.copy_chunks {
            Some(n) => Some(measure(n)?),
            None => None,
        };
        match &result {
            None => table.row(vec![
                "skipped: full mode only (generating and copying the source takes minutes)"
                    .to_owned(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]),
            Some(r) => {
                let n = r.chunk_rows.to_string();
                table.row(vec![
                    "offline `repoctl copy` (writes stopped throughout)".into(),
                    n.clone(),
                    format!("{:.1}", r.offline_copy_s),
                    "1.00×".into(),
                ]);
                table.row(vec![
                    "`repoctl live start` (writers running)".into(),
                    n.clone(),
                    format!("{:.1}", r.start_s),
                    "–".into(),
                ]);
                table.row(vec![
                    format!(
                        "`repoctl live sync`: {} changes, {:.0} changes/s",
                        r.catch_up_changes, r.catch_up_changes_per_s
                    ),
                    n.clone(),
                    format!("{:.2}", r.catch_up_s),
                    "–".into(),
                ]);
                table.row(vec![
                    format!(
                        "`repoctl live cutover` write pause (last changes {:.2} s, verify {:.2} s)",
                        r.pause_replay_s, r.pause_verify_s
                    ),
                    n.clone(),
                    format!("{:.2}", r.pause_s),
                    format!("{:.3}×", r.ratio),
                ]);
                table.row(vec![
                    "longest pause a writer saw (first refused write → first write on PostgreSQL)"
                        .into(),
                    n,
                    format!("{:.2}", r.writer_pause_s),
                    format!("{:.3}×", r.writer_pause_s / r.offline_copy_s),
                ]);
                targets.push(TargetResult {
                    target: format!(
                        "write pause at cutover < {PAUSE_TARGET_S} s with writers running"
                    ),
                    subject: format!("repoctl live cutover, {} chunk rows", r.chunk_rows),
                    measured: format!("{:.2} s", r.pause_s),
                    met: r.pause_s < PAUSE_TARGET_S,
                });
            }
        }
        Ok(SectionReport {
            id: self.id(),
            title: "Online migration: repoctl live against the offline copy".into(),
            method: format!(
                "The copy section's SQLite source (`repoctl demo-data`, {CHUNKS_PER_DOCUMENT} \
                 chunks per document), generated untimed. Baseline: the offline `repoctl copy` \
                 of it into a fresh database, verification included: the time the application \
                 may not write on the offline path. Then {WRITERS} writer threads use the \
                 SQLite store (a unit of work registering a document and inserting 3 chunks, \
                 every {} ms each) through `repoctl live start`; {BACKLOG_UPDATES} chunk rows \
                 are updated in one statement and one `repoctl live sync` replays the backlog \
                 (changes/s); after 2 s more `repoctl live cutover` runs, and its measured \
                 pause (pause flag set → last changes replayed, every table verified, \
                 sequences reset) is compared with the offline copy time. Each writer then \
                 switches to PostgreSQL at its next refused write; every document a writer saw \
                 acknowledged is read back from PostgreSQL.",
                WRITE_EVERY.as_millis()
            ),
            tables: vec![table],
            notes: Vec::new(),
            targets,
            data: serde_json::to_value(&result)?,
        })
    }
}
