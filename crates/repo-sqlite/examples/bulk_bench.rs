//! Times the bulk paths against a raw baseline on file databases and prints a table.
//!
//! ```text
//! cargo run -p repo-sqlite --release --example bulk_bench [rounds]
//! ```
//!
//! - `register_many`: `DocumentRepository::register_many` of 10,000 new documents.
//! - `insert_many`: 100,000 chunks of ~500 characters through
//!   `ChunkRepository::insert_many`, in ten calls of 10,000 (its largest batch);
//!   computing the search tokens and the FTS5 trigger included.
//! - The baseline inserts the same rows, search tokens included, with one prepared
//!   single-row `INSERT` per row (Diesel caches the statement) in one
//!   `BEGIN IMMEDIATE` transaction on a plain `SqliteConnection`: same schema,
//!   triggers and PRAGMAs, bind values (and the tokens) computed before the clock
//!   starts.
//!
//! Each round uses fresh databases; the best round is reported. `BENCH_DIR` sets
//! where the database files go (default: the system temporary directory).

use diesel::connection::SimpleConnection;
use diesel::{Connection, Insertable, RunQueryDsl, SqliteConnection};
use repo_core::{
    CollectionId, DocumentId, NewChunk, NewCollection, NewDocument, NewUser, Repositories,
    StoreConfig,
};
use repo_sqlite::SqliteStore;
use std::time::{Duration, Instant};

const ROWS: usize = 10_000;
/// Chunks per run: ten `insert_many` calls of [`ROWS`].
const CHUNK_ROWS: usize = 100_000;
const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

type Bench<T> = Result<T, Box<dyn std::error::Error>>;

/// A fresh, migrated database file with one user and one collection.
fn fresh(dir: &std::path::Path, name: &str) -> Bench<(String, SqliteStore, CollectionId)> {
    let path = dir.join(name).to_str().ok_or("non-UTF-8 path")?.to_owned();
    let store = SqliteStore::connect(&path, &StoreConfig::default())?;
    let user = store
        .users()
        .create(&NewUser::new("bench", "bench@example.com", HASH))?;
    let collection = store
        .collections()
        .create(&NewCollection::new("bench", user.id))?;
    Ok((path, store, collection.id))
}

/// A plain connection with the store's PRAGMAs.
fn raw_connection(path: &str) -> Bench<SqliteConnection> {
    let mut conn = SqliteConnection::establish(path)?;
    conn.batch_execute("PRAGMA busy_timeout = 5000")?;
    conn.batch_execute("PRAGMA journal_mode = WAL")?;
    conn.batch_execute("PRAGMA synchronous = NORMAL")?;
    conn.batch_execute("PRAGMA foreign_keys = ON")?;
    Ok(conn)
}

fn documents(collection: CollectionId, salt: u64) -> Vec<NewDocument> {
    (0..ROWS as u64)
        .map(|n| {
            let mut d = NewDocument::new(
                collection,
                format!("/data/source/{n}.txt"),
                format!("{n}.txt"),
                1_000 + n as i64,
                format!("{:032x}{n:032x}", salt),
            );
            d.mime_type = Some("text/plain".into());
            d.uri = Some(format!("https://example.com/{n}"));
            d.meta = serde_json::json!({"source": "bench", "n": n});
            d
        })
        .collect()
}

fn chunk_text(i: usize) -> String {
    let words = [
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
    ];
    let mut text = String::with_capacity(520);
    let mut k = i;
    while text.len() < 500 {
        text.push_str(words[k % words.len()]);
        text.push(' ');
        k = k.wrapping_mul(31).wrapping_add(7);
    }
    text.push_str(&i.to_string());
    text
}

fn chunks(docs: &[DocumentId]) -> Vec<NewChunk> {
    (0..CHUNK_ROWS)
        .map(|i| {
            let mut c = NewChunk::new(docs[i % docs.len()], (i / docs.len()) as i32, chunk_text(i));
            c.start_offset = Some(i as i32 * 400);
            c.end_offset = Some(i as i32 * 400 + 500);
            c.token_count = Some(100);
            c
        })
        .collect()
}

fn repo_register(dir: &std::path::Path, round: usize) -> Bench<Duration> {
    let (_, store, c) = fresh(dir, &format!("repo_docs_{round}.db"))?;
    let batch = documents(c, 1);
    let start = Instant::now();
    let out = store.documents().register_many(&batch)?;
    let took = start.elapsed();
    assert_eq!(out.iter().filter(|r| r.created).count(), ROWS);
    Ok(took)
}

use repo_sqlite::schema::{chunks, documents};

/// One document row, converted before the clock starts. A single-row insert of a
/// fixed column list has a static query id, so Diesel prepares it once and reuses it.
#[derive(Insertable)]
#[diesel(table_name = documents, treat_none_as_default_value = false)]
struct RawDocument {
    id: String,
    collection_id: String,
    file_path: String,
    file_name: String,
    file_size: i64,
    mime_type: Option<String>,
    content_hash: String,
    uri: Option<String>,
    status: &'static str,
    error_message: Option<String>,
    error_category: Option<String>,
    retry_count: i32,
    chunk_count: i32,
    meta: String,
    last_seen_at: Option<String>,
    is_stale: bool,
    created_at: String,
    updated_at: String,
}

