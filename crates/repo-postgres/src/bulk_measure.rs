//! Comparison of the bulk write strategies (an ignored test that prints a table);
//! the bulk paths against their raw baselines are a section of `repo-bench`
//! (`bash scripts/bench.sh`):
//!
//! ```text
//! cargo test -p repo-postgres --release --lib bulk_strategies -- --ignored --nocapture
//! ```
//!
//! Each round registers 10,000 new documents into a fresh collection with each
//! strategy of `register_many`, then inserts 100,000 chunks (100 documents × 1,000)
//! with each strategy of `insert_many`, in ten calls of 10,000 (its largest batch).
//! Every figure is the whole work: validation, token computation, reads, writes and
//! the commits. `BULK_ROUNDS` sets the number of rounds (default 7).

use crate::chunks;
use crate::documents::{self, BulkStrategy};
use crate::pool::read_committed;
use crate::testing::TempDatabase;
use crate::PostgresStore;
use diesel::pg::PgConnection;
use diesel::Connection;
use repo_core::{
    CollectionId, NewChunk, NewCollection, NewDocument, NewUser, RepoResult, Repositories,
    StoreConfig,
};
use std::time::{Duration, Instant};

const DOCUMENTS: usize = 10_000;
const CHUNK_DOCUMENTS: usize = 100;
const CHUNKS_PER_DOCUMENT: usize = 1_000;
/// Chunks per round: [`CHUNK_DOCUMENTS`] × [`CHUNKS_PER_DOCUMENT`].
const CHUNK_ROWS: usize = CHUNK_DOCUMENTS * CHUNKS_PER_DOCUMENT;
/// Chunks per `insert_many` call.
const CHUNK_CALL: usize = 10_000;

/// Rounds to run: `BULK_ROUNDS`, default 7.
fn rounds() -> usize {
    std::env::var("BULK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
}

const WORDS: &[&str] = &[
    "rust",
    "diesel",
    "postgres",
    "sqlite",
    "chunk",
    "vector",
    "search",
    "index",
    "token",
    "embedding",
    "collection",
    "document",
    "naïve",
    "größe",
    "café",
    "tokio",
    "async",
    "runtime",
    "query",
    "ranking",
    "semantic",
    "partition",
    "copy",
    "stream",
    "buffer",
];

/// A deterministic pseudo-random text of about `len` characters.
fn text(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        out.push(if x % 11 == 0 { '.' } else { ' ' });
    }
    out
}

fn hash(n: u64) -> String {
    format!("{:064x}", n)
}

fn new_documents(collection: CollectionId, salt: u64) -> Vec<NewDocument> {
    (0..DOCUMENTS as u64)
        .map(|i| {
            let mut d = NewDocument::new(
                collection,
                format!("/data/source/{salt}/{i}.md"),
                format!("{i}.md"),
                1024 + i as i64,
                hash((salt << 32) | i),
            );
            d.mime_type = Some("text/markdown".into());
            d.uri = Some(format!("file:///data/source/{salt}/{i}.md"));
            d.meta = serde_json::json!({"source": "bench", "n": i});
            d
        })
        .collect()
}

fn new_chunks(documents: &[repo_core::DocumentId]) -> Vec<NewChunk> {
    let mut out = Vec::with_capacity(documents.len() * CHUNKS_PER_DOCUMENT);
    for (d, id) in documents.iter().enumerate() {
        for i in 0..CHUNKS_PER_DOCUMENT {
            let mut c = NewChunk::new(*id, i as i32, text((d * 1000 + i) as u64, 800));
            c.start_offset = Some(i as i32 * 800);
            c.end_offset = Some(i as i32 * 800 + 800);
            c.token_count = Some(160);
            out.push(c);
        }
    }
    out
}

fn timed<T>(f: impl FnOnce() -> RepoResult<T>) -> (Duration, T) {
    let start = Instant::now();
    let value = f().expect("measured call");
    (start.elapsed(), value)
}

#[derive(Default)]
struct Series(Vec<Duration>);

impl Series {
    fn median(&self) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v[v.len() / 2]
    }

    fn min(&self) -> Duration {
        self.0.iter().copied().min().unwrap_or_default()
    }

    /// One table row: median and best time, rows/s of each, and the share of the
    /// reference's rows/s (median against median, best against best).
    fn row(&self, name: &str, rows: usize, baseline: &Series) {
        let rate = |d: Duration| rows as f64 / d.as_secs_f64();
        let (median, best) = (self.median(), self.min());
        println!(
            "| {name:<58} | {:>8.1} | {:>8.1} | {:>8.0} | {:>8.0} | {:>5.0} % | {:>5.0} % |",
            median.as_secs_f64() * 1000.0,
            best.as_secs_f64() * 1000.0,
            rate(median),
            rate(best),
            100.0 * rate(median) / rate(baseline.median()),
            100.0 * rate(best) / rate(baseline.min()),
        );
    }
}

struct Fixture {
    _db: TempDatabase,
    store: PostgresStore,
    conn: PgConnection,
    owner: repo_core::UserId,
    collections: u64,
}

impl Fixture {
    fn new() -> Self {
        let admin = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db = TempDatabase::create(&admin).expect("temp database");
        let store = PostgresStore::connect(db.url(), &StoreConfig::default()).expect("connect");
        let owner = store
            .users()
            .create(&NewUser::new(
                "bench",
                "bench@example.com",
                "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
            ))
            .expect("user")
            .id;
        let conn = PgConnection::establish(db.url()).expect("connection");
        Self {
            _db: db,
            store,
            conn,
            owner,
            collections: 0,
        }
    }

