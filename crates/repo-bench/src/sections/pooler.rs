//! Point operations through a transaction pooler: the same calls on the same database,
//! directly and through PgBouncer (transaction mode) with the pooler mode on
//! (`DB_PGBOUNCER=true`), in the same run, as ratios.

use super::point::{ratio, sample_variants, PointOp, Variant};
use super::{progress, Env, Section};
use crate::backend::{Backend, Commit};
use crate::report::{SectionReport, Table};
use crate::stats::{fmt_us, Summary};
use crate::BenchResult;
use repo_core::{redact_url, BackendKind, PostgresConfig, StoreConfig};
use serde::Serialize;
use serde_json::json;

/// The pooler section.
pub(crate) struct Pooler;

/// The PgBouncer to measure through: `BENCH_PGBOUNCER_URL`, else `TEST_PGBOUNCER_URL`.
fn pgbouncer_url() -> Option<(&'static str, String)> {
    ["BENCH_PGBOUNCER_URL", "TEST_PGBOUNCER_URL"]
        .into_iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        })
}

/// Figures of one operation.
#[derive(Debug, Clone, Serialize)]
struct PoolerResult {
    op: PointOp,
    direct: Summary,
    direct_mode: Summary,
    pgbouncer_mode: Summary,
    /// PgBouncer with the mode / direct (p50): what a deployment behind the pooler pays.
    ratio_p50: f64,
    /// Direct with the mode / direct (p50): the mode's own cost, without the pooler.
    mode_ratio_p50: f64,
}

fn measure(env: &Env, backend: &Backend, server: &str) -> BenchResult<Vec<PoolerResult>> {
    let plan = &env.plan;
    let mode = StoreConfig {
        postgres: PostgresConfig {
            pgbouncer: true,
            ..backend.config.postgres.clone()
        },
        run_migrations: false,
        ..backend.config.clone()
    };
    let direct_mode = backend.open_store(&mode)?;
    let pooled = repo_factory::open(&backend.url_through(server)?, &mode)?;
    let config = json!({"source": "/bench/docs", "recursive": true});
    let fx = &backend.fixtures;
    let mut results = Vec::new();
    for op in PointOp::ALL {
        progress(format!("pooler: {}", op.name()));
        let mut variants = [
            Variant::Repo(backend.store.as_ref()),
            Variant::Repo(direct_mode.as_ref()),
            Variant::Repo(pooled.as_ref()),
        ];
        let mut samples = sample_variants(plan, op, &mut variants, fx, &config)
            .map_err(|e| format!("{} through the pooler: {e}", op.name()))?;
        let [direct, direct_mode, pgbouncer_mode] = [0, 1, 2].map(|v| Summary::of(&mut samples[v]));
        let (Some(direct), Some(direct_mode), Some(pgbouncer_mode)) =
            (direct, direct_mode, pgbouncer_mode)
        else {
            return Err("no samples were taken (empty plan)".into());
        };
        results.push(PoolerResult {
            op,
            ratio_p50: ratio(pgbouncer_mode.p50_ns, direct.p50_ns),
            mode_ratio_p50: ratio(direct_mode.p50_ns, direct.p50_ns),
            direct,
            direct_mode,
            pgbouncer_mode,
        });
    }
    Ok(results)
}

impl Section for Pooler {
    fn id(&self) -> &'static str {
        "pooler"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let mut table = Table::new(
            "Latency through PgBouncer (transaction mode) with the pooler mode, one thread (µs)",
            &[
                "operation",
                "calls",
                "direct p50",
                "direct, mode on p50",
                "PgBouncer, mode on p50",
                "mode alone / direct",
                "PgBouncer + mode / direct",
                "direct p99",
                "PgBouncer, mode on p99",
            ],
        );
        let mut notes = Vec::new();
        let backend = env
            .backends
            .iter()
            .find(|b| b.kind == BackendKind::Postgres && b.commit == Commit::ServerDefault)
            .ok_or("no PostgreSQL backend")?;
        let results = match pgbouncer_url() {
            None if env.plan.pooler_required => {
                return Err(
                    "neither BENCH_PGBOUNCER_URL nor TEST_PGBOUNCER_URL is set: the \
                            pooler section needs a PgBouncer in transaction mode in front of \
                            the benchmark's server"
                        .into(),
                )
            }
            None => {
                table.row(
                    std::iter::once(
                        "skipped: set BENCH_PGBOUNCER_URL (or TEST_PGBOUNCER_URL) to a \
                         PgBouncer in transaction mode in front of the server"
                            .to_owned(),
                    )
                    .chain(std::iter::repeat_n("–".to_owned(), 8))
                    .collect(),
                );
                Vec::new()
            }
            Some((name, server)) => {
                progress(format!(
                    "pooler: PgBouncer from {name}: {}",
                    redact_url(&server)
                ));
                notes.push(format!("PgBouncer: {} (from {name}).", redact_url(&server)));
                measure(env, backend, &server)?
            }
        };
        for r in &results {
            table.row(vec![
                r.op.name().to_owned(),
                r.direct.n.to_string(),
                fmt_us(r.direct.p50_ns),
                fmt_us(r.direct_mode.p50_ns),
                fmt_us(r.pgbouncer_mode.p50_ns),
                format!("{:.2}×", r.mode_ratio_p50),
                format!("{:.2}×", r.ratio_p50),
                fmt_us(r.direct.p99_ns),
                fmt_us(r.pgbouncer_mode.p99_ns),
            ]);
        }
        Ok(SectionReport {
            id: self.id(),
            title: "Transaction pooler: PgBouncer with the pooler mode against direct".into(),
            method: "One thread, the PostgreSQL database of the run with the server's commit \
                     setting (PgBouncer drops the `options` startup parameter that the async \
                     variant uses). \"direct\" is the store of the point section (session \
                     settings once per connection, Diesel's statement cache); \"direct, mode \
                     on\" a store on the same URL with `DB_PGBOUNCER=true` (each call in a \
                     transaction whose `BEGIN` sets the timeouts with `SET LOCAL`, no \
                     statement cache), isolating the mode's cost; \"PgBouncer, mode on\" the \
                     same through PgBouncer in transaction mode, as a deployment behind a \
                     pooler runs. The three take turns call by call in a rotating order, as \
                     in the point section. Ratios are p50 over direct's p50. The mode adds two \
                     round trips per call (the `BEGIN …; SET LOCAL …` batch and `COMMIT`) and \
                     plans every statement afresh (no statement cache); PgBouncer adds its \
                     hop."
                .into(),
            tables: vec![table],
            notes,
            // The issue asks for the cost as a ratio, without a bound to meet.
            targets: Vec::new(),
            data: serde_json::to_value(&results)?,
        })
    }
}
