//! `repoctl backup` / `repoctl restore` end to end on both backends: round trips that
//! verify, refusals with the documented exit codes, and backups taken while a writer
//! keeps committing through the store (the restored copy must be one consistent
//! snapshot: a prefix of the writer's commits, with the collection's counter equal to
//! its documents).

use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, SqliteConnection};
use repo_core::{CollectionStats, NewCollection, NewDocument, NewUser, StoreConfig};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::{expect_code, path_in, pg, repoctl, text, BIN};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

fn demo(url: &str) {
    support::demo(url, "1", "3");
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Path_ {
    #[diesel(sql_type = Text)]
    file_path: String,
}

/// Runs `sql` on either backend.
enum Db {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl Db {
    fn open(url: &str) -> Db {
        if url.starts_with("postgres") {
            Db::Pg(PgConnection::establish(url).expect("connect"))
        } else {
            Db::Sqlite(SqliteConnection::establish(url).expect("open"))
        }
    }

    fn count(&mut self, sql: &str) -> i64 {
        let q = diesel::sql_query(sql);
        let rows = match self {
            Db::Sqlite(c) => q.load::<N>(c),
            Db::Pg(c) => q.load::<N>(c),
        };
        rows.expect("query")[0].n
    }

    fn paths(&mut self) -> Vec<String> {
        let q = diesel::sql_query("SELECT file_path FROM documents ORDER BY file_path");
        let rows = match self {
            Db::Sqlite(c) => q.load::<Path_>(c),
            Db::Pg(c) => q.load::<Path_>(c),
        };
        rows.expect("query")
            .into_iter()
            .map(|r| r.file_path)
            .collect()
    }
}

/// Backup with `--verify`, restore into `restored`, `repoctl verify` equal; restoring
/// again into the now non-empty target is exit 6; `--out` that exists is exit 6.
fn round_trip(source: &str, restored: &str, dir: &Path, file: &str) {
    demo(source);
    let out = path_in(dir, file);
    let run = repoctl(&[
        "backup",
        "--database-url",
        source,
        "--out",
        &out,
        "--verify",
    ]);
    expect_code(&run, 0);
    assert!(text(&run).contains("equal"), "{}", text(&run));
    assert!(std::fs::metadata(&out).expect("backup file").len() > 0);
    expect_code(
        &repoctl(&["backup", "--database-url", source, "--out", &out]),
        6,
    );
    expect_code(
        &repoctl(&["restore", "--from", &out, "--database-url", restored]),
        0,
    );
    expect_code(&repoctl(&["verify", "--from", source, "--to", restored]), 0);
    assert!(Db::open(restored).count("SELECT count(*) AS n FROM chunks") > 0);
    expect_code(
        &repoctl(&["restore", "--from", &out, "--database-url", restored]),
        6,
    );
    // No partial files are left next to the backup.
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains(".partial-") && !n.contains("repoctl-verify")),
        "{names:?}"
    );
}

#[test]
fn sqlite_backup_verifies_and_restores_into_a_new_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let source = path_in(dir.path(), "source.sqlite3");
    let restored = path_in(dir.path(), "restored.sqlite3");
    round_trip(&source, &restored, dir.path(), "backup.sqlite3");
}

#[test]
fn postgres_backup_verifies_and_restores_into_an_empty_database_only() {
    let dir = tempfile::tempdir().unwrap();
    let (source, restored) = (pg(), pg());
    round_trip(source.url(), restored.url(), dir.path(), "backup.dump");
}

#[test]
fn a_backup_restores_only_into_its_own_backend_and_garbage_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = path_in(dir.path(), "s.sqlite3");
    demo(&source);
    let out = path_in(dir.path(), "b.sqlite3");
    expect_code(
        &repoctl(&["backup", "--database-url", &source, "--out", &out]),
        0,
    );
    let db = pg();
    let wrong = repoctl(&["restore", "--from", &out, "--database-url", db.url()]);
    expect_code(&wrong, 2);
    assert!(text(&wrong).contains("SQLite backup"), "{}", text(&wrong));
    let junk = path_in(dir.path(), "junk");
    std::fs::write(&junk, b"not a backup").unwrap();
    let target = path_in(dir.path(), "t.sqlite3");
    expect_code(
        &repoctl(&["restore", "--from", &junk, "--database-url", &target]),
        2,
    );
    assert!(!Path::new(&target).exists());
    // A missing source is a connection error.
    let missing = path_in(dir.path(), "missing.sqlite3");
    expect_code(
        &repoctl(&[
            "backup",
            "--database-url",
            &missing,
            "--out",
            &path_in(dir.path(), "m.bak"),
        ]),
        3,
    );
}

