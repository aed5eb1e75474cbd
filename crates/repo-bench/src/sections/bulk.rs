//! Bulk paths: `DocumentRepository::register_many` and `ChunkRepository::insert_many`
//! through the factory's handle against the raw baselines of `crate::raw`
//! ([`crate::raw::BulkBaseline`]), rows per second and the ratio, on SQLite and
//! PostgreSQL. Every run writes into a fresh collection, so each call registers new
//! rows only.

use super::{progress, Env, Section};
use crate::backend::{Backend, Commit};
use crate::report::{SectionReport, Table, TargetResult};
use crate::BenchResult;
use repo_core::{CollectionId, DocumentId, NewChunk, NewCollection, NewDocument};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The bulk section.
pub(crate) struct Bulk;

/// Documents the chunks of one run belong to.
const CHUNK_DOCUMENTS: usize = 100;

/// The target: `register_many` at least this share of the raw rows/s.
const REGISTER_TARGET: f64 = 0.5;
/// Issue 15: `insert_many` on PostgreSQL against a raw binary `COPY` of the same rows.
const INSERT_COPY_TARGET: f64 = 0.9;

/// One path on one backend.
#[derive(Debug, Serialize)]
struct BulkResult {
    backend: &'static str,
    path: &'static str,
    rows: usize,
    repo_ms: f64,
    repo_rows_per_s: f64,
    raw_ms: f64,
    raw_rows_per_s: f64,
    /// Repository rows/s over raw rows/s.
    ratio: f64,
    /// PostgreSQL chunks: the raw `COPY` in call-sized transactions, each followed by
    /// the repository's upkeep (GIN pending list flushed, partition analyzed when
    /// stale).
    upkeep_ms: Option<f64>,
    /// Repository rows/s over that baseline's rows/s.
    upkeep_ratio: Option<f64>,
}

impl BulkResult {
    fn new(
        backend: &'static str,
        path: &'static str,
        rows: usize,
        repo: Duration,
        raw: Duration,
    ) -> Self {
        let rate = |d: Duration| rows as f64 / d.as_secs_f64().max(1e-9);
        BulkResult {
            backend,
            path,
            rows,
            repo_ms: repo.as_secs_f64() * 1e3,
            repo_rows_per_s: rate(repo),
            raw_ms: raw.as_secs_f64() * 1e3,
            raw_rows_per_s: rate(raw),
            ratio: rate(repo) / rate(raw),
            upkeep_ms: None,
            upkeep_ratio: None,
        }
    }

    fn with_upkeep(mut self, upkeep: Option<Duration>) -> Self {
        if let Some(d) = upkeep {
            self.upkeep_ms = Some(d.as_secs_f64() * 1e3);
            self.upkeep_ratio = Some(d.as_secs_f64() / (self.repo_ms / 1e3).max(1e-9));
        }
        self
    }
}

/// Hands out fresh collections of one backend.
struct Collections<'a> {
    backend: &'a Backend,
    made: usize,
}

impl Collections<'_> {
    fn fresh(&mut self) -> BenchResult<CollectionId> {
        self.made += 1;
        let new = NewCollection::new(format!("bulk {}", self.made), self.backend.fixtures.owner);
        Ok(self.backend.store.collections().create(&new)?.id)
    }

    /// A fresh collection holding [`CHUNK_DOCUMENTS`] documents; their ids.
    fn with_documents(&mut self) -> BenchResult<(CollectionId, Vec<DocumentId>)> {
        let c = self.fresh()?;
        let docs = documents(c, CHUNK_DOCUMENTS);
        let ids = self
            .backend
            .store
            .documents()
            .register_many(&docs)?
            .into_iter()
            .map(|r| r.document.id)
            .collect();
        Ok((c, ids))
    }
}

/// `n` new documents of `collection`, with distinct hashes and URIs.
pub(crate) fn documents(collection: CollectionId, n: usize) -> Vec<NewDocument> {
    (0..n as u64)
        .map(|i| {
            let mut d = NewDocument::new(
                collection,
                format!("/data/source/{i}.md"),
                format!("{i}.md"),
                1024 + i as i64,
                format!("{:032x}{i:032x}", collection.0.as_u128() as u64),
            );
            d.mime_type = Some("text/markdown".into());
            d.uri = Some(format!("file:///data/source/{i}.md"));
            d.meta = serde_json::json!({"source": "bench", "n": i});
            d
        })
        .collect()
}

