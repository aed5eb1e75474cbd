//! Point-in-time recovery, as docs/backup.md describes it, on a throwaway cluster:
//! WAL archiving on, a base backup (`pg_basebackup`), writes, the time noted, more
//! writes; then the base backup is started in a new data directory with
//! `restore_command`, `recovery_target_time` and `recovery.signal`, and exactly the
//! writes up to the noted time must be there.
//!
//! Needs the PostgreSQL server binaries: `TEST_PG_BINDIR` (set by scripts/test.sh; for
//! a manual run e.g. `/usr/lib/postgresql/15/bin`), and when the test runs as root,
//! `TEST_CLUSTER_USER` (the user the server runs as, e.g. `postgres`). Without them
//! the test fails: it never skips.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{Bool, Integer, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How to run the server binaries.
struct Tools {
    bindir: PathBuf,
    /// `Some(user)` when running as root: every binary runs through `runuser`.
    run_as: Option<String>,
}

impl Tools {
    fn from_env() -> Tools {
        let bindir = std::env::var("TEST_PG_BINDIR").unwrap_or_default();
        assert!(
            !bindir.trim().is_empty(),
            "TEST_PG_BINDIR is not set: it must name the PostgreSQL server binaries \
             (scripts/test.sh sets it; e.g. /usr/lib/postgresql/15/bin)"
        );
        let bindir = PathBuf::from(bindir.trim());
        assert!(
            bindir.join("initdb").exists() && bindir.join("pg_basebackup").exists(),
            "TEST_PG_BINDIR={} has no initdb/pg_basebackup",
            bindir.display()
        );
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let run_as = if root {
            let user = std::env::var("TEST_CLUSTER_USER").unwrap_or_default();
            assert!(
                !user.trim().is_empty(),
                "running as root and TEST_CLUSTER_USER is not set: PostgreSQL refuses to \
                 run as root; set it to the user to run the cluster as (e.g. postgres)"
            );
            Some(user.trim().to_owned())
        } else {
            None
        };
        Tools { bindir, run_as }
    }

