//! Hostile input, property-tested on both backends at once (issue #5, item 5).
//!
//! Each generated value (arbitrary Unicode, quotes, backslashes, `%` and `_`, NUL,
//! very long strings) is written and looked up through a SQLite store and a
//! PostgreSQL store side by side. On each backend it either round-trips exactly or
//! is refused with `Validation`, and the two backends give the same outcome: the
//! same refusal, the same rows found, the same hits. Each test creates its two
//! databases once and runs every case against them (same history on both).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestCaseResult, TestRunner};
use repo_core::{
    AccessLevel, ApiKeyId, Collection, CollectionId, DocumentId, Field, Grantee, NewApiKey,
    NewChunk, NewCollection, NewDocument, NewUser, PageRequest, Principal, RepoError, RepoResult,
    SearchQuery, Store, StoreConfig, User, UserId,
};
use repo_postgres::testing::TempDatabase;
use repo_postgres::PostgresStore;
use repo_sqlite::SqliteStore;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
/// Cases per property: enough variety, small enough to keep the suite fast.
/// `PROPTEST_CASES` overrides it for a longer hunt.
const CASES: u32 = 64;

/// A SQLite store and a PostgreSQL store, each on its own fresh database.
struct Backends {
    sqlite: Arc<dyn Store>,
    postgres: Arc<dyn Store>,
    _db: TempDatabase,
    _dir: tempfile::TempDir,
}

impl Backends {
    fn open() -> Backends {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        let path = dir.path().join("hostile.db");
        let sqlite = SqliteStore::connect(&path.to_string_lossy(), &StoreConfig::default())
            .unwrap_or_else(|e| panic!("opening SQLite: {e}"));
        let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
        let postgres = PostgresStore::connect(db.url(), &StoreConfig::default())
            .unwrap_or_else(|e| panic!("opening PostgreSQL database {}: {e}", db.name()));
        Backends {
            sqlite: Arc::new(sqlite),
            postgres: Arc::new(postgres),
            _db: db,
            _dir: dir,
        }
    }

    /// Both stores, named, in a fixed order.
    fn each(&self) -> [(&'static str, &dyn Store); 2] {
        [("sqlite", &*self.sqlite), ("postgres", &*self.postgres)]
    }
}

/// What a call came to, without backend-specific parts (ids, timestamps, sources).
#[derive(Debug, Clone, PartialEq)]
enum Outcome<T> {
    Ok(T),
    Validation(Field),
    AlreadyExists(Field),
    NotFound,
    AccessDenied,
    /// Any other error: never expected, shown when the backends disagree or here.
    Other(String),
}

fn outcome<T, U>(result: RepoResult<T>, project: impl FnOnce(T) -> U) -> Outcome<U> {
    match result {
        Ok(v) => Outcome::Ok(project(v)),
        Err(RepoError::Validation { field, .. }) => Outcome::Validation(field),
        Err(RepoError::AlreadyExists { field, .. }) => Outcome::AlreadyExists(field),
        Err(RepoError::NotFound { .. }) => Outcome::NotFound,
        Err(RepoError::AccessDenied { .. }) => Outcome::AccessDenied,
        Err(e) => Outcome::Other(format!("{e:?}")),
    }
}

/// Fails the case unless SQLite and PostgreSQL gave the same outcome, and that
/// outcome is one a caller may see for this input.
fn agree<T: Debug + PartialEq>(
    what: &str,
    sqlite: Outcome<T>,
    postgres: Outcome<T>,
) -> TestCaseResult {
    if let Outcome::Other(e) = &sqlite {
        return Err(TestCaseError::fail(format!(
            "{what}: SQLite failed unexpectedly: {e}"
        )));
    }
    if let Outcome::Other(e) = &postgres {
        return Err(TestCaseError::fail(format!(
            "{what}: PostgreSQL failed unexpectedly: {e}"
        )));
    }
    prop_assert_eq!(sqlite, postgres, "{}: the backends disagree", what);
    Ok(())
}

/// Characters that break naive SQL, LIKE patterns, JSON paths or FTS syntax.
const NASTY: &[char] = &[
    '\'', '"', '\\', '%', '_', '\0', '*', ' ', '-', '(', ')', ':', '$', '.', '[', ']', '{', '}',
    '\n', '\t', '^', '~', '&', '|', '!', ';', 'ß', 'İ', 'Σ', 'é', '\u{301}', '😀', '\u{feff}',
];

/// Short hostile text: arbitrary Unicode mixed with [`NASTY`] characters and letters.
fn short_text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => any::<char>(),
        4 => prop::sample::select(NASTY),
        3 => prop::char::range('a', 'e'),
    ];
    prop::collection::vec(ch, 0..24).prop_map(|v| v.into_iter().collect())
}

