//! Diesel table definitions matching `migrations/postgres` exactly.

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
        idempotency_key -> Nullable<Text>,
    }
}

diesel::table! {
    documents (id) {
        id -> Uuid,
        collection_id -> Uuid,
        file_path -> Text,
        file_name -> Text,
        file_size -> Int8,
        mime_type -> Nullable<Text>,
        content_hash -> Text,
        uri -> Nullable<Text>,
        status -> Text,
        error_message -> Nullable<Text>,
        error_category -> Nullable<Text>,
        retry_count -> Int4,
        chunk_count -> Int4,
        meta -> Jsonb,
        last_seen_at -> Nullable<Timestamptz>,
        is_stale -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

// The staging table of bulk registration: `CREATE TEMP TABLE documents_staging
// (LIKE documents INCLUDING DEFAULTS) ON COMMIT DROP`, created per call (see
// `documents::register_many`), so the same columns as `documents`.
diesel::table! {
    documents_staging (id) {
        id -> Uuid,
        collection_id -> Uuid,
        file_path -> Text,
        file_name -> Text,
        file_size -> Int8,
        mime_type -> Nullable<Text>,
        content_hash -> Text,
        uri -> Nullable<Text>,
        status -> Text,
        error_message -> Nullable<Text>,
        error_category -> Nullable<Text>,
        retry_count -> Int4,
        chunk_count -> Int4,
        meta -> Jsonb,
        last_seen_at -> Nullable<Timestamptz>,
        is_stale -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

// Hash-partitioned by `collection_id`; the primary key is (collection_id, id) and `id`
// comes from the sequence `chunks_id_seq` (column default). The generated column
// `search_tsv` (the full-text prefilter vector) is left out on purpose: it is never
// written, and queries name it in SQL text only. `search_tokens` comes last so that
// a `COPY` naming the table's columns in order ends with it.
diesel::table! {
    chunks (collection_id, id) {
        id -> Int8,
        collection_id -> Uuid,
        document_id -> Uuid,
        chunk_index -> Int4,
        content -> Text,
        start_offset -> Nullable<Int4>,
        end_offset -> Nullable<Int4>,
        token_count -> Nullable<Int4>,
        embedding_vector_id -> Nullable<Text>,
        meta -> Jsonb,
        created_at -> Timestamptz,
        search_tokens -> Nullable<Text>,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(collections -> users (owner_id));
diesel::joinable!(collection_permissions -> collections (collection_id));
diesel::joinable!(collection_permissions -> api_keys (api_key_id));
diesel::joinable!(operations -> collections (collection_id));
diesel::joinable!(documents -> collections (collection_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    collections,
    collection_permissions,
    operations,
    documents,
    chunks,
);
