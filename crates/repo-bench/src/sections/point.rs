//! Point operations, one thread: the repository (through the factory's handle, which
//! checks a connection out of its pool per call) against the same statements in raw
//! Diesel on a held connection.

use super::{progress, Env, Section};
use crate::audit::{self, Comparison};
use crate::backend::{Backend, Commit, Fixtures};
use crate::raw::PointBaseline;
use crate::report::{SectionReport, Table, TargetResult};
use crate::stats::{fmt_us, Summary};
use crate::BenchResult;
use repo_core::{
    AccessLevel, BackendKind, Grantee, NewOperation, OperationKind, OperationStatus, PoolConfig,
    Store, StoreConfig,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;

/// Target ratio repository / raw Diesel (p50) for point reads.
const READ_TARGET: f64 = 1.15;
/// Target ratio repository / raw Diesel (p50) for point writes.
const WRITE_TARGET: f64 = 1.10;
/// Target ratio repository / floor (p50) for point reads.
const READ_FLOOR_TARGET: f64 = 1.2;
/// Target ratio repository / floor (p50) for point writes.
const WRITE_FLOOR_TARGET: f64 = 1.5;

/// The point-operation section.
pub(crate) struct PointOperations;

/// A point operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PointOp {
    GetUser,
    CollectionWithAccess,
    VerifyKey,
    CreateOperation,
    Transition,
    GrantUpsert,
}

impl PointOp {
    pub(crate) const ALL: [PointOp; 6] = [
        PointOp::GetUser,
        PointOp::CollectionWithAccess,
        PointOp::VerifyKey,
        PointOp::CreateOperation,
        PointOp::Transition,
        PointOp::GrantUpsert,
    ];

    /// The operation called `id` (`get_user`, `collection_with_access`, `verify_key`,
    /// `create_operation`, `transition`, `grant_upsert`).
    pub(crate) fn from_id(id: &str) -> Option<PointOp> {
        PointOp::ALL.into_iter().find(|op| op.id() == id)
    }

    /// Stable id.
    pub(crate) fn id(self) -> &'static str {
        match self {
            PointOp::GetUser => "get_user",
            PointOp::CollectionWithAccess => "collection_with_access",
            PointOp::VerifyKey => "verify_key",
            PointOp::CreateOperation => "create_operation",
            PointOp::Transition => "transition",
            PointOp::GrantUpsert => "grant_upsert",
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            PointOp::GetUser => "get user by id",
            PointOp::CollectionWithAccess => "get collection with access check",
            PointOp::VerifyKey => "verify API key",
            PointOp::CreateOperation => "create operation",
            PointOp::Transition => "operation status transition",
            PointOp::GrantUpsert => "grant upsert",
        }
    }

    /// Reads in the sense of the issue (verify stamps `last_used_at` only once per
    /// `API_KEY_LAST_USED_GRANULARITY_S`).
    fn is_read(self) -> bool {
        matches!(
            self,
            PointOp::GetUser | PointOp::CollectionWithAccess | PointOp::VerifyKey
        )
    }
}

