//! The PostgreSQL tables, declared as in `repo-postgres` (same names, types and
//! column order), so that the Diesel DSL of the baseline generates the same SQL text.

#![allow(missing_docs)]

diesel::table! {
    users (id) {
        id -> Int8,
        username -> Text,
        email -> Text,
        full_name -> Nullable<Text>,
        hashed_password -> Text,
        is_active -> Bool,
        is_superuser -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        last_login -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        user_id -> Int8,
        name -> Text,
        name_folded -> Text,
        key_prefix -> Text,
        key_hash -> Text,
        permissions -> Nullable<Jsonb>,
        is_active -> Bool,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    collections (id) {
        id -> Uuid,
        name -> Text,
        description -> Nullable<Text>,
        owner_id -> Int8,
        vector_store_name -> Text,
        embedding_model -> Text,
        quantization -> Text,
        chunk_size -> Int4,
        chunk_overlap -> Int4,
        chunking_strategy -> Nullable<Text>,
        chunking_config -> Nullable<Jsonb>,
        is_public -> Bool,
        meta -> Jsonb,
        status -> Text,
        status_message -> Nullable<Text>,
        document_count -> Int8,
        vector_count -> Int8,
        total_size_bytes -> Int8,
        sync_mode -> Text,
        sync_interval_minutes -> Nullable<Int4>,
        sync_paused_at -> Nullable<Timestamptz>,
        sync_next_run_at -> Nullable<Timestamptz>,
        sync_last_run_started_at -> Nullable<Timestamptz>,
        sync_last_run_completed_at -> Nullable<Timestamptz>,
        sync_last_run_status -> Nullable<Text>,
        sync_last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    collection_permissions (id) {
        id -> Int8,
        collection_id -> Uuid,
        user_id -> Nullable<Int8>,
        api_key_id -> Nullable<Uuid>,
        permission -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    operations (id) {
        id -> Int8,
        uuid -> Uuid,
        collection_id -> Uuid,
        user_id -> Int8,
        kind -> Text,
        status -> Text,
        task_id -> Nullable<Text>,
        config -> Jsonb,
        error_message -> Nullable<Text>,
        meta -> Jsonb,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(collections -> users (owner_id));
diesel::joinable!(collection_permissions -> collections (collection_id));
diesel::joinable!(collection_permissions -> api_keys (api_key_id));
diesel::joinable!(operations -> collections (collection_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    collections,
    collection_permissions,
    operations,
);
