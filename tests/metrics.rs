//! The `metrics` feature on both backends: after a few calls, a recorder holds the
//! OpenTelemetry-named metrics with the right labels (operation duration by table,
//! method and outcome; connection counts by state; maximum; pending requests; wait
//! and use times; timeouts), and no label holds an argument of a call or a password.
//!
//! One test runs both backends in turn, because the recorder is global to this test
//! binary and a snapshot drains its histograms. PostgreSQL runs on a throwaway
//! database on the server of `TEST_DATABASE_URL` (required; scripts/test.sh sets it).

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use repo_core::metrics::{
    CONNECTION_COUNT, CONNECTION_MAX, CONNECTION_PENDING_REQUESTS, CONNECTION_TIMEOUTS,
    CONNECTION_USE_TIME, CONNECTION_WAIT_TIME, OPERATION_DURATION,
};
use repo_core::{
    AccessLevel, BackendKind, CollectionId, Grantee, NewCollection, NewUser, PostgresUrl,
    RepoError, Store, StoreConfig, UnavailableReason, UserId,
};
use repo_postgres::testing::TempDatabase;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::time::Duration;

const PASSWORD_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";
const URL_PASSWORD: &str = "Pw-metrics-never-shown";

/// One metric of a snapshot: kind, name, labels and value.
struct Metric {
    kind: MetricKind,
    name: String,
    labels: BTreeMap<String, String>,
    value: DebugValue,
}

fn snapshot(snapshotter: &Snapshotter) -> Vec<Metric> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            Metric {
                kind,
                name: key.name().to_owned(),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                value,
            }
        })
        .collect()
}