fn raw_register(dir: &std::path::Path, round: usize) -> Bench<Duration> {
    let (path, store, c) = fresh(dir, &format!("raw_docs_{round}.db"))?;
    drop(store);
    let rows = documents(c, 2)
        .iter()
        .map(|d| {
            let doc = d.prepare()?;
            let at = repo_core::time::to_text(doc.created_at);
            Ok(RawDocument {
                id: doc.id.0.hyphenated().to_string(),
                collection_id: doc.collection_id.0.hyphenated().to_string(),
                file_path: doc.file_path,
                file_name: doc.file_name,
                file_size: doc.file_size,
                mime_type: doc.mime_type,
                content_hash: doc.content_hash,
                uri: doc.uri,
                status: doc.status.as_str(),
                error_message: None,
                error_category: None,
                retry_count: 0,
                chunk_count: 0,
                meta: doc.meta.to_string(),
                last_seen_at: Some(at.clone()),
                is_stale: false,
                created_at: at.clone(),
                updated_at: at,
            })
        })
        .collect::<Bench<Vec<_>>>()?;
    let mut conn = raw_connection(&path)?;
    let start = Instant::now();
    conn.immediate_transaction(|conn| {
        for row in &rows {
            diesel::insert_into(documents::table)
                .values(row)
                .execute(conn)?;
        }
        diesel::QueryResult::Ok(())
    })?;
    Ok(start.elapsed())
}

/// A database holding 100 documents; returns their ids.
fn with_documents(
    dir: &std::path::Path,
    name: &str,
) -> Bench<(String, SqliteStore, CollectionId, Vec<DocumentId>)> {
    let (path, store, c) = fresh(dir, name)?;
    let docs: Vec<DocumentId> = store
        .documents()
        .register_many(&documents(c, 3)[..100])?
        .into_iter()
        .map(|r| r.document.id)
        .collect();
    Ok((path, store, c, docs))
}

fn repo_chunks(dir: &std::path::Path, round: usize) -> Bench<Duration> {
    let (_, store, c, docs) = with_documents(dir, &format!("repo_chunks_{round}.db"))?;
    let batch = chunks(&docs);
    let start = Instant::now();
    let mut n = 0;
    for call in batch.chunks(ROWS) {
        n += store.chunks().insert_many(c, call)?;
    }
    let took = start.elapsed();
    assert_eq!(n, CHUNK_ROWS as u64);
    Ok(took)
}

/// One chunk row, converted before the clock starts.
#[derive(Insertable)]
#[diesel(table_name = chunks, treat_none_as_default_value = false)]
struct RawChunk {
    collection_id: String,
    document_id: String,
    chunk_index: i32,
    content: String,
    start_offset: Option<i32>,
    end_offset: Option<i32>,
    token_count: Option<i32>,
    embedding_vector_id: Option<String>,
    meta: String,
    created_at: String,
    search_tokens: String,
}

fn raw_chunks(dir: &std::path::Path, round: usize) -> Bench<Duration> {
    let (path, store, c, docs) = with_documents(dir, &format!("raw_chunks_{round}.db"))?;
    drop(store);
    let now = repo_core::time::to_text(repo_core::now());
    let rows: Vec<RawChunk> = chunks(&docs)
        .into_iter()
        .map(|ch| RawChunk {
            collection_id: c.0.hyphenated().to_string(),
            document_id: ch.document_id.0.hyphenated().to_string(),
            chunk_index: ch.chunk_index,
            start_offset: ch.start_offset,
            end_offset: ch.end_offset,
            token_count: ch.token_count,
            embedding_vector_id: None,
            meta: ch.meta.to_string(),
            created_at: now.clone(),
            search_tokens: repo_core::search::index_text(&ch.content),
            content: ch.content,
        })
        .collect();
    let mut conn = raw_connection(&path)?;
    let start = Instant::now();
    conn.immediate_transaction(|conn| {
        for row in &rows {
            diesel::insert_into(chunks::table)
                .values(row)
                .execute(conn)?;
        }
        diesel::QueryResult::Ok(())
    })?;
    Ok(start.elapsed())
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

fn rate(rows: usize, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

fn main() -> Bench<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5);
    // BENCH_DIR puts the databases elsewhere (e.g. /dev/shm to leave out the disk).
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base)?,
        None => tempfile::tempdir()?,
    };
    let (mut rd, mut bd, mut rc, mut bc) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        rd.push(repo_register(dir.path(), round)?);
        bd.push(raw_register(dir.path(), round)?);
        rc.push(repo_chunks(dir.path(), round)?);
        bc.push(raw_chunks(dir.path(), round)?);
    }
    println!(
        "{ROWS} documents in one call, {CHUNK_ROWS} chunks in calls of {ROWS}; \
         file database (WAL, synchronous=NORMAL), best of {rounds}"
    );
    println!(
        "{:<34} {:>8} {:>10} {:>12} {:>10}",
        "path", "rows", "ms", "rows/s", "vs raw"
    );
    for (name, rows, repo, raw) in [
        ("documents: register_many", ROWS, best(&rd), best(&bd)),
        (
            "documents: raw single-row INSERTs",
            ROWS,
            best(&bd),
            best(&bd),
        ),
        ("chunks: insert_many", CHUNK_ROWS, best(&rc), best(&bc)),
        (
            "chunks: raw single-row INSERTs",
            CHUNK_ROWS,
            best(&bc),
            best(&bc),
        ),
    ] {
        println!(
            "{:<34} {:>8} {:>10.1} {:>12.0} {:>9.2}x",
            name,
            rows,
            repo.as_secs_f64() * 1e3,
            rate(rows, repo),
            rate(rows, repo) / rate(rows, raw)
        );
    }
    Ok(())
}