    /// Runs `tool` from the bin directory (as the cluster user), in `cwd`; panics with
    /// its output when it fails.
    fn run(&self, cwd: &Path, tool: &str, args: &[&str]) -> Output {
        let out = self.try_run(cwd, tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `tool` from the bin directory (as the cluster user), in `cwd`.
    fn try_run(&self, cwd: &Path, tool: &str, args: &[&str]) -> Output {
        let program = self.bindir.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("PGDATA")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// Gives `path` (recursively) to the cluster user.
    fn own(&self, path: &Path) {
        if let Some(user) = &self.run_as {
            let st = Command::new("chown")
                .args(["-R", user])
                .arg(path)
                .status()
                .expect("chown");
            assert!(st.success(), "chown -R {user} {}", path.display());
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .unwrap()
        .port()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap();
}

/// A running server on a data directory; stopped (`-m immediate`) on drop, also when
/// the test panics.
struct Server<'a> {
    tools: &'a Tools,
    data: PathBuf,
    port: u16,
}

impl<'a> Server<'a> {
    fn start(tools: &'a Tools, data: &Path, port: u16) -> Server<'a> {
        let log = data.with_extension("log");
        let server = Server {
            tools,
            data: data.to_owned(),
            port,
        };
        let cwd = data.parent().unwrap();
        let out = tools.try_run(
            cwd,
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start of {} failed: {}\nserver log:\n{}",
            data.display(),
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        server
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn connect(&self) -> PgConnection {
        PgConnection::establish(&self.url()).expect("connect to the test cluster")
    }

    fn stop(self) {
        // Drop stops it.
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        let mut cmd = match &self.tools.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"])
                    .arg(self.tools.bindir.join("pg_ctl"));
                c
            }
            None => Command::new(self.tools.bindir.join("pg_ctl")),
        };
        let _ = cmd
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .current_dir(self.data.parent().unwrap())
            .output();
    }
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(QueryableByName)]
struct IntRow {
    #[diesel(sql_type = Integer)]
    v: i32,
}

#[derive(QueryableByName)]
struct BoolRow {
    #[diesel(sql_type = Bool)]
    v: bool,
}

fn text(conn: &mut PgConnection, sql: &str) -> String {
    diesel::sql_query(sql).load::<TextRow>(conn).expect(sql)[0]
        .v
        .clone()
}

fn ids(conn: &mut PgConnection) -> Vec<i32> {
    diesel::sql_query("SELECT id AS v FROM pitr ORDER BY id")
        .load::<IntRow>(conn)
        .expect("read pitr")
        .into_iter()
        .map(|r| r.v)
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn point_in_time_recovery_restores_exactly_the_writes_before_the_target_time() {
    let tools = Tools::from_env();
    let base = tempfile::Builder::new()
        .prefix("pitr-")
        .tempdir()
        .expect("temp dir");
    let root = base.path();
    let archive = root.join("archive");
    std::fs::create_dir(&archive).unwrap();
    tools.own(root);

    // The primary: WAL archiving into `archive`.
    let primary_dir = root.join("primary");
    tools.run(
        root,
        "initdb",
        &[
            "-D",
            primary_dir.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    );
    let port = free_port();
    let arch = archive.to_str().unwrap();
    append(
        &primary_dir.join("postgresql.conf"),
        &format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = replica\narchive_mode = on\n\
             archive_command = 'test ! -f {arch}/%f && cp %p {arch}/%f'\n\
             max_wal_senders = 4\nfsync = off\n",
            root.display()
        ),
    );
    let primary = Server::start(&tools, &primary_dir, port);
    let mut conn = primary.connect();
    conn.batch_execute(
        "CREATE TABLE pitr (id integer PRIMARY KEY, phase text NOT NULL); \
         INSERT INTO pitr SELECT g, 'before the base backup' FROM generate_series(1, 3) g",
    )
    .unwrap();

    // The base backup.
    let restored_dir = root.join("restored");
    tools.run(
        root,
        "pg_basebackup",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-D",
            restored_dir.to_str().unwrap(),
            "--checkpoint=fast",
            "--no-sync",
        ],
    );

    // Writes to keep, the time, writes to lose.
    conn.batch_execute("INSERT INTO pitr SELECT g, 'first' FROM generate_series(4, 6) g")
        .unwrap();
    let target = text(&mut conn, "SELECT clock_timestamp()::text AS v");
    // Commit timestamps have microseconds: make sure the next commit is later.
    std::thread::sleep(Duration::from_millis(50));
    conn.batch_execute("INSERT INTO pitr SELECT g, 'second' FROM generate_series(7, 9) g")
        .unwrap();
    assert_eq!(ids(&mut conn), (1..=9).collect::<Vec<_>>());
    // Close the WAL segment that holds both and wait until the archiver reports it
    // done (the file appears in the archive before `cp` has finished writing it).
    let segment = text(&mut conn, "SELECT pg_walfile_name(pg_switch_wal()) AS v");
    wait_until("the WAL segment to be archived", || {
        let done = text(
            &mut conn,
            "SELECT coalesce(last_archived_wal, '') AS v FROM pg_stat_archiver",
        );
        // Segment names of one timeline sort in WAL order.
        done.len() == segment.len() && done >= segment
    });
    drop(conn);
    primary.stop();

    // Recovery to the noted time in the base backup's directory.
    let port2 = free_port();
    append(
        &restored_dir.join("postgresql.conf"),
        &format!(
            "\nport = {port2}\narchive_mode = off\n\
             restore_command = 'cp {arch}/%f %p'\n\
             recovery_target_time = '{target}'\nrecovery_target_action = 'promote'\n"
        ),
    );
    std::fs::write(restored_dir.join("recovery.signal"), b"").unwrap();
    tools.own(&restored_dir);
    let restored = Server::start(&tools, &restored_dir, port2);
    wait_until("recovery to end (promotion)", || {
        PgConnection::establish(&restored.url())
            .ok()
            .and_then(|mut c| {
                diesel::sql_query("SELECT NOT pg_is_in_recovery() AS v")
                    .load::<BoolRow>(&mut c)
                    .ok()
            })
            .is_some_and(|r| r[0].v)
    });
    let mut conn = restored.connect();
    assert_eq!(
        ids(&mut conn),
        (1..=6).collect::<Vec<_>>(),
        "recovery to {target} must keep the writes before it and none after"
    );
    let log = std::fs::read_to_string(restored_dir.with_extension("log")).unwrap_or_default();
    assert!(
        log.contains("recovery stopping before commit"),
        "recovery stopped at the target, not at the end of the WAL:\n{log}"
    );
}
