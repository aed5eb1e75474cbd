//! End-to-end tests of the `repoctl` binary: SQLite files in temp directories and
//! throwaway PostgreSQL databases (`TEST_DATABASE_URL`, set by scripts/test.sh).

use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{code, demo, expect_code, path_in, pg, repoctl, text, BIN};

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn pg_count(url: &str, sql: &str) -> i64 {
    let mut c = PgConnection::establish(url).expect("connect");
    diesel::sql_query(sql).load::<N>(&mut c).expect("query")[0].n
}

fn sqlite_count(path: &str, sql: &str) -> i64 {
    let mut c = SqliteConnection::establish(path).expect("open");
    diesel::sql_query(sql).load::<N>(&mut c).expect("query")[0].n
}

/// Whether a report's verification found every table equal.
fn verified_equal(r: &Value) -> bool {
    r["verification"]
        .as_array()
        .expect("a verification")
        .iter()
        .all(|v| v["equal"] == true)
}

fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("report")).expect("json")
}

#[test]
fn empty_database_copies_and_verifies_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    let b = path_in(dir.path(), "b.db");
    expect_code(&repoctl(&["migrate", "up", "--database-url", &a]), 0);
    let db = pg();
    let out = repoctl(&["copy", "--from", &a, "--to", db.url()]);
    expect_code(&out, 0);
    assert!(text(&out).contains("equal"), "{}", text(&out));
    expect_code(
        &repoctl(&["copy", "--from", db.url(), "--to", &b, "--no-progress"]),
        0,
    );
    expect_code(&repoctl(&["verify", "--from", &a, "--to", &b]), 0);
}

#[test]
fn generated_data_round_trips_sqlite_postgres_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    let b = path_in(dir.path(), "b.db");
    demo(&a, "2", "20");
    let db = pg();
    let rep = dir.path().join("r.json");
    let out = repoctl(&[
        "copy",
        "--from",
        &a,
        "--to",
        db.url(),
        "--report",
        rep.to_str().unwrap(),
        "--batch-size",
        "97",
    ]);
    expect_code(&out, 0);
    let r = report(&rep);
    assert_eq!(r["exit_code"], 0);
    assert!(verified_equal(&r));
    let chunks = sqlite_count(&a, "SELECT count(*) AS n FROM chunks");
    assert_eq!(chunks, 2 * 20 * 20);
    assert_eq!(
        pg_count(db.url(), "SELECT count(*) AS n FROM chunks"),
        chunks
    );
    // The sequences continue after the copied ids.
    assert_eq!(
        pg_count(db.url(), "SELECT last_value AS n FROM chunks_id_seq"),
        sqlite_count(&a, "SELECT max(id) AS n FROM chunks")
    );
    // Full-text search works on the loaded rows (the generated tsvector column).
    assert!(
        pg_count(
            db.url(),
            "SELECT count(*) AS n FROM chunks WHERE search_tsv @@ 'data'::tsquery"
        ) > 0
    );

    expect_code(
        &repoctl(&["copy", "--from", db.url(), "--to", &b, "--no-progress"]),
        0,
    );
    let out = repoctl(&["verify", "--from", &a, "--to", &b]);
    expect_code(&out, 0);
    assert_eq!(
        sqlite_count(
            &b,
            "SELECT seq AS n FROM sqlite_sequence WHERE name = 'chunks'"
        ),
        sqlite_count(
            &a,
            "SELECT seq AS n FROM sqlite_sequence WHERE name = 'chunks'"
        )
    );
    assert_eq!(
        sqlite_count(
            &b,
            "SELECT count(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'data'"
        ),
        sqlite_count(
            &a,
            "SELECT count(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'data'"
        )
    );
}

const T: &str = "2024-05-01T10:00:00.000000Z";
const H: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g";
const C1: &str = "10000000-0000-4000-8000-000000000001";
const C3: &str = "10000000-0000-4000-8000-000000000003";
const D1: &str = "20000000-0000-4000-8000-000000000001";
const D2: &str = "20000000-0000-4000-8000-000000000002";

