//! Read replicas: read throughput through the stale-tolerant view with one streaming
//! replica against the primary alone, and the cost of `read_after` against a plain
//! primary read, in the same run, on a database of its own on the replication primary
//! (`BENCH_PRIMARY_URL`/`BENCH_STANDBY_URL`, else `TEST_PRIMARY_URL`/`TEST_STANDBY_URL`).
//!
//! On one machine the replica shares the cores with the primary: the figures check the
//! mechanism (where reads go, what the routing costs), not the scale-out.

use super::point::ratio;
use super::{progress, Env, Section};
use crate::report::{SectionReport, Table};
use crate::stats::{fmt_us, nanos, Summary};
use crate::BenchResult;
use repo_core::{NewUser, ReplicaConfig, Repositories, Store, StoreConfig, UserId, WritePosition};
use repo_postgres::testing::{wait_until_connectable, TempDatabase};
use repo_postgres::PostgresStore;
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The replica section.
pub(crate) struct Replicas;

/// Threads of the throughput measurement.
const THREADS: usize = 4;
/// Users seeded and read.
const USERS: usize = 200;

fn env_pair() -> Option<(String, String)> {
    let get = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    get("BENCH_PRIMARY_URL")
        .zip(get("BENCH_STANDBY_URL"))
        .or_else(|| get("TEST_PRIMARY_URL").zip(get("TEST_STANDBY_URL")))
}

#[derive(Debug, Clone, Serialize)]
struct Throughput {
    view: &'static str,
    reads_per_s: f64,
    replica_share: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Latency {
    read: &'static str,
    summary: Summary,
    ratio_p50: f64,
    replica_share: f64,
}

fn replica_reads(store: &dyn Store) -> u64 {
    store.nodes().get(1).map_or(0, |n| n.routed_reads)
}

/// Reads users on `THREADS` threads for `window` through `read`; reads per second.
fn throughput(
    window: Duration,
    users: &[UserId],
    read: &(dyn Fn(UserId) -> repo_core::RepoResult<()> + Sync),
) -> BenchResult<f64> {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (stop, count, failed) = (&stop, &count, &failed);
            scope.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    if read(users[i % users.len()]).is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            });
        }
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
    });
    if failed.load(Ordering::Relaxed) {
        return Err("a read failed during the throughput window".into());
    }
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn latency(samples: usize, mut call: impl FnMut(usize) -> BenchResult<()>) -> BenchResult<Summary> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        call(i)?;
        out.push(nanos(started.elapsed()));
    }
    Summary::of(&mut out).ok_or_else(|| "no samples".into())
}

