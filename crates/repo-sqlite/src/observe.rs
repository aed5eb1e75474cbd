//! The slow-query log of SQLite connections is `repo_diesel::observe`'s, with the
//! outcome of a statement that returns rows taken from the caller (see
//! `WithSlowQueryLog::outcome_from_caller`): the error mapping (`map_diesel_error`) calls
//! [`statement_failed`] on a database error, and every pooled call ends with
//! [`call_finished`].

pub(crate) use repo_diesel::observe::{call_finished, statement_failed};

#[cfg(test)]
mod tests {
    use diesel::connection::{set_default_instrumentation, Instrumentation, InstrumentationEvent};
    use repo_core::{Repositories, StoreConfig, UserId};
    use std::cell::Cell;

    thread_local! {
        /// Statements started on this thread, as the application's instrumentation saw them.
        static STARTED: Cell<usize> = const { Cell::new(0) };
    }

    fn counting() -> Option<Box<dyn Instrumentation>> {
        Some(Box::new(|event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                STARTED.with(|n| n.set(n.get() + 1));
            }
        }))
    }

    /// The slow-query log does not take the place of the application's own default
    /// instrumentation: statements of repository calls still reach it. (Counted per
    /// thread, so tests running beside this one cannot make it pass.)
    #[test]
    fn application_default_instrumentation_still_sees_statements() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("instrumented.sqlite3");
        set_default_instrumentation(counting).expect("set default instrumentation");
        let store = crate::SqliteStore::connect(
            path.to_str().expect("utf-8 path"),
            &StoreConfig::default(),
        );
        set_default_instrumentation(|| None).expect("reset default instrumentation");
        let store = store.expect("open store");
        let before = STARTED.with(Cell::get);
        let _ = store.users().get(UserId(1));
        assert!(
            STARTED.with(Cell::get) > before,
            "the application's instrumentation saw no statement of users().get"
        );
    }
}
