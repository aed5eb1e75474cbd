//! Search and listings at scale (issue 18): one collection grown through the sizes of
//! the plan (full mode: 10,000 / 100,000 / 1,000,000 chunks) while as many chunks again
//! sit in 64 other collections (on PostgreSQL about 4 of them share the target's hash
//! partition), with each call measured at every size on SQLite and PostgreSQL.
//!
//! Text: about 60 log-uniform (Zipf-like) words of a 10,000-word vocabulary per chunk,
//! "common" in 42 % of chunks, "alpha" and "beta" each in 2 %, the phrase
//! "alpha beta" in 50 chunks and "zyzzyva" in 5 chunks of every collection (planted in
//! the first rows, so the counts hold at every size).

use super::{progress, Env, Section};
use crate::backend::{Backend, Commit};
use crate::report::{SectionReport, Table, TargetResult};
use crate::stats::{fmt_ms, nanos, Summary};
use crate::BenchResult;
use repo_core::{
    CollectionId, DocumentId, DocumentStatus, DocumentStatusUpdate, NewChunk, NewCollection,
    NewDocument, PageRequest, Principal, SearchQuery, MAX_CHUNK_BATCH,
};
use std::time::Instant;

/// The scale section.
pub(crate) struct Scale;

/// Other collections sharing the database with the target.
const OTHER_COLLECTIONS: usize = 64;
/// Chunks per document.
const CHUNKS_PER_DOCUMENT: usize = 100;
/// Hits per search page.
const PAGE: u32 = 20;
/// The deep page measured (by offset and by cursor).
const DEEP_PAGE: u64 = 50;

/// The calls measured, in table order.
const CALLS: [&str; 7] = [
    "word in 5 chunks",
    "phrase (50 chunks)",
    "common word, page 1",
    "common word, page 50 by offset",
    "common word, page 50 by cursor",
    "documents listing, page 1 of 50",
    "list_visible, page 1 of 50",
];

/// A deterministic 64-bit mix (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Chunk `i` of a collection seeded by `seed`.
fn chunk_text(seed: u64, i: u64) -> String {
    let mut text = String::with_capacity(420);
    let h = mix(seed ^ i.wrapping_mul(0x1000_0000_01b3));
    if h % 100 < 42 {
        text.push_str("common ");
    }
    if i < 50 {
        text.push_str("alpha beta ");
    } else if (h >> 8) % 100 < 2 {
        text.push_str("alpha ");
    }
    if i < 5 {
        text.push_str("zyzzyva ");
    }
    for k in 0..60u64 {
        // Log-uniform over 1..10,000: rank r with probability about 1 / (r ln V).
        let u = (mix(h ^ k) >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (10_000f64).powf(u) as u64;
        text.push_str(&format!("w{rank} "));
    }
    // At the end, so that "alpha" and "beta" are adjacent in the planted chunks only.
    if i >= 50 && (h >> 16) % 100 < 2 {
        text.push_str("beta");
    }
    text
}

/// Grows collections by calls of at most [`MAX_CHUNK_BATCH`] chunks.
struct Grower<'a> {
    backend: &'a Backend,
    collection: CollectionId,
    seed: u64,
    documents: Vec<DocumentId>,
    chunks: usize,
}

impl<'a> Grower<'a> {
    fn new(backend: &'a Backend, name: String, seed: u64) -> BenchResult<Self> {
        let new = NewCollection::new(name, backend.fixtures.owner);
        let collection = backend.store.collections().create(&new)?.id;
        Ok(Grower {
            backend,
            collection,
            seed,
            documents: Vec::new(),
            chunks: 0,
        })
    }

    /// Adds chunks (and their documents, 1 % of them failed) up to `size`.
    fn grow_to(&mut self, size: usize) -> BenchResult<()> {
        while self.chunks < size {
            let n = (size - self.chunks).min(MAX_CHUNK_BATCH);
            let first_doc = self.documents.len();
            let docs: Vec<NewDocument> = (first_doc
                ..(self.chunks + n).div_ceil(CHUNKS_PER_DOCUMENT))
                .map(|d| {
                    NewDocument::new(
                        self.collection,
                        format!("/scale/{d}.md"),
                        format!("{d}.md"),
                        4_000,
                        format!("{:016x}{:048x}", self.seed, d),
                    )
                })
                .collect();
            if !docs.is_empty() {
                let made = self.backend.store.documents().register_many(&docs)?;
                let ids: Vec<DocumentId> = made.iter().map(|r| r.document.id).collect();
                let failed: Vec<DocumentId> = ids.iter().step_by(100).copied().collect();
                self.backend.store.documents().update_status_many(
                    &failed,
                    &DocumentStatusUpdate::to(DocumentStatus::Failed),
                )?;
                self.documents.extend(ids);
            }
            let batch: Vec<NewChunk> = (self.chunks..self.chunks + n)
                .map(|i| {
                    NewChunk::new(
                        self.documents[i / CHUNKS_PER_DOCUMENT],
                        (i % CHUNKS_PER_DOCUMENT) as i32,
                        chunk_text(self.seed, i as u64),
                    )
                })
                .collect();
            self.backend
                .store
                .chunks()
                .insert_many(self.collection, &batch)?;
            self.chunks += n;
        }
        Ok(())
    }
}

