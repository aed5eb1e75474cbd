//! The statement audit: records the SQL a call sends to the database, to show that a
//! raw-Diesel baseline runs the same statements as the repository (and which ones the
//! layer adds). Only connections opened inside [`instrumented`] are recorded; the
//! connections that are timed carry no instrumentation.

use crate::BenchResult;
use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
use std::sync::Mutex;

static RECORDING: Mutex<Option<Vec<String>>> = Mutex::new(None);

fn recording_instrumentation() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(|event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            if let Ok(mut guard) = RECORDING.lock() {
                if let Some(log) = guard.as_mut() {
                    log.push(statement_text(&query.to_string()));
                }
            }
        }
    }))
}

fn no_instrumentation() -> Option<Box<dyn Instrumentation>> {
    None
}

/// The SQL of a query as Diesel displays it, without its bind values (which may hold
/// an API-key hash) and with whitespace collapsed.
fn statement_text(displayed: &str) -> String {
    let sql = displayed
        .split_once(" -- binds:")
        .map_or(displayed, |(sql, _)| sql);
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs `open` with every new Diesel connection instrumented for recording, then
/// switches the default back off. `open` must establish every connection it needs
/// before returning (for a pool: check one out).
pub(crate) fn instrumented<T>(open: impl FnOnce() -> BenchResult<T>) -> BenchResult<T> {
    set_default_instrumentation(recording_instrumentation)?;
    let out = open();
    set_default_instrumentation(no_instrumentation)?;
    out
}

/// Runs `f` and returns the statements instrumented connections sent meanwhile.
pub(crate) fn record<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    set_log(Some(Vec::new()));
    let out = f();
    let log = set_log(None).unwrap_or_default();
    (out, log)
}

fn set_log(value: Option<Vec<String>>) -> Option<Vec<String>> {
    let mut guard = RECORDING.lock().unwrap_or_else(|p| p.into_inner());
    std::mem::replace(&mut *guard, value)
}

/// How the repository's statements differ from the baseline's.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Comparison {
    /// Statements of the repository call.
    pub(crate) repo: Vec<String>,
    /// Statements of the baseline call.
    pub(crate) raw: Vec<String>,
    /// Sent by the repository only.
    pub(crate) extra: Vec<String>,
    /// Sent by the baseline only (should be empty: else the baseline is wrong).
    pub(crate) missing: Vec<String>,
}

impl Comparison {
    /// Compares two statement lists as multisets (order kept in the lists).
    pub(crate) fn of(repo: Vec<String>, raw: Vec<String>) -> Comparison {
        let mut unmatched = raw.clone();
        let mut extra = Vec::new();
        for statement in &repo {
            match unmatched.iter().position(|s| s == statement) {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => extra.push(statement.clone()),
            }
        }
        Comparison {
            repo,
            raw,
            extra,
            missing: unmatched,
        }
    }
}