/// The metric named `name` whose labels include every pair of `labels`.
fn find<'a>(metrics: &'a [Metric], name: &str, labels: &[(&str, &str)]) -> &'a Metric {
    metrics
        .iter()
        .find(|m| {
            m.name == name
                && labels
                    .iter()
                    .all(|(k, v)| m.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| {
            let all: Vec<String> = metrics
                .iter()
                .map(|m| format!("{} {:?}", m.name, m.labels))
                .collect();
            panic!("no {name} with {labels:?} among:\n{}", all.join("\n"))
        })
}

fn samples(metric: &Metric) -> usize {
    match &metric.value {
        DebugValue::Histogram(values) => values.len(),
        other => panic!("{} is not a histogram: {other:?}", metric.name),
    }
}

fn gauge(metric: &Metric) -> f64 {
    match &metric.value {
        DebugValue::Gauge(value) => value.into_inner(),
        other => panic!("{} is not a gauge: {other:?}", metric.name),
    }
}

/// A pool of one connection that gives up waiting after 200 ms, so a second caller
/// times out while a unit of work holds it.
fn one_connection() -> StoreConfig {
    let mut config = StoreConfig::default();
    config.pool.pool_size = 1;
    config.pool.max_overflow = 0;
    config.pool.connection_timeout = Duration::from_millis(200);
    config
}

/// Calls that give every label a value: a create, a not-found, a grant, a unit of
/// work, a health check, and a checkout that times out.
fn exercise(store: &Arc<dyn Store>) {
    let user = store
        .users()
        .create(&NewUser::new(
            "metrics-alice",
            "metrics-alice@example.com",
            PASSWORD_HASH,
        ))
        .unwrap();
    let bob = store
        .users()
        .create(&NewUser::new(
            "metrics-bob",
            "metrics-bob@example.com",
            PASSWORD_HASH,
        ))
        .unwrap();
    assert!(matches!(
        store.users().get(UserId(i64::MAX)),
        Err(RepoError::NotFound { .. })
    ));
    let collection = store
        .collections()
        .create(&NewCollection::new("metrics-collection", user.id))
        .unwrap();
    store
        .collections()
        .grant(collection.id, Grantee::User(bob.id), AccessLevel::Read)
        .unwrap();
    let locked = store.transaction(|tx| tx.lock_collection(CollectionId::new()));
    assert!(matches!(locked, Err(RepoError::NotFound { .. })));
    store.health().unwrap();

    // Hold the only connection in a unit of work while another thread waits for it.
    let (held_tx, held) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let holder = {
        let store = Arc::clone(store);
        std::thread::spawn(move || {
            store.transaction(|tx| {
                tx.users().count(Default::default())?;
                held_tx.send(()).unwrap();
                release.recv_timeout(Duration::from_secs(30)).unwrap();
                Ok(())
            })
        })
    };
    held.recv_timeout(Duration::from_secs(30)).unwrap();
    let waited = store.users().count(Default::default());
    release_tx.send(()).unwrap();
    holder.join().unwrap().unwrap();
    assert!(
        matches!(
            waited,
            Err(RepoError::Unavailable {
                reason: UnavailableReason::PoolExhausted,
                ..
            })
        ),
        "{waited:?}"
    );
}

fn check(metrics: &[Metric], backend: BackendKind, pool: &str) {
    let system = ("db.system.name", backend.db_system_name());
    let op = |table: Option<&str>, method: &str, outcome: &str| {
        let mut labels = vec![system, ("db.operation.name", method), ("outcome", outcome)];
        let table_label = table.map(|t| ("db.collection.name", t));
        labels.extend(table_label);
        let found = find(metrics, OPERATION_DURATION, &labels);
        assert_eq!(found.kind, MetricKind::Histogram);
        assert!(samples(found) >= 1, "{labels:?}");
        if table.is_none() {
            assert!(
                !found.labels.contains_key("db.collection.name"),
                "{:?}",
                found.labels
            );
        }
    };
    op(Some("users"), "create", "ok");
    op(Some("users"), "get", "not_found");
    op(Some("collections"), "create", "ok");
    op(Some("collection_permissions"), "grant", "ok");
    op(Some("collections"), "lock_collection", "not_found");
    op(None, "transaction", "not_found");
    op(None, "health", "ok");
    op(Some("users"), "count", "unavailable");

    let pool = ("db.client.connection.pool.name", pool);
    let max = find(metrics, CONNECTION_MAX, &[system, pool]);
    assert_eq!(gauge(max), 1.0);
    // Every call has returned its connection: one open, idle, none used or waiting.
    let idle = find(
        metrics,
        CONNECTION_COUNT,
        &[system, pool, ("db.client.connection.state", "idle")],
    );
    assert_eq!(gauge(idle), 1.0);
    let used = find(
        metrics,
        CONNECTION_COUNT,
        &[system, pool, ("db.client.connection.state", "used")],
    );
    assert_eq!(gauge(used), 0.0);
    assert_eq!(
        gauge(find(metrics, CONNECTION_PENDING_REQUESTS, &[system, pool])),
        0.0
    );
    match find(metrics, CONNECTION_TIMEOUTS, &[system, pool]).value {
        DebugValue::Counter(n) => assert!(n >= 1, "{n}"),
        ref other => panic!("timeouts: {other:?}"),
    }
    assert!(samples(find(metrics, CONNECTION_WAIT_TIME, &[system, pool])) >= 1);
    assert!(samples(find(metrics, CONNECTION_USE_TIME, &[system, pool])) >= 1);

    for metric in metrics {
        for value in metric.labels.values() {
            for secret in ["metrics-alice", "metrics-bob", URL_PASSWORD, "***"] {
                assert!(
                    !value.contains(secret),
                    "{} has a label with {secret:?}: {:?}",
                    metric.name,
                    metric.labels
                );
            }
        }
    }
}

#[test]
fn metrics_follow_opentelemetry_names_on_both_backends() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).expect("the only recorder of this binary");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.db").to_string_lossy().into_owned();
    let sqlite: Arc<dyn Store> =
        Arc::new(repo_sqlite::SqliteStore::connect(&path, &one_connection()).unwrap());
    exercise(&sqlite);
    check(&snapshot(&snapshotter), BackendKind::Sqlite, &path);
    drop(sqlite);

    let database = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let url = PostgresUrl::parse(database.url())
        .unwrap()
        .with_password(Some(URL_PASSWORD))
        .to_url();
    let postgres: Arc<dyn Store> = Arc::new(
        repo_postgres::PostgresStore::connect(&url, &one_connection())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    exercise(&postgres);
    let pool = repo_core::metrics::pool_name(database.url());
    check(&snapshot(&snapshotter), BackendKind::Postgres, &pool);

    // A dropped store takes its connection and its maximum off the gauges. (A
    // snapshot of this recorder resets what it reads: these are changes since the last.)
    drop(postgres);
    let after = snapshot(&snapshotter);
    let system = ("db.system.name", "postgresql");
    let pool = ("db.client.connection.pool.name", pool.as_str());
    assert_eq!(gauge(find(&after, CONNECTION_MAX, &[system, pool])), -1.0);
    assert_eq!(
        gauge(find(
            &after,
            CONNECTION_COUNT,
            &[system, pool, ("db.client.connection.state", "idle")]
        )),
        -1.0
    );
}