impl Section for Replicas {
    fn id(&self) -> &'static str {
        "replicas"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let (primary_url, standby_url) = env_pair().ok_or(
            "neither BENCH_PRIMARY_URL/BENCH_STANDBY_URL nor TEST_PRIMARY_URL/TEST_STANDBY_URL \
             is set: the replica section needs a primary and a streaming replica of it \
             (scripts/bench.sh provisions them)",
        )?;
        let quick = env.plan.copy_chunks.is_none();
        let window = if quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        };
        let samples = if quick { 2_000 } else { 20_000 };

        let db = TempDatabase::create_replicated(&primary_url)?;
        let replica_url = db.url_through(&standby_url)?;
        wait_until_connectable(&replica_url, Duration::from_secs(120))?;
        let primary_only = PostgresStore::connect(db.url(), &StoreConfig::default())?;
        let users: Vec<UserId> = (0..USERS)
            .map(|i| {
                primary_only
                    .users()
                    .create(&NewUser::new(
                        format!("reader{i}"),
                        format!("reader{i}@example.com"),
                        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                    ))
                    .map(|u| u.id)
            })
            .collect::<Result<_, _>>()?;
        let replicated = PostgresStore::connect(
            db.url(),
            &StoreConfig {
                replicas: ReplicaConfig {
                    urls: vec![replica_url],
                    ..ReplicaConfig::default()
                },
                ..StoreConfig::default()
            },
        )?;
        // Wait until the replica has replayed the seeded users.
        let seeded = replicated.write_position()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let before = replica_reads(&replicated);
            replicated.read_after(&seeded).users().get(users[0])?;
            if replica_reads(&replicated) > before {
                break;
            }
            if Instant::now() > deadline {
                return Err("the replica did not catch up with the seeded users in 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        progress("replicas: throughput, primary alone");
        let alone = throughput(window, &users, &|id| {
            primary_only.users().get(id).map(|_| ())
        })?;
        progress("replicas: throughput, stale-tolerant view with one replica");
        let before = replica_reads(&replicated);
        let started = Instant::now();
        let through_view = throughput(window, &users, &|id| {
            replicated.replica().users().get(id).map(|_| ())
        })?;
        let served = (replica_reads(&replicated) - before) as f64;
        let view_share = served / (through_view * started.elapsed().as_secs_f64()).max(1.0);
        let throughputs = vec![
            Throughput {
                view: "primary alone (store)",
                reads_per_s: alone,
                replica_share: 0.0,
            },
            Throughput {
                view: "store.replica(), one replica",
                reads_per_s: through_view,
                replica_share: view_share.min(1.0),
            },
        ];

        progress("replicas: latency of read_after against a plain read");
        let plain = latency(samples, |i| {
            primary_only.users().get(users[i % USERS])?;
            Ok(())
        })?;
        let before = replica_reads(&replicated);
        let replayed = latency(samples, |i| {
            replicated
                .read_after(&seeded)
                .users()
                .get(users[i % USERS])?;
            Ok(())
        })?;
        let replayed_share = (replica_reads(&replicated) - before) as f64 / samples as f64;
        // A position taken right after a write: the replica is behind it, so the read
        // refreshes the replica's position (one query) and then goes to the primary.
        let fresh_samples = samples / 4;
        let positions: Vec<WritePosition> = (0..fresh_samples)
            .map(|i| {
                replicated
                    .users()
                    .record_login(users[i % USERS])
                    .and_then(|_| replicated.write_position())
            })
            .collect::<Result<_, _>>()?;
        let before = replica_reads(&replicated);
        let fresh = latency(fresh_samples, |i| {
            replicated
                .read_after(&positions[i])
                .users()
                .get(users[i % USERS])?;
            Ok(())
        })?;
        let fresh_share = (replica_reads(&replicated) - before) as f64 / fresh_samples as f64;
        let latencies = vec![
            Latency {
                read: "plain read on the store (primary)",
                ratio_p50: 1.0,
                summary: plain,
                replica_share: 0.0,
            },
            Latency {
                read: "read_after(a replayed position)",
                ratio_p50: ratio(replayed.p50_ns, plain.p50_ns),
                summary: replayed,
                replica_share: replayed_share,
            },
            Latency {
                read: "read_after(a position the replica has not replayed yet)",
                ratio_p50: ratio(fresh.p50_ns, plain.p50_ns),
                summary: fresh,
                replica_share: fresh_share,
            },
        ];

        let mut t1 = Table::new(
            format!("Read throughput, {THREADS} threads, get user by id ({window:?} each)"),
            &[
                "reads through",
                "reads/s",
                "ratio to primary alone",
                "served by the replica",
            ],
        );
        for t in &throughputs {
            t1.row(vec![
                t.view.to_owned(),
                format!("{:.0}", t.reads_per_s),
                format!("{:.2}×", t.reads_per_s / alone.max(1.0)),
                format!("{:.0} %", t.replica_share * 100.0),
            ]);
        }
        let mut t2 = Table::new(
            "Latency of read_after against a plain read, one thread, get user by id (µs)",
            &[
                "read",
                "calls",
                "p50",
                "p99",
                "p50 ratio to plain",
                "served by the replica",
            ],
        );
        for l in &latencies {
            t2.row(vec![
                l.read.to_owned(),
                l.summary.n.to_string(),
                fmt_us(l.summary.p50_ns),
                fmt_us(l.summary.p99_ns),
                format!("{:.2}×", l.ratio_p50),
                format!("{:.0} %", l.replica_share * 100.0),
            ]);
        }
        Ok(SectionReport {
            id: self.id(),
            title: "Read replicas: the stale-tolerant view and read_after".into(),
            method: "A database of its own on the replication primary, with one streaming \
                     replica (hot standby) on the same machine. Throughput: 4 threads read \
                     users by id for a fixed window, first through a store without replicas, \
                     then through `store.replica()` of a store with the replica. Latency: one \
                     thread; a plain read on the store, `read_after` with a position the \
                     replica has replayed (served by the replica after a cached check, no \
                     extra round trip), and `read_after` with a position taken right after a \
                     write (the replica is behind it: one query refreshes its position, then \
                     the read goes to the primary). The replica shares this machine's cores \
                     with the primary, so the throughput figure checks the mechanism, not the \
                     scale-out a replica on its own host gives."
                .into(),
            tables: vec![t1, t2],
            notes: Vec::new(),
            // The issue asks for the figures, without a bound to meet.
            targets: Vec::new(),
            data: json!({ "throughput": throughputs, "latency": latencies }),
        })
    }
}