    fn collection(&mut self) -> CollectionId {
        self.collections += 1;
        self.store
            .collections()
            .create(&NewCollection::new(
                format!("bench {}", self.collections),
                self.owner,
            ))
            .expect("collection")
            .id
    }
}

/// Both strategies write a batch of [`DOCUMENTS`] new documents, more than one
/// statement's bind parameters can carry (the multi-row insert goes in slices):
/// every document registered, each once.
#[test]
fn both_strategies_write_a_batch_over_the_bind_limit() {
    let mut fx = Fixture::new();
    for (k, strategy) in [BulkStrategy::Copy, BulkStrategy::MultiRowInsert]
        .into_iter()
        .enumerate()
    {
        let c = fx.collection();
        let batch = new_documents(c, k as u64);
        let out = read_committed(&mut fx.conn, |conn| {
            documents::register_many_with(conn, &batch, strategy)
        })
        .unwrap_or_else(|e| panic!("{strategy:?}: {e}"));
        assert_eq!(out.len(), DOCUMENTS, "{strategy:?}");
        assert!(out.iter().all(|r| r.created), "{strategy:?}");
    }
}

/// Prints rows/s of both strategies of each bulk path.
#[test]
#[ignore = "measurement: run with --release --ignored --nocapture"]
fn bulk_strategies() {
    let mut fx = Fixture::new();
    let mut doc_copy = Series::default();
    let mut doc_insert = Series::default();
    let mut doc_overlap = Series::default();
    let mut chunk_copy = Series::default();
    let mut chunk_insert = Series::default();

    let rounds = rounds();
    for round in 0..rounds as u64 {
        // Alternate the order so neither strategy always meets the larger table.
        let order = if round % 2 == 0 {
            [BulkStrategy::Copy, BulkStrategy::MultiRowInsert]
        } else {
            [BulkStrategy::MultiRowInsert, BulkStrategy::Copy]
        };
        for (k, strategy) in order.into_iter().enumerate() {
            let c = fx.collection();
            let batch = new_documents(c, round * 10 + k as u64);
            let (t, out) = timed(|| {
                read_committed(&mut fx.conn, |conn| {
                    documents::register_many_with(conn, &batch, strategy)
                })
            });
            assert_eq!(out.len(), DOCUMENTS);
            assert!(out.iter().all(|r| r.created));
            match strategy {
                BulkStrategy::Copy => doc_copy.0.push(t),
                BulkStrategy::MultiRowInsert => doc_insert.0.push(t),
            }
            if strategy == documents::REGISTER_STRATEGY {
                // Half already stored, half new: the common re-sync case.
                let mut again = new_documents(c, 1_000 + round);
                again[..DOCUMENTS / 2].clone_from_slice(&batch[..DOCUMENTS / 2]);
                let (t, out) = timed(|| {
                    read_committed(&mut fx.conn, |conn| {
                        documents::register_many_with(conn, &again, strategy)
                    })
                });
                assert_eq!(out.iter().filter(|r| r.created).count(), DOCUMENTS / 2);
                doc_overlap.0.push(t);
            }
        }
        // Chunks: 100 documents of 1,000 chunks per strategy.
        for strategy in order {
            let c = fx.collection();
            let docs: Vec<NewDocument> = new_documents(c, 2_000 + round)
                .into_iter()
                .take(CHUNK_DOCUMENTS)
                .collect();
            let ids: Vec<repo_core::DocumentId> = fx
                .store
                .documents()
                .register_many(&docs)
                .expect("documents")
                .into_iter()
                .map(|r| r.document.id)
                .collect();
            let batch = new_chunks(&ids);
            let (t, n) = timed(|| {
                let mut n = 0;
                for call in batch.chunks(CHUNK_CALL) {
                    n += read_committed(&mut fx.conn, |conn| {
                        chunks::insert_many_with(conn, c, call, strategy)
                    })?;
                }
                Ok(n)
            });
            assert_eq!(n as usize, batch.len());
            match strategy {
                BulkStrategy::Copy => chunk_copy.0.push(t),
                BulkStrategy::MultiRowInsert => chunk_insert.0.push(t),
            }
        }
    }

    println!();
    println!(
        "{rounds} rounds; share = rows/s relative to the COPY strategy of the same \
         path (median vs median, best vs best); {DOCUMENTS} documents in one call, \
         {CHUNK_ROWS} chunks in calls of {CHUNK_CALL}"
    );
    println!(
        "| {:<58} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} | {:>7} |",
        "call", "med ms", "best ms", "med r/s", "best r/s", "med %", "best %"
    );
    println!(
        "|{:-<60}|{:-<10}|{:-<10}|{:-<10}|{:-<10}|{:-<9}|{:-<9}|",
        "", "", "", "", "", "", ""
    );
    let table = [
        (
            "documents: register_many, COPY to staging + INSERT SELECT",
            DOCUMENTS,
            &doc_copy,
            &doc_copy,
        ),
        (
            "documents: register_many, multi-row INSERT (3 statements)",
            DOCUMENTS,
            &doc_insert,
            &doc_copy,
        ),
        (
            "documents: register_many (chosen), half already stored",
            DOCUMENTS,
            &doc_overlap,
            &doc_copy,
        ),
        (
            "chunks: insert_many, COPY into chunks",
            CHUNK_ROWS,
            &chunk_copy,
            &chunk_copy,
        ),
        (
            "chunks: insert_many, multi-row INSERT (2 statements)",
            CHUNK_ROWS,
            &chunk_insert,
            &chunk_copy,
        ),
    ];
    for (name, rows, series, baseline) in table {
        series.row(name, rows, baseline);
    }
}
