//! Read replicas: one pool per streaming replica, and the routing of the two read
//! views ([`repo_core::Store::replica`], [`repo_core::Store::read_after`]).
//!
//! A view's repositories run on a [`ReadSource`]: writes (`run`, `write`) go to the
//! primary's pool as usual; reads (`read`) go to a replica picked here, or to the
//! primary. A replica is picked only when it is known to serve the view's guarantee:
//!
//! - stale-tolerant: its replay lag, checked at most every [`LAG_REFRESH`], was under
//!   the bound;
//! - read-after(position): its replay LSN (`pg_last_wal_replay_lsn()`) is at or past
//!   the position. The LSN is cached per replica and refreshed only when the cache is
//!   behind the asked position; it only grows, so a cached value never overstates it.
//!
//! A replica whose checkout or read fails is marked down and skipped until a back-off
//! ([`BACKOFF_MIN`] doubling up to [`BACKOFF_MAX`]) ends; the read is re-run on the
//! primary, so a read never fails because a replica is down while the primary is up.

use crate::connection::{PoolSource, QueryResultExt};
use crate::pool::ConnectionPool;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use repo_core::{
    ApiKeyPolicy, ConflictReason, NodeHealth, NodeRole, NodeStatus, RepoError, RepoResult,
    WritePosition,
};
use repo_diesel::connection::ConnectionSource;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a stale-tolerant read trusts a replica's last lag check.
pub(crate) const LAG_REFRESH: Duration = Duration::from_millis(100);
/// Longest wait for a replica connection before the read goes to the primary.
pub(crate) const REPLICA_CHECKOUT_TIMEOUT: Duration = Duration::from_millis(250);
/// First back-off after a replica failed.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest back-off of a replica that keeps failing.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What one query tells about a replica.
#[derive(QueryableByName)]
struct ReplicaProbe {
    #[diesel(sql_type = Bool)]
    in_recovery: bool,
    #[diesel(sql_type = Nullable<Text>)]
    replayed: Option<String>,
    /// Milliseconds; 0 when everything received is replayed; NULL when unknown.
    #[diesel(sql_type = Nullable<BigInt>)]
    lag_ms: Option<i64>,
}