/// A SQLite database with our schema and every kind of dirty value, written with raw
/// SQL (foreign keys and CHECK constraints off, as another tool might).
fn dirty_sqlite(dir: &Path) -> String {
    let path = path_in(dir, "dirty.db");
    expect_code(&repoctl(&["migrate", "up", "--database-url", &path]), 0);
    let mut c = SqliteConnection::establish(&path).unwrap();
    c.batch_execute("PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON;")
        .unwrap();
    let user = |id: i64, active: &str, superuser: &str, full: &str, created: &str, login: &str| {
        format!(
            "INSERT INTO users (id, username, email, full_name, hashed_password, is_active, is_superuser, \
             created_at, updated_at, last_login) VALUES ({id}, 'u{id}', 'u{id}@x.io', {full}, '{H}', \
             {active}, {superuser}, {created}, '{T}', {login});"
        )
    };
    let q = |s: &str| format!("'{s}'");
    let mut sql = String::new();
    sql += &user(1, "1", "0", "NULL", &q(T), "NULL"); // clean
    sql += &user(2, "'true'", "0", "NULL", "'2024-01-02 03:04:05'", "NULL"); // converted ×2
    sql += &user(3, "1", "0", "NULL", "''", "NULL"); // empty timestamp
    sql += &user(4, "1", "'yes'", "NULL", &q(T), "NULL"); // ambiguous boolean
    sql += &user(5, "1", "0", "'a' || char(0) || 'b'", &q(T), "NULL"); // NUL
    sql += &user(6, "1", "0", "NULL", &q(T), "'not a date'"); // unparseable
    sql += &user(7, "1", "0", "NULL", "'2024-01-02T05:04:05+02:00'", "NULL"); // offset
    sql += &user(8, "0", "0", "NULL", "'2024-01-02T03:04:05Z'", "NULL"); // no fraction
    sql += &user(9, "1", "0", "CAST(X'C328' AS TEXT)", &q(T), "NULL"); // invalid UTF-8
    let key = |n: u8, user: i64, perms: &str| {
        format!(
            "INSERT INTO api_keys (id, user_id, name, name_folded, key_prefix, key_hash, permissions, \
             is_active, created_at) VALUES ('00000000-0000-4000-8000-00000000000{n}', {user}, 'k{n}', \
             'k{n}', 'smtk_0000000{n}', '{}', {perms}, 1, '{T}');",
            n.to_string().repeat(64)
        )
    };
    sql += &key(1, 1, "'{\"scopes\": [\"read\"]}'"); // clean
    sql += &key(2, 3, "NULL"); // parent refused
    sql += &key(3, 1, "'{bad'"); // invalid JSON
    sql += &key(4, 999, "NULL"); // points nowhere
    let coll = |id: &str, name: &str, meta: &str| {
        format!(
            "INSERT INTO collections (id, name, owner_id, vector_store_name, meta, created_at, updated_at) \
             VALUES ('{id}', '{name}', 1, 'col_{}', '{meta}', '{T}', '{T}');",
            id.replace('-', "_")
        )
    };
    sql += &coll(C1, "c1", "{}");
    sql += &coll("10000000-0000-4000-8000-00000000000A", "c2", "{}"); // uppercase UUID
    sql += &coll(C3, "c3", r#"{"a": "\u0000"}"#); // jsonb rejects \u0000
    sql += &format!(
        "INSERT INTO collection_permissions (id, collection_id, user_id, api_key_id, permission, created_at) \
         VALUES (1, '{C1}', 1, NULL, 'read', '{T}'), \
                (2, '{C1}', 2, '00000000-0000-4000-8000-000000000001', 'write', '{T}');"
    );
    let op = |id: i64, status: &str, config: &str| {
        format!(
            "INSERT INTO operations (id, uuid, collection_id, user_id, kind, status, config, meta, created_at) \
             VALUES ({id}, '30000000-0000-4000-8000-00000000000{id}', '{C1}', 1, 'index', '{status}', \
             '{config}', '{{}}', '{T}');"
        )
    };
    sql += &op(1, "completed", r#"{"a": 1}"#);
    sql += &op(2, "done", r#"{"a": 1}"#); // not a status
    sql += &op(3, "failed", "[1]"); // config not an object
    let doc = |id: &str, coll: &str, n: u8| {
        format!(
            "INSERT INTO documents (id, collection_id, file_path, file_name, file_size, content_hash, status, \
             meta, created_at, updated_at) VALUES ('{id}', '{coll}', '/d/{n}', '{n}.txt', 10, '{}', \
             'completed', '{{}}', '{T}', '{T}');",
            format!("{n:x}").repeat(64)
        )
    };
    sql += &doc(D1, C1, 1);
    sql += &doc(D2, "10000000-0000-4000-8000-00000000000A", 2); // parent refused
    let chunk = |id: i64, coll: &str, doc: &str, idx: i64, created: &str| {
        format!(
            "INSERT INTO chunks (id, collection_id, document_id, chunk_index, content, meta, created_at) \
             VALUES ({id}, '{coll}', '{doc}', {idx}, 'chunk {id} text', '{{}}', '{created}');"
        )
    };
    sql += &chunk(1, C1, D1, 0, T);
    sql += &chunk(2, C1, "20000000-0000-4000-8000-000000000099", 0, T); // no such document
    sql += &chunk(3, C1, D1, 1, "2024-01-02 03:04:05.123"); // converted
    sql += &chunk(4, C3, D1, 2, T); // collection refused (and document of another collection)
    c.batch_execute(&sql).unwrap();
    path
}

const DIRTY_REFUSED_ROWS: usize = 16;

#[test]
fn dirty_values_are_converted_or_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = dirty_sqlite(dir.path());
    let db = pg();

    // Dry run: every refusal listed, nothing written (the target keeps no schema).
    let dry = dir.path().join("dry.json");
    let out = repoctl(&[
        "copy",
        "--from",
        &src,
        "--to",
        db.url(),
        "--dry-run",
        "--report",
        dry.to_str().unwrap(),
    ]);
    expect_code(&out, 4);
    let t = text(&out);
    for needle in [
        "users id=3 created_at: empty string in a timestamp column",
        "users id=4 is_superuser: ambiguous boolean \"yes\"",
        "users id=5 full_name: text contains a NUL character",
        "users id=6 last_login: unparseable timestamp \"not a date\"",
        "users id=9 full_name: text is not valid UTF-8",
        "api_keys id=00000000-0000-4000-8000-000000000002 user_id: user_id = 3: the referenced users row was refused",
        "api_keys id=00000000-0000-4000-8000-000000000003 permissions: invalid JSON",
        "api_keys id=00000000-0000-4000-8000-000000000004 user_id: user_id = 999 points to no users row",
        "collections id=10000000-0000-4000-8000-00000000000A id: not a canonical UUID",
        "collections id=10000000-0000-4000-8000-000000000003 meta: JSON string holds \\u0000",
        "collection_permissions id=2 user_id: exactly one of user_id and api_key_id must be set",
        "operations id=2 status: \"done\" is not one of",
        "operations id=3 config: JSON is not an object",
        "documents id=20000000-0000-4000-8000-000000000002 collection_id",
        "chunks id=2 document_id: document_id = 20000000-0000-4000-8000-000000000099 points to no documents row",
        "chunks id=4 collection_id",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    assert_eq!(
        pg_count(
            db.url(),
            "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'"
        ),
        0,
        "a dry run writes nothing"
    );
    let r = report(&dry);
    let refused: u64 = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["refused_rows"].as_u64().unwrap())
        .sum();
    assert_eq!(refused as usize, DIRTY_REFUSED_ROWS, "{t}");

    // Default policy: stop at the first refused row, writing nothing after it.
    let stop = dir.path().join("stop.json");
    let out = repoctl(&[
        "copy",
        "--from",
        &src,
        "--to",
        db.url(),
        "--report",
        stop.to_str().unwrap(),
    ]);
    expect_code(&out, 4);
    let r = report(&stop);
    assert_eq!(r["stopped"], true);
    assert_eq!(r["refusals"][0]["key"], "3");
    assert_eq!(r["refusals"][0]["column"], "created_at");
    assert_eq!(pg_count(db.url(), "SELECT count(*) AS n FROM users"), 0);
    // Nothing written: the sequences stay untouched (the source's mark for users is 9).
    assert_eq!(r["sequences"], serde_json::json!({}), "{}", text(&out));
    assert_eq!(
        pg_count(
            db.url(),
            "SELECT (CASE WHEN is_called THEN 1 ELSE 0 END) + last_value AS n FROM users_id_seq"
        ),
        1
    );

    // skip-row: everything else is copied, conversions counted, verification equal
    // on the rows that were not refused.
    let skip = dir.path().join("skip.json");
    let out = repoctl(&[
        "copy",
        "--from",
        &src,
        "--to",
        db.url(),
        "--on-error",
        "skip-row",
        "--truncate",
        "--report",
        skip.to_str().unwrap(),
    ]);
    expect_code(&out, 4);
    let r = report(&skip);
    assert_eq!(r["stopped"], false);
    let tables = r["tables"].as_array().unwrap();
    let users = tables.iter().find(|t| t["table"] == "users").unwrap();
    assert_eq!(users["written"], 4);
    assert_eq!(users["converted_rows"], 3);
    let kinds: Vec<&str> = users["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    for k in [
        "boolean-text",
        "timestamp-no-offset",
        "timestamp-offset",
        "timestamp-format",
    ] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    assert!(verified_equal(&r), "{}", text(&out));
    assert_eq!(
        pg_count(
            db.url(),
            "SELECT count(*) AS n FROM users WHERE id = 2 AND is_active \
                           AND created_at = '2024-01-02T03:04:05Z'"
        ),
        1
    );
    assert_eq!(
        pg_count(
            db.url(),
            "SELECT count(*) AS n FROM users WHERE id = 7 AND created_at = '2024-01-02T03:04:05Z'"
        ),
        1
    );
    assert_eq!(
        pg_count(
            db.url(),
            "SELECT count(*) AS n FROM chunks WHERE id = 3 \
                           AND created_at = '2024-01-02T03:04:05.123Z'"
        ),
        1
    );
    assert_eq!(pg_count(db.url(), "SELECT count(*) AS n FROM chunks"), 2);
    let listed: usize = r["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["table"].as_str().unwrap().to_owned(),
                f["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(listed, DIRTY_REFUSED_ROWS);
    // Standalone verify sees the difference, and says it is the refused rows.
    let vrep = dir.path().join("verify.json");
    let out = repoctl(&[
        "verify",
        "--from",
        &src,
        "--to",
        db.url(),
        "--report",
        vrep.to_str().unwrap(),
    ]);
    expect_code(&out, 5);
    assert!(
        text(&out).contains(&format!(
            "the difference is exactly the {DIRTY_REFUSED_ROWS} source row(s) a copy refuses"
        )) && text(&out).contains("--report file lists each"),
        "{}",
        text(&out)
    );
    let explained: u64 = report(&vrep)["difference_is_refused_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_u64().unwrap())
        .sum();
    assert_eq!(explained as usize, DIRTY_REFUSED_ROWS);
}

#[test]
fn non_empty_target_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    demo(&a, "1", "2");
    let db = pg();
    expect_code(&repoctl(&["copy", "--from", &a, "--to", db.url()]), 0);
    let before = pg_count(db.url(), "SELECT count(*) AS n FROM users");
    // Another source with other data: refused, nothing written.
    let b = path_in(dir.path(), "b.db");
    let out = repoctl(&["demo-data", "--database-url", &b, "--seed", "7"]);
    expect_code(&out, 0);
    let out = repoctl(&["copy", "--from", &b, "--to", db.url()]);
    expect_code(&out, 6);
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert_eq!(
        pg_count(db.url(), "SELECT count(*) AS n FROM users"),
        before
    );
    let out = repoctl(&["copy", "--from", &b, "--to", db.url(), "--dry-run"]);
    expect_code(&out, 6);
    // --truncate replaces the contents.
    expect_code(
        &repoctl(&["copy", "--from", &b, "--to", db.url(), "--truncate"]),
        0,
    );
    expect_code(&repoctl(&["verify", "--from", &b, "--to", db.url()]), 0);
    let out = repoctl(&["verify", "--from", &a, "--to", db.url()]);
    expect_code(&out, 5);
    // A difference that is not the refused rows is not explained away.
    assert!(
        !text(&out).contains("the difference is exactly"),
        "{}",
        text(&out)
    );
}

#[test]
fn killed_copy_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    // Small batches of many chunks: the copy must still be running when the first
    // committed chunk batch is seen, however fast the machine.
    demo(&a, "1", "800");
    let total = sqlite_count(&a, "SELECT count(*) AS n FROM chunks");
    let db = pg();
    // stderr into a file, as `2>&1 | tee copy.log` would: the log of a killed copy
    // shows the header and how far it got.
    let log = dir.path().join("copy.log");
    let mut child = Command::new(BIN)
        .args([
            "copy",
            "--from",
            &a,
            "--to",
            db.url(),
            "--batch-size",
            "10",
            "--progress-every",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed_at = None;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        let n = PgConnection::establish(db.url())
            .ok()
            .and_then(|mut c| {
                diesel::sql_query("SELECT count(*) AS n FROM chunks")
                    .load::<N>(&mut c)
                    .ok()
            })
            .map_or(0, |r| r[0].n);
        if n > 0 {
            child.kill().unwrap();
            killed_at = Some(n);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let killed_at = killed_at.expect("the copy finished before it could be killed");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.starts_with("repoctl copy: "), "{log}");
    // Every table before chunks finished before the first chunk was read.
    for table in [
        "users",
        "api_keys",
        "collections",
        "operations",
        "documents",
    ] {
        assert!(
            log.lines()
                .any(|l| l.starts_with(&format!("{table}: ")) && l.ends_with(", done")),
            "no final line for {table} in\n{log}"
        );
    }
    assert!(
        killed_at < total as i64,
        "killed after {killed_at} of {total}"
    );
    // Without --resume the partial target is refused.
    expect_code(
        &repoctl(&["copy", "--from", &a, "--to", db.url(), "--no-progress"]),
        6,
    );
    let rep = dir.path().join("resume.json");
    let out = repoctl(&[
        "copy",
        "--from",
        &a,
        "--to",
        db.url(),
        "--resume",
        "--report",
        rep.to_str().unwrap(),
    ]);
    expect_code(&out, 0);
    let r = report(&rep);
    let chunks = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "chunks")
        .unwrap()
        .clone();
    assert!(chunks["already_present"].as_u64().unwrap() > 0, "{chunks}");
    assert_eq!(
        chunks["already_present"].as_u64().unwrap() + chunks["written"].as_u64().unwrap(),
        total as u64
    );
    assert_eq!(
        pg_count(db.url(), "SELECT count(*) AS n FROM chunks"),
        total
    );
    assert!(verified_equal(&r));
}

#[test]
fn exit_codes_and_no_password_in_output() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    expect_code(&repoctl(&["copy", "--from", &a]), 2);
    expect_code(
        &repoctl(&["copy", "--from", &a, "--to", "b.db", "--tables", "nope"]),
        2,
    );
    expect_code(
        &repoctl(&["copy", "--from", "mysql://x/y", "--to", "b.db"]),
        3,
    );
    // Missing SQLite source: not created.
    expect_code(
        &repoctl(&["copy", "--from", &a, "--to", &path_in(dir.path(), "b.db")]),
        3,
    );
    assert!(!Path::new(&a).exists());
    let out = repoctl(&[
        "copy",
        "--from",
        "postgres://app:hunter2@127.0.0.1:1/x",
        "--to",
        &path_in(dir.path(), "b.db"),
    ]);
    expect_code(&out, 3);
    assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    expect_code(&repoctl(&["migrate", "up", "--database-url", &a]), 0);
    expect_code(&repoctl(&["copy", "--from", &a, "--to", &a]), 2);
    let out = repoctl(&[
        "verify",
        "--from",
        "postgres://app:hunter2@127.0.0.1:1/x",
        "--to",
        &a,
    ]);
    expect_code(&out, 3);
    assert!(!text(&out).contains("hunter2"), "{}", text(&out));
    // A target at an older schema version than the source.
    let old = path_in(dir.path(), "old.db");
    expect_code(&repoctl(&["migrate", "up", "--database-url", &old]), 0);
    expect_code(&repoctl(&["migrate", "down", "--database-url", &old]), 0);
    expect_code(
        &repoctl(&[
            "copy",
            "--from",
            &old,
            "--to",
            &path_in(dir.path(), "new.db"),
        ]),
        6,
    );
}

#[test]
fn migrate_up_down_status_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    let db = pg();
    for url in [a.as_str(), db.url()] {
        let out = repoctl(&["migrate", "up", "--database-url", url]);
        expect_code(&out, 0);
        assert_eq!(text(&out).matches("applied ").count(), 5, "{}", text(&out));
        let out = repoctl(&["migrate", "down", "--database-url", url]);
        expect_code(&out, 0);
        assert!(
            text(&out).contains("reverted 20261202000010"),
            "{}",
            text(&out)
        );
        let out = repoctl(&["migrate", "status", "--database-url", url]);
        expect_code(&out, 0);
        let t = text(&out);
        assert!(
            t.contains("applied  20261202000004") && t.contains("pending  20261202000010"),
            "{t}"
        );
        expect_code(&repoctl(&["migrate", "up", "--database-url", url]), 0);
        let out = repoctl(&["migrate", "down", "--all", "--database-url", url]);
        expect_code(&out, 0);
        assert_eq!(text(&out).matches("reverted ").count(), 5, "{}", text(&out));
    }
}

#[test]
fn dirty_source_into_a_sqlite_target_converts_and_skips() {
    let dir = tempfile::tempdir().unwrap();
    let src = dirty_sqlite(dir.path());
    let dst = path_in(dir.path(), "clean.db");
    let rep = dir.path().join("r.json");
    let out = repoctl(&[
        "copy",
        "--from",
        &src,
        "--to",
        &dst,
        "--on-error",
        "skip-row",
        "--report",
        rep.to_str().unwrap(),
    ]);
    expect_code(&out, 4);
    let r = report(&rep);
    assert!(verified_equal(&r), "{}", text(&out));
    // Converted values are stored in the canonical form the application writes.
    assert_eq!(
        sqlite_count(&dst, "SELECT count(*) AS n FROM users WHERE id = 2 AND is_active = 1 \
                            AND typeof(is_active) = 'integer' AND created_at = '2024-01-02T03:04:05.000000Z'"),
        1
    );
    assert_eq!(sqlite_count(&dst, "SELECT count(*) AS n FROM chunks"), 2);
    assert_eq!(
        sqlite_count(
            &dst,
            "SELECT count(*) AS n FROM chunks_fts WHERE chunks_fts MATCH 'text'"
        ),
        2
    );
}

/// A SQLite database with one clean row per table (user 1, API key K1, collection C1,
/// grant 1, operation 1, document D1, chunk 1), then `extra` (raw SQL, with foreign
/// keys and CHECK constraints off, as another tool might write it).
fn clean_sqlite_with(dir: &Path, name: &str, extra: &str) -> String {
    let path = path_in(dir, name);
    expect_code(&repoctl(&["migrate", "up", "--database-url", &path]), 0);
    let mut c = SqliteConnection::establish(&path).unwrap();
    let hash = "a".repeat(64);
    let key_hash = "b".repeat(64);
    c.batch_execute(&format!(
        "PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON;
         INSERT INTO users (id, username, email, hashed_password, is_active, is_superuser, \
           created_at, updated_at) VALUES (1, 'u1', 'u1@x.io', '{H}', 1, 0, '{T}', '{T}');
         INSERT INTO api_keys (id, user_id, name, name_folded, key_prefix, key_hash, is_active, \
           created_at) VALUES ('{K1}', 1, 'k1', 'k1', 'smtk_00000001', '{key_hash}', 1, '{T}');
         INSERT INTO collections (id, name, owner_id, vector_store_name, meta, created_at, \
           updated_at) VALUES ('{C1}', 'c1', 1, 'col_{c1}', '{{}}', '{T}', '{T}');
         INSERT INTO collection_permissions (id, collection_id, user_id, permission, created_at) \
           VALUES (1, '{C1}', 1, 'read', '{T}');
         INSERT INTO operations (id, uuid, collection_id, user_id, kind, status, config, meta, \
           created_at) VALUES (1, '30000000-0000-4000-8000-000000000001', '{C1}', 1, 'index', \
           'completed', '{{\"a\": 1}}', '{{}}', '{T}');
         INSERT INTO documents (id, collection_id, file_path, file_name, file_size, content_hash, \
           status, meta, created_at, updated_at) VALUES ('{D1}', '{C1}', '/d/1', '1.txt', 10, \
           '{hash}', 'completed', '{{}}', '{T}', '{T}');
         INSERT INTO chunks (id, collection_id, document_id, chunk_index, content, meta, \
           created_at) VALUES (1, '{C1}', '{D1}', 0, 'chunk one', '{{}}', '{T}');
         {extra}",
        c1 = C1.replace('-', "_"),
    ))
    .unwrap();
    path
}

const K1: &str = "00000000-0000-4000-8000-000000000001";

/// Runs a skip-row copy of `src` into `to` and returns (output text, report).
fn skip_row_copy(dir: &Path, src: &str, to: &str) -> (String, Value) {
    let rep = dir.join(format!("skip-{}.json", rand_suffix()));
    let out = repoctl(&[
        "copy",
        "--from",
        src,
        "--to",
        to,
        "--on-error",
        "skip-row",
        "--truncate",
        "--report",
        rep.to_str().unwrap(),
    ]);
    (text(&out), report(&rep))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn json_with_a_duplicate_key_is_refused_with_table_key_column_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let src = clean_sqlite_with(
        dir.path(),
        "dup.db",
        &format!(
            "UPDATE collections SET meta = '{{\"a\": 1, \"a\": 2}}' WHERE id = '{C1}';
             UPDATE chunks SET meta = '{{\"x\": {{\"k\": 1, \"\\u006b\": 2}}}}' WHERE id = 1;"
        ),
    );
    let db = pg();
    for target in [db.url().to_string(), path_in(dir.path(), "t.db")] {
        let (t, r) = skip_row_copy(dir.path(), &src, &target);
        assert_eq!(r["exit_code"], 4, "{t}");
        for needle in [
            format!("collections id={C1} meta: invalid JSON: duplicate key \"a\""),
            "chunks id=1 meta: invalid JSON: duplicate key \"k\"".to_string(),
        ] {
            assert!(t.contains(&needle), "missing {needle:?} in\n{t}");
        }
        let refusal = r["refusals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["table"] == "collections")
            .unwrap()
            .clone();
        assert_eq!(refusal["key"], C1);
        assert_eq!(refusal["column"], "meta");
        assert!(refusal["reason"]
            .as_str()
            .unwrap()
            .contains("no single meaning"));
    }
}

#[test]
fn rows_breaking_a_domain_rule_are_refused_with_table_key_column_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let upper = "A".repeat(64);
    let src = clean_sqlite_with(
        dir.path(),
        "domain.db",
        &format!(
            "INSERT INTO users (id, username, email, hashed_password, is_active, is_superuser, \
               created_at, updated_at) VALUES (2, 'u2', 'U1@x.io', '{H}', 1, 0, '{T}', '{T}'), \
               (3, 'u3', 'u3@x.io', 'plaintext password', 1, 0, '{T}', '{T}');
             INSERT INTO api_keys (id, user_id, name, name_folded, key_prefix, key_hash, \
               is_active, created_at) VALUES ('{K2}', 1, 'Key', 'Key', 'smtk_00000002', \
               '{}', 1, '{T}');
             INSERT INTO collections (id, name, owner_id, vector_store_name, meta, created_at, \
               updated_at) VALUES ('{C3}', 'c3', 1, 'col_other', '{{}}', '{T}', '{T}');
             INSERT INTO operations (id, uuid, collection_id, user_id, kind, status, config, \
               meta, created_at) VALUES (2, '30000000-0000-4000-8000-000000000002', '{C1}', 1, \
               'index', 'failed', '{{}}', '{{}}', '{T}');
             INSERT INTO documents (id, collection_id, file_path, file_name, file_size, \
               content_hash, status, meta, created_at, updated_at) VALUES \
               ('{D2}', '{C1}', '/d/2', '2.txt', 10, '{upper}', 'completed', '{{}}', '{T}', '{T}'), \
               ('{D3}', '{C1}', '/d/3', '3.txt', 10, '{}', 'completed', '[1]', '{T}', '{T}');
             INSERT INTO chunks (id, collection_id, document_id, chunk_index, content, \
               start_offset, end_offset, meta, created_at) VALUES \
               (2, '{C1}', '{D1}', 1, 'two', 10, 5, '{{}}', '{T}');",
            "c".repeat(64),
            "d".repeat(64),
        ),
    );
    let db = pg();
    let expected = [
        (
            "users",
            "2",
            "email",
            "is not in its stored form \"u1@x.io\"",
        ),
        ("users", "3", "hashed_password", "plaintext is refused"),
        (
            "api_keys",
            K2,
            "name_folded",
            "is not in its stored form \"key\"",
        ),
        (
            "collections",
            C3,
            "vector_store_name",
            "derived from the collection id",
        ),
        ("operations", "2", "config", "must not be an empty object"),
        ("documents", D2, "content_hash", "64 lowercase hexadecimal"),
        ("documents", D3, "meta", "must be a JSON object"),
        (
            "chunks",
            "2",
            "end_offset",
            "must not be before start_offset",
        ),
    ];
    for target in [db.url().to_string(), path_in(dir.path(), "t.db")] {
        let (t, r) = skip_row_copy(dir.path(), &src, &target);
        assert_eq!(r["exit_code"], 4, "{t}");
        let refusals = r["refusals"].as_array().unwrap();
        assert_eq!(refusals.len(), expected.len(), "{t}");
        for (table, key, column, reason) in expected {
            assert!(
                refusals.iter().any(|f| f["table"] == table
                    && f["key"] == key
                    && f["column"] == column
                    && f["reason"].as_str().unwrap().contains(reason)),
                "no refusal {table} {key} {column} {reason:?} in\n{t}"
            );
        }
        // The clean rows are copied and verify equal.
        assert!(verified_equal(&r), "{t}");
    }
}

const K2: &str = "00000000-0000-4000-8000-000000000002";
const D3: &str = "20000000-0000-4000-8000-000000000003";

#[test]
fn piped_stderr_gets_the_header_first_and_a_plain_line_per_table_also_while_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    demo(&a, "1", "3");
    let db = pg();
    let out = repoctl(&["copy", "--from", &a, "--to", db.url()]);
    expect_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("repoctl copy: ") && first.contains(" → postgres://"),
        "{err}"
    );
    let tables = [
        "users",
        "api_keys",
        "collections",
        "collection_permissions",
        "operations",
        "documents",
        "chunks",
    ];
    // Takes the stderr to search: a closure over `err` would keep searching the copy's
    // after `err` is rebound to verify's.
    let done = |err: &str, label: String| {
        err.lines().any(|l| {
            l.starts_with(&format!("{label}: ")) && l.contains(" rows/s") && l.ends_with(", done")
        })
    };
    for t in tables {
        let n = sqlite_count(&a, &format!("SELECT count(*) AS n FROM {t}"));
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{t}: {n}/{n} rows, "))),
            "no line for {t} in\n{err}"
        );
        for side in ["source", "target"] {
            assert!(
                done(&err, format!("verify {t} ({side})")),
                "{side} {t} in\n{err}"
            );
        }
    }
    // `verify` alone likewise; --no-progress turns it off.
    let out = repoctl(&["verify", "--from", &a, "--to", db.url()]);
    expect_code(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("repoctl verify: "), "{err}");
    assert!(done(&err, "verify chunks (source)".into()), "{err}");
    assert!(done(&err, "verify chunks (target)".into()), "{err}");
    let out = repoctl(&["verify", "--from", &a, "--to", db.url(), "--no-progress"]);
    expect_code(&out, 0);
    assert!(out.stderr.is_empty(), "{}", text(&out));
}