/// A deterministic text of about 500 bytes (the generator of the former repo-sqlite
/// `bulk_bench` example).
fn chunk_text(i: u64) -> String {
    const WORDS: [&str; 12] = [
        "vector",
        "search",
        "embedding",
        "document",
        "chunk",
        "index",
        "query",
        "ranking",
        "collection",
        "token",
        "naïve",
        "größe",
    ];
    let mut text = String::with_capacity(520);
    let mut k = i;
    while text.len() < 500 {
        text.push_str(WORDS[(k % WORDS.len() as u64) as usize]);
        text.push(' ');
        k = k.wrapping_mul(31).wrapping_add(7);
    }
    text.push_str(&i.to_string());
    text
}

/// `n` chunks of about 500 bytes spread over `docs`.
pub(crate) fn chunks(docs: &[DocumentId], n: usize) -> Vec<NewChunk> {
    (0..n)
        .map(|i| {
            let index = (i / docs.len()) as i32;
            let mut c = NewChunk::new(docs[i % docs.len()], index, chunk_text(i as u64));
            c.start_offset = Some(index * 500);
            c.end_offset = Some(index * 500 + 500);
            c.token_count = Some(100);
            c
        })
        .collect()
}

/// Best of `rounds` runs of `f`.
fn best(rounds: usize, mut f: impl FnMut() -> BenchResult<Duration>) -> BenchResult<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..rounds.max(1) {
        best = best.min(f()?);
    }
    Ok(best)
}

fn measure(backend: &mut Backend, env_plan: &crate::cli::Plan) -> BenchResult<Vec<BulkResult>> {
    let (n_docs, n_chunks, call) = (
        env_plan.bulk_documents,
        env_plan.bulk_chunks,
        env_plan.chunk_call,
    );
    let rounds = env_plan.bulk_rounds;
    let label = backend.label();
    let mut raw = backend.open_raw()?;
    let mut made = Collections { backend, made: 0 };

    progress(format!(
        "bulk on {label}: register_many of {n_docs} documents"
    ));
    let repo_docs = best(rounds, || {
        let batch = documents(made.fresh()?, n_docs);
        let start = Instant::now();
        let out = made.backend.store.documents().register_many(&batch)?;
        let took = start.elapsed();
        if out.iter().filter(|r| r.created).count() != n_docs {
            return Err("register_many did not create every document".into());
        }
        Ok(took)
    })?;
    let raw_docs = best(rounds, || {
        let rows = repo_core::document::prepare_batch(&documents(made.fresh()?, n_docs))?;
        Ok(raw.bulk().insert_documents(&rows)?)
    })?;

    progress(format!(
        "bulk on {label}: insert_many of {n_chunks} chunks in calls of {call}"
    ));
    let repo_chunks = best(rounds, || {
        let (c, ids) = made.with_documents()?;
        let batch = chunks(&ids, n_chunks);
        let start = Instant::now();
        let mut written = 0;
        for slice in batch.chunks(call) {
            written += made.backend.store.chunks().insert_many(c, slice)?;
        }
        let took = start.elapsed();
        if written != n_chunks as u64 {
            return Err(format!("insert_many wrote {written} of {n_chunks} chunks").into());
        }
        Ok(took)
    })?;
    let raw_chunks = best(rounds, || {
        let (c, ids) = made.with_documents()?;
        // Validated per call-sized slice (the batch limit), written at once.
        let mut rows = Vec::with_capacity(n_chunks);
        for slice in chunks(&ids, n_chunks).chunks(call) {
            rows.extend(repo_core::chunk::prepare_batch(c, slice)?);
        }
        Ok(raw.bulk().insert_chunks(&rows)?)
    })?;
    let mut upkept: Option<Duration> = None;
    for _ in 0..rounds.max(1) {
        let (c, ids) = made.with_documents()?;
        let mut rows = Vec::with_capacity(n_chunks);
        for slice in chunks(&ids, n_chunks).chunks(call) {
            rows.extend(repo_core::chunk::prepare_batch(c, slice)?);
        }
        if let Some(d) = raw.bulk().insert_chunks_with_upkeep(&rows, call)? {
            upkept = Some(upkept.map_or(d, |best| best.min(d)));
        }
    }

    Ok(vec![
        BulkResult::new(label, "register_many", n_docs, repo_docs, raw_docs),
        BulkResult::new(label, "insert_many", n_chunks, repo_chunks, raw_chunks)
            .with_upkeep(upkept),
    ])
}