/// p50 of `runs` calls of `f` (after one untimed call).
fn p50(runs: usize, mut f: impl FnMut() -> BenchResult<()>) -> BenchResult<Summary> {
    f()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        f()?;
        samples.push(nanos(start.elapsed()));
    }
    Summary::of(&mut samples).ok_or_else(|| "no samples".into())
}

/// The p50 of every call of [`CALLS`] on `grower`'s collection at its size.
fn measure_calls(grower: &Grower<'_>, runs: usize) -> BenchResult<Vec<u64>> {
    let store = &grower.backend.store;
    let c = grower.collection;
    let chunks = store.chunks();
    let search = |q: &str, page: PageRequest, expect: Option<u64>| -> BenchResult<()> {
        let got = chunks.search(c, &SearchQuery::parse(q), page)?;
        if let Some(n) = expect {
            if got.total != n {
                return Err(format!("search {q:?}: {} hits, expected {n}", got.total).into());
            }
        }
        Ok(())
    };
    let common = SearchQuery::parse("common");
    let before_deep = PageRequest::new((DEEP_PAGE - 2) * u64::from(PAGE), PAGE);
    let cursor = chunks
        .search(c, &common, before_deep)?
        .next
        .ok_or("no cursor before the deep page")?;
    let owner = Principal::User(grower.backend.fixtures.owner);
    let mut out = Vec::new();
    for call in CALLS {
        let summary = match call {
            "word in 5 chunks" => p50(runs, || {
                search("zyzzyva", PageRequest::first(PAGE), Some(5))
            })?,
            "phrase (50 chunks)" => p50(runs, || {
                search("\"alpha beta\"", PageRequest::first(PAGE), Some(50))
            })?,
            "common word, page 1" => {
                p50(runs, || search("common", PageRequest::first(PAGE), None))?
            }
            "common word, page 50 by offset" => p50(runs, || {
                search(
                    "common",
                    PageRequest::new((DEEP_PAGE - 1) * u64::from(PAGE), PAGE),
                    None,
                )
            })?,
            "common word, page 50 by cursor" => p50(runs, || {
                chunks.search_after(c, &common, Some(cursor), PAGE)?;
                Ok(())
            })?,
            "documents listing, page 1 of 50" => p50(runs, || {
                store.documents().list_by_collection(
                    c,
                    &Default::default(),
                    PageRequest::first(50),
                )?;
                Ok(())
            })?,
            _ => p50(runs, || {
                store
                    .collections()
                    .list_visible(owner, PageRequest::first(50))?;
                Ok(())
            })?,
        };
        out.push(summary.p50_ns);
    }
    Ok(out)
}

/// Figures of one backend: p50 per call per size.
#[derive(serde::Serialize)]
struct Measured {
    backend: &'static str,
    sizes: Vec<usize>,
    /// `p50[size][call]` in nanoseconds.
    p50: Vec<Vec<u64>>,
}

fn measure(
    backend: &Backend,
    sizes: &[usize],
    others: usize,
    runs: usize,
) -> BenchResult<Measured> {
    let label = backend.label();
    progress(format!(
        "scale on {label}: {others} chunks in {OTHER_COLLECTIONS} other collections"
    ));
    for k in 0..OTHER_COLLECTIONS {
        let mut other = Grower::new(backend, format!("scale other {k}"), 1_000 + k as u64)?;
        other.grow_to(others / OTHER_COLLECTIONS)?;
    }
    let mut target = Grower::new(backend, "scale target".into(), 7)?;
    let mut p50 = Vec::new();
    for &size in sizes {
        progress(format!(
            "scale on {label}: growing the collection to {size} chunks"
        ));
        let start = Instant::now();
        target.grow_to(size)?;
        progress(format!(
            "scale on {label}: loaded in {:.1} s; measuring",
            start.elapsed().as_secs_f64()
        ));
        p50.push(measure_calls(&target, runs)?);
    }
    Ok(Measured {
        backend: label,
        sizes: sizes.to_vec(),
        p50,
    })
}