#[test]
fn the_report_lists_every_converted_value_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<String> = (2..=6)
        .map(|id| {
            format!(
                "INSERT INTO users (id, username, email, hashed_password, is_active, \
                 is_superuser, created_at, updated_at) VALUES ({id}, 'u{id}', 'u{id}@x.io', \
                 '{H}', 1, 0, '2024-01-02 03:04:0{id}', '{T}');"
            )
        })
        .collect();
    let src = clean_sqlite_with(dir.path(), "conv.db", &users.join("\n"));
    let (t, r) = skip_row_copy(dir.path(), &src, &path_in(dir.path(), "t.db"));
    assert_eq!(r["exit_code"], 0, "{t}");
    let users = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "users")
        .unwrap()
        .clone();
    let conv = &users["conversions"][0];
    assert_eq!(conv["column"], "created_at");
    assert_eq!(conv["count"], 5);
    let keys: Vec<&str> = conv["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["2", "3", "4", "5", "6"]);
    assert_eq!(conv["values"][4]["from"], "2024-01-02 03:04:06");
    assert_eq!(conv["values"][4]["to"], "2024-01-02T03:04:06.000000Z");
}

/// One value changed on the target, counts equal: `verify` exits 5 naming that table
/// only, and 0 once the value is put back.
fn one_changed_value_is_a_mismatch(
    dir: &Path,
    from: &str,
    to: &str,
    exec: &dyn Fn(&str),
    cases: &[(&str, &str, &str, &str)],
) {
    let rep = dir.join("one-value.json");
    let verify = || {
        let out = repoctl(&[
            "verify",
            "--from",
            from,
            "--to",
            to,
            "--report",
            rep.to_str().unwrap(),
        ]);
        (out, report(&rep))
    };
    let (out, _) = verify();
    expect_code(&out, 0);
    for (what, table, change, undo) in cases {
        exec(change);
        let (out, r) = verify();
        assert_eq!(code(&out), 5, "{what}: {}", text(&out));
        for v in r["verification"].as_array().unwrap() {
            assert_eq!(v["source_rows"], v["target_rows"], "{what}: {v}");
            assert_eq!(v["equal"], v["table"] != *table, "{what}: {v}");
        }
        exec(undo);
        let (out, _) = verify();
        assert_eq!(code(&out), 0, "{what} undone: {}", text(&out));
    }
}

