//! The seed's scenarios for the move to PostgreSQL, at 1 to 16 workers on every
//! backend: concurrent collection creation, parallel document indexing, units of work
//! that hold their locks across application work, rollback under load, and recovery
//! after pool exhaustion. Each worker does a fixed amount of work through the store's
//! handle; throughput is the work of all workers over the wall time of the slowest,
//! latencies are per call (per unit of work, per indexing batch) over all workers.

use super::bulk::{chunks, documents};
use super::{progress, Env, Section};
use crate::backend::{label, Backend};
use crate::cli::Plan;
use crate::report::{SectionReport, Table, TargetResult};
use crate::stats::{fmt_ms, nanos, Summary};
use crate::BenchResult;
use repo_core::{
    BackendKind, CollectionId, NewCollection, NewOperation, OperationFilter, OperationKind,
    OperationStatus, PageRequest, PoolConfig, RepoError, RepoResult, Store, StoreConfig, UserId,
};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// The scenarios section.
pub(crate) struct Scenarios;

/// Application work inside each unit of work of the locked-work scenario.
const APPLICATION_WORK: Duration = Duration::from_millis(1);
/// Connections of the pool that the exhaustion scenario exhausts: one, held by one
/// unit of work (two units of work cannot both hold SQLite's write lock).
const EXHAUSTED_POOL: u32 = 1;
/// Checkout wait of that pool (`DB_POOL_TIMEOUT`), short so that calls fail fast.
const EXHAUSTED_TIMEOUT: Duration = Duration::from_millis(200);
/// Documents per `register_many` call of the indexing scenario (and the chunks of
/// those documents per `insert_many` call).
const INDEX_BATCH: usize = 100;
/// Workers from which PostgreSQL should match SQLite's throughput.
const FROM_WORKERS: usize = 4;
/// Workers at which PostgreSQL's p99 should be below SQLite's.
const P99_WORKERS: usize = 8;

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Scenario {
    CollectionCreation,
    ParallelIndexing,
    LockedWork,
    RollbackUnderLoad,
    PoolExhaustion,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::CollectionCreation,
        Scenario::ParallelIndexing,
        Scenario::LockedWork,
        Scenario::RollbackUnderLoad,
        Scenario::PoolExhaustion,
    ];

    fn title(self, plan: &Plan) -> String {
        match self {
            Scenario::CollectionCreation => format!(
                "Concurrent collection creation: each worker creates {} collections",
                plan.scenario_collections
            ),
            Scenario::ParallelIndexing => format!(
                "Parallel document indexing: each worker creates its collection, registers \
                 {} documents in calls of {INDEX_BATCH} and inserts {} chunks per document \
                 after each call (rate in documents/s; latency per batch)",
                plan.scenario_documents, plan.scenario_chunks_per_document
            ),
            Scenario::LockedWork => format!(
                "Units of work holding their locks across {} ms of application work: each \
                 worker runs {} units on its own collection (lock the collection, create an \
                 operation, work, move it to processing, then completed)",
                APPLICATION_WORK.as_millis(),
                plan.scenario_units
            ),
            Scenario::RollbackUnderLoad => format!(
                "Rollback under load: each worker runs {} units on its own collection, every \
                 second one failing after its writes (rolled back), and checks afterwards that \
                 no rolled-back row remains",
                plan.scenario_units
            ),
            Scenario::PoolExhaustion => format!(
                "Recovery after pool exhaustion: a store with a pool of {EXHAUSTED_POOL} \
                 connection (`DB_POOL_TIMEOUT` {} ms); a unit of work holds it for {} ms \
                 while the workers call `users().get` in a loop until one call succeeds; \
                 recovery = the release of the connection → a worker served",
                EXHAUSTED_TIMEOUT.as_millis(),
                plan.scenario_hold.as_millis()
            ),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Scenario::CollectionCreation => "collections/s",
            Scenario::ParallelIndexing => "documents/s",
            Scenario::LockedWork | Scenario::RollbackUnderLoad => "units/s",
            Scenario::PoolExhaustion => "",
        }
    }
}

/// What one scenario gave at one worker count on one backend.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    scenario: Scenario,
    backend: &'static str,
    #[serde(skip)]
    kind: BackendKind,
    workers: usize,
    /// Units of work (collections, documents, units) done by all workers.
    done: usize,
    wall_s: f64,
    per_s: f64,
    latency: Option<Summary>,
    errors: usize,
    first_error: Option<String>,
    /// Scenario-specific figures (rolled back, leaked rows, recovery times).
    extra: serde_json::Value,
}