/// Who runs the operation.
pub(crate) enum Variant<'a> {
    /// A store handle (pool checkout per call).
    Repo(&'a dyn Store),
    /// The raw-Diesel baseline, or the floor, on a held connection.
    Raw(&'a mut dyn PointBaseline),
}

/// Measures the part of a call that is the operation itself (setup and cleanup of
/// operation cycles run outside it).
pub(crate) trait Meter {
    fn measure(&mut self, f: &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<u64>;
}

/// Wall-clock time.
pub(crate) struct Clock;

impl Meter for Clock {
    fn measure(&mut self, f: &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<u64> {
        let start = Instant::now();
        f()?;
        Ok(crate::stats::nanos(start.elapsed()))
    }
}

/// The statements sent (on instrumented connections).
#[derive(Default)]
struct StatementLog(Vec<String>);

impl Meter for StatementLog {
    fn measure(&mut self, f: &mut dyn FnMut() -> BenchResult<()>) -> BenchResult<u64> {
        let (result, statements) = audit::record(f);
        self.0 = statements;
        result.map(|()| 0)
    }
}

/// Runs `op` once as call number `i` of its variant.
pub(crate) fn call(
    op: PointOp,
    variant: &mut Variant<'_>,
    fx: &Fixtures,
    i: usize,
    config: &Value,
    meter: &mut dyn Meter,
) -> BenchResult<u64> {
    let k = i % fx.users.len();
    let (user, collection, secret) = (fx.users[k], fx.collections[k], &fx.secrets[k]);
    let lane = fx.lanes[0];
    // Another user than the read grant's, and a level that flips on every visit, so
    // that each upsert really changes the row.
    let grantee = fx.users[(k + 1) % fx.users.len()];
    let level = if (i / fx.users.len()) % 2 == 0 {
        AccessLevel::Write
    } else {
        AccessLevel::Read
    };
    match variant {
        Variant::Repo(store) => {
            let store = *store;
            match op {
                PointOp::GetUser => meter.measure(&mut || {
                    std::hint::black_box(store.users().get(user)?);
                    Ok(())
                }),
                PointOp::CollectionWithAccess => meter.measure(&mut || {
                    std::hint::black_box(store.collections().get_with_access(
                        collection,
                        user.into(),
                        AccessLevel::Read,
                    )?);
                    Ok(())
                }),
                PointOp::VerifyKey => {
                    meter.measure(&mut || match store.api_keys().verify(secret.expose())? {
                        Some(v) => {
                            std::hint::black_box(v);
                            Ok(())
                        }
                        None => Err("a seeded API key did not verify".into()),
                    })
                }
                PointOp::CreateOperation => {
                    let new =
                        NewOperation::new(lane, fx.owner, OperationKind::Index, config.clone());
                    let mut created = None;
                    let ns = meter.measure(&mut || {
                        created = Some(store.operations().create(&new)?.uuid);
                        Ok(())
                    })?;
                    let uuid = created.ok_or("no operation created")?;
                    store
                        .operations()
                        .transition(uuid, OperationStatus::Processing, None)?;
                    store
                        .operations()
                        .transition(uuid, OperationStatus::Completed, None)?;
                    Ok(ns)
                }
                PointOp::Transition => {
                    let new =
                        NewOperation::new(lane, fx.owner, OperationKind::Index, config.clone());
                    let uuid = store.operations().create(&new)?.uuid;
                    let ns = meter.measure(&mut || {
                        std::hint::black_box(store.operations().transition(
                            uuid,
                            OperationStatus::Processing,
                            None,
                        )?);
                        Ok(())
                    })?;
                    store
                        .operations()
                        .transition(uuid, OperationStatus::Completed, None)?;
                    Ok(ns)
                }
                PointOp::GrantUpsert => meter.measure(&mut || {
                    std::hint::black_box(store.collections().grant(
                        collection,
                        Grantee::User(grantee),
                        level,
                    )?);
                    Ok(())
                }),
            }
        }
        Variant::Raw(raw) => match op {
            PointOp::GetUser => meter.measure(&mut || Ok(raw.get_user(user)?)),
            PointOp::CollectionWithAccess => meter.measure(&mut || {
                if raw.collection_with_access(collection, user)? {
                    Ok(())
                } else {
                    Err("access refused by the baseline".into())
                }
            }),
            PointOp::VerifyKey => meter.measure(&mut || {
                if raw.verify_key(secret, &fx.key_policy)? {
                    Ok(())
                } else {
                    Err("a seeded API key did not verify in the baseline".into())
                }
            }),
            PointOp::CreateOperation => {
                let mut created = None;
                let ns = meter.measure(&mut || {
                    created = Some(raw.create_operation(lane, fx.owner, config)?);
                    Ok(())
                })?;
                let uuid = created.ok_or("no operation created")?;
                raw.transition(uuid, OperationStatus::Processing)?;
                raw.transition(uuid, OperationStatus::Completed)?;
                Ok(ns)
            }
            PointOp::Transition => {
                let uuid = raw.create_operation(lane, fx.owner, config)?;
                let ns = meter
                    .measure(&mut || Ok(raw.transition(uuid, OperationStatus::Processing)?))?;
                raw.transition(uuid, OperationStatus::Completed)?;
                Ok(ns)
            }
            PointOp::GrantUpsert => {
                meter.measure(&mut || Ok(raw.grant(collection, grantee, level)?))
            }
        },
    }
}

/// Times `op` on every variant: `plan.point_warmup` untimed calls each, then rounds
/// in which the variants take turns in batches, in a rotating order, so that drift
/// and other load hit all alike. Returns the samples (ns) of each variant.
pub(crate) fn sample_variants(
    plan: &crate::cli::Plan,
    op: PointOp,
    variants: &mut [Variant<'_>],
    fx: &Fixtures,
    config: &Value,
) -> BenchResult<Vec<Vec<u64>>> {
    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(plan.point_samples()); variants.len()];
    let mut counters = vec![0usize; variants.len()];
    for (v, variant) in variants.iter_mut().enumerate() {
        for _ in 0..plan.point_warmup {
            call(op, variant, fx, counters[v], config, &mut Clock)?;
            counters[v] += 1;
        }
    }
    let measuring = Instant::now();
    for round in 0..plan.point_rounds {
        if round >= 20 && plan.point_budget.is_some_and(|b| measuring.elapsed() > b) {
            break;
        }
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            for _ in 0..plan.point_batch {
                samples[v].push(call(
                    op,
                    &mut variants[v],
                    fx,
                    counters[v],
                    config,
                    &mut Clock,
                )?);
                counters[v] += 1;
            }
        }
    }
    Ok(samples)
}

/// Figures of one operation on one backend.
#[derive(Debug, Clone, Serialize)]
struct OpResult {
    op: PointOp,
    backend: &'static str,
    raw: Summary,
    repo: Summary,
    repo_no_pre_ping: Summary,
    floor: Summary,
    ratio_p50: f64,
    ratio_p99: f64,
    ratio_p50_no_pre_ping: f64,
    /// repo p50 / floor p50.
    ratio_floor_p50: f64,
    statements: Comparison,
    /// The statements of one floor call.
    floor_statements: Vec<String>,
}

/// `a / b`, for latency ratios (a zero `b` counts as 1 ns).
pub(crate) fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b.max(1)) as f64
}

