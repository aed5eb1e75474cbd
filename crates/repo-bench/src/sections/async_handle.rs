//! The async handle's cost against the synchronous call, in the same run: the same
//! point read through `repo_async::AsyncStore` (a semaphore slot, `spawn_blocking`, the
//! caller's span entered on the blocking thread, the wake-up back) and directly.

use super::point::ratio;
use super::{progress, Env, Section};
use crate::backend::{Backend, Commit};
use crate::report::{SectionReport, Table};
use crate::stats::{fmt_us, nanos, Summary};
use crate::BenchResult;
use repo_async::AsyncStore;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// The async-handle section.
pub(crate) struct AsyncHandle;

/// Figures of one backend.
#[derive(Debug, Clone, Serialize)]
struct AsyncResult {
    backend: &'static str,
    sync: Summary,
    async_handle: Summary,
    /// Async p50 / sync p50.
    ratio_p50: f64,
    /// Async p50 − sync p50, in nanoseconds (negative: within noise).
    added_p50_ns: i64,
}

fn measure(env: &Env, backend: &Backend) -> BenchResult<AsyncResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let db = AsyncStore::new(Arc::clone(&backend.store));
    let users = &backend.fixtures.users;
    let samples = env.plan.point_samples();
    let warmup = env.plan.point_warmup;
    let (mut sync, mut asynch) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..warmup + samples {
        let id = users[i % users.len()];
        // Alternate which goes first so that neither always gets the warmer cache.
        let mut timed = [0u64; 2];
        for turn in 0..2 {
            let variant = (i + turn) % 2;
            let started = Instant::now();
            if variant == 0 {
                backend.store.users().get(id)?;
            } else {
                runtime.block_on(db.users(move |u| u.get(id)))?;
            }
            timed[variant] = nanos(started.elapsed());
        }
        if i >= warmup {
            sync.push(timed[0]);
            asynch.push(timed[1]);
        }
    }
    let (Some(sync), Some(async_handle)) = (Summary::of(&mut sync), Summary::of(&mut asynch))
    else {
        return Err("no samples were taken (empty plan)".into());
    };
    Ok(AsyncResult {
        backend: backend.label(),
        ratio_p50: ratio(async_handle.p50_ns, sync.p50_ns),
        added_p50_ns: async_handle.p50_ns as i64 - sync.p50_ns as i64,
        sync,
        async_handle,
    })
}

impl Section for AsyncHandle {
    fn id(&self) -> &'static str {
        "async_handle"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let mut table = Table::new(
            "Get user by id: AsyncStore against the synchronous call, one caller (µs)",
            &[
                "backend",
                "calls",
                "sync p50",
                "async p50",
                "added p50",
                "async / sync",
                "sync p99",
                "async p99",
            ],
        );
        let mut results = Vec::new();
        for backend in env
            .backends
            .iter()
            .filter(|b| b.commit == Commit::ServerDefault)
        {
            progress(format!("async handle: {}", backend.label()));
            let r = measure(env, backend)?;
            table.row(vec![
                r.backend.to_owned(),
                r.sync.n.to_string(),
                fmt_us(r.sync.p50_ns),
                fmt_us(r.async_handle.p50_ns),
                format!("{:+.1}", r.added_p50_ns as f64 / 1000.0),
                format!("{:.2}×", r.ratio_p50),
                fmt_us(r.sync.p99_ns),
                fmt_us(r.async_handle.p99_ns),
            ]);
            results.push(r);
        }
        Ok(SectionReport {
            id: self.id(),
            title: "Async handle: AsyncStore against the synchronous call".into(),
            method: "One caller, the seeded users, the store of the point section. \"sync\" \
                     calls `store.users().get(id)` on the benchmark's thread; \"async\" awaits \
                     `AsyncStore::users(move |u| u.get(id))` on the same store with \
                     `Runtime::block_on` of a two-worker tokio runtime: a semaphore slot, \
                     `spawn_blocking`, the caller's span entered on the blocking thread, and \
                     the wake-up of the awaiting thread. The two take turns call by call, \
                     alternating which goes first. The added time is the handle's fixed cost \
                     per call; it does not grow with the query."
                .into(),
            tables: vec![table],
            notes: Vec::new(),
            targets: Vec::new(),
            data: serde_json::to_value(&results)?,
        })
    }
}
