//! The SQLite tables, declared as in `repo-sqlite` (same names, types and column
//! order), so that the Diesel DSL of the baseline generates the same SQL text.
//! SQLite stores timestamps, UUIDs and JSON as text.

#![allow(missing_docs)]

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        email -> Text,
        full_name -> Nullable<Text>,
        hashed_password -> Text,
        is_active -> Bool,
        is_superuser -> Bool,
        created_at -> Text,
        updated_at -> Text,
        last_login -> Nullable<Text>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        user_id -> BigInt,
        name -> Text,
        name_folded -> Text,
        key_prefix -> Text,
        key_hash -> Text,
        permissions -> Nullable<Text>,
        is_active -> Bool,
        expires_at -> Nullable<Text>,
        last_used_at -> Nullable<Text>,
        created_at -> Text,
    }
}

diesel::table! {
    collections (id) {
        id -> Text,
        name -> Text,
        description -> Nullable<Text>,
        owner_id -> BigInt,
        vector_store_name -> Text,
        embedding_model -> Text,
        quantization -> Text,
        chunk_size -> Integer,
        chunk_overlap -> Integer,
        chunking_strategy -> Nullable<Text>,
        chunking_config -> Nullable<Text>,
        is_public -> Bool,
        meta -> Text,
        status -> Text,
        status_message -> Nullable<Text>,
        document_count -> BigInt,
        vector_count -> BigInt,
        total_size_bytes -> BigInt,
        sync_mode -> Text,
        sync_interval_minutes -> Nullable<Integer>,
        sync_paused_at -> Nullable<Text>,
        sync_next_run_at -> Nullable<Text>,
        sync_last_run_started_at -> Nullable<Text>,
        sync_last_run_completed_at -> Nullable<Text>,
        sync_last_run_status -> Nullable<Text>,
        sync_last_error -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    collection_permissions (id) {
        id -> BigInt,
        collection_id -> Text,
        user_id -> Nullable<BigInt>,
        api_key_id -> Nullable<Text>,
        permission -> Text,
        created_at -> Text,
    }
}

diesel::table! {
    operations (id) {
        id -> BigInt,
        uuid -> Text,
        collection_id -> Text,
        user_id -> BigInt,
        kind -> Text,
        status -> Text,
        task_id -> Nullable<Text>,
        config -> Text,
        error_message -> Nullable<Text>,
        meta -> Text,
        created_at -> Text,
        started_at -> Nullable<Text>,
        completed_at -> Nullable<Text>,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(collections -> users (owner_id));
diesel::joinable!(collection_permissions -> collections (collection_id));
diesel::joinable!(operations -> collections (collection_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    collections,
    collection_permissions,
    operations,
);
