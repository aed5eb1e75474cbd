//! Observability and secrets on both backends: a span per repository call, the
//! slow-query log, the pool-pressure warning, `health()` against an unreachable server,
//! and that no password, API-key secret or key hash reaches an error, a `Debug` or a
//! log line.
//!
//! Logs are captured by one global `tracing` subscriber (tests of this binary run in
//! parallel on several threads): what a test's own thread logs goes to that test's
//! buffer, what any other thread logs (r2d2's connection threads, health-check
//! threads) goes to a shared background buffer, which every secrets test searches
//! too. PostgreSQL runs on the server of `TEST_DATABASE_URL` (set by
//! `scripts/test.sh`), one throwaway database per test.

use repo_core::{
    ApiKeySecret, BackendKind, CollectionId, NewApiKey, NewUser, PgHost, PoolConfig, PostgresUrl,
    RepoError, Store, StoreConfig, UnavailableReason, UserId,
};
use repo_postgres::testing::{TcpProxy, TempDatabase};
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;
use rstest::rstest;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Routes every log line to the buffer of the thread that wrote it.
mod capture {
    use std::cell::RefCell;
    use std::io::Write;
    use std::sync::{Arc, Mutex, Once};
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::fmt::MakeWriter;

    type Buffer = Arc<Mutex<Vec<u8>>>;

    thread_local! {
        static CURRENT: RefCell<Option<Buffer>> = const { RefCell::new(None) };
    }

    static BACKGROUND: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    struct Router;

    struct RoutedWriter(Option<Buffer>);

    impl Write for RoutedWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            match &self.0 {
                Some(buf) => buf
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(bytes),
                None => BACKGROUND
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(bytes),
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Router {
        type Writer = RoutedWriter;

        fn make_writer(&'a self) -> RoutedWriter {
            RoutedWriter(CURRENT.with(|c| c.borrow().clone()))
        }
    }