/// Hostile text, sometimes long: around the 64 / 255 / 254 character limits and far
/// beyond them.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => short_text(),
        2 => (
            prop::sample::select(&[63usize, 64, 65, 253, 254, 255, 256, 5000][..]),
            short_text()
        )
            .prop_map(|(n, tail)| {
                let mut s: String = "é".repeat(n.saturating_sub(tail.chars().count()));
                s.push_str(&tail);
                s
            }),
    ]
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        // Shrinking re-runs against the same databases; a few steps are enough to
        // make a failure readable.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `test` for every generated value and fails the test with proptest's report.
fn check<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> TestCaseResult) {
    if let Err(e) = runner().run(&strategy, test) {
        panic!("{e}");
    }
}

fn user_projection(u: User) -> (String, String) {
    (u.username, u.email)
}

#[test]
fn hostile_user_names_and_emails_round_trip_or_are_refused_alike() {
    let b = Backends::open();
    check((text(), text(), text()), |(name, local, probe)| {
        let email = format!("{local}@example.com");
        // Every write goes to both backends before any check, so that a failing
        // case leaves the same history on both for the cases proptest runs next.
        let results = b
            .each()
            .map(|(_, s)| s.users().create(&NewUser::new(&name, &email, HASH)));
        for ((backend, s), r) in b.each().into_iter().zip(&results) {
            if let Ok(u) = r {
                prop_assert_eq!(&u.username, &name, "{}: username round trip", backend);
                prop_assert_eq!(
                    &u.email,
                    &email.trim().to_lowercase(),
                    "{}: email stored lowercase",
                    backend
                );
                let by_name = s.users().get_by_username(&name);
                prop_assert_eq!(by_name.ok(), Some(u.clone()), "{}: by username", backend);
                let by_email = s.users().get_by_email(&email);
                prop_assert_eq!(by_email.ok(), Some(u.clone()), "{}: by email", backend);
            }
        }
        let [sqlite, postgres] = results.map(|r| outcome(r, user_projection));
        agree("create user", sqlite, postgres)?;
        // Lookups with arbitrary text, and with the name and email turned into
        // LIKE patterns, find exactly the row of that name (no pattern matching),
        // nothing, or are refused alike.
        let probes = [vec![probe], wildcards(&name), wildcards(&email)].concat();
        for probe in &probes {
            let [sqlite, postgres] = b
                .each()
                .map(|(_, s)| outcome(s.users().get_by_username(probe), user_projection));
            if let Outcome::Ok((found, _)) = &sqlite {
                prop_assert_eq!(found, probe, "username lookup found another row");
            }
            agree(&format!("user by username {probe:?}"), sqlite, postgres)?;
            let [sqlite, postgres] = b
                .each()
                .map(|(_, s)| outcome(s.users().get_by_email(probe), user_projection));
            if let Outcome::Ok((_, found)) = &sqlite {
                prop_assert_eq!(
                    found,
                    &probe.trim().to_lowercase(),
                    "email lookup found another row"
                );
            }
            agree(&format!("user by email {probe:?}"), sqlite, postgres)?;
        }
        Ok(())
    });
}

