//! Latency samples and their summary (exact percentiles from sorted samples).

use serde::Serialize;
use std::time::Duration;

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Summary of a set of latency samples, in nanoseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Summary {
    /// Number of samples.
    pub(crate) n: usize,
    /// Median.
    pub(crate) p50_ns: u64,
    /// 99th percentile (nearest rank).
    pub(crate) p99_ns: u64,
    /// Arithmetic mean.
    pub(crate) mean_ns: u64,
    /// Smallest sample.
    pub(crate) min_ns: u64,
    /// Largest sample.
    pub(crate) max_ns: u64,
}

impl Summary {
    /// Summarises `samples` (sorted in place). `None` when there are none.
    pub(crate) fn of(samples: &mut [u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        let mean = u64::try_from(sum / n as u128).unwrap_or(u64::MAX);
        Some(Summary {
            n,
            p50_ns: percentile(samples, 0.50),
            p99_ns: percentile(samples, 0.99),
            mean_ns: mean,
            min_ns: samples[0],
            max_ns: samples[n - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Microseconds with one decimal, for tables.
pub(crate) fn fmt_us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1_000.0)
}

/// Milliseconds with two decimals, for tables.
pub(crate) fn fmt_ms(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1_000_000.0)
}
