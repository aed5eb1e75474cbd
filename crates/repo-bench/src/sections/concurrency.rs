//! Mixed workloads through the store at 1, 2, 4, 8 and 16 threads: throughput and
//! latency per backend, PostgreSQL against SQLite.

use super::{progress, Env, Section};
use crate::backend::{label, Fixtures, MAX_THREADS};
use crate::report::{SectionReport, Table, TargetResult};
use crate::stats::{fmt_ms, nanos, Summary};
use crate::BenchResult;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use repo_core::{
    AccessLevel, BackendKind, CollectionId, Grantee, NewOperation, OperationKind, OperationStatus,
    OperationUuid, RepoResult, Store,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// p99 under 8 threads on PostgreSQL must stay below this.
const P99_TARGET: Duration = Duration::from_millis(5);
/// Thread count at which the targets are checked.
const TARGET_THREADS: usize = 8;

/// The concurrency section.
pub(crate) struct Concurrency;

/// One step of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    GetUser,
    CollectionWithAccess,
    VerifyKey,
    GrantUpsert,
    /// The next step of the thread's own operation cycle: create, → processing,
    /// → completed.
    OperationCycle,
}

/// A weighted mix of steps.
struct Mix {
    id: &'static str,
    title: &'static str,
    weights: &'static [(Step, u32)],
}

const MIXES: [Mix; 2] = [
    Mix {
        id: "read_mostly",
        title: "read-mostly mix: 30% get user, 30% get collection with access check, \
                20% verify API key, 10% grant upsert, 10% operation step",
        weights: &[
            (Step::GetUser, 30),
            (Step::CollectionWithAccess, 30),
            (Step::VerifyKey, 20),
            (Step::GrantUpsert, 10),
            (Step::OperationCycle, 10),
        ],
    },
    Mix {
        id: "write_heavy",
        title: "write-heavy mix: 10% get user, 10% get collection with access check, \
                10% verify API key, 35% grant upsert, 35% operation step",
        weights: &[
            (Step::GetUser, 10),
            (Step::CollectionWithAccess, 10),
            (Step::VerifyKey, 10),
            (Step::GrantUpsert, 35),
            (Step::OperationCycle, 35),
        ],
    },
];

impl Mix {
    fn pick(&self, rng: &mut StdRng) -> Step {
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        let mut x = rng.random_range(0..total);
        for (step, w) in self.weights {
            if x < *w {
                return *step;
            }
            x -= w;
        }
        self.weights[0].0
    }
}

/// Where a thread's operation cycle stands.
enum Lane {
    Idle,
    Pending(OperationUuid),
    Processing(OperationUuid),
}

/// A worker's view: its lane collection and random source.
struct Worker<'a> {
    store: &'a dyn Store,
    fx: &'a Fixtures,
    lane_collection: CollectionId,
    lane: Lane,
    rng: StdRng,
    config: Value,
}

impl Worker<'_> {
    fn step(&mut self, step: Step) -> RepoResult<()> {
        let n = self.fx.users.len();
        let k = self.rng.random_range(0..n);
        match step {
            Step::GetUser => self.store.users().get(self.fx.users[k]).map(drop),
            Step::CollectionWithAccess => self
                .store
                .collections()
                .get_with_access(
                    self.fx.collections[k],
                    (self.fx.users[k]).into(),
                    AccessLevel::Read,
                )
                .map(drop),
            Step::VerifyKey => self
                .store
                .api_keys()
                .verify(self.fx.secrets[k].expose())
                .map(drop),
            Step::GrantUpsert => {
                let grantee = self.fx.users[self.rng.random_range(0..n)];
                let level = if self.rng.random_bool(0.5) {
                    AccessLevel::Read
                } else {
                    AccessLevel::Write
                };
                self.store
                    .collections()
                    .grant(self.fx.collections[k], Grantee::User(grantee), level)
                    .map(drop)
            }
            Step::OperationCycle => self.operation_step(),
        }
    }

    fn operation_step(&mut self) -> RepoResult<()> {
        let ops = self.store.operations();
        self.lane = match self.lane {
            Lane::Idle => {
                let new = NewOperation::new(
                    self.lane_collection,
                    self.fx.owner,
                    OperationKind::Index,
                    self.config.clone(),
                );
                Lane::Pending(ops.create(&new)?.uuid)
            }
            Lane::Pending(uuid) => {
                ops.transition(uuid, OperationStatus::Processing, None)?;
                Lane::Processing(uuid)
            }
            Lane::Processing(uuid) => {
                ops.transition(uuid, OperationStatus::Completed, None)?;
                Lane::Idle
            }
        };
        Ok(())
    }

    /// Ends the thread's operation cycle (untimed), also after an error.
    fn settle(&mut self) -> RepoResult<()> {
        let ops = self.store.operations();
        for op in ops.active_for_collection(self.lane_collection)? {
            let to = if op.status == OperationStatus::Processing {
                OperationStatus::Completed
            } else {
                OperationStatus::Cancelled
            };
            ops.transition(op.uuid, to, None)?;
        }
        self.lane = Lane::Idle;
        Ok(())
    }
}