/// `value` made into patterns that match it under LIKE / ILIKE / GLOB but are not
/// equal to it: a lookup that finds anything with one of them matched a pattern.
fn wildcards(value: &str) -> Vec<String> {
    let chars: Vec<char> = value.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let underscored: String = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| if i % 2 == 0 { '_' } else { c })
        .collect();
    let head: String = chars[..chars.len() / 2].iter().collect();
    vec![
        underscored,
        format!("{head}%"),
        format!("{head}*"),
        value.to_uppercase(),
    ]
}

/// One owner per backend (usernames match, ids may not).
fn owners(b: &Backends) -> [UserId; 2] {
    b.each().map(|(backend, s)| {
        s.users()
            .create(&NewUser::new("owner", "owner@example.com", HASH))
            .unwrap_or_else(|e| panic!("{backend}: seeding the owner: {e:?}"))
            .id
    })
}

fn collection_projection(c: Collection) -> String {
    c.name
}

#[test]
fn hostile_collection_names_round_trip_or_are_refused_alike() {
    let b = Backends::open();
    let owners = owners(&b);
    check((text(), text()), |(name, probe)| {
        let mut i = 0;
        let results = b.each().map(|(_, s)| {
            i += 1;
            s.collections()
                .create(&NewCollection::new(&name, owners[i - 1]))
        });
        for ((backend, s), r) in b.each().into_iter().zip(&results) {
            if let Ok(c) = r {
                prop_assert_eq!(
                    c.name.as_str(),
                    name.trim(),
                    "{}: name stored trimmed",
                    backend
                );
                let back = s.collections().get_by_name(&c.name);
                prop_assert_eq!(back.ok(), Some(c.clone()), "{}: by name", backend);
            }
        }
        let [sqlite, postgres] = results.map(|r| outcome(r, collection_projection));
        agree("create collection", sqlite, postgres)?;
        let probes = [vec![probe], wildcards(&name)].concat();
        for probe in &probes {
            let [sqlite, postgres] = b
                .each()
                .map(|(_, s)| outcome(s.collections().get_by_name(probe), collection_projection));
            if let Outcome::Ok(found) = &sqlite {
                prop_assert_eq!(found, probe, "collection lookup found another row");
            }
            agree(&format!("collection by name {probe:?}"), sqlite, postgres)?;
        }
        Ok(())
    });
}

/// One collection per backend, plus a counter for fresh content hashes.
fn collections(b: &Backends) -> [CollectionId; 2] {
    let owners = owners(b);
    let mut i = 0;
    b.each().map(|(backend, s)| {
        let c = s
            .collections()
            .create(&NewCollection::new("docs", owners[i]))
            .unwrap_or_else(|e| panic!("{backend}: seeding a collection: {e:?}"));
        i += 1;
        c.id
    })
}

fn content_hash(n: u64) -> String {
    format!("{n:064x}")
}

/// A JSON value built from hostile text: a string, a nested object, or a number.
fn meta_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => text().prop_map(Value::from),
        2 => (short_text(), text()).prop_map(|(k, v)| json!({ k: v })),
        1 => any::<i32>().prop_map(Value::from),
    ]
}