/// Records the statements of one call of every variant of every operation.
fn audit_backend(
    backend: &Backend,
    config: &Value,
) -> BenchResult<Vec<(PointOp, Comparison, Vec<String>)>> {
    let audit_config = StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 0,
            ..backend.config.pool.clone()
        },
        ..backend.config.clone()
    };
    let (store, mut raw, mut floor) = audit::instrumented(|| {
        let store = backend.open_store(&audit_config)?;
        // Checks the pool's only connection out, so it exists (instrumented) now.
        store.health()?;
        let raw = backend.open_raw()?;
        let floor = backend.open_floor()?;
        Ok((store, raw, floor))
    })?;
    let mut out = Vec::new();
    for (i, op) in PointOp::ALL.into_iter().enumerate() {
        let mut repo_log = StatementLog::default();
        call(
            op,
            &mut Variant::Repo(store.as_ref()),
            &backend.fixtures,
            i,
            config,
            &mut repo_log,
        )?;
        let mut raw_log = StatementLog::default();
        call(
            op,
            &mut Variant::Raw(raw.point()),
            &backend.fixtures,
            i,
            config,
            &mut raw_log,
        )?;
        let mut floor_log = StatementLog::default();
        call(
            op,
            &mut Variant::Raw(floor.point()),
            &backend.fixtures,
            i,
            config,
            &mut floor_log,
        )?;
        out.push((op, Comparison::of(repo_log.0, raw_log.0), floor_log.0));
    }
    Ok(out)
}

