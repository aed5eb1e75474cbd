//! `repoctl demo-data`: realistic data through the repositories themselves (so every
//! row is one the application could have written): users with PHC-shaped password
//! hashes, API keys with real hashes, collections (public, private, continuous sync),
//! grants to users and keys, operations in every state, documents with SHA-256 content
//! hashes in every status, and chunks of generated prose, inserted with the bulk
//! APIs (`register_many`, `insert_many`).

use crate::conn::Endpoint;
use crate::error::{Failure, Secrets};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use repo_core::{
    AccessLevel, CollectionStatus, DocumentStatus, DocumentStatusUpdate, ErrorCategory, Grantee,
    KeyExpiry, NewApiKey, NewChunk, NewCollection, NewDocument, NewOperation, NewUser,
    OperationKind, OperationStatus, PoolConfig, Quantization, StoreConfig, SyncMode, SyncRun,
    SyncRunStatus, MAX_CHUNK_BATCH,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "an",
    "have",
    "has",
    "but",
    "their",
    "were",
    "can",
    "been",
    "these",
    "more",
    "also",
    "its",
    "data",
    "system",
    "model",
    "index",
    "search",
    "query",
    "document",
    "vector",
    "embedding",
    "collection",
    "result",
    "performance",
    "latency",
    "storage",
    "memory",
    "network",
    "server",
    "client",
    "request",
    "response",
    "cluster",
    "replica",
    "shard",
    "partition",
    "schema",
    "migration",
    "backup",
    "recovery",
    "transaction",
    "consistency",
    "isolation",
    "throughput",
    "benchmark",
    "dataset",
    "training",
    "evaluation",
    "accuracy",
    "precision",
    "recall",
    "ranking",
    "relevance",
    "token",
    "sentence",
    "paragraph",
    "chapter",
    "report",
    "analysis",
    "method",
    "approach",
    "algorithm",
    "structure",
    "function",
    "process",
    "pipeline",
    "workflow",
    "operation",
    "configuration",
    "parameter",
    "threshold",
    "interval",
    "window",
    "batch",
    "stream",
    "event",
    "signal",
    "measurement",
    "experiment",
    "observation",
    "hypothesis",
    "theory",
    "evidence",
    "conclusion",
    "significant",
    "important",
    "different",
    "several",
    "various",
    "specific",
    "general",
    "particular",
    "available",
    "possible",
    "necessary",
    "efficient",
    "reliable",
    "scalable",
    "robust",
    "simple",
    "complex",
    "large",
    "small",
    "fast",
    "slow",
    "new",
    "previous",
    "following",
    "current",
    "final",
    "initial",
    "primary",
    "secondary",
    "local",
    "remote",
    "distributed",
    "concurrent",
    "parallel",
    "sequential",
    "improves",
    "reduces",
    "increases",
    "requires",
    "provides",
    "supports",
    "describes",
    "shows",
    "suggests",
    "indicates",
    "demonstrates",
    "compares",
    "measures",
    "stores",
    "retrieves",
    "computes",
    "updates",
    "Berlin",
    "Lisbon",
    "Kyoto",
    "Nairobi",
    "Montréal",
    "Zürich",
    "São",
    "Paulo",
    "café",
    "naïve",
];

fn sentence(rng: &mut StdRng) -> String {
    let n = rng.random_range(8..20);
    let mut words: Vec<String> = (0..n)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())].to_string())
        .collect();
    if let Some(first) = words.first_mut() {
        let mut c = first.chars();
        if let Some(h) = c.next() {
            *first = h.to_uppercase().chain(c).collect();
        }
    }
    if rng.random_range(0..5) == 0 {
        words.insert(n / 2, format!("{},", rng.random_range(1..2030)));
    }
    format!("{}.", words.join(" "))
}

fn paragraph(rng: &mut StdRng, sentences: usize) -> String {
    (0..sentences)
        .map(|_| sentence(rng))
        .collect::<Vec<_>>()
        .join(" ")
}

fn phc_hash(rng: &mut StdRng) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut part = |n: usize| -> String {
        (0..n)
            .map(|_| B64[rng.random_range(0..B64.len())] as char)
            .collect()
    };
    format!("$argon2id$v=19$m=65536,t=3,p=4${}${}", part(22), part(43))
}

