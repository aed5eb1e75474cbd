-- Documents and chunks. Chunks are hash-partitioned by collection so that one
-- collection's chunks stay together; full-text search uses a generated tsvector
-- column with a GIN index ('simple' configuration over alphanumeric runs, the same
-- tokens as SQLite's FTS5 unicode61 tokenizer; see repo_core::search).

CREATE TABLE documents (
    id UUID PRIMARY KEY,
    collection_id UUID NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    file_path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_size BIGINT NOT NULL CHECK (file_size >= 0),
    mime_type TEXT,
    content_hash TEXT NOT NULL CHECK (char_length(content_hash) = 64),
    uri TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'deleted')),
    error_message TEXT,
    error_category TEXT CHECK (error_category IN ('transient', 'permanent', 'unknown')),
    retry_count INTEGER NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    chunk_count INTEGER NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    last_seen_at TIMESTAMPTZ,
    is_stale BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX documents_collection_content_hash_key ON documents (collection_id, content_hash);
CREATE UNIQUE INDEX documents_collection_uri_key ON documents (collection_id, uri);
-- Target of the chunks' (collection_id, document_id) foreign key.
CREATE UNIQUE INDEX documents_collection_id_id_key ON documents (collection_id, id);
CREATE INDEX documents_collection_created_at_idx ON documents (collection_id, created_at);
CREATE INDEX documents_collection_status_idx ON documents (collection_id, status);
-- PostgreSQL only: serves `meta @> $1` filters.
CREATE INDEX documents_meta_idx ON documents USING gin (meta jsonb_path_ops);

-- A plain sequence: PostgreSQL 15 does not allow identity columns on partitioned tables.
CREATE SEQUENCE chunks_id_seq AS BIGINT;
CREATE TABLE chunks (
    id BIGINT NOT NULL DEFAULT nextval('chunks_id_seq'),
    collection_id UUID NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    document_id UUID NOT NULL,
    chunk_index INTEGER NOT NULL CHECK (chunk_index >= 0),
    content TEXT NOT NULL,
    start_offset INTEGER,
    end_offset INTEGER,
    token_count INTEGER,
    embedding_vector_id TEXT,
    meta JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL,
    -- PostgreSQL only: the full-text vector.
    content_tsv TSVECTOR GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig, regexp_replace(content, '[^[:alnum:]]+', ' ', 'g'))
    ) STORED,
    PRIMARY KEY (collection_id, id),
    FOREIGN KEY (collection_id, document_id)
        REFERENCES documents (collection_id, id) ON DELETE CASCADE
) PARTITION BY HASH (collection_id);
ALTER SEQUENCE chunks_id_seq OWNED BY chunks.id;

CREATE TABLE chunks_p00 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE chunks_p01 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE chunks_p02 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE chunks_p03 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE chunks_p04 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE chunks_p05 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE chunks_p06 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE chunks_p07 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE chunks_p08 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE chunks_p09 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE chunks_p10 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE chunks_p11 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE chunks_p12 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE chunks_p13 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE chunks_p14 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE chunks_p15 PARTITION OF chunks FOR VALUES WITH (MODULUS 16, REMAINDER 15);

CREATE UNIQUE INDEX chunks_document_chunk_index_key
    ON chunks (collection_id, document_id, chunk_index);
CREATE INDEX chunks_collection_embedding_idx ON chunks (collection_id, id)
    WHERE embedding_vector_id IS NULL;
-- PostgreSQL only: the full-text index (SQLite uses the chunks_fts virtual table).
CREATE INDEX chunks_content_tsv_idx ON chunks USING gin (content_tsv);
