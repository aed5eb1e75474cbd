//! Pre-ping only when it can matter: an r2d2 connection manager that validates a
//! connection on checkout only if it sat idle in the pool for a while, or if the last
//! call on it failed.
//!
//! r2d2's `test_on_check_out` runs [`ManageConnection::is_valid`] (Diesel: `SELECT 1`)
//! before *every* checkout: one extra round trip per repository call on PostgreSQL.
//! A connection that went back to the pool a moment ago after a successful call is
//! almost certainly alive; the ones worth testing are those that waited long enough to
//! be dropped by the server, a proxy or a firewall, and those whose last call failed
//! (after a server restart the first call on each old connection fails; Diesel's
//! `has_broken` does not notice a lost PostgreSQL connection, so without the second
//! rule a busy pool would keep handing the dead connection out).
//!
//! A failed test also condemns every connection that went back to the pool before
//! the test started ([`IdleCheckManager::presuming_dead`]): when the network to the
//! server is cut, each test of a dead connection waits for the TCP deadlines (15 s
//! with the defaults of [`repo_core::postgres_url::DEADLINE_DEFAULTS`]), and testing the
//! idle connections one after the other would multiply that wait by their number.
//!
//! Both backends wrap Diesel's `ConnectionManager` in [`IdleCheckManager`] and their
//! connection customizer in [`CustomizeChecked`]; repository code keeps taking
//! `&mut PgConnection` / `&mut SqliteConnection` through [`CheckedConnection`]'s
//! `DerefMut`.

use r2d2::{CustomizeConnection, ManageConnection};
use repo_core::RepoError;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A pooled connection with what [`IdleCheckManager`] needs to decide whether to
/// test it on checkout.
#[derive(Debug)]
pub struct CheckedConnection<C> {
    conn: C,
    /// When the connection was opened or last went back to the pool.
    returned_at: Instant,
    /// Set when a call on the connection failed: test it before the next use.
    suspect: bool,
    /// Set when a call showed the connection unusable: r2d2 drops it on return.
    broken: bool,
}

impl<C> CheckedConnection<C> {
    /// Asks for a validity test at the next checkout (call it when a call on this
    /// connection failed: the connection may be the reason).
    pub fn mark_suspect(&mut self) {
        self.suspect = true;
    }

    /// Makes the pool drop the connection when it goes back instead of handing it out
    /// again (call it when a call showed the connection unusable: lost, or attached
    /// to a server that is shutting down or became a read-only standby).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether the next checkout tests the connection, given the idle threshold.
    fn needs_check(&self, idle: Duration) -> bool {
        self.suspect || self.returned_at.elapsed() >= idle
    }
}

impl<C> Deref for CheckedConnection<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.conn
    }
}

impl<C> DerefMut for CheckedConnection<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.conn
    }
}

/// Whether `error`, returned by a call on a pooled connection, may come from the
/// connection itself (lost, timed out, or an unclassified backend failure), so that
/// the connection should be tested before its next use. Domain outcomes (not found,
/// denied, invalid, conflicts) say nothing about the connection.
pub fn casts_doubt(error: &RepoError) -> bool {
    matches!(
        error,
        RepoError::Unavailable { .. } | RepoError::Backend { .. }
    )
}

/// Whether `error` shows that the connection it came from is unusable: see
/// [`UnavailableReason::breaks_connection`](repo_core::UnavailableReason::breaks_connection).
pub fn breaks_connection(error: &RepoError) -> bool {
    match error {
        RepoError::Unavailable { reason, .. } => reason.breaks_connection(),
        _ => false,
    }
}

/// Finishes a call made on `conn`: on an error that [`breaks_connection`], marks it
/// broken so that the pool drops it; on one that [`casts_doubt`] on the connection,
/// marks it suspect so that the next checkout tests it.
pub fn finish_call<C, T>(
    conn: &mut CheckedConnection<C>,
    result: Result<T, RepoError>,
) -> Result<T, RepoError> {
    if let Err(e) = &result {
        if breaks_connection(e) {
            conn.mark_broken();
        }
        if casts_doubt(e) {
            conn.mark_suspect();
        }
    }
    result
}

