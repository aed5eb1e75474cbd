//! The sections of a run. Each measures one aspect on both backends and reports its
//! tables, notes and targets.
//!
//! Adding a section: write a module here with a type implementing [`Section`], put its raw-Diesel
//! baseline (if any) in `crate::raw` as a trait implemented for both connection
//! types, seed what it needs itself through `Backend::store`, and list it in [`all`].
//! The report, the JSON output and the target summary pick it up from there.

mod async_handle;
pub(crate) mod bulk;
mod concurrency;
mod copy;
mod live;
pub(crate) mod point;
mod pooler;
mod replicas;
mod scale;
mod scenarios;

use crate::backend::Backend;
use crate::cli::Plan;
use crate::report::SectionReport;
use crate::BenchResult;

/// What every section gets: the plan and both backends, opened and seeded.
pub(crate) struct Env {
    /// Sample sizes and windows.
    pub(crate) plan: Plan,
    /// SQLite, PostgreSQL, and PostgreSQL with asynchronous commit (same database).
    pub(crate) backends: Vec<Backend>,
}

/// One part of the benchmark.
pub(crate) trait Section {
    /// Stable id, used as JSON key and in progress lines.
    fn id(&self) -> &'static str;
    /// Measures on every backend of `env`.
    fn run(&self, env: &mut Env) -> BenchResult<SectionReport>;
}

/// Every section, in report order.
pub(crate) fn all() -> Vec<Box<dyn Section>> {
    vec![
        Box::new(point::PointOperations),
        Box::new(pooler::Pooler),
        Box::new(replicas::Replicas),
        Box::new(async_handle::AsyncHandle),
        Box::new(concurrency::Concurrency),
        Box::new(scenarios::Scenarios),
        Box::new(bulk::Bulk),
        Box::new(copy::Copy),
        Box::new(scale::Scale),
        Box::new(live::Live),
    ]
}

/// Progress on stderr, so that stdout stays the report.
pub(crate) fn progress(message: impl AsRef<str>) {
    eprintln!("repo-bench: {}", message.as_ref());
}
