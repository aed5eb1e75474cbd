//! The example service on a loopback port, once on SQLite and once on PostgreSQL
//! (a throwaway database on the server of `TEST_DATABASE_URL`, which is required),
//! driven by a real HTTP client through the same requests: every response has the
//! status the script expects, and both backends give the same responses (status and
//! JSON, with ids, timestamps, cursors and key material replaced by placeholders
//! numbered in order of appearance; search scores are compared as they are, since both
//! backends compute `repo_core::search::score`).

use repo_http_example::{install_metrics, serve, AppState};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smtk_repo::{AsyncStore, BackendKind, Cursor, NewApiKey, NewUser, StoreConfig};
use std::collections::HashMap;
use std::time::Duration;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// One request of the script and what came back.
#[derive(Debug, Clone, PartialEq)]
struct Exchange {
    label: &'static str,
    status: u16,
    body: Value,
}

/// The service, running on a loopback port until dropped.
struct Service {
    base: String,
    alice: String,
    bob: String,
    bob_id: i64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Opens `url`, creates the users alice and bob with an API key each (the service
    /// has no sign-up), and serves on 127.0.0.1, port chosen by the system.
    async fn start(url: &str) -> Service {
        install_metrics();
        let db = AsyncStore::open(url, &StoreConfig::default())
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for name in ["alice", "bob"] {
            let new = NewUser::new(name, format!("{name}@example.com"), HASH);
            let user = db.users(move |u| u.create(&new)).await.unwrap();
            let new_key = NewApiKey::new(user.id, "test");
            let created = db.api_keys(move |k| k.create(&new_key)).await.unwrap();
            keys.push(created.secret.expose().to_owned());
            ids.push(user.id.0);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, AppState::new(db), async {
            let _ = stopped.await;
        }));
        Service {
            base,
            alice: keys[0].clone(),
            bob: keys[1].clone(),
            bob_id: ids[1],
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits for it (a server error fails the test).
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("the server stops")
            .expect("the server task ends")
            .expect("the server ran without an I/O error");
    }
}

/// A client that records every exchange and checks its status.
struct Script {
    http: reqwest::Client,
    base: String,
    log: Vec<Exchange>,
}

impl Script {
    async fn send(
        &mut self,
        label: &'static str,
        expected: u16,
        request: reqwest::RequestBuilder,
    ) -> Value {
        let response = request
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{label}: the body is not JSON ({e}): {text}"));
        assert_eq!(status, expected, "{label}: {body}");
        self.log.push(Exchange {
            label,
            status,
            body: body.clone(),
        });
        body
    }