/// What one thread count gave.
#[derive(Debug, Clone, Serialize)]
struct Level {
    threads: usize,
    ops: usize,
    errors: usize,
    first_error: Option<String>,
    window_s: f64,
    ops_per_s: f64,
    latency: Option<Summary>,
}

struct ThreadOutcome {
    samples: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

fn run_level(
    store: &Arc<dyn Store>,
    fx: &Fixtures,
    mix: &Mix,
    threads: usize,
    warmup: Duration,
    window: Duration,
) -> BenchResult<Level> {
    let barrier = Barrier::new(threads);
    let outcomes: Vec<BenchResult<ThreadOutcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let store = store.as_ref();
                scope.spawn(move || -> BenchResult<ThreadOutcome> {
                    let mut worker = Worker {
                        store,
                        fx,
                        lane_collection: fx.lanes[1 + t],
                        lane: Lane::Idle,
                        rng: StdRng::seed_from_u64((threads * 1_000 + t) as u64),
                        config: json!({"source": "/bench/docs", "recursive": true}),
                    };
                    let mut out = ThreadOutcome {
                        samples: Vec::new(),
                        errors: 0,
                        first_error: None,
                    };
                    barrier.wait();
                    let measure_from = Instant::now() + warmup;
                    let end = measure_from + window;
                    loop {
                        let step = mix.pick(&mut worker.rng);
                        let start = Instant::now();
                        let result = worker.step(step);
                        let done = Instant::now();
                        if done >= end {
                            break;
                        }
                        if let Err(e) = result {
                            if start >= measure_from {
                                out.errors += 1;
                                out.first_error
                                    .get_or_insert_with(|| format!("{step:?}: {e}"));
                            }
                            worker.settle()?;
                            continue;
                        }
                        if start >= measure_from {
                            out.samples.push(nanos(done - start));
                        }
                    }
                    worker.settle()?;
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a worker thread panicked".into()))
            })
            .collect()
    });
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for outcome in outcomes {
        let outcome = outcome?;
        samples.extend(outcome.samples);
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
    }
    let ops = samples.len();
    Ok(Level {
        threads,
        ops,
        errors,
        first_error,
        window_s: window.as_secs_f64(),
        ops_per_s: ops as f64 / window.as_secs_f64(),
        latency: Summary::of(&mut samples),
    })
}

#[derive(Debug, Clone, Serialize)]
struct MixResult {
    mix: &'static str,
    #[serde(skip)]
    kind: BackendKind,
    description: &'static str,
    backend: &'static str,
    levels: Vec<Level>,
}

impl Section for Concurrency {
    fn id(&self) -> &'static str {
        "concurrency"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let plan = env.plan.clone();
        let mut results = Vec::new();
        for mix in &MIXES {
            for backend in &env.backends {
                let mut levels = Vec::new();
                for &threads in &plan.thread_levels {
                    let threads = threads.min(MAX_THREADS);
                    progress(format!(
                        "concurrency on {}: {} at {threads} thread(s)",
                        backend.label(),
                        mix.id
                    ));
                    levels.push(run_level(
                        &backend.store,
                        &backend.fixtures,
                        mix,
                        threads,
                        plan.level_warmup,
                        plan.level_duration,
                    )?);
                }
                results.push(MixResult {
                    mix: mix.id,
                    kind: backend.kind,
                    description: mix.title,
                    backend: backend.label(),
                    levels,
                });
            }
        }
        Ok(report(&plan, &results))
    }
}

fn level_at(result: &MixResult, threads: usize) -> Option<&Level> {
    result.levels.iter().find(|l| l.threads == threads)
}

