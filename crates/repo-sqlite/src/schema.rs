//! Diesel table definitions matching `migrations/sqlite` exactly.
//!
//! SQLite has no timestamp, UUID or JSON type: timestamps are fixed-width RFC 3339
//! text (`repo_core::time::to_text`), UUIDs lowercase hyphenated text and JSON text,
//! so those columns are `Text` here and converted in the repository modules.

diesel::table! {
    /// `users`.
    users (id) {
        /// `INTEGER PRIMARY KEY AUTOINCREMENT`.
        id -> BigInt,
        /// Unique login name.
        username -> Text,
        /// Unique, lowercase.
        email -> Text,
        /// Display name.
        full_name -> Nullable<Text>,
        /// PHC hash.
        hashed_password -> Text,
        /// May sign in.
        is_active -> Bool,
        /// Bypasses access checks.
        is_superuser -> Bool,
        /// RFC 3339 text.
        created_at -> Text,
        /// RFC 3339 text.
        updated_at -> Text,
        /// RFC 3339 text.
        last_login -> Nullable<Text>,
    }
}

diesel::table! {
    /// `api_keys`.
    api_keys (id) {
        /// UUID text.
        id -> Text,
        /// Owner.
        user_id -> BigInt,
        /// Display name.
        name -> Text,
        /// Lowercase name for the per-user unique rule.
        name_folded -> Text,
        /// Displayable start of the secret.
        key_prefix -> Text,
        /// SHA-256 hex of the secret.
        key_hash -> Text,
        /// JSON text.
        permissions -> Nullable<Text>,
        /// `false` once revoked.
        is_active -> Bool,
        /// RFC 3339 text.
        expires_at -> Nullable<Text>,
        /// RFC 3339 text.
        last_used_at -> Nullable<Text>,
        /// RFC 3339 text.
        created_at -> Text,
    }
}

diesel::table! {
    /// `collections`.
    collections (id) {
        /// UUID text.
        id -> Text,
        /// Globally unique name.
        name -> Text,
        /// Free text.
        description -> Nullable<Text>,
        /// Owner.
        owner_id -> BigInt,
        /// Unique vector-store name.
        vector_store_name -> Text,
        /// Embedding model.
        embedding_model -> Text,
        /// `float16` | `float32` | `int8`.
        quantization -> Text,
        /// Characters per chunk.
        chunk_size -> Integer,
        /// Overlap between chunks.
        chunk_overlap -> Integer,
        /// Strategy name.
        chunking_strategy -> Nullable<Text>,
        /// JSON text.
        chunking_config -> Nullable<Text>,
        /// Readable by everyone.
        is_public -> Bool,
        /// JSON object text.
        meta -> Text,
        /// Lifecycle state.
        status -> Text,
        /// Detail for the state.
        status_message -> Nullable<Text>,
        /// Documents.
        document_count -> BigInt,
        /// Vectors.
        vector_count -> BigInt,
        /// Bytes.
        total_size_bytes -> BigInt,
        /// `one_time` | `continuous`.
        sync_mode -> Text,
        /// Minutes between syncs.
        sync_interval_minutes -> Nullable<Integer>,
        /// RFC 3339 text.
        sync_paused_at -> Nullable<Text>,
        /// RFC 3339 text.
        sync_next_run_at -> Nullable<Text>,
        /// RFC 3339 text.
        sync_last_run_started_at -> Nullable<Text>,
        /// RFC 3339 text.
        sync_last_run_completed_at -> Nullable<Text>,
        /// Outcome of the last run.
        sync_last_run_status -> Nullable<Text>,
        /// Error of the last run.
        sync_last_error -> Nullable<Text>,
        /// RFC 3339 text.
        created_at -> Text,
        /// RFC 3339 text.
        updated_at -> Text,
    }
}