// Lag as the time since the last replayed commit, but only while WAL is waiting to
// be replayed: an idle primary sends nothing, and its replica is then current.
const PROBE_SQL: &str = "\
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_replay_lsn()::text AS replayed,
       CASE
           WHEN NOT pg_is_in_recovery() THEN NULL
           WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
           ELSE (EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint
       END AS lag_ms";

fn probe(conn: &mut PgConnection) -> RepoResult<ReplicaProbe> {
    diesel::sql_query(PROBE_SQL).get_result(conn).db()
}

/// The primary's WAL insert position: at or past the commit record of every
/// transaction committed before the call (also with `synchronous_commit = off`, where
/// the flushed position may still be behind one).
pub(crate) fn write_position(conn: &mut PgConnection) -> RepoResult<WritePosition> {
    #[derive(QueryableByName)]
    struct Lsn {
        #[diesel(sql_type = Text)]
        lsn: String,
    }
    let lsn: Lsn = diesel::sql_query("SELECT pg_current_wal_insert_lsn()::text AS lsn")
        .get_result(conn)
        .db()?;
    lsn.lsn.parse()
}

#[derive(Debug, Default)]
struct NodeState {
    /// Highest replay position seen.
    replayed: WritePosition,
    /// When the lag was last measured, and whether it was under the bound.
    lag_checked: Option<Instant>,
    lag: Option<Duration>,
    lag_ok: bool,
    /// Skip the node until then.
    down_until: Option<Instant>,
    failures: u32,
}

/// One replica: its pool and what is known of it.
struct ReplicaNode {
    pool: ConnectionPool,
    state: Mutex<NodeState>,
    routed_reads: AtomicU64,
}

impl ReplicaNode {
    fn state(&self) -> std::sync::MutexGuard<'_, NodeState> {
        // The state is plain data, consistent after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_down(&self, now: Instant) -> bool {
        self.state().down_until.is_some_and(|until| now < until)
    }

    fn mark_down(&self, error: &RepoError) {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        let backoff = BACKOFF_MIN
            .saturating_mul(1 << state.failures.saturating_sub(1).min(10))
            .min(BACKOFF_MAX);
        state.down_until = Some(Instant::now() + backoff);
        state.lag_checked = None;
        drop(state);
        tracing::warn!(
            target: "repo_postgres::replica",
            replica = %self.pool.redacted_url(),
            error = %error,
            backoff_ms = backoff.as_millis() as u64,
            "replica failed; reads go to the primary until the back-off ends"
        );
    }

    fn mark_up(&self, probe: &ReplicaProbe, max_lag: Duration) -> RepoResult<()> {
        if !probe.in_recovery {
            return Err(not_a_replica(self.pool.redacted_url()));
        }
        let replayed = match &probe.replayed {
            Some(text) => text.parse()?,
            None => WritePosition::ZERO,
        };
        let lag = probe
            .lag_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        let mut state = self.state();
        state.replayed = state.replayed.max(replayed);
        state.lag = lag;
        state.lag_ok = lag.is_some_and(|l| l < max_lag);
        state.lag_checked = Some(Instant::now());
        state.down_until = None;
        state.failures = 0;
        Ok(())
    }

    /// Probes the replica once, updating its state; false when it failed (it is then
    /// marked down).
    fn refresh(&self, max_lag: Duration) -> bool {
        let outcome = self
            .pool
            .get_within(REPLICA_CHECKOUT_TIMEOUT)
            .and_then(|mut conn| self.pool.call(&mut conn, probe))
            .and_then(|p| self.mark_up(&p, max_lag));
        match outcome {
            Ok(()) => true,
            Err(e) => {
                self.mark_down(&e);
                false
            }
        }
    }

    /// Whether a stale-tolerant read may use the node now.
    fn serves_stale(&self, max_lag: Duration) -> bool {
        let fresh = {
            let state = self.state();
            state
                .lag_checked
                .filter(|at| at.elapsed() < LAG_REFRESH)
                .map(|_| state.lag_ok)
        };
        match fresh {
            Some(ok) => ok,
            None => self.refresh(max_lag) && self.state().lag_ok,
        }
    }

    /// Whether the node has replayed past `position` (refreshing its cached replay
    /// position only when the cache is behind).
    fn has_replayed(&self, position: WritePosition, max_lag: Duration) -> bool {
        if self.state().replayed >= position {
            return true;
        }
        self.refresh(max_lag) && self.state().replayed >= position
    }

    fn status(&self, max_lag: Duration) -> NodeStatus {
        let state = self.state();
        let health = if state.down_until.is_some_and(|t| Instant::now() < t) {
            NodeHealth::Down
        } else if state.lag.is_some_and(|l| l < max_lag) {
            NodeHealth::Up
        } else {
            NodeHealth::Lagging
        };
        NodeStatus {
            role: NodeRole::Replica,
            url: self.pool.redacted_url().to_owned(),
            pool: self.pool.status(),
            health,
            lag: state.lag,
            routed_reads: self.routed_reads.load(Ordering::Relaxed),
        }
    }
}

fn not_a_replica(redacted_url: &str) -> RepoError {
    RepoError::config(format!(
        "replica URL {redacted_url} points at a primary (pg_is_in_recovery() is false): \
         DATABASE_REPLICA_URLS must name streaming replicas (hot standbys)"
    ))
}

/// Whether a failed replica read should be re-run on the primary: the replica itself
/// failed (unreachable, lost, timed out, cancelled by a recovery conflict), as opposed
/// to an answer about the data.
fn is_replica_fault(error: &RepoError) -> bool {
    matches!(
        error,
        RepoError::Unavailable { .. }
            | RepoError::Backend { .. }
            | RepoError::Config { .. }
            | RepoError::Conflict {
                reason: ConflictReason::Serialization,
                ..
            }
    )
}