fn report(plan: &crate::cli::Plan, results: &[MixResult]) -> SectionReport {
    let mut tables = Vec::new();
    let mut notes = Vec::new();
    let mut targets = Vec::new();
    let sqlite_label = label(BackendKind::Sqlite);
    for mix in &MIXES {
        let of_mix: Vec<&MixResult> = results.iter().filter(|r| r.mix == mix.id).collect();
        let sqlite = of_mix.iter().find(|r| r.backend == sqlite_label);
        let mut table = Table::new(
            mix.title,
            &[
                "threads",
                "backend",
                "ops/s",
                "p50 ms",
                "p99 ms",
                "ops/s against SQLite",
            ],
        );
        for &threads in &plan.thread_levels {
            let base = sqlite.and_then(|r| level_at(r, threads));
            for r in &of_mix {
                let Some(l) = level_at(r, threads) else {
                    continue;
                };
                let against = match base {
                    Some(b) if r.backend != sqlite_label && b.ops_per_s > 0.0 => {
                        format!("{:.2}×", l.ops_per_s / b.ops_per_s)
                    }
                    _ => String::new(),
                };
                table.row(vec![
                    threads.to_string(),
                    r.backend.to_owned(),
                    format!("{:.0}", l.ops_per_s),
                    l.latency.map_or("-".into(), |s| fmt_ms(s.p50_ns)),
                    l.latency.map_or("-".into(), |s| fmt_ms(s.p99_ns)),
                    against,
                ]);
                if l.errors > 0 {
                    notes.push(format!(
                        "{} on {} at {} threads: {} calls failed (not counted in ops/s); first: {}",
                        mix.id,
                        r.backend,
                        l.threads,
                        l.errors,
                        l.first_error.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        tables.push(table);

        for r in of_mix.iter().filter(|r| r.kind == BackendKind::Postgres) {
            if let Some(s) = level_at(r, TARGET_THREADS).and_then(|l| l.latency) {
                targets.push(TargetResult {
                    target: "p99 of point operations under 8 threads < 5 ms on PostgreSQL"
                        .to_owned(),
                    subject: format!("{}, {}, 8 threads", mix.id, r.backend),
                    measured: format!("{} ms", fmt_ms(s.p99_ns)),
                    met: u128::from(s.p99_ns) < P99_TARGET.as_nanos(),
                });
            }
            if mix.id == "write_heavy" {
                let base = sqlite.and_then(|b| level_at(b, TARGET_THREADS));
                if let (Some(b), Some(p)) = (base, level_at(r, TARGET_THREADS)) {
                    targets.push(TargetResult {
                        target:
                            "PostgreSQL throughput at 8 threads of a write-heavy mix ≥ SQLite's"
                                .to_owned(),
                        subject: format!("write_heavy, {}, 8 threads", r.backend),
                        measured: format!(
                            "{:.0} against {:.0} ops/s ({:.2}×)",
                            p.ops_per_s,
                            b.ops_per_s,
                            p.ops_per_s / b.ops_per_s.max(f64::MIN_POSITIVE)
                        ),
                        met: p.ops_per_s >= b.ops_per_s,
                    });
                }
            }
        }
    }
    SectionReport {
        id: "concurrency",
        title: "Concurrency: PostgreSQL against SQLite".to_owned(),
        method: format!(
            "N threads share the store's handle (one pool each backend, sized so that 16 \
             threads never wait for a connection) and run the mix for {:.1} s after a {:.1} s \
             warm-up; ops/s counts calls that finished inside the window, latencies are \
             per call over all threads. Keys, users and collections are drawn at random \
             from {} of each; each thread runs the create → processing → completed cycle \
             of operations on its own collection (one active operation per collection is \
             the rule). `verify API key` writes `last_used_at` only when it is older than \
             `API_KEY_LAST_USED_GRANULARITY_S` (60 s by default), so it is a read here. \
             \"{}\" is the same database through connections with \
             `synchronous_commit=off`, the durability SQLite's `synchronous=NORMAL` (WAL) \
             gives: the last commits may be lost if the machine crashes.",
            plan.level_duration.as_secs_f64(),
            plan.level_warmup.as_secs_f64(),
            crate::backend::USERS,
            crate::backend::ASYNC_POSTGRES,
        ),
        tables,
        notes,
        targets,
        data: serde_json::to_value(results).unwrap_or(Value::Null),
    }
}