impl Section for Bulk {
    fn id(&self) -> &'static str {
        "bulk"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let plan = env.plan.clone();
        let mut results = Vec::new();
        // Asynchronous commit changes little for a few large transactions: left out.
        for backend in env
            .backends
            .iter_mut()
            .filter(|b| b.commit == Commit::ServerDefault)
        {
            results.extend(measure(backend, &plan)?);
        }

        let mut table = Table::new(
            "Rows per second, best of the runs",
            &[
                "backend",
                "path",
                "rows",
                "repo ms",
                "repo rows/s",
                "raw ms",
                "raw rows/s",
                "repo / raw",
                "raw + upkeep ms",
                "repo / (raw + upkeep)",
            ],
        );
        let mut targets = Vec::new();
        for r in &results {
            table.row(vec![
                r.backend.to_owned(),
                r.path.to_owned(),
                r.rows.to_string(),
                format!("{:.1}", r.repo_ms),
                format!("{:.0}", r.repo_rows_per_s),
                format!("{:.1}", r.raw_ms),
                format!("{:.0}", r.raw_rows_per_s),
                format!("{:.2}×", r.ratio),
                r.upkeep_ms.map_or("–".into(), |ms| format!("{ms:.1}")),
                r.upkeep_ratio.map_or("–".into(), |x| format!("{x:.2}×")),
            ]);
            if r.path == "insert_many" && r.upkeep_ms.is_some() {
                targets.push(TargetResult {
                    target: format!("insert_many ≥ {INSERT_COPY_TARGET}× raw binary COPY rows/s"),
                    subject: format!("insert_many, {}", r.backend),
                    measured: format!("{:.2}×", r.ratio),
                    met: r.ratio >= INSERT_COPY_TARGET,
                });
            }
            if r.path == "register_many" {
                targets.push(TargetResult {
                    target: format!("register_many ≥ {REGISTER_TARGET}× raw rows/s"),
                    subject: format!("register_many, {}", r.backend),
                    measured: format!("{:.2}×", r.ratio),
                    met: r.ratio >= REGISTER_TARGET,
                });
            }
        }
        Ok(SectionReport {
            id: self.id(),
            title: "Bulk paths".into(),
            method: format!(
                "`DocumentRepository::register_many` of {} new documents in one call and \
                 `ChunkRepository::insert_many` of {} chunks (about 500 bytes each, over {} \
                 documents) in calls of {}, through the factory's handle, each into a fresh \
                 collection; every figure is the whole call (validation, search tokens, \
                 reads, writes, commit). Raw baselines, on a held connection with the same \
                 schema and settings, write the same rows (validated and converted, search \
                 tokens included, before the clock starts): SQLite one prepared single-row \
                 INSERT per row in one `BEGIN IMMEDIATE` transaction, PostgreSQL one binary \
                 `COPY` in one transaction. On PostgreSQL, chunks also against the same \
                 `COPY` in transactions of one call's rows, each followed by the upkeep \
                 the repository does after a bulk call (the GIN pending list flushed with \
                 `gin_clean_pending_list`, the partition analyzed when never analyzed or \
                 grown by a tenth): *raw + upkeep*. Best of {} run(s); ratio = repository \
                 rows/s over raw rows/s (1.00× is parity, higher is faster).",
                plan.bulk_documents,
                plan.bulk_chunks,
                CHUNK_DOCUMENTS,
                plan.chunk_call,
                plan.bulk_rounds
            ),
            tables: vec![table],
            notes: Vec::new(),
            targets,
            data: serde_json::to_value(&results)?,
        })
    }
}
