-- Documents and chunks, with FTS5 full-text search over chunk content.

CREATE TABLE documents (
    id TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    file_path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_size BIGINT NOT NULL CHECK (file_size >= 0),
    mime_type TEXT,
    content_hash TEXT NOT NULL CHECK (length(content_hash) = 64),
    uri TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'deleted')),
    error_message TEXT,
    error_category TEXT CHECK (error_category IN ('transient', 'permanent', 'unknown')),
    retry_count INTEGER NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    chunk_count INTEGER NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    meta TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),
    last_seen_at TEXT,
    is_stale BOOLEAN NOT NULL DEFAULT 0 CHECK (is_stale IN (0, 1)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX documents_collection_content_hash_key ON documents (collection_id, content_hash);
CREATE UNIQUE INDEX documents_collection_uri_key ON documents (collection_id, uri);
-- Target of the chunks' (collection_id, document_id) foreign key.
CREATE UNIQUE INDEX documents_collection_id_id_key ON documents (collection_id, id);
CREATE INDEX documents_collection_created_at_idx ON documents (collection_id, created_at);
CREATE INDEX documents_collection_status_idx ON documents (collection_id, status);

CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id TEXT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    document_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL CHECK (chunk_index >= 0),
    content TEXT NOT NULL,
    start_offset INTEGER,
    end_offset INTEGER,
    token_count INTEGER,
    embedding_vector_id TEXT,
    meta TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),
    created_at TEXT NOT NULL,
    FOREIGN KEY (collection_id, document_id)
        REFERENCES documents (collection_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX chunks_document_chunk_index_key
    ON chunks (collection_id, document_id, chunk_index);
CREATE INDEX chunks_collection_embedding_idx ON chunks (collection_id, id)
    WHERE embedding_vector_id IS NULL;

-- External-content FTS5 index kept in step by triggers. unicode61 without diacritic
-- removal and without stemming tokenizes like PostgreSQL's 'simple' configuration
-- over alphanumeric runs (see repo_core::search).
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    content,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER chunks_fts_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER chunks_fts_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER chunks_fts_after_update AFTER UPDATE OF content ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO chunks_fts (rowid, content) VALUES (new.id, new.content);
END;