    fn request(&self, method: Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn get(&mut self, label: &'static str, expected: u16, path: &str, key: &str) -> Value {
        let request = self.request(Method::GET, path, Some(key));
        self.send(label, expected, request).await
    }

    async fn post(
        &mut self,
        label: &'static str,
        expected: u16,
        path: &str,
        key: &str,
        body: Value,
    ) -> Value {
        let request = self.request(Method::POST, path, Some(key)).json(&body);
        self.send(label, expected, request).await
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

fn hash(c: char) -> String {
    c.to_string().repeat(64)
}

/// The requests, in order; returns what came back.
async fn run_script(service: &Service) -> Vec<Exchange> {
    let mut s = Script {
        http: reqwest::Client::new(),
        base: service.base.clone(),
        log: Vec::new(),
    };
    let (alice, bob) = (service.alice.as_str(), service.bob.as_str());

    let r = s.request(Method::GET, "/healthz", None);
    s.send("health", 200, r).await;
    let r = s.request(Method::GET, "/v1/collections", None);
    s.send("no key", 401, r).await;
    let r = s.request(Method::GET, "/v1/collections", Some("smtk_bogus"));
    s.send("malformed key", 401, r).await;
    let unknown = format!("smtk_00000000_{}", "A".repeat(43));
    s.get("unknown key", 401, "/v1/collections", &unknown).await;

    // Collections.
    let handbook = s
        .post(
            "create",
            201,
            "/v1/collections",
            alice,
            json!({"name": "Handbook", "description": "Team handbook"}),
        )
        .await;
    let handbook = text(&handbook, "/id").to_owned();
    s.post(
        "create taken name",
        409,
        "/v1/collections",
        alice,
        json!({"name": "Handbook"}),
    )
    .await;
    s.post(
        "create bad overlap",
        422,
        "/v1/collections",
        alice,
        json!({"name": "Broken", "chunk_size": 100, "chunk_overlap": 100}),
    )
    .await;
    s.post(
        "create notes",
        201,
        "/v1/collections",
        alice,
        json!({"name": "Notes"}),
    )
    .await;
    s.post(
        "create public",
        201,
        "/v1/collections",
        alice,
        json!({"name": "Public FAQ", "is_public": true}),
    )
    .await;
    s.post(
        "owner from the body",
        400,
        "/v1/collections",
        alice,
        json!({"name": "Mine", "owner_id": 2}),
    )
    .await;
    let r = s
        .request(Method::POST, "/v1/collections", Some(alice))
        .header("content-type", "application/json")
        .body("{");
    s.send("malformed JSON", 400, r).await;

    // Cursor pages, newest first.
    let first = s
        .get("first page", 200, "/v1/collections?limit=2", alice)
        .await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2), "{first}");
    let next = text(&first, "/next").to_owned();
    let second = s
        .get(
            "second page",
            200,
            &format!("/v1/collections?limit=2&after={next}"),
            alice,
        )
        .await;
    assert_eq!(second["items"][0]["id"], json!(handbook), "{second}");
    assert_eq!(second["next"], Value::Null, "{second}");
    s.get("bad cursor", 422, "/v1/collections?after=garbage", alice)
        .await;
    let seen = s.get("bob lists", 200, "/v1/collections", bob).await;
    assert_eq!(seen["items"].as_array().map(Vec::len), Some(1), "{seen}");

    // Access and grants.
    let path = format!("/v1/collections/{handbook}");
    s.get("bob reads private", 403, &path, bob).await;
    let missing = format!("/v1/collections/{}", uuid::Uuid::new_v4());
    s.get("missing collection", 404, &missing, bob).await;
    s.get("not a uuid", 400, "/v1/collections/not-a-uuid", alice)
        .await;
    let grant = json!({"grantee": {"User": service.bob_id}, "level": "read"});
    s.post(
        "bob grants",
        403,
        &format!("{path}/grants"),
        bob,
        grant.clone(),
    )
    .await;
    s.post("alice grants", 201, &format!("{path}/grants"), alice, grant)
        .await;
    s.get("bob reads granted", 200, &path, bob).await;
    s.get("grants", 200, &format!("{path}/grants"), alice).await;

    // Documents (bulk, idempotent per content hash) and chunks.
    let doc = |name: &str, c: char| json!({"file_path": format!("/docs/{name}"), "file_name": name, "file_size": 100, "content_hash": hash(c), "mime_type": "text/markdown"});
    let documents = format!("{path}/documents");
    s.post(
        "bob registers",
        403,
        &documents,
        bob,
        json!([doc("a.md", 'a')]),
    )
    .await;
    let registered = s
        .post(
            "register",
            200,
            &documents,
            alice,
            json!([doc("a.md", 'a'), doc("b.md", 'b'), doc("c.md", 'c')]),
        )
        .await;
    let again = s
        .post(
            "register again",
            200,
            &documents,
            alice,
            json!([doc("a.md", 'a'), doc("d.md", 'd')]),
        )
        .await;
    assert_eq!(again[0]["created"], json!(false), "{again}");
    assert_eq!(again[0]["document"]["id"], registered[0]["document"]["id"]);
    let (a, b) = (
        text(&registered, "/0/document/id").to_owned(),
        text(&registered, "/1/document/id").to_owned(),
    );
    let chunks = format!("{path}/chunks");
    s.post(
        "insert chunks",
        201,
        &chunks,
        alice,
        json!([
            {"document_id": a, "chunk_index": 0, "content": "The quick brown fox jumps over the lazy dog"},
            {"document_id": a, "chunk_index": 1, "content": "A fox is quick; a dog is lazy"},
            {"document_id": b, "chunk_index": 0, "content": "Nothing about animals here", "token_count": 4},
        ]),
    )
    .await;
    s.post(
        "insert a taken chunk index",
        422,
        &chunks,
        alice,
        json!([{"document_id": a, "chunk_index": 0, "content": "again"}]),
    )
    .await;
    let hits = s
        .get("search", 200, &format!("{path}/search?q=quick%20fox"), bob)
        .await;
    assert_eq!(hits["total"], json!(2), "{hits}");
    s.get(
        "search nothing",
        200,
        &format!("{path}/search?q=zebra"),
        alice,
    )
    .await;

    // Operations: start in a unit of work, walk the state machine.
    let operations = format!("{path}/operations");
    let start = json!({"kind": "index", "config": {"model": "m"}, "idempotency_key": "run-1"});
    s.post("bob starts", 403, &operations, bob, start.clone())
        .await;
    let op = s
        .post("start", 201, &operations, alice, start.clone())
        .await;
    let retried = s.post("start again", 201, &operations, alice, start).await;
    assert_eq!(
        retried["uuid"], op["uuid"],
        "the idempotency key finds the first"
    );
    s.post(
        "second active",
        409,
        &operations,
        alice,
        json!({"kind": "reindex", "config": {"x": 1}}),
    )
    .await;
    let busy = s.get("collection processing", 200, &path, alice).await;
    assert_eq!(busy["status"], json!("processing"));
    let walk = format!("/v1/operations/{}", text(&op, "/uuid"));
    s.post(
        "to processing",
        200,
        &format!("{walk}/transition"),
        alice,
        json!({"status": "processing"}),
    )
    .await;
    s.post(
        "bob completes",
        403,
        &format!("{walk}/transition"),
        bob,
        json!({"status": "completed"}),
    )
    .await;
    s.post(
        "to completed",
        200,
        &format!("{walk}/transition"),
        alice,
        json!({"status": "completed"}),
    )
    .await;
    s.post(
        "from terminal",
        409,
        &format!("{walk}/transition"),
        alice,
        json!({"status": "processing"}),
    )
    .await;
    let ready = s.get("collection ready", 200, &path, alice).await;
    assert_eq!(ready["status"], json!("ready"));
    s.get("bob reads operation", 200, &walk, bob).await;
    let missing = format!("/v1/operations/{}", uuid::Uuid::new_v4());
    s.get("missing operation", 404, &missing, alice).await;
    s.post(
        "next operation",
        201,
        &operations,
        alice,
        json!({"kind": "append", "config": {"source": "/docs"}}),
    )
    .await;

    // A second key of alice's, its secret shown once.
    let created = s
        .post("new key", 201, "/v1/api-keys", alice, json!({"name": "ci"}))
        .await;
    let secret = text(&created, "/secret").to_owned();
    s.get("new key works", 200, "/v1/collections?limit=1", &secret)
        .await;
    s.log
}

/// Replaces what legitimately differs between two runs (generated ids, times, cursors,
/// key material) by placeholders numbered in order of first
/// appearance, so that equal structure and equal references still compare equal.
#[derive(Default)]
struct Normalizer {
    seen: HashMap<String, String>,
}

impl Normalizer {
    fn token(&mut self, kind: &str, original: String) -> String {
        let next = self.seen.len() + 1;
        self.seen
            .entry(original)
            .or_insert_with(|| format!("<{kind}#{next}>"))
            .clone()
    }