/// Per-worker record.
#[derive(Default)]
struct Record {
    samples: Vec<u64>,
    done: usize,
    errors: usize,
    first_error: Option<String>,
}

impl Record {
    /// Counts a failed call.
    fn fail(&mut self, e: &RepoError) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    /// Times `f`, counting `units` as done when it succeeds.
    fn time<T>(&mut self, units: usize, f: impl FnOnce() -> RepoResult<T>) -> Option<T> {
        let start = Instant::now();
        match f() {
            Ok(v) => {
                self.samples.push(nanos(start.elapsed()));
                self.done += units;
                Some(v)
            }
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }
}

/// Runs `work(worker)` on `workers` threads that start together; returns the records
/// and the wall time from the first worker's start to the last worker's end (each
/// worker reads the clock itself, so a descheduled coordinator cannot shorten it).
fn run_workers(
    workers: usize,
    work: impl Fn(usize, &mut Record) -> BenchResult<()> + Sync,
) -> BenchResult<(Vec<Record>, Duration)> {
    let barrier = Barrier::new(workers);
    let outcomes: Vec<BenchResult<(Record, Instant, Instant)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || -> BenchResult<(Record, Instant, Instant)> {
                    let mut record = Record::default();
                    barrier.wait();
                    let start = Instant::now();
                    work(w, &mut record)?;
                    Ok((record, start, Instant::now()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let mut records = Vec::with_capacity(workers);
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    for outcome in outcomes {
        let (record, start, end) = outcome?;
        first = Some(first.map_or(start, |f| f.min(start)));
        last = Some(last.map_or(end, |l| l.max(end)));
        records.push(record);
    }
    let wall = match (first, last) {
        (Some(f), Some(l)) => l - f,
        _ => Duration::ZERO,
    };
    Ok((records, wall))
}

/// Unique names across levels and backends of one run.
static SERIAL: AtomicUsize = AtomicUsize::new(0);

fn fresh_collection(store: &dyn Store, owner: UserId, what: &str) -> RepoResult<CollectionId> {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let new = NewCollection::new(format!("scenario {what} {n}"), owner);
    Ok(store.collections().create(&new)?.id)
}

fn new_operation(owner: UserId, collection: CollectionId) -> NewOperation {
    NewOperation::new(
        collection,
        owner,
        OperationKind::Index,
        json!({"source": "/bench/scenario"}),
    )
}

/// The marker error of a unit that is meant to roll back.
fn planned_rollback() -> RepoError {
    RepoError::validation(repo_core::Field::Value, "planned rollback")
}

fn outcome(
    scenario: Scenario,
    backend: &Backend,
    workers: usize,
    records: Vec<Record>,
    wall: Duration,
    extra: serde_json::Value,
) -> Outcome {
    let mut samples = Vec::new();
    let (mut done, mut errors, mut first_error) = (0, 0, None);
    for r in records {
        samples.extend(r.samples);
        done += r.done;
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    Outcome {
        scenario,
        backend: backend.label(),
        kind: backend.kind,
        workers,
        done,
        wall_s: wall.as_secs_f64(),
        per_s: done as f64 / wall.as_secs_f64().max(1e-9),
        latency: Summary::of(&mut samples),
        errors,
        first_error,
        extra,
    }
}

fn collection_creation(plan: &Plan, backend: &Backend, workers: usize) -> BenchResult<Outcome> {
    let store = backend.store.as_ref();
    let owner = backend.fixtures.owner;
    let (records, wall) = run_workers(workers, |_, rec| {
        for _ in 0..plan.scenario_collections {
            rec.time(1, || fresh_collection(store, owner, "create"));
        }
        Ok(())
    })?;
    let scenario = Scenario::CollectionCreation;
    Ok(outcome(
        scenario,
        backend,
        workers,
        records,
        wall,
        json!({}),
    ))
}

fn parallel_indexing(plan: &Plan, backend: &Backend, workers: usize) -> BenchResult<Outcome> {
    let store = backend.store.as_ref();
    let owner = backend.fixtures.owner;
    let (records, wall) = run_workers(workers, |_, rec| {
        let collection = match fresh_collection(store, owner, "index") {
            Ok(c) => c,
            Err(e) => {
                rec.fail(&e);
                return Ok(());
            }
        };
        let all = documents(collection, plan.scenario_documents);
        for batch in all.chunks(INDEX_BATCH) {
            rec.time(batch.len(), || {
                let ids: Vec<_> = store
                    .documents()
                    .register_many(batch)?
                    .into_iter()
                    .map(|r| r.document.id)
                    .collect();
                let rows = chunks(&ids, ids.len() * plan.scenario_chunks_per_document);
                store.chunks().insert_many(collection, &rows)
            });
        }
        Ok(())
    })?;
    let scenario = Scenario::ParallelIndexing;
    Ok(outcome(
        scenario,
        backend,
        workers,
        records,
        wall,
        json!({}),
    ))
}

/// One unit of work on `collection`: lock it, create an operation, `work`, then move
/// the operation to processing and completed; with `fail`, return the planned
/// rollback error after the writes instead.
fn unit(
    store: &dyn Store,
    owner: UserId,
    collection: CollectionId,
    work: Duration,
    fail: bool,
) -> RepoResult<()> {
    let new = new_operation(owner, collection);
    store.transaction(|tx| {
        tx.lock_collection(collection)?;
        let op = tx.operations().create(&new)?;
        if !work.is_zero() {
            std::thread::sleep(work);
        }
        tx.operations()
            .transition(op.uuid, OperationStatus::Processing, None)?;
        if fail {
            return Err(planned_rollback());
        }
        tx.operations()
            .transition(op.uuid, OperationStatus::Completed, None)?;
        Ok(())
    })
}

fn operations_of(store: &dyn Store, collection: CollectionId) -> RepoResult<u64> {
    Ok(store
        .operations()
        .list_for_collection(
            collection,
            &OperationFilter::default(),
            PageRequest::new(0, 1),
        )?
        .total)
}

fn locked_work(plan: &Plan, backend: &Backend, workers: usize) -> BenchResult<Outcome> {
    let store = backend.store.as_ref();
    let owner = backend.fixtures.owner;
    let (records, wall) = run_workers(workers, |_, rec| {
        let collection = match fresh_collection(store, owner, "locked") {
            Ok(c) => c,
            Err(e) => {
                rec.fail(&e);
                return Ok(());
            }
        };
        for _ in 0..plan.scenario_units {
            rec.time(1, || {
                unit(store, owner, collection, APPLICATION_WORK, false)
            });
        }
        Ok(())
    })?;
    let scenario = Scenario::LockedWork;
    Ok(outcome(
        scenario,
        backend,
        workers,
        records,
        wall,
        json!({}),
    ))
}

fn rollback_under_load(plan: &Plan, backend: &Backend, workers: usize) -> BenchResult<Outcome> {
    let store = backend.store.as_ref();
    let owner = backend.fixtures.owner;
    let rolled_back = AtomicUsize::new(0);
    let leaked = AtomicUsize::new(0);
    let (records, wall) = run_workers(workers, |_, rec| {
        let collection = match fresh_collection(store, owner, "rollback") {
            Ok(c) => c,
            Err(e) => {
                rec.fail(&e);
                return Ok(());
            }
        };
        let mut committed = 0u64;
        for i in 0..plan.scenario_units {
            let fail = i % 2 == 1;
            let start = Instant::now();
            match unit(store, owner, collection, Duration::ZERO, fail) {
                Ok(()) => committed += 1,
                Err(RepoError::Validation { .. }) if fail => {
                    rolled_back.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    rec.fail(&e);
                    continue;
                }
            }
            rec.samples.push(nanos(start.elapsed()));
            rec.done += 1;
        }
        // Every committed unit left one operation; a rolled-back one must leave none.
        let stored = operations_of(store, collection)?;
        leaked.fetch_add(
            usize::try_from(stored.saturating_sub(committed)).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    })?;
    let extra = json!({
        "rolled_back": rolled_back.load(Ordering::Relaxed),
        "leaked_rows": leaked.load(Ordering::Relaxed),
    });
    let scenario = Scenario::RollbackUnderLoad;
    Ok(outcome(scenario, backend, workers, records, wall, extra))
}

fn pool_exhaustion(plan: &Plan, backend: &Backend, workers: usize) -> BenchResult<Outcome> {
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: EXHAUSTED_POOL,
            max_overflow: 0,
            connection_timeout: EXHAUSTED_TIMEOUT,
            ..backend.config.pool.clone()
        },
        ..backend.config.clone()
    };
    let store: Arc<dyn Store> = backend.open_store(&config)?;
    let user = backend.fixtures.users[0];
    let holding = Barrier::new(EXHAUSTED_POOL as usize + 1);
    let released: Mutex<Option<Instant>> = Mutex::new(None);
    let served: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
    let not_retryable = AtomicUsize::new(0);
    let (records, wall) = std::thread::scope(|scope| -> BenchResult<_> {
        for _ in 0..EXHAUSTED_POOL {
            let (store, holding, released) = (&store, &holding, &released);
            scope.spawn(move || {
                let held = store.transaction(|tx| {
                    tx.users().get(user)?;
                    holding.wait();
                    std::thread::sleep(plan.scenario_hold);
                    Ok(())
                });
                let at = Instant::now();
                let mut first = released.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none_or(|f| at < f) {
                    *first = Some(at);
                }
                held
            });
        }
        holding.wait();
        run_workers(workers, |_, rec| loop {
            let start = Instant::now();
            match store.users().get(user) {
                Ok(_) => {
                    let at = Instant::now();
                    rec.samples.push(nanos(at - start));
                    rec.done += 1;
                    served.lock().unwrap_or_else(|p| p.into_inner()).push(at);
                    return Ok(());
                }
                Err(e) => {
                    if !e.is_retryable() || !matches!(e, RepoError::Unavailable { .. }) {
                        not_retryable.fetch_add(1, Ordering::Relaxed);
                    }
                    rec.fail(&e);
                }
            }
        })
    })?;
    let released = released
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .ok_or("the holders never released their connections")?;
    let served = served.into_inner().unwrap_or_else(|p| p.into_inner());
    let after = |at: &Instant| at.saturating_duration_since(released).as_secs_f64() * 1e3;
    let first_ms = served.iter().map(after).fold(f64::INFINITY, f64::min);
    let all_ms = served.iter().map(after).fold(0.0, f64::max);
    let extra = json!({
        "recovery_first_ms": first_ms,
        "recovery_all_ms": all_ms,
        "errors_not_unavailable": not_retryable.load(Ordering::Relaxed),
    });
    let mut out = outcome(
        Scenario::PoolExhaustion,
        backend,
        workers,
        records,
        wall,
        extra,
    );
    // Failed checkouts are this scenario's expected result, not errors of the run.
    out.first_error = out.first_error.map(|e| format!("expected: {e}"));
    Ok(out)
}

impl Section for Scenarios {
    fn id(&self) -> &'static str {
        "scenarios"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let plan = env.plan.clone();
        let mut results = Vec::new();
        for scenario in Scenario::ALL {
            for backend in &env.backends {
                for &workers in &plan.scenario_levels {
                    progress(format!(
                        "scenarios on {}: {scenario:?} with {workers} worker(s)",
                        backend.label()
                    ));
                    let run = match scenario {
                        Scenario::CollectionCreation => collection_creation,
                        Scenario::ParallelIndexing => parallel_indexing,
                        Scenario::LockedWork => locked_work,
                        Scenario::RollbackUnderLoad => rollback_under_load,
                        Scenario::PoolExhaustion => pool_exhaustion,
                    };
                    results.push(
                        run(&plan, backend, workers)
                            .map_err(|e| format!("{scenario:?} on {}: {e}", backend.label()))?,
                    );
                }
            }
        }
        Ok(report(&plan, &results))
    }
}

fn find<'a>(
    results: &'a [Outcome],
    scenario: Scenario,
    backend: &str,
    workers: usize,
) -> Option<&'a Outcome> {
    results
        .iter()
        .find(|o| o.scenario == scenario && o.backend == backend && o.workers == workers)
}

fn report(plan: &Plan, results: &[Outcome]) -> SectionReport {
    let sqlite = label(BackendKind::Sqlite);
    let mut tables = Vec::new();
    let mut notes = Vec::new();
    let mut targets = Vec::new();
    for scenario in Scenario::ALL {
        let of: Vec<&Outcome> = results.iter().filter(|o| o.scenario == scenario).collect();
        let table = if scenario == Scenario::PoolExhaustion {
            let mut t = Table::new(
                scenario.title(plan),
                &[
                    "workers",
                    "backend",
                    "failed checkouts (Unavailable) while exhausted",
                    "other errors",
                    "first served after release, ms",
                    "all served after release, ms",
                ],
            );
            for o in &of {
                t.row(vec![
                    o.workers.to_string(),
                    o.backend.to_owned(),
                    o.errors.to_string(),
                    o.extra["errors_not_unavailable"].to_string(),
                    format!(
                        "{:.2}",
                        o.extra["recovery_first_ms"].as_f64().unwrap_or(f64::NAN)
                    ),
                    format!(
                        "{:.2}",
                        o.extra["recovery_all_ms"].as_f64().unwrap_or(f64::NAN)
                    ),
                ]);
                if o.extra["errors_not_unavailable"].as_u64() != Some(0) {
                    notes.push(format!(
                        "pool exhaustion on {} with {} workers: an error other than a \
                         retryable `Unavailable`: {}",
                        o.backend,
                        o.workers,
                        o.first_error.as_deref().unwrap_or("?")
                    ));
                }
            }
            t
        } else {
            let rate = scenario.unit();
            let mut t = Table::new(
                scenario.title(plan),
                &[
                    "workers",
                    "backend",
                    rate,
                    "p50 ms",
                    "p99 ms",
                    "against SQLite",
                    "errors",
                ],
            );
            for o in &of {
                let base = find(results, scenario, sqlite, o.workers);
                let against = match base {
                    Some(b) if o.backend != sqlite && b.per_s > 0.0 => {
                        format!("{:.2}×", o.per_s / b.per_s)
                    }
                    _ => String::new(),
                };
                t.row(vec![
                    o.workers.to_string(),
                    o.backend.to_owned(),
                    format!("{:.0}", o.per_s),
                    o.latency.map_or("-".into(), |s| fmt_ms(s.p50_ns)),
                    o.latency.map_or("-".into(), |s| fmt_ms(s.p99_ns)),
                    against,
                    o.errors.to_string(),
                ]);
                if o.errors > 0 {
                    notes.push(format!(
                        "{scenario:?} on {} with {} workers: {} calls failed; first: {}",
                        o.backend,
                        o.workers,
                        o.errors,
                        o.first_error.as_deref().unwrap_or("?")
                    ));
                }
                if scenario == Scenario::RollbackUnderLoad {
                    let leaked = o.extra["leaked_rows"].as_u64().unwrap_or(u64::MAX);
                    targets.push(TargetResult {
                        target: "rollback under load leaves no row behind".to_owned(),
                        subject: format!("{}, {} workers", o.backend, o.workers),
                        measured: format!(
                            "{} rolled back, {leaked} leaked",
                            o.extra["rolled_back"]
                        ),
                        met: leaked == 0,
                    });
                }
            }
            t
        };
        tables.push(table);
        if matches!(scenario, Scenario::ParallelIndexing | Scenario::LockedWork) {
            for postgres in of.iter().filter(|o| o.kind == BackendKind::Postgres) {
                let Some(base) = find(results, scenario, sqlite, postgres.workers) else {
                    continue;
                };
                if postgres.workers >= FROM_WORKERS {
                    targets.push(TargetResult {
                        target: format!(
                            "PostgreSQL throughput ≥ SQLite's from {FROM_WORKERS} workers"
                        ),
                        subject: format!(
                            "{scenario:?}, {}, {} workers",
                            postgres.backend, postgres.workers
                        ),
                        measured: format!(
                            "{:.0} against {:.0} {} ({:.2}×)",
                            postgres.per_s,
                            base.per_s,
                            scenario.unit(),
                            postgres.per_s / base.per_s.max(f64::MIN_POSITIVE)
                        ),
                        met: postgres.per_s >= base.per_s,
                    });
                }
                if postgres.workers == P99_WORKERS {
                    if let (Some(p), Some(b)) = (postgres.latency, base.latency) {
                        targets.push(TargetResult {
                            target: format!("PostgreSQL p99 < SQLite's at {P99_WORKERS} workers"),
                            subject: format!("{scenario:?}, {}", postgres.backend),
                            measured: format!(
                                "{} against {} ms",
                                fmt_ms(p.p99_ns),
                                fmt_ms(b.p99_ns)
                            ),
                            met: p.p99_ns < b.p99_ns,
                        });
                    }
                }
            }
        }
    }
    SectionReport {
        id: "scenarios",
        title: "The seed's scenarios: PostgreSQL against SQLite".to_owned(),
        method: format!(
            "Every backend of the run, at {:?} workers sharing the store's handle (pool \
             sized so that 16 workers never wait, except in the exhaustion scenario). Each \
             worker does a fixed amount of work; the rate is the work of all workers over \
             the wall time from the common start to the last worker's end; p50/p99 are per \
             call over all workers. Units of work run through `Store::transaction` \
             (`BEGIN IMMEDIATE` on SQLite, `READ COMMITTED` with `SELECT … FOR UPDATE` on \
             PostgreSQL).",
            plan.scenario_levels
        ),
        tables,
        notes,
        targets,
        data: serde_json::to_value(results).unwrap_or(serde_json::Value::Null),
    }
}