/// Fills `endpoint` (migrating it first) with `scale` units of data and
/// `chunks_per_document` chunks per document.
pub fn run(
    endpoint: &Endpoint,
    secrets: &Secrets,
    scale: u32,
    chunks_per_document: u32,
    seed: u64,
) -> Result<(), Failure> {
    let started = Instant::now();
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 1,
            connection_timeout: Duration::from_secs(30),
            max_lifetime: None,
            pre_ping: false,
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    let store = repo_factory::open(endpoint.url(), &config).map_err(|e| {
        let mut f = Failure::from(e);
        f.message = secrets.scrub(&f.message);
        f
    })?;
    let mut rng = StdRng::seed_from_u64(seed);
    let tag = format!("{seed:x}");
    let (mut n_users, mut n_keys, mut n_colls, mut n_grants, mut n_ops, mut n_docs, mut n_chunks) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);

    for unit in 0..scale {
        // Users: a superuser, an inactive one, two regular ones.
        let mut users = Vec::new();
        for i in 0..4 {
            let mut u = NewUser::new(
                format!("demo{tag}_u{unit}_{i}"),
                format!("demo{tag}.u{unit}.{i}@example.com"),
                phc_hash(&mut rng),
            );
            u.full_name = (i != 3).then(|| format!("Demo User {unit}-{i}"));
            u.is_superuser = i == 0;
            u.is_active = i != 2;
            let user = store.users().create(&u)?;
            if i == 1 {
                store.users().record_login(user.id)?;
            }
            users.push(user);
        }
        n_users += 4;

        // Keys: two per user, one with permissions, one revoked, one without expiry.
        let mut keys = Vec::new();
        for (i, u) in users.iter().enumerate() {
            for k in 0..2 {
                let mut nk = NewApiKey::new(u.id, format!("key {k} of {}", u.username));
                if k == 0 {
                    nk.permissions =
                        Some(json!({"scopes": ["read", "search"], "collections": "*"}));
                }
                if i == 3 && k == 1 {
                    nk.expiry = KeyExpiry::Never;
                }
                let created = store.api_keys().create(&nk)?;
                if i == 1 && k == 1 {
                    store.api_keys().revoke(created.key.id)?;
                }
                keys.push(created.key);
            }
        }
        n_keys += keys.len() as u64;

        // Collections: one private one-time, one public continuous.
        let mut collections = Vec::new();
        for c in 0..2 {
            let mut nc =
                NewCollection::new(format!("Demo {tag} collection {unit}-{c}"), users[c + 1].id);
            nc.description = Some(paragraph(&mut rng, 1));
            nc.is_public = c == 1;
            nc.quantization = if c == 0 {
                Quantization::Float16
            } else {
                Quantization::Int8
            };
            nc.chunking_strategy = Some("recursive".into());
            nc.chunking_config =
                Some(json!({"separators": ["\n\n", "\n", ". "], "keep_separator": true}));
            nc.meta = json!({"team": format!("team-{}", unit % 7), "tags": ["demo", "generated"]});
            if c == 1 {
                nc.sync_mode = SyncMode::Continuous;
                nc.sync_interval_minutes = Some(60);
            }
            let coll = store.collections().create(&nc)?;
            collections.push(coll);
        }
        n_colls += 2;

        // Grants: a user grant and a key grant per collection.
        for (c, coll) in collections.iter().enumerate() {
            store.collections().grant(
                coll.id,
                Grantee::User(users[3].id),
                if c == 0 {
                    AccessLevel::Read
                } else {
                    AccessLevel::Write
                },
            )?;
            store.collections().grant(
                coll.id,
                Grantee::ApiKey(keys[c * 2].id),
                AccessLevel::Admin,
            )?;
            n_grants += 2;
        }

        // Operations: five per collection, every state; the last one stays active.
        for (c, coll) in collections.iter().enumerate() {
            let plan: [(OperationKind, &[OperationStatus]); 5] = [
                (
                    OperationKind::Index,
                    &[OperationStatus::Processing, OperationStatus::Completed],
                ),
                (
                    OperationKind::Append,
                    &[OperationStatus::Processing, OperationStatus::Failed],
                ),
                (OperationKind::Reindex, &[OperationStatus::Cancelled]),
                (OperationKind::ProjectionBuild, &[OperationStatus::Failed]),
                (
                    if c == 0 {
                        OperationKind::RetryDocuments
                    } else {
                        OperationKind::Benchmark
                    },
                    if c == 0 {
                        &[OperationStatus::Processing]
                    } else {
                        &[]
                    },
                ),
            ];
            for (kind, steps) in plan {
                let mut no = NewOperation::new(
                    coll.id,
                    users[c + 1].id,
                    kind,
                    json!({"source": format!("/data/{unit}/{c}"), "recursive": true, "batch": 64}),
                );
                no.task_id = Some(format!("task-{}", rng.random_range(100_000..999_999)));
                let op = store.operations().create(&no)?;
                for s in steps {
                    let msg = matches!(s, OperationStatus::Failed)
                        .then_some("worker lost: timeout after 300 s");
                    store.operations().transition(op.uuid, *s, msg)?;
                }
                store.operations().merge_meta(
                    op.uuid,
                    &json!({"progress": rng.random_range(0..100), "worker": "w-1"}),
                )?;
                n_ops += 1;
            }
            store
                .collections()
                .update_status(coll.id, CollectionStatus::Processing, None)?;
            store
                .collections()
                .update_status(coll.id, CollectionStatus::Ready, Some("indexed"))?;
            if c == 1 {
                let now = repo_core::now();
                store.collections().record_sync_run(
                    coll.id,
                    &SyncRun {
                        started_at: now,
                        completed_at: Some(now),
                        status: SyncRunStatus::Success,
                        error: None,
                    },
                )?;
            }
        }

        // Documents: ten per collection, in every status; chunks of prose.
        for coll in &collections {
            let batch: Vec<NewDocument> = (0..10)
                .map(|d| {
                    let body = paragraph(&mut rng, 3);
                    let hash = hex::encode(Sha256::digest(
                        format!("{unit}/{}/{d}/{body}", coll.id).as_bytes(),
                    ));
                    let name = format!("report-{unit}-{d}.pdf");
                    let mut nd = NewDocument::new(
                        coll.id,
                        format!("/data/{}/{name}", coll.vector_store_name),
                        name.clone(),
                        rng.random_range(1_000..5_000_000),
                        hash,
                    );
                    nd.mime_type = Some(
                        if d % 3 == 0 {
                            "text/markdown"
                        } else {
                            "application/pdf"
                        }
                        .into(),
                    );
                    nd.uri = (d % 4 != 0)
                        .then(|| format!("s3://demo-bucket/{}/{name}", coll.vector_store_name));
                    nd.meta =
                        json!({"pages": rng.random_range(1..300), "lang": "en", "author": "Demo"});
                    nd
                })
                .collect();
            let registered = store.documents().register_many(&batch)?;
            n_docs += registered.len() as u64;
            let statuses = [
                DocumentStatusUpdate::to(DocumentStatus::Completed),
                DocumentStatusUpdate::to(DocumentStatus::Processing),
                DocumentStatusUpdate::failed(
                    "parser error: unexpected end of stream",
                    ErrorCategory::Permanent,
                ),
                DocumentStatusUpdate::failed("connection reset", ErrorCategory::Transient),
                DocumentStatusUpdate::to(DocumentStatus::Deleted),
            ];
            for (d, r) in registered.iter().enumerate() {
                if d % 2 == 1 {
                    store
                        .documents()
                        .update_status(r.document.id, &statuses[(d / 2) % statuses.len()])?;
                }
            }
            let mut chunks: Vec<NewChunk> = Vec::new();
            for r in &registered {
                let mut offset = 0i32;
                for i in 0..chunks_per_document {
                    let sentences = rng.random_range(3..7);
                    let content = paragraph(&mut rng, sentences);
                    let len = content.chars().count() as i32;
                    let mut nc = NewChunk::new(r.document.id, i as i32, content);
                    nc.start_offset = Some(offset);
                    nc.end_offset = Some(offset + len);
                    nc.token_count = Some(len / 4);
                    nc.meta = json!({"page": i / 3 + 1});
                    offset += len;
                    chunks.push(nc);
                    if chunks.len() == MAX_CHUNK_BATCH {
                        n_chunks += store.chunks().insert_many(coll.id, &chunks)?;
                        chunks.clear();
                    }
                }
            }
            if !chunks.is_empty() {
                n_chunks += store.chunks().insert_many(coll.id, &chunks)?;
            }
        }
    }
    println!(
        "demo data in {}: {n_users} users, {n_keys} API keys, {n_colls} collections, {n_grants} grants, \
         {n_ops} operations, {n_docs} documents, {n_chunks} chunks ({:.1}s)",
        endpoint.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