#[test]
fn hostile_document_meta_round_trips_and_filters_alike() {
    let b = Backends::open();
    let cols = collections(&b);
    let next = std::sync::atomic::AtomicU64::new(0);
    check(
        (short_text(), meta_value(), text(), meta_value()),
        |(key, value, file_name, probe)| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let meta = json!({ key.clone(): value.clone() });
            let mut registered = Vec::new();
            for (i, (backend, s)) in b.each().into_iter().enumerate() {
                let mut new = NewDocument::new(cols[i], "/data/x", &file_name, 1, content_hash(n));
                new.meta = meta.clone();
                let r = s.documents().register(&new);
                if let Ok(reg) = &r {
                    prop_assert_eq!(&reg.document.meta, &meta, "{}: meta round trip", backend);
                    prop_assert_eq!(
                        &reg.document.file_name,
                        &file_name,
                        "{}: file name",
                        backend
                    );
                    let back = s.documents().get(reg.document.id);
                    prop_assert_eq!(
                        back.ok(),
                        Some(reg.document.clone()),
                        "{}: read back",
                        backend
                    );
                    // A filter is refused (Validation) for keys that cannot be a
                    // path on both backends; otherwise it finds what was stored.
                    match s
                        .documents()
                        .find_by_meta(cols[i], &meta, PageRequest::first(1000))
                    {
                        Ok(found) => prop_assert!(
                            found.items.iter().any(|d| d.id == reg.document.id),
                            "{}: find_by_meta({}) misses the document holding it",
                            backend,
                            meta
                        ),
                        Err(RepoError::Validation { .. }) => {}
                        Err(e) => {
                            return Err(TestCaseError::fail(format!(
                                "{backend}: find_by_meta({meta}) of a stored meta: {e:?}"
                            )))
                        }
                    }
                }
                registered.push(outcome(r, |reg| reg.created));
            }
            let sqlite = registered.remove(0);
            agree("register", sqlite, registered.remove(0))?;
            // A filter with arbitrary key and value matches the same documents on
            // both backends (identified by content hash: ids differ).
            // Also the stored string turned into LIKE patterns: matching one of them
            // would be pattern matching, which a containment filter must not do.
            let mut probes = vec![probe];
            if let Value::String(stored) = &value {
                probes.extend(wildcards(stored).into_iter().map(Value::from));
            }
            for probe in probes {
                let filter = json!({ key.clone(): probe });
                let mut found = b.each().into_iter().enumerate().map(|(i, (_, s))| {
                    outcome(
                        s.documents()
                            .find_by_meta(cols[i], &filter, PageRequest::first(1000)),
                        |page| {
                            page.items
                                .into_iter()
                                .map(|d| d.content_hash)
                                .collect::<BTreeSet<_>>()
                        },
                    )
                });
                let (sqlite, postgres) = (found.next(), found.next());
                agree(
                    &format!("find_by_meta({filter})"),
                    sqlite.unwrap_or(Outcome::NotFound),
                    postgres.unwrap_or(Outcome::NotFound),
                )?;
            }
            Ok(())
        },
    );
}

/// A document per case, so each chunk is index 0 of its own document.
fn document(s: &dyn Store, c: CollectionId, n: u64) -> DocumentId {
    s.documents()
        .register(&NewDocument::new(c, "/data/x", "x.txt", 1, content_hash(n)))
        .unwrap_or_else(|e| panic!("seeding document {n}: {e:?}"))
        .document
        .id
}

/// Chunk content: hostile text, sometimes at and past the 1,000,000-character limit.
fn chunk_content() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => text(),
        1 => prop::sample::select(&[1_000_000usize, 1_000_001][..]).prop_map(|n| "x".repeat(n)),
    ]
}

/// Characters for generated search text: ASCII, hostile punctuation, letters and
/// digits of several scripts, and the characters that database tokenizers classify or
/// fold differently from Rust (`ς`, `İ`, `ı`, `²`, `½`, `①`, `ⓐ`, a combining accent,
/// `ꭰ` which is unassigned in SQLite's Unicode 6.1 tables, a private-use character).
/// Both backends index the tokens Rust computes, so the hit sets must agree for all.
const SEARCH_CHARS: &[char] = &[
    'a', 'b', 'c', 'A', 'B', 'C', '0', '1', 'é', 'É', 'ü', 'Ü', 'ñ', 'ß', 'ø', 'Ø', 'ж', 'Ж', 'σ',
    'Σ', 'λ', '中', '文', 'ا', 'ب', '١', '\'', '"', '\\', '%', '_', '\0', '*', ' ', '-', '(', ')',
    ':', '$', '.', '^', '~', '&', '|', '!', ';', '\n', '😀', '\u{feff}', 'ς', 'İ', 'ı', '²', '½',
    '①', 'ⓐ', '\u{301}', 'ꭰ', '\u{e000}',
];