/// The bound of `call` at the largest size, in milliseconds, relative to
/// page 1 for the cursor page.
fn absolute_target_ms(call: &str) -> Option<f64> {
    match call {
        "word in 5 chunks" => Some(5.0),
        "phrase (50 chunks)" => Some(20.0),
        "common word, page 1" => Some(50.0),
        "documents listing, page 1 of 50" | "list_visible, page 1 of 50" => Some(5.0),
        _ => None,
    }
}

impl Section for Scale {
    fn id(&self) -> &'static str {
        "scale"
    }

    fn run(&self, env: &mut Env) -> BenchResult<SectionReport> {
        let sizes = match std::env::var("REPO_BENCH_SCALE_SIZES") {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|n| n.trim().replace('_', "").parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("REPO_BENCH_SCALE_SIZES {list:?}: {e}"))?,
            _ => env.plan.scale_sizes.clone(),
        };
        let largest = sizes.iter().copied().max().unwrap_or(0);
        let runs = env.plan.scale_runs;
        let mut results = Vec::new();
        for backend in env
            .backends
            .iter()
            .filter(|b| b.commit == Commit::ServerDefault)
        {
            results.push(measure(backend, &sizes, largest, runs)?);
        }

        let mut header = vec!["backend".to_owned(), "call".to_owned()];
        header.extend(sizes.iter().map(|s| format!("{s} chunks, ms")));
        let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut table = Table::new(
            format!("p50 per call as the collection grows ({largest} chunks in other collections)"),
            &header_refs,
        );
        let mut targets = Vec::new();
        for m in &results {
            for (i, call) in CALLS.iter().enumerate() {
                let mut row = vec![m.backend.to_owned(), (*call).to_owned()];
                row.extend(m.p50.iter().map(|by_call| fmt_ms(by_call[i])));
                table.row(row);
            }
            let (Some(last), n) = (m.p50.last(), m.sizes.len()) else {
                continue;
            };
            let size = m.sizes[n - 1];
            for (i, call) in CALLS.iter().enumerate() {
                let ms = last[i] as f64 / 1e6;
                if let Some(bound) = absolute_target_ms(call) {
                    targets.push(TargetResult {
                        target: format!("{call} ≤ {bound} ms at 1,000,000 chunks"),
                        subject: format!("{} at {size} chunks", m.backend),
                        measured: format!("{ms:.2} ms"),
                        met: ms <= bound,
                    });
                }
                if n >= 2 && i < 5 {
                    let before = m.p50[n - 2][i] as f64 / 1e6;
                    targets.push(TargetResult {
                        target: format!("{call}: at most 2× its figure at the size before"),
                        subject: format!("{} at {size} vs {} chunks", m.backend, m.sizes[n - 2]),
                        measured: format!("{:.2}×", ms / before.max(1e-9)),
                        met: ms <= 2.0 * before,
                    });
                }
            }
            let page1 = last[2] as f64;
            let cursor = last[4] as f64;
            targets.push(TargetResult {
                target: "common word, any page by cursor ≤ 2× page 1".into(),
                subject: format!("{} at {size} chunks", m.backend),
                measured: format!("{:.2}×", cursor / page1.max(1.0)),
                met: cursor <= 2.0 * page1,
            });
        }

        Ok(SectionReport {
            id: "scale",
            title: "Search and listings at scale".into(),
            method: format!(
                "One collection grown to {sizes:?} chunks (about 400 bytes each: ~60 \
                 log-uniform words of a 10,000-word vocabulary, \"common\" in 42 % of \
                 chunks, the phrase \"alpha beta\" in 50, \"zyzzyva\" in 5) with \
                 {largest} chunks in {OTHER_COLLECTIONS} other collections loaded first \
                 (on PostgreSQL about {} of them share the target's hash partition), \
                 1 document per {CHUNKS_PER_DOCUMENT} chunks, 1 % of them failed. Each \
                 call runs once untimed then {runs} times; the p50 is reported. Search \
                 pages hold {PAGE} hits; page {DEEP_PAGE} by offset, and by the cursor of \
                 page {}. The 1,000,000 targets are checked at the largest size of the run.",
                OTHER_COLLECTIONS / 16,
                DEEP_PAGE - 1
            ),
            tables: vec![table],
            notes: Vec::new(),
            targets,
            data: serde_json::json!({ "calls": CALLS, "results": results }),
        })
    }
}