/// SQLite, and PostgreSQL with asynchronous commit: a durable PostgreSQL commit (an
/// fsync) is the same work for both variants, and its variance would drown the
/// microseconds the layer adds; the smaller denominator makes the ratio stricter.
fn measures_points(backend: &Backend) -> bool {
    backend.kind == BackendKind::Sqlite || backend.commit == Commit::Asynchronous
}

/// The first 80 characters of a statement, for the audit table.
fn abbreviate(statement: &str) -> String {
    match statement.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &statement[..i]),
        None => statement.to_owned(),
    }
}

fn describe_extra(statement: &str) -> String {
    if statement == "SELECT 1" {
        "`SELECT 1` (pool pre-ping: r2d2 `test_on_check_out`, sent for a connection idle \
         at least `DB_POOL_PRE_PING_IDLE_MS`)"
            .to_owned()
    } else {
        format!("`{statement}`")
    }
}

impl Section for PointOperations {
    fn id(&self) -> &'static str {
        "point"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let plan = env.plan.clone();
        let config = json!({"source": "/bench/docs", "recursive": true});
        let mut results: Vec<OpResult> = Vec::new();
        for backend in env.backends.iter_mut().filter(|b| measures_points(b)) {
            progress(format!(
                "point operations on {}: statement audit",
                backend.label()
            ));
            let audits = audit_backend(backend, &config)?;
            let no_ping_config = StoreConfig {
                pool: PoolConfig {
                    pre_ping: false,
                    ..backend.config.pool.clone()
                },
                ..backend.config.clone()
            };
            let no_ping = backend.open_store(&no_ping_config)?;
            let label = backend.label();
            for (op, statements, floor_statements) in audits {
                progress(format!("point operations on {label}: {}", op.name()));
                let fx = &backend.fixtures;
                let mut variants = [
                    Variant::Repo(backend.store.as_ref()),
                    Variant::Repo(no_ping.as_ref()),
                    Variant::Raw(backend.raw.point()),
                    Variant::Raw(backend.floor.point()),
                ];
                let mut samples = sample_variants(&plan, op, &mut variants, fx, &config)
                    .map_err(|e| format!("{} on {label}: {e}", op.name()))?;
                let [repo, repo_no_pre_ping, raw, floor] =
                    [0, 1, 2, 3].map(|v| Summary::of(&mut samples[v]));
                let (Some(repo), Some(repo_no_pre_ping), Some(raw), Some(floor)) =
                    (repo, repo_no_pre_ping, raw, floor)
                else {
                    return Err("no samples were taken (empty plan)".into());
                };
                results.push(OpResult {
                    op,
                    backend: label,
                    ratio_p50: ratio(repo.p50_ns, raw.p50_ns),
                    ratio_p99: ratio(repo.p99_ns, raw.p99_ns),
                    ratio_p50_no_pre_ping: ratio(repo_no_pre_ping.p50_ns, raw.p50_ns),
                    ratio_floor_p50: ratio(repo.p50_ns, floor.p50_ns),
                    raw,
                    repo,
                    repo_no_pre_ping,
                    floor,
                    statements,
                    floor_statements,
                });
            }
        }
        Ok(report(&plan, results))
    }
}