#[test]
fn verify_finds_one_changed_value_with_equal_counts_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let a = path_in(dir.path(), "a.db");
    let b = path_in(dir.path(), "b.db");
    demo(&a, "1", "2");
    let db = pg();
    expect_code(&repoctl(&["copy", "--from", &a, "--to", db.url()]), 0);
    expect_code(&repoctl(&["copy", "--from", db.url(), "--to", &b]), 0);

    // SQLite → PostgreSQL: change the PostgreSQL side.
    let url = db.url().to_string();
    let pg_exec = move |sql: &str| {
        let mut c = PgConnection::establish(&url).unwrap();
        c.batch_execute(sql).unwrap();
    };
    let first_user = "id = (SELECT min(id) FROM users)";
    one_changed_value_is_a_mismatch(
        dir.path(),
        &a,
        db.url(),
        &pg_exec,
        &[
            (
                "text",
                "chunks",
                "UPDATE chunks SET content = content || 'x' WHERE id = (SELECT min(id) FROM chunks)",
                "UPDATE chunks SET content = left(content, -1) WHERE id = (SELECT min(id) FROM chunks)",
            ),
            (
                "timestamp by 1 µs",
                "users",
                &format!("UPDATE users SET created_at = created_at + interval '1 microsecond' WHERE {first_user}"),
                &format!("UPDATE users SET created_at = created_at - interval '1 microsecond' WHERE {first_user}"),
            ),
            (
                "JSON value",
                "collections",
                "UPDATE collections SET meta = jsonb_set(meta, '{repoctl}', '1') \
                 WHERE name = (SELECT min(name) FROM collections)",
                "UPDATE collections SET meta = meta - 'repoctl' \
                 WHERE name = (SELECT min(name) FROM collections)",
            ),
            (
                "boolean",
                "users",
                &format!("UPDATE users SET is_superuser = NOT is_superuser WHERE {first_user}"),
                &format!("UPDATE users SET is_superuser = NOT is_superuser WHERE {first_user}"),
            ),
        ],
    );

    // PostgreSQL → SQLite: change the SQLite side.
    let path = b.clone();
    let sqlite_exec = move |sql: &str| {
        let mut c = SqliteConnection::establish(&path).unwrap();
        c.batch_execute(sql).unwrap();
    };
    // A user whose timestamp's last digit can go up by one (1 µs).
    let user = sqlite_count(
        &b,
        "SELECT min(id) AS n FROM users WHERE substr(created_at, 26, 1) < '9'",
    );
    let shift = |delta: i32| {
        format!(
            "UPDATE users SET created_at = substr(created_at, 1, 25) \
             || char(unicode(substr(created_at, 26, 1)) + ({delta})) || 'Z' WHERE id = {user}"
        )
    };
    one_changed_value_is_a_mismatch(
        dir.path(),
        db.url(),
        &b,
        &sqlite_exec,
        &[
            (
                "text",
                "chunks",
                "UPDATE chunks SET content = content || 'x' WHERE id = (SELECT min(id) FROM chunks)",
                "UPDATE chunks SET content = substr(content, 1, length(content) - 1) \
                 WHERE id = (SELECT min(id) FROM chunks)",
            ),
            ("timestamp by 1 µs", "users", &shift(1), &shift(-1)),
            (
                "JSON value",
                "collections",
                "UPDATE collections SET meta = json_set(meta, '$.repoctl', 1) \
                 WHERE name = (SELECT min(name) FROM collections)",
                "UPDATE collections SET meta = json_remove(meta, '$.repoctl') \
                 WHERE name = (SELECT min(name) FROM collections)",
            ),
            (
                "boolean",
                "users",
                &format!("UPDATE users SET is_superuser = 1 - is_superuser WHERE id = {user}"),
                &format!("UPDATE users SET is_superuser = 1 - is_superuser WHERE id = {user}"),
            ),
        ],
    );
}

