-- Users, API keys, collections, grants and operations.
-- Timestamps are fixed-width RFC 3339 UTC text (2026-11-21T23:18:13.123456Z), so that
-- text order is time order; JSON is text checked by json_valid; UUIDs are lowercase
-- hyphenated text. Every unique rule is a named index, with the same name on PostgreSQL.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    email TEXT NOT NULL CHECK (length(email) > 0),
    full_name TEXT,
    hashed_password TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_superuser BOOLEAN NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_login TEXT
);
CREATE UNIQUE INDEX users_username_key ON users (username);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_created_at_idx ON users (created_at);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (length(name) > 0),
    name_folded TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL CHECK (length(key_hash) = 64),
    permissions TEXT CHECK (permissions IS NULL OR json_valid(permissions)),
    is_active BOOLEAN NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    expires_at TEXT,
    last_used_at TEXT,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE UNIQUE INDEX api_keys_user_name_key ON api_keys (user_id, name_folded);

CREATE TABLE collections (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    name TEXT NOT NULL CHECK (length(trim(name)) > 0),
    description TEXT,
    owner_id INTEGER NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    vector_store_name TEXT NOT NULL,
    embedding_model TEXT NOT NULL DEFAULT 'Qwen/Qwen3-Embedding-0.6B',
    quantization TEXT NOT NULL DEFAULT 'float16'
        CHECK (quantization IN ('float16', 'float32', 'int8')),
    chunk_size INTEGER NOT NULL DEFAULT 1000 CHECK (chunk_size > 0),
    chunk_overlap INTEGER NOT NULL DEFAULT 200,
    chunking_strategy TEXT,
    chunking_config TEXT CHECK (chunking_config IS NULL OR json_valid(chunking_config)),
    is_public BOOLEAN NOT NULL DEFAULT 0 CHECK (is_public IN (0, 1)),
    meta TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'ready', 'error')),
    status_message TEXT,
    document_count BIGINT NOT NULL DEFAULT 0 CHECK (document_count >= 0),
    vector_count BIGINT NOT NULL DEFAULT 0 CHECK (vector_count >= 0),
    total_size_bytes BIGINT NOT NULL DEFAULT 0 CHECK (total_size_bytes >= 0),
    sync_mode TEXT NOT NULL DEFAULT 'one_time' CHECK (sync_mode IN ('one_time', 'continuous')),
    sync_interval_minutes INTEGER CHECK (sync_interval_minutes IS NULL OR sync_interval_minutes >= 15),
    sync_paused_at TEXT,
    sync_next_run_at TEXT,
    sync_last_run_started_at TEXT,
    sync_last_run_completed_at TEXT,
    sync_last_run_status TEXT
        CHECK (sync_last_run_status IN ('running', 'success', 'failed', 'partial')),
    sync_last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CONSTRAINT collections_chunk_overlap_check
        CHECK (chunk_overlap >= 0 AND chunk_overlap < chunk_size),
    CONSTRAINT collections_sync_interval_check
        CHECK (sync_mode = 'one_time' OR sync_interval_minutes IS NOT NULL)
);
CREATE UNIQUE INDEX collections_name_key ON collections (name);
CREATE UNIQUE INDEX collections_vector_store_name_key ON collections (vector_store_name);
CREATE INDEX collections_owner_id_idx ON collections (owner_id);
CREATE INDEX collections_created_at_idx ON collections (created_at);
CREATE INDEX collections_sync_due_idx ON collections (sync_next_run_at)
    WHERE sync_mode = 'continuous' AND sync_paused_at IS NULL;

CREATE TABLE collection_permissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    api_key_id TEXT REFERENCES api_keys (id) ON DELETE CASCADE,
    permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'admin')),
    created_at TEXT NOT NULL,
    CONSTRAINT collection_permissions_one_grantee
        CHECK ((user_id IS NULL) <> (api_key_id IS NULL))
);
CREATE UNIQUE INDEX collection_permissions_user_key
    ON collection_permissions (collection_id, user_id);
CREATE UNIQUE INDEX collection_permissions_api_key_key
    ON collection_permissions (collection_id, api_key_id);
CREATE INDEX collection_permissions_user_id_idx ON collection_permissions (user_id);
CREATE INDEX collection_permissions_api_key_id_idx ON collection_permissions (api_key_id);

CREATE TABLE operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL CHECK (length(uuid) = 36),
    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('index', 'append', 'reindex', 'remove_source', 'delete',
        'projection_build', 'retry_documents', 'benchmark')),
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    task_id TEXT,
    config TEXT NOT NULL CHECK (json_valid(config) AND json_type(config) = 'object'),
    error_message TEXT,
    meta TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT
);
CREATE UNIQUE INDEX operations_uuid_key ON operations (uuid);
-- At most one active operation per collection, enforced by the database.
CREATE UNIQUE INDEX operations_one_active_per_collection ON operations (collection_id)
    WHERE status IN ('pending', 'processing');
CREATE INDEX operations_collection_id_idx ON operations (collection_id, created_at);
CREATE INDEX operations_user_id_idx ON operations (user_id, created_at);
CREATE INDEX operations_active_created_at_idx ON operations (created_at)
    WHERE status IN ('pending', 'processing');