fn report(plan: &crate::cli::Plan, results: Vec<OpResult>) -> SectionReport {
    let mut latency = Table::new(
        "Latency, one thread (µs)",
        &[
            "operation",
            "backend",
            "calls",
            "raw p50",
            "repo p50",
            "repo − raw p50",
            "ratio p50",
            "raw p99",
            "repo p99",
            "ratio p99",
            "repo p50, pre-ping off",
            "ratio, pre-ping off",
            "floor p50",
            "repo / floor p50",
        ],
    );
    let mut statements = Table::new(
        "Statements per call (audit)",
        &[
            "operation",
            "backend",
            "raw",
            "repo",
            "floor",
            "sent by the repository only",
            "floor statements",
        ],
    );
    let mut notes = Vec::new();
    let mut targets = Vec::new();
    for r in &results {
        latency.row(vec![
            r.op.name().to_owned(),
            r.backend.to_owned(),
            r.raw.n.to_string(),
            fmt_us(r.raw.p50_ns),
            fmt_us(r.repo.p50_ns),
            format!(
                "{:+.1}",
                (r.repo.p50_ns as f64 - r.raw.p50_ns as f64) / 1_000.0
            ),
            format!("{:.2}×", r.ratio_p50),
            fmt_us(r.raw.p99_ns),
            fmt_us(r.repo.p99_ns),
            format!("{:.2}×", r.ratio_p99),
            fmt_us(r.repo_no_pre_ping.p50_ns),
            format!("{:.2}×", r.ratio_p50_no_pre_ping),
            fmt_us(r.floor.p50_ns),
            format!("{:.2}×", r.ratio_floor_p50),
        ]);
        let extra: Vec<String> = r
            .statements
            .extra
            .iter()
            .map(|s| describe_extra(s))
            .collect();
        statements.row(vec![
            r.op.name().to_owned(),
            r.backend.to_owned(),
            r.statements.raw.len().to_string(),
            r.statements.repo.len().to_string(),
            r.floor_statements.len().to_string(),
            if extra.is_empty() {
                "none".to_owned()
            } else {
                extra.join(", ")
            },
            r.floor_statements
                .iter()
                .map(|s| format!("`{}`", abbreviate(s)))
                .collect::<Vec<_>>()
                .join("; "),
        ]);
        if !r.statements.missing.is_empty() {
            notes.push(format!(
                "WARNING: the baseline of {} on {} sends statements the repository does not \
                 ({}); its ratio compares different work.",
                r.op.name(),
                r.backend,
                r.statements.missing.join("; ")
            ));
        }
        let (target, limit) = if r.op.is_read() {
            ("point reads ≤ 1.15× raw Diesel (p50)", READ_TARGET)
        } else {
            ("point writes ≤ 1.10× raw Diesel (p50)", WRITE_TARGET)
        };
        targets.push(TargetResult {
            target: target.to_owned(),
            subject: format!("{}, {}", r.op.name(), r.backend),
            measured: format!("{:.2}×", r.ratio_p50),
            met: r.ratio_p50 <= limit,
        });
        let (target, limit) = if r.op.is_read() {
            ("point reads ≤ 1.2× floor (p50)", READ_FLOOR_TARGET)
        } else {
            ("point writes ≤ 1.5× floor (p50)", WRITE_FLOOR_TARGET)
        };
        targets.push(TargetResult {
            target: target.to_owned(),
            subject: format!("{}, {}", r.op.name(), r.backend),
            measured: format!("{:.2}×", r.ratio_floor_p50),
            met: r.ratio_floor_p50 <= limit,
        });
    }
    for backend in ["SQLite", crate::backend::ASYNC_POSTGRES] {
        let p50 = |op: PointOp| {
            results
                .iter()
                .find(|r| r.op == op && r.backend == backend)
                .map(|r| r.repo.p50_ns)
        };
        if let (Some(verify), Some(get)) = (p50(PointOp::VerifyKey), p50(PointOp::GetUser)) {
            let measured = ratio(verify, get);
            targets.push(TargetResult {
                target: "verify API key p50 ≤ 1.5× get user by id p50 (repo)".to_owned(),
                subject: backend.to_owned(),
                measured: format!("{measured:.2}×"),
                met: measured <= 1.5,
            });
        }
    }
    notes.push(
        "Every statement of a repository call other than those listed as sent by the \
         repository only is also sent, with the same SQL text, by its baseline (checked by \
         recording both with Diesel's instrumentation)."
            .to_owned(),
    );
    SectionReport {
        id: "point",
        title: "Point operations: repository against raw Diesel".to_owned(),
        method: format!(
            "One thread. \"repo\" calls the `Arc<dyn Store>` that `repo_factory::open` returns \
             (default configuration: a pool checkout per call, with r2d2's pre-ping for a \
             connection idle at least `DB_POOL_PRE_PING_IDLE_MS` (1 s) or whose last call \
             failed, error mapping, conversion into domain types); \"raw\" runs the same statements with \
             the Diesel DSL on a connection the benchmark holds (same PRAGMAs / session \
             settings), loading the rows into plain structs. \"pre-ping off\" is a second \
             store on the same database with `DB_POOL_PRE_PING=false`. \"floor\" is the \
             fewest statements an expert would write for the same effect and guarantees, \
             prepared, on another held connection (`crate::raw::FloorConn`; its statements \
             are in the audit table): on SQLite every write is one statement in autocommit \
             and the access check one join; on PostgreSQL verify is a plain `SELECT` (the \
             stamp is never stale here) and the get has no bound `LIMIT`. Each figure is over \
             up to {} calls (\"calls\" gives the number{}) after {} untimed ones; the \
             variants take turns in batches of {} call(s), in a rotating order, so that \
             drift and other load on the machine hit all alike. Writes to operations run whole cycles (create, \
             processing, completed) on one collection; only the named step is timed. The \
             ratio is repo / raw. PostgreSQL runs here with `synchronous_commit=off`: a \
             durable commit (an fsync of 1-3 ms on this machine) is the same work for both \
             variants and its variance would drown the microseconds the layer adds; the \
             smaller denominator makes the ratio stricter, not looser.",
            plan.point_samples(),
            plan.point_budget.map_or(String::new(), |b| format!(
                ": this mode stops adding rounds after {:.1} s per operation",
                b.as_secs_f64()
            )),
            plan.point_warmup,
            plan.point_batch
        ),
        tables: vec![latency, statements],
        notes,
        targets,
        data: serde_json::to_value(&results).unwrap_or(Value::Null),
    }
}

