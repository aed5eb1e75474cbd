//! Runs callers at the same moment on separate threads, with a bounded wait.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Longest a race may take before the behaviour fails instead of hanging.
pub(crate) const RACE_DEADLINE: Duration = Duration::from_secs(60);

/// Starts `n` threads that wait on one barrier and then call `f(i)`; returns the
/// results indexed by `i`. Panics (without waiting further) when the callers have
/// not all finished within [`RACE_DEADLINE`], or when one of them panicked.
pub(crate) fn race<T, F>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> T + Send + Sync + 'static,
{
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let (f, barrier, tx) = (Arc::clone(&f), Arc::clone(&barrier), tx.clone());
        std::thread::Builder::new()
            .name(format!("racer-{i}"))
            .spawn(move || {
                barrier.wait();
                // A panic drops `tx` without sending; the receiver notices below.
                let out = f(i);
                let _ = tx.send((i, out));
            })
            .unwrap_or_else(|e| panic!("spawning racer {i} failed: {e}"));
    }
    drop(tx);
    let deadline = Instant::now() + RACE_DEADLINE;
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, out)) => results[i] = Some(out),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("race of {n} callers did not finish within {RACE_DEADLINE:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("a racer panicked (see its message above)")
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| panic!("a racer reported no result")))
        .collect()
}