    /// Installs the capturing subscriber (once per process).
    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_span_events(FmtSpan::CLOSE)
                .with_ansi(false)
                .with_writer(Router)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .unwrap_or_else(|e| panic!("installing the capturing subscriber: {e}"));
        });
    }

    /// Runs `f` and returns what this thread logged meanwhile.
    pub fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
        install();
        let buf = Buffer::default();
        CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(&buf)));
        let out = f();
        CURRENT.with(|c| *c.borrow_mut() = None);
        let text =
            String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        (out, text)
    }

    /// Everything other threads have logged so far, by any test of this binary.
    pub fn background() -> String {
        String::from_utf8_lossy(&BACKGROUND.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

use capture::logs_of;

/// A store on a fresh database, and what keeps that database alive.
struct Opened {
    store: Arc<dyn Store>,
    url: String,
    _keep: Box<dyn std::any::Any>,
}

fn open(backend: BackendKind, config: &StoreConfig) -> Opened {
    match backend {
        BackendKind::Sqlite => {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
            let url = dir.path().join("obs.db").to_string_lossy().into_owned();
            let store = SqliteStore::connect(&url, config)
                .unwrap_or_else(|e| panic!("opening SQLite {url}: {e}"));
            Opened {
                store: Arc::new(store),
                url,
                _keep: Box::new(dir),
            }
        }
        BackendKind::Postgres => {
            let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
            let url = db.url().to_owned();
            let store = PostgresStore::connect(&url, config)
                .unwrap_or_else(|e| panic!("opening PostgreSQL {}: {e}", db.name()));
            Opened {
                store: Arc::new(store),
                url,
                _keep: Box::new(db),
            }
        }
    }
}

/// `url` with `password` set and, if given, another `host:port`.
fn rewrite_authority(url: &str, password: Option<&str>, host_port: Option<&str>) -> String {
    let mut parsed = PostgresUrl::parse(url).unwrap_or_else(|e| panic!("{e}"));
    if let Some((host, port)) = host_port.and_then(|hp| hp.rsplit_once(':')) {
        parsed = parsed.with_hosts(&[PgHost {
            host: host.to_owned(),
            port: port.parse().ok(),
        }]);
    }
    if password.is_some() {
        parsed = parsed.with_password(password);
    }
    parsed.to_url()
}

/// `host:port` of the first host of `url`.
fn host_port(url: &str) -> String {
    let parsed = PostgresUrl::parse(url).unwrap_or_else(|e| panic!("{e}"));
    let first = parsed.hosts().remove(0);
    format!("{}:{}", first.host, first.port.unwrap_or(5432))
}

const PASSWORD_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA";

fn every_statement_logged() -> StoreConfig {
    StoreConfig {
        slow_query_threshold: Duration::ZERO,
        ..StoreConfig::default()
    }
}

/// Text that must never be shown, with a name for the failure message.
struct Secrets(Vec<(&'static str, String)>);

impl Secrets {
    fn assert_absent(&self, what: &str, text: &str) {
        for (name, secret) in &self.0 {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows the {name}:\n{text}"
            );
        }
    }
}

#[rstest]
#[case::sqlite(BackendKind::Sqlite)]
#[case::postgres(BackendKind::Postgres)]
fn secrets_never_reach_errors_debug_or_logs(#[case] backend: BackendKind) {
    let mut secrets = Secrets(Vec::new());
    let mut shown = Vec::<String>::new();
    let (_, logs) = logs_of(|| {
        let opened = if backend == BackendKind::Postgres {
            let password = format!("Pw{}x", uuid_like());
            secrets.0.push(("URL password", password.clone()));
            let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
            // The server trusts local connections, so the password (right or wrong)
            // is accepted: the store works and must still never show it.
            let url = rewrite_authority(db.url(), Some(&password), None);
            let store = PostgresStore::connect(&url, &every_statement_logged())
                .unwrap_or_else(|e| panic!("connect with a password in the URL: {e}"));
            shown.push(format!("{store:?}"));
            // Refused (nothing listens on port 1) and unknown-database failures.
            for bad in [
                rewrite_authority(db.url(), Some(&password), Some("127.0.0.1:1")),
                format!("{url}_no_such_database"),
            ] {
                let err = PostgresStore::connect(&bad, &every_statement_logged())
                    .expect_err("connecting to a bad target fails");
                shown.push(format!("{err}\n{err:?}"));
            }
            Opened {
                store: Arc::new(store),
                url,
                _keep: Box::new(db),
            }
        } else {
            open(backend, &every_statement_logged())
        };
        let store = &opened.store;
        shown.push(repo_core::redact_url(&opened.url));

        let user = store
            .users()
            .create(&NewUser::new(
                "keyholder",
                "keyholder@example.com",
                PASSWORD_HASH,
            ))
            .unwrap_or_else(|e| panic!("create user: {e}"));
        let created = store
            .api_keys()
            .create(&NewApiKey::new(user.id, "ci"))
            .unwrap_or_else(|e| panic!("create key: {e}"));
        let secret = created.secret.expose().to_owned();
        secrets.0.push(("API-key secret", secret.clone()));
        // The random part alone is secret too (the prefix is displayable by design).
        secrets
            .0
            .push(("API-key secret body", secret[14..].to_owned()));
        secrets.0.push(("API-key hash", created.secret.hash()));
        shown.push(format!("{created:?} {}", created.secret));

        let verified = store.api_keys().verify(&secret);
        assert!(matches!(verified, Ok(Some(_))), "right secret verifies");
        shown.push(format!("{verified:?}"));
        let wrong = ApiKeySecret::generate();
        secrets
            .0
            .push(("wrong API-key secret", wrong.expose().to_owned()));
        secrets.0.push(("wrong API-key hash", wrong.hash()));
        let verified_wrong = store.api_keys().verify(wrong.expose());
        assert!(matches!(verified_wrong, Ok(None)), "wrong secret: none");
        shown.push(format!("{verified_wrong:?}"));
        // A malformed secret (one character short) is refused without echoing it.
        let malformed = store.api_keys().verify(&secret[..secret.len() - 1]);
        let malformed = malformed.expect_err("malformed secret is refused");
        assert!(matches!(malformed, RepoError::Validation { .. }));
        shown.push(format!("{malformed} {malformed:?}"));

        // Failing calls: duplicate name, unknown user, and a unit of work that fails
        // after verifying the secret.
        let dup = store
            .api_keys()
            .create(&NewApiKey::new(user.id, "CI"))
            .expect_err("duplicate key name");
        let unknown = store
            .api_keys()
            .create(&NewApiKey::new(UserId(i64::MAX), "x"))
            .expect_err("unknown user");
        let in_tx = store
            .transaction(|tx| {
                tx.api_keys().verify(&secret)?;
                tx.lock_collection(CollectionId::new())
            })
            .expect_err("locking a missing collection");
        for err in [dup, unknown, in_tx] {
            shown.push(format!("{err} {err:?}"));
        }

        let revoked = store
            .api_keys()
            .revoke(created.key.id)
            .unwrap_or_else(|e| panic!("revoke: {e}"));
        shown.push(format!("{revoked:?}"));
        assert!(
            matches!(store.api_keys().verify(&secret), Ok(None)),
            "revoked key no longer verifies"
        );
        shown.push(format!("{:?}", store.api_keys().list_for_user(user.id)));
        shown.push(format!("{:?}", every_statement_logged()));
    });

    // The capture saw the calls, so an absent secret means something.
    assert!(
        logs.contains("slow query"),
        "statements were logged:\n{logs}"
    );
    assert!(
        logs.contains(r#"db.collection.name="api_keys" db.operation.name="verify""#),
        "spans were logged:\n{logs}"
    );
    assert!(
        logs.contains("key_hash"),
        "the SQL itself is shown:\n{logs}"
    );
    secrets.assert_absent("the captured log", &logs);
    secrets.assert_absent("the background log", &capture::background());
    for text in &shown {
        secrets.assert_absent("an error, Debug or Display", text);
    }
}

/// A distinct token per call, so that secrets of parallel tests never coincide.
fn uuid_like() -> String {
    format!("{}", CollectionId::new()).replace('-', "")
}

#[rstest]
#[case::sqlite(BackendKind::Sqlite)]
#[case::postgres(BackendKind::Postgres)]
fn every_repository_call_has_a_span(#[case] backend: BackendKind) {
    let opened = open(backend, &StoreConfig::default());
    let store = &opened.store;
    let (_, logs) = logs_of(|| {
        let user = store
            .users()
            .create(&NewUser::new(
                "spanned",
                "spanned@example.com",
                PASSWORD_HASH,
            ))
            .unwrap_or_else(|e| panic!("create user: {e}"));
        let missing = store.users().get(UserId(i64::MAX));
        assert!(matches!(missing, Err(RepoError::NotFound { .. })));
        let in_tx = store.transaction(|tx| {
            tx.users().get(user.id)?;
            tx.lock_collection(CollectionId::new())
        });
        assert!(matches!(in_tx, Err(RepoError::NotFound { .. })));
        store
            .health()
            .unwrap_or_else(|e| panic!("healthy store: {e}"));
    });
    // OpenTelemetry's database attributes; the store's own calls name no table.
    let b = backend.db_system_name();
    for expected in [
        format!(r#"db.system.name="{b}" db.collection.name="users" db.operation.name="create""#),
        format!(r#"db.system.name="{b}" db.collection.name="users" db.operation.name="get""#),
        format!(
            r#"db.system.name="{b}" db.collection.name="collections" db.operation.name="lock_collection""#
        ),
        format!(r#"db.system.name="{b}" db.operation.name="transaction""#),
        format!(r#"db.system.name="{b}" db.operation.name="health""#),
    ] {
        assert!(logs.contains(&expected), "no span {expected}:\n{logs}");
    }
    // Pooled get (not found), get inside the unit of work (ok), lock (not found), the
    // unit of work itself (not found).
    assert!(
        logs.matches(r#"outcome="not_found""#).count() >= 3,
        "{logs}"
    );
    assert!(logs.contains(r#"outcome="ok""#), "{logs}");
    assert!(logs.contains("elapsed_us="), "{logs}");
    // The slow-query threshold (default 1 s) was not reached by these statements, and
    // one call at a time never fills the default pool.
    assert!(!logs.contains("slow query"), "{logs}");
    assert!(!logs.contains("connection pool over"), "{logs}");
}

#[rstest]
#[case::sqlite(BackendKind::Sqlite)]
#[case::postgres(BackendKind::Postgres)]
fn slow_query_log_shows_statement_inside_its_span(#[case] backend: BackendKind) {
    let opened = open(backend, &every_statement_logged());
    let (_, logs) = logs_of(|| {
        let _ = opened.store.users().get_by_username("nobody-by-this-name");
    });
    let line = logs
        .lines()
        .find(|l| l.contains("slow query") && l.contains("users"))
        .unwrap_or_else(|| panic!("no slow-query line for the users query:\n{logs}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("db.operation.name=\"get_by_username\""),
        "span context: {line}"
    );
    assert!(line.contains("elapsed_ms="), "{line}");
    assert!(
        !line.contains("nobody-by-this-name"),
        "bound value shown: {line}"
    );
}

/// A statement that fails is logged with `failed=true` on both backends, also a
/// statement that returns rows (SQLite's `INSERT … RETURNING`, whose error Diesel
/// reports to the caller but not to the connection's instrumentation); one that
/// succeeds with `failed=false`.
#[rstest]
#[case::sqlite(BackendKind::Sqlite)]
#[case::postgres(BackendKind::Postgres)]
fn slow_query_log_marks_failed_statements(#[case] backend: BackendKind) {
    let opened = open(backend, &every_statement_logged());
    let new = NewUser::new("twice", "twice@example.com", PASSWORD_HASH);
    let (_, logs) = logs_of(|| {
        opened
            .store
            .users()
            .create(&new)
            .unwrap_or_else(|e| panic!("first create: {e}"));
        let again = opened.store.users().create(&new);
        assert!(
            matches!(again, Err(RepoError::AlreadyExists { .. })),
            "{again:?}"
        );
    });
    let inserts: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("slow query") && l.contains("INSERT INTO") && l.contains("users"))
        .collect();
    assert_eq!(inserts.len(), 2, "two inserts logged:\n{logs}");
    assert!(inserts[0].contains("failed=false"), "{}", inserts[0]);
    assert!(inserts[1].contains("failed=true"), "{}", inserts[1]);
    assert!(
        inserts[1].contains(r#"db.operation.name="create""#),
        "logged inside the call's span: {}",
        inserts[1]
    );
}

#[rstest]
#[case::sqlite(BackendKind::Sqlite)]
#[case::postgres(BackendKind::Postgres)]
fn pool_warns_once_when_nearly_exhausted(#[case] backend: BackendKind) {
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 0,
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    // Opening runs the migrations on a checkout too: capture from the start.
    let (_, logs) = logs_of(|| {
        let opened = open(backend, &config);
        for _ in 0..5 {
            opened
                .store
                .users()
                .count(Default::default())
                .unwrap_or_else(|e| panic!("count: {e}"));
        }
        let status = opened.store.pool_status();
        assert_eq!((status.max, status.in_use), (1, 0), "{status:?}");
    });
    // Each checkout of the only connection is 100 % in use; the warning is
    // rate-limited to one per interval.
    assert_eq!(
        logs.matches("connection pool over 90% in use").count(),
        1,
        "{logs}"
    );
    assert!(
        logs.contains("in_use=1") && logs.contains("max=1"),
        "{logs}"
    );
}

/// A pool that may open more connections than the server accepts is reported once,
/// at open, with both numbers; the default pool is not.
#[test]
fn postgres_pool_larger_than_the_server_is_warned_about_once() {
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: 1,
            max_overflow: 1000,
            ..PoolConfig::default()
        },
        ..StoreConfig::default()
    };
    let (opened, logs) = logs_of(|| open(BackendKind::Postgres, &config));
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("but the server accepts"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(warnings[0].contains("pool_max=1001"), "{}", warnings[0]);
    let (_, logs) = logs_of(|| {
        let again = opened.store.users().count(Default::default());
        assert!(again.is_ok(), "{again:?}");
        open(BackendKind::Postgres, &StoreConfig::default())
    });
    assert!(!logs.contains("but the server accepts"), "{logs}");
}

/// A healthy store on a fresh database reached through a [`TcpProxy`], with the
/// proxy and the database, which must outlive the test (the database is dropped with
/// `FORCE`, whatever is still connected).
fn behind_a_proxy(
    pool_size: u32,
    max_overflow: u32,
    connection_timeout: Duration,
    health_timeout: Duration,
) -> (Arc<dyn Store>, TcpProxy, TempDatabase) {
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let proxy = TcpProxy::start(&host_port(db.url())).unwrap_or_else(|e| panic!("proxy: {e}"));
    let url = rewrite_authority(db.url(), None, Some(&proxy.address().to_string()));
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size,
            max_overflow,
            connection_timeout,
            ..PoolConfig::default()
        },
        health_timeout,
        ..StoreConfig::default()
    };
    let store = PostgresStore::connect(&url, &config)
        .unwrap_or_else(|e| panic!("connect through the proxy: {e}"));
    store
        .health()
        .unwrap_or_else(|e| panic!("healthy through the proxy: {e}"));
    (Arc::new(store), proxy, db)
}

/// While the server refuses connections: `health()` says so (`ConnectionFailed` with
/// libpq's cause) instead of timing out first; every caller that waited for a
/// connection gets the cause, not only one of them; libpq's multi-line message is one
/// line in errors and logs; and the pool logs one line for all those failures, not one
/// per attempt.
#[test]
fn postgres_refused_connections_are_explained_on_one_line_and_logged_once() {
    // The pool logs from its own threads: capture them even if no other test has.
    capture::install();
    // The checkout wait is longer than the health timeout, as by default (5 s, 2 s).
    let (store, proxy, _db) = behind_a_proxy(2, 0, Duration::from_secs(4), Duration::from_secs(2));
    let port = proxy.address().port().to_string();
    proxy.refuse();

    // The pooled connections fail once each (lost), then the pool cannot reconnect.
    let mut health = store.health();
    for _ in 0..4 {
        if let Err(RepoError::Unavailable {
            reason: UnavailableReason::ConnectionLost,
            message,
            ..
        }) = &health
        {
            assert!(!message.contains('\n'), "one line: {message:?}");
            health = store.health();
        }
    }
    match &health {
        Err(RepoError::Unavailable {
            reason: UnavailableReason::ConnectionFailed,
            message,
            ..
        }) => {
            assert!(
                message.contains("server closed the connection"),
                "{message}"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
        other => panic!("health of a refusing server: {other:?}"),
    }

    // Six callers wait for the two connections at once: each is told why.
    let errors: Vec<RepoError> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| store.users().count(Default::default())))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(Err(e)) => e,
                other => panic!("a caller while the server refuses: {other:?}"),
            })
            .collect()
    });
    for e in &errors {
        assert!(
            matches!(
                e,
                RepoError::Unavailable {
                    reason: UnavailableReason::ConnectionFailed,
                    ..
                }
            ),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("server closed the connection"),
            "each caller gets the cause: {text}"
        );
        assert!(!text.contains('\n'), "one line: {text:?}");
        assert!(std::error::Error::source(e).is_some(), "{e:?}");
    }

    let background = capture::background();
    let ours: Vec<&str> = background
        .lines()
        .filter(|l| l.contains("pool connection error") && l.contains(&port))
        .collect();
    assert!(!ours.is_empty(), "the failures were logged:\n{background}");
    assert!(
        ours.len() <= 2,
        "{} log lines for one refusing server:\n{}",
        ours.len(),
        ours.join("\n")
    );
    assert!(
        !background
            .lines()
            .any(|l| l.trim_start().starts_with("This probably means")),
        "a libpq message split over lines:\n{background}"
    );
}

#[test]
fn postgres_health_of_an_unreachable_server_fails_fast() {
    // A checkout wait far longer than the health timeout: health must not wait for it.
    let (store, proxy, _db) =
        behind_a_proxy(1, 1, Duration::from_secs(30), Duration::from_millis(500));
    proxy.cut();
    let started = Instant::now();
    let result = store.health();
    let waited = started.elapsed();
    assert!(
        matches!(
            result,
            Err(RepoError::Unavailable {
                reason: UnavailableReason::Timeout,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(result.is_err_and(|e| e.is_retryable()));
    // Generous bound against a hang: the pool would wait 30 s.
    assert!(waited < Duration::from_secs(10), "health waited {waited:?}");
}