#[test]
fn an_empty_string_in_every_nullable_timestamp_column_is_refused_not_made_null() {
    use repoctl::schema::{ColumnType, Table};
    // Every nullable timestamp column of the schema (and at least those docs/domain.md names).
    let columns: Vec<(Table, &str)> = Table::ALL
        .iter()
        .flat_map(|&t| {
            t.spec()
                .columns
                .iter()
                .filter(|c| c.nullable && c.ty == ColumnType::Timestamp)
                .map(move |c| (t, c.name))
        })
        .collect();
    for named in [
        "users.last_login",
        "api_keys.expires_at",
        "api_keys.last_used_at",
        "collections.sync_paused_at",
        "collections.sync_next_run_at",
        "collections.sync_last_run_started_at",
        "collections.sync_last_run_completed_at",
        "operations.started_at",
        "operations.completed_at",
        "documents.last_seen_at",
    ] {
        assert!(
            columns
                .iter()
                .any(|(t, c)| format!("{}.{c}", t.name()) == named),
            "{named} is not a nullable timestamp column of {columns:?}"
        );
    }
    // The clean row of each table gets '' in every one of its nullable timestamps.
    let updates: Vec<String> = columns
        .iter()
        .map(|(t, c)| format!("UPDATE {} SET {c} = '';", t.name()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let src = clean_sqlite_with(dir.path(), "empty-ts.db", &updates.join("\n"));
    let db = pg();
    for target in [db.url().to_string(), path_in(dir.path(), "t.db")] {
        let (t, r) = skip_row_copy(dir.path(), &src, &target);
        assert_eq!(r["exit_code"], 4, "{t}");
        let refusals = r["refusals"].as_array().unwrap();
        for (table, column) in &columns {
            assert!(
                refusals.iter().any(|f| f["table"] == table.name()
                    && f["column"] == *column
                    && f["reason"] == "empty string in a timestamp column"),
                "{}.{column} not refused in\n{t}",
                table.name()
            );
            let written = r["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["table"] == table.name())
                .unwrap()["written"]
                .clone();
            assert_eq!(written, 0, "{}: the row was not written\n{t}", table.name());
        }
    }
}