/// Every replica of a store.
pub(crate) struct ReplicaSet {
    nodes: Vec<ReplicaNode>,
    next: AtomicUsize,
    max_lag: Duration,
    primary_reads: AtomicU64,
}

impl ReplicaSet {
    /// The replicas of `pools`: each is probed once; one that answers as a primary is
    /// a `Config` error, one that does not answer is marked down (and tried again
    /// after its back-off).
    pub(crate) fn open(pools: Vec<ConnectionPool>, max_lag: Duration) -> RepoResult<Self> {
        let set = Self {
            nodes: pools
                .into_iter()
                .map(|pool| ReplicaNode {
                    pool,
                    state: Mutex::new(NodeState::default()),
                    routed_reads: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            max_lag,
            primary_reads: AtomicU64::new(0),
        };
        for node in &set.nodes {
            let probed = node
                .pool
                .get()
                .and_then(|mut conn| node.pool.call(&mut conn, probe))
                .and_then(|p| node.mark_up(&p, max_lag));
            match probed {
                Ok(()) => {}
                Err(e @ RepoError::Config { .. }) => return Err(e),
                Err(e) => node.mark_down(&e),
            }
        }
        Ok(set)
    }

    /// Whether the store has replicas at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The replica a read should use, round robin among those that qualify.
    fn pick(&self, after: Option<WritePosition>) -> Option<&ReplicaNode> {
        let count = self.nodes.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        (0..count)
            .map(|i| &self.nodes[(start + i) % count])
            .filter(|node| !node.is_down(now))
            .find(|node| match after {
                None => node.serves_stale(self.max_lag),
                Some(position) => node.has_replayed(position, self.max_lag),
            })
    }

    /// Runs the read `f` on a qualifying replica, or on the primary.
    fn read<T>(
        &self,
        after: Option<WritePosition>,
        primary: &PoolSource,
        f: impl Fn(&mut PgConnection) -> RepoResult<T>,
    ) -> RepoResult<T> {
        if let Some(node) = self.pick(after) {
            let result = node
                .pool
                .get_within(REPLICA_CHECKOUT_TIMEOUT)
                .and_then(|mut conn| node.pool.call(&mut conn, &f));
            match result {
                Err(e) if is_replica_fault(&e) => node.mark_down(&e),
                other => {
                    node.routed_reads.fetch_add(1, Ordering::Relaxed);
                    return other;
                }
            }
        }
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
        primary.run(f)
    }

    /// Reads routed to the primary through the views.
    pub(crate) fn primary_reads(&self) -> u64 {
        self.primary_reads.load(Ordering::Relaxed)
    }

    /// Every replica's status (probing none).
    pub(crate) fn statuses(&self) -> Vec<NodeStatus> {
        self.nodes.iter().map(|n| n.status(self.max_lag)).collect()
    }
}

/// The connection source of a read view: reads routed by the [`ReplicaSet`], all else
/// on the primary.
#[derive(Clone)]
pub(crate) struct ReadSource {
    pub(crate) primary: PoolSource,
    pub(crate) replicas: Arc<ReplicaSet>,
    /// `None`: stale-tolerant; `Some`: read-after that position.
    pub(crate) after: Option<WritePosition>,
}

impl ConnectionSource<PgConnection> for ReadSource {
    fn run<T>(&self, f: impl FnMut(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.primary.run(f)
    }

    fn write<T>(&self, f: impl FnMut(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.primary.write(f)
    }

    fn read<T>(&self, f: impl Fn(&mut PgConnection) -> RepoResult<T>) -> RepoResult<T> {
        self.replicas.read(self.after, &self.primary, f)
    }

    fn api_key_policy(&self) -> &ApiKeyPolicy {
        self.primary.api_key_policy()
    }
}