/// Which implementation `profile` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProfileVariant {
    /// The store the factory returns.
    Repo,
    /// A store with `pre_ping` off.
    RepoNoPrePing,
    /// The raw-Diesel baseline.
    Raw,
    /// The floor.
    Floor,
}

/// Runs `op` `calls` times (after 100 untimed calls) on one backend, for a profiler:
/// only [`profile_loop`] runs while the profiler is meant to collect
/// (`valgrind --tool=callgrind --toggle-collect='*profile_loop*'`). Returns the mean
/// wall time per call in nanoseconds.
pub(crate) fn profile(
    backend: &mut Backend,
    op: PointOp,
    variant: ProfileVariant,
    calls: usize,
) -> BenchResult<u64> {
    let config = json!({"source": "/bench/docs", "recursive": true});
    let no_ping;
    let mut target = match variant {
        ProfileVariant::Repo => Variant::Repo(backend.store.as_ref()),
        ProfileVariant::RepoNoPrePing => {
            no_ping = backend.open_store(&StoreConfig {
                pool: PoolConfig {
                    pre_ping: false,
                    ..backend.config.pool.clone()
                },
                ..backend.config.clone()
            })?;
            Variant::Repo(no_ping.as_ref())
        }
        ProfileVariant::Raw => Variant::Raw(backend.raw.point()),
        ProfileVariant::Floor => Variant::Raw(backend.floor.point()),
    };
    for i in 0..100 {
        call(op, &mut target, &backend.fixtures, i, &config, &mut Clock)?;
    }
    let start = Instant::now();
    profile_loop(op, &mut target, &backend.fixtures, calls, &config)?;
    Ok(crate::stats::nanos(start.elapsed()) / (calls.max(1) as u64))
}

/// The measured loop of [`profile`]; never inlined, so a profiler can select it.
#[inline(never)]
fn profile_loop(
    op: PointOp,
    target: &mut Variant<'_>,
    fx: &Fixtures,
    calls: usize,
    config: &Value,
) -> BenchResult<()> {
    for i in 0..calls {
        call(op, target, fx, 100 + i, config, &mut Clock)?;
    }
    Ok(())
}