/// Text over [`SEARCH_CHARS`], with `OR` sometimes, so the query syntax is exercised.
fn search_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => prop::sample::select(SEARCH_CHARS).prop_map(String::from),
        1 => Just(" OR ".to_owned()),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

#[test]
fn hostile_chunk_content_round_trips_and_any_query_is_answered() {
    let b = Backends::open();
    let cols = collections(&b);
    let next = std::sync::atomic::AtomicU64::new(0);
    check((chunk_content(), text()), |(content, query)| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut inserted = Vec::new();
        for (i, (backend, s)) in b.each().into_iter().enumerate() {
            let doc = document(s, cols[i], n);
            let r = s
                .chunks()
                .insert_many(cols[i], &[NewChunk::new(doc, 0, content.clone())]);
            if r.is_ok() {
                let back = s.chunks().list_by_document(doc, PageRequest::first(1));
                let back = back.map_err(|e| TestCaseError::fail(format!("{backend}: {e:?}")))?;
                prop_assert_eq!(back.items.len(), 1);
                prop_assert!(
                    back.items[0].content == content,
                    "{}: content round trip",
                    backend
                );
            }
            inserted.push(outcome(r, |count| count));
        }
        let sqlite = inserted.remove(0);
        agree("insert chunk", sqlite, inserted.remove(0))?;
        // Any text is a query that both backends answer (the hit sets are compared
        // in `hostile_search_queries_find_the_same_chunks`).
        for (backend, s) in b.each() {
            let (i, parsed) = (
                usize::from(backend == "postgres"),
                SearchQuery::parse(&query),
            );
            if let Err(e) = s.chunks().search(cols[i], &parsed, PageRequest::first(10)) {
                let shown: String = query.chars().take(60).collect();
                return Err(TestCaseError::fail(format!(
                    "{backend}: search {shown:?} failed: {e:?}"
                )));
            }
        }
        Ok(())
    });
}

#[test]
fn hostile_search_queries_find_the_same_chunks() {
    let b = Backends::open();
    let cols = collections(&b);
    // Per backend: which case made each document, so hits compare across backends
    // (document ids differ).
    let made: [RefCell<HashMap<DocumentId, u64>>; 2] = Default::default();
    let next = std::sync::atomic::AtomicU64::new(0);
    check((search_text(), search_text()), |(content, query)| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut inserted = Vec::new();
        for (i, (_, s)) in b.each().into_iter().enumerate() {
            let doc = document(s, cols[i], n);
            made[i].borrow_mut().insert(doc, n);
            let r = s
                .chunks()
                .insert_many(cols[i], &[NewChunk::new(doc, 0, content.clone())]);
            inserted.push(outcome(r, |count| count));
        }
        let sqlite = inserted.remove(0);
        agree("insert chunk", sqlite, inserted.remove(0))?;
        // The same hits (by the case that made their document) and totals, for the
        // query and for the content itself used as a query.
        for q in [&query, &content] {
            let parsed = SearchQuery::parse(q);
            let mut hits = b.each().into_iter().enumerate().map(|(i, (_, s))| {
                let made = made[i].borrow();
                outcome(
                    s.chunks()
                        .search(cols[i], &parsed, PageRequest::first(1000)),
                    |page| {
                        let cases: BTreeSet<Option<u64>> = page
                            .items
                            .iter()
                            .map(|h| made.get(&h.chunk.document_id).copied())
                            .collect();
                        (page.total, cases)
                    },
                )
            });
            let (sqlite, postgres) = (hits.next(), hits.next());
            agree(
                &format!("search {q:?}"),
                sqlite.unwrap_or(Outcome::NotFound),
                postgres.unwrap_or(Outcome::NotFound),
            )?;
        }
        Ok(())
    });
}

/// The users and collections the principal property works on, per backend: an owner,
/// another user and a superuser; the owner's private and public collections and the
/// other user's private one.
struct AccessWorld {
    users: [[UserId; 3]; 2],
    collections: [[CollectionId; 3]; 2],
}

