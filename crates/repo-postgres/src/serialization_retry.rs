//! A real serialization failure (SQLSTATE 40001): two `SERIALIZABLE` transactions in
//! write skew, each run through the error mapping (`map_diesel_error`) and the
//! [`RetryPolicy`] a unit of work uses. Units of work themselves run at `READ
//! COMMITTED`, where PostgreSQL raises no 40001, so this is where the rule that a
//! serialization failure is re-run (`ConflictReason::is_transient`) meets the server.

use crate::testing::TempDatabase;
use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use repo_core::{ConflictReason, RepoError, RepoResult, RetryPolicy};
use repo_diesel::connection::TxError;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Two doctors on call; each transaction reads how many are, and if both, takes
/// itself off call. Both read before either writes (their first attempts meet at a
/// barrier), so one of them fails with 40001. A re-run starts once both first attempts
/// have ended: the backoff alone (milliseconds) does not make the loser's re-run wait
/// for the winner's commit on a loaded machine, and a re-run that reads before it
/// meets the same conflict again (seen in CI: three attempts, all 40001). Returns each
/// side's result and attempts, and how many doctors are on call at the end.
fn write_skew(max_attempts: u32) -> (Vec<(RepoResult<()>, u32)>, i64) {
    let db = TempDatabase::from_env().unwrap_or_else(|e| panic!("{e}"));
    let mut setup = PgConnection::establish(db.url()).unwrap_or_else(|e| panic!("{e}"));
    setup
        .batch_execute(
            "CREATE TABLE on_call (doctor text PRIMARY KEY, on_call boolean NOT NULL);
             INSERT INTO on_call VALUES ('alice', true), ('bob', true);",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let policy = RetryPolicy {
        max_attempts,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
    };
    let barrier = Arc::new(Barrier::new(2));
    // How many first attempts have ended, and its change.
    let first_attempts_ended = Arc::new((Mutex::new(0u32), Condvar::new()));
    let handles: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|doctor| {
            let url = db.url().to_owned();
            let barrier = Arc::clone(&barrier);
            let ended = Arc::clone(&first_attempts_ended);
            std::thread::spawn(move || {
                let mut conn = PgConnection::establish(&url).unwrap_or_else(|e| panic!("{e}"));
                let mut attempts = 0;
                let result = policy.run(|| {
                    attempts += 1;
                    let (count, changed) = &*ended;
                    if attempts > 1 {
                        let both = changed
                            .wait_timeout_while(
                                count.lock().unwrap_or_else(|e| e.into_inner()),
                                Duration::from_secs(30),
                                |n| *n < 2,
                            )
                            .unwrap_or_else(|e| e.into_inner());
                        assert_eq!(*both.0, 2, "the other first attempt did not end in 30 s");
                    }
                    let outcome = conn
                        .build_transaction()
                        .serializable()
                        .run::<_, TxError, _>(|c| {
                            let on_call = diesel::sql_query(
                                "SELECT count(*) AS n FROM on_call WHERE on_call",
                            )
                            .get_result::<Count>(c)?
                            .n;
                            if attempts == 1 {
                                barrier.wait();
                            }
                            if on_call == 2 {
                                diesel::sql_query(
                                    "UPDATE on_call SET on_call = false WHERE doctor = $1",
                                )
                                .bind::<diesel::sql_types::Text, _>(doctor)
                                .execute(c)?;
                            }
                            Ok(())
                        })
                        .map_err(|e| e.into_repo(crate::error::map_diesel_error));
                    if attempts == 1 {
                        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                        changed.notify_all();
                    }
                    outcome
                });
                (result, attempts)
            })
        })
        .collect();
    let results = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| panic!("a transaction panicked"))
        })
        .collect();
    let left = diesel::sql_query("SELECT count(*) AS n FROM on_call WHERE on_call")
        .get_result::<Count>(&mut setup)
        .unwrap_or_else(|e| panic!("{e}"))
        .n;
    (results, left)
}

#[test]
fn a_serialization_failure_is_rerun_and_commits() {
    let (results, on_call) = write_skew(3);
    assert!(
        results.iter().all(|(r, _)| r.is_ok()),
        "both must commit after the re-run: {results:?}"
    );
    // Exactly one side was re-run, once: its re-run read after the winner's commit.
    let attempts: u32 = results.iter().map(|(_, a)| a).sum();
    assert_eq!(
        attempts, 3,
        "the loser must have been re-run once: {results:?}"
    );
    assert_eq!(on_call, 1, "the re-run saw the winner's write");
}

#[test]
fn a_serialization_failure_is_a_conflict_when_attempts_run_out() {
    let (results, on_call) = write_skew(1);
    let failed: Vec<&RepoError> = results
        .iter()
        .filter_map(|(r, _)| r.as_ref().err())
        .collect();
    assert_eq!(failed.len(), 1, "{results:?}");
    assert!(
        matches!(
            failed[0],
            RepoError::Conflict {
                reason: ConflictReason::Serialization,
                ..
            }
        ) && failed[0].is_retryable(),
        "{:?}",
        failed[0]
    );
    assert_eq!(on_call, 1, "only the winner's write is kept");
}