/// Wraps a connection manager so that, with r2d2's `test_on_check_out(true)`, only
/// connections idle for at least `idle` (or marked suspect) are validated.
///
/// `idle` of zero tests every checkout (r2d2's own behaviour). With
/// `test_on_check_out(false)` r2d2 never asks, so nothing is tested.
pub struct IdleCheckManager<M: ManageConnection> {
    inner: M,
    idle: Duration,
    /// Makes the error of a connection presumed dead; `None`: test every one.
    presume_dead: Option<PresumeDead<M::Error>>,
    /// When the latest failing test started.
    failed_test_started: Mutex<Option<Instant>>,
}

type PresumeDead<E> = Box<dyn Fn() -> E + Send + Sync>;

impl<M: ManageConnection + std::fmt::Debug> std::fmt::Debug for IdleCheckManager<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleCheckManager")
            .field("inner", &self.inner)
            .field("idle", &self.idle)
            .field("presume_dead", &self.presume_dead.is_some())
            .finish()
    }
}

impl<M: ManageConnection> IdleCheckManager<M> {
    /// Validates connections idle for at least `idle` before handing them out.
    pub fn new(inner: M, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            presume_dead: None,
            failed_test_started: Mutex::new(None),
        }
    }

    /// After a test fails, a connection due for a test that went back to the pool
    /// before that failed test started fails its own test at once with
    /// `make_error()`, without a round trip: what killed one connection (a server
    /// restart, a failover, a cut network) killed the older ones too, and testing each
    /// against a silent network would cost the whole TCP deadline per connection.
    pub fn presuming_dead(
        mut self,
        make_error: impl Fn() -> M::Error + Send + Sync + 'static,
    ) -> Self {
        self.presume_dead = Some(Box::new(make_error));
        self
    }

    fn condemned(&self, conn: &CheckedConnection<M::Connection>) -> bool {
        self.presume_dead.is_some()
            && self
                .failed_test_started
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some_and(|failed| conn.returned_at <= failed)
    }
}

impl<M: ManageConnection> ManageConnection for IdleCheckManager<M> {
    type Connection = CheckedConnection<M::Connection>;
    type Error = M::Error;

    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        Ok(CheckedConnection {
            conn: self.inner.connect()?,
            returned_at: Instant::now(),
            suspect: false,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        if !conn.needs_check(self.idle) {
            return Ok(());
        }
        if self.condemned(conn) {
            if let Some(make_error) = &self.presume_dead {
                return Err(make_error());
            }
        }
        let started = Instant::now();
        if let Err(e) = self.inner.is_valid(&mut conn.conn) {
            let mut failed = self
                .failed_test_started
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *failed = Some(failed.map_or(started, |f| f.max(started)));
            return Err(e);
        }
        conn.suspect = false;
        Ok(())
    }

    /// Called by r2d2 each time the connection goes back to the pool.
    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.returned_at = Instant::now();
        conn.broken || self.inner.has_broken(&mut conn.conn)
    }
}

/// Runs a customizer written for the bare connection type on a [`CheckedConnection`].
#[derive(Debug)]
pub struct CustomizeChecked<T>(pub T);