#[test]
fn missing_client_tools_name_the_package_and_no_password_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let db = pg();
    expect_code(&repoctl(&["migrate", "up", "--database-url", db.url()]), 0);
    // The local server trusts the connection, so the password is never checked; it
    // must still appear nowhere in the output.
    let with_password = db.url().replacen("postgres@", "postgres:s3cr3t-pw@", 1);
    assert_ne!(
        with_password,
        db.url(),
        "TEST_DATABASE_URL names user postgres"
    );
    let out = path_in(dir.path(), "b.dump");
    let empty_path = tempfile::tempdir().unwrap();
    let run = Command::new(BIN)
        .args(["backup", "--database-url", &with_password, "--out", &out])
        .env("PATH", empty_path.path())
        .output()
        .unwrap();
    expect_code(&run, 3);
    assert!(text(&run).contains("postgresql-client"), "{}", text(&run));
    assert!(!text(&run).contains("s3cr3t"), "{}", text(&run));
    assert!(!Path::new(&out).exists());
    // With the tools, the password reaches pg_dump outside its command line and the
    // backup works.
    let run = repoctl(&[
        "backup",
        "--database-url",
        &with_password,
        "--out",
        &out,
        "--verify",
    ]);
    expect_code(&run, 0);
    assert!(!text(&run).contains("s3cr3t"), "{}", text(&run));
}

/// One writer thread: each unit of work registers document `/w/NNNNNN` and raises the
/// collection's `document_count` by one, so a consistent snapshot has exactly the
/// documents `/w/000000 ..` up to its count, and the counter equal to that count.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(url: &str) -> Writer {
        let store = repo_factory::open(url, &StoreConfig::default()).expect("open store");
        let user = store
            .users()
            .create(&NewUser::new("writer", "writer@example.com", HASH))
            .expect("user");
        let col = store
            .collections()
            .create(&NewCollection::new("Written while backing up", user.id))
            .expect("collection");
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w) = (stop.clone(), written.clone());
        let handle = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                store
                    .transaction(|tx| {
                        let c = tx.lock_collection(col.id)?;
                        tx.documents().register(&NewDocument::new(
                            col.id,
                            format!("/w/{n:06}"),
                            format!("{n:06}.txt"),
                            10,
                            format!("{n:064x}"),
                        ))?;
                        tx.collections().update_stats(
                            col.id,
                            CollectionStats {
                                document_count: c.document_count + 1,
                                vector_count: c.vector_count,
                                total_size_bytes: c.total_size_bytes + 10,
                            },
                        )?;
                        Ok(())
                    })
                    .expect("write");
                n += 1;
                w.store(n, Ordering::SeqCst);
            }
        });
        Writer {
            stop,
            written,
            handle,
        }
    }

    fn wait_for(&self, at_least: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.written.load(Ordering::SeqCst) < at_least {
            assert!(Instant::now() < deadline, "the writer is stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("writer panicked");
        self.written.load(Ordering::SeqCst)
    }
}

/// The restored database is one snapshot of the writer's history.
fn assert_consistent_prefix(restored: &str, source: &str, total: u64) {
    let mut db = Db::open(restored);
    let paths = db.paths();
    let k = paths.len();
    assert!(k > 0, "the backup was taken after the first writes");
    assert!(
        (k as u64) < total,
        "the writer kept writing after the backup ({k} of {total})"
    );
    let expected: Vec<String> = (0..k).map(|n| format!("/w/{n:06}")).collect();
    assert_eq!(paths, expected, "not a prefix of the writer's commits");
    assert_eq!(
        db.count("SELECT document_count AS n FROM collections"),
        k as i64,
        "the collection's counter does not match its documents: a torn copy"
    );
    assert_eq!(
        Db::open(source).count("SELECT count(*) AS n FROM documents"),
        total as i64
    );
}

fn backups_while_writing(source: &str, restored: &str, dir: &Path, ext: &str) {
    let writer = Writer::start(source);
    writer.wait_for(20);
    // --verify compares with the source as of the backup, not as it is now.
    let verified = repoctl(&[
        "backup",
        "--database-url",
        source,
        "--out",
        &path_in(dir, &format!("verified.{ext}")),
        "--verify",
    ]);
    expect_code(&verified, 0);
    let out = path_in(dir, &format!("plain.{ext}"));
    expect_code(
        &repoctl(&["backup", "--database-url", source, "--out", &out]),
        0,
    );
    let after = writer.written.load(Ordering::SeqCst);
    writer.wait_for(after + 20);
    let total = writer.finish();
    expect_code(
        &repoctl(&["restore", "--from", &out, "--database-url", restored]),
        0,
    );
    assert_consistent_prefix(restored, source, total);
}

#[test]
fn sqlite_backup_while_a_writer_commits_restores_one_consistent_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let source = path_in(dir.path(), "live.sqlite3");
    let restored = path_in(dir.path(), "restored.sqlite3");
    backups_while_writing(&source, &restored, dir.path(), "sqlite3");
}

#[test]
fn postgres_backup_while_a_writer_commits_restores_one_consistent_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (source, restored) = (pg(), pg());
    backups_while_writing(source.url(), restored.url(), dir.path(), "dump");
}