    fn string(&mut self, s: &str) -> String {
        if uuid::Uuid::try_parse(s).is_ok() {
            return self.token("uuid", s.to_owned());
        }
        if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
            return "<time>".into();
        }
        // `col_` + the collection's id with `_` for `-`: the same token as the id.
        if let Some(id) = s.strip_prefix("col_") {
            let id = id.replace('_', "-");
            if uuid::Uuid::try_parse(&id).is_ok() {
                return format!("col_{}", self.token("uuid", id));
            }
        }
        if s.starts_with("smtk_") {
            return "<key material>".into();
        }
        if Cursor::decode(s).is_ok() {
            return self.token("cursor", s.to_owned());
        }
        // UUIDs inside messages.
        let mut out = String::new();
        let mut rest = s;
        while let Some((at, len)) = find_uuid(rest) {
            out.push_str(&rest[..at]);
            let id = rest[at..at + len].to_owned();
            out.push_str(&self.token("uuid", id));
            rest = &rest[at + len..];
        }
        out.push_str(rest);
        out
    }

    fn value(&mut self, key: Option<&str>, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.string(s)),
            // Integer ids of operations and chunks come from sequences, which
            // PostgreSQL advances on a failed insert and SQLite does not; nothing
            // refers to them by number here.
            Value::Number(_) if key == Some("id") => json!("<int id>"),
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| self.value(None, i)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.value(Some(k), v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// The first hyphenated UUID in `s`: (byte offset, length).
fn find_uuid(s: &str) -> Option<(usize, usize)> {
    const LEN: usize = 36;
    (0..s.len().saturating_sub(LEN - 1))
        .filter(|&at| s.is_char_boundary(at) && s.is_char_boundary(at + LEN))
        .find(|&at| uuid::Uuid::try_parse(&s[at..at + LEN]).is_ok())
        .map(|at| (at, LEN))
}

fn normalized(log: &[Exchange]) -> Vec<Exchange> {
    let mut n = Normalizer::default();
    log.iter()
        .map(|e| Exchange {
            label: e.label,
            status: e.status,
            body: n.value(None, &e.body),
        })
        .collect()
}

/// `/metrics` shows the library's metrics of `backend`, under Prometheus names.
async fn assert_metrics(service: &Service, backend: BackendKind) {
    let response = reqwest::get(format!("{}/metrics", service.base))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let system = format!("db_system_name=\"{}\"", backend.db_system_name());
    let has = |metric: &str, labels: &[&str]| {
        text.lines()
            .any(|line| line.starts_with(metric) && labels.iter().all(|label| line.contains(label)))
    };
    for (metric, labels) in [
        (
            "db_client_operation_duration_bucket",
            vec![
                system.as_str(),
                "db_collection_name=\"collections\"",
                "db_operation_name=\"create\"",
                "outcome=\"ok\"",
            ],
        ),
        (
            "db_client_operation_duration_count",
            vec![
                system.as_str(),
                "db_operation_name=\"create\"",
                "outcome=\"already_exists\"",
            ],
        ),
        (
            "db_client_operation_duration_count",
            vec![
                system.as_str(),
                "db_operation_name=\"transaction\"",
                "outcome=\"ok\"",
            ],
        ),
        (
            "db_client_connection_count",
            vec![system.as_str(), "db_client_connection_state=\"idle\""],
        ),
        (
            "db_client_connection_count",
            vec![system.as_str(), "db_client_connection_state=\"used\""],
        ),
        ("db_client_connection_max", vec![system.as_str()]),
        (
            "db_client_connection_pending_requests",
            vec![system.as_str()],
        ),
        ("db_client_connection_wait_time", vec![system.as_str()]),
        ("db_client_connection_use_time", vec![system.as_str()]),
    ] {
        assert!(
            has(metric, &labels),
            "no {metric} with {labels:?} in /metrics:\n{text}"
        );
    }
    for secret in [&service.alice, &service.bob] {
        assert!(!text.contains(secret.as_str()), "a key secret in /metrics");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_requests_same_responses_on_sqlite_and_postgres() {
    // Required, like every PostgreSQL test of the workspace: scripts/test.sh sets it.
    let database =
        repo_postgres::testing::TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("http.db").display());

    let mut transcripts = Vec::new();
    for (backend, url) in [
        (BackendKind::Sqlite, sqlite_url.as_str()),
        (BackendKind::Postgres, database.url()),
    ] {
        let service = Service::start(url).await;
        let log = run_script(&service).await;
        assert_metrics(&service, backend).await;
        service.stop().await;
        transcripts.push(normalized(&log));
    }
    let (sqlite, postgres) = (&transcripts[0], &transcripts[1]);
    assert_eq!(sqlite.len(), postgres.len());
    for (s, p) in sqlite.iter().zip(postgres) {
        assert!(
            s == p,
            "{}: SQLite and PostgreSQL answered differently\nsqlite:   {} {}\npostgres: {} {}",
            s.label,
            s.status,
            s.body,
            p.status,
            p.body
        );
    }
}
