//! # repo-behaviour
//!
//! The behaviour suite every backend of [`repo_core`] must pass. Each rule of
//! `docs/domain.md` and `docs/semantics.md` about users, API keys, collections (with grants
//! and access), operations, documents, chunks and full-text search, and the unit of
//! work, and reliability under load, is one `pub fn` taking a
//! [`Harness`]; it panics, naming the rule, when a backend breaks it.
//!
//! [`behaviour_tests!`] stamps out one `#[rstest]` test per behaviour in the module
//! where it is invoked, so that a failure names the backend and the behaviour:
//! `postgres::operation_transition_from_terminal_is_invalid_state`. Each behaviour
//! module registers its own behaviours, one a line, in the `__<module>_behaviours!`
//! list at its top; the macro runs every module's list, so every backend runs every
//! behaviour.
//!
//! ```ignore
//! mod sqlite {
//!     use rstest::fixture;
//!
//!     #[fixture]
//!     fn harness() -> SqliteHarness {
//!         SqliteHarness::new() // a fresh, migrated database per test
//!     }
//!
//!     repo_behaviour::behaviour_tests!(harness);
//! }
//! ```
//!
//! The crate depends on `repo-core` only: it drives backends through
//! `Arc<dyn Store>` exactly as an application does.

#![forbid(unsafe_code)]

use repo_core::{BackendKind, Store, StoreConfig};
use std::sync::Arc;

mod expect;
mod race;
mod seed;

pub mod access;
pub mod api_keys;
pub mod chunks;
pub mod collections;
pub mod documents;
pub mod errors;
pub mod load;
pub mod observability;
pub mod operations;
pub mod pagination;
pub mod parity;
pub mod scoped_keys;
pub mod search;
pub mod transactions;
pub mod users;
pub mod views;

/// What a backend's test fixture provides to every behaviour.
///
/// One harness belongs to one test and owns that test's database: a fresh, migrated
/// database that no other test touches, removed when the harness is dropped.
pub trait Harness: Send + Sync {
    /// The test's store, opened with the default [`StoreConfig`]; every call returns
    /// a handle to the same database.
    fn store(&self) -> Arc<dyn Store>;

    /// Opens the same database again with another configuration (a per-user API-key
    /// limit, a tiny pool …).
    fn open_with(&self, config: StoreConfig) -> Arc<dyn Store>;

    /// Which backend this harness tests.
    fn backend(&self) -> BackendKind;
}

/// Stamps out one `#[rstest::rstest]` test per behaviour in the invoking module.
///
/// The argument is the path of an rstest fixture (a `#[rstest::fixture]` function)
/// returning a value that implements [`Harness`]. The invoking crate needs `rstest`
/// as a (dev-)dependency. Each test is named after its behaviour, so a failure reads
/// `<module>::<behaviour>`.
///
/// Each behaviour module keeps its own list (the `__<module>_behaviours!` macro at
/// its top, one behaviour a line); this macro runs every module's list, so every
/// invocation stamps out every behaviour.
///
/// ```ignore
/// mod postgres {
///     #[rstest::fixture]
///     fn harness() -> PostgresHarness { PostgresHarness::from_env() }
///     repo_behaviour::behaviour_tests!(harness);
/// }
/// ```
#[macro_export]
macro_rules! behaviour_tests {
    // Every module's list, each handed to `$crate::$callback!` after `$args`. A new
    // behaviour module adds its line here (`every_module_is_registered` checks).
    (@each $callback:ident $args:tt) => {
        $crate::__users_behaviours!($callback $args);
        $crate::__api_keys_behaviours!($callback $args);
        $crate::__collections_behaviours!($callback $args);
        $crate::__access_behaviours!($callback $args);
        $crate::__scoped_keys_behaviours!($callback $args);
        $crate::__operations_behaviours!($callback $args);
        $crate::__transactions_behaviours!($callback $args);
        $crate::__errors_behaviours!($callback $args);
        $crate::__observability_behaviours!($callback $args);
        $crate::__load_behaviours!($callback $args);
        $crate::__parity_behaviours!($callback $args);
        $crate::__pagination_behaviours!($callback $args);
        $crate::__documents_behaviours!($callback $args);
        $crate::__chunks_behaviours!($callback $args);
        $crate::__search_behaviours!($callback $args);
        $crate::__views_behaviours!($callback $args);
    };
    ($($fixture:tt)+) => {
        $crate::behaviour_tests!(@each __stamp_behaviours ($($fixture)+));
    };
}

/// Implementation detail of [`behaviour_tests!`]: one test per `module::behaviour`.
#[doc(hidden)]
#[macro_export]
macro_rules! __stamp_behaviours {
    // `$fixture` is the parenthesised fixture path, so `#[from $fixture]` reads
    // `#[from(path::to::fixture)]`.
    ($fixture:tt $($module:ident :: $name:ident),+ $(,)?) => {
        $(
            #[::rstest::rstest]
            fn $name(#[from $fixture] harness: impl $crate::Harness) {
                $crate::$module::$name(&harness);
            }
        )+
    };
}

/// Implementation detail of [`behaviour_names`]: pushes `module::behaviour` names.
#[doc(hidden)]
#[macro_export]
macro_rules! __behaviour_names {
    (($names:ident) $($module:ident :: $name:ident),+ $(,)?) => {
        $names.extend([$(concat!(stringify!($module), "::", stringify!($name))),+]);
    };
}

/// Every behaviour as `module::function`, in the order [`behaviour_tests!`] stamps them.
pub fn behaviour_names() -> Vec<&'static str> {
    let mut names = Vec::new();
    behaviour_tests!(@each __behaviour_names (names));
    names
}

#[cfg(test)]
mod tests {
    #[test]
    fn behaviour_names_are_unique() {
        let names = super::behaviour_names();
        let mut tests: Vec<&str> = names.iter().filter_map(|n| n.split("::").nth(1)).collect();
        tests.sort_unstable();
        tests.dedup();
        assert_eq!(tests.len(), names.len(), "two behaviours share a test name");
        assert!(names.len() >= 100);
    }

    /// The behaviour modules: every `pub mod` of this file (the helpers are private).
    fn modules() -> Vec<&'static str> {
        include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod "))
            .filter_map(|l| l.strip_suffix(';'))
            .collect()
    }

    /// Every behaviour module's list is run by `behaviour_tests!`.
    #[test]
    fn every_module_is_registered() {
        let lib = include_str!("lib.rs");
        for module in modules() {
            let call = format!("$crate::__{module}_behaviours!($callback $args);");
            assert!(
                lib.contains(&call),
                "behaviour_tests! does not run {module}'s list"
            );
        }
    }

    /// Every `pub fn` of a behaviour module is in the list, so no behaviour is
    /// written and then forgotten by the macro.
    #[test]
    fn every_behaviour_is_listed() {
        let names = super::behaviour_names();
        let mut defined = 0;
        for module in modules() {
            let path = format!("{}/src/{module}.rs", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix("pub fn ") {
                    let name = rest.split('(').next().unwrap_or_default();
                    let full = format!("{module}::{name}");
                    assert!(names.contains(&full.as_str()), "{full} is not in the list");
                    defined += 1;
                }
            }
        }
        assert_eq!(
            defined,
            names.len(),
            "the list names a function that does not exist"
        );
    }
}