diesel::table! {
    /// `collection_permissions`.
    collection_permissions (id) {
        /// `INTEGER PRIMARY KEY AUTOINCREMENT`.
        id -> BigInt,
        /// UUID text.
        collection_id -> Text,
        /// Grantee user (exactly one of user / API key).
        user_id -> Nullable<BigInt>,
        /// Grantee API key, UUID text.
        api_key_id -> Nullable<Text>,
        /// `read` | `write` | `admin`.
        permission -> Text,
        /// RFC 3339 text.
        created_at -> Text,
    }
}

diesel::table! {
    /// `operations`.
    operations (id) {
        /// `INTEGER PRIMARY KEY AUTOINCREMENT`.
        id -> BigInt,
        /// External id, UUID text.
        uuid -> Text,
        /// UUID text.
        collection_id -> Text,
        /// Creator.
        user_id -> BigInt,
        /// Operation kind.
        kind -> Text,
        /// Lifecycle state.
        status -> Text,
        /// Task-queue id.
        task_id -> Nullable<Text>,
        /// JSON object text.
        config -> Text,
        /// Error of a failed operation.
        error_message -> Nullable<Text>,
        /// JSON object text.
        meta -> Text,
        /// RFC 3339 text.
        created_at -> Text,
        /// RFC 3339 text.
        started_at -> Nullable<Text>,
        /// RFC 3339 text.
        completed_at -> Nullable<Text>,
        /// Client idempotency token, unique per collection.
        idempotency_key -> Nullable<Text>,
    }
}

diesel::table! {
    /// `documents`.
    documents (id) {
        /// UUID text.
        id -> Text,
        /// UUID text.
        collection_id -> Text,
        /// Path of the source file.
        file_path -> Text,
        /// File name.
        file_name -> Text,
        /// Bytes.
        file_size -> BigInt,
        /// MIME type.
        mime_type -> Nullable<Text>,
        /// SHA-256 hex; unique per collection.
        content_hash -> Text,
        /// Source URI; unique per collection when present.
        uri -> Nullable<Text>,
        /// Processing state.
        status -> Text,
        /// Error of a failed document.
        error_message -> Nullable<Text>,
        /// `transient` | `permanent` | `unknown`.
        error_category -> Nullable<Text>,
        /// Retries so far.
        retry_count -> Integer,
        /// Chunks produced.
        chunk_count -> Integer,
        /// JSON object text.
        meta -> Text,
        /// RFC 3339 text.
        last_seen_at -> Nullable<Text>,
        /// Not seen by the last sync.
        is_stale -> Bool,
        /// RFC 3339 text.
        created_at -> Text,
        /// RFC 3339 text.
        updated_at -> Text,
    }
}

diesel::table! {
    /// `chunks`. Its full-text index `chunks_fts` (an external-content FTS5 table kept
    /// in step by triggers) is queried through raw SQL with bound parameters.
    chunks (id) {
        /// `INTEGER PRIMARY KEY AUTOINCREMENT`; the FTS rowid.
        id -> BigInt,
        /// UUID text.
        collection_id -> Text,
        /// UUID text.
        document_id -> Text,
        /// Position in the document.
        chunk_index -> Integer,
        /// Text.
        content -> Text,
        /// Start offset.
        start_offset -> Nullable<Integer>,
        /// End offset.
        end_offset -> Nullable<Integer>,
        /// Token count.
        token_count -> Nullable<Integer>,
        /// Vector-store id.
        embedding_vector_id -> Nullable<Text>,
        /// JSON object text.
        meta -> Text,
        /// RFC 3339 text.
        created_at -> Text,
        /// `repo_core::search::index_text(content)`, indexed by `chunks_fts`; NULL
        /// until the store's backfill fills rows stored before it existed.
        search_tokens -> Nullable<Text>,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(collections -> users (owner_id));
diesel::joinable!(collection_permissions -> collections (collection_id));
diesel::joinable!(operations -> collections (collection_id));
diesel::joinable!(documents -> collections (collection_id));
diesel::joinable!(chunks -> documents (document_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    collections,
    collection_permissions,
    operations,
    documents,
    chunks,
);
