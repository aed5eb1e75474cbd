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
//! `postgres::operation_transition_from_terminal_is_invalid_state`. The list of
//! behaviours lives only inside the macro, so every backend runs the same list.
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
/// ```ignore
/// mod postgres {
///     #[rstest::fixture]
///     fn harness() -> PostgresHarness { PostgresHarness::from_env() }
///     repo_behaviour::behaviour_tests!(harness);
/// }
/// ```
#[macro_export]
macro_rules! behaviour_tests {
    // The one list of behaviours, handed to `$crate::$callback!` after `$args`.
    (@list $callback:ident $args:tt) => {
        $crate::$callback! {
            $args
            users::user_create_applies_defaults,
            users::user_reads_back_equal,
            users::user_username_is_unique,
            users::user_email_is_unique,
            users::user_email_uniqueness_ignores_case,
            users::user_username_length_is_validated,
            users::user_email_is_validated,
            users::user_plaintext_password_is_refused_without_echo,
            users::user_nul_in_text_is_validation,
            users::user_get_by_email_ignores_case,
            users::user_lookup_of_unknown_is_not_found,
            users::user_update_changes_only_patched_fields,
            users::user_empty_patch_changes_nothing,
            users::user_update_onto_taken_name_is_already_exists,
            users::user_update_is_validated,
            users::user_list_is_newest_first_and_paginated,
            users::user_list_and_count_filter,
            users::user_record_login_sets_last_login_only,
            users::user_delete_restrict_refuses_collection_owner,
            users::user_delete_removes_api_keys_and_grants,
            users::user_delete_cascade_removes_owned_collections,
            users::user_delete_unknown_is_not_found,
            users::user_racing_creators_exactly_one_wins,
            users::user_unicode_rules_match,
            users::user_lookup_with_nul_is_validation,
            api_keys::api_key_create_returns_secret_once_in_format,
            api_keys::api_key_reads_never_expose_secret_or_hash,
            api_keys::api_key_verify_accepts_and_records_last_used,
            api_keys::api_key_verify_stamps_last_used_at_per_granularity,
            api_keys::api_key_verify_rejects_revoked,
            api_keys::api_key_verify_rejects_inactive_user,
            api_keys::api_key_refused_verify_records_no_use,
            api_keys::api_key_verify_unknown_secret_is_none,
            api_keys::api_key_verify_malformed_is_validation,
            api_keys::api_key_name_is_unique_per_user_ignoring_case,
            api_keys::api_key_input_is_validated,
            api_keys::api_key_create_for_unknown_user_is_not_found,
            api_keys::api_key_active_limit_per_user,
            api_keys::api_key_expiry_defaults_to_365_days,
            api_keys::api_key_expiry_is_bounded,
            api_keys::api_key_never_expiry_is_none,
            api_keys::api_key_purge_expired_keeps_unexpired_keys,
            api_keys::api_key_revoke_is_soft_and_delete_is_hard,
            api_keys::api_key_list_is_per_user_newest_first,
            api_keys::api_key_grant_goes_with_the_key,
            api_keys::api_key_racing_creators_respect_the_limit,
            api_keys::api_key_name_folding_is_unicode_aware,
            api_keys::api_key_short_expiry_verifies_then_expires,
            api_keys::api_key_expired_keys_do_not_count_toward_the_limit,
            api_keys::api_key_purge_expired_deletes_exactly_the_expired,
            api_keys::api_key_short_expiry_is_bounded,
            collections::collection_create_applies_defaults,
            collections::collection_reads_back_equal,
            collections::collection_name_is_unique,
            collections::collection_name_is_validated,
            collections::collection_chunk_size_must_be_positive,
            collections::collection_chunk_overlap_must_be_below_chunk_size,
            collections::collection_sync_interval_is_at_least_15,
            collections::collection_continuous_requires_interval,
            collections::collection_meta_and_text_are_validated,
            collections::collection_create_for_unknown_owner_is_not_found,
            collections::collection_lookup_of_unknown_is_not_found,
            collections::collection_update_applies_patch,
            collections::collection_update_is_validated,
            collections::collection_rename,
            collections::collection_update_stats,
            collections::collection_status_allowed_transitions,
            collections::collection_status_forbidden_transitions_are_invalid_state,
            collections::collection_delete_by_owner_cascades,
            collections::collection_delete_by_admin_grant_or_superuser,
            collections::collection_delete_without_admin_is_access_denied,
            collections::collection_delete_unknown_is_not_found,
            collections::collection_due_for_sync,
            collections::collection_pause_and_resume_sync,
            collections::collection_record_sync_run_schedules_next_run,
            collections::collection_racing_status_updates_exactly_one_wins,
            collections::collection_racing_creators_exactly_one_wins,
            collections::collection_due_for_sync_ties_break_by_id,
            collections::collection_timestamps_round_trip_exactly,
            collections::collection_json_round_trips_exactly,
            collections::collection_lookup_with_nul_is_validation,
            collections::collection_writes_refuse_nul_and_overlong_text,
            access::access_owner_holds_admin,
            access::access_public_collection_is_read_only_for_others,
            access::access_private_collection_is_denied_to_strangers,
            access::access_grant_levels,
            access::access_is_highest_of_public_and_grant,
            access::access_superuser_holds_admin,
            access::access_missing_is_not_found_not_denied,
            access::grant_twice_changes_level,
            access::grant_revoke_removes_access,
            access::grant_to_unknown_is_not_found,
            access::list_visible_is_owned_public_and_granted,
            access::list_visible_paginates,
            access::grant_racing_upserts_keep_one_row,
            scoped_keys::key_without_grants_acts_as_its_user,
            scoped_keys::scoped_key_reads_its_collection_and_is_denied_elsewhere,
            scoped_keys::scoped_key_write_grant_cannot_delete,
            scoped_keys::scoped_key_grant_is_capped_by_its_user,
            scoped_keys::scoped_key_of_superuser_is_still_scoped,
            scoped_keys::scoped_key_reads_public_collections_only_when_allowed,
            scoped_keys::scoped_key_losing_its_last_grant_has_no_access,
            scoped_keys::scoped_key_grant_needs_object_permissions,
            scoped_keys::unusable_key_has_no_access,
            scoped_keys::deleted_key_is_not_found,
            scoped_keys::scoped_key_operations_follow_its_scope,
            operations::operation_create_is_pending,
            operations::operation_every_kind_round_trips,
            operations::operation_config_is_validated,
            operations::operation_create_for_unknown_refs_is_not_found,
            operations::operation_allowed_transitions_set_timestamps,
            operations::operation_transition_stores_error_message,
            operations::operation_forbidden_transitions_are_invalid_state,
            operations::operation_transition_from_terminal_is_invalid_state,
            operations::operation_transition_unknown_is_not_found,
            operations::operation_one_active_per_collection,
            operations::operation_new_allowed_after_previous_terminal,
            operations::operation_racing_creators_exactly_one_wins,
            operations::operation_racing_transitions_exactly_one_wins,
            operations::operation_cancel_rights,
            operations::operation_cancel_terminal_is_invalid_state,
            operations::operation_list_for_collection_filters,
            operations::operation_list_for_user_filters,
            operations::operation_active_for_collection,
            operations::operation_stuck_lists_old_active_oldest_first,
            operations::operation_mark_failed_many_counts_only_active,
            operations::operation_merge_meta_is_top_level,
            operations::operation_set_task_id,
            operations::operation_get_with_access,
            operations::operation_concurrent_merge_meta_loses_no_key,
            operations::operation_writes_refuse_nul,
            operations::operation_mark_failed_many_accepts_any_number_of_ids,
            operations::operation_idempotency_key_returns_existing,
            operations::operation_idempotency_key_is_validated,
            operations::operation_racing_creators_same_key_get_one,
            operations::operation_get_by_task_id,
            operations::operation_idempotency_key_in_unit_of_work,
            transactions::unit_of_work_commits_every_write,
            transactions::unit_of_work_failing_part_way_leaves_nothing,
            transactions::unit_of_work_repository_error_rolls_back,
            transactions::unit_of_work_returns_its_value,
            transactions::unit_of_work_lock_unknown_is_not_found,
            transactions::unit_of_work_racing_starts_exactly_one_wins,
            transactions::unit_of_work_continues_after_a_handled_error,
            transactions::unit_of_work_deadlock_or_busy_is_rerun_and_commits,
            transactions::unit_of_work_conflict_surfaces_when_attempts_run_out,
            transactions::unit_of_work_refuses_calls_on_its_own_store,
            errors::error_is_retryable_classification,
            errors::error_pool_exhaustion_is_unavailable_and_retryable,
            errors::store_reports_backend_and_health,
            errors::error_already_exists_names_entity_and_field,
            errors::error_bulk_item_index_is_a_field,
            errors::error_invalid_state_names_the_states,
            errors::error_codes_and_statuses_of_repository_errors,
            observability::pool_status_counts_connections_in_use,
            observability::health_reports_an_exhausted_pool_as_such,
            load::load_sixteen_collection_creators_count_exactly,
            load::load_racing_transitions_on_many_operations_one_winner_each,
            load::load_rolled_back_units_of_work_leave_nothing,
            load::load_eight_writers_on_separate_pools_lose_nothing,
            load::load_callers_beyond_the_pool_get_pool_exhausted_then_recover,
            parity::parity_taken_username_and_email_names_the_username,
            parity::parity_email_lookup_normalises_like_create,
            parity::parity_word_final_capital_sigma_is_found,
            pagination::pagination_limit_is_clamped,
            pagination::pagination_offset_past_end_is_empty_with_total,
            pagination::pagination_cursor_is_stable_under_inserts,
            pagination::pagination_cursor_malformed_is_validation,
            documents::document_register_applies_defaults,
            documents::document_register_is_idempotent_on_hash,
            documents::document_same_hash_in_another_collection_is_new,
            documents::document_uri_is_unique_per_collection,
            documents::document_register_is_validated,
            documents::document_register_in_unknown_collection_is_not_found,
            documents::document_racing_registrations_create_each_hash_once,
            documents::document_racing_registrations_with_a_uri_are_idempotent,
            documents::document_register_many_dedupes_in_input_order,
            documents::document_register_many_bad_item_writes_nothing,
            documents::document_repeated_hash_ignores_its_new_uri,
            documents::document_lookups,
            documents::document_list_is_failed_first_then_newest,
            documents::document_find_by_meta_matches_containment,
            documents::document_find_by_meta_stays_in_its_collection,
            documents::document_find_by_meta_hostile_keys_and_values,
            documents::document_update_status_single_and_many,
            documents::document_reset_failed_for_retry,
            documents::document_mark_seen_and_unseen_stale,
            documents::document_stats_by_status_bytes_and_chunks,
            documents::document_delete_removes_its_chunks,
            chunks::chunk_insert_many_ten_thousand,
            chunks::chunk_list_by_document_orders_by_index,
            chunks::chunk_index_is_unique_per_document,
            chunks::chunk_document_must_belong_to_the_collection,
            chunks::chunk_content_rules,
            chunks::chunk_without_embedding_and_set_embedding_ids,
            chunks::chunk_delete_by_document_and_collection_counts,
            chunks::chunk_collection_delete_removes_documents_and_chunks,
            search::search_hit_sets_match_the_query_table,
            search::search_hostile_input_is_plain_words,
            search::search_empty_and_exclusion_only_queries_have_no_hits,
            search::search_is_ranked_and_paginated,
            search::search_stays_within_its_collection,
            search::search_non_ascii_tokens_match_alike,
            search::search_finds_words_in_a_million_character_chunk,
            search::search_total_is_exact_up_to_the_cap_then_a_lower_bound,
            search::search_cursor_pages_walk_the_ranking,
            views::view_read_after_a_position_sees_the_write,
            views::view_write_positions_only_grow,
            views::view_writes_through_a_read_view_reach_the_primary,
            views::view_nodes_list_the_primary_first,
        }
    };
    ($($fixture:tt)+) => {
        $crate::behaviour_tests!(@list __stamp_behaviours ($($fixture)+));
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

/// Implementation detail of [`behaviour_names`].
#[doc(hidden)]
#[macro_export]
macro_rules! __behaviour_names {
    (() $($module:ident :: $name:ident),+ $(,)?) => {
        vec![$(concat!(stringify!($module), "::", stringify!($name))),+]
    };
}

/// Every behaviour as `module::function`, in the order [`behaviour_tests!`] stamps them.
pub fn behaviour_names() -> Vec<&'static str> {
    behaviour_tests!(@list __behaviour_names ())
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

    /// Every `pub fn` of a behaviour module is in the list, so no behaviour is
    /// written and then forgotten by the macro.
    #[test]
    fn every_behaviour_is_listed() {
        let names = super::behaviour_names();
        let sources = [
            ("users", include_str!("users.rs")),
            ("api_keys", include_str!("api_keys.rs")),
            ("collections", include_str!("collections.rs")),
            ("access", include_str!("access.rs")),
            ("scoped_keys", include_str!("scoped_keys.rs")),
            ("operations", include_str!("operations.rs")),
            ("transactions", include_str!("transactions.rs")),
            ("errors", include_str!("errors.rs")),
            ("load", include_str!("load.rs")),
            ("parity", include_str!("parity.rs")),
            ("observability", include_str!("observability.rs")),
            ("pagination", include_str!("pagination.rs")),
            ("documents", include_str!("documents.rs")),
            ("chunks", include_str!("chunks.rs")),
            ("search", include_str!("search.rs")),
            ("views", include_str!("views.rs")),
        ];
        let mut defined = 0;
        for (module, source) in sources {
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