impl AccessWorld {
    const COLLECTIONS: [&'static str; 3] = ["private", "public", "others"];

    fn seed(b: &Backends) -> AccessWorld {
        let mut users = [[UserId(0); 3]; 2];
        let mut collections = [[CollectionId::new(); 3]; 2];
        for (i, (backend, s)) in b.each().into_iter().enumerate() {
            for (j, name) in ["owner", "other", "root"].into_iter().enumerate() {
                let mut new = NewUser::new(name, format!("{name}@example.com"), HASH);
                new.is_superuser = name == "root";
                users[i][j] = s
                    .users()
                    .create(&new)
                    .unwrap_or_else(|e| panic!("{backend}: seeding {name}: {e:?}"))
                    .id;
            }
            for (j, name) in Self::COLLECTIONS.into_iter().enumerate() {
                let mut new = NewCollection::new(name, users[i][if j == 2 { 1 } else { 0 }]);
                new.is_public = name == "public";
                collections[i][j] = s
                    .collections()
                    .create(&new)
                    .unwrap_or_else(|e| panic!("{backend}: seeding {name}: {e:?}"))
                    .id;
            }
        }
        AccessWorld { users, collections }
    }
}

/// A value for the `scoped` / `read_public` keys: `true` is the only one that counts.
fn flag_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(json!(true)),
        1 => Just(json!(false)),
        1 => Just(json!("true")),
        1 => Just(json!(1)),
        1 => Just(Value::Null),
        1 => text().prop_map(Value::from),
    ]
}

/// A hostile permissions document: absent, an object with hostile keys and values and
/// maybe the two flags, or not an object at all.
fn permissions() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        2 => Just(None),
        5 => (
            prop::option::of(flag_value()),
            prop::option::of(flag_value()),
            short_text(),
            meta_value(),
        )
            .prop_map(|(scoped, read_public, key, value)| {
                let mut doc = serde_json::Map::new();
                doc.insert(key, value);
                if let Some(v) = scoped {
                    doc.insert("scoped".into(), v);
                }
                if let Some(v) = read_public {
                    doc.insert("read_public".into(), v);
                }
                Some(Value::Object(doc))
            }),
        1 => meta_value().prop_map(Some),
    ]
}

fn level_value() -> impl Strategy<Value = Option<AccessLevel>> {
    prop::option::of(prop::sample::select(
        &[AccessLevel::Read, AccessLevel::Write, AccessLevel::Admin][..],
    ))
}

/// A user id that exists on neither backend.
fn ghost_user() -> impl Strategy<Value = i64> {
    prop_oneof![i64::MIN..=0, 1_000_000..=i64::MAX]
}

