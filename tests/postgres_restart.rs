//! A PostgreSQL restart in the middle of a multi-threaded workload (issue #5, item 3).
//!
//! The test starts its own throwaway server (initdb + pg_ctl in a temporary directory
//! on a free port, as a non-root user when run as root, like `scripts/lib/postgres.sh`),
//! so stopping it disturbs no one. Writers keep creating users and units of work
//! (a user with a collection) while the server is stopped with `pg_ctl stop -m fast`
//! and started again. Checked: calls during the outage fail with `Unavailable`; the
//! same store (not reopened) serves again within seconds; every write acknowledged as
//! committed is present afterwards, and no unit of work is half there.
//!
//! Without initdb/pg_ctl the test fails and says why: PostgreSQL is never skipped.

use repo_core::{
    NewCollection, NewUser, PageRequest, PoolConfig, PostgresConfig, RepoError, Store, StoreConfig,
    UserFilter,
};
use repo_postgres::PostgresStore;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
/// Longest any phase may take before the test fails instead of hanging.
const PHASE_DEADLINE: Duration = Duration::from_secs(60);
/// How soon after the restart every writer must have a write acknowledged again.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);
const WRITERS: usize = 4;

/// The newest installed PostgreSQL `bin` directory holding initdb and pg_ctl.
fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the PostgreSQL restart test needs initdb and pg_ctl under \
             /usr/lib/postgresql/*/bin (apt-get install postgresql); none found"
        ),
    }
}

fn run(command: &mut Command, what: &str) -> Output {
    match command.output() {
        Ok(out) if out.status.success() => out,
        Ok(out) => panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("{what}: could not run: {e}"),
    }
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"), "id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A throwaway cluster, stopped (immediately) and deleted on drop.
struct Cluster {
    bin: PathBuf,
    /// The user the server runs as when we are root (initdb refuses root).
    user: Option<String>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = postgres_bin_dir();
        let user = is_root().then(|| {
            let exists = |name: &str| {
                Command::new("id")
                    .arg(name)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if !exists("postgres") && !exists("pgtest") {
                run(
                    Command::new("useradd").args([
                        "--system",
                        "--no-create-home",
                        "--shell",
                        "/usr/sbin/nologin",
                        "pgtest",
                    ]),
                    "creating a non-root user for initdb",
                );
            }
            if exists("postgres") {
                "postgres"
            } else {
                "pgtest"
            }
            .to_owned()
        });
        // Named and marked like the clusters of scripts/lib/postgres.sh, whose
        // `reap_stale_clusters` then stops this one too if the test is killed
        // before its Drop runs.
        let dir = tempfile::Builder::new()
            .prefix("smtk-pgtest.")
            .tempdir()
            .unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        let marks = std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())
            .and_then(|()| {
                std::fs::write(
                    dir.path().join("pg_ctl"),
                    bin.join("pg_ctl").to_string_lossy().as_bytes(),
                )
            });
        marks.unwrap_or_else(|e| panic!("marking the cluster directory: {e}"));
        if let Some(user) = &user {
            run(
                Command::new("chown").arg(user).arg(dir.path()),
                "handing the cluster directory to the server user",
            );
        }
        // Ask the kernel for a free port; the tiny window before the server binds it
        // is acceptable for a test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let cluster = Cluster {
            bin,
            user,
            dir,
            port,
        };
        let data = cluster.data();
        run(
            cluster
                .command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
                .args(["--locale=C.UTF-8", "--no-sync"]),
            "initdb",
        );
        cluster.pg_ctl_start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `program` from the PostgreSQL bin directory, as the server user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn pg_ctl_start(&self) {
        // fsync off keeps the test fast; synchronous_commit stays on, so an
        // acknowledged commit is in the WAL the restarted server replays.
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        run(
            self.command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start",
        );
    }

    fn pg_ctl_stop(&self, mode: &str) -> std::io::Result<Output> {
        self.command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "-t", "60", "stop"])
            .output()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self.pg_ctl_stop("immediate");
        }
    }
}

/// What one writer saw.
#[derive(Default)]
struct WriterLog {
    /// Names whose write returned `Ok`, with the time it did.
    acknowledged: Vec<(String, Instant)>,
    /// Every name tried (its outcome may be unknown when the connection broke).
    attempted: Vec<String>,
    /// Errors other than `Unavailable`.
    unexpected: Vec<String>,
    /// `Unavailable` errors seen.
    unavailable: usize,
}

/// Odd rounds are units of work (a user and a collection it owns), even rounds a
/// single user: both kinds of write must survive the restart.
fn write(store: &dyn Store, name: &str, unit_of_work: bool) -> Result<(), RepoError> {
    let new = NewUser::new(name, format!("{name}@example.com"), HASH);
    if unit_of_work {
        store.transaction(|tx| {
            let u = tx.users().create(&new)?;
            tx.collections()
                .create(&NewCollection::new(format!("c-{name}"), u.id))
                .map(|_| ())
        })
    } else {
        store.users().create(&new).map(|_| ())
    }
}

fn writer(store: Arc<dyn Store>, w: usize, stop: Arc<AtomicBool>, log: Arc<Mutex<WriterLog>>) {
    let mut round = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("w{w}n{round}");
        let outcome = write(&*store, &name, round % 2 == 1);
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        log.attempted.push(name.clone());
        match outcome {
            Ok(()) => log.acknowledged.push((name, Instant::now())),
            Err(RepoError::Unavailable { .. }) => log.unavailable += 1,
            Err(e) => log.unexpected.push(format!("{name}: {e:?}")),
        }
        drop(log);
        round += 1;
        // A short pause keeps the outage from becoming a busy loop.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `done` holds, failing with `what` after [`PHASE_DEADLINE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PHASE_DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn postgres_restart_mid_workload_loses_no_acknowledged_write() {
    let cluster = Cluster::start();
    let config = StoreConfig {
        pool: PoolConfig {
            pool_size: 2,
            max_overflow: 2,
            connection_timeout: Duration::from_secs(1),
            ..PoolConfig::default()
        },
        postgres: PostgresConfig {
            statement_timeout: Duration::from_secs(10),
            ..PostgresConfig::default()
        },
        ..StoreConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&cluster.url(), &config)
            .unwrap_or_else(|e| panic!("opening the throwaway cluster: {e}")),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let logs: Vec<Arc<Mutex<WriterLog>>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let threads: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(w, log)| {
            let (store, stop, log) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(log));
            std::thread::spawn(move || writer(store, w, stop, log))
        })
        .collect();
    let snapshot = |f: &dyn Fn(&WriterLog) -> bool| {
        logs.iter()
            .all(|l| f(&l.lock().unwrap_or_else(|p| p.into_inner())))
    };
    // Stops the writers whatever happens below, so a failed assertion cannot leave
    // them running against a stopped server.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop_guard = StopOnDrop(Arc::clone(&stop));

    wait_until("every writer to commit before the outage", || {
        snapshot(&|l| l.acknowledged.len() >= 5)
    });

    let stopped = run_stop(&cluster);
    wait_until("every writer to see the outage", || {
        snapshot(&|l| l.unavailable > 0)
    });
    std::thread::sleep(Duration::from_millis(500));
    let restarted_at = {
        cluster.pg_ctl_start();
        Instant::now()
    };
    let outage = restarted_at - stopped;
    wait_until("every writer to commit again after the restart", || {
        snapshot(&|l| {
            l.acknowledged
                .last()
                .is_some_and(|(_, t)| *t > restarted_at)
        })
    });
    let recovered = restarted_at.elapsed();
    // A few more writes after the recovery, then stop.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for (w, t) in threads.into_iter().enumerate() {
        let deadline = Instant::now() + PHASE_DEADLINE;
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "writer {w} did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(t.join().is_ok(), "writer {w} panicked");
    }
    eprintln!("outage {outage:?}; every writer committed again {recovered:?} after the restart");
    assert!(
        recovered < RECOVERY_BOUND,
        "the store must serve again within {RECOVERY_BOUND:?} of the restart, took {recovered:?}"
    );

    // Everything the writers were told is committed is there, read through the
    // same store that lived through the restart.
    let mut stored = BTreeSet::new();
    let mut offset = 0;
    loop {
        let page = store
            .users()
            .list(UserFilter::default(), PageRequest::new(offset, 1000))
            .unwrap_or_else(|e| panic!("listing users after the restart: {e:?}"));
        if page.items.is_empty() {
            break;
        }
        offset += page.items.len() as u64;
        stored.extend(page.items.into_iter().map(|u| u.username));
    }
    let (mut acknowledged, mut attempted, mut unavailable) = (0, 0, 0);
    for (w, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            log.unexpected.is_empty(),
            "writer {w}: during the outage calls must fail with Unavailable, got {:?}",
            log.unexpected
        );
        for (name, _) in &log.acknowledged {
            assert!(
                stored.contains(name),
                "writer {w}: {name} was acknowledged as committed but is missing"
            );
        }
        for (round, name) in log.attempted.iter().enumerate() {
            if round % 2 == 1 {
                let user = stored.contains(name);
                let collection = store.collections().get_by_name(&format!("c-{name}"));
                assert_eq!(
                    user,
                    collection.is_ok(),
                    "unit of work {name} is half there: user {user}, collection {collection:?}"
                );
            }
        }
        acknowledged += log.acknowledged.len();
        attempted += log.attempted.len();
        unavailable += log.unavailable;
    }
    let count = store
        .users()
        .count(UserFilter::default())
        .unwrap_or_else(|e| panic!("count: {e:?}"));
    eprintln!(
        "{attempted} writes tried, {acknowledged} acknowledged, {unavailable} Unavailable, \
         {count} users stored"
    );
    assert!(
        count as usize >= acknowledged && count as usize <= attempted,
        "stored users ({count}) must lie between acknowledged ({acknowledged}) and \
         attempted ({attempted})"
    );
    assert_eq!(count as usize, stored.len());
}

/// Stops the server with `-m fast` (clients are disconnected, a checkpoint is
/// written) and returns, once it is down, when the stop began.
fn run_stop(cluster: &Cluster) -> Instant {
    let began = Instant::now();
    match cluster.pg_ctl_stop("fast") {
        Ok(out) if out.status.success() => began,
        Ok(out) => panic!(
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("pg_ctl stop: could not run: {e}"),
    }
}