impl<C, E, T> CustomizeConnection<CheckedConnection<C>, E> for CustomizeChecked<T>
where
    C: Send + 'static,
    E: 'static,
    T: CustomizeConnection<C, E>,
{
    fn on_acquire(&self, conn: &mut CheckedConnection<C>) -> Result<(), E> {
        self.0.on_acquire(&mut conn.conn)
    }

    fn on_release(&self, conn: CheckedConnection<C>) {
        self.0.on_release(conn.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts validity tests; `dead` makes them fail.
    #[derive(Debug, Default)]
    struct Counting {
        checks: Arc<AtomicUsize>,
        dead: Arc<std::sync::atomic::AtomicBool>,
    }

    #[derive(Debug)]
    struct Gone;

    impl std::fmt::Display for Gone {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection gone")
        }
    }

    impl std::error::Error for Gone {}

    impl ManageConnection for Counting {
        /// Whether the connection was opened after `dead` was set (then it lives).
        type Connection = bool;
        type Error = Gone;

        fn connect(&self) -> Result<bool, Gone> {
            Ok(self.dead.load(Ordering::SeqCst))
        }

        /// Counts the tests of connections opened before `dead` was set.
        fn is_valid(&self, opened_after: &mut bool) -> Result<(), Gone> {
            if !*opened_after {
                self.checks.fetch_add(1, Ordering::SeqCst);
            }
            if self.dead.load(Ordering::SeqCst) && !*opened_after {
                Err(Gone)
            } else {
                Ok(())
            }
        }

        fn has_broken(&self, _: &mut bool) -> bool {
            false
        }
    }

    fn pool(idle: Duration) -> (r2d2::Pool<IdleCheckManager<Counting>>, Counting) {
        pool_of(1, idle, |m| m)
    }

    fn pool_of(
        size: u32,
        idle: Duration,
        setup: impl FnOnce(IdleCheckManager<Counting>) -> IdleCheckManager<Counting>,
    ) -> (r2d2::Pool<IdleCheckManager<Counting>>, Counting) {
        let manager = Counting::default();
        let probe = Counting {
            checks: Arc::clone(&manager.checks),
            dead: Arc::clone(&manager.dead),
        };
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(size))
            .test_on_check_out(true)
            .connection_timeout(Duration::from_secs(5))
            .build(setup(IdleCheckManager::new(manager, idle)))
            .expect("pool of a manager that always connects");
        (pool, probe)
    }

    #[test]
    fn busy_connections_are_not_tested() {
        let (pool, probe) = pool(Duration::from_secs(3600));
        for _ in 0..10 {
            drop(pool.get().expect("checkout"));
        }
        assert_eq!(probe.checks.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn zero_threshold_tests_every_checkout() {
        let (pool, probe) = pool(Duration::ZERO);
        for _ in 0..3 {
            drop(pool.get().expect("checkout"));
        }
        assert_eq!(probe.checks.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn idle_connections_are_tested() {
        let (pool, probe) = pool(Duration::from_millis(20));
        drop(pool.get().expect("checkout"));
        std::thread::sleep(Duration::from_millis(40));
        drop(pool.get().expect("checkout"));
        assert!(probe.checks.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn a_suspect_connection_is_tested_and_replaced_when_dead() {
        let (pool, probe) = pool(Duration::from_secs(3600));
        let mut conn = pool.get().expect("checkout");
        conn.mark_suspect();
        drop(conn);
        probe.dead.store(true, Ordering::SeqCst);
        // The dead connection fails its test and is dropped; the pool opens a fresh one
        // (`connect` succeeds), which is handed out untested.
        let conn = pool
            .get()
            .expect("a fresh connection replaces the dead one");
        assert!(!conn.suspect);
        assert_eq!(probe.checks.load(Ordering::SeqCst), 1);
    }

    /// Once a test fails, the other connections idle since before it are not tested
    /// one by one (each would wait out the TCP deadlines on a cut network): they are
    /// presumed dead and replaced.
    #[test]
    fn one_failed_test_condemns_the_older_idle_connections() {
        for (presume, expected_checks) in [(false, 3), (true, 1)] {
            let (pool, probe) = pool_of(3, Duration::from_millis(20), |m| {
                if presume {
                    m.presuming_dead(|| Gone)
                } else {
                    m
                }
            });
            // Let the pool fill, then let every connection sit idle past the threshold.
            let start = std::time::Instant::now();
            while pool.state().idle_connections < 3 && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(40));
            probe.dead.store(true, Ordering::SeqCst);
            let conn = pool
                .get()
                .expect("a fresh connection replaces the dead ones");
            assert!(!conn.suspect);
            assert_eq!(
                probe.checks.load(Ordering::SeqCst),
                expected_checks,
                "presuming dead: {presume}"
            );
        }
    }

    #[test]
    fn a_broken_connection_is_dropped_on_return() {
        let (pool, _probe) = pool(Duration::from_secs(3600));
        let mut conn = pool.get().expect("checkout");
        let read_only = RepoError::Unavailable {
            reason: repo_core::UnavailableReason::ReadOnly,
            message: "cannot execute INSERT in a read-only transaction".into(),
            source: None,
        };
        let _ = finish_call(&mut conn, Err::<(), _>(read_only));
        drop(conn);
        assert_eq!(
            pool.state().connections,
            0,
            "the broken connection was dropped"
        );
        let mut conn = pool.get().expect("a fresh connection");
        let _ = finish_call(
            &mut conn,
            Err::<(), _>(RepoError::not_found(repo_core::Entity::User, 1)),
        );
        drop(conn);
        assert_eq!(
            pool.state().connections,
            1,
            "a domain error keeps the connection"
        );
    }
}