#[test]
fn hostile_principals_are_answered_alike_and_never_exceed_their_user() {
    let b = Backends::open();
    let world = AccessWorld::seed(&b);
    let next = std::sync::atomic::AtomicU64::new(0);
    let strategy = (
        0usize..3,
        permissions(),
        [level_value(), level_value(), level_value()],
        any::<bool>(),
        ghost_user(),
    );
    check(strategy, |(holder, permissions, grants, revoke, ghost)| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let flag = |name: &str| {
            permissions
                .as_ref()
                .and_then(|p| p.get(name))
                .is_some_and(|v| *v == json!(true))
        };
        let mut created = Vec::new();
        let mut keys = [None; 2];
        for (i, (_, s)) in b.each().into_iter().enumerate() {
            let mut new = NewApiKey::new(world.users[i][holder], format!("k{n}"));
            new.permissions = permissions.clone();
            let r = s.api_keys().create(&new);
            keys[i] = r.as_ref().ok().map(|k| k.key.id);
            created.push(outcome(r, |_| ()));
        }
        let sqlite = created.remove(0);
        agree("create key", sqlite, created.remove(0))?;
        let [Some(k_sqlite), Some(k_postgres)] = keys else {
            return Ok(());
        };
        let keys = [k_sqlite, k_postgres];
        let mut granted_any = false;
        for (j, level) in grants.iter().enumerate() {
            let Some(level) = *level else { continue };
            let [sqlite, postgres] = [0, 1].map(|i| {
                let s = b.each()[i].1;
                outcome(
                    s.collections()
                        .grant(world.collections[i][j], Grantee::ApiKey(keys[i]), level),
                    |g| g.permission,
                )
            });
            granted_any |= matches!(sqlite, Outcome::Ok(_));
            agree("grant to key", sqlite, postgres)?;
        }
        if revoke {
            for (i, (backend, s)) in b.each().into_iter().enumerate() {
                s.api_keys()
                    .revoke(keys[i])
                    .map_err(|e| TestCaseError::fail(format!("{backend}: revoke: {e:?}")))?;
            }
        }
        let scoped = granted_any || flag("scoped");
        for (j, name) in AccessWorld::COLLECTIONS.into_iter().enumerate() {
            let levels = [0, 1].map(|i| {
                let s = b.each()[i].1;
                let c = world.collections[i][j];
                (
                    outcome(s.collections().access_level(c, keys[i].into()), |l| l),
                    outcome(
                        s.collections()
                            .access_level(c, world.users[i][holder].into()),
                        |l| l,
                    ),
                )
            });
            let [(key_sqlite, user_sqlite), (key_postgres, user_postgres)] = levels;
            agree(
                &format!("key level on {name}"),
                key_sqlite.clone(),
                key_postgres,
            )?;
            agree(
                &format!("user level on {name}"),
                user_sqlite.clone(),
                user_postgres,
            )?;
            let (Outcome::Ok(key_level), Outcome::Ok(user_level)) = (key_sqlite, user_sqlite)
            else {
                return Err(TestCaseError::fail(format!("levels on {name} refused")));
            };
            prop_assert!(key_level <= user_level, "{}: a key exceeds its user", name);
            if revoke {
                prop_assert_eq!(key_level, None, "{}: a revoked key has access", name);
            } else if !scoped {
                prop_assert_eq!(key_level, user_level, "{}: unscoped key", name);
            } else {
                let public = (name == "public" && flag("read_public")).then_some(AccessLevel::Read);
                let grant = if granted_any { grants[j] } else { None };
                prop_assert!(
                    key_level <= grant.max(public),
                    "{}: a scoped key exceeds its grant",
                    name
                );
            }
        }
        let listed = [0, 1].map(|i| {
            let s = b.each()[i].1;
            outcome(
                s.collections()
                    .list_visible(keys[i].into(), PageRequest::first(100)),
                |page| page.items.into_iter().map(|c| c.name).collect::<Vec<_>>(),
            )
        });
        let [sqlite, postgres] = listed;
        prop_assert_eq!(
            matches!(sqlite, Outcome::AccessDenied),
            revoke,
            "a revoked key lists nothing, loudly"
        );
        agree("list_visible of the key", sqlite, postgres)?;
        // Principals that exist on neither backend are NotFound alike.
        let ghosts = [
            Principal::User(UserId(ghost)),
            Principal::ApiKey(ApiKeyId::new()),
        ];
        for ghost in ghosts {
            let [sqlite, postgres] = [0, 1].map(|i| {
                let s = b.each()[i].1;
                outcome(
                    s.collections().get_with_access(
                        world.collections[i][1],
                        ghost,
                        AccessLevel::Read,
                    ),
                    |c| c.name,
                )
            });
            prop_assert_eq!(&sqlite, &Outcome::NotFound, "{} must be NotFound", ghost);
            agree(&format!("{ghost}"), sqlite, postgres)?;
        }
        // Keys are deleted after each case: the per-user limit of active keys
        // would otherwise refuse the 21st.
        for (i, (backend, s)) in b.each().into_iter().enumerate() {
            s.api_keys()
                .delete(keys[i])
                .map_err(|e| TestCaseError::fail(format!("{backend}: delete key: {e:?}")))?;
        }
        Ok(())
    });
}
